//! Building one stage: start from its base, then carry out each step.

use kiln_dockerfile::{Base, BaseImageConfig, Step, StepKind};
use kiln_oci::Platform;

use crate::cache::inputs;
use crate::error::BuildError;
use crate::explain::{record_link, Link};
use crate::image::{ImageConfig, DEFAULT_PATH};
use crate::ops;
use crate::state::{add_history, StageBuild, StageOutput, StageState};

impl StageBuild<'_> {
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

        let mut state = StageState {
            config,
            layers,
            key,
            label: String::new(),
            cmd_set: false,
            stage_name: stage_name.clone(),
            index: 0,
            chain,
        };
        let total = steps.iter().filter(|s| !is_meta(&s.kind)).count();
        let mut n = 0;
        for (i, step) in steps.iter().enumerate() {
            state.index = i;
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
            chain: state.chain,
            base_layers,
            base_history,
        })
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
