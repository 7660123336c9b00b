//! The layer-snapshot cache: each image layer extracted once (overlay-lower
//! form) under `ROOT/snapshots/<chain-id hex>/`, created atomically so that
//! concurrent builders can race for the same layer safely.
//!
//! A process that uses a snapshot holds a shared `flock` on its `diff_id`
//! file until it ends; `kiln prune` (`gc.rs`) removes only snapshots whose
//! lock it can take exclusively, so a running build never loses a lower dir.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_oci::{DiffId, Digest};
use rustix::fs::{flock, FlockOperation};

use super::workdir::{cleanup_stale, WorkDir};
use super::{io_at, SnapshotError};
use crate::apply::{apply_compressed_layer, ApplyMode};

#[derive(Clone, Debug)]
pub struct Snapshots {
    root: PathBuf,
    /// The shared locks this process holds on the snapshots it used.
    held: Arc<Mutex<HashMap<Digest, File>>>,
}

pub(crate) const FS: &str = "fs";
pub(crate) const DIFF_ID: &str = "diff_id";
/// The file-hash index of a snapshot's files (see `file_hashes`), when known.
pub(crate) const HASHES: &str = "hashes";

impl Snapshots {
    /// Opens (creating) `store_root/snapshots`.
    pub fn open(store_root: &Path) -> Result<Snapshots, SnapshotError> {
        let root = store_root.join("snapshots");
        for d in [root.clone(), root.join("active"), root.join("tmp")] {
            std::fs::create_dir_all(&d).map_err(io_at(&d))?;
        }
        let snaps = Snapshots {
            root,
            held: Arc::default(),
        };
        let stale = snaps.cleanup_stale()?;
        if stale > 0 {
            tracing::info!("removed {stale} snapshot dirs left by processes that are gone");
        }
        Ok(snaps)
    }

    /// Removes active snapshots and extractions whose process is gone
    /// (detaching mounts they left); ones in use by any process are kept.
    pub fn cleanup_stale(&self) -> Result<usize, SnapshotError> {
        Ok(cleanup_stale(&self.active_dir())? + cleanup_stale(&self.tmp_dir())?)
    }

    /// `ROOT/snapshots`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub(crate) fn active_dir(&self) -> PathBuf {
        self.root.join("active")
    }

    pub(crate) fn dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join(chain_id.hex())
    }

    /// The file-hash index of the snapshot whose `fs` dir is `fs`.
    pub fn hashes_of(fs: &Path) -> PathBuf {
        fs.with_file_name(HASHES)
    }

    /// The `fs` dir of the snapshot for `chain_id` if it is complete; it
    /// stays (prune leaves it alone) until this process ends.
    pub fn get(&self, chain_id: &Digest) -> Option<PathBuf> {
        match self.hold(chain_id) {
            Ok(true) => Some(self.dir(chain_id).join(FS)),
            Ok(false) => None,
            Err(e) => {
                tracing::debug!("snapshot {chain_id}: {e}; extracting it again");
                None
            }
        }
    }

    /// Takes a shared lock on the snapshot for `chain_id`; `false` when
    /// there is none (or prune just moved it away).
    fn hold(&self, chain_id: &Digest) -> io::Result<bool> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.contains_key(chain_id) {
            return Ok(true);
        }
        let marker = self.dir(chain_id).join(DIFF_ID);
        let Some(file) = open_if_present(&marker)? else {
            return Ok(false);
        };
        flock(&file, FlockOperation::LockShared)?;
        // Prune renames a snapshot away while it holds the lock: the file
        // locked must still be the one in place.
        let Some(now) = metadata_if_present(&marker)? else {
            return Ok(false);
        };
        let locked = file.metadata()?;
        if (now.dev(), now.ino()) != (locked.dev(), locked.ino()) {
            return Ok(false);
        }
        held.insert(*chain_id, file);
        Ok(true)
    }

    /// The `fs` dir for `chain_id`, extracting the layer (`open` gives its
    /// blob, compressed or not) when it is not there yet. The layer's
    /// diff_id is verified while extracting.
    pub fn ensure<R: Read>(
        &self,
        chain_id: &Digest,
        diff_id: &DiffId,
        open: impl FnOnce() -> io::Result<R>,
    ) -> Result<PathBuf, SnapshotError> {
        if let Some(fs) = self.get(chain_id) {
            return Ok(fs);
        }
        let staging = self.staging()?;
        let fs = staging.path().join(FS);
        create_root_dir(&fs)?;
        let reader = open().map_err(io_at(&fs))?;
        let stats = apply_compressed_layer(&fs, reader, ApplyMode::OverlayLower).map_err(|e| {
            SnapshotError::Extract {
                chain_id: chain_id.to_string(),
                diff_id: diff_id.to_string(),
                source: e,
            }
        })?;
        let actual = stats.diff_id.expect("apply computes the diff_id");
        if &actual != diff_id {
            return Err(SnapshotError::DiffIdMismatch {
                chain_id: chain_id.to_string(),
                expected: diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
        self.publish(staging, chain_id, diff_id)
    }

    /// A fresh directory under `tmp/` (removed when dropped unless published).
    pub(crate) fn staging(&self) -> Result<WorkDir, SnapshotError> {
        WorkDir::create(&self.tmp_dir(), "snap-")
    }

    /// Moves a complete staging dir (holding `fs/`) into place, locked for
    /// this process before it becomes visible. When another process got
    /// there first, ours is discarded and theirs is used.
    pub(crate) fn publish(
        &self,
        mut staging: WorkDir,
        chain_id: &Digest,
        diff_id: &DiffId,
    ) -> Result<PathBuf, SnapshotError> {
        let marker = staging.path().join(DIFF_ID);
        std::fs::write(&marker, diff_id.to_string()).map_err(io_at(&marker))?;
        let lock = File::open(&marker).map_err(io_at(&marker))?;
        flock(&lock, FlockOperation::LockShared).map_err(|e| io_at(&marker)(e.into()))?;
        let dest = self.dir(chain_id);
        // Theirs can be pruned between our failed rename and our lock on
        // it (its process gone): then ours goes in after all.
        for _ in 0..3 {
            match std::fs::rename(staging.path(), &dest) {
                Ok(()) => {
                    staging.disarm();
                    let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                    held.insert(*chain_id, lock);
                    return Ok(dest.join(FS));
                }
                Err(e) if dest.exists() => {
                    tracing::debug!(
                        "snapshot {chain_id} created concurrently ({e}); using that one"
                    );
                    if self.hold(chain_id).map_err(io_at(&dest))? {
                        staging.remove()?;
                        return Ok(dest.join(FS));
                    }
                }
                Err(e) => return Err(io_at(&dest)(e)),
            }
        }
        Err(io_at(&dest)(io::Error::other(
            "it keeps appearing and disappearing (a concurrent prune?)",
        )))
    }
}

fn open_if_present(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn metadata_if_present(path: &Path) -> io::Result<Option<std::fs::Metadata>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The root directory of a snapshot: 0755, as image root filesystems are
/// (a layer's own `./` entry is not applied, as in Docker).
pub(crate) fn create_root_dir(path: &Path) -> Result<(), SnapshotError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(path)
        .map_err(io_at(path))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io_at(path))
}
