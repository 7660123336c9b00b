//! OCI vocabulary shared by every kiln crate: content digests, layer diff
//! ids, image references (parsed and normalised the way Docker does),
//! media types and platforms. Re-exports `oci_spec` for manifests, configs
//! and indexes.

pub mod compression;
mod digest;
mod escape;
pub mod media_type;
mod platform;
mod reference;

pub use compression::Compression;
pub use digest::{DiffId, Digest, DigestError, HashingReader, HashingWriter, Sha256Hasher};
pub use escape::{escape, escape_bytes, escape_path};
pub use oci_spec;
pub use platform::{Platform, PlatformError};
pub use reference::{Reference, ReferenceError, DEFAULT_REGISTRY, DEFAULT_TAG};
