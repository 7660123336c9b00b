//! kiln-fs: layer tars (apply and write), compression, overlay and copy
//! snapshots, and (in other modules) the build context and COPY semantics.

pub mod apply;
pub mod context;
pub mod copy;
pub mod file_hashes;
pub mod layer;
pub mod mount;
pub mod snapshot;
pub mod users;

pub use apply::{
    apply_compressed_layer, apply_layer, apply_layer_with, ApplyError, ApplyMode, ApplyStats,
};
pub use kiln_oci::{DiffId, Digest};
pub use layer::{
    write_layer_from_compare, write_layer_from_upper, LayerError, LayerInfo, LayerOptions,
};
pub use mount::{mount_overlay, mount_overlay_readonly, MountError, MountGuard};
pub use snapshot::{
    snapshotter, ActiveSnapshot, CopySnapshotter, OverlaySnapshotter, SnapshotError, Snapshots,
    Snapshotter,
};
