//! A planned stage → build steps: every instruction expanded where BuildKit
//! expands, with ARG/ENV scoping, the base image's ONBUILD triggers first,
//! and the image-history `created_by` text BuildKit writes.

mod config;
mod copy;
pub(crate) mod mount;
mod ports;
mod run;
mod scope;
mod step;

pub use mount::{CacheSharing, MountFrom, RunMount};
use scope::{parse_env_entry, Scope, DEFAULT_SHELL};
pub use step::{CopyFrom, CopyStep, Healthcheck, Network, RunStep, Security, Step, StepKind};

use crate::error::Error;
use crate::instructions::{parse_fragment, Instruction, InstructionKind};
use crate::plan::{Base, Plan};
use crate::syntax::shell::Lexer;

/// What lowering needs to know about the image a stage starts from. For
/// `Base::Stage(i)` pass the config stage `i` ended with; for scratch pass
/// `BaseImageConfig::default()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseImageConfig {
    /// `K=V` entries as in the image config.
    pub env: Vec<String>,
    /// ONBUILD triggers, run before the stage's own instructions.
    pub onbuild: Vec<String>,
    /// The config's SHELL, if any.
    pub shell: Option<Vec<String>>,
    /// The config's WorkingDir (relative WORKDIR resolves against it).
    pub working_dir: Option<String>,
}

/// Looks up base image configs; the engine implements it so that
/// [`lower_with`] can apply ONBUILD triggers and base env. Lifecycle: called
/// once per reachable stage, in plan order, after the stages it depends on
/// have been built (so `Base::Stage` configs are known).
pub trait BaseConfigProvider {
    fn base_config(&mut self, plan: &Plan, stage_index: usize) -> Result<BaseImageConfig, String>;
}

/// Lowers stage `stage_index` (its index in the Dockerfile) of `plan`.
pub fn lower(plan: &Plan, stage_index: usize, base: &BaseImageConfig) -> Result<Vec<Step>, Error> {
    let df = &plan.dockerfile;
    let Some(stage) = plan.stage(stage_index) else {
        return Err(Error::new(
            &df.file_name,
            format!("stage {stage_index} is not part of the plan (not reachable from the target)"),
        ));
    };
    let mut scope = Scope {
        plan,
        stage: stage_index,
        lex: Lexer::new(df.escape),
        env: Vec::new(),
        args: Vec::new(),
        shell: base
            .shell
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()),
        workdir: base.working_dir.clone().unwrap_or_default(),
        args_over_env: Vec::new(),
    };
    for e in &base.env {
        let (k, v) = parse_env_entry(e);
        scope.set_env(k, v);
    }
    if let Base::Stage(parent) = stage.base {
        scope.args = inherited_args(plan, parent, &scope.env)?;
    }
    let mut steps = Vec::new();
    for (n, trigger) in base.onbuild.iter().enumerate() {
        let parsed = parse_fragment("ONBUILD", trigger).map_err(|e| {
            df.error(
                stage.span,
                format!(
                    "ONBUILD trigger {} of the base image ({trigger:?}): {}",
                    n + 1,
                    e.headline()
                ),
            )
        })?;
        for ins in &parsed.instructions {
            if matches!(
                ins.kind,
                InstructionKind::From(_)
                    | InstructionKind::Onbuild(..)
                    | InstructionKind::Maintainer(_)
            ) {
                return Err(df.error(
                    stage.span,
                    format!(
                        "{} isn't allowed as an ONBUILD trigger (trigger {} of the base image)",
                        ins.name(),
                        n + 1
                    ),
                ));
            }
            let mut step = lower_one(&mut scope, ins).map_err(|e| {
                df.error(
                    stage.span,
                    format!("ONBUILD trigger {} of the base image: {}", n + 1, e),
                )
            })?;
            step.span = stage.span;
            step.from_onbuild = true;
            steps.push(step);
        }
    }
    for ins in &stage.instructions {
        let step = lower_one(&mut scope, ins).map_err(|e| df.error(ins.span, e))?;
        steps.push(step);
    }
    Ok(steps)
}

/// Lowers every reachable stage with configs from `provider`, in plan order.
pub fn lower_with(
    plan: &Plan,
    provider: &mut dyn BaseConfigProvider,
) -> Result<Vec<(usize, Vec<Step>)>, Error> {
    let mut out = Vec::new();
    for st in &plan.stages {
        let cfg = provider.base_config(plan, st.index).map_err(|e| {
            plan.dockerfile
                .error(st.span, format!("base image config: {e}"))
        })?;
        out.push((st.index, lower(plan, st.index, &cfg)?));
    }
    Ok(out)
}

/// The ARGs a stage built `FROM <stage>` inherits from that stage.
fn inherited_args(
    plan: &Plan,
    parent: usize,
    env: &[(String, String)],
) -> Result<Vec<(String, Option<String>)>, Error> {
    let Some(st) = plan.stage(parent) else {
        return Ok(Vec::new());
    };
    let mut scope = Scope {
        plan,
        stage: parent,
        lex: Lexer::new(plan.dockerfile.escape),
        env: env.to_vec(),
        args: Vec::new(),
        shell: Vec::new(),
        workdir: String::new(),
        args_over_env: Vec::new(),
    };
    if let Base::Stage(p) = st.base {
        scope.args = inherited_args(plan, p, env)?;
    }
    for ins in &st.instructions {
        if let InstructionKind::Arg(_) = ins.kind {
            lower_one(&mut scope, ins).map_err(|e| plan.dockerfile.error(ins.span, e))?;
        }
    }
    Ok(scope.args)
}

/// One instruction → one step, by the function for its kind.
fn lower_one(scope: &mut Scope, ins: &Instruction) -> Result<Step, String> {
    let (kind, created_by) = match &ins.kind {
        InstructionKind::Env(kvs) => config::env(scope, kvs)?,
        InstructionKind::Arg(decls) => config::arg(scope, decls)?,
        InstructionKind::Run(r) => run::lower_run(scope, ins, r)?,
        InstructionKind::Copy(c) => copy::lower_copy(scope, c)?,
        InstructionKind::Workdir(p) => config::workdir(scope, p)?,
        InstructionKind::User(u) => config::user(scope, u)?,
        InstructionKind::Label(kvs) => config::label(scope, kvs)?,
        InstructionKind::Expose(ports) => config::expose(scope, ports)?,
        InstructionKind::Volume(vols) => config::volume(scope, vols)?,
        InstructionKind::StopSignal(s) => config::stop_signal(scope, s)?,
        InstructionKind::Cmd(c) => config::cmd(scope, c)?,
        InstructionKind::Entrypoint(c) => config::entrypoint(scope, c)?,
        InstructionKind::Shell(s) => config::shell(scope, s)?,
        InstructionKind::Healthcheck(h) => config::healthcheck(h)?,
        InstructionKind::Onbuild(expr, _) => (StepKind::Onbuild(expr.clone()), String::new()),
        InstructionKind::Maintainer(m) => {
            (StepKind::Maintainer(m.clone()), format!("MAINTAINER {m}"))
        }
        InstructionKind::From(_) => return Err("FROM cannot be lowered as a step".into()),
    };
    // BuildKit records a layer for RUN, COPY/ADD and a WORKDIR other than `/`.
    let creates_layer = match &kind {
        StepKind::Run(_) | StepKind::Copy(_) => true,
        StepKind::Workdir(wd) => wd != "/",
        _ => false,
    };
    Ok(Step {
        span: ins.span,
        kind,
        created_by,
        creates_layer,
        original: ins.original.clone(),
        from_onbuild: false,
    })
}
