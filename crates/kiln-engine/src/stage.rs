//! Building one stage: start from its base, then carry out each step.

use kiln_dockerfile::{Base, BaseImageConfig, Step, StepKind};
use kiln_oci::Platform;

use crate::cache::inputs;
use crate::error::BuildError;
use crate::explain::{record_link, Link};
use crate::image::{ImageConfig, DEFAULT_PATH};
use crate::ops;
use crate::state::{add_history, Mark, StageBuild, StageOutput, StageState};

impl StageBuild<'_> {
    /// Builds stage `index`. When a blob of an imported cache that another
    /// stage made turns out unusable, that stage is built again (only the
    /// step that made the blob misses) and this one starts over on it.
    pub fn build_stage(&self, index: usize) -> Result<StageOutput, BuildError> {
        loop {
            match self.build_stage_once(index) {
                Err(BuildError::RemoteCache { digest, message }) => {
                    if !self.rebuild_maker(index, &digest, &message)? {
                        return Err(BuildError::RemoteCache { digest, message });
                    }
                }
                other => return other,
            }
        }
    }

    /// Builds again the finished stage whose own steps made the layer
    /// `digest`, and publishes the result; `false` when no stage did.
    fn rebuild_maker(&self, index: usize, digest: &str, message: &str) -> Result<bool, BuildError> {
        let Ok(d) = digest.parse::<kiln_oci::Digest>() else {
            return Ok(false);
        };
        let maker = self.plan.stages.iter().map(|s| s.index).find(|&i| {
            i != index
                && self
                    .board
                    .get(i)
                    .is_some_and(|o| o.layers[o.base_layers..].iter().any(|l| l.digest == d))
        });
        let Some(maker) = maker else {
            return Ok(false);
        };
        self.steps.warn(format!(
            "imported cache blob {digest} is unusable ({message}); rebuilding the step of stage {} that made it",
            self.stage_name(maker)
        ));
        let out = self.build_stage(maker)?;
        self.board.publish(maker, out);
        Ok(true)
    }

    fn stage_name(&self, index: usize) -> String {
        self.plan
            .stage(index)
            .and_then(|s| s.name.clone())
            .unwrap_or_else(|| format!("stage-{index}"))
    }

    fn build_stage_once(&self, index: usize) -> Result<StageOutput, BuildError> {
        let stage = self.plan.stage(index).expect("planned stage");
        let stage_name = self.stage_name(index);

        let base_link = |inputs, label: String| {
            let link = Link {
                inputs,
                label,
                details: Default::default(),
            };
            record_link(&self.session.cache, &link);
            vec![link]
        };
        let (mut config, layers, chain) = match &stage.base {
            Base::Scratch => (
                scratch_config(self.platform),
                Vec::new(),
                base_link(
                    inputs::scratch(&self.platform.to_string()),
                    "FROM scratch".into(),
                ),
            ),
            Base::Stage(i) => {
                let out = self.wait_stage(*i)?;
                (out.config.clone(), out.layers.clone(), out.chain.clone())
            }
            Base::Image(name) => {
                let step = self.steps.start(format!("[{stage_name}] FROM {name}"));
                let base = self.bases.get(name)?;
                step.done();
                let link = base_link(base.inputs.clone(), format!("FROM {name}"));
                (base.config.clone(), base.layers.clone(), link)
            }
        };
        // BuildKit sets the default PATH on a base without one before
        // anything expands, so `ENV PATH=/opt/bin:$PATH` extends it.
        if config.config.env_value("PATH").is_none() {
            config.config.set_env("PATH", DEFAULT_PATH);
        }
        let key = chain.last().expect("a base link").inputs.key();
        let (base_layers, base_history) = (layers.len(), config.history.len());
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

        let state = StageState {
            config,
            layers,
            key,
            label: String::new(),
            cmd_set: false,
            stage_name: stage_name.clone(),
            index: 0,
            chain,
            blobs_now: index == self.plan.target && !self.request.squash,
        };
        let state = self.run_steps(&steps, state, base_layers, index == self.plan.target)?;
        Ok(StageOutput {
            config: state.config,
            layers: state.layers,
            key: state.key,
            chain: state.chain,
            base_layers,
            base_history,
        })
    }

    /// Carries out `steps` on `state`. A blob of an imported cache that
    /// turns out unusable (when a step needs its files, or, in the target
    /// stage, at the end: the image carries it) is warned about once, and
    /// the stage goes on again from the step that made it, which now
    /// misses; later steps keep their hits (their keys did not change).
    fn run_steps(
        &self,
        steps: &[Step],
        mut state: StageState,
        base_layers: usize,
        target: bool,
    ) -> Result<StageState, BuildError> {
        let total = steps.iter().filter(|s| !is_meta(&s.kind)).count();
        // before[i]: the state before step i (a restart point).
        let mut before: Vec<Mark> = Vec::new();
        let mut i = 0;
        loop {
            let result = match steps.get(i) {
                Some(step) => {
                    before.truncate(i);
                    before.push(state.mark());
                    state.index = i;
                    if self.board.has_failed() || crate::interrupted() {
                        return Err(BuildError::Interrupted);
                    }
                    let n = steps[..=i].iter().filter(|s| !is_meta(&s.kind)).count();
                    state.label = format!("[{} {n}/{total}]", state.stage_name);
                    self.apply(&mut state, step)
                }
                None if target => self.fetch_own_layers(&state, base_layers),
                None => return Ok(state),
            };
            match result {
                Ok(()) if i == steps.len() => return Ok(state),
                Ok(()) => i += 1,
                Err(BuildError::RemoteCache { digest, message }) => {
                    let Some(j) = producer(&before, &state, &digest, base_layers) else {
                        return Err(BuildError::RemoteCache { digest, message });
                    };
                    self.steps.warn(format!(
                        "imported cache blob {digest} is unusable ({message}); rebuilding {}",
                        self.label(&steps[j])
                    ));
                    state.rewind(&before[j]);
                    i = j;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes sure the blobs of the layers this stage added are in the store.
    fn fetch_own_layers(&self, state: &StageState, base_layers: usize) -> Result<(), BuildError> {
        for l in &state.layers[base_layers..] {
            self.session.ensure_blob(&l.digest)?;
        }
        Ok(())
    }

    fn apply(&self, state: &mut StageState, step: &Step) -> Result<(), BuildError> {
        match &step.kind {
            StepKind::Run(run) => ops::run::run(self, state, step, run),
            StepKind::Copy(copy) => ops::copy::copy(self, state, step, copy),
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
        let link = Link {
            inputs: inputs::meta(state.key, &step.created_by, &step.original),
            label: self.label(step),
            details: Default::default(),
        };
        record_link(&self.session.cache, &link);
        state.key = link.inputs.key();
        state.chain.push(link);
        if !step.created_by.is_empty() && !matches!(step.kind, StepKind::Arg(_)) {
            add_history(&mut state.config, &step.created_by, true);
        }
    }
}

/// Which step (an index into `before`, the states before each step) added
/// the layer `digest` to the stage; `None` when the stage's base has it.
fn producer(before: &[Mark], now: &StageState, digest: &str, base_layers: usize) -> Option<usize> {
    let digest: kiln_oci::Digest = digest.parse().ok()?;
    let p = now.layers.iter().position(|l| l.digest == digest)?;
    if p < base_layers {
        return None;
    }
    (0..before.len()).rev().find(|&j| before[j].layers <= p)
}

/// Steps that only change the config: they get no `[n/total]` number.
fn is_meta(kind: &StepKind) -> bool {
    !matches!(
        kind,
        StepKind::Run(_) | StepKind::Copy(_) | StepKind::Workdir(_)
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
