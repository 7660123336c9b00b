//! A directory treated as `/`: every lookup goes through `openat2` with
//! `RESOLVE_IN_ROOT`, so symlinks (absolute or with `..`) resolve as if the
//! process were chrooted there and can never lead outside. Final components
//! are then handled with `*at` calls on the resolved parent that never follow
//! a symlink.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

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

fn resolve_in_root(root: &OwnedFd, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    // EAGAIN means a concurrent rename raced the lookup; the kernel asks us
    // to retry.
    let mut tries = 0;
    loop {
        match openat2(root, rel, flags, Mode::empty(), how) {
            Err(rustix::io::Errno::AGAIN) if tries < 16 => tries += 1,
            Err(rustix::io::Errno::NOSYS) => {
                return Err(io::Error::other(
                    "openat2 is unavailable (Linux 5.6 or newer is required for safe extraction)",
                ))
            }
            r => return r.map_err(Into::into),
        }
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
