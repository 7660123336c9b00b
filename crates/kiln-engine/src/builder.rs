//! `Builder::build`: Dockerfile → plan → stages (in parallel) → image → outputs.

use std::path::Path;
use std::sync::Arc;

use kiln_oci::{Digest, Platform};
use kiln_store::Store;

use crate::base::BaseImages;
use crate::cache::Cache;
use crate::context::{load_context, ContextInput};
use crate::error::{BuildError, Context};
use crate::export;
use crate::progress::{Progress, Steps};
use crate::request::{BuildRequest, Built};
use crate::schedule::{run_all, Board};
use crate::session::{Paths, Session, SessionOptions};
use crate::state::{StageBuild, StageOutput};

/// Opens the store and caches under `root`; builds any number of times.
pub struct Builder {
    paths: Paths,
    store: Store,
    cache: Cache,
    snapshotter: Arc<dyn kiln_fs::snapshot::Snapshotter>,
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
        let snapshots = kiln_fs::snapshot::Snapshots::open(root)
            .context(|| format!("opening snapshots in {}", root.display()))?;
        let snapshotter = kiln_fs::snapshot::snapshotter(snapshots)
            .context(|| "choosing a snapshotter".to_string())?;
        Ok(Builder {
            paths,
            store,
            cache,
            snapshotter: snapshotter.into(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A session over this root: the parts of one build or one `kiln run`.
    pub(crate) fn session(&self, options: SessionOptions) -> Result<Session, BuildError> {
        Session::new(
            self.paths.clone(),
            self.store.clone(),
            self.cache.clone(),
            self.snapshotter.clone(),
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
        let input: ContextInput = load_context(&self.paths.root, req)?;
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

        let session = self.session(SessionOptions {
            runtime: Some(req.runtime),
            insecure_registries: req.insecure_registries.clone(),
        })?;
        let bases = BaseImages::new(&session, req.pull, platform.clone());
        let board: Board<StageOutput> = Board::new();
        let stage_ids: Vec<usize> = plan.stages.iter().map(|s| s.index).collect();
        let shared = StageBuild {
            session: &session,
            request: req,
            plan: &plan,
            dockerfile_name: &input.dockerfile_name,
            context: &input.context,
            bases: &bases,
            board: &board,
            steps: &steps,
            secrets: &secrets,
            platform: &platform,
        };
        run_all(&stage_ids, &board, |index| shared.build_stage(index))?;
        let target = board
            .wait(plan.target)
            .ok_or_else(|| BuildError::other("building the target stage", "it did not finish"))?;

        let built = export::export(&session, req, &steps, &target, &platform)?;
        self.keep_cached_layers();
        Ok(built)
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
