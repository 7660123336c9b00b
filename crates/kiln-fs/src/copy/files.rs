//! Regular files of a directory copy, written on worker threads. The walk
//! (sorted, directories before their children, hardlinks, symlinks) stays
//! on the caller's thread; what costs time per file — create, copy the
//! content, owner, mode, mtime — runs on every core.
//!
//! Work goes out in batches of one directory's files, each written by one
//! worker: files created in one directory from two threads contend on its
//! inode lock (and spin on it, on a small machine). A directory's mtime
//! must be set after its last entry is created, so `TreeWriter` defers
//! those and applies them after [`Writers::drain`].

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex};

use rustix::fs::{
    futimens, openat, statat, unlinkat, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps,
};

use super::dest::set_owner_mode;
use crate::context::SourceError;

/// Batches queued ahead of the workers.
const QUEUE: usize = 4;
/// Files in one batch, at most (a huge directory still uses every core).
pub(super) const MAX_BATCH: usize = 256;

/// Files of one source directory to write into one destination directory.
pub(super) struct Batch {
    pub src_dir: OwnedFd,
    pub dir: Arc<OwnedFd>,
    pub files: Vec<FileJob>,
}

/// One regular file to write: `name` from the batch's source directory to
/// the same name in its destination.
pub(super) struct FileJob {
    pub name: OsString,
    /// Shown path, for messages.
    pub shown: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: (i64, i64),
}

/// What every worker shares with the walk.
#[derive(Default)]
struct Shared {
    failed: Mutex<Option<SourceError>>,
    files: AtomicU64,
    bytes: AtomicU64,
    /// Jobs queued or running.
    pending: Mutex<usize>,
    idle: Condvar,
    /// Set once `copy_file_range` refused this pair of filesystems.
    no_copy_range: AtomicBool,
}

/// The walk's handle on the workers.
pub(super) struct Writers<'s> {
    tx: SyncSender<Batch>,
    shared: &'s Shared,
}

impl Writers<'_> {
    /// Queues `batch`; the error of an earlier one, if one failed.
    pub fn submit(&self, batch: Batch) -> Result<(), SourceError> {
        self.take_error()?;
        *self.shared.pending.lock().expect("not poisoned") += 1;
        self.tx
            .send(batch)
            .expect("workers live as long as their Writers");
        Ok(())
    }

    /// Waits until every queued file is written; the first error, if any.
    pub fn drain(&self) -> Result<(), SourceError> {
        let mut pending = self.shared.pending.lock().expect("not poisoned");
        while *pending > 0 {
            pending = self.shared.idle.wait(pending).expect("not poisoned");
        }
        drop(pending);
        self.take_error()
    }

    /// Files and bytes written so far.
    pub fn written(&self) -> (u64, u64) {
        (
            self.shared.files.load(Ordering::Relaxed),
            self.shared.bytes.load(Ordering::Relaxed),
        )
    }

    fn take_error(&self) -> Result<(), SourceError> {
        match self.shared.failed.lock().expect("not poisoned").take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Runs `f` with workers writing the files it submits, one per core, if
/// `threads`; they finish the queue before this returns.
pub(super) fn with_writers<T>(threads: bool, f: impl FnOnce(Option<&Writers<'_>>) -> T) -> T {
    if !threads {
        return f(None);
    }
    let shared = Shared::default();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    let (tx, rx) = sync_channel(QUEUE);
    let rx = Mutex::new(rx);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| work(&rx, &shared));
        }
        f(Some(&Writers {
            tx,
            shared: &shared,
        }))
    })
}

fn work(rx: &Mutex<Receiver<Batch>>, shared: &Shared) {
    loop {
        let batch = rx.lock().expect("not poisoned").recv();
        let Ok(batch) = batch else { return };
        for job in &batch.files {
            // After a failure the rest of the queue is only drained.
            if shared.failed.lock().expect("not poisoned").is_some() {
                break;
            }
            match open_and_write(&batch, job, &shared.no_copy_range) {
                Ok(n) => {
                    shared.files.fetch_add(1, Ordering::Relaxed);
                    shared.bytes.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    shared.failed.lock().expect("not poisoned").get_or_insert(e);
                }
            }
        }
        let mut pending = shared.pending.lock().expect("not poisoned");
        *pending -= 1;
        if *pending == 0 {
            shared.idle.notify_all();
        }
    }
}

fn open_and_write(
    batch: &Batch,
    job: &FileJob,
    no_copy_range: &AtomicBool,
) -> Result<u64, SourceError> {
    let src = openat(
        &batch.src_dir,
        &job.name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ioe(&job.shown, "open source", e))?;
    write_file(src.as_fd(), batch.dir.as_fd(), job, no_copy_range)
}

/// Writes `job` into `dir` from `src`: content, owner, mode, mtime.
pub(super) fn write_file(
    src: BorrowedFd<'_>,
    dir: BorrowedFd<'_>,
    job: &FileJob,
    no_copy_range: &AtomicBool,
) -> Result<u64, SourceError> {
    let dst = create(dir, &job.name, &job.shown)?;
    let n = copy_data(src, dst.as_fd(), no_copy_range).map_err(|e| ioe(&job.shown, "write", e))?;
    finish_file(dst.as_fd(), job.uid, job.gid, job.mode, job.mtime)
        .map_err(|e| ioe(&job.shown, "set owner, mode and mtime", e))?;
    Ok(n)
}

/// Creates `name` in `dir` for writing; most destinations are new, so it
/// creates first and clears only what is there.
fn create(dir: BorrowedFd<'_>, name: &OsString, shown: &str) -> Result<OwnedFd, SourceError> {
    let create = || {
        openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
    };
    match create() {
        Err(rustix::io::Errno::EXIST) => {
            clear_for_file(dir, name, shown)?;
            create()
        }
        other => other,
    }
    .map_err(|err| ioe(shown, "create", err))
}

/// Owner and mode, then mtime (chown clears setuid bits the chmod sets).
fn finish_file(
    fd: BorrowedFd<'_>,
    uid: u32,
    gid: u32,
    mode: u32,
    (s, ns): (i64, i64),
) -> io::Result<()> {
    set_owner_mode(fd, uid, gid, mode)?;
    let t = Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    futimens(
        fd,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
    )?;
    Ok(())
}

/// Copies `src` to `dst` in the kernel: `copy_file_range` where both are
/// on one filesystem, else `sendfile`, else read and write. Written by hand because
/// `std::io::copy` stats both files first and retries `copy_file_range`
/// on every file of an overlay source, where it always fails.
fn copy_data(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    no_copy_range: &AtomicBool,
) -> io::Result<u64> {
    use rustix::io::Errno;
    let mut total = 0u64;
    while !no_copy_range.load(Ordering::Relaxed) {
        match rustix::fs::copy_file_range(src, None, dst, None, 1 << 30) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::PERM) => {
                no_copy_range.store(true, Ordering::Relaxed);
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Both offsets moved together so far; go on from where they are.
    loop {
        match rustix::fs::sendfile(dst, src, None, 1 << 30) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(Errno::INVAL | Errno::NOSYS) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let n = io::copy(
        &mut File::from(rustix::io::dup(src)?),
        &mut File::from(rustix::io::dup(dst)?),
    )?;
    Ok(total + n)
}

/// An error writing `shown` in the destination.
pub(super) fn ioe(shown: &str, what: &str, e: impl Into<io::Error>) -> SourceError {
    SourceError::Io {
        path: shown.to_string(),
        root: "destination".into(),
        source: io::Error::other(format!("{what}: {}", e.into())),
    }
}

/// Removes whatever non-directory is at `name`; refuses a directory.
pub(super) fn clear_for_file(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: &str,
) -> Result<(), SourceError> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Err(ioe(
            shown,
            "copy",
            io::Error::other("cannot replace a directory with a non-directory"),
        )),
        Ok(_) => unlinkat(dir, name, AtFlags::empty()).map_err(|e| ioe(shown, "remove", e)),
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(ioe(shown, "stat", e)),
    }
}
