//! The target rootfs of a COPY: every lookup is `openat2(RESOLVE_IN_ROOT)`,
//! so absolute symlinks and `..` in the image resolve as if chrooted there
//! and nothing outside the rootfs can be reached. Final components are then
//! created with `*at` calls on the resolved parent, never following a link.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{
    chownat, fchmod, fchown, mkdirat, openat, openat2, statat, utimensat, AtFlags, FileType, Gid,
    Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, UTIME_NOW,
};

/// Symlinks followed on one path before giving up (Linux's limit).
const MAX_LINKS: u32 = 40;

const PATH_DIR: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

/// How directories that COPY has to create (missing parents, the
/// destination of a directory source) are made.
#[derive(Clone, Copy, Debug)]
pub struct NewDir {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

pub struct DestRoot {
    fd: OwnedFd,
    path: PathBuf,
}

/// Where a top-level copy lands: a directory and a name in it.
pub struct Slot {
    pub dir: OwnedFd,
    pub name: OsString,
    /// Path inside the rootfs, for messages.
    pub shown: String,
}

impl DestRoot {
    pub fn open(path: &Path) -> io::Result<DestRoot> {
        let fd = openat(rustix::fs::CWD, path, PATH_DIR, Mode::empty())?;
        Ok(DestRoot {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `rel` (clean, relative) as a directory, following symlinks in
    /// the root; `None` when it does not exist. A non-directory is an error
    /// (`cannot copy to non-directory`, as BuildKit).
    pub fn open_dir(&self, rel: &str) -> io::Result<Option<OwnedFd>> {
        let rel = if rel.is_empty() { "." } else { rel };
        match openat2(
            &self.fd,
            rel,
            PATH_DIR,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(rustix::io::Errno::NOTDIR) => Err(io::Error::other(format!(
                "cannot copy to non-directory: /{rel}"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `rel` is an existing directory (following symlinks in the
    /// root). An existing file is `false`: a single-file COPY onto it
    /// replaces it.
    pub fn is_dir(&self, rel: &str) -> io::Result<bool> {
        let rel = if rel.is_empty() { "." } else { rel };
        match openat2(
            &self.fd,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => {
                Ok(FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == FileType::Directory)
            }
            Err(rustix::io::Errno::NOENT) => Ok(false),
            Err(rustix::io::Errno::NOTDIR) => Err(io::Error::other(format!(
                "cannot copy to non-directory: /{rel}"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens directory `rel`, creating each missing component with `new`.
    /// A dangling symlink on the way is followed (in the root) and its
    /// target created, like BuildKit's `MkdirAll` on a resolved path.
    pub fn mkdir_all(&self, rel: &str, new: NewDir) -> io::Result<OwnedFd> {
        self.mkdir_all_depth(rel, new, 0)
    }

    fn mkdir_all_depth(&self, rel: &str, new: NewDir, depth: u32) -> io::Result<OwnedFd> {
        if let Some(fd) = self.open_dir(rel)? {
            return Ok(fd);
        }
        let mut dir = openat(&self.fd, ".", PATH_DIR, Mode::empty())?;
        let mut done = String::new();
        for comp in rel.split('/').filter(|c| !c.is_empty()) {
            let here = join(&done, comp);
            // Each step resolves in the root, so `..` or a symlink component
            // that exists already is followed without escaping.
            dir = match self.open_dir(&here)? {
                Some(fd) => fd,
                None => match dangling_target(dir.as_fd(), comp, &done)? {
                    Some(target) => {
                        if depth >= MAX_LINKS {
                            return Err(io::Error::other(format!(
                                "too many levels of symbolic links at /{here}"
                            )));
                        }
                        self.mkdir_all_depth(&target, new, depth + 1)?
                    }
                    None => {
                        create_dir(dir.as_fd(), OsStr::new(comp), new)
                            .map_err(|e| annotate(e, &format!("create directory /{here}")))?;
                        openat(&dir, comp, PATH_DIR | OFlags::NOFOLLOW, Mode::empty())?
                    }
                },
            };
            // Continue from where the path really is now.
            done = here;
        }
        Ok(dir)
    }

    /// The slot for `rel`: its parent (created as needed) and its name. A
    /// final component that is a symlink is followed in the root (a
    /// dangling one too: the file is created at its target), like
    /// BuildKit's destination resolution.
    pub fn slot(&self, rel: &str, new: NewDir) -> io::Result<Slot> {
        self.slot_depth(rel, new, 0)
    }

    fn slot_depth(&self, rel: &str, new: NewDir, depth: u32) -> io::Result<Slot> {
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", rel),
        };
        let dir = self.mkdir_all(parent, new)?;
        if let Ok(st) = statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            if FileType::from_raw_mode(st.st_mode) == FileType::Symlink && depth < MAX_LINKS {
                let target = match self.resolved_rel(rel)? {
                    Some(real) => Some(real),
                    None => dangling_target(dir.as_fd(), name, parent)?,
                };
                if let Some(t) = target.filter(|t| !t.is_empty()) {
                    if self.open_dir(&t).ok().flatten().is_none() {
                        return self.slot_depth(&t, new, depth + 1);
                    }
                }
            }
        }
        Ok(Slot {
            dir,
            name: name.into(),
            shown: format!("/{rel}"),
        })
    }

    /// Where `rel` resolves inside the root (following every symlink), as a
    /// clean relative path; `None` if it does not exist.
    fn resolved_rel(&self, rel: &str) -> io::Result<Option<String>> {
        let fd = match openat2(
            &self.fd,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let real = fd_path(fd.as_fd())?;
        let root = fd_path(self.fd.as_fd())?;
        Ok(real
            .strip_prefix(&root)
            .ok()
            .map(|p| p.to_string_lossy().trim_start_matches('/').to_string()))
    }
}

/// If `name` in `dir` is a symlink, where it points inside the root, as a
/// clean relative path (`dir_rel` is `dir`'s own path in the root).
fn dangling_target(dir: BorrowedFd<'_>, name: &str, dir_rel: &str) -> io::Result<Option<String>> {
    use std::os::unix::ffi::OsStrExt;
    let target = match rustix::fs::readlinkat(dir, name, Vec::new()) {
        Ok(t) => t,
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let t = OsStr::from_bytes(target.as_bytes())
        .to_string_lossy()
        .into_owned();
    let joined = if t.starts_with('/') {
        t
    } else {
        format!("{dir_rel}/{t}")
    };
    Ok(Some(crate::context::clean_rel(&joined)))
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

/// The host path an fd refers to (for messages and prefix checks).
pub fn fd_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `mkdirat` + owner + exact mode (no umask) + mtime now.
pub fn create_dir(parent: BorrowedFd<'_>, name: &OsStr, new: NewDir) -> io::Result<()> {
    match mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => {
            let st = statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Ok(());
            }
            return Err(io::Error::other(format!(
                "cannot copy to non-directory: {}",
                name.to_string_lossy()
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let fd = openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    set_owner_mode(fd.as_fd(), new.uid, new.gid, new.mode)?;
    Ok(())
}

/// chown first: it clears setuid/setgid, which the chmod then sets.
pub fn set_owner_mode(fd: BorrowedFd<'_>, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    fchown(fd, Some(u), Some(g))?;
    fchmod(fd, Mode::from_raw_mode(mode & 0o7777))?;
    Ok(())
}

/// Owner of a symlink (never followed).
pub fn lchown_at(dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
    chownat(dir, name, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Sets atime and mtime of `name` (not following a symlink) to `mtime`;
/// `None` = now.
pub fn set_mtime_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    mtime: Option<(i64, i64)>,
) -> io::Result<()> {
    let t = match mtime {
        Some((s, ns)) => Timespec {
            tv_sec: s,
            tv_nsec: ns as _,
        },
        None => Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW as _,
        },
    };
    utimensat(
        dir,
        name,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

pub fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
