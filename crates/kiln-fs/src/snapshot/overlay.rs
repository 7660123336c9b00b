//! Overlay snapshotter: layer snapshots are the lower dirs, a step writes to
//! a fresh upper dir, and the upper dir is the diff.

use std::io::Write;
use std::path::PathBuf;

use std::sync::Arc;

use super::cache::{create_root_dir, HASHES};
use super::kept::{write_marker, LAYER};
use super::workdir::WorkDir;
use super::{io_at, ActiveSnapshot, SnapshotError, Snapshots, Snapshotter};
use crate::file_hashes::FileHashes;
use crate::layer::{write_upper_recording, LayerInfo, LayerOptions};
use crate::mount::mount_overlay;

pub struct OverlaySnapshotter {
    snapshots: Snapshots,
}

impl OverlaySnapshotter {
    pub fn new(snapshots: Snapshots) -> Self {
        OverlaySnapshotter { snapshots }
    }
}

fn upper(active: &ActiveSnapshot) -> PathBuf {
    active.dir.join("upper")
}

impl Snapshotter for OverlaySnapshotter {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn prepare(&self, parents: &[PathBuf]) -> Result<ActiveSnapshot, SnapshotError> {
        let work = WorkDir::create(&self.snapshots.active_dir(), "ovl-")?;
        let dir = work.path().to_path_buf();
        let mut snap = ActiveSnapshot {
            rootfs: dir.join("upper"),
            dir,
            work,
            mount: None,
            upper: None,
        };
        let res = (|| {
            create_root_dir(&upper(&snap))?;
            if parents.is_empty() {
                // FROM scratch: nothing to merge, the upper dir is the root.
                return Ok(());
            }
            for d in ["work", "merged"] {
                let p = snap.dir.join(d);
                std::fs::create_dir(&p).map_err(io_at(&p))?;
            }
            let merged = snap.dir.join("merged");
            snap.mount = Some(mount_overlay(
                parents,
                &upper(&snap),
                &snap.dir.join("work"),
                &merged,
            )?);
            snap.rootfs = merged;
            snap.upper = Some(upper(&snap));
            Ok(())
        })();
        match res {
            Ok(()) => Ok(snap),
            Err(e) => {
                let _ = self.remove(snap);
                Err(e)
            }
        }
    }

    fn diff(
        &self,
        active: &ActiveSnapshot,
        out: &mut dyn Write,
        opts: &LayerOptions,
    ) -> Result<LayerInfo, SnapshotError> {
        // The files' hashes, kept with the snapshot if it is committed.
        let hashes = Arc::new(FileHashes::default());
        let info = write_upper_recording(&upper(active), out, opts, Some(hashes.clone()))?;
        let file = active.dir.join(HASHES);
        hashes.write_to(&file).map_err(io_at(&file))?;
        write_marker(&active.dir, opts)?;
        Ok(info)
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
        // The upper dir already is an overlay lower dir (whiteouts and
        // opaque markers in overlay form); it moves into the cache once
        // nothing has it mounted.
        if let Some(m) = active.mount.take() {
            m.unmount()?;
        }
        let staging = self.snapshots.staging()?;
        let from = upper(active);
        let to = staging.path().join("fs");
        std::fs::rename(&from, &to).map_err(io_at(&from))?;
        for name in [HASHES, LAYER] {
            let from = active.dir.join(name);
            if from.is_file() {
                let to = staging.path().join(name);
                std::fs::rename(&from, &to).map_err(io_at(&from))?;
            }
        }
        let fs = self.snapshots.publish(staging, chain_id, diff_id)?;
        self.snapshots.link_layer(chain_id, diff_id)?;
        Ok(fs)
    }

    fn keeps_layers(&self) -> bool {
        true
    }

    fn remove(&self, mut active: ActiveSnapshot) -> Result<(), SnapshotError> {
        if let Some(m) = active.mount.take() {
            m.unmount()?;
        }
        active.work.remove()
    }

    fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }
}
