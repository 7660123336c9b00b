//! Opening a store root, its paths, and the lock that serialises commits.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_oci::Digest;
use rustix::fs::{flock, FlockOperation};

use crate::error::{Error, IoContext, Result};
use crate::fsio::{sync_dir, write_temp};
use crate::lease::Leases;

const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
const EMPTY_INDEX: &str = r#"{"schemaVersion":2,"manifests":[]}"#;

/// A content store rooted at a directory that is itself an OCI image layout.
///
/// Lifecycle: `Store::open(root)` creates the layout if missing; blobs are
/// added with [`Store::write_blob`] / [`Store::ingest`]; images get names with
/// [`Store::tag`]; [`Store::prune`] removes blobs nothing refers to. Cheap to
/// clone; clones share one session lease (see `lease.rs`), so blobs written
/// through any clone survive a concurrent prune until the last clone drops.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) leases: Leases,
}

/// Holds `ROOT/store.lock` (flock) until dropped.
pub(crate) struct LockGuard {
    _file: File,
}

impl Store {
    /// Opens (and if needed creates) the store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        fs::create_dir_all(root).ctx("creating store directory", root)?;
        let root = fs::canonicalize(root).ctx("resolving store directory", root)?;
        for dir in ["blobs/sha256", "ingest", "leases", "meta/sha256"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).ctx("creating store directory", &p)?;
        }
        let store = Store {
            inner: Arc::new(Inner {
                leases: Leases::new(root.join("leases")),
                root,
            }),
        };
        store.create_if_absent("oci-layout", OCI_LAYOUT)?;
        store.create_if_absent("index.json", EMPTY_INDEX)?;
        store.check_layout()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// `ROOT/blobs/sha256/<hex>`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root().join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Size in bytes of a stored blob.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let p = self.blob_path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.not_found(digest)),
            Err(e) => Err(Error::io("reading metadata of blob", p, e)),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.blob_path(digest);
        match File::open(&p) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(self.not_found(digest)),
            Err(e) => Err(Error::io("opening blob", p, e)),
        }
    }

    /// Reads a whole blob and checks its digest (blobs read into memory are
    /// manifests and configs, whose integrity everything else depends on).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        let p = self.blob_path(digest);
        self.open_blob(digest)?
            .read_to_end(&mut data)
            .ctx("reading blob", &p)?;
        let actual = Digest::sha256(&data);
        if actual != *digest {
            return Err(Error::Corrupt {
                digest: *digest,
                actual,
                path: p,
            });
        }
        Ok(data)
    }

    pub(crate) fn not_found(&self, digest: &Digest) -> Error {
        Error::BlobNotFound {
            digest: *digest,
            root: self.root().to_path_buf(),
        }
    }

    pub(crate) fn ingest_dir(&self) -> PathBuf {
        self.root().join("ingest")
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        self.root().join("index.json")
    }

    /// Takes `ROOT/store.lock`: shared for blob commits, exclusive for
    /// index.json updates and prune. Held only around the commit itself.
    pub(crate) fn lock(&self, exclusive: bool) -> Result<LockGuard> {
        let p = self.root().join("store.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .ctx("opening store lock", &p)?;
        let op = if exclusive {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::LockShared
        };
        // flock is interrupted by signals; retry those.
        loop {
            match flock(&file, op) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(Error::io("locking", p, e.into())),
            }
        }
        Ok(LockGuard { _file: file })
    }

    /// Writes `name` atomically unless it exists (safe when two processes
    /// create one root at once: `link` fails instead of overwriting).
    fn create_if_absent(&self, name: &str, content: &str) -> Result<()> {
        let dest = self.root().join(name);
        if dest.exists() {
            return Ok(());
        }
        let tmp = write_temp(&self.ingest_dir(), content.as_bytes())?;
        match fs::hard_link(tmp.path(), &dest) {
            Ok(()) => sync_dir(self.root()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::io("creating", dest, e)),
        }
    }

    fn check_layout(&self) -> Result<()> {
        let p = self.root().join("oci-layout");
        let text = fs::read_to_string(&p).ctx("reading", &p)?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::invalid(p.display().to_string(), e))?;
        match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some("1.0.0") => Ok(()),
            other => Err(Error::invalid(
                p.display().to_string(),
                format!("unsupported imageLayoutVersion {other:?} (expected \"1.0.0\")"),
            )),
        }
    }
}

/// Leases (`lease.rs`), under the store lock.
impl Store {
    /// Records `digest` in this store's session lease. Callers hold the
    /// store lock (shared) so a prune cannot run between the blob appearing
    /// and the lease naming it.
    pub(crate) fn hold(&self, digest: &Digest) -> Result<()> {
        self.inner.leases.hold(digest)
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
        let _lock = self.lock(false)?;
        self.inner.leases.set(name, digests)
    }

    /// Removes named lease `name`; its blobs become prunable unless
    /// something else refers to them. Removing a missing lease is not an error.
    pub fn remove_lease(&self, name: &str) -> Result<()> {
        self.inner.leases.remove(name)
    }

    /// Names of the named (non-session) leases.
    pub fn lease_names(&self) -> Result<Vec<String>> {
        self.inner.leases.names()
    }

    /// Every digest held by a live lease. Caller holds the exclusive lock.
    pub(crate) fn lease_roots(&self, remove_dead: bool) -> Result<Vec<Digest>> {
        self.inner.leases.roots(remove_dead)
    }
}
