//! Mountpoints and the working directory inside the root filesystem.
//!
//! A runtime creates a missing mountpoint (`/etc/resolv.conf`, a bind mount
//! target, `/proc` in a `FROM scratch` rootfs) and leaves it behind, so it
//! would end up in the step's layer. We create the missing ones ourselves
//! before the container starts, remember exactly what we created, and remove
//! it afterwards (a created directory only if it is still empty, a created
//! file only if it is still an empty regular file). BuildKit's stub cleaner
//! does this for `/etc/resolv.conf`, `/etc/hosts` and mount targets only; we
//! also remove empty `/dev`, `/proc` and `/sys` stubs, by choice (docs/exec.md). The
//! modification times of the pre-existing directories we touched are put back
//! when nothing else changed them, so the diff holds only the process's own
//! changes. The working directory is created (0755) and kept, as Docker does.
//!
//! Paths are resolved as if chrooted into the rootfs: `..` stops at the root
//! and absolute symlinks are relative to it, the way runc's securejoin (and
//! youki) resolve mount destinations.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::{Error, Result};

const MAX_SYMLINKS: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Times {
    atime: (i64, i64),
    mtime: (i64, i64),
}

impl Times {
    fn of(path: &Path) -> Option<Times> {
        let m = fs::symlink_metadata(path).ok()?;
        Some(Times {
            atime: (m.atime(), m.atime_nsec()),
            mtime: (m.mtime(), m.mtime_nsec()),
        })
    }
}

/// What [`Preparer`] created, in creation order, to be undone afterwards.
#[derive(Debug, Default)]
pub(crate) struct Created {
    entries: Vec<(PathBuf, Kind)>,
    /// Pre-existing directories we created entries in: their times before we
    /// touched them, and after we were done.
    touched: Vec<(PathBuf, Times, Option<Times>)>,
}

pub(crate) struct Preparer<'a> {
    root: &'a Path,
    created: Created,
}

impl<'a> Preparer<'a> {
    pub(crate) fn new(root: &'a Path) -> Self {
        Preparer {
            root,
            created: Created::default(),
        }
    }

    /// Makes sure `container_path` exists as `kind` (creating missing parents
    /// as directories) and returns its symlink-free path inside the
    /// container. `remove_after`: record what was created for [`undo`].
    pub(crate) fn ensure(
        &mut self,
        container_path: &str,
        kind: Kind,
        remove_after: bool,
    ) -> Result<String> {
        self.walk(container_path, Some((kind, remove_after)))
    }

    /// The symlink-free path inside the container of an existing
    /// `container_path`; an error when some part of it is missing.
    pub(crate) fn resolve(&mut self, container_path: &str) -> Result<String> {
        self.walk(container_path, None)
    }

    fn walk(&mut self, container_path: &str, create: Option<(Kind, bool)>) -> Result<String> {
        let mut pending: Vec<PathBuf> = Vec::new();
        push_components(&mut pending, Path::new(container_path));
        let mut current = self.root.to_path_buf();
        let mut links = 0;
        while let Some(component) = pending.pop() {
            if component.as_os_str() == ".." {
                if current != self.root {
                    current.pop();
                }
                continue;
            }
            let candidate = current.join(&component);
            let last = pending.is_empty();
            match fs::symlink_metadata(&candidate) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Error::io(
                            "resolving",
                            &candidate,
                            std::io::Error::from_raw_os_error(libc::ELOOP),
                        ));
                    }
                    let target = fs::read_link(&candidate)
                        .map_err(|e| Error::io("reading symlink", &candidate, e))?;
                    if target.is_absolute() {
                        current = self.root.to_path_buf();
                    }
                    push_components(&mut pending, &target);
                }
                Ok(m) => {
                    if !last && !m.is_dir() {
                        return Err(Error::io(
                            "resolving",
                            &candidate,
                            std::io::Error::from_raw_os_error(libc::ENOTDIR),
                        ));
                    }
                    current = candidate;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let Some((kind, remove_after)) = create else {
                        return Err(Error::io("resolving", &candidate, e));
                    };
                    let this_kind = if last { kind } else { Kind::Dir };
                    self.create(&current, &candidate, this_kind, remove_after)?;
                    current = candidate;
                }
                Err(e) => return Err(Error::io("inspecting", &candidate, e)),
            }
        }
        let inside = current.strip_prefix(self.root).unwrap_or(Path::new(""));
        Ok(format!("/{}", inside.display()))
    }

    fn create(&mut self, parent: &Path, path: &Path, kind: Kind, record: bool) -> Result<()> {
        let parent_was_created = self.created.entries.iter().any(|(p, _)| p == parent);
        if record && !parent_was_created && !self.created.touched.iter().any(|(p, ..)| p == parent)
        {
            if let Some(times) = Times::of(parent) {
                self.created
                    .touched
                    .push((parent.to_path_buf(), times, None));
            }
        }
        let mode = match kind {
            Kind::Dir => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(path)
                    .map_err(|e| Error::io("creating directory", path, e))?;
                0o755
            }
            Kind::File => {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(path)
                    .map_err(|e| Error::io("creating mountpoint file", path, e))?;
                0o644
            }
        };
        // Exactly these modes, whatever kiln's umask: a created working
        // directory stays in the layer.
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("setting mode of", path, e))?;
        if record {
            self.created.entries.push((path.to_path_buf(), kind));
        }
        Ok(())
    }

    /// Done creating: remember the touched directories' times as we leave
    /// them, to tell later whether the process changed them too.
    pub(crate) fn finish(mut self) -> Created {
        for (path, _, after) in &mut self.created.touched {
            *after = Times::of(path);
        }
        self.created
    }
}

fn push_components(pending: &mut Vec<PathBuf>, path: &Path) {
    // `pending` is a stack: push in reverse so the first component pops first.
    for c in path.components().rev() {
        match c {
            Component::Normal(n) => pending.push(PathBuf::from(n)),
            Component::ParentDir => pending.push(PathBuf::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

impl Created {
    /// Removes what was created, newest first, keeping anything the process
    /// put content into; restores the times of the directories we touched.
    /// Returns the paths it could not inspect or remove, for the caller to
    /// report.
    pub(crate) fn undo(self) -> Vec<String> {
        let mut problems = Vec::new();
        // Times as they are now, before our removals change them.
        let before_undo: Vec<Option<Times>> =
            self.touched.iter().map(|(p, ..)| Times::of(p)).collect();
        for (path, kind) in self.entries.iter().rev() {
            let result = match kind {
                Kind::Dir => match fs::remove_dir(path) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
                    other => other,
                },
                Kind::File => match fs::symlink_metadata(path) {
                    Ok(m) if m.is_file() && m.len() == 0 => fs::remove_file(path),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problems.push(format!("removing {}: {e}", path.display())),
            }
        }
        for ((path, original, after), now) in self.touched.iter().zip(before_undo) {
            // Only the modification time tells whether the process changed
            // the directory: reading it (`ls /etc`) updates the atime.
            if now.is_some_and(|n| after.is_some_and(|a| a.mtime == n.mtime)) {
                let at = TimeSpec::new(original.atime.0, original.atime.1);
                let mt = TimeSpec::new(original.mtime.0, original.mtime.1);
                if let Err(e) = utimensat(None, path, &at, &mt, UtimensatFlags::NoFollowSymlink) {
                    problems.push(format!("restoring times of {}: {e}", path.display()));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_and_removes_only_what_was_missing() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir(r.join("etc")).unwrap();
        fs::write(r.join("etc/hosts"), "keep").unwrap();
        let etc_times = Times::of(&r.join("etc")).unwrap();
        let mut p = Preparer::new(r);
        assert_eq!(
            p.ensure("/etc/hosts", Kind::File, true).unwrap(),
            "/etc/hosts"
        );
        assert_eq!(
            p.ensure("/etc/resolv.conf", Kind::File, true).unwrap(),
            "/etc/resolv.conf"
        );
        assert_eq!(p.ensure("/a/b/c", Kind::Dir, true).unwrap(), "/a/b/c");
        assert_eq!(
            p.ensure("/work/dir", Kind::Dir, false).unwrap(),
            "/work/dir"
        );
        let created = p.finish();
        assert!(r.join("etc/resolv.conf").is_file());
        assert!(r.join("a/b/c").is_dir());
        let problems = created.undo();
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!r.join("etc/resolv.conf").exists());
        assert!(!r.join("a").exists());
        assert_eq!(fs::read_to_string(r.join("etc/hosts")).unwrap(), "keep");
        assert!(r.join("work/dir").is_dir(), "the working directory stays");
        assert_eq!(Times::of(&r.join("etc")).unwrap().mtime, etc_times.mtime);
    }

    #[test]
    fn keeps_directories_the_process_filled() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let mut p = Preparer::new(r);
        p.ensure("/mnt/x", Kind::Dir, true).unwrap();
        let created = p.finish();
        fs::write(r.join("mnt/file"), "data").unwrap();
        assert!(created.undo().is_empty());
        assert!(!r.join("mnt/x").exists());
        assert!(r.join("mnt/file").exists());
    }

    #[test]
    fn resolves_symlinks_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("run/real")).unwrap();
        std::os::unix::fs::symlink("/run/real", r.join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../..", r.join("run/up")).unwrap();
        let mut p = Preparer::new(r);
        assert_eq!(
            p.ensure("/etc/resolv.conf", Kind::File, true).unwrap(),
            "/run/real/resolv.conf"
        );
        assert!(r.join("run/real/resolv.conf").is_file());
        assert_eq!(
            p.ensure("/run/up/escape", Kind::Dir, true).unwrap(),
            "/escape"
        );
        assert!(r.join("escape").is_dir());
        p.finish().undo();
        assert!(!r.join("escape").exists());
        assert!(!r.join("run/real/resolv.conf").exists());
    }
}
