//! kiln's own HTTP for pulls and pushes, where a registry is untrusted
//! input: every document (manifest, index, config, token reply) is read up
//! to [`Limits::max_document`], every error body up to [`MAX_ERROR_BODY`],
//! every wait for a reply is bounded (idle timeout), every body is watched
//! for stalls and crawls (low-speed limit), and every failure names the
//! registry and what was being read. Blobs are streamed, never held in memory.

use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use kiln_oci::{escape, escape_bytes};
use reqwest::Response;

use crate::error::Error;
use crate::limits::{human, Limits};
use crate::retry::Failure;

/// Error bodies are only read for their message: the first 64 KiB.
pub(crate) const MAX_ERROR_BODY: u64 = 64 << 10;

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

/// The start of an error reply's body, for its message: at most
/// [`MAX_ERROR_BODY`] bytes, the rest never read; a body that stalls or
/// breaks off gives what arrived.
pub(crate) async fn read_error_body(
    res: Response,
    limits: &Limits,
    what: &str,
    registry: &str,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut body = Body::new(res, limits, what, registry);
    while let Ok(Some(chunk)) = body.chunk().await {
        let room = MAX_ERROR_BODY as usize - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() as u64 >= MAX_ERROR_BODY {
            break;
        }
    }
    out
}

/// Sends a request, blaming the host that really failed: after a redirect
/// that is not the registry. `host` is the one asked, `home` the registry's
/// own (or the token service's) host. `wait` bounds the wait for the reply
/// headers (an upload is watched by its caller instead).
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    host: &str,
    home: &str,
    registry: &str,
    what: &str,
    wait: Option<Duration>,
) -> Result<Response, Failure> {
    let sent = match wait {
        Some(wait) => match tokio::time::timeout(wait, req.send()).await {
            Ok(sent) => sent,
            Err(_) => {
                return Err(Failure::transient(Error::Stalled {
                    what: what.to_string(),
                    registry: registry.to_string(),
                    cause: format!(
                        "no reply for {:.1} s (idle timeout; KILN_REGISTRY_IDLE_TIMEOUT)",
                        wait.as_secs_f64()
                    ),
                }))
            }
        },
        None => req.send().await,
    };
    let e = match sent {
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
pub(crate) fn host_port(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// The registry's error message from an OCI error envelope, escaped; the
/// raw (escaped, shortened) body when it is not one.
pub(crate) fn error_message(body: &[u8]) -> String {
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

/// The most telling cause in an error chain: an I/O error's kind
/// ("connection refused") when there is one, else the whole chain.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut parts: Vec<String> = Vec::new();
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            let kind = match io.kind() {
                ConnectionRefused => Some("connection refused"),
                ConnectionReset => Some("connection reset by peer"),
                ConnectionAborted => Some("connection aborted"),
                TimedOut => Some("timed out"),
                UnexpectedEof => Some("connection closed early"),
                _ => None,
            };
            if let Some(k) = kind {
                return k.to_string();
            }
        }
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
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
