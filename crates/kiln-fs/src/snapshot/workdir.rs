//! Private working directories under `active/` and `tmp/`, each guarded by
//! an exclusive `flock` on a sibling `<name>.lock` held for as long as the
//! directory is in use. A directory whose lock can be taken belongs to a
//! process that is gone, so [`cleanup_stale`] can remove it (and detach a
//! mount left on it) without disturbing concurrent builders.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use rustix::mount::{unmount, UnmountFlags};

use super::{io_at, remove_tree, SnapshotError};

const LOCK_SUFFIX: &str = ".lock";
const MIN_AGE: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct WorkDir {
    path: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    armed: bool,
}

impl WorkDir {
    /// Creates `parent/<prefix><random>` with its lock taken. The lock file
    /// comes first, so a directory is never visible unlocked.
    pub fn create(parent: &Path, prefix: &str) -> Result<WorkDir, SnapshotError> {
        let tmp = tempfile::Builder::new()
            .prefix(prefix)
            .suffix(LOCK_SUFFIX)
            .tempfile_in(parent)
            .map_err(io_at(parent))?;
        let (lock, lock_path) = tmp.keep().map_err(|e| io_at(parent)(e.error))?;
        flock(&lock, FlockOperation::LockExclusive).map_err(|e| io_at(&lock_path)(e.into()))?;
        let name = lock_path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(LOCK_SUFFIX))
            .expect("named with the suffix above")
            .to_string();
        let path = parent.join(name);
        let work = WorkDir {
            path,
            lock_path,
            _lock: lock,
            armed: true,
        };
        std::fs::create_dir(&work.path).map_err(io_at(&work.path))?;
        Ok(work)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory was moved away (published): only the lock file goes.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Removes the directory now, reporting failure.
    pub fn remove(mut self) -> Result<(), SnapshotError> {
        let res = remove_tree(&self.path);
        self.armed = false;
        res
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = remove_tree(&self.path) {
                tracing::warn!("{e}");
            }
        }
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// Removes directories in `dir` whose owner is gone, first detaching a
/// mount left on their `merged/`. Returns how many were removed.
pub(crate) fn cleanup_stale(dir: &Path) -> Result<usize, SnapshotError> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_at(dir)(e)),
    };
    for ent in entries {
        let ent = ent.map_err(io_at(dir))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let (work, lock_path) = match name.strip_suffix(LOCK_SUFFIX) {
            Some(stem) => (dir.join(stem), ent.path()),
            None => (ent.path(), dir.join(format!("{name}{LOCK_SUFFIX}"))),
        };
        if name.ends_with(LOCK_SUFFIX) && work.exists() {
            continue; // handled with its directory
        }
        // Between creating its lock file and locking it, a new owner is
        // briefly unprotected; anything that young is left alone.
        let young = ent
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < MIN_AGE);
        if young {
            continue;
        }
        let lock = match File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
        {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!("cannot open {}: {e}", lock_path.display());
                continue;
            }
        };
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            continue; // in use
        }
        if work.exists() {
            let merged = work.join("merged");
            match unmount(&merged, UnmountFlags::DETACH) {
                Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
                Err(e) => {
                    // Never delete through a mount we could not remove.
                    tracing::warn!("stale snapshot {}: detach failed: {e}", work.display());
                    continue;
                }
            }
            remove_tree(&work)?;
            removed += 1;
        }
        let _ = std::fs::remove_file(&lock_path);
    }
    Ok(removed)
}
