//! Single manifests and blobs, for callers that keep their own artifacts in
//! a registry (kiln's remote build cache): fetch a manifest as raw bytes,
//! fetch one blob into the store when it is needed.

use kiln_oci::{Digest, Reference};
use kiln_store::Store;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::progress::{BlobKind, Progress};
use crate::pull::{fetch_blob, fetch_manifest, Blob};
use crate::retry::Context;

impl Client {
    /// The raw bytes of the manifest `reference` names, and their digest
    /// (checked against the reference's digest when it has one).
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
        progress: &dyn Progress,
    ) -> Result<(Vec<u8>, Digest)> {
        let (registry, repository) = (reference.registry(), reference.repository());
        let name = reference.to_string();
        let session = self.session(registry, progress).await?;
        let target = match reference.digest() {
            Some(d) => d.to_string(),
            None => reference.tag().unwrap_or("latest").to_string(),
        };
        let bytes = fetch_manifest(&session, repository, &target, &name, progress).await?;
        let digest = Digest::sha256(&bytes);
        if let Some(want) = reference.digest() {
            if *want != digest {
                return Err(Error::DigestMismatch {
                    what: "manifest",
                    name,
                    digest: *want,
                    actual: digest.to_string(),
                });
            }
        }
        Ok((bytes, digest))
    }

    /// Downloads blob `digest` (of `size` bytes) of `reference`'s repository
    /// into the store, verified, unless the store has it.
    pub async fn fetch_blob(
        &self,
        store: &Store,
        reference: &Reference,
        digest: Digest,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let (registry, repository) = (reference.registry(), reference.repository());
        let name = reference.to_string();
        let session = self.session(registry, progress).await?;
        let cx = Context {
            registry,
            name: &name,
            action: "pull",
        };
        let blob = Blob {
            digest,
            size,
            kind: BlobKind::Layer,
        };
        fetch_blob(&session, store, repository, &blob, &cx, progress).await
    }
}
