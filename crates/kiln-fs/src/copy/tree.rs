//! Writes one walked source into the destination: files (content, mode,
//! owner, mtime), directories, symlinks as symlinks, hardlinks among the
//! copied files as hardlinks, device nodes and fifos.
//!
//! Rules matched against Docker 20.10 / BuildKit (see docs/copy.md):
//! the existing top directory of a merge keeps its metadata, existing
//! directories below it take the source's (fsutil's
//! overwriteTargetMetadata); a
//! non-directory where a directory must go is "cannot copy to
//! non-directory"; a directory where a file must go is refused; any other
//! existing entry is replaced.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rustix::fs::{
    linkat, mkdirat, mknodat, openat, statat, symlinkat, AtFlags, FileType, Mode, OFlags, Stat,
};

use super::chmod::Chmod;
use super::dest::{lchown_at, set_mtime_at, set_owner_mode};
use super::files::{self, clear_for_file, ioe, Batch, FileJob, Writers};
use super::host::HostPolicy;
use super::layer_links::LayerLinks;
use super::CopyStats;
use crate::context::walk::{At, Entry, Kind, Visitor};
use crate::context::SourceError;

/// Who owns copied entries.
#[derive(Clone, Copy, Debug)]
pub enum Owner {
    Fixed(u32, u32),
    /// Keep the source's uid/gid (`COPY --from` without `--chown`).
    Preserve,
}

pub struct TreeWriter<'a> {
    /// Directory and name the matched source itself becomes.
    pub top_dir: BorrowedFd<'a>,
    pub top_name: &'a OsStr,
    /// For a directory source: copy its contents into an existing directory
    /// `top_dir` (BuildKit) instead of creating `top_name`.
    pub contents_into: Option<BorrowedFd<'a>>,
    pub owner: Owner,
    pub chmod: Option<&'a Chmod>,
    /// Shown path of the top slot, for messages.
    pub shown: &'a str,
    pub stats: &'a mut CopyStats,
    /// Open destination directories, innermost last: (whether it took the
    /// source's metadata, so gets its mtime on leave; fd).
    pub stack: Vec<(bool, Arc<OwnedFd>)>,
    /// Source (dev, ino) → destination (dir, name) of the first copy.
    pub links: HashMap<(u64, u64), (OwnedFd, OsString)>,
    /// Where unchanged files can be hardlinked from, and the matched
    /// source's path in that view (what `rel`s are relative to).
    pub layer_links: Option<(&'a mut LayerLinks, &'a [u8])>,
    /// Set when the destination is the host, not a rootfs.
    pub host: Option<HostPolicy>,
    /// Workers that write regular files; `None` writes them here.
    pub writers: Option<&'a Writers<'a>>,
    /// Directory mtimes waiting for the workers' files in them.
    pub dir_times: Vec<DirTime>,
    /// Files of the innermost directory not yet handed to the workers.
    pub batch: Option<Batch>,
}

/// A directory whose mtime is set once its files are written.
pub struct DirTime {
    dir: Arc<OwnedFd>,
    name: OsString,
    mtime: (i64, i64),
    shown: String,
}

/// Deferred directory mtimes held before the workers are drained: bounds
/// the directory fds kept open.
const MAX_DIR_TIMES: usize = 256;

impl TreeWriter<'_> {
    fn ids(&mut self, st: &Stat, shown: &str) -> (u32, u32) {
        let ids = match self.owner {
            Owner::Fixed(u, g) => (u, g),
            Owner::Preserve => (st.st_uid, st.st_gid),
        };
        let Some(host) = self.host else { return ids };
        let (ids, note) = host.owner(ids.0, ids.1, shown);
        self.stats.skipped.extend(note);
        ids
    }

    fn mode(&mut self, st: &Stat, is_dir: bool, shown: &str) -> u32 {
        let m = st.st_mode & 0o7777;
        let m = self.chmod.map_or(m, |c| c.apply(m, is_dir));
        let Some(host) = self.host else { return m };
        let (m, note) = host.mode(m, shown);
        self.stats.skipped.extend(note);
        m
    }

    /// The directory and name an entry `rel` goes to.
    fn place<'b>(&'b self, rel: &'b [u8]) -> (BorrowedFd<'b>, &'b OsStr, String) {
        let (dir, name) = target(self.top_dir, self.top_name, &self.stack, rel);
        (dir, name, self.shown_of(rel))
    }

    /// The shown path of entry `rel`, as [`Self::place`] gives it: a name
    /// that is not UTF-8 (or holds control characters) escaped.
    fn shown_of(&self, rel: &[u8]) -> String {
        if rel.is_empty() {
            self.shown.to_string()
        } else {
            let rel = kiln_oci::escape_bytes(rel);
            format!("{}/{rel}", self.shown.trim_end_matches('/'))
        }
    }

    fn write_file(&mut self, e: &Entry<'_>, rel: &[u8]) -> Result<(), SourceError> {
        let (uid, gid) = self.ids(e.stat, &self.shown_of(rel));
        let mode = self.mode(e.stat, false, &self.shown_of(rel));
        if self.link_unchanged(e, rel, (uid, gid, mode)) {
            return Ok(());
        }
        let (dir, name, shown) = self.place(rel);
        let name = name.to_os_string();
        let linked = e.stat.st_nlink > 1;
        if linked {
            if let Some((first_dir, first_name)) = self.links.get(&(e.stat.st_dev, e.stat.st_ino)) {
                clear_for_file(dir, &name, &shown)?;
                linkat(first_dir, first_name, dir, &name, AtFlags::empty())
                    .map_err(|err| ioe(&shown, "hardlink", err))?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
        }
        let job = FileJob {
            name,
            shown,
            uid,
            gid,
            mode,
            mtime: mtime(e.stat),
        };
        // A hardlink's first copy must exist before its links are made.
        match (self.writers.filter(|_| !linked), e.at) {
            (Some(_), At::Child(src_dir, _)) if !rel.is_empty() => self.queue(src_dir, job),
            _ => {
                let src =
                    e.at.open_read()
                        .map_err(|err| ioe(&job.shown, "open source", err))?;
                let dir = rustix::io::dup(dir).map_err(|err| ioe(&job.shown, "dup", err))?;
                self.write_now(src, dir, job, linked, e.stat)
            }
        }
    }

    /// Hardlinks a file the copy keeps as it is from its layer snapshot.
    fn link_unchanged(
        &mut self,
        e: &Entry<'_>,
        rel: &[u8],
        (uid, gid, mode): (u32, u32, u32),
    ) -> bool {
        let st = e.stat;
        let kept = (uid, gid, mode) == (st.st_uid, st.st_gid, st.st_mode & 0o7777);
        let Some((links, top)) = self.layer_links.as_mut().filter(|_| kept) else {
            return false;
        };
        let (dir, name) = target(self.top_dir, self.top_name, &self.stack, rel);
        let path = match rel {
            [] => top.to_vec(),
            _ => [*top, &b"/"[..], rel].concat(),
        };
        if !links.link(&path, st, dir, name) {
            return false;
        }
        self.stats.files += 1;
        true
    }

    /// Adds a file of the innermost directory to its batch for the workers.
    fn queue(&mut self, src_dir: BorrowedFd<'_>, job: FileJob) -> Result<(), SourceError> {
        let (_, parent) = self.stack.last().expect("a parent directory is open");
        let parent = parent.clone();
        let full = self
            .batch
            .as_ref()
            .is_some_and(|b| !Arc::ptr_eq(&b.dir, &parent) || b.files.len() >= files::MAX_BATCH);
        if full {
            self.submit_batch()?;
        }
        let batch = match &mut self.batch {
            Some(b) => b,
            None => self.batch.insert(Batch {
                src_dir: rustix::io::dup(src_dir).map_err(|err| ioe(&job.shown, "dup", err))?,
                dir: parent,
                files: Vec::new(),
            }),
        };
        batch.files.push(job);
        Ok(())
    }

    fn submit_batch(&mut self) -> Result<(), SourceError> {
        match (self.writers, self.batch.take()) {
            (Some(w), Some(b)) => w.submit(b),
            _ => Ok(()),
        }
    }

    /// Writes one file on this thread.
    fn write_now(
        &mut self,
        src: OwnedFd,
        dir: OwnedFd,
        job: FileJob,
        linked: bool,
        st: &Stat,
    ) -> Result<(), SourceError> {
        let n = files::write_file(src.as_fd(), dir.as_fd(), &job, &AtomicBool::new(false))?;
        self.stats.files += 1;
        self.stats.bytes += n;
        if linked {
            self.links.insert((st.st_dev, st.st_ino), (dir, job.name));
        }
        Ok(())
    }

    /// Sets the deferred directory mtimes once their files are written.
    fn set_dir_times(&mut self) -> Result<(), SourceError> {
        self.submit_batch()?;
        if let Some(w) = self.writers {
            w.drain()?;
        }
        for d in self.dir_times.drain(..) {
            set_mtime_at(d.dir.as_fd(), &d.name, Some(d.mtime))
                .map_err(|err| ioe(&d.shown, "set mtime", err))?;
        }
        Ok(())
    }

    /// Waits for the workers' files and sets what waited for them; the
    /// walk calls it once, after its last entry.
    pub fn finish(&mut self) -> Result<(), SourceError> {
        self.set_dir_times()?;
        if let Some(w) = self.writers {
            let (files, bytes) = w.written();
            self.stats.files += files;
            self.stats.bytes += bytes;
        }
        Ok(())
    }

    fn write_symlink(
        &mut self,
        e: &Entry<'_>,
        rel: &[u8],
        target: &OsStr,
    ) -> Result<(), SourceError> {
        let (uid, gid) = self.ids(e.stat, &self.shown_of(rel));
        let (dir, name, shown) = self.place(rel);
        clear_for_file(dir, name, &shown)?;
        symlinkat(target, dir, name).map_err(|err| ioe(&shown, "symlink", err))?;
        lchown_at(dir, name, uid, gid).map_err(|err| ioe(&shown, "chown symlink", err))?;
        set_mtime_at(dir, name, Some(mtime(e.stat)))
            .map_err(|err| ioe(&shown, "set mtime", err))?;
        self.stats.symlinks += 1;
        Ok(())
    }

    fn write_special(
        &mut self,
        e: &Entry<'_>,
        rel: &[u8],
        ft: FileType,
        rdev: u64,
    ) -> Result<(), SourceError> {
        if ft == FileType::Socket {
            return Ok(()); // a socket cannot be recreated meaningfully; tar skips them too
        }
        let shown = self.shown_of(rel);
        let kind = match ft {
            FileType::BlockDevice => Some("block"),
            FileType::CharacterDevice => Some("character"),
            _ => None,
        };
        if let (Some(host), Some(kind)) = (self.host, kind) {
            if let Some(note) = host.refuse_device(kind, rdev, &shown) {
                self.stats.skipped.push(note);
                return Ok(());
            }
        }
        let mode = Mode::from_raw_mode(self.mode(e.stat, false, &shown));
        let (uid, gid) = self.ids(e.stat, &shown);
        let (dir, name, shown) = self.place(rel);
        clear_for_file(dir, name, &shown)?;
        mknodat(dir, name, ft, mode, rdev).map_err(|err| ioe(&shown, "mknod", err))?;
        let fd = openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| ioe(&shown, "open", err))?;
        // fchown/fchmod do not work on O_PATH fds; go through the proc link.
        let p = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        std::os::unix::fs::chown(&p, Some(uid), Some(gid))
            .map_err(|err| ioe(&shown, "chown", err))?;
        rustix::fs::chmod(p.as_str(), mode).map_err(|err| ioe(&shown, "chmod", err))?;
        set_mtime_at(dir, name, Some(mtime(e.stat)))
            .map_err(|err| ioe(&shown, "set mtime", err))?;
        self.stats.specials += 1;
        Ok(())
    }

    /// Opens (creating if needed) the destination directory for `rel` and
    /// pushes it on the stack.
    fn enter_dir(&mut self, e: &Entry<'_>, rel: &[u8]) -> Result<(), SourceError> {
        if rel.is_empty() {
            if let Some(into) = self.contents_into {
                let fd = rustix::io::dup(into).map_err(|err| ioe(self.shown, "dup", err))?;
                self.stack.push((false, Arc::new(fd)));
                return Ok(());
            }
        }
        let (dir, name, shown) = self.place(rel);
        let created = match mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => {
                let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|err| ioe(&shown, "stat", err))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    return Err(ioe(
                        &shown,
                        "copy",
                        io::Error::other(format!("cannot copy to non-directory: {shown}")),
                    ));
                }
                false
            }
            Err(err) => return Err(ioe(&shown, "create directory", err)),
        };
        let fd = openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| ioe(&shown, "open directory", err))?;
        // fsutil copies nested entries with overwriteTargetMetadata: only
        // the top directory of a merge keeps its own owner, mode and mtime.
        let take_source = created || !rel.is_empty();
        if take_source {
            let (uid, gid) = self.ids(e.stat, &shown);
            let mode = self.mode(e.stat, true, &shown);
            set_owner_mode(fd.as_fd(), uid, gid, mode)
                .map_err(|err| ioe(&shown, "set owner and mode", err))?;
        }
        if created {
            self.stats.dirs += 1;
        }
        self.stack.push((take_source, Arc::new(fd)));
        Ok(())
    }
}

/// The directory and name an entry `rel` goes to (`TreeWriter::place`),
/// apart from the writer so its other fields stay free to borrow.
fn target<'b>(
    top_dir: BorrowedFd<'b>,
    top_name: &'b OsStr,
    stack: &'b [(bool, Arc<OwnedFd>)],
    rel: &'b [u8],
) -> (BorrowedFd<'b>, &'b OsStr) {
    if rel.is_empty() {
        return (top_dir, top_name);
    }
    let name = rel.rsplit(|b| *b == b'/').next().unwrap_or(rel);
    let (_, dir) = stack.last().expect("a parent directory is open");
    (dir.as_fd(), OsStr::from_bytes(name))
}

fn mtime(st: &Stat) -> (i64, i64) {
    (st.st_mtime, st.st_mtime_nsec as i64)
}

impl Visitor for TreeWriter<'_> {
    fn entry(&mut self, e: &Entry<'_>) -> Result<(), SourceError> {
        let rel = e.rel;
        match e.kind {
            Kind::Dir => self.enter_dir(e, rel),
            Kind::File => self.write_file(e, rel),
            Kind::Symlink(t) => self.write_symlink(e, rel, t),
            Kind::Special(ft, rdev) => self.write_special(e, rel, *ft, *rdev),
        }
    }

    fn leave_dir(&mut self, e: &Entry<'_>) -> Result<(), SourceError> {
        let (took_source, _fd) = self.stack.pop().expect("enter_dir pushed");
        if !took_source {
            return Ok(());
        }
        match self.stack.last().filter(|_| self.writers.is_some()) {
            Some((_, parent)) => {
                self.dir_times.push(DirTime {
                    dir: parent.clone(),
                    name: OsStr::from_bytes(e.rel.rsplit(|b| *b == b'/').next().unwrap_or(e.rel))
                        .to_os_string(),
                    mtime: mtime(e.stat),
                    shown: self.shown_of(e.rel),
                });
                if self.dir_times.len() >= MAX_DIR_TIMES {
                    self.set_dir_times()?;
                }
                Ok(())
            }
            None => {
                self.set_dir_times()?;
                let (dir, name, shown) = self.place(e.rel);
                set_mtime_at(dir, name, Some(mtime(e.stat)))
                    .map_err(|err| ioe(&shown, "set mtime", err))
            }
        }
    }
}
