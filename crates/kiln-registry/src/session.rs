//! What kiln knows about one registry after the first contact (where its
//! API is, how it authenticates, the credentials for it, bearer tokens by
//! scope), and the authorised requests pulls and pushes make through it.
//! Every reply is read through `transport.rs`, under its limits.

use std::collections::HashMap;

use kiln_oci::escape;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use tokio::sync::Mutex;

use crate::config::Credentials;
use crate::endpoint::Challenge;
use crate::error::Error;
use crate::limits::Limits;
use crate::retry::{status_failure, Context, Failure};
use crate::transport::{
    error_message, host_port, parse_token, read_document, read_error_body, send,
};

/// One registry, as [`crate::Client::session`] found it.
pub(crate) struct Session {
    pub registry: String,
    /// `http[s]://host[:port]` the API is served from.
    pub base: String,
    pub api_host: String,
    pub challenge: Challenge,
    pub credentials: Credentials,
    /// Follows no redirects (pulls follow them by hand, to blame the right
    /// host and keep credentials from other hosts) and has no read timeout
    /// (every wait is bounded by `transport.rs`).
    pub http: reqwest::Client,
    pub limits: Limits,
    /// Bearer tokens by scope.
    pub tokens: Mutex<HashMap<String, String>>,
}

impl Session {
    /// GET `/v2/<repository>/<path>` with the credentials the registry
    /// asked for; a non-success status becomes the matching error.
    pub(crate) async fn get(
        &self,
        repository: &str,
        path: &str,
        accept: Option<&str>,
        cx: &Context<'_>,
        what: &str,
    ) -> Result<Response, Failure> {
        let scope = format!("repository:{repository}:pull");
        let path = format!("/v2/{repository}/{path}");
        let res = self
            .authorized(&scope, |auth| self.follow(&path, accept, auth, cx, what))
            .await?;
        if res.status().is_success() {
            return Ok(res);
        }
        Err(self.reply_failure(res, cx, what).await)
    }

    /// Runs `op` with the `Authorization` value for `scope`; when a bearer
    /// registry answers 401 (a token it no longer accepts), once more with
    /// a fresh token.
    pub(crate) async fn authorized<F, Fut>(&self, scope: &str, op: F) -> Result<Response, Failure>
    where
        F: Fn(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<Response, Failure>>,
    {
        let bearer = matches!(self.challenge, Challenge::Bearer { .. });
        let res = op(self.authorization(scope, false).await?).await?;
        if res.status() != StatusCode::UNAUTHORIZED || !bearer {
            return Ok(res);
        }
        op(self.authorization(scope, true).await?).await
    }

    /// A request to `url`, with `auth` only when `url` is on the registry.
    pub(crate) fn request(&self, method: Method, url: &Url, auth: Option<&str>) -> RequestBuilder {
        let req = self.http.request(method, url.clone());
        match auth.filter(|_| self.is_home(url)) {
            Some(a) => req.header(AUTHORIZATION, a),
            None => req,
        }
    }

    /// Whether `url` is on the registry's API host (same scheme, host and
    /// port, with `:443` and no port alike).
    fn is_home(&self, url: &Url) -> bool {
        let Ok(base) = Url::parse(&self.base) else {
            return false;
        };
        let key = |u: &Url| {
            (
                u.scheme().to_string(),
                u.host_str().map(str::to_string),
                u.port_or_known_default(),
            )
        };
        key(&base) == key(url)
    }

    /// Sends `req` (to `url`), waiting up to the idle timeout for the reply.
    pub(crate) async fn send(
        &self,
        req: RequestBuilder,
        url: &Url,
        what: &str,
    ) -> Result<Response, Failure> {
        let wait = Some(self.limits.idle_timeout);
        send(
            req,
            &host_port(url),
            &self.api_host,
            &self.registry,
            what,
            wait,
        )
        .await
    }

    /// What a reply that is not a success means: its status and the
    /// registry's message, read from at most [`MAX_ERROR_BODY`] bytes of it.
    ///
    /// [`MAX_ERROR_BODY`]: crate::transport::MAX_ERROR_BODY
    pub(crate) async fn reply_failure(
        &self,
        res: Response,
        cx: &Context<'_>,
        what: &str,
    ) -> Failure {
        let status = res.status().as_u16();
        let body = read_error_body(res, &self.limits, what, cx.registry).await;
        status_failure(status, error_message(&body), cx)
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
        let mut url = Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| refused(format!("bad URL: {e}")))?;
        for _ in 0..=10 {
            let mut req = self.request(Method::GET, &url, auth.as_deref());
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            let res = self.send(req, &url, what).await?;
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

    /// The `Authorization` header value for `scope` (space-separated
    /// scopes for a token covering several), if the registry wants one.
    pub(crate) async fn authorization(
        &self,
        scope: &str,
        fresh: bool,
    ) -> Result<Option<String>, Failure> {
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
        // Several scopes (a push that mounts) are asked for as several
        // `scope` parameters, as Docker does.
        let mut query: Vec<(&str, &str)> = scope.split(' ').map(|s| ("scope", s)).collect();
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut req = self.http.get(realm);
        if let Credentials::Basic { username, password } = &self.credentials {
            query.push(("account", username));
            req = req.basic_auth(username, Some(password));
        }
        let realm_host = Url::parse(realm).map(|u| host_port(&u)).unwrap_or_default();
        let wait = Some(self.limits.idle_timeout);
        let req = req.query(&query);
        let res = send(req, &realm_host, &realm_host, registry, &what, wait).await?;
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
            return Err(self.reply_failure(res, &cx, &what).await);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session(base: &str, api_host: &str) -> Session {
        Session {
            registry: api_host.to_string(),
            base: base.to_string(),
            api_host: api_host.to_string(),
            challenge: Challenge::Basic,
            credentials: Credentials::Anonymous,
            http: crate::endpoint::http_client_builder().build().unwrap(),
            limits: Limits::default(),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    #[test]
    fn credentials_go_only_to_the_registry() {
        let s = session("https://myreg:443", "myreg:443");
        for (url, home) in [
            ("https://myreg/v2/a/blobs/uploads/1?_state=x", true),
            ("https://myreg:443/v2/", true),
            ("http://myreg/v2/", false),
            ("https://myreg:5000/v2/", false),
            ("https://storage.example/blob?sig=1", false),
        ] {
            let url = Url::parse(url).unwrap();
            let req = s.request(Method::PUT, &url, Some("Basic eDp5")).build();
            let sent = req.unwrap().headers().contains_key(AUTHORIZATION);
            assert_eq!(sent, home, "{url}");
        }
    }
}
