//! How a registry is reached: plain HTTP or HTTPS, what `/v2/` answers (the
//! auth challenge), and checking credentials the way `docker login` does.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::header::WWW_AUTHENTICATE;
use reqwest::StatusCode;

use crate::config::Credentials;
use crate::error::{Error, Result};
use crate::transport::describe;

/// Whether `registry` (`host[:port]`) is spoken to over plain HTTP: loopback
/// always (`localhost`, `127.0.0.0/8`, `::1`), others when listed in
/// `insecure` (as `host:port` or just `host`).
pub fn is_insecure(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    if host == "localhost" {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if ip.is_loopback() {
            return true;
        }
    }
    insecure
        .iter()
        .map(|i| i.trim_start_matches("http://").trim_end_matches('/'))
        .any(|i| i == registry || i == host)
}

/// The host part of `host[:port]`, without brackets around IPv6 addresses.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    // A bare IPv6 address has several colons and no port.
    if registry.matches(':').count() > 1 {
        return registry;
    }
    registry.split(':').next().unwrap_or(registry)
}

pub fn scheme(registry: &str, insecure: &[String]) -> &'static str {
    if is_insecure(registry, insecure) {
        "http"
    } else {
        "https"
    }
}

/// The host Docker Hub's API is really served from.
pub fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        r => r,
    }
}

/// What `GET /v2/` without credentials asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// The registry answered without asking for credentials.
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// The HTTP client for `/v2/` probes and logins; `limits.idle_timeout`
/// bounds every wait for response bytes, headers included.
pub fn http_client(limits: &crate::Limits) -> reqwest::Client {
    http_client_builder()
        .read_timeout(limits.idle_timeout)
        .build()
        .expect("a client with only timeouts and a user agent builds")
}

/// What every kiln HTTP client has: a connect timeout and kiln's user agent.
/// The registry API client (`Client::new`) adds no read timeout, since
/// reqwest's would run from the start of a request and cut long uploads;
/// `transport.rs` bounds each wait itself.
pub(crate) fn http_client_builder() -> reqwest::ClientBuilder {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
}

/// Asks `registry`'s `/v2/` what authentication it wants.
pub async fn ping(
    http: &reqwest::Client,
    registry: &str,
    insecure: &[String],
) -> Result<Challenge> {
    let url = format!(
        "{}://{}/v2/",
        scheme(registry, insecure),
        api_host(registry)
    );
    let res = http
        .get(&url)
        .send()
        .await
        .map_err(|e| unreachable(registry, &e))?;
    match res.status() {
        s if s.is_success() => Ok(Challenge::None),
        StatusCode::UNAUTHORIZED => {
            let header = res
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            Ok(parse_challenge(header))
        }
        s => Err(Error::Refused {
            registry: registry.to_string(),
            action: format!("GET {url}"),
            cause: format!("HTTP {s}"),
        }),
    }
}

/// Parses a `WWW-Authenticate` value. Unknown schemes are treated as Basic,
/// which is what a registry without a token service wants.
pub fn parse_challenge(header: &str) -> Challenge {
    let header = header.trim();
    let Some((scheme, params)) = header.split_once(char::is_whitespace) else {
        return Challenge::Basic;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Challenge::Basic;
    }
    let mut realm = None;
    let mut service = None;
    for (k, v) in parse_params(params) {
        match k.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(v),
            "service" => service = Some(v),
            _ => {}
        }
    }
    match realm {
        Some(realm) => Challenge::Bearer { realm, service },
        None => Challenge::Basic,
    }
}

/// `k="v", k2=v2` pairs; quoted values may contain commas.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, remaining) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// Checks `credentials` against `registry` without storing anything, like
/// `docker login`: Basic registries must accept them on `/v2/`, token
/// registries must hand out a token for them.
pub async fn verify_login(
    http: &reqwest::Client,
    registry: &str,
    insecure: &[String],
    credentials: &Credentials,
) -> Result<()> {
    let Credentials::Basic { username, password } = credentials else {
        return Ok(());
    };
    let rejected = |status: StatusCode| Error::LoginRejected {
        registry: registry.to_string(),
        cause: if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            "incorrect username or password".to_string()
        } else {
            format!("HTTP {status}")
        },
    };
    match ping(http, registry, insecure).await? {
        // Nothing to check: the registry lets everyone in.
        Challenge::None => Ok(()),
        Challenge::Basic => {
            let url = format!(
                "{}://{}/v2/",
                scheme(registry, insecure),
                api_host(registry)
            );
            let res = http
                .get(&url)
                .basic_auth(username, Some(password))
                .send()
                .await
                .map_err(|e| unreachable(registry, &e))?;
            if res.status().is_success() {
                Ok(())
            } else {
                Err(rejected(res.status()))
            }
        }
        Challenge::Bearer { realm, service } => {
            let mut query = vec![("account", username.as_str())];
            if let Some(s) = &service {
                query.push(("service", s.as_str()));
            }
            let res = http
                .get(&realm)
                .query(&query)
                .basic_auth(username, Some(password))
                .send()
                .await
                .map_err(|e| unreachable(&realm, &e))?;
            if !res.status().is_success() {
                return Err(rejected(res.status()));
            }
            let limits = crate::Limits::default();
            let what = format!("a token from {realm}");
            let body =
                crate::transport::read_document(res, &limits, limits.max_document, &what, registry)
                    .await
                    .map_err(|f| f.error)?;
            match crate::transport::parse_token(&body) {
                Ok(_) => Ok(()),
                Err(cause) => Err(Error::LoginRejected {
                    registry: registry.to_string(),
                    cause: format!(
                        "token service {} sent a malformed reply: {cause}",
                        kiln_oci::escape(&realm)
                    ),
                }),
            }
        }
    }
}

pub(crate) fn unreachable(registry: &str, e: &(dyn std::error::Error + 'static)) -> Error {
    Error::Unreachable {
        registry: registry.to_string(),
        cause: describe(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_insecure_others_only_when_listed() {
        let none: Vec<String> = vec![];
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_insecure(r, &none), "{r}");
        }
        for r in [
            "docker.io",
            "10.0.0.1:5000",
            "myreg.local:5000",
            "localhost.example.com",
        ] {
            assert!(!is_insecure(r, &none), "{r}");
        }
        let list = vec!["myreg.local:5000".to_string(), "10.0.0.1".to_string()];
        assert!(is_insecure("myreg.local:5000", &list));
        assert!(!is_insecure("myreg.local:5001", &list));
        assert!(is_insecure("10.0.0.1:443", &list));
    }

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="kiln-test""#),
            Challenge::Basic
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            }
        );
        assert_eq!(
            parse_challenge("bearer realm=http://x/t"),
            Challenge::Bearer {
                realm: "http://x/t".into(),
                service: None
            }
        );
        assert_eq!(parse_challenge("Bearer service=x"), Challenge::Basic);
    }
}
