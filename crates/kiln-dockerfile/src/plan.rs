//! Stages and the stage graph: global ARGs, FROM expansion, `AS` names,
//! `COPY --from` / `RUN --mount=from=` references, `--target`, and the
//! reachable stages in an order where dependencies come first.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::{Error, Span, Warning};
use crate::instructions::mount;
use crate::instructions::{Dockerfile, Instruction, InstructionKind};
use crate::suggest::did_you_mean;
use crate::syntax::shell::Lexer;

/// What `plan` needs besides the Dockerfile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Stage name to build; the last stage when `None`.
    pub target: Option<String>,
    /// `--build-arg K=V`, in command-line order (last wins).
    pub build_args: Vec<(String, String)>,
    /// `os/arch[/variant]`, e.g. `linux/amd64`.
    pub target_platform: String,
    pub build_platform: String,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Base {
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference, expanded (not normalised).
    Image(String),
}

/// A stage reference in `COPY --from` or `--mount from=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum StageRef {
    Stage(usize),
    Image(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStage {
    /// Position of the stage in the Dockerfile (0-based).
    pub index: usize,
    /// The `AS` name as written.
    pub name: Option<String>,
    pub base: Base,
    /// `FROM --platform=…`, expanded.
    pub platform: Option<String>,
    /// Stages this one needs (base stage, `COPY --from`, `--mount from=`), ascending.
    pub deps: Vec<usize>,
    /// Images used by `COPY --from=image` or `--mount from=image`.
    pub image_deps: Vec<String>,
    /// The FROM line.
    pub span: Span,
    /// The stage's instructions after FROM.
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Reachable stages in ascending index order (dependencies first).
    pub stages: Vec<PlannedStage>,
    /// The stages the target does not reach, ascending. Only an ONBUILD
    /// trigger of a base image (known once the image is) can still name
    /// one; the engine builds it then (as BuildKit's dockerfile 1.11+ does).
    pub unreached: Vec<PlannedStage>,
    /// Index (in the Dockerfile) of the stage that becomes the image.
    pub target: usize,
    pub warnings: Vec<Warning>,
    /// Every stage's `(index, name)`, reachable or not.
    pub all_stages: Vec<(usize, Option<String>)>,
    /// Global scope: platform args and the ARGs before the first FROM.
    pub global_args: Vec<(String, String)>,
    pub options: PlanOptions,
    pub(crate) dockerfile: Dockerfile,
}

impl Plan {
    /// A planned stage by its Dockerfile index, reachable or not.
    pub fn stage(&self, index: usize) -> Option<&PlannedStage> {
        self.stages
            .iter()
            .chain(&self.unreached)
            .find(|s| s.index == index)
    }

    /// Whether the target reaches stage `index` (it is built from the start).
    pub fn reaches(&self, index: usize) -> bool {
        self.stages.iter().any(|s| s.index == index)
    }

    pub fn dockerfile(&self) -> &Dockerfile {
        &self.dockerfile
    }

    /// Stages grouped in waves: each wave only needs earlier waves, so the
    /// stages of one wave can be built in parallel.
    pub fn waves(&self) -> Vec<Vec<usize>> {
        let mut level: Vec<(usize, usize)> = Vec::new();
        for s in &self.stages {
            let l = s
                .deps
                .iter()
                .filter_map(|d| level.iter().find(|(i, _)| i == d).map(|(_, l)| l + 1))
                .max()
                .unwrap_or(0);
            level.push((s.index, l));
        }
        let max = level.iter().map(|(_, l)| *l).max().unwrap_or(0);
        (0..=max)
            .map(|w| {
                level
                    .iter()
                    .filter(|(_, l)| *l == w)
                    .map(|(i, _)| *i)
                    .collect()
            })
            .filter(|v: &Vec<usize>| !v.is_empty())
            .collect()
    }
}

/// The ARG instructions before the first FROM and the stages (FROM index,
/// instruction range) of a Dockerfile.
pub(crate) struct Split<'a> {
    pub meta: Vec<&'a Instruction>,
    pub stages: Vec<(&'a Instruction, &'a [Instruction])>,
}

pub(crate) fn split(df: &Dockerfile) -> Result<Split<'_>, Error> {
    let mut meta = Vec::new();
    let mut froms = Vec::new();
    for (i, ins) in df.instructions.iter().enumerate() {
        match &ins.kind {
            InstructionKind::From(_) => froms.push(i),
            InstructionKind::Arg(_) if froms.is_empty() => meta.push(ins),
            _ if froms.is_empty() => {
                return Err(df.error(
                    Span {
                        end_line: ins.span.line,
                        end_col: ins.span.col + ins.keyword.chars().count(),
                        ..ins.span
                    },
                    format!(
                        "{} before the first FROM: only ARG may come before FROM (missing FROM?)",
                        ins.name()
                    ),
                ))
            }
            _ => {}
        }
    }
    if froms.is_empty() {
        return Err(Error::new(
            &df.file_name,
            "missing FROM: the Dockerfile has no FROM instruction",
        )
        .with_note("hint: a Dockerfile starts with FROM <image>, e.g. FROM alpine:3.20"));
    }
    let mut stages = Vec::new();
    for (k, &f) in froms.iter().enumerate() {
        let end = froms.get(k + 1).copied().unwrap_or(df.instructions.len());
        stages.push((&df.instructions[f], &df.instructions[f + 1..end]));
    }
    Ok(Split { meta, stages })
}

/// The automatic platform args for the global scope.
pub(crate) fn platform_args(opts: &PlanOptions) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, p) in [
        ("BUILD", &opts.build_platform),
        ("TARGET", &opts.target_platform),
    ] {
        let mut parts = p.splitn(3, '/');
        let os = parts.next().unwrap_or_default().to_string();
        let arch = parts.next().unwrap_or_default().to_string();
        let variant = parts.next().unwrap_or_default().to_string();
        out.push((format!("{prefix}PLATFORM"), p.clone()));
        out.push((format!("{prefix}OS"), os));
        out.push((format!("{prefix}ARCH"), arch));
        out.push((format!("{prefix}VARIANT"), variant));
    }
    out
}

fn build_arg<'a>(opts: &'a PlanOptions, name: &str) -> Option<&'a str> {
    opts.build_args
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Resolves `--from` / `from=` text: a stage index, a stage name, or an image.
pub(crate) fn resolve_ref(
    value: &str,
    names: &[(usize, Option<String>)],
) -> Result<StageRef, String> {
    if let Ok(i) = value.parse::<i64>() {
        if i < 0 || i as usize >= names.len() {
            return Err(format!(
                "invalid stage index {i}: the Dockerfile has {} stages",
                names.len()
            ));
        }
        return Ok(StageRef::Stage(i as usize));
    }
    let lower = value.to_ascii_lowercase();
    if let Some((i, _)) = names
        .iter()
        .find(|(_, n)| n.as_deref().map(str::to_ascii_lowercase).as_deref() == Some(lower.as_str()))
    {
        return Ok(StageRef::Stage(*i));
    }
    Ok(StageRef::Image(value.to_string()))
}

/// Plans the build: which stages, from what, in which order.
pub fn plan(df: &Dockerfile, opts: &PlanOptions) -> Result<Plan, Error> {
    let split = split(df)?;
    let lex = Lexer::new(df.escape);
    let globals = global_args(df, &split, opts, &lex)?;
    // Names first: a FROM may only name an earlier stage.
    let mut names: Vec<(usize, Option<String>)> = Vec::new();
    let mut stages = Vec::new();
    for (index, (from_ins, body)) in split.stages.iter().enumerate() {
        let st = plan_stage(df, &lex, &globals, &names, index, from_ins, body)?;
        names.push((index, st.name.clone()));
        stages.push(st);
    }
    for st in stages.iter_mut() {
        stage_refs(df, &lex, &globals, &names, st)?;
    }
    let target = find_target(df, opts, &names, stages.len())?;
    // Reachable from the target.
    let mut reach = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if reach.insert(i) {
            todo.extend(stages[i].deps.iter().copied());
        }
    }
    let (planned, unreached): (Vec<PlannedStage>, Vec<PlannedStage>) =
        stages.into_iter().partition(|s| reach.contains(&s.index));
    let mut warnings = df.warnings.clone();
    warnings.extend(unused_build_args(&split, &planned, opts));
    Ok(Plan {
        stages: planned,
        unreached,
        target,
        warnings,
        all_stages: names,
        global_args: globals,
        options: opts.clone(),
        dockerfile: df.clone(),
    })
}

/// The ARGs before the first FROM, with the automatic platform ARGs and
/// the `--build-arg` values given.
fn global_args(
    df: &Dockerfile,
    split: &Split<'_>,
    opts: &PlanOptions,
    lex: &Lexer,
) -> Result<Vec<(String, String)>, Error> {
    let mut globals = platform_args(opts);
    for ins in &split.meta {
        let InstructionKind::Arg(decls) = &ins.kind else {
            continue;
        };
        for d in decls {
            let value = match (build_arg(opts, &d.name), &d.default) {
                (Some(v), _) => v.to_string(),
                (None, Some(def)) => lex
                    .process_word(def, &globals)
                    .map_err(|e| df.error(ins.span, e))?,
                (None, None) => String::new(),
            };
            globals.retain(|(k, _)| k != &d.name);
            globals.push((d.name.clone(), value));
        }
    }
    Ok(globals)
}

/// One FROM: its base (an earlier stage, scratch or an image) and platform.
fn plan_stage(
    df: &Dockerfile,
    lex: &Lexer,
    globals: &[(String, String)],
    names: &[(usize, Option<String>)],
    index: usize,
    from_ins: &Instruction,
    body: &[Instruction],
) -> Result<PlannedStage, Error> {
    let InstructionKind::From(f) = &from_ins.kind else {
        unreachable!("split gives FROMs")
    };
    let image = lex
        .process_word(&f.image, globals)
        .map_err(|e| df.error(from_ins.span, e))?;
    if image.is_empty() {
        return Err(df.error(
            from_ins.span,
            format!("base name ({}) should not be blank", f.image),
        ));
    }
    let platform = match &f.platform {
        Some(p) => Some(
            lex.process_word(p, globals)
                .map_err(|e| df.error(from_ins.span, e))?,
        ),
        None => None,
    };
    let base = if let Some((i, _)) = names.iter().find(|(_, n)| {
        n.as_deref().map(str::to_ascii_lowercase) == Some(image.to_ascii_lowercase())
    }) {
        Base::Stage(*i)
    } else if image == "scratch" {
        Base::Scratch
    } else {
        Base::Image(image)
    };
    if let Some(n) = &f.stage_name {
        if let Some((j, _)) = names
            .iter()
            .find(|(_, m)| m.as_deref().is_some_and(|m| m.eq_ignore_ascii_case(n)))
        {
            return Err(df.error(
                from_ins.span,
                format!("duplicate stage name {n:?}: stage {j} already uses it (stage names are case-insensitive)"),
            ));
        }
    }
    Ok(PlannedStage {
        index,
        name: f.stage_name.clone(),
        base,
        platform,
        deps: Vec::new(),
        image_deps: Vec::new(),
        span: from_ins.span,
        instructions: body.to_vec(),
    })
}

/// The stages and images a stage uses: its base, COPY --from and
/// --mount from=.
fn stage_refs(
    df: &Dockerfile,
    lex: &Lexer,
    globals: &[(String, String)],
    names: &[(usize, Option<String>)],
    st: &mut PlannedStage,
) -> Result<(), Error> {
    let mut deps = BTreeSet::new();
    let mut images = Vec::new();
    if let Base::Stage(b) = st.base {
        deps.insert(b);
    }
    let label = stage_label(st.index, &st.name);
    for ins in &st.instructions {
        let mut refs: Vec<(String, &str)> = Vec::new();
        match &ins.kind {
            InstructionKind::Copy(c) => {
                if let Some(from) = &c.from {
                    let v = lex
                        .process_word(from, globals)
                        .map_err(|e| df.error(ins.span, e))?;
                    refs.push((v, "COPY --from"));
                }
            }
            InstructionKind::Run(r) => {
                for m in &r.mounts {
                    let raw = mount::parse(&m.value, None)
                        .map_err(|e| Error::at(&df.file_name, &df.lines, m.span, e))?;
                    if let Some(from) = raw.from {
                        refs.push((from, "RUN --mount from="));
                    }
                }
            }
            _ => {}
        }
        for (value, what) in refs {
            match resolve_ref(&value, names).map_err(|e| df.error(ins.span, format!("{what}: {e}")))? {
                StageRef::Stage(i) if i == st.index => {
                    return Err(df.error(
                        ins.span,
                        format!("circular dependency: {what}={value} refers to {label} itself"),
                    ))
                }
                StageRef::Stage(i) if i > st.index => {
                    return Err(df.error(
                        ins.span,
                        format!(
                            "{what}={value} refers to {}, which is defined after {label} (a stage can only use earlier stages)",
                            stage_label(i, &names[i].1)
                        ),
                    ))
                }
                StageRef::Stage(i) => {
                    deps.insert(i);
                }
                StageRef::Image(img) => {
                    if !images.contains(&img) {
                        images.push(img);
                    }
                }
            }
        }
    }
    st.deps = deps.into_iter().collect();
    st.image_deps = images;
    Ok(())
}

/// The `--target` stage, or the last one.
fn find_target(
    df: &Dockerfile,
    opts: &PlanOptions,
    names: &[(usize, Option<String>)],
    count: usize,
) -> Result<usize, Error> {
    Ok(match &opts.target {
        None => count - 1,
        Some(t) => match names
            .iter()
            .find(|(_, n)| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(t)))
        {
            Some((i, _)) => *i,
            None => {
                let named: Vec<&str> = names.iter().filter_map(|(_, n)| n.as_deref()).collect();
                let mut msg = format!("target stage {t:?} could not be found");
                if let Some(s) = did_you_mean(t, named.iter().copied()) {
                    msg.push_str(&format!(" (did you mean {s:?}?)"));
                }
                let note = if named.is_empty() {
                    "the Dockerfile has no named stages (name one with FROM <image> AS <name>)"
                        .to_string()
                } else {
                    format!("stages: {}", named.join(", "))
                };
                return Err(Error::new(&df.file_name, msg).with_note(note));
            }
        },
    })
}

/// UnusedBuildArg: a --build-arg that no ARG of the stages built consumes.
fn unused_build_args(
    split: &Split<'_>,
    planned: &[PlannedStage],
    opts: &PlanOptions,
) -> Vec<Warning> {
    let mut declared: BTreeSet<String> = BTreeSet::new();
    for ins in &split.meta {
        if let InstructionKind::Arg(d) = &ins.kind {
            declared.extend(d.iter().map(|a| a.name.clone()));
        }
    }
    for st in planned {
        for ins in &st.instructions {
            if let InstructionKind::Arg(d) = &ins.kind {
                declared.extend(d.iter().map(|a| a.name.clone()));
            }
        }
    }
    let mut warnings = Vec::new();
    let mut seen = BTreeSet::new();
    for (k, _) in &opts.build_args {
        if !declared.contains(k) && !is_proxy_arg(k) && seen.insert(k.clone()) {
            warnings.push(Warning {
                rule: "UnusedBuildArg".into(),
                message: format!(
                    "build-arg {k} was not consumed: no ARG {k} in the stages being built"
                ),
                span: None,
            });
        }
    }
    warnings
}

pub(crate) fn stage_label(index: usize, name: &Option<String>) -> String {
    match name {
        Some(n) => format!("stage {index} ({n})"),
        None => format!("stage {index}"),
    }
}

/// The predefined proxy build args, usable without `ARG` and kept out of
/// the image history (matched case-insensitively, as BuildKit does).
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

pub fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(name))
}
