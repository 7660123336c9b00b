//! Image references, parsed and normalised like Docker's
//! `reference.ParseNormalizedNamed` (the docker/distribution grammar):
//! `alpine` → `docker.io/library/alpine:latest`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Digest;

/// The registry Docker assumes when a name has none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag Docker assumes when a name has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_REGISTRY: &str = "index.docker.io";
const OFFICIAL_NAMESPACE: &str = "library/";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

/// A normalised image reference: `registry/repository[:tag][@digest]`.
///
/// A reference always has a tag or a digest or both: a bare name gets the
/// `latest` tag, as Docker does.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `input`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: String| ReferenceError {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty reference".into()));
        }
        if input.len() == 64
            && input
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(err(
                "a 64-character hex string is an image id, not a repository name".into(),
            ));
        }

        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse::<Digest>().map_err(|e| err(e.to_string()))?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // A ':' after the last '/' starts the tag; earlier ones are a port.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(err)?;
        }
        if name.is_empty() {
            return Err(err("empty repository name".into()));
        }

        let (registry, repository) = split_registry(name);
        if repository.to_lowercase() != repository {
            return Err(err(format!(
                "repository name {repository:?} must be lowercase"
            )));
        }
        validate_registry(&registry).map_err(err)?;
        validate_repository(&repository).map_err(err)?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(err(format!(
                "repository name is longer than {MAX_NAME_LEN} characters"
            )));
        }

        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path within the registry, e.g. `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Docker's short name without tag or digest: `alpine`, `user/app`,
    /// `127.0.0.1:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix(OFFICIAL_NAMESPACE) {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// Docker's short form: `alpine:latest`, `user/app@sha256:…`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        validate_tag(tag).map_err(|reason| ReferenceError {
            input: format!("{}:{tag}", self.name()),
            reason,
        })?;
        Ok(Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same repository pinned to `digest` (the tag, if any, is kept).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same reference without its digest; gets `latest` if that leaves
    /// no tag.
    pub fn without_digest(&self) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(self.tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_string())),
            digest: None,
        }
    }
}

/// Docker's `splitDockerDomain` (20.10): the first path component is a
/// registry only when it has a `.` or `:` or is `localhost`.
fn split_registry(name: &str) -> (String, String) {
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
    };
    let registry = if registry == LEGACY_REGISTRY {
        DEFAULT_REGISTRY.to_string()
    } else {
        registry
    };
    let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
        format!("{OFFICIAL_NAMESPACE}{repository}")
    } else {
        repository
    };
    (registry, repository)
}

fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("empty tag after ':'".into());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("tag is longer than {MAX_TAG_LEN} characters"));
    }
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    if !word(bytes[0]) || !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') {
        return Err(format!(
            "tag {tag:?} may contain only letters, digits, '_', '.' and '-' and must not start with '.' or '-'"
        ));
    }
    Ok(())
}

fn validate_registry(registry: &str) -> Result<(), String> {
    let bad = || format!("invalid registry host {registry:?}");
    let (host, port) = if let Some(v6) = registry.strip_prefix('[') {
        // Bracketed IPv6 literal, optionally with a port.
        let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad());
        }
        match after {
            "" => return Ok(()),
            p => ("", Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid port in registry host {registry:?}"));
        }
    }
    if !registry.starts_with('[') {
        for comp in host.split('.') {
            let b = comp.as_bytes();
            let ok = !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-');
            if !ok {
                return Err(bad());
            }
        }
    }
    Ok(())
}

/// Each path component is `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn validate_repository(repository: &str) -> Result<(), String> {
    for comp in repository.split('/') {
        let why = || {
            format!(
                "invalid repository path component {comp:?} in {repository:?} \
                 (use lower-case letters, digits and single separators '.', '_', '__', '-')"
            )
        };
        let b = comp.as_bytes();
        if b.is_empty() {
            return Err(format!("empty path component in repository {repository:?}"));
        }
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return Err(why());
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &comp[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
            if !ok {
                return Err(why());
            }
        }
    }
    Ok(())
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Reference, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        Reference::parse(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    #[test]
    fn normalises_like_docker() {
        let cases = [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.18", "docker.io/library/alpine:3.18"),
            ("user/app", "docker.io/user/app:latest"),
            ("docker.io/alpine", "docker.io/library/alpine:latest"),
            (
                "index.docker.io/library/alpine:1",
                "docker.io/library/alpine:1",
            ),
            ("localhost/x", "localhost/x:latest"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000/a/b:t"),
            ("quay.io/a/b-c__d.e/f", "quay.io/a/b-c__d.e/f:latest"),
            ("[::1]:5000/x:v", "[::1]:5000/x:v"),
            ("Registry.Example.COM/x", "Registry.Example.COM/x:latest"),
            ("a---b/c", "docker.io/a---b/c:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input), want, "input {input}");
        }
        assert_eq!(
            norm(&format!("alpine@{D}")),
            format!("docker.io/library/alpine@{D}")
        );
        assert_eq!(
            norm(&format!("127.0.0.1:5000/x:t@{D}")),
            format!("127.0.0.1:5000/x:t@{D}")
        );
    }

    #[test]
    fn fields_and_familiar_form() {
        let r = Reference::parse(&format!("alpine:3@{D}")).unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/alpine");
        assert_eq!(r.tag(), Some("3"));
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.familiar(), format!("alpine:3@{D}"));
        assert_eq!(
            Reference::parse("user/app").unwrap().familiar(),
            "user/app:latest"
        );
        assert_eq!(
            Reference::parse("docker.io/library/a/b")
                .unwrap()
                .familiar_name(),
            "library/a/b"
        );
        assert_eq!(
            Reference::parse("localhost:5000/x").unwrap().familiar(),
            "localhost:5000/x:latest"
        );
        let d = Reference::parse(&format!("x@{D}")).unwrap();
        assert_eq!(d.tag(), None);
        assert_eq!(d.without_digest().to_string(), "docker.io/library/x:latest");
    }

    #[test]
    fn rejects_invalid_references_with_reasons() {
        let cases = [
            ("UPPER/case", "lowercase"),
            ("Alpine", "lowercase"),
            ("alpine:", "empty tag"),
            ("alpine:-x", "tag"),
            ("alpine:a/b", "port"), // "alpine:a" is read as a registry host
            ("a//b", "empty path component"),
            ("-abc", "path component"),
            ("a..b", "path component"),
            ("a b", "path component"),
            ("", "empty reference"),
            ("alpine@sha256:123", "sha256"),
            ("host:port/x", "port"),
            ("bad_host.com/x", "registry host"),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "image id",
            ),
        ];
        for (input, want) in cases {
            match Reference::parse(input) {
                Ok(r) => panic!("{input} parsed as {r}"),
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(want), "{input}: {msg} should mention {want}");
                    assert!(msg.contains(&format!("{input:?}")), "{msg}");
                }
            }
        }
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
    }

    #[test]
    fn serde_round_trip() {
        let r = Reference::parse("alpine").unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/library/alpine:latest\"");
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
    }
}
