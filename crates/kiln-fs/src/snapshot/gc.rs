//! Giving layer snapshots back: listing them with their disk use, and
//! removing the ones no process holds (see the locking in `cache.rs`).

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kiln_oci::{DiffId, Digest};
use rustix::fs::{flock, FlockOperation};

use super::cache::{DIFF_ID, FS};
use super::{io_at, remove_tree, SnapshotError, Snapshots};

/// One complete layer snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotInfo {
    pub chain_id: Digest,
    /// The diff_id of its top layer (`None` if its marker is unreadable).
    pub diff_id: Option<DiffId>,
    /// Disk use of its directory (allocated blocks, hard links once).
    pub bytes: u64,
    /// Some process (this one included) holds it.
    pub in_use: bool,
}

/// Where a snapshot's disk use is remembered (snapshots never change).
const DU: &str = "du";

impl Snapshots {
    /// Every complete layer snapshot.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.root()).map_err(io_at(self.root()))? {
            let entry = entry.map_err(io_at(self.root()))?;
            let Some(chain_id) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            else {
                continue; // active/, tmp/, lock files
            };
            let dir = entry.path();
            let Ok(marker) = std::fs::read_to_string(dir.join(DIFF_ID)) else {
                continue; // not complete (or removed meanwhile)
            };
            out.push(SnapshotInfo {
                chain_id,
                diff_id: marker.trim().parse().ok().map(DiffId),
                bytes: self.disk_use(&dir)?,
                in_use: try_lock(&dir.join(DIFF_ID))?.is_none(),
            });
        }
        out.sort_by_key(|s| s.chain_id);
        Ok(out)
    }

    /// Removes the snapshot for `chain_id` unless a process holds it.
    /// Returns whether it was removed (a missing one was not).
    pub fn remove(&self, chain_id: &Digest) -> Result<bool, SnapshotError> {
        let dir = self.dir(chain_id);
        let marker = dir.join(DIFF_ID);
        let Some(_lock) = try_lock(&marker)? else {
            return Ok(false);
        };
        // Renamed away under the lock, so a holder that waited for it sees
        // the snapshot gone, and a half-deleted one never looks complete.
        let trash = self.staging()?;
        let to = trash.path().join("old");
        match std::fs::rename(&dir, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_at(&dir)(e)),
        }
        remove_tree(&to)?;
        trash.remove()?;
        Ok(true)
    }

    /// Disk use of a snapshot dir, computed once and kept in `DIR/du`.
    fn disk_use(&self, dir: &Path) -> Result<u64, SnapshotError> {
        let cached = dir.join(DU);
        if let Some(n) = std::fs::read_to_string(&cached)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return Ok(n);
        }
        let mut seen = HashSet::new();
        let n =
            tree_blocks(&dir.join(FS), &mut seen)? + tree_blocks(&dir.join(DIFF_ID), &mut seen)?;
        // Only a shortcut for next time: a snapshot removed meanwhile (or
        // a full disk) just goes unremembered.
        let remembered = tempfile::NamedTempFile::new_in(dir).and_then(|tmp| {
            std::fs::write(tmp.path(), n.to_string())?;
            tmp.persist(&cached).map(drop).map_err(|e| e.error)
        });
        if let Err(e) = remembered {
            tracing::debug!("remembering the size of {}: {e}", dir.display());
        }
        Ok(n)
    }
}

/// The exclusive lock on a snapshot's marker, `None` while a process holds
/// it (or when it is gone).
fn try_lock(marker: &Path) -> Result<Option<File>, SnapshotError> {
    let file = match File::open(marker) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(marker)(e)),
    };
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(io_at(marker)(e.into())),
    }
}

/// Allocated bytes of the tree at `path` (not following symlinks), each
/// inode counted once, as `du` counts.
pub fn tree_bytes(path: &Path) -> Result<u64, SnapshotError> {
    tree_blocks(path, &mut HashSet::new())
}

fn tree_blocks(path: &Path, seen: &mut HashSet<(u64, u64)>) -> Result<u64, SnapshotError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_at(path)(e)),
    };
    let mut n = if seen.insert((meta.dev(), meta.ino())) {
        meta.blocks() * 512
    } else {
        0
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io_at(path))? {
            n += tree_blocks(&entry.map_err(io_at(path))?.path(), seen)?;
        }
    }
    Ok(n)
}
