//! kiln's own HTTP for pulls, where a registry is untrusted input: every
//! document (manifest, index, config, token reply, error body) is read up to
//! [`Limits::max_document`], every body is watched for stalls (idle timeout)
//! and crawls (low-speed limit), and every failure names the registry and
//! what was being read. Blobs are streamed, never held in memory.

use std::pin::Pin;
use std::time::Instant;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use kiln_oci::{escape, escape_bytes};
use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::{Response, StatusCode};

use crate::client::Session;
use crate::config::Credentials;
use crate::endpoint::{describe, Challenge};
use crate::error::Error;
use crate::limits::{human, Limits};
use crate::retry::{status_failure, Context, Failure};

/// Error bodies are only read for their message.
const MAX_ERROR_BODY: u64 = 64 << 10;

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The low-speed limit: fed the running byte count of a transfer, says
/// when too few bytes moved over the last `low_speed_time`.
pub(crate) struct SpeedWatch {
    limit: u64,
    window: std::time::Duration,
    window_start: Instant,
    bytes_at_start: u64,
}

impl SpeedWatch {
    pub fn new(limits: &Limits) -> SpeedWatch {
        SpeedWatch {
            limit: limits.low_speed_limit,
            window: limits.low_speed_time,
            window_start: Instant::now(),
            bytes_at_start: 0,
        }
    }

    /// `Some(cause)` when the transfer is too slow; `total` is the bytes
    /// moved so far.
    pub fn check(&mut self, total: u64) -> Option<String> {
        let elapsed = self.window_start.elapsed();
        if elapsed < self.window {
            return None;
        }
        let moved = total.saturating_sub(self.bytes_at_start);
        let secs = elapsed.as_secs_f64();
        if (moved as f64) < self.limit as f64 * secs {
            return Some(format!(
                "only {moved} bytes moved in {secs:.1} s, below the low-speed limit of {}/s \
                 (KILN_REGISTRY_LOW_SPEED_LIMIT, KILN_REGISTRY_LOW_SPEED_TIME)",
                human(self.limit)
            ));
        }
        self.window_start = Instant::now();
        self.bytes_at_start = total;
        None
    }
}

/// A response body read under the idle timeout and the low-speed limit.
pub(crate) struct Body<'a> {
    stream: ByteStream,
    limits: &'a Limits,
    what: &'a str,
    registry: &'a str,
    watch: SpeedWatch,
    total: u64,
}

impl<'a> Body<'a> {
    pub fn new(res: Response, limits: &'a Limits, what: &'a str, registry: &'a str) -> Body<'a> {
        Body {
            stream: Box::pin(res.bytes_stream()),
            limits,
            what,
            registry,
            watch: SpeedWatch::new(limits),
            total: 0,
        }
    }

    /// The next chunk, `None` at the end. Stalls and crawls are transient
    /// failures (retried like dropped connections).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Failure> {
        let idle = self.limits.idle_timeout;
        let next = match tokio::time::timeout(idle, self.stream.next()).await {
            Err(_) => {
                return Err(self.stalled(format!(
                    "no data for {:.1} s (idle timeout; KILN_REGISTRY_IDLE_TIMEOUT)",
                    idle.as_secs_f64()
                )))
            }
            Ok(None) => return Ok(None),
            Ok(Some(next)) => next,
        };
        let bytes = next.map_err(|e| {
            let cause = if e.is_timeout() {
                format!(
                    "no data for {:.1} s (idle timeout; KILN_REGISTRY_IDLE_TIMEOUT)",
                    idle.as_secs_f64()
                )
            } else {
                format!("connection lost: {}", describe(&e))
            };
            self.stalled(cause)
        })?;
        self.total += bytes.len() as u64;
        if let Some(cause) = self.watch.check(self.total) {
            return Err(self.stalled(cause));
        }
        Ok(Some(bytes))
    }

    fn stalled(&self, cause: String) -> Failure {
        Failure::transient(Error::Stalled {
            what: self.what.to_string(),
            registry: self.registry.to_string(),
            cause,
        })
    }
}

/// Reads a whole document of at most `limit` bytes; a bigger one (by its
/// Content-Length or by what arrives) is refused without reading the rest.
pub(crate) async fn read_document(
    res: Response,
    limits: &Limits,
    limit: u64,
    what: &str,
    registry: &str,
) -> Result<Vec<u8>, Failure> {
    let too_large = || {
        Failure::fatal(Error::TooLarge {
            what: what.to_string(),
            registry: registry.to_string(),
            limit,
        })
    };
    if res.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    let mut body = Body::new(res, limits, what, registry);
    while let Some(chunk) = body.chunk().await? {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Sends a request, blaming the host that really failed: after a redirect
/// that is not the registry.
/// `host` is the one asked, `home` the registry's own (or the token
/// service's) host.
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    host: &str,
    home: &str,
    registry: &str,
    what: &str,
) -> Result<Response, Failure> {
    let e = match req.send().await {
        Ok(res) => return Ok(res),
        Err(e) => e,
    };
    let failed_host = e.url().map(host_port).unwrap_or_else(|| host.to_string());
    let cause = describe(&e);
    if e.is_redirect() {
        return Err(Failure::fatal(Error::Refused {
            registry: registry.to_string(),
            action: format!("the request for {what}"),
            cause,
        }));
    }
    if failed_host != home {
        return Err(Failure::transient(Error::Redirected {
            registry: registry.to_string(),
            target: failed_host,
            what: what.to_string(),
            cause,
        }));
    }
    if e.is_connect() {
        return Err(Failure::transient(Error::Unreachable {
            registry: host.to_string(),
            cause,
        }));
    }
    Err(Failure::transient(Error::Stalled {
        what: what.to_string(),
        registry: registry.to_string(),
        cause: if e.is_timeout() {
            "no response (idle timeout; KILN_REGISTRY_IDLE_TIMEOUT)".into()
        } else {
            format!("connection lost: {cause}")
        },
    }))
}

/// `host[:port]` of a URL, as registries are named.
fn host_port(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The registry's error message from an OCI error envelope, escaped; the
/// raw (escaped, shortened) body when it is not one.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        message: String,
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(body) {
        let m: Vec<String> = env
            .errors
            .iter()
            .map(|e| escape(&e.message).into())
            .collect();
        return m.join("; ");
    }
    let text = escape_bytes(&body[..body.len().min(200)]);
    text.trim().to_string()
}

impl Session {
    /// GET `/v2/<repository>/<path>` with the credentials the registry
    /// asked for; a non-success status becomes the matching error. A
    /// bearer token the registry no longer accepts is fetched again once.
    pub(crate) async fn get(
        &self,
        repository: &str,
        path: &str,
        accept: Option<&str>,
        cx: &Context<'_>,
        what: &str,
    ) -> Result<Response, Failure> {
        let scope = format!("repository:{repository}:pull");
        for fresh in [false, true] {
            let auth = self.authorization(&scope, fresh).await?;
            let res = self
                .follow(&format!("/v2/{repository}/{path}"), accept, auth, cx, what)
                .await?;
            let bearer = matches!(self.challenge, Challenge::Bearer { .. });
            if res.status() == StatusCode::UNAUTHORIZED && bearer && !fresh {
                continue;
            }
            if res.status().is_success() {
                return Ok(res);
            }
            let status = res.status().as_u16();
            let body = read_document(res, &self.limits, MAX_ERROR_BODY, what, cx.registry)
                .await
                .unwrap_or_default();
            return Err(status_failure(status, error_message(&body), cx));
        }
        unreachable!("the second try returns")
    }

    /// GET `path` on the registry, following up to 10 redirects (blob
    /// storage) by hand so a failure names the host that failed, and the
    /// registry's credentials go to the registry only.
    async fn follow(
        &self,
        path: &str,
        accept: Option<&str>,
        auth: Option<String>,
        cx: &Context<'_>,
        what: &str,
    ) -> Result<Response, Failure> {
        let refused = |cause: String| {
            Failure::fatal(Error::Refused {
                registry: cx.registry.to_string(),
                action: format!("the request for {what}"),
                cause,
            })
        };
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| refused(format!("bad URL: {e}")))?;
        for _ in 0..=10 {
            let host = host_port(&url);
            let mut req = self.http.get(url.clone());
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(h) = auth.as_ref().filter(|_| host == self.api_host) {
                req = req.header(AUTHORIZATION, h);
            }
            let res = send(req, &host, &self.api_host, cx.registry, what).await?;
            if !res.status().is_redirection() {
                return Ok(res);
            }
            let location = res
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| refused(format!("HTTP {} without a Location", res.status())))?;
            url = url
                .join(location)
                .map_err(|e| refused(format!("redirect to a bad URL ({e})")))?;
        }
        Err(refused("more than 10 redirects".into()))
    }

    /// The `Authorization` header value for `scope`, if the registry wants one.
    async fn authorization(&self, scope: &str, fresh: bool) -> Result<Option<String>, Failure> {
        use base64::Engine;
        match (&self.challenge, &self.credentials) {
            (Challenge::None, _) | (Challenge::Basic, Credentials::Anonymous) => Ok(None),
            (Challenge::Basic, Credentials::Basic { username, password }) => {
                let pair = format!("{username}:{password}");
                let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                Ok(Some(format!("Basic {b64}")))
            }
            (Challenge::Bearer { realm, service }, _) => {
                let mut tokens = self.tokens.lock().await;
                if fresh {
                    tokens.remove(scope);
                }
                if let Some(t) = tokens.get(scope) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = self.fetch_token(realm, service.as_deref(), scope).await?;
                tokens.insert(scope.to_string(), token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Asks the token service for a token for `scope`.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, Failure> {
        let registry = self.registry.as_str();
        let what = format!("a token from {realm}");
        let mut query = vec![("scope", scope)];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut req = self.http.get(realm);
        if let Credentials::Basic { username, password } = &self.credentials {
            query.push(("account", username));
            req = req.basic_auth(username, Some(password));
        }
        let realm_host = reqwest::Url::parse(realm)
            .map(|u| host_port(&u))
            .unwrap_or_default();
        let res = send(req.query(&query), &realm_host, &realm_host, registry, &what).await?;
        let status = res.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure::fatal(Error::Unauthorized {
                registry: registry.to_string(),
            }));
        }
        let cx = Context {
            registry,
            name: &what,
            action: "token request",
        };
        let limit = self.limits.max_document;
        if !status.is_success() {
            let body = read_document(res, &self.limits, MAX_ERROR_BODY, &what, registry)
                .await
                .unwrap_or_default();
            return Err(status_failure(status.as_u16(), error_message(&body), &cx));
        }
        let body = read_document(res, &self.limits, limit, &what, registry).await?;
        parse_token(&body).map_err(|cause| {
            Failure::fatal(Error::BadTokenReply {
                registry: registry.to_string(),
                realm: escape(realm).into_owned(),
                cause,
            })
        })
    }
}

/// The token in a token service's JSON reply, or what is wrong with it.
pub(crate) fn parse_token(body: &[u8]) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        let start = escape_bytes(&body[..body.len().min(60)]);
        format!("it is not JSON ({e}); it starts with \"{start}\"")
    })?;
    let Some(obj) = value.as_object() else {
        return Err("it is JSON but not an object".into());
    };
    for key in ["token", "access_token"] {
        match obj.get(key) {
            Some(serde_json::Value::String(t)) if !t.is_empty() => {
                // A header value cannot hold control characters.
                if t.chars().any(|c| c.is_control() || c == ' ') {
                    return Err(format!(
                        "its \"{key}\" holds characters a token cannot have"
                    ));
                }
                return Ok(t.clone());
            }
            Some(serde_json::Value::String(_)) => return Err(format!("its \"{key}\" is empty")),
            Some(other) => {
                return Err(format!(
                    "its \"{key}\" is a {} instead of a string",
                    json_kind(other)
                ))
            }
            None => {}
        }
    }
    let fields: Vec<String> = obj.keys().take(8).map(|k| escape(k).into_owned()).collect();
    Err(format!(
        "it has no \"token\" or \"access_token\" field (fields: {})",
        if fields.is_empty() {
            "none".to_string()
        } else {
            fields.join(", ")
        }
    ))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "list",
        serde_json::Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_replies_say_what_is_wrong() {
        assert_eq!(parse_token(br#"{"token":"abc"}"#).unwrap(), "abc");
        assert_eq!(parse_token(br#"{"access_token":"x.y"}"#).unwrap(), "x.y");
        let e = parse_token(b"<html>\x1b]0;hi\x07").unwrap_err();
        assert!(
            e.contains("not JSON") && e.contains("<html>\\u{1b}]0;hi\\u{7}"),
            "{e}"
        );
        let e = parse_token(br#"{"token": 5}"#).unwrap_err();
        assert!(e.contains("\"token\" is a number"), "{e}");
        let e = parse_token(br#"{"tok": "a", "exp": 1}"#).unwrap_err();
        assert!(
            e.contains("no \"token\"") && e.contains("tok, exp") || e.contains("exp, tok"),
            "{e}"
        );
        assert!(parse_token(b"[]").unwrap_err().contains("not an object"));
        assert!(parse_token(br#"{"token":"a\nb"}"#).is_err());
    }

    #[test]
    fn error_bodies_are_escaped() {
        let m = error_message(br#"{"errors":[{"code":"DENIED","message":"no \u001b[2J"}]}"#);
        assert_eq!(m, "no \\u{1b}[2J");
        assert_eq!(error_message(b"oops\x1b"), "oops\\u{1b}");
    }
}
