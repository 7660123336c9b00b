//! Carrying out one tar entry inside the root.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{
    linkat, makedev, mkdirat, mknodat, openat, symlinkat, AtFlags, FileType, Mode, OFlags,
    XattrFlags,
};
use tar::EntryType;

use super::meta::{Meta, XattrErrors};
use super::name::{classify, RelPath, Whiteout};
use super::protect::Protected;
use super::root::{clear_dir, lstat_at, Root};
use super::{ApplyError, ApplyMode, ApplyStats};

pub(super) struct Extractor {
    pub root: Root,
    pub target: PathBuf,
    pub mode: ApplyMode,
    pub stats: ApplyStats,
    pub xattr_errors: XattrErrors,
    /// Paths this layer created, and their ancestors: an opaque whiteout in
    /// merge mode must not delete them.
    pub written: HashSet<PathBuf>,
    pub parents: HashSet<PathBuf>,
    /// Directory mtimes are set at the end: creating children changes them.
    pub dir_times: Vec<(RelPath, Meta)>,
    pub buf: Vec<u8>,
    pub protected: Protected,
}

fn refused(raw: &[u8], reason: impl ToString) -> ApplyError {
    ApplyError::Refused {
        name: PathBuf::from(OsStr::from_bytes(raw)),
        reason: reason.to_string(),
    }
}

impl Extractor {
    pub fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ApplyError> {
        let ty = entry.header().entry_type();
        if matches!(ty, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let rel = RelPath::parse(&raw).map_err(|e| refused(&raw, e))?;
        // The root entry (`./`) is skipped, as Docker does: the target's own
        // mode and owner are the caller's.
        let Some((parent, name)) = rel.split_last() else {
            return Ok(());
        };
        if self.protected.covers(rel.as_path()) {
            return Ok(());
        }
        let name = name.to_os_string();
        let kind = classify(&name).map_err(|e| refused(&raw, e))?;
        let res = match kind {
            Whiteout::AufsMeta => Ok(()),
            Whiteout::Opaque => {
                self.stats.whiteouts += 1;
                self.opaque(&parent)
            }
            Whiteout::File(victim) => {
                self.stats.whiteouts += 1;
                self.whiteout(&parent, &victim)
            }
            Whiteout::None => self.create(entry, ty, &rel, &parent, &name),
        };
        res.map_err(|e| match e {
            EntryErr::Io(source) => ApplyError::Entry {
                name: rel.as_path().to_path_buf(),
                target: self.target.clone(),
                source,
            },
            EntryErr::Refused(reason) => refused(&raw, reason),
        })
    }

    fn whiteout(&mut self, parent: &RelPath, victim: &OsStr) -> Result<(), EntryErr> {
        match self.mode {
            ApplyMode::Merge => {
                let dir = match self.root.open_dir(parent.as_path()) {
                    Ok(fd) => fd,
                    // Nothing below a missing parent to delete.
                    Err(e) if is_missing(&e) => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                self.root.invalidate();
                let rel = parent.join(victim);
                self.protected
                    .remove_at(dir.as_fd(), rel.as_path(), victim)?;
            }
            ApplyMode::OverlayLower => {
                let dir = self.root.parent(parent, true)?;
                if lstat_at(dir, victim)?.is_some() {
                    let rel = parent.join(victim);
                    self.protected.remove_at(dir, rel.as_path(), victim)?;
                    self.root.invalidate();
                }
                let dir = self.root.parent(parent, true)?;
                mknodat(
                    dir,
                    victim,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    makedev(0, 0),
                )?;
            }
        }
        Ok(())
    }

    fn opaque(&mut self, parent: &RelPath) -> Result<(), EntryErr> {
        match self.mode {
            ApplyMode::Merge => {
                let dir = match self.root.open_dir(parent.as_path()) {
                    Ok(fd) => fd,
                    Err(e) if is_missing(&e) => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                let dir = reopen_dir(&dir)?;
                self.root.invalidate();
                let keep = Keep {
                    written: &self.written,
                    parents: &self.parents,
                    protected: &self.protected,
                };
                prune_unwritten(dir.as_fd(), parent, &keep)?;
            }
            ApplyMode::OverlayLower => {
                let dir = self.root.parent(parent, true)?;
                let dir = reopen_dir(&dir)?;
                let opaque = crate::mount::overlay_xattr("opaque");
                rustix::fs::fsetxattr(&dir, opaque.as_str(), b"y", XattrFlags::empty())?;
            }
        }
        Ok(())
    }

    fn record_written(&mut self, rel: &RelPath) {
        if self.mode != ApplyMode::Merge {
            return;
        }
        for a in rel.ancestors() {
            if !self.parents.insert(a.to_path_buf()) {
                break;
            }
        }
        self.written.insert(rel.as_path().to_path_buf());
    }

    fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        ty: EntryType,
        rel: &RelPath,
        parent: &RelPath,
        name: &OsString,
    ) -> Result<(), EntryErr> {
        let meta = Meta::from_entry(entry)?;
        self.record_written(rel);
        match ty {
            EntryType::Directory => self.create_dir(rel, parent, name, meta),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.create_file(entry, parent, name, meta)
            }
            EntryType::Symlink => self.create_symlink(entry, parent, name, meta),
            EntryType::Link => self.create_hardlink(entry, rel, parent, name),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.create_special(entry, ty, parent, name, meta)
            }
            other => Err(EntryErr::Refused(format!(
                "unsupported tar entry type {:?}",
                other.as_byte() as char
            ))),
        }
    }

    fn create_dir(
        &mut self,
        rel: &RelPath,
        parent: &RelPath,
        name: &OsString,
        meta: Meta,
    ) -> Result<(), EntryErr> {
        let dir = self.root.parent(parent, true)?;
        let existing = lstat_at(dir, name)?;
        let is_dir = existing
            .as_ref()
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if existing.is_some() && !is_dir {
            self.protected.remove_at(dir, rel.as_path(), name)?;
            self.root.invalidate();
        }
        let dir = self.root.parent(parent, true)?;
        if !is_dir {
            mkdirat(dir, name.as_os_str(), Mode::from_raw_mode(0o700))?;
        }
        let fd = openat(
            dir,
            name.as_os_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        meta.apply_fd(fd.as_fd(), &mut self.xattr_errors)?;
        self.dir_times.push((rel.clone(), meta));
        self.stats.dirs += 1;
        Ok(())
    }

    fn create_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &RelPath,
        name: &OsString,
        meta: Meta,
    ) -> Result<(), EntryErr> {
        self.clear_slot(parent, name)?;
        let dir = self.root.parent(parent, true)?;
        let fd = openat(
            dir,
            name.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut file = std::fs::File::from(fd);
        let mut n = 0u64;
        loop {
            let got = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            file.write_all(&self.buf[..got])?;
            n += got as u64;
        }
        meta.apply_fd(file.as_fd(), &mut self.xattr_errors)?;
        self.stats.files += 1;
        self.stats.file_bytes += n;
        Ok(())
    }

    fn create_symlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &RelPath,
        name: &OsString,
        meta: Meta,
    ) -> Result<(), EntryErr> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| EntryErr::Refused("symlink without a target".into()))?
            .into_owned();
        if target.is_empty() {
            return Err(EntryErr::Refused("symlink with an empty target".into()));
        }
        self.clear_slot(parent, name)?;
        let dir = self.root.parent(parent, true)?;
        symlinkat(OsStr::from_bytes(&target), dir, name.as_os_str())?;
        meta.apply_at(dir, name, true, &mut self.xattr_errors)?;
        self.stats.symlinks += 1;
        Ok(())
    }

    /// A hard link to an entry of this layer or a layer below.
    fn create_hardlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &RelPath,
        parent: &RelPath,
        name: &OsString,
    ) -> Result<(), EntryErr> {
        let raw = entry
            .link_name_bytes()
            .ok_or_else(|| EntryErr::Refused("hardlink without a target".into()))?
            .into_owned();
        let src = RelPath::parse(&raw).map_err(|e| EntryErr::Refused(e.to_string()))?;
        let Some((src_parent, src_name)) = src.split_last() else {
            return Err(EntryErr::Refused("hardlink to the root directory".into()));
        };
        if &src == rel {
            return Ok(());
        }
        let missing = || {
            EntryErr::Refused(format!(
                "hardlink target {:?} does not exist in the layer or below",
                src.as_path()
            ))
        };
        let src_dir = match self.root.open_dir(src_parent.as_path()) {
            Ok(fd) => fd,
            Err(e) if is_missing(&e) => return Err(missing()),
            Err(e) => return Err(e.into()),
        };
        if lstat_at(src_dir.as_fd(), src_name)?.is_none() {
            return Err(missing());
        }
        self.clear_slot(parent, name)?;
        let dir = self.root.parent(parent, true)?;
        // No AT_SYMLINK_FOLLOW: linking to a symlink links the
        // symlink itself, never what it points to.
        linkat(&src_dir, src_name, dir, name.as_os_str(), AtFlags::empty())?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    /// Device nodes and FIFOs.
    fn create_special<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        ty: EntryType,
        parent: &RelPath,
        name: &OsString,
        meta: Meta,
    ) -> Result<(), EntryErr> {
        let (major, minor) = if ty == EntryType::Fifo {
            (0, 0)
        } else {
            device_numbers(entry.header())?
        };
        // A user namespace may not make device nodes (rootless
        // kiln): they are left out, as Docker and podman do there;
        // a step's /dev is a tmpfs of its own anyway.
        if ty != EntryType::Fifo && crate::mount::in_user_namespace() {
            tracing::debug!(
                "device node {} left out in a user namespace",
                name.to_string_lossy()
            );
            self.stats.devices_skipped += 1;
            return Ok(());
        }
        let ft = match ty {
            EntryType::Char => FileType::CharacterDevice,
            EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        self.clear_slot(parent, name)?;
        let dir = self.root.parent(parent, true)?;
        mknodat(
            dir,
            name.as_os_str(),
            ft,
            Mode::from_raw_mode(meta.mode & 0o777),
            makedev(major, minor),
        )?;
        meta.apply_at(dir, name, false, &mut self.xattr_errors)?;
        self.stats.specials += 1;
        Ok(())
    }

    /// Makes room for a non-directory entry: whatever is there goes.
    fn clear_slot(&mut self, parent: &RelPath, name: &OsStr) -> Result<(), EntryErr> {
        let dir = self.root.parent(parent, true)?;
        if lstat_at(dir, name)?.is_some() {
            self.protected
                .remove_at(dir, parent.join(name).as_path(), name)?;
            self.root.invalidate();
        }
        Ok(())
    }

    pub fn finish_dir_times(&mut self) -> Result<(), ApplyError> {
        for (rel, meta) in std::mem::take(&mut self.dir_times) {
            let Some((parent, name)) = rel.split_last() else {
                continue;
            };
            let res = (|| -> io::Result<()> {
                let dir = match self.root.open_dir(parent.as_path()) {
                    Ok(d) => d,
                    Err(e) if is_missing(&e) => return Ok(()),
                    Err(e) => return Err(e),
                };
                match lstat_at(dir.as_fd(), name)? {
                    Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        meta.set_mtime_at(dir.as_fd(), name)
                    }
                    // Replaced or deleted by a later entry.
                    _ => Ok(()),
                }
            })();
            res.map_err(|source| ApplyError::Entry {
                name: rel.as_path().to_path_buf(),
                target: self.target.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Device numbers; blank fields (as some writers leave them) mean 0.
fn device_numbers(h: &tar::Header) -> io::Result<(u32, u32)> {
    let blank = |f: &[u8]| f.iter().all(|b| *b == 0 || *b == b' ');
    let raw = h
        .as_ustar()
        .map(|u| (u.dev_major, u.dev_minor))
        .or_else(|| h.as_gnu().map(|g| (g.dev_major, g.dev_minor)));
    if let Some((maj, min)) = raw {
        if blank(&maj) && blank(&min) {
            return Ok((0, 0));
        }
    }
    Ok((
        h.device_major()?.unwrap_or(0),
        h.device_minor()?.unwrap_or(0),
    ))
}

/// Below an opaque directory in merge mode: removes everything this layer
/// did not write, descending into directories it wrote or passed through.
/// What an opaque whiteout keeps: this layer's own paths and the protected ones.
struct Keep<'a> {
    written: &'a HashSet<PathBuf>,
    parents: &'a HashSet<PathBuf>,
    protected: &'a Protected,
}

fn prune_unwritten(
    dir: std::os::fd::BorrowedFd<'_>,
    rel: &RelPath,
    keep: &Keep<'_>,
) -> io::Result<()> {
    let mut keep_dirs = Vec::new();
    clear_dir(dir, |child| {
        let p = rel.join(child);
        let p = p.as_path();
        if keep.protected.covers(p) {
            return true;
        }
        let kept = keep.written.contains(p) || keep.parents.contains(p) || keep.protected.holds(p);
        if kept {
            keep_dirs.push(child.to_os_string());
        }
        kept
    })?;
    for child in keep_dirs {
        let is_dir = lstat_at(dir, &child)?
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if is_dir {
            let sub = openat(
                dir,
                child.as_os_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            prune_unwritten(sub.as_fd(), &rel.join(&child), keep)?;
        }
    }
    Ok(())
}

fn reopen_dir(fd: &impl AsFd) -> io::Result<std::os::fd::OwnedFd> {
    Ok(openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn is_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(c) if c == rustix::io::Errno::NOENT.raw_os_error()
            || c == rustix::io::Errno::NOTDIR.raw_os_error()
    )
}

pub(super) enum EntryErr {
    Io(io::Error),
    Refused(String),
}

impl From<io::Error> for EntryErr {
    fn from(e: io::Error) -> Self {
        EntryErr::Io(e)
    }
}

impl From<rustix::io::Errno> for EntryErr {
    fn from(e: rustix::io::Errno) -> Self {
        EntryErr::Io(e.into())
    }
}
