//! Snapshots: image layers extracted once and shared, and writable root
//! filesystems for build steps on top of them.
//!
//! Layout under the store root (`ROOT/snapshots/`):
//! - `<chain-id hex>/fs` — one layer's content in overlay-lower form
//!   (whiteouts as 0/0 char devices, opaque dirs marked with
//!   `trusted.overlay.opaque=y`, `user.overlay.opaque=y` in a user
//!   namespace), `<chain-id hex>/diff_id` — its diff_id.
//! - `active/<id>/` — a step's writable snapshot (backend specific).
//! - `tmp/` — extractions in progress, renamed into place when complete.
//!
//! A process holds a shared lock on every layer snapshot it used until it
//! ends; [`Snapshots::remove`] removes only one that nobody holds.
//!
//! Lifecycle of a step with a [`Snapshotter`]:
//! `prepare(parents)` → run the step in `active.rootfs()` → `diff(active,
//! out)` (the layer tar) → optionally `commit(active, chain_id, diff_id)` to
//! keep the result as a layer snapshot for later steps → `remove(active)`.

mod cache;
mod copy;
mod gc;
mod kept;
mod overlay;
mod root;
mod scan;
mod workdir;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use cache::Snapshots;
pub use copy::CopySnapshotter;
pub use gc::{tree_bytes, SnapshotInfo};
pub use overlay::OverlaySnapshotter;
pub use root::RootSnapshotter;
pub use scan::{Index, Stamp};

use crate::apply::ApplyError;
use crate::layer::{LayerError, LayerInfo, LayerOptions};
use crate::mount::{MountError, MountGuard};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("extract layer {diff_id} into snapshot {chain_id}: {source}")]
    Extract {
        chain_id: String,
        diff_id: String,
        source: ApplyError,
    },
    #[error("layer for snapshot {chain_id} has diff_id {actual}, expected {expected}")]
    DiffIdMismatch {
        chain_id: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("KILN_SNAPSHOTTER={0:?} is not one of: overlay, copy")]
    UnknownBackend(String),
    #[error("overlay snapshotter requested but overlay mounts do not work here (needs root, overlayfs and a non-overlay filesystem under {0})")]
    OverlayUnavailable(PathBuf),
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A writable root filesystem prepared for one step.
#[derive(Debug)]
pub struct ActiveSnapshot {
    /// Declared first so that, when dropped, it is unmounted before the
    /// directory goes.
    pub(crate) mount: Option<MountGuard>,
    /// `ROOT/snapshots/active/<id>`: everything of this snapshot lives here.
    pub(crate) dir: PathBuf,
    /// Holds the directory's lock; removes it if the snapshot is dropped
    /// without `remove`.
    pub(crate) work: workdir::WorkDir,
    pub(crate) rootfs: PathBuf,
    /// The overlay upper dir under `rootfs`, when there is one: new
    /// directories may be filled through it directly (see [`Self::upper`]).
    pub(crate) upper: Option<PathBuf>,
}

impl ActiveSnapshot {
    /// The merged root filesystem the step sees and writes.
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }
    /// The overlay upper dir of a mounted `rootfs` (`None` for the copy
    /// snapshotter and `FROM scratch`). A directory this step created
    /// through `rootfs`, with nothing below it in the lower layers, can be
    /// filled here instead: the same result without overlayfs's per-file
    /// create path and lookups through every lower layer.
    pub fn upper(&self) -> Option<&Path> {
        self.upper.as_deref()
    }
    /// The snapshot's private directory (backend specific layout).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Makes writable root filesystems over layer snapshots and turns what a
/// step changed into a layer.
///
/// ```text
/// let active = s.prepare(&[top_layer_fs, ..., bottom_layer_fs])?;
/// /* run the step with active.rootfs() as its root */
/// let info = s.diff(&active, &mut tar_out, &opts)?;
/// let snap = s.commit(&active, &chain_id, &info.diff_id)?; // optional
/// s.remove(active)?;
/// ```
pub trait Snapshotter: Send + Sync {
    /// `"overlay"` or `"copy"`.
    fn name(&self) -> &'static str;
    /// A writable root filesystem over `parents`: layer snapshot `fs` dirs
    /// from [`Snapshots::ensure`], top-most first. Empty for `FROM scratch`.
    fn prepare(&self, parents: &[PathBuf]) -> Result<ActiveSnapshot, SnapshotError>;
    /// A root filesystem over `parents` for looking at (`COPY --from`,
    /// `RUN --mount=from=`, exports): writable, but what is written is thrown
    /// away; `diff` and `commit` are not for it. Cheaper than `prepare` for
    /// the copy snapshotter (one copy instead of two).
    fn view(&self, parents: &[PathBuf]) -> Result<ActiveSnapshot, SnapshotError> {
        self.prepare(parents)
    }
    /// Writes the step's changes as an uncompressed layer tar.
    fn diff(
        &self,
        active: &ActiveSnapshot,
        out: &mut dyn Write,
        opts: &LayerOptions,
    ) -> Result<LayerInfo, SnapshotError>;
    /// Keeps the step's changes as the layer snapshot for `chain_id` (whose
    /// layer has `diff_id`, from `diff` with the same options) and returns its
    /// `fs` dir. The active snapshot must still be removed afterwards.
    fn commit(
        &self,
        active: &mut ActiveSnapshot,
        chain_id: &kiln_oci::Digest,
        diff_id: &kiln_oci::DiffId,
    ) -> Result<PathBuf, SnapshotError>;
    /// Whether `commit` keeps the layer itself (the upper dir), so that
    /// [`Snapshots::rewrite_layer`] can write its tar again later: the
    /// step's tar then needs only hashing at commit.
    fn keeps_layers(&self) -> bool {
        false
    }
    /// Unmounts and deletes the active snapshot.
    fn remove(&self, active: ActiveSnapshot) -> Result<(), SnapshotError>;
    /// The layer-snapshot cache this snapshotter works in.
    fn snapshots(&self) -> &Snapshots;
}

/// The snapshotter for this machine: `KILN_SNAPSHOTTER=overlay|copy` if
/// set, else overlay when a probe mount works (probed once per process),
/// else copy.
pub fn snapshotter(snapshots: Snapshots) -> Result<Box<dyn Snapshotter>, SnapshotError> {
    let want = std::env::var("KILN_SNAPSHOTTER").ok();
    match want.as_deref() {
        Some("overlay") => {
            if !overlay_works(&snapshots) {
                return Err(SnapshotError::OverlayUnavailable(
                    snapshots.root().to_path_buf(),
                ));
            }
            Ok(Box::new(OverlaySnapshotter::new(snapshots)))
        }
        Some("copy") => Ok(Box::new(CopySnapshotter::new(snapshots))),
        Some("") | None => {
            if overlay_works(&snapshots) {
                Ok(Box::new(OverlaySnapshotter::new(snapshots)))
            } else {
                tracing::info!("overlay mounts unavailable; using the copy snapshotter");
                Ok(Box::new(CopySnapshotter::new(snapshots)))
            }
        }
        Some(other) => Err(SnapshotError::UnknownBackend(other.to_string())),
    }
}

fn overlay_works(snapshots: &Snapshots) -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(|| {
        // The probe's unmount waits for an RCU grace period (~30 ms, a
        // third of a cached build), so a success is remembered until the
        // machine reboots; a failure is probed again every time.
        let marker = snapshots.root().join("overlay-works");
        let stamp = probe_stamp();
        if stamp.is_some() && std::fs::read(&marker).ok() == stamp {
            return true;
        }
        let works = match workdir::WorkDir::create(&snapshots.tmp_dir(), "probe-") {
            Ok(scratch) => crate::mount::probe_overlay(scratch.path()),
            Err(e) => {
                tracing::debug!("overlay probe: {e}");
                false
            }
        };
        if let Some(stamp) = stamp.filter(|_| works) {
            // Only a shortcut: a marker that cannot be written costs a probe.
            let _ = std::fs::write(&marker, stamp);
        }
        works
    })
}

/// What a remembered overlay probe holds for: this boot, this user.
fn probe_stamp() -> Option<Vec<u8>> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(format!("{} {}\n", boot.trim(), rustix::process::geteuid().as_raw()).into_bytes())
}

/// Removes a directory tree that may hold read-only directories.
pub(crate) fn remove_tree(path: &Path) -> Result<(), SnapshotError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(path)(e)),
    }
}
