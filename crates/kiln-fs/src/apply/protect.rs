//! Paths an extraction must leave alone: when layers are applied onto a
//! live root filesystem (`--isolation=chroot`), kiln's own directory and the
//! mount points of the container it runs in (`/proc`, `/etc/resolv.conf`)
//! are neither written nor deleted, whatever the layer says.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{openat, Dir, FileType, Mode, OFlags};

use super::root::{lstat_at, remove_all_at};

/// Relative paths (no leading `/`) kept out of an extraction.
#[derive(Clone, Debug, Default)]
pub struct Protected(Vec<PathBuf>);

impl Protected {
    pub fn new(paths: impl IntoIterator<Item = PathBuf>) -> Protected {
        Protected(paths.into_iter().collect())
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.0
    }

    /// `rel` is a protected path or lies below one.
    pub fn covers(&self, rel: &Path) -> bool {
        self.0.iter().any(|p| rel.starts_with(p))
    }

    /// `rel` is a directory above a protected path.
    pub fn holds(&self, rel: &Path) -> bool {
        self.0.iter().any(|p| p.starts_with(rel) && p != rel)
    }

    /// Removes `name` (at `rel`) in `dir` like `remove_all_at`, except that
    /// protected paths stay, and so do the directories above them.
    pub fn remove_at(&self, dir: BorrowedFd<'_>, rel: &Path, name: &OsStr) -> std::io::Result<()> {
        if self.covers(rel) {
            return Ok(());
        }
        let is_dir = lstat_at(dir, name)?
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if !is_dir || !self.holds(rel) {
            return remove_all_at(dir, name);
        }
        let sub = openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for child in names(sub.as_fd())? {
            self.remove_at(sub.as_fd(), &rel.join(&child), &child)?;
        }
        Ok(())
    }
}

fn names(dir: BorrowedFd<'_>) -> std::io::Result<Vec<std::ffi::OsString>> {
    let mut out = Vec::new();
    for ent in Dir::read_from(dir)? {
        let ent = ent?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name).to_os_string());
        }
    }
    Ok(out)
}
