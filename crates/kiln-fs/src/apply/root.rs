//! A directory treated as `/`: every lookup goes through `openat2` with
//! `RESOLVE_IN_ROOT`, so symlinks (absolute or with `..`) resolve as if the
//! process were chrooted there and can never lead outside. Final components
//! are then handled with `*at` calls on the resolved parent that never follow
//! a symlink.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{
    openat, openat2, statat, unlinkat, AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags,
};

use super::name::RelPath;

pub struct Root {
    fd: OwnedFd,
    /// Last parent directory handed out, reused for runs of entries in the
    /// same directory. Dropped whenever something is removed or a symlink is
    /// created, since either can change what a path resolves to.
    cache: Option<(RelPath, OwnedFd)>,
}

const DIR_PATH: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

impl Root {
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = openat(
            rustix::fs::CWD,
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd, cache: None })
    }

    pub fn invalidate(&mut self) {
        self.cache = None;
    }

    /// Opens `rel` (resolved inside the root) as a directory handle.
    pub fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        if rel.as_os_str().is_empty() {
            return openat(&self.fd, ".", DIR_PATH, Mode::empty()).map_err(Into::into);
        }
        resolve_in_root(&self.fd, rel, DIR_PATH)
    }

    /// Opens `rel` as a directory, creating missing components 0755 the way
    /// Docker does for parents a tar does not list.
    pub fn open_or_create_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        match self.open_dir(rel) {
            Err(e) if e.raw_os_error() == Some(libc_enoent()) => {}
            other => return other,
        }
        let mut fd = self.open_dir(Path::new(""))?;
        let mut prefix = PathBuf::new();
        for comp in rel.components() {
            prefix.push(comp);
            match self.open_dir(&prefix) {
                Ok(next) => fd = next,
                Err(e) if e.raw_os_error() == Some(libc_enoent()) => {
                    match rustix::fs::mkdirat(&fd, comp.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    // Re-resolve: the name may be a dangling symlink, which
                    // must fail here rather than be followed blindly.
                    fd = self.open_dir(&prefix)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(fd)
    }

    /// The parent directory for an entry, cached across consecutive calls.
    pub fn parent(&mut self, parent: &RelPath, create: bool) -> io::Result<BorrowedFd<'_>> {
        let hit = matches!(&self.cache, Some((p, _)) if p == parent);
        if !hit {
            let fd = if create {
                self.open_or_create_dir(parent.as_path())?
            } else {
                self.open_dir(parent.as_path())?
            };
            self.cache = Some((parent.clone(), fd));
        }
        Ok(self
            .cache
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .expect("set above"))
    }
}

fn libc_enoent() -> i32 {
    rustix::io::Errno::NOENT.raw_os_error()
}

/// Set when `openat2` turned out to be unavailable (kernel before 5.6, or
/// blocked by a seccomp profile): lookups then walk in user space.
static USERSPACE: AtomicBool = AtomicBool::new(false);

/// Makes every later lookup use the user-space walk (tests of the fallback).
#[doc(hidden)]
pub fn force_userspace_resolution() {
    USERSPACE.store(true, Ordering::Relaxed);
}

fn resolve_in_root(root: &OwnedFd, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    if USERSPACE.load(Ordering::Relaxed) {
        return resolve_userspace(root, rel);
    }
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    // EAGAIN means a concurrent rename raced the lookup; the kernel asks us
    // to retry.
    let mut tries = 0;
    loop {
        match openat2(root, rel, flags, Mode::empty(), how) {
            Err(rustix::io::Errno::AGAIN) if tries < 16 => tries += 1,
            Err(e @ (rustix::io::Errno::NOSYS | rustix::io::Errno::PERM)) => {
                tracing::info!("openat2 unavailable ({e}); resolving paths in user space");
                force_userspace_resolution();
                return resolve_userspace(root, rel);
            }
            r => return r.map_err(Into::into),
        }
    }
}

/// `RESOLVE_IN_ROOT` done by hand, one component at a time, for a
/// directory: `..` never climbs above the root, a symlink's target is
/// walked from the root (absolute) or from where it sits (relative), at most
/// 40 symlinks. Each step opens the next component `O_NOFOLLOW` relative to
/// the previous descriptor, so nothing is resolved outside the root. Unlike
/// openat2 it does not detect a rename racing the walk, which extraction
/// does not do (it is the only writer of its target).
fn resolve_userspace(root: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    use std::collections::VecDeque;
    use std::os::unix::ffi::OsStrExt;

    // Same limit as the kernel's lookups, so both ways agree on what exists.
    if rel.as_os_str().len() >= 4096 {
        return Err(rustix::io::Errno::NAMETOOLONG.into());
    }
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut queue: VecDeque<Vec<u8>> = rel
        .as_os_str()
        .as_bytes()
        .split(|b| *b == b'/')
        .map(<[u8]>::to_vec)
        .collect();
    let mut links = 0;
    while let Some(comp) = queue.pop_front() {
        match comp.as_slice() {
            b"" | b"." => continue,
            b".." => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        let name = OsStr::from_bytes(&comp);
        let cur = stack.last().unwrap_or(root);
        let fd = openat(
            cur,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => stack.push(fd),
            FileType::Symlink => {
                links += 1;
                if links > 40 {
                    return Err(rustix::io::Errno::LOOP.into());
                }
                let target = rustix::fs::readlinkat(cur, name, Vec::new())?;
                let target = target.as_bytes();
                if target.first() == Some(&b'/') {
                    stack.clear();
                }
                for part in target.split(|b| *b == b'/').rev() {
                    queue.push_front(part.to_vec());
                }
            }
            _ => return Err(rustix::io::Errno::NOTDIR.into()),
        }
    }
    match stack.pop() {
        Some(fd) => Ok(fd),
        None => Ok(openat(root, ".", DIR_PATH, Mode::empty())?),
    }
}

/// `lstat` of `name` in `dir`; `None` when it does not exist.
pub fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<rustix::fs::Stat>> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` in `dir` and, for a directory, everything below it,
/// never following a symlink.
pub fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let sub = openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        clear_dir(sub.as_fd(), |_| false)?;
        unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

/// Removes every entry of the open directory `dir` for which `keep` is false.
pub fn clear_dir(dir: BorrowedFd<'_>, mut keep: impl FnMut(&OsStr) -> bool) -> io::Result<()> {
    let mut names = Vec::new();
    for ent in Dir::read_from(dir)? {
        let ent = ent?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push(std::ffi::OsString::from(
            <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name),
        ));
    }
    for name in names {
        if !keep(&name) {
            remove_all_at(dir, &name)?;
        }
    }
    Ok(())
}
