//! Secrets recognised by their bytes, not by variable names: PEM private
//! keys, cloud and forge tokens, and registry/netrc credential files.

use memchr::memmem;
use serde::{Deserialize, Serialize};

/// Bigger files are not scanned (keys and tokens live in small files).
const MAX_SCAN: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHit {
    /// `/path` in a layer, or `config:Env` / `history[3]` for image metadata.
    pub place: String,
    /// Layer index, `None` for the config.
    pub layer: Option<usize>,
    pub what: String,
}

/// Token prefixes followed by at least `min` characters of `[A-Za-z0-9_]`.
const TOKENS: [(&[u8], usize, &str); 6] = [
    (b"AKIA", 16, "an AWS access key id"),
    (b"ghp_", 36, "a GitHub personal access token"),
    (b"github_pat_", 40, "a GitHub fine-grained token"),
    (b"glpat-", 20, "a GitLab personal access token"),
    (b"xoxb-", 20, "a Slack bot token"),
    (b"npm_", 36, "an npm access token"),
];

/// Secrets in the contents of a file at `path` (relative) of `layer`.
pub fn scan(data: &[u8], path: &str, layer: usize) -> Vec<SecretHit> {
    let data = &data[..data.len().min(MAX_SCAN)];
    let place = format!("/{path}");
    let name = path.rsplit('/').next().unwrap_or("");
    let mut out = Vec::new();
    let mut hit = |what: &str| {
        out.push(SecretHit {
            place: place.clone(),
            layer: Some(layer),
            what: what.into(),
        })
    };
    if let Some(what) = private_key(data) {
        hit(what);
    }
    if let Some(what) = token(data) {
        hit(what);
    }
    if matches!(name, ".npmrc" | ".yarnrc" | ".yarnrc.yml")
        && (memmem::find(data, b"_authToken").is_some() || memmem::find(data, b"_auth=").is_some())
    {
        hit("an npm registry credential");
    }
    if matches!(name, ".netrc" | "_netrc") && memmem::find(data, b"password").is_some() {
        hit("a netrc password");
    }
    if name == "config.json"
        && path.contains(".docker/")
        && memmem::find(data, b"\"auth\"").is_some()
    {
        hit("a Docker registry credential");
    }
    out
}

/// A PEM block with a private key: header, base64 body and end line (library
/// code that merely names the header has no body).
fn private_key(data: &[u8]) -> Option<&'static str> {
    let mut from = 0;
    while let Some(at) = memmem::find(&data[from..], b"-----BEGIN ") {
        let start = from + at;
        let rest = &data[start..];
        let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let header = &rest[..line_end];
        from = start + 11;
        if memmem::find(header, b"PRIVATE KEY-----").is_none() {
            continue;
        }
        let body = &rest[line_end..rest.len().min(line_end + 4096)];
        let b64 = body
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || b"+/=\r\n".contains(b))
            .count();
        if b64 >= 40 && memmem::find(body, b"-----END ").is_some() {
            return Some("a private key");
        }
    }
    None
}

fn token(data: &[u8]) -> Option<&'static str> {
    for (prefix, min, what) in TOKENS {
        let mut from = 0;
        while let Some(at) = memmem::find(&data[from..], prefix) {
            let start = from + at;
            let before_ok = start == 0 || !data[start - 1].is_ascii_alphanumeric();
            let tail = &data[start + prefix.len()..];
            let n = tail
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            let shape = if prefix == b"AKIA" {
                n == min
                    && tail[..n]
                        .iter()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            } else {
                n >= min
            };
            if before_ok && shape {
                return Some(what);
            }
            from = start + prefix.len();
        }
    }
    None
}

/// Secrets in the image config (Env, Labels, Cmd…) and history.
pub fn scan_config(config: &serde_json::Value) -> Vec<SecretHit> {
    let mut out = Vec::new();
    if let Some(c) = config.get("config") {
        let text = c.to_string().replace("\\n", "\n");
        for what in [private_key(text.as_bytes()), token(text.as_bytes())]
            .into_iter()
            .flatten()
        {
            out.push(SecretHit {
                place: "config".into(),
                layer: None,
                what: what.into(),
            });
        }
    }
    let history = config
        .get("history")
        .and_then(|h| h.as_array())
        .cloned()
        .unwrap_or_default();
    for (i, h) in history.iter().enumerate() {
        let text = h
            .get("created_by")
            .and_then(|c| c.as_str())
            .unwrap_or("")
            .replace("\\n", "\n");
        for what in [private_key(text.as_bytes()), token(text.as_bytes())]
            .into_iter()
            .flatten()
        {
            out.push(SecretHit {
                place: format!("history[{i}] (created_by)"),
                layer: None,
                what: what.into(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_tokens_but_not_their_names() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";
        assert_eq!(
            scan(key.as_bytes(), "root/.ssh/id_ed25519", 2)[0].what,
            "a private key"
        );
        assert!(scan(
            b"if (strcmp(s, \"-----BEGIN RSA PRIVATE KEY-----\")",
            "lib.c",
            0
        )
        .is_empty());
        assert_eq!(
            scan(b"key=AKIAIOSFODNN7EXAMPLE\n", "env", 0)[0].what,
            "an AWS access key id"
        );
        assert!(scan(b"AKIA is a prefix", "doc", 0).is_empty());
        let npmrc = b"//registry.npmjs.org/:_authToken=abc\n";
        assert_eq!(
            scan(npmrc, "root/.npmrc", 0)[0].what,
            "an npm registry credential"
        );
    }
}
