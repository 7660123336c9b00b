//! Stand-in for `kiln_oci::{Digest, DiffId}` until that crate lands; same
//! names and text form (`sha256:<hex>`) so callers do not change on the switch.

use std::fmt;

/// A SHA-256 content digest (`sha256:<64 hex>`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn from_sha256_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }
    pub fn sha256(data: &[u8]) -> Self {
        use sha2::Digest as _;
        Digest(sha2::Sha256::digest(data).into())
    }
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Digest of an uncompressed layer tar.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct DiffId(pub Digest);

impl fmt::Display for DiffId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
