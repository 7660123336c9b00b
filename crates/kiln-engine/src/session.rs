//! A build session: what every step of one build (or one `kiln run` /
//! `kiln cp`) shares, owned in one place so that the stages and ops depend
//! on it and on nothing above them.
//!
//! Lifecycle: `Builder::session(options)` → any number of steps borrow it
//! (from several stage threads) → dropped at the end of the build.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_fs::snapshot::Snapshotter;
use kiln_store::Store;

use crate::cache::Cache;
use crate::error::{BuildError, Context};
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
}

/// What a session is for.
pub struct SessionOptions {
    /// The container runtime for RUN; `None` when nothing will run.
    pub runtime: Option<Runtime>,
    pub insecure_registries: Vec<String>,
}

/// The store, caches, snapshotter, executor, registry client and async
/// runtime of one build.
pub struct Session {
    pub paths: Paths,
    pub store: Store,
    pub cache: Cache,
    pub snapshotter: Arc<dyn Snapshotter>,
    /// One client for every pull and push, so auth tokens are reused.
    pub registry: kiln_registry::Client,
    /// Registry transfers and downloads are async; build threads block on them.
    pub runtime: tokio::runtime::Runtime,
    executor: Option<Arc<dyn kiln_exec::Executor>>,
}

impl Session {
    pub(crate) fn new(
        paths: Paths,
        store: Store,
        cache: Cache,
        snapshotter: Arc<dyn Snapshotter>,
        options: SessionOptions,
    ) -> Result<Session, BuildError> {
        let executor = match options.runtime {
            Some(r) => Some(executor(r, &paths.exec())?.into()),
            None => None,
        };
        Ok(Session {
            paths,
            store,
            cache,
            snapshotter,
            registry: registry_client(&options.insecure_registries),
            runtime: async_runtime()?,
            executor,
        })
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

fn executor(runtime: Runtime, dir: &Path) -> Result<Box<dyn kiln_exec::Executor>, BuildError> {
    let runtime = match runtime {
        Runtime::Youki => kiln_exec::Runtime::Youki,
        Runtime::Runc => kiln_exec::Runtime::Runc,
    };
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
