//! The root snapshotter, for `--isolation=chroot` (kaniko's model): a step's
//! root filesystem is the live root kiln runs in (normally `/` of an
//! unprivileged container). `prepare` makes that root hold exactly the
//! parents' files — applying only the missing layers when it already holds
//! the parents' base, else emptying it first — and indexes it; `diff` is
//! the comparison with a second index ([`Index`]). Paths kiln needs (its
//! store, binary, the build context) and the container's mount points are
//! protected: never indexed, written or deleted.
//!
//! One root serves one step at a time: `prepare` waits until the previous
//! step's snapshot is removed. Views (`COPY --from`) are copies under the
//! store, made by the copy snapshotter.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use super::cache::create_root_dir;
use super::copy::replay_protected;
use super::scan::Index;
use super::workdir::WorkDir;
use super::{io_at, ActiveSnapshot, CopySnapshotter, SnapshotError, Snapshots, Snapshotter};
use crate::apply::{apply_layer_with, ApplyMode, Protected};
use crate::layer::{write_layer_from_scan, LayerInfo, LayerOptions};

pub struct RootSnapshotter {
    root: PathBuf,
    protected: Protected,
    copy: CopySnapshotter,
    state: Mutex<State>,
    free: Condvar,
}

#[derive(Default)]
struct State {
    busy: bool,
    /// The layer snapshots (top first) the root holds exactly; `None` when
    /// unknown (a step failed half-way, or nothing was laid yet).
    holds: Option<Vec<PathBuf>>,
    /// The index of the root as `holds` left it.
    index: Index,
    /// The parents of the active step and the root's index after it.
    parents: Vec<PathBuf>,
    after: Option<Index>,
}

const LAYER_TAR: &str = "layer.tar";

impl RootSnapshotter {
    /// Works in `root` (`/` in production), never touching `protected`
    /// (relative to `root`).
    pub fn new(snapshots: Snapshots, root: PathBuf, protected: Protected) -> Self {
        RootSnapshotter {
            root,
            protected,
            copy: CopySnapshotter::new(snapshots),
            state: Mutex::new(State::default()),
            free: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the root to exactly `parents` and returns its index.
    fn lay(
        &self,
        holds: Option<Vec<PathBuf>>,
        parents: &[PathBuf],
    ) -> Result<Index, SnapshotError> {
        let missing = match &holds {
            Some(h) if parents.ends_with(h) => &parents[..parents.len() - h.len()],
            _ => {
                self.clear()?;
                parents
            }
        };
        for layer in missing.iter().rev() {
            replay_protected(layer, &self.root, ApplyMode::Merge, &self.protected)?;
        }
        Index::scan(&self.root, &self.protected).map_err(io_at(&self.root))
    }

    /// Removes everything in the root but the protected paths.
    fn clear(&self) -> Result<(), SnapshotError> {
        let dir = File::open(&self.root).map_err(io_at(&self.root))?;
        for ent in std::fs::read_dir(&self.root).map_err(io_at(&self.root))? {
            let name = ent.map_err(io_at(&self.root))?.file_name();
            self.protected
                .remove_at(dir.as_fd(), Path::new(&name), &name)
                .map_err(io_at(&self.root.join(&name)))?;
        }
        Ok(())
    }

    fn is_ours(&self, active: &ActiveSnapshot) -> bool {
        active.rootfs == self.root
    }
}

impl Snapshotter for RootSnapshotter {
    fn name(&self) -> &'static str {
        "root"
    }

    fn prepare(&self, parents: &[PathBuf]) -> Result<ActiveSnapshot, SnapshotError> {
        let mut st = self.lock();
        while st.busy {
            st = self.free.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let work = WorkDir::create(&self.snapshots().active_dir(), "root-")?;
        // Unknown until the step's diff says otherwise.
        let holds = st.holds.take();
        let index = if holds.as_deref() == Some(parents) {
            std::mem::take(&mut st.index)
        } else {
            self.lay(holds, parents)?
        };
        st.index = index;
        st.parents = parents.to_vec();
        st.after = None;
        st.busy = true;
        Ok(ActiveSnapshot {
            mount: None,
            dir: work.path().to_path_buf(),
            work,
            rootfs: self.root.clone(),
            upper: None,
        })
    }

    fn view(&self, parents: &[PathBuf]) -> Result<ActiveSnapshot, SnapshotError> {
        self.copy.view(parents)
    }

    fn diff(
        &self,
        active: &ActiveSnapshot,
        out: &mut dyn Write,
        opts: &LayerOptions,
    ) -> Result<LayerInfo, SnapshotError> {
        let mut st = self.lock();
        let after = Index::scan(&self.root, &self.protected).map_err(io_at(&self.root))?;
        // A copy of the layer for `commit`, which extracts it as a snapshot.
        let copy_path = active.dir.join(LAYER_TAR);
        let copy = File::create(&copy_path).map_err(io_at(&copy_path))?;
        let mut tee = Tee(out, BufWriter::new(copy));
        let info = write_layer_from_scan(&self.root, &st.index, &after, &mut tee, opts)?;
        tee.1.flush().map_err(io_at(&copy_path))?;
        if info.is_empty() {
            // No commit follows: the root still holds the parents.
            st.holds = Some(st.parents.clone());
            st.index = after;
        } else {
            st.after = Some(after);
        }
        Ok(info)
    }

    fn commit(
        &self,
        active: &mut ActiveSnapshot,
        chain_id: &kiln_oci::Digest,
        diff_id: &kiln_oci::DiffId,
    ) -> Result<PathBuf, SnapshotError> {
        let fs = match self.snapshots().get(chain_id) {
            Some(fs) => fs,
            None => {
                let staging = self.snapshots().staging()?;
                let fs = staging.path().join("fs");
                create_root_dir(&fs)?;
                let tar = active.dir.join(LAYER_TAR);
                let f = File::open(&tar).map_err(io_at(&tar))?;
                apply_layer_with(&fs, std::io::BufReader::new(f), ApplyMode::OverlayLower)?;
                self.snapshots().publish(staging, chain_id, diff_id)?
            }
        };
        let mut st = self.lock();
        if let Some(after) = st.after.take() {
            let mut holds = vec![fs.clone()];
            holds.extend(st.parents.iter().cloned());
            st.holds = Some(holds);
            st.index = after;
        }
        Ok(fs)
    }

    fn remove(&self, active: ActiveSnapshot) -> Result<(), SnapshotError> {
        if !self.is_ours(&active) {
            return self.copy.remove(active);
        }
        let removed = active.work.remove();
        let mut st = self.lock();
        st.busy = false;
        self.free.notify_one();
        removed
    }

    fn snapshots(&self) -> &Snapshots {
        self.copy.snapshots()
    }
}

/// Writes everything to both.
struct Tee<'a, W: Write>(&'a mut dyn Write, W);

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}
