//! `RUN --mount=type=cache` directories, as BuildKit's `getRefCacheDir`:
//!
//! - The cache is found by `id`, plus the seed's key when `from=` is given
//!   (BuildKit keys it `id:refID`), so a changed seed starts a new cache.
//! - A cache `from` a stage or image stands for that whole root file system
//!   and a mount shows its `source` subdirectory (BuildKit's cache ref has
//!   the seed as parent, the mount a selector). kiln copies a subtree of the
//!   seed into the cache the first time a mount asks for it (owners and
//!   modes kept). A cache without `from` is an empty directory with
//!   `mode`/`uid`/`gid`.
//! - `sharing`: `shared` instances are used by any number of steps at once;
//!   `locked` waits until no other step (in this or another kiln process)
//!   uses the cache; `private` takes a free instance and creates a new one
//!   when all are busy. Instances are `DIR`, `DIR-1`, `DIR-2`, … each with a
//!   `DIR.lock` file held with `flock` while a step runs.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kiln_dockerfile::CacheSharing;
use rustix::fs::{flock, FlockOperation};

use crate::error::{BuildError, Context};

/// How a new cache directory is made.
pub struct NewCache<'a> {
    /// The root of `from` and the clean relative `source` in it.
    pub seed: Option<(&'a Path, &'a str)>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A cache directory in use by one step; the lock goes with it.
pub struct CacheDir {
    /// The cache's first instance (what [`acquire`] was given).
    pub base: PathBuf,
    /// The instance in use.
    pub instance: PathBuf,
    /// What the mount shows: the instance or its `source` subdirectory.
    pub path: PathBuf,
    _lock: File,
}

/// The directory for the cache `base` (its path without instance suffix),
/// locked as `sharing` asks, created if missing.
pub fn acquire(base: &Path, sharing: CacheSharing, new: &NewCache) -> Result<CacheDir, BuildError> {
    let instance = |n: usize| match n {
        0 => base.to_path_buf(),
        n => PathBuf::from(format!("{}-{n}", base.display())),
    };
    for n in 0.. {
        let path = instance(n);
        let lock = open_lock(&path)?;
        let op = match sharing {
            CacheSharing::Shared => FlockOperation::LockShared,
            CacheSharing::Locked => FlockOperation::LockExclusive,
            CacheSharing::Private => FlockOperation::NonBlockingLockExclusive,
        };
        match flock(&lock, op) {
            Ok(()) => {}
            // A private cache whose instance is busy: try the next one.
            Err(rustix::io::Errno::WOULDBLOCK) => continue,
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .context(|| format!("locking cache mount {}", path.display()))
            }
        }
        if !path.exists() {
            create(&path, new).context(|| format!("creating cache mount {}", path.display()))?;
        }
        let mut dir = CacheDir {
            base: base.to_path_buf(),
            instance: path.clone(),
            path,
            _lock: lock,
        };
        dir.path = path_in(&dir, new)?;
        return Ok(dir);
    }
    unreachable!("the instance loop only ends by returning")
}

fn open_lock(dir: &Path) -> Result<File, BuildError> {
    let file = dir.with_extension("lock");
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent).context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&file)
        .context(|| format!("opening {}", file.display()))
}

/// Makes the cache in a temporary directory and renames it into place, so
/// an interrupted seeding never leaves a half-filled cache.
fn create(dir: &Path, new: &NewCache) -> Result<(), BuildError> {
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).context(|| format!("creating {}", tmp.display()))?;
    match new.seed {
        // The seed's root: its subtrees are copied in as mounts need them.
        Some((root, _)) => same_owner_mode(root, &tmp)?,
        None => set_owner_mode(&tmp, new.mode, new.uid, new.gid)?,
    }
    std::fs::rename(&tmp, dir).context(|| format!("renaming {}", tmp.display()))
}

/// What a mount of the locked `dir` shows, seeded as needed.
pub fn path_in(dir: &CacheDir, new: &NewCache) -> Result<PathBuf, BuildError> {
    match new.seed {
        Some((root, source)) => seed_subtree(root, source, &dir.instance),
        None => Ok(dir.instance.clone()),
    }
}

/// `cache/source`, copied from `root/source` unless an earlier mount did
/// (then it holds what earlier steps wrote). Parents are made like the
/// seed's.
fn seed_subtree(root: &Path, source: &str, cache: &Path) -> Result<PathBuf, BuildError> {
    let target = cache.join(source);
    if target.exists() {
        return Ok(target);
    }
    let from = root.join(source);
    let meta =
        std::fs::metadata(&from).context(|| format!("cache mount source /{source} of `from`"))?;
    if !meta.is_dir() {
        return Err(BuildError::other(
            "RUN --mount=type=cache",
            format!("source /{source} of `from` is not a directory"),
        ));
    }
    let mut rel = PathBuf::new();
    let parts: Vec<&str> = source.split('/').filter(|p| !p.is_empty()).collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        rel.push(part);
        let dir = cache.join(&rel);
        if !dir.exists() {
            std::fs::create_dir(&dir).context(|| format!("creating {}", dir.display()))?;
            same_owner_mode(&root.join(&rel), &dir)?;
        }
    }
    let tmp = PathBuf::from(format!("{}.kiln-seed", target.display()));
    let _ = std::fs::remove_dir_all(&tmp);
    crate::rootfs::copy_dir(&from, &tmp, None)?;
    same_owner_mode(&from, &tmp)?;
    std::fs::rename(&tmp, &target).context(|| format!("renaming {}", tmp.display()))?;
    Ok(target)
}

fn same_owner_mode(like: &Path, dir: &Path) -> Result<(), BuildError> {
    let meta = std::fs::metadata(like).context(|| format!("stat {}", like.display()))?;
    set_owner_mode(dir, meta.mode() & 0o7777, meta.uid(), meta.gid())
}

fn set_owner_mode(dir: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), BuildError> {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .context(|| format!("chown {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .context(|| format!("chmod {}", dir.display()))
}

/// What the cache mounts under `dir` use (`kiln system df`).
#[derive(Debug, Default)]
pub struct MountUsage {
    pub total: usize,
    /// In use by a running step.
    pub active: usize,
    pub bytes: u64,
    pub reclaimable: u64,
}

/// The instance directories under `dir` (and leftovers of interrupted
/// seeding), each with its lock file.
fn instances(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.path(), e.path().with_extension("lock")))
        .collect()
}

/// Takes the lock of an instance exclusively, `None` while a step uses it.
fn try_lock(lock_path: &Path) -> Result<Option<File>, BuildError> {
    let lock = open_lock(&lock_path.with_extension(""))?;
    match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(lock)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(std::io::Error::from(e))
            .context(|| format!("locking cache mount {}", lock_path.display())),
    }
}

pub fn usage(dir: &Path) -> Result<MountUsage, BuildError> {
    let mut u = MountUsage::default();
    for (path, lock) in instances(dir) {
        let bytes = kiln_fs::snapshot::tree_bytes(&path)
            .context(|| format!("measuring cache mount {}", path.display()))?;
        u.total += 1;
        u.bytes += bytes;
        match try_lock(&lock)? {
            Some(_) => u.reclaimable += bytes,
            None => u.active += 1,
        }
    }
    Ok(u)
}

/// Removes every cache mount under `dir` no step is using (moved into a
/// temp dir under `tmp` first, so a removal cut short leaves no half cache).
/// Returns how many and their bytes.
pub fn remove_unused(dir: &Path, tmp: &Path) -> Result<(usize, u64), BuildError> {
    let (mut n, mut bytes) = (0, 0);
    for (path, lock) in instances(dir) {
        let Some(_lock) = try_lock(&lock)? else {
            continue;
        };
        let size = kiln_fs::snapshot::tree_bytes(&path)
            .context(|| format!("measuring cache mount {}", path.display()))?;
        let trash = tempfile::Builder::new()
            .prefix("prune-")
            .tempdir_in(tmp)
            .context(|| format!("creating a directory in {}", tmp.display()))?;
        std::fs::rename(&path, trash.path().join("old"))
            .context(|| format!("removing cache mount {}", path.display()))?;
        trash
            .close()
            .context(|| format!("removing cache mount {}", path.display()))?;
        n += 1;
        bytes += size;
    }
    Ok((n, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const EMPTY: NewCache<'static> = NewCache {
        seed: None,
        mode: 0o755,
        uid: 0,
        gid: 0,
    };

    #[test]
    fn private_takes_a_new_instance_when_busy_shared_does_not() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("c");
        let first = acquire(&base, CacheSharing::Private, &EMPTY).unwrap();
        assert_eq!(first.path, base);
        let second = acquire(&base, CacheSharing::Private, &EMPTY).unwrap();
        assert_eq!(second.path, d.path().join("c-1"));
        drop(first);
        // A free instance is reused.
        let third = acquire(&base, CacheSharing::Private, &EMPTY).unwrap();
        assert_eq!(third.path, base);
        drop((second, third));
        let a = acquire(&base, CacheSharing::Shared, &EMPTY).unwrap();
        let b = acquire(&base, CacheSharing::Shared, &EMPTY).unwrap();
        assert_eq!((a.path.clone(), b.path.clone()), (base.clone(), base));
    }

    #[test]
    fn locked_waits_until_the_holder_is_done() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("c");
        let held = acquire(&base, CacheSharing::Locked, &EMPTY).unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let seen = released.clone();
        let b = base.clone();
        let waiter = std::thread::spawn(move || {
            let dir = acquire(&b, CacheSharing::Locked, &EMPTY).unwrap();
            (seen.load(Ordering::SeqCst), dir.path)
        });
        released.store(true, Ordering::SeqCst);
        drop(held);
        let (after_release, path) = waiter.join().unwrap();
        assert!(
            after_release,
            "the locked cache was handed out while in use"
        );
        assert_eq!(path, base);
    }

    #[test]
    fn seeded_cache_shows_the_source_and_keeps_writes() {
        let d = tempfile::tempdir().unwrap();
        let seed = d.path().join("seed");
        std::fs::create_dir_all(seed.join("data/sub")).unwrap();
        std::fs::write(seed.join("data/sub/f"), "x").unwrap();
        std::fs::set_permissions(seed.join("data"), std::fs::Permissions::from_mode(0o711))
            .unwrap();
        let new = NewCache {
            seed: Some((&seed, "data/sub")),
            ..EMPTY
        };
        let base = d.path().join("c");
        let dir = acquire(&base, CacheSharing::Locked, &new).unwrap();
        assert_eq!(dir.path, base.join("data/sub"));
        assert_eq!(std::fs::read(dir.path.join("f")).unwrap(), b"x");
        std::fs::write(dir.path.join("new"), "y").unwrap();
        // A wider source later sees the earlier writes; parents are like the seed's.
        let wide = NewCache {
            seed: Some((&seed, "data")),
            ..EMPTY
        };
        let p = path_in(&dir, &wide).unwrap();
        assert!(p.join("sub/new").exists());
        let mode = std::fs::metadata(base.join("data")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o711);
    }
}
