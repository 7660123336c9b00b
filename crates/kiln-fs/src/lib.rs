//! kiln-fs: layer tars (apply and write), compression, overlay and copy
//! snapshots, and (in other modules) the build context and COPY semantics.

pub mod apply;
pub mod compress;
pub mod context;
pub mod copy;
pub mod users;
mod hashio;

pub use apply::{
    apply_compressed_layer, apply_layer, apply_layer_with, ApplyError, ApplyMode, ApplyStats,
};
pub use kiln_oci::{DiffId, Digest};
