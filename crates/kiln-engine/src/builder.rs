//! `Builder::build`: Dockerfile → plan → stages (in parallel) → image → outputs.

use std::path::Path;
use std::sync::Arc;

use kiln_oci::Platform;
use kiln_store::Store;

use crate::base::BaseImages;
use crate::cache::Cache;
use crate::context::{load_context, ContextInput};
use crate::disk::{Disk, DEFAULT_CACHE_MAX_SIZE};
use crate::error::{BuildError, Context};
use crate::explain::Link;
use crate::options::LayerCompression;
use crate::progress::{Progress, Steps};
use crate::request::{BuildRequest, Built};
use crate::schedule::{run_all, Board};
use crate::session::{Paths, Session, SessionOptions};
use crate::state::{StageBuild, StageOutput};
use crate::{cache_export, export};
use kiln_fs::file_hashes::FileHashes;

/// What one build works from, once the Dockerfile is planned.
struct Build<'a> {
    req: &'a BuildRequest,
    plan: &'a kiln_dockerfile::Plan,
    input: &'a ContextInput,
    secrets: &'a [(String, Vec<u8>)],
    platform: &'a Platform,
}

/// Opens the store and caches under `root`; builds any number of times.
pub struct Builder {
    paths: Paths,
    store: Store,
    cache: Cache,
    snapshotter: Arc<dyn kiln_fs::snapshot::Snapshotter>,
    /// Content hashes of build-context files, kept across builds
    /// (`ROOT/cache/file-hashes/`, one file per context directory).
    file_hashes: Arc<FileHashes>,
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
        let paths = Paths {
            root: root.to_path_buf(),
        };
        // Containers whose kiln was killed with -9 (snapshots clean up
        // after themselves in Snapshots::open).
        if let Err(e) = kiln_exec::cleanup_stale(&paths.exec()) {
            tracing::warn!("cleaning up containers of killed builds: {e}");
        }
        for dir in [paths.tmp(), root.join("snapshots"), paths.cache_mounts()] {
            std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        }
        let file_hashes = Arc::new(FileHashes::open(&root.join("cache/file-hashes")));
        let snapshots = kiln_fs::snapshot::Snapshots::open(root)
            .context(|| format!("opening snapshots in {}", root.display()))?;
        let snapshotter = kiln_fs::snapshot::snapshotter(snapshots)
            .context(|| "choosing a snapshotter".to_string())?;
        Ok(Builder {
            paths,
            store,
            cache,
            snapshotter: snapshotter.into(),
            file_hashes,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where the guards remember their results (`Paths::guards`).
    pub fn guards_dir(&self) -> std::path::PathBuf {
        self.paths.guards()
    }

    /// Disk use and giving it back (`kiln prune`, `kiln system df`).
    pub fn disk(&self) -> Disk<'_> {
        Disk {
            store: &self.store,
            cache: &self.cache,
            snapshots: self.snapshotter.snapshots(),
            paths: &self.paths,
        }
    }

    /// The manifest `kiln push` sends for the stored image `name`: its
    /// layers compressed as asked (they are stored uncompressed).
    pub fn manifest_for_push(
        &self,
        name: &str,
        compression: LayerCompression,
    ) -> Result<Vec<u8>, BuildError> {
        crate::compress::manifest_for_push(&self.store, &self.cache, name, compression)
    }

    /// A session over this root: the parts of one build or one `kiln run`.
    pub(crate) fn session(&self, options: SessionOptions) -> Result<Session, BuildError> {
        Session::new(
            self.paths.clone(),
            self.store.clone(),
            self.cache.clone(),
            self.snapshotter.clone(),
            self.file_hashes.clone(),
            options,
        )
    }

    pub fn build(&self, req: &BuildRequest, progress: &dyn Progress) -> Result<Built, BuildError> {
        let steps = Steps::new(progress);
        let platform = match &req.platform {
            Some(p) => Platform::parse(p).context(|| format!("--platform {p}"))?,
            None => Platform::host(),
        };

        // [internal] load build definition and context.
        let step = steps.start("[internal] load build definition and context".into());
        let input: ContextInput = load_context(&self.paths.root, req, &self.file_hashes)?;
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

        let mut session = self.session(SessionOptions {
            runtime: Some(req.runtime),
            isolation: req.isolation.clone(),
            insecure_registries: req.insecure_registries.clone(),
        })?;
        if !req.cache_from.is_empty() {
            let step = steps.start("importing cache manifests".into());
            session.import_remote(&req.cache_from, &|w| steps.warn(w));
            step.done();
        }
        let build = Build {
            req,
            plan: &plan,
            input: &input,
            secrets: &secrets,
            platform: &platform,
        };
        // A bad blob of an imported cache that a stage cannot rebuild
        // itself (another stage made it: see `run_steps`) is dropped and
        // the build runs again: what was built meanwhile is a local hit.
        let mut attempts = 0;
        let built = loop {
            match self.build_once(&session, &build, &steps) {
                Err(BuildError::RemoteCache { digest, message }) if attempts < 8 => {
                    attempts += 1;
                    steps.warn(format!(
                        "imported cache blob {digest} is unusable ({message}); rebuilding the steps that need it"
                    ));
                }
                other => break other?,
            }
        };
        let limit = req.cache_max_size.unwrap_or(DEFAULT_CACHE_MAX_SIZE);
        if let Err(e) = self.disk().trim_cache(limit) {
            steps.warn(format!("trimming the build cache to {limit} bytes: {e}"));
        }
        let (from_index, read) = self.file_hashes.counts();
        tracing::info!(from_index, read, "file hashes");
        if let Err(e) = self.file_hashes.save() {
            steps.warn(format!("saving the file-hash index: {e}"));
        }
        Ok(built)
    }

    fn build_once(
        &self,
        session: &Session,
        build: &Build,
        steps: &Steps,
    ) -> Result<Built, BuildError> {
        let plan = build.plan;
        let bases = BaseImages::new(session, build.req.pull, build.platform.clone());
        let board: Board<StageOutput> = Board::new();
        let stage_ids: Vec<usize> = plan.stages.iter().map(|s| s.index).collect();
        let shared = StageBuild {
            session,
            request: build.req,
            plan,
            dockerfile_name: &build.input.dockerfile_name,
            context: &build.input.context,
            bases: &bases,
            board: &board,
            steps,
            secrets: build.secrets,
            platform: build.platform,
        };
        run_all(&stage_ids, &board, |index| shared.build_stage(index))?;
        let target = board
            .wait(plan.target)
            .ok_or_else(|| BuildError::other("building the target stage", "it did not finish"))?;
        let stages = crate::sizes::stage_sizes(session, plan, &board)?;
        let mut built =
            export::export(session, build.req, steps, &target, &stages, build.platform)?;
        built.other_stages = crate::sizes::stage_layers(plan, &board);
        let outputs: Vec<_> = stage_ids.iter().filter_map(|i| board.wait(*i)).collect();
        let chains: Vec<&[Link]> = outputs.iter().map(|o| &o.chain[..]).collect();
        let pushed = build.req.tags.first().filter(|_| build.req.push);
        cache_export::export_caches(
            session,
            &build.req.cache_to,
            pushed,
            steps,
            &chains,
            &target.chain,
        )?;
        Ok(built)
    }
}
