//! Copy snapshotter, for machines without overlayfs: a step gets a full
//! copy of its parents' merged tree, and its diff is a comparison with a
//! pristine copy. Layer snapshots keep the overlay-lower form, so both
//! snapshotters share the cache; merging them replays each as a tar through
//! the same safe extractor that applies image layers.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::cache::create_root_dir;
use super::workdir::WorkDir;
use super::{io_at, ActiveSnapshot, SnapshotError, Snapshots, Snapshotter};
use crate::apply::{apply_layer_protected, apply_layer_with, ApplyMode, Protected};
use crate::layer::{write_layer_from_compare, write_layer_from_upper, LayerInfo, LayerOptions};

pub struct CopySnapshotter {
    snapshots: Snapshots,
}

impl CopySnapshotter {
    pub fn new(snapshots: Snapshots) -> Self {
        CopySnapshotter { snapshots }
    }
}

fn lower(active: &ActiveSnapshot) -> PathBuf {
    active.dir.join("lower")
}

/// Applies the overlay-form tree `src` onto `dst` (whiteouts delete,
/// opaque dirs are emptied first), streaming a tar between two threads.
pub(crate) fn replay(src: &Path, dst: &Path, mode: ApplyMode) -> Result<(), SnapshotError> {
    replay_protected(src, dst, mode, &Protected::default())
}

/// [`replay`] that leaves `protected` paths of `dst` alone.
pub(crate) fn replay_protected(
    src: &Path,
    dst: &Path,
    mode: ApplyMode,
    protected: &Protected,
) -> Result<(), SnapshotError> {
    let (r, w) = rustix::pipe::pipe().map_err(|e| io_at(src)(e.into()))?;
    let src_owned = src.to_path_buf();
    let writer = std::thread::spawn(move || {
        let mut out = BufWriter::with_capacity(256 * 1024, File::from(w));
        let res = write_layer_from_upper(&src_owned, &mut out, &LayerOptions::default());
        let flushed = out.flush();
        res.map(|_| ())
            .map_err(SnapshotError::from)
            .and_then(|()| flushed.map_err(|e| io_at(&src_owned)(e)))
    });
    let applied = apply_layer_protected(dst, File::from(r), mode, protected);
    let written = writer.join().unwrap_or_else(|_| {
        Err(io_at(src)(std::io::Error::other(
            "tar writer thread panicked",
        )))
    });
    // The reader's error explains a writer's broken pipe, so it goes first.
    applied?;
    written
}

impl CopySnapshotter {
    /// The merged parents in `rootfs/`, and with `with_lower` a pristine
    /// copy in `lower/` to compare against.
    fn build(
        &self,
        parents: &[PathBuf],
        with_lower: bool,
    ) -> Result<ActiveSnapshot, SnapshotError> {
        let work = WorkDir::create(&self.snapshots.active_dir(), "copy-")?;
        let dir = work.path().to_path_buf();
        let snap = ActiveSnapshot {
            rootfs: dir.join("rootfs"),
            dir,
            work,
            mount: None,
            upper: None,
        };
        let res = (|| {
            create_root_dir(&snap.rootfs)?;
            if !with_lower {
                for layer in parents.iter().rev() {
                    replay(layer, &snap.rootfs, ApplyMode::Merge)?;
                }
                return Ok(());
            }
            create_root_dir(&lower(&snap))?;
            for layer in parents.iter().rev() {
                replay(layer, &lower(&snap), ApplyMode::Merge)?;
            }
            replay(&lower(&snap), &snap.rootfs, ApplyMode::Merge)
        })();
        match res {
            Ok(()) => Ok(snap),
            Err(e) => {
                let _ = snap.work.remove();
                Err(e)
            }
        }
    }
}

impl Snapshotter for CopySnapshotter {
    fn name(&self) -> &'static str {
        "copy"
    }

    fn prepare(&self, parents: &[PathBuf]) -> Result<ActiveSnapshot, SnapshotError> {
        self.build(parents, true)
    }

    fn view(&self, parents: &[PathBuf]) -> Result<ActiveSnapshot, SnapshotError> {
        self.build(parents, false)
    }

    fn diff(
        &self,
        active: &ActiveSnapshot,
        out: &mut dyn Write,
        opts: &LayerOptions,
    ) -> Result<LayerInfo, SnapshotError> {
        Ok(write_layer_from_compare(
            &lower(active),
            &active.rootfs,
            out,
            opts,
        )?)
    }

    fn commit(
        &self,
        active: &mut ActiveSnapshot,
        chain_id: &kiln_oci::Digest,
        diff_id: &kiln_oci::DiffId,
    ) -> Result<PathBuf, SnapshotError> {
        if let Some(fs) = self.snapshots.get(chain_id) {
            return Ok(fs);
        }
        let staging = self.snapshots.staging()?;
        let tar_path = staging.path().join("layer.tar");
        {
            let f = File::create(&tar_path).map_err(io_at(&tar_path))?;
            let mut out = BufWriter::new(f);
            write_layer_from_compare(
                &lower(active),
                &active.rootfs,
                &mut out,
                &LayerOptions::default(),
            )?;
            out.flush().map_err(io_at(&tar_path))?;
        }
        let fs = staging.path().join("fs");
        create_root_dir(&fs)?;
        let f = File::open(&tar_path).map_err(io_at(&tar_path))?;
        apply_layer_with(&fs, std::io::BufReader::new(f), ApplyMode::OverlayLower)?;
        std::fs::remove_file(&tar_path).map_err(io_at(&tar_path))?;
        self.snapshots.publish(staging, chain_id, diff_id)
    }

    fn remove(&self, active: ActiveSnapshot) -> Result<(), SnapshotError> {
        active.work.remove()
    }

    fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }
}
