//! Leases: blobs that are live although no image name refers to them yet.
//!
//! `ROOT/leases/<name>` holds one digest per line. Two kinds:
//! - session leases (`session-<pid>-<random>`): one per open [`Store`],
//!   created on its first blob commit; every blob committed or retained
//!   through that store is appended. The owner holds an exclusive flock on
//!   the file, so prune can tell a live session (lock busy) from one left by
//!   a crashed process (lock free; the file is deleted). This is what keeps
//!   build layers written before their manifest exists safe from prune.
//! - named leases (any other name), set by other components with
//!   [`Store::set_lease`] — e.g. the build cache declares the blobs it
//!   refers to. They last until [`Store::remove_lease`].

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use kiln_oci::Digest;
use rustix::fs::{flock, FlockOperation};

use crate::error::{Error, IoContext, Result};
use crate::store::{sync_dir, write_temp, Store};

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

impl Store {
    fn leases_dir(&self) -> PathBuf {
        self.root().join("leases")
    }

    /// Records `digest` in this store's session lease. Callers hold the
    /// store lock (shared) so a prune cannot run between the blob appearing
    /// and the lease naming it.
    pub(crate) fn hold(&self, digest: &Digest) -> Result<()> {
        let mut session = self.inner.session.lock().unwrap_or_else(|e| e.into_inner());
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
        let dir = self.leases_dir();
        let pid = rustix::process::getpid().as_raw_nonzero();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{SESSION_PREFIX}{pid}-"))
            .append(true)
            .tempfile_in(&dir)
            .ctx("creating session lease in", &dir)?;
        let (file, path) = tmp
            .keep()
            .map_err(|e| Error::io("keeping lease", &dir, e.error))?;
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| Error::io("locking lease", &path, e.into()))?;
        Ok(SessionLease {
            file,
            path,
            recorded: HashSet::new(),
        })
    }

    /// Keeps an existing blob alive for this store's session (e.g. a pull
    /// that found a layer already present and will reference it from a new
    /// manifest). Returns whether the blob exists.
    pub fn retain(&self, digest: &Digest) -> Result<bool> {
        let _lock = self.lock(false)?;
        if !self.has_blob(digest) {
            return Ok(false);
        }
        self.hold(digest)?;
        Ok(true)
    }

    /// Declares the blobs named lease `name` keeps alive, replacing its
    /// previous content. Manifests and indexes keep their children alive too.
    pub fn set_lease(&self, name: &str, digests: &[Digest]) -> Result<()> {
        validate_lease_name(name)?;
        let mut text = String::new();
        for d in digests {
            text.push_str(&d.to_string());
            text.push('\n');
        }
        let _lock = self.lock(false)?;
        let dir = self.leases_dir();
        let tmp = write_temp(&dir, text.as_bytes())?;
        let dest = dir.join(name);
        tmp.persist(&dest)
            .map_err(|e| Error::io("writing lease", &dest, e.error))?;
        sync_dir(&dir)
    }

    /// Removes named lease `name`; its blobs become prunable unless
    /// something else refers to them. Removing a missing lease is not an error.
    pub fn remove_lease(&self, name: &str) -> Result<()> {
        validate_lease_name(name)?;
        let p = self.leases_dir().join(name);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("removing lease", p, e)),
        }
    }

    /// Names of the named (non-session) leases.
    pub fn lease_names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let dir = self.leases_dir();
        for entry in fs::read_dir(&dir).ctx("listing leases in", &dir)? {
            let name = entry.ctx("listing leases in", &dir)?.file_name();
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
    pub(crate) fn lease_roots(&self, remove_dead: bool) -> Result<Vec<Digest>> {
        let dir = self.leases_dir();
        let mut roots = Vec::new();
        for entry in fs::read_dir(&dir).ctx("listing leases in", &dir)? {
            let entry = entry.ctx("listing leases in", &dir)?;
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
