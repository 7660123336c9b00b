//! A planned stage → build steps: every instruction expanded where BuildKit
//! expands, with ARG/ENV scoping, the base image's ONBUILD triggers first,
//! and the image-history `created_by` text BuildKit writes.

use std::time::Duration;

use serde::Serialize;

use crate::ast::{Command, HealthInstr, Instruction, InstructionKind, Span};
use crate::error::Error;
use crate::lower_copy::{lower_copy, CopyFrom};
use crate::lower_run::{lower_run, Network, Security};
use crate::mount::RunMount;
use crate::plan::{Base, Plan};
use crate::quote::{go_list, go_quote, go_quote_list, go_quote_rune};
use crate::shell::Lexer;
use crate::Heredoc;

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

/// `HEALTHCHECK` as it goes into the image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    /// `["CMD-SHELL", "…"]`, `["CMD", …]` or `["NONE"]`.
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: i64,
}

/// One lowered instruction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub span: Span,
    pub kind: StepKind,
    /// History `created_by` exactly as BuildKit writes it; empty when
    /// BuildKit writes no history entry (ONBUILD).
    pub created_by: String,
    /// Whether BuildKit records a layer for it (RUN, COPY, ADD, WORKDIR
    /// other than `/`); everything else is an empty-layer history entry.
    pub creates_layer: bool,
    /// The instruction as written (for progress output).
    pub original: String,
    /// True for steps that come from the base image's ONBUILD triggers.
    pub from_onbuild: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum StepKind {
    Run {
        /// The command; shell form is run as `shell + [cmd]`.
        cmd: Command,
        /// The SHELL in effect (default `["/bin/sh", "-c"]`).
        shell: Vec<String>,
        mounts: Vec<RunMount>,
        network: Option<Network>,
        security: Option<Security>,
        /// ARG values in scope (not shadowed by ENV): in the RUN environment
        /// and cache key, never in the image config.
        build_env: Vec<(String, String)>,
        /// Predefined proxy args given with --build-arg and not declared:
        /// in the RUN environment only, out of history and cache keys.
        proxy_env: Vec<(String, String)>,
        heredocs: Vec<Heredoc>,
    },
    Copy {
        is_add: bool,
        sources: Vec<String>,
        /// Inline files (`COPY <<EOF /dest`): name = file name, content
        /// with chomp and expansion applied; created with mode 0644 unless chmod.
        heredocs: Vec<Heredoc>,
        /// Destination as written (expanded); relative to the working dir.
        dest: String,
        from: Option<CopyFrom>,
        chown: Option<String>,
        chmod: Option<String>,
        link: bool,
        exclude: Vec<String>,
        parents: bool,
        checksum: Option<String>,
        keep_git_dir: bool,
        unpack: Option<bool>,
    },
    Env(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    /// Absolute working directory: as written when the instruction gave an
    /// absolute path, else joined and cleaned (BuildKit's NormalizeWorkdir).
    Workdir(String),
    User(String),
    Label(Vec<(String, String)>),
    /// Port specs as config keys (`80/tcp`).
    Expose(Vec<String>),
    Volume(Vec<String>),
    Entrypoint(Command),
    Cmd(Command),
    Healthcheck(Option<Healthcheck>),
    StopSignal(String),
    Shell(Vec<String>),
    Onbuild(String),
    Maintainer(String),
}

pub(crate) const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The mutable scope while a stage is lowered.
pub(crate) struct Scope<'p> {
    pub plan: &'p Plan,
    pub stage: usize,
    pub lex: Lexer,
    /// Image config env, in order.
    pub env: Vec<(String, String)>,
    /// Declared build args, in declaration order (a later one replaces).
    pub args: Vec<(String, Option<String>)>,
    pub shell: Vec<String>,
    pub workdir: String,
    /// ARG values declared after an ENV of the same name: BuildKit's
    /// `dispatchArg` adds them to the build state's env, so they win over
    /// that ENV in expansion and RUN until the next ENV of the name (the
    /// image config keeps the ENV value).
    pub args_over_env: Vec<(String, String)>,
}

impl Scope<'_> {
    /// The variables visible to expansion: ARG values, shadowed by ENV,
    /// shadowed by an ARG redeclared after that ENV.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
            .collect();
        out.extend(self.env.iter().cloned());
        out.extend(self.args_over_env.iter().cloned());
        out
    }

    pub fn expand(&self, word: &str) -> Result<String, String> {
        self.lex.process_word(word, &self.vars())
    }

    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn set_env(&mut self, k: String, v: String) {
        self.args_over_env.retain(|(a, _)| *a != k);
        if let Some(e) = self.env.iter_mut().find(|(ek, _)| *ek == k) {
            e.1 = v;
        } else {
            self.env.push((k, v));
        }
    }

    /// `runCommandString`'s build-arg prefix entries (first position, last value).
    pub fn history_args(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.args {
            let val = self
                .env_value(k)
                .map(str::to_string)
                .unwrap_or_else(|| v.clone().unwrap_or_default());
            if let Some(e) = out.iter_mut().find(|(ek, _)| ek == k) {
                e.1 = val;
            } else {
                out.push((k.clone(), val));
            }
        }
        out
    }
}

fn parse_env_entry(e: &str) -> (String, String) {
    match e.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (e.to_string(), String::new()),
    }
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
        let parsed = crate::parser::parse_fragment("ONBUILD", trigger).map_err(|e| {
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

fn cmd_args(shell: &[String], c: &Command) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = shell.to_vec();
            v.push(s.clone());
            v
        }
    }
}

/// `path.Clean` for absolute Unix paths.
pub(crate) fn clean_abs(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn lower_one(scope: &mut Scope, ins: &Instruction) -> Result<Step, String> {
    let mut creates_layer = false;
    let (kind, created_by) = match &ins.kind {
        InstructionKind::Env(kvs) => {
            let mut out = Vec::new();
            for kv in kvs {
                out.push((scope.expand(&kv.key)?, scope.expand(&kv.value)?));
            }
            let mut msg = String::from("ENV");
            for (k, v) in &out {
                msg.push_str(&format!(" {k}={v}"));
                scope.set_env(k.clone(), v.clone());
            }
            (StepKind::Env(out), msg)
        }
        InstructionKind::Arg(decls) => {
            let mut out = Vec::new();
            for d in decls {
                let name = scope.expand(&d.name)?;
                let given = scope
                    .plan
                    .options
                    .build_args
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone());
                let value = match (given, &d.default) {
                    (Some(v), _) => Some(v),
                    (None, Some(def)) => Some(scope.expand(def)?),
                    (None, None) => scope
                        .plan
                        .global_args
                        .iter()
                        .rev()
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| v.clone()),
                };
                if let Some(v) = &value {
                    if scope.env_value(&name).is_some() {
                        scope.args_over_env.retain(|(a, _)| *a != name);
                        scope.args_over_env.push((name.clone(), v.clone()));
                    }
                }
                scope.args.push((name.clone(), value.clone()));
                out.push((name, value));
            }
            let parts: Vec<String> = out
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={v}"),
                    None => k.clone(),
                })
                .collect();
            (StepKind::Arg(out), format!("ARG {}", parts.join(" ")))
        }
        InstructionKind::Run(r) => {
            creates_layer = true;
            lower_run(scope, ins, r)?
        }
        InstructionKind::Copy(c) => {
            creates_layer = true;
            lower_copy(scope, c)?
        }
        InstructionKind::Workdir(p) => {
            let p = scope.expand(p)?;
            // BuildKit's NormalizeWorkdir: an absolute path is kept as
            // written, a relative one is joined to the current one and cleaned.
            let wd = if p.starts_with('/') {
                p
            } else {
                clean_abs(&format!("{}/{}", scope.workdir, p))
            };
            scope.workdir = wd.clone();
            creates_layer = wd != "/";
            (StepKind::Workdir(wd.clone()), format!("WORKDIR {wd}"))
        }
        InstructionKind::User(u) => {
            let u = scope.expand(u)?;
            (StepKind::User(u.clone()), format!("USER {u}"))
        }
        InstructionKind::Label(kvs) => {
            let mut out = Vec::new();
            let mut msg = String::from("LABEL");
            for kv in kvs {
                let (k, v) = (scope.expand(&kv.key)?, scope.expand(&kv.value)?);
                msg.push_str(&format!(" {k}={v}"));
                out.push((k, v));
            }
            (StepKind::Label(out), msg)
        }
        InstructionKind::Expose(ports) => {
            let vars = scope.vars();
            let mut words = Vec::new();
            for p in ports {
                words.extend(scope.lex.process_words(p, &vars)?);
            }
            let specs = crate::ports::parse_port_specs(&words)?;
            let shown: Vec<String> = specs.iter().map(|p| format!("{p}:{{}}")).collect();
            (
                StepKind::Expose(specs.clone()),
                format!("EXPOSE map[{}]", shown.join(" ")),
            )
        }
        InstructionKind::Volume(vols) => {
            let mut out = Vec::new();
            for v in vols {
                let e = scope.expand(v)?;
                if e.is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                out.push(e);
            }
            let msg = format!("VOLUME {}", go_list(&out));
            (StepKind::Volume(out), msg)
        }
        InstructionKind::StopSignal(s) => {
            let s = scope.expand(s)?;
            validate_signal(&s)?;
            (StepKind::StopSignal(s.clone()), format!("STOPSIGNAL {s}"))
        }
        InstructionKind::Cmd(c) => {
            let msg = format!("CMD {}", go_quote_list(&cmd_args(&scope.shell, c)));
            (StepKind::Cmd(c.clone()), msg)
        }
        InstructionKind::Entrypoint(c) => {
            let msg = format!("ENTRYPOINT {}", go_quote_list(&cmd_args(&scope.shell, c)));
            (StepKind::Entrypoint(c.clone()), msg)
        }
        InstructionKind::Shell(s) => {
            scope.shell = s.clone();
            (StepKind::Shell(s.clone()), format!("SHELL {}", go_list(s)))
        }
        InstructionKind::Healthcheck(h) => {
            let hc = match h {
                HealthInstr::None => Healthcheck {
                    test: vec!["NONE".into()],
                    interval: Duration::ZERO,
                    timeout: Duration::ZERO,
                    start_period: Duration::ZERO,
                    start_interval: Duration::ZERO,
                    retries: 0,
                },
                HealthInstr::Check {
                    test,
                    interval,
                    timeout,
                    start_period,
                    start_interval,
                    retries,
                } => Healthcheck {
                    test: test.clone(),
                    interval: interval.unwrap_or_default(),
                    timeout: timeout.unwrap_or_default(),
                    start_period: start_period.unwrap_or_default(),
                    start_interval: start_interval.unwrap_or_default(),
                    retries: retries.unwrap_or_default(),
                },
            };
            let d = |d: Duration| go_quote(&crate::duration::format_go_duration(d));
            let msg = format!(
                "HEALTHCHECK &{{{} {} {} {} {} {}}}",
                go_quote_list(&hc.test),
                d(hc.interval),
                d(hc.timeout),
                d(hc.start_period),
                d(hc.start_interval),
                go_quote_rune(hc.retries)
            );
            let kind = if matches!(h, HealthInstr::None) {
                StepKind::Healthcheck(None)
            } else {
                StepKind::Healthcheck(Some(hc))
            };
            (kind, msg)
        }
        InstructionKind::Onbuild(expr, _) => (StepKind::Onbuild(expr.clone()), String::new()),
        InstructionKind::Maintainer(m) => {
            (StepKind::Maintainer(m.clone()), format!("MAINTAINER {m}"))
        }
        InstructionKind::From(_) => return Err("FROM cannot be lowered as a step".into()),
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

const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
];

/// moby's `signal.ParseSignal`: a number, or a name with or without `SIG`
/// (including `RTMIN+n`).
fn validate_signal(s: &str) -> Result<(), String> {
    if let Ok(n) = s.parse::<u32>() {
        if n == 0 || n > 64 {
            return Err(format!("Invalid signal: {s}"));
        }
        return Ok(());
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    if SIGNALS.contains(&name) || name.starts_with("RTMIN") || name.starts_with("RTMAX") {
        return Ok(());
    }
    Err(format!("Invalid signal: {s}"))
}
