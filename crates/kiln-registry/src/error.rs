//! Errors of registry operations. Each names the registry, repository or blob
//! it concerns and the cause, so the CLI can print it on one line. Text a
//! registry sent (messages, media types, platforms) is printed escaped.

use std::path::PathBuf;

use kiln_oci::{escape, Digest};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach registry {registry}: {}", escape(cause))]
    Unreachable { registry: String, cause: String },
    #[error("authentication failed for {registry}: check `kiln login`")]
    Unauthorized { registry: String },
    #[error("login to {registry} failed: {}", escape(cause))]
    LoginRejected { registry: String, cause: String },
    #[error("access to {name} denied by {registry}: {}", escape(cause))]
    Denied {
        registry: String,
        name: String,
        cause: String,
    },
    #[error("manifest unknown: {reference} is not in the registry")]
    ManifestUnknown { reference: String },
    #[error("blob {digest} of {name} is not in the registry")]
    BlobUnknown { name: String, digest: Digest },
    #[error("registry {registry} refused {action}: {}", escape(cause))]
    Refused {
        registry: String,
        action: String,
        cause: String,
    },
    #[error("{what} {digest} from {name} does not match its digest: got {actual}")]
    DigestMismatch {
        what: &'static str,
        name: String,
        digest: Digest,
        actual: String,
    },
    #[error("unsupported media type {media_type:?} of {what} in {reference}")]
    UnsupportedMediaType {
        what: &'static str,
        media_type: String,
        reference: String,
    },
    #[error("invalid manifest for {reference}: {}", escape(cause))]
    BadManifest { reference: String, cause: String },
    #[error(
        "{reference} has no image for platform {platform} (available: {})",
        escape(available)
    )]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("cannot read credentials for {registry} from {path}: {cause}", path = path.display())]
    Credentials {
        registry: String,
        path: PathBuf,
        cause: String,
    },
    #[error("cannot update docker config {path}: {cause}", path = path.display())]
    ConfigWrite { path: PathBuf, cause: String },
    #[error("credential helper docker-credential-{helper} failed for {registry}: {cause}")]
    Helper {
        helper: String,
        registry: String,
        cause: String,
    },
    #[error("{what} from {registry} is larger than {limit}, kiln's limit for it (a registry is untrusted input; KILN_REGISTRY_MAX_DOCUMENT raises the limit)", limit = crate::limits::human(*limit))]
    TooLarge {
        what: String,
        registry: String,
        limit: u64,
    },
    /// The response stalled or crawled; retried like a dropped connection.
    #[error("reading {what} from {registry}: {}", escape(cause))]
    Stalled {
        what: String,
        registry: String,
        cause: String,
    },
    #[error(
        "cannot reach {}, where {registry} redirected the request for {what}: {}",
        escape(target),
        escape(cause)
    )]
    Redirected {
        registry: String,
        target: String,
        what: String,
        cause: String,
    },
    #[error(
        "token service {} of {registry} sent a malformed reply: {}",
        escape(realm),
        escape(cause)
    )]
    BadTokenReply {
        registry: String,
        realm: String,
        cause: String,
    },
    #[error(transparent)]
    Store(#[from] kiln_store::Error),
    #[error("{}", escape(.0))]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
