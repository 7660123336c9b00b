//! kiln's content store. The store root is itself an OCI image layout
//! (`oci-layout`, `index.json`, `blobs/sha256/…`), so skopeo and umoci read
//! it directly (`skopeo inspect oci:ROOT:docker.io/library/app:latest`).
//!
//! The store owns `ROOT/{oci-layout,index.json,blobs,ingest,leases,meta,store.lock}`.
//! Blobs are written to a temp file in `ingest/`, verified, then renamed;
//! index.json changes are read-modify-write under an exclusive flock on
//! `store.lock`, written to a temp file and renamed. See `docs/store.md`.

pub mod archive;
mod blob;
mod error;
mod fsck;
mod fsio;
mod gc;
mod image;
pub mod import;
mod lease;
mod meta;
mod names;
mod store;

pub use blob::{BlobWriter, PreparedBlob};
pub use error::{Error, Result};
pub use fsck::{FsckProblem, FsckReport};
pub use gc::{BlobUsage, PruneReport};
pub use image::{Image, ImageSummary};
pub use kiln_oci;
pub use meta::LayerInfo;
pub use names::{
    descriptor_digest, name_of, IndexEntry, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
};
pub use store::Store;
