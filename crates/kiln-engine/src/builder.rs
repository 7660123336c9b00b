//! `Builder::build`: Dockerfile → plan → stages (in parallel) → image → outputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_oci::{Digest, Platform, Reference};
use kiln_store::Store;

use crate::base::BaseImages;
use crate::cache::Cache;
use crate::context::{load_context, ContextInput};
use crate::error::{BuildError, Context};
use crate::export;
use crate::options::{NetworkMode, Output, Secret};
use crate::progress::{Progress, Steps};
use crate::schedule::{run_all, Board};
use crate::stage::{StageBuild, StageOutput};

/// Which container runtime runs RUN steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// Embedded youki libcontainer.
    #[default]
    Youki,
    /// The external `runc` binary.
    Runc,
}

/// Compression of the layers a build writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    #[default]
    Gzip,
    /// zstd, with OCI media types.
    Zstd,
    /// No compression.
    Uncompressed,
}

#[derive(Clone, Debug)]
pub enum DockerfileSource {
    /// `CONTEXT/Dockerfile`.
    InContext,
    Path(PathBuf),
    Stdin,
}

/// Everything `kiln build` was asked for.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    /// A directory, or `-` for a tar (or a lone Dockerfile) on stdin.
    pub context: String,
    pub dockerfile: DockerfileSource,
    pub tags: Vec<Reference>,
    pub target: Option<String>,
    pub build_args: Vec<(String, String)>,
    pub no_cache: bool,
    pub pull: bool,
    pub platform: Option<String>,
    pub labels: Vec<(String, String)>,
    pub network: NetworkMode,
    pub secrets: Vec<Secret>,
    pub outputs: Vec<Output>,
    pub push: bool,
    pub runtime: Runtime,
    pub compression: Compression,
    pub insecure_registries: Vec<String>,
}

/// The result of a build.
#[derive(Clone, Debug)]
pub struct Built {
    /// The config digest, which Docker calls the image id.
    pub image_id: Digest,
    pub manifest_digest: Digest,
}

/// Opens the store and caches under `root`; builds any number of times.
pub struct Builder {
    pub(crate) root: PathBuf,
    pub(crate) store: Store,
    pub(crate) cache: Cache,
    pub(crate) snapshotter: Box<dyn kiln_fs::snapshot::Snapshotter>,
}

impl Builder {
    pub fn open(root: &Path) -> Result<Builder, BuildError> {
        // Absolute: container bundles and mounts must not depend on the cwd.
        std::fs::create_dir_all(root).context(|| format!("creating {}", root.display()))?;
        let root =
            &std::path::absolute(root).context(|| format!("resolving {}", root.display()))?;
        let store =
            Store::open(root).context(|| format!("opening the store at {}", root.display()))?;
        let cache = Cache::open(root)
            .context(|| format!("opening the build cache in {}", root.display()))?;
        // Containers whose kiln was killed with -9 (snapshots clean up
        // after themselves in Snapshots::open).
        if let Err(e) = kiln_exec::cleanup_stale(&root.join("tmp/exec")) {
            tracing::warn!("cleaning up containers of killed builds: {e}");
        }
        for dir in ["tmp", "snapshots", "cache/mounts"] {
            std::fs::create_dir_all(root.join(dir))
                .context(|| format!("creating {}/{dir}", root.display()))?;
        }
        let snapshots = kiln_fs::snapshot::Snapshots::open(root)
            .context(|| format!("opening snapshots in {}", root.display()))?;
        let snapshotter = kiln_fs::snapshot::snapshotter(snapshots)
            .context(|| "choosing a snapshotter".to_string())?;
        Ok(Builder {
            root: root.to_path_buf(),
            store,
            cache,
            snapshotter,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn build(&self, req: &BuildRequest, progress: &dyn Progress) -> Result<Built, BuildError> {
        let steps = Steps::new(progress);
        let platform = match &req.platform {
            Some(p) => Platform::parse(p).context(|| format!("--platform {p}"))?,
            None => Platform::host(),
        };

        // [internal] load build definition and context.
        let step = steps.start("[internal] load build definition and context".into());
        let input: ContextInput = load_context(&self.root, req)?;
        let dockerfile = kiln_dockerfile::parse(&input.dockerfile_name, &input.dockerfile)
            .map_err(|e| BuildError::Dockerfile(e.to_string()))?;
        let plan = kiln_dockerfile::plan(
            &dockerfile,
            &kiln_dockerfile::PlanOptions {
                target: req.target.clone(),
                build_args: req.build_args.clone(),
                target_platform: platform.to_string(),
                build_platform: Platform::host().to_string(),
            },
        )
        .map_err(|e| BuildError::Dockerfile(e.to_string()))?;
        step.done();
        for w in &plan.warnings {
            steps.warn(format!("{}: {}", w.rule, w.message));
        }

        let secrets = req
            .secrets
            .iter()
            .map(|s| Ok((s.id.clone(), s.read()?)))
            .collect::<Result<Vec<_>, BuildError>>()?;

        let runtime = async_runtime()?;
        let bases = BaseImages::new(
            self,
            req.pull,
            req.insecure_registries.clone(),
            platform.clone(),
            runtime.handle().clone(),
        );
        let executor: Arc<dyn kiln_exec::Executor> = self.executor(req.runtime)?.into();

        let board: Board<StageOutput> = Board::new();
        let stage_ids: Vec<usize> = plan.stages.iter().map(|s| s.index).collect();
        let shared = StageBuild {
            builder: self,
            request: req,
            plan: &plan,
            dockerfile_name: &input.dockerfile_name,
            context: &input.context,
            bases: &bases,
            board: &board,
            steps: &steps,
            executor,
            secrets: &secrets,
            platform: &platform,
            runtime: runtime.handle(),
        };
        run_all(&stage_ids, &board, |index| shared.build_stage(index))?;
        let target = board
            .wait(plan.target)
            .ok_or_else(|| BuildError::other("building the target stage", "it did not finish"))?;

        let built = export::export(self, req, &steps, &target, &platform, &runtime)?;
        self.keep_cached_layers();
        Ok(built)
    }

    /// The container runtime for RUN steps and `kiln run`.
    pub(crate) fn executor(
        &self,
        runtime: Runtime,
    ) -> Result<Box<dyn kiln_exec::Executor>, BuildError> {
        let runtime = match runtime {
            Runtime::Youki => kiln_exec::Runtime::Youki,
            Runtime::Runc => kiln_exec::Runtime::Runc,
        };
        kiln_exec::executor(runtime, &self.root.join("tmp/exec"))
            .context(|| "starting the container runtime".to_string())
    }

    /// Declares the layers the cache refers to as live, so `kiln prune`
    /// keeps them although no image names them.
    fn keep_cached_layers(&self) {
        let digests: Vec<Digest> = self
            .cache
            .referenced_blobs()
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect();
        if let Err(e) = self.store.set_lease("build-cache", &digests) {
            tracing::warn!("recording the build cache's layers: {e}");
        }
    }
}

/// Registry transfers and downloads are async; build threads block on them.
pub(crate) fn async_runtime() -> Result<tokio::runtime::Runtime, BuildError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context(|| "starting the async runtime".to_string())
}
