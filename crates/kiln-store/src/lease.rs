//! Leases: blobs that are live although no image name refers to them yet.
//!
//! `ROOT/leases/<name>` holds one digest per line. Two kinds:
//! - session leases (`session-<pid>-<random>`): one per open `Store`,
//!   created on its first blob commit; every blob committed or retained
//!   through that store is appended. The owner holds an exclusive flock on
//!   the file, so prune can tell a live session (lock busy) from one left by
//!   a crashed process (lock free; the file is deleted). This is what keeps
//!   build layers written before their manifest exists safe from prune.
//! - named leases (any other name), set by other components with
//!   `Store::set_lease` — e.g. the build cache declares the blobs it
//!   refers to. They last until `Store::remove_lease`.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kiln_oci::Digest;
use rustix::fs::{flock, FlockOperation};

use crate::error::{Error, IoContext, Result};
use crate::fsio::{sync_dir, write_temp};

const SESSION_PREFIX: &str = "session-";

pub(crate) struct SessionLease {
    file: File,
    path: PathBuf,
    recorded: HashSet<Digest>,
}

impl Drop for SessionLease {
    fn drop(&mut self) {
        // Best effort: a leftover file is detected as dead by its free lock.
        let _ = fs::remove_file(&self.path);
    }
}

/// `ROOT/leases/`, and this process's session lease once it has one. The
/// store takes its lock around these calls; leases know nothing of blobs.
pub(crate) struct Leases {
    dir: PathBuf,
    session: Mutex<Option<SessionLease>>,
}

impl Leases {
    pub fn new(dir: PathBuf) -> Leases {
        Leases {
            dir,
            session: Mutex::new(None),
        }
    }

    /// Records `digest` in the session lease, creating it on first use.
    pub fn hold(&self, digest: &Digest) -> Result<()> {
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if session.is_none() {
            *session = Some(self.new_session()?);
        }
        let lease = session.as_mut().expect("session lease just created");
        if lease.recorded.insert(*digest) {
            let line = format!("{digest}\n");
            if let Err(e) = lease.file.write_all(line.as_bytes()) {
                lease.recorded.remove(digest);
                return Err(Error::io("writing lease", lease.path.clone(), e));
            }
        }
        Ok(())
    }

    fn new_session(&self) -> Result<SessionLease> {
        let dir = &self.dir;
        let pid = rustix::process::getpid().as_raw_nonzero();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{SESSION_PREFIX}{pid}-"))
            .append(true)
            .tempfile_in(dir)
            .ctx("creating session lease in", dir)?;
        let (file, path) = tmp
            .keep()
            .map_err(|e| Error::io("keeping lease", dir, e.error))?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| Error::io("locking lease", &path, e.into()))?;
        Ok(SessionLease {
            file,
            path,
            recorded: HashSet::new(),
        })
    }

    /// Replaces named lease `name` with `digests`.
    pub fn set(&self, name: &str, digests: &[Digest]) -> Result<()> {
        validate_lease_name(name)?;
        let mut text = String::new();
        for d in digests {
            text.push_str(&d.to_string());
            text.push('\n');
        }
        let tmp = write_temp(&self.dir, text.as_bytes())?;
        let dest = self.dir.join(name);
        tmp.persist(&dest)
            .map_err(|e| Error::io("writing lease", &dest, e.error))?;
        sync_dir(&self.dir)
    }

    /// Removes named lease `name`; a missing lease is not an error.
    pub fn remove(&self, name: &str) -> Result<()> {
        validate_lease_name(name)?;
        let p = self.dir.join(name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing lease", p, e)),
        }
    }

    /// Names of the named (non-session) leases.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let dir = &self.dir;
        for entry in fs::read_dir(dir).ctx("listing leases in", dir)? {
            let name = entry.ctx("listing leases in", dir)?.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with(SESSION_PREFIX) && !name.starts_with(".tmp-") {
                names.push(name.into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every digest held by a live lease. Session leases of dead processes
    /// are skipped, and deleted when `remove_dead` (the caller then holds
    /// the exclusive store lock).
    pub fn roots(&self, remove_dead: bool) -> Result<Vec<Digest>> {
        let dir = &self.dir;
        let mut roots = Vec::new();
        for entry in fs::read_dir(dir).ctx("listing leases in", dir)? {
            let entry = entry.ctx("listing leases in", dir)?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                continue;
            }
            if name.starts_with(SESSION_PREFIX) && !is_locked(&path)? {
                if remove_dead {
                    fs::remove_file(&path).ctx("removing stale lease", &path)?;
                }
                continue;
            }
            roots.extend(read_lease(&path)?);
        }
        Ok(roots)
    }
}

fn read_lease(path: &Path) -> Result<Vec<Digest>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        // Its owner removed it since we listed the directory.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("reading lease", path, e)),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .parse::<Digest>()
                .map_err(|e| Error::invalid(format!("lease {}", path.display()), e))
        })
        .collect()
}

/// Whether another open file description holds a lock on `path`.
pub(crate) fn is_locked(path: &Path) -> Result<bool> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io("opening", path, e)),
    };
    match flock(&f, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(false),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(true),
        Err(e) => Err(Error::io("testing lock of", path, e.into())),
    }
}

fn validate_lease_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with(SESSION_PREFIX)
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("lease name {name:?}"),
            "use letters, digits, '-', '_', '.'; not starting with '.' or \"session-\"",
        ))
    }
}
