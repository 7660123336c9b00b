//! An index of a live tree's metadata, for `--isolation=chroot`: taken
//! before a step and again after it, the two tell what the step changed
//! without reading a single file (kaniko hashes every file of the image
//! for each step instead). A file is changed when any of type, mode,
//! owner, size, device, inode, link count, mtime or ctime moved; ctime
//! moves on every write, chmod, chown, xattr change and rename, and a
//! process cannot set it back.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::apply::Protected;

/// What is compared of one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub rdev: u64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stamp {
    fn of(md: &std::fs::Metadata) -> Stamp {
        Stamp {
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            // A directory's size says nothing portable; its mtime does.
            size: if md.is_dir() { 0 } else { md.size() },
            rdev: md.rdev(),
            dev: md.dev(),
            ino: md.ino(),
            // A directory's link count follows its subdirectories (mtime too).
            nlink: if md.is_dir() { 0 } else { md.nlink() },
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }

    pub fn is_dir(&self) -> bool {
        const S_IFMT: u32 = 0o170000;
        const S_IFDIR: u32 = 0o040000;
        self.mode & S_IFMT == S_IFDIR
    }
}

/// Every entry below a root, by relative path, in tar order (a directory
/// right before its children, names in byte order).
#[derive(Clone, Debug, Default)]
pub struct Index {
    pub entries: BTreeMap<PathBuf, Stamp>,
}

impl Index {
    /// Walks `root` (never following symlinks), leaving out `skip` and
    /// everything below it.
    pub fn scan(root: &Path, skip: &Protected) -> io::Result<Index> {
        let mut index = Index::default();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = root.join(&rel);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                // Removed while we walked (a step's stray background process).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(with_path(e, &dir)),
            };
            for ent in entries {
                let ent = ent.map_err(|e| with_path(e, &dir))?;
                let child = rel.join(ent.file_name());
                if skip.covers(&child) {
                    continue;
                }
                let md = match std::fs::symlink_metadata(root.join(&child)) {
                    Ok(md) => md,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(with_path(e, &root.join(&child))),
                };
                if md.is_dir() {
                    stack.push(child.clone());
                }
                index.entries.insert(child, Stamp::of(&md));
            }
        }
        Ok(index)
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("scanning {}: {e}", path.display()))
}
