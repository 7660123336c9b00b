//! A build session: what every step of one build (or one `kiln run` /
//! `kiln cp`) shares, owned in one place so that the stages and ops depend
//! on it and on nothing above them.
//!
//! Lifecycle: `Builder::session(options)` → any number of steps borrow it
//! (from several stage threads) → dropped at the end of the build.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use kiln_fs::file_hashes::FileHashes;
use kiln_fs::snapshot::Snapshotter;
use kiln_oci::Digest;
use kiln_store::Store;

use crate::cache::{Cache, CacheKey, CacheRecord};
use crate::error::{BuildError, Context};
use crate::explain::Records;
use crate::isolation::Isolation;
use crate::options::CacheFrom;
use crate::remote::{RemoteCache, Transport};
use crate::request::Runtime;

/// Where things live under `--root` (besides the store's own layout).
#[derive(Clone, Debug)]
pub struct Paths {
    pub root: PathBuf,
}

impl Paths {
    /// Scratch files of running steps (here-docs, secrets, downloads).
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Container bundles of the executor.
    pub fn exec(&self) -> PathBuf {
        self.root.join("tmp/exec")
    }

    /// `RUN --mount=type=cache` directories.
    pub fn cache_mounts(&self) -> PathBuf {
        self.root.join("cache/mounts")
    }

    /// What the lean-final guards remember (`kiln_analyze::remembered`,
    /// and each layer's entries under `layers/`): a cache, dropped by
    /// `kiln prune --all`.
    pub fn guards(&self) -> PathBuf {
        self.root.join("cache/guards")
    }

    /// The directory of cache mount `id`.
    pub fn cache_mount(&self, id: &str) -> PathBuf {
        self.cache_mounts()
            .join(blake3::hash(id.as_bytes()).to_hex().as_str())
    }
}

/// What a session is for.
pub struct SessionOptions {
    /// The container runtime for RUN; `None` when nothing will run.
    pub runtime: Option<Runtime>,
    /// With `Chroot`, RUN steps are plain processes in a root laid out in
    /// place, whatever `runtime` says.
    pub isolation: Isolation,
    pub insecure_registries: Vec<String>,
}

/// The store, caches, snapshotter, executor, registry client and async
/// runtime of one build.
pub struct Session {
    pub paths: Paths,
    pub store: Store,
    pub cache: Cache,
    pub snapshotter: Arc<dyn Snapshotter>,
    /// Content hashes of build-context files, kept across builds (see
    /// kiln_fs::file_hashes; each layer snapshot keeps its own).
    pub file_hashes: Arc<FileHashes>,
    /// One client for every pull and push, so auth tokens are reused; made
    /// on first use (loading the CA roots costs a cached build ~10 ms).
    registry: OnceLock<kiln_registry::Client>,
    insecure_registries: Vec<String>,
    /// Registry transfers and downloads are async; build threads block on them.
    pub runtime: tokio::runtime::Runtime,
    executor: Option<Arc<dyn kiln_exec::Executor>>,
    /// Caches imported with `--cache-from` (empty without).
    pub remote: RemoteCache,
    /// Ids of the cache mounts this build used (for `cache-mounts=true`).
    pub used_mounts: Mutex<BTreeSet<String>>,
}

impl Session {
    pub(crate) fn new(
        paths: Paths,
        store: Store,
        cache: Cache,
        snapshotter: Arc<dyn Snapshotter>,
        file_hashes: Arc<FileHashes>,
        options: SessionOptions,
    ) -> Result<Session, BuildError> {
        let (snapshotter, runtime) = match &options.isolation {
            Isolation::Container => (snapshotter, options.runtime.map(exec_runtime)),
            Isolation::Chroot(c) => {
                let snapshots = snapshotter.snapshots().clone();
                let root: Arc<dyn Snapshotter> = Arc::new(crate::isolation::root_snapshotter(
                    snapshots,
                    c,
                    &paths.root,
                )?);
                (root, options.runtime.map(|_| kiln_exec::Runtime::Chroot))
            }
        };
        let executor = match runtime {
            Some(r) => Some(executor(r, &paths.exec())?.into()),
            None => None,
        };
        Ok(Session {
            paths,
            store,
            remote: RemoteCache::new(cache.clone()),
            cache,
            snapshotter,
            file_hashes,
            registry: OnceLock::new(),
            insecure_registries: options.insecure_registries,
            runtime: async_runtime()?,
            executor,
            used_mounts: Mutex::new(BTreeSet::new()),
        })
    }

    /// Reads the `--cache-from` sources; an unusable one is a warning.
    pub fn import_remote(&mut self, froms: &[CacheFrom], warn: &dyn Fn(String)) {
        let mut remote = std::mem::replace(&mut self.remote, RemoteCache::new(self.cache.clone()));
        remote.import(froms, &self.transport(), warn);
        self.remote = remote;
    }

    /// The registry client, made the first time a build talks to one.
    pub fn registry(&self) -> &kiln_registry::Client {
        self.registry
            .get_or_init(|| registry_client(&self.insecure_registries))
    }

    fn transport(&self) -> Transport<'_> {
        Transport {
            client: self.registry(),
            runtime: &self.runtime,
            store: &self.store,
        }
    }

    /// A record from this root's cache, else from an imported one.
    pub fn record(&self, key: &CacheKey) -> Option<CacheRecord> {
        self.cache.get(key).or_else(|| self.remote.record(key))
    }

    /// The record key a fast key names, here or in an imported cache.
    pub fn alias(&self, fast: &CacheKey) -> Option<CacheKey> {
        self.cache.alias(fast).or_else(|| self.remote.alias(fast))
    }

    /// Makes sure a blob is in the store: writing a layer kept only as a
    /// snapshot (`kiln_fs::snapshot` `kept`), or fetching it from a remote
    /// cache.
    pub fn ensure_blob(&self, digest: &Digest) -> Result<(), BuildError> {
        if self.store.has_blob(digest) || self.write_kept_layer(digest)? {
            return Ok(());
        }
        self.remote
            .fetch(digest, &self.transport())
            .map_err(|message| BuildError::RemoteCache {
                digest: digest.to_string(),
                message,
            })
    }

    /// Whether `digest` is in the store or can be written there from a
    /// snapshot (which then stays until this process ends).
    pub fn has_layer_blob(&self, digest: &Digest) -> bool {
        self.store.has_blob(digest)
            || self
                .snapshotter
                .snapshots()
                .can_rewrite_layer(&kiln_oci::DiffId(*digest))
    }

    /// Writes the uncompressed layer `digest` (its own diff_id) into the
    /// store from the snapshot that kept it; `false` if none did.
    fn write_kept_layer(&self, digest: &Digest) -> Result<bool, BuildError> {
        let snapshots = self.snapshotter.snapshots();
        let diff_id = kiln_oci::DiffId(*digest);
        if !snapshots.can_rewrite_layer(&diff_id) {
            return Ok(false);
        }
        let mut ingest = self
            .store
            .ingest(Some(*digest))
            .context(|| format!("starting layer blob {digest} in the store"))?;
        let Some(info) = snapshots
            .rewrite_layer(&diff_id, &mut ingest)
            .context(|| format!("writing layer {digest} from its snapshot"))?
        else {
            return Ok(false);
        };
        ingest
            .commit()
            .context(|| format!("layer {digest} written again from its snapshot"))?;
        self.record_layer(digest, &info)?;
        Ok(true)
    }

    /// Remembers the diff_id and size of the layer blob `digest`.
    pub fn record_layer(
        &self,
        digest: &Digest,
        info: &kiln_fs::layer::LayerInfo,
    ) -> Result<(), BuildError> {
        self.store
            .record_layer_info(
                digest,
                &kiln_store::LayerInfo {
                    diff_id: info.diff_id,
                    uncompressed_size: info.size,
                },
            )
            .context(|| "recording the layer's diff_id".to_string())
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<std::fs::File, BuildError> {
        self.ensure_blob(digest)?;
        self.store
            .open_blob(digest)
            .context(|| format!("reading blob {digest}"))
    }

    /// Fills the new cache mount dir `dir` with the contents an imported
    /// cache has for mount `id`; `Ok(false)` when it has none.
    pub fn seed_cache_mount(&self, id: &str, dir: &Path) -> Result<bool, String> {
        let Some(digest) = self.remote.mount_blob(id) else {
            return Ok(false);
        };
        if !self.store.has_blob(&digest) {
            self.remote.fetch(&digest, &self.transport())?;
        }
        let tmp = dir.with_extension("seed");
        let _ = std::fs::remove_dir_all(&tmp);
        let unpack = || -> Result<(), String> {
            std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
            let blob = self.store.open_blob(&digest).map_err(|e| e.to_string())?;
            let plain = kiln_oci::compression::decompress(blob).map_err(|e| e.to_string())?;
            kiln_fs::apply_layer(&tmp, plain).map_err(|e| e.to_string())?;
            Ok(())
        };
        if let Err(e) = unpack() {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if std::fs::rename(&tmp, dir).is_err() {
            // Another build created it first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Ok(true)
    }

    /// The error for a layer that could not be extracted: a remote cache's
    /// blob that was wrong becomes `RemoteCache` (the build retries without
    /// it), anything else stays what it was.
    pub fn blob_error(&self, digest: &Digest, e: kiln_fs::snapshot::SnapshotError) -> BuildError {
        let text = e.to_string();
        if let Some(inner) = find_remote(&e) {
            return inner;
        }
        if self.remote.reject(digest) {
            return BuildError::RemoteCache {
                digest: digest.to_string(),
                message: format!("from {}: {text}", self.remote.origin_name(digest)),
            };
        }
        BuildError::other(format!("extracting layer {digest}"), e)
    }

    /// The container runtime for RUN steps and `kiln run`.
    pub fn executor(&self) -> Result<&Arc<dyn kiln_exec::Executor>, BuildError> {
        self.executor.as_ref().ok_or_else(|| {
            BuildError::other(
                "running a container",
                "this session was opened without a container runtime",
            )
        })
    }

    /// Runs an async registry or download operation from a build thread.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }
}

/// A `RemoteCache` error that travelled through the snapshotter's io::Error.
fn find_remote(e: &(dyn std::error::Error + 'static)) -> Option<BuildError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        // An io::Error's source() skips the error it wraps: look inside.
        let wrapped = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<BuildError>());
        if let Some(BuildError::RemoteCache { digest, message }) =
            err.downcast_ref::<BuildError>().or(wrapped)
        {
            return Some(BuildError::RemoteCache {
                digest: digest.clone(),
                message: message.clone(),
            });
        }
        cur = err.source();
    }
    None
}

impl Records for Session {
    fn get(&self, key: &CacheKey) -> Option<CacheRecord> {
        self.record(key)
    }

    fn latest(&self, identity: &str) -> Option<CacheKey> {
        self.cache
            .latest(identity)
            .or_else(|| self.remote.latest(identity))
    }
}

fn exec_runtime(runtime: Runtime) -> kiln_exec::Runtime {
    match runtime {
        Runtime::Youki => kiln_exec::Runtime::Youki,
        Runtime::Runc => kiln_exec::Runtime::Runc,
    }
}

fn executor(
    runtime: kiln_exec::Runtime,
    dir: &Path,
) -> Result<Box<dyn kiln_exec::Executor>, BuildError> {
    kiln_exec::executor(runtime, dir).context(|| "starting the container runtime".to_string())
}

/// A registry client with the user's credentials and insecure registries.
fn registry_client(insecure_registries: &[String]) -> kiln_registry::Client {
    kiln_registry::Client::new(kiln_registry::ClientOptions {
        insecure_registries: insecure_registries.to_vec(),
        ..Default::default()
    })
}

fn async_runtime() -> Result<tokio::runtime::Runtime, BuildError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context(|| "starting the async runtime".to_string())
}
