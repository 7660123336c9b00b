//! Building one stage: start from its base, then carry out each step.

use std::sync::Arc;

use kiln_dockerfile::{Base, BaseImageConfig, Plan, Step, StepKind};
use kiln_fs::context::BuildContext;
use kiln_oci::Platform;

use crate::base::BaseImages;
use crate::builder::{BuildRequest, Builder};
use crate::cache::{CacheKey, KeyBuilder};
use crate::error::{BuildError, Context};
use crate::image::{History, ImageConfig, DEFAULT_PATH};
use crate::layer::Layer;
use crate::ops;
use crate::progress::Steps;
use crate::schedule::Board;

/// A finished stage: what the next stage, a `COPY --from` or the exporter needs.
#[derive(Clone, Debug)]
pub struct StageOutput {
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    /// Cache key of the stage's last step: identifies its file system.
    pub key: CacheKey,
}

/// What every stage of one build shares.
pub struct StageBuild<'a> {
    pub builder: &'a Builder,
    pub request: &'a BuildRequest,
    pub plan: &'a Plan,
    pub dockerfile_name: &'a str,
    pub context: &'a BuildContext,
    pub bases: &'a BaseImages<'a>,
    pub board: &'a Board<StageOutput>,
    pub steps: &'a Steps<'a>,
    pub executor: Arc<dyn kiln_exec::Executor>,
    pub secrets: &'a [(String, Vec<u8>)],
    pub platform: &'a Platform,
    /// For async work (pulls, downloads) from the stage threads.
    pub runtime: &'a tokio::runtime::Handle,
}

/// The evolving state of a stage while its steps run.
pub struct StageState {
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    pub key: CacheKey,
    /// `[name n/total]` prefix for progress lines.
    pub label: String,
    /// Whether a CMD of this stage was seen (ENTRYPOINT then keeps it).
    pub cmd_set: bool,
}

impl StageState {
    /// Takes a file step's result: its layer (none when it changed nothing),
    /// its history entry and its key.
    pub fn push(&mut self, step: &Step, key: CacheKey, layer: Option<Layer>) {
        add_history(&mut self.config, &step.created_by, layer.is_none());
        self.layers.extend(layer);
        self.key = key;
    }
}

impl StageBuild<'_> {
    /// The cached result of a file step on top of `layers`, unless `--no-cache`.
    pub fn cache_hit(
        &self,
        key: &CacheKey,
        layers: &[Layer],
    ) -> Result<Option<Option<Layer>>, BuildError> {
        if self.request.no_cache {
            return Ok(None);
        }
        crate::rootfs::cached_layer(self.builder, key, layers)
    }

    /// Turns a step's changes into its layer and records it in the cache.
    pub fn commit(
        &self,
        rootfs: crate::rootfs::WorkingRootfs,
        key: &CacheKey,
    ) -> Result<Option<Layer>, BuildError> {
        let layer = rootfs.commit(self.builder)?;
        self.builder
            .cache
            .put(key, &crate::rootfs::record(layer.as_ref()))
            .context(|| "writing the build cache".to_string())?;
        Ok(layer)
    }

    /// Waits for a stage this one depends on; fails if the build failed meanwhile.
    pub fn wait_stage(&self, index: usize) -> Result<Arc<StageOutput>, BuildError> {
        self.board.wait(index).ok_or(BuildError::Interrupted)
    }

    pub fn location(&self, step: &Step) -> String {
        format!("{}:{}", self.dockerfile_name, step.span.line)
    }

    pub fn build_stage(&self, index: usize) -> Result<StageOutput, BuildError> {
        let stage = self
            .plan
            .stages
            .iter()
            .find(|s| s.index == index)
            .expect("planned stage");
        let stage_name = stage
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{index}"));

        let (mut config, layers, key) = match &stage.base {
            Base::Scratch => (
                scratch_config(self.platform),
                Vec::new(),
                KeyBuilder::new("scratch")
                    .str("platform", &self.platform.to_string())
                    .finish(),
            ),
            Base::Stage(i) => {
                let out = self.wait_stage(*i)?;
                (out.config.clone(), out.layers.clone(), out.key)
            }
            Base::Image(name) => {
                let step = self.steps.start(format!("[{stage_name}] FROM {name}"));
                let base = self.bases.get(name)?;
                step.done();
                (base.config.clone(), base.layers.clone(), base.key)
            }
        };
        // BuildKit sets the default PATH on a base without one before
        // anything expands, so `ENV PATH=/opt/bin:$PATH` extends it.
        if config.config.env_value("PATH").is_none() {
            config.config.set_env("PATH", DEFAULT_PATH);
        }
        let base_config = BaseImageConfig {
            env: config.config.env.clone().unwrap_or_default(),
            onbuild: config.config.on_build.clone().unwrap_or_default(),
            shell: config.config.shell.clone(),
            working_dir: Some(config.config.working_dir.clone()).filter(|w| !w.is_empty()),
        };
        // Triggers run once, in the stage built on the image that declared them.
        config.config.on_build = None;
        let steps = kiln_dockerfile::lower(self.plan, index, &base_config)
            .map_err(|e| BuildError::Dockerfile(e.to_string()))?;

        let mut state = StageState {
            config,
            layers,
            key,
            label: String::new(),
            cmd_set: false,
        };
        let total = steps.iter().filter(|s| !is_meta(&s.kind)).count();
        let mut n = 0;
        for step in &steps {
            if self.board.has_failed() || crate::interrupted() {
                return Err(BuildError::Interrupted);
            }
            if !is_meta(&step.kind) {
                n += 1;
            }
            state.label = format!("[{stage_name} {n}/{total}]");
            self.apply(&mut state, step)?;
        }
        Ok(StageOutput {
            config: state.config,
            layers: state.layers,
            key: state.key,
        })
    }

    fn apply(&self, state: &mut StageState, step: &Step) -> Result<(), BuildError> {
        match &step.kind {
            StepKind::Run {
                cmd,
                shell,
                mounts,
                network,
                build_env,
                proxy_env,
                ..
            } => ops::run::run(
                self,
                state,
                step,
                ops::run::RunArgs {
                    cmd,
                    shell,
                    mounts,
                    network: *network,
                    build_env,
                    proxy_env,
                },
            ),
            StepKind::Copy {
                is_add,
                sources,
                heredocs,
                dest,
                from,
                chown,
                chmod,
                link,
                exclude,
                parents,
                checksum,
                unpack,
                ..
            } => ops::copy::copy(
                self,
                state,
                step,
                ops::copy::CopyArgs {
                    is_add: *is_add,
                    sources,
                    heredocs,
                    dest,
                    from: from.as_ref(),
                    chown: chown.as_deref(),
                    chmod: chmod.as_deref(),
                    link: *link,
                    exclude,
                    parents: *parents,
                    checksum: checksum.as_deref(),
                    unpack: *unpack,
                },
            ),
            StepKind::Workdir(dir) => ops::workdir::workdir(self, state, step, dir),
            StepKind::Maintainer(name) => {
                state
                    .config
                    .extra
                    .insert("author".into(), serde_json::Value::String(name.clone()));
                self.meta_step(state, step);
                Ok(())
            }
            other => {
                ops::meta::apply(&mut state.config.config, other, &mut state.cmd_set);
                self.meta_step(state, step);
                Ok(())
            }
        }
    }

    /// Config-only steps change the key (later steps see their effect) and
    /// add an empty-layer history entry (ARG and ONBUILD-triggered ones don't).
    fn meta_step(&self, state: &mut StageState, step: &Step) {
        state.key = KeyBuilder::new("meta")
            .key("parent", &state.key)
            .str("step", &step.created_by)
            .str("original", &step.original)
            .finish();
        if !step.created_by.is_empty() && !matches!(step.kind, StepKind::Arg(_)) {
            add_history(&mut state.config, &step.created_by, true);
        }
    }
}

/// Steps that only change the config: they get no `[n/total]` number.
fn is_meta(kind: &StepKind) -> bool {
    !matches!(
        kind,
        StepKind::Run { .. } | StepKind::Copy { .. } | StepKind::Workdir(_)
    )
}

pub fn scratch_config(platform: &Platform) -> ImageConfig {
    let mut c = ImageConfig {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        ..Default::default()
    };
    c.config.set_env("PATH", DEFAULT_PATH);
    // BuildKit's empty image says "/" explicitly.
    c.config.working_dir = "/".into();
    c
}

/// Appends a history entry as BuildKit writes it.
pub fn add_history(config: &mut ImageConfig, created_by: &str, empty_layer: bool) {
    config.history.push(History {
        created: Some(crate::time::now_rfc3339()),
        created_by: Some(created_by.to_string()),
        comment: Some("buildkit.dockerfile.v0".into()),
        empty_layer,
    });
}
