//! Layers of a stage: a blob (in the store, or in a remote cache until a
//! step needs its files) and, once needed, its extracted snapshot.

use kiln_oci::{DiffId, Digest};

/// One layer of an image being built.
#[derive(Clone, Debug)]
pub struct Layer {
    /// Digest of the (compressed) blob in the store.
    pub digest: Digest,
    pub diff_id: DiffId,
    /// Size of the blob.
    pub size: u64,
    pub media_type: String,
}

/// OCI chain ids: `chain(n) = sha256(chain(n-1) + " " + diff_id(n))`.
pub fn chain_id(parent: Option<&Digest>, diff_id: &DiffId) -> Digest {
    match parent {
        None => *diff_id.digest(),
        Some(p) => Digest::sha256(format!("{p} {}", diff_id.digest()).as_bytes()),
    }
}

/// The chain id of the top of `layers`.
pub fn top_chain_id(layers: &[Layer]) -> Option<Digest> {
    let mut chain: Option<Digest> = None;
    for l in layers {
        chain = Some(chain_id(chain.as_ref(), &l.diff_id));
    }
    chain
}
