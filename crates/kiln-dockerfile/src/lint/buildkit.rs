//! BuildKit's build checks, evaluated statically on the parsed file.

use std::collections::BTreeSet;

use super::{push, Finding, Origin};
use crate::instructions::{Command, Dockerfile, FromInstr, Instruction, InstructionKind, Span};
use crate::suggest::did_you_mean;
use crate::syntax::shell::Lexer;

const B: Origin = Origin::Buildkit;

/// Variables a base image commonly defines; without the real config we
/// cannot know, so we do not call these undefined.
const COMMON_BASE_ENV: &[&str] = &[
    "PATH", "HOME", "HOSTNAME", "TERM", "LANG", "USER", "PWD", "SHELL",
];

fn keyword_span(ins: &Instruction) -> Span {
    Span {
        end_line: ins.span.line,
        end_col: ins.span.col + ins.keyword.chars().count(),
        ..ins.span
    }
}

fn is_secret_name(name: &str) -> bool {
    const WORDS: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    let lower = name.to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('_').collect();
    parts.iter().any(|p| WORDS.contains(p)) && !parts.contains(&"public")
}

/// Names used with a default/alternative (`${X:-d}`), which BuildKit's
/// undefined-variable check does not report here.
fn guarded(word: &str, name: &str) -> bool {
    [
        "${NAME:-", "${NAME-", "${NAME:+", "${NAME+", "${NAME:?", "${NAME?",
    ]
    .iter()
    .any(|p| word.contains(&p.replace("NAME", name)))
}

pub(super) fn check(df: &Dockerfile, out: &mut Vec<Finding>) {
    instruction_casing(df, out);
    empty_continuations(df, out);
    let Ok(split) = crate::plan::split(df) else {
        return;
    };
    let mut lex = Lexer::new(df.escape);
    lex.skip_unset_env = true;
    let meta = Meta::read(&split.meta, lex, out);
    let mut stage_names: Vec<(String, usize)> = Vec::new();
    let mut stage_scopes: Vec<BTreeSet<String>> = Vec::new();
    for (idx, (from, body)) in split.stages.iter().enumerate() {
        let InstructionKind::From(f) = &from.kind else {
            continue;
        };
        if let Some(name) = &f.stage_name {
            stage_name_rules(from, name, &stage_names, out);
            stage_names.push((name.to_ascii_lowercase(), idx));
        }
        undefined_arg_in_from(from, f, &meta, out);
        let lower_image = f.image.to_ascii_lowercase();
        let parent = stage_names
            .iter()
            .find(|(n, i)| *n == lower_image && *i < idx)
            .map(|(_, i)| *i);
        let mut stage = Stage {
            scope: parent.map_or_else(BTreeSet::new, |p| stage_scopes[p].clone()),
            workdir_set: parent.is_some(),
            shell_set: false,
            seen_once: Vec::new(),
        };
        for ins in body.iter() {
            stage.instruction(ins, &meta, out);
        }
        stage_scopes.push(stage.scope);
    }
}

/// ConsistentInstructionCasing: the majority casing wins.
fn instruction_casing(df: &Dockerfile, out: &mut Vec<Finding>) {
    let (mut upper, mut lower) = (0, 0);
    for ins in &df.instructions {
        if ins.keyword == ins.keyword.to_ascii_uppercase() {
            upper += 1;
        } else if ins.keyword == ins.keyword.to_ascii_lowercase() {
            lower += 1;
        }
    }
    let majority_lower = lower > upper;
    for ins in &df.instructions {
        let (want, ok) = if majority_lower {
            ("lowercase", ins.keyword == ins.keyword.to_ascii_lowercase())
        } else {
            ("uppercase", ins.keyword == ins.keyword.to_ascii_uppercase())
        };
        if !ok {
            push(
                out,
                "ConsistentInstructionCasing",
                B,
                keyword_span(ins),
                format!(
                    "Command '{}' should match the case of the command majority ({want})",
                    ins.keyword
                ),
            );
        }
    }
}

fn empty_continuations(df: &Dockerfile, out: &mut Vec<Finding>) {
    for w in &df.warnings {
        if w.rule == "NoEmptyContinuation" {
            if let Some(s) = w.span {
                push(
                    out,
                    "NoEmptyContinuation",
                    B,
                    s,
                    "Empty continuation line".into(),
                );
            }
        }
    }
}

/// What the ARGs before the first FROM declare, and the lexer to expand with.
struct Meta {
    names: BTreeSet<String>,
    vals: Vec<(String, String)>,
    /// The automatic platform ARGs (`BUILDPLATFORM`, `TARGETOS`, …).
    platform: Vec<String>,
    lex: Lexer,
}

impl Meta {
    fn read(meta: &[&Instruction], lex: Lexer, out: &mut Vec<Finding>) -> Meta {
        let mut names = BTreeSet::new();
        let mut vals = Vec::new();
        for ins in meta {
            if let InstructionKind::Arg(d) = &ins.kind {
                for a in d {
                    secret_check(out, ins, "ARG", &a.name);
                    names.insert(a.name.clone());
                    vals.push((a.name.clone(), a.default.clone().unwrap_or_default()));
                }
            }
        }
        let platform = ["PLATFORM", "OS", "ARCH", "VARIANT"]
            .iter()
            .flat_map(|s| [format!("BUILD{s}"), format!("TARGET{s}")])
            .collect();
        Meta {
            names,
            vals,
            platform,
            lex,
        }
    }
}

/// FromAsCasing / StageNameCasing / DuplicateStageName / ReservedStageName.
fn stage_name_rules(
    from: &Instruction,
    name: &str,
    stage_names: &[(String, usize)],
    out: &mut Vec<Finding>,
) {
    let as_word = from.args.split_whitespace().nth(1).unwrap_or("AS");
    let from_upper = from.keyword == from.keyword.to_ascii_uppercase();
    let as_upper = as_word == as_word.to_ascii_uppercase();
    if from_upper != as_upper {
        push(
            out,
            "FromAsCasing",
            B,
            keyword_span(from),
            format!(
                "'{as_word}' and '{}' keywords' casing do not match",
                from.keyword
            ),
        );
    }
    if name != name.to_ascii_lowercase() {
        push(
            out,
            "StageNameCasing",
            B,
            from.span,
            format!("Stage name '{name}' should be lowercase"),
        );
    }
    let lname = name.to_ascii_lowercase();
    if let Some((_, first)) = stage_names.iter().find(|(n, _)| *n == lname) {
        push(out, "DuplicateStageName", B, from.span, format!(
            "Duplicate stage name '{name}', stage names should be unique (first used by stage {first})"
        ));
    }
    if lname == "scratch" || lname == "context" {
        push(
            out,
            "ReservedStageName",
            B,
            from.span,
            format!("Stage name should not use the same name as reserved stage '{lname}'"),
        );
    }
}

fn undefined_arg_in_from(from: &Instruction, f: &FromInstr, meta: &Meta, out: &mut Vec<Finding>) {
    let mut words = vec![f.image.clone()];
    words.extend(f.platform.clone());
    for w in &words {
        let Ok(e) = meta.lex.expand(w, &meta.vals) else {
            continue;
        };
        for name in e.unmatched {
            if meta.platform.contains(&name) || meta.names.contains(&name) {
                continue;
            }
            let mut msg = format!("FROM argument '{name}' is not declared");
            if let Some(s) = did_you_mean(&name, meta.names.iter().map(String::as_str)) {
                msg.push_str(&format!(" (did you mean {s}?)"));
            }
            push(out, "UndefinedArgInFrom", B, from.span, msg);
        }
    }
}

/// Per-stage state for UndefinedVar, WorkdirRelativePath, JSONArgs…
struct Stage {
    scope: BTreeSet<String>,
    workdir_set: bool,
    shell_set: bool,
    seen_once: Vec<&'static str>,
}

impl Stage {
    fn instruction(&mut self, ins: &Instruction, meta: &Meta, out: &mut Vec<Finding>) {
        let name = ins.name();
        if matches!(name, "CMD" | "ENTRYPOINT" | "HEALTHCHECK") {
            if self.seen_once.contains(&name) {
                push(out, "MultipleInstructionsDisallowed", B, keyword_span(ins), format!(
                    "Multiple {name} instructions should not be used in the same stage because only the last one will be used"
                ));
            }
            self.seen_once.push(name);
        }
        let expanded = self.words_checked(ins, out);
        for w in &expanded {
            self.undefined_vars(ins, w, meta, out);
        }
        match &ins.kind {
            InstructionKind::Env(kvs) => {
                for kv in kvs {
                    secret_check(out, ins, "ENV", &kv.key);
                    self.scope.insert(kv.key.clone());
                }
            }
            InstructionKind::Arg(decls) => {
                for d in decls {
                    secret_check(out, ins, "ARG", &d.name);
                    self.scope.insert(d.name.clone());
                }
            }
            _ => {}
        }
    }

    /// The per-instruction rules; returns the words the build expands.
    fn words_checked(&mut self, ins: &Instruction, out: &mut Vec<Finding>) -> Vec<String> {
        let name = ins.name();
        let mut expanded: Vec<String> = Vec::new();
        match &ins.kind {
            InstructionKind::Maintainer(_) => push(
                out,
                "MaintainerDeprecated",
                B,
                keyword_span(ins),
                "Maintainer instruction is deprecated in favor of using label".into(),
            ),
            InstructionKind::Shell(_) => self.shell_set = true,
            InstructionKind::Cmd(Command::Shell(_))
            | InstructionKind::Entrypoint(Command::Shell(_))
                if !self.shell_set =>
            {
                push(out, "JSONArgsRecommended", B, ins.span, format!(
                    "JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"
                ));
            }
            InstructionKind::Workdir(p) => {
                if !self.workdir_set && !p.starts_with('/') && !p.starts_with('$') {
                    push(out, "WorkdirRelativePath", B, ins.span, format!(
                        "Relative workdir \"{p}\" can have unexpected results if the base image changes"
                    ));
                }
                self.workdir_set = true;
                expanded.push(p.clone());
            }
            InstructionKind::Env(kvs) | InstructionKind::Label(kvs) => {
                for kv in kvs {
                    if kv.legacy {
                        push(out, "LegacyKeyValueFormat", B, ins.span, format!(
                            "\"{name} key=value\" should be used instead of legacy \"{name} key value\" format"
                        ));
                    }
                    expanded.push(kv.value.clone());
                }
            }
            InstructionKind::Arg(decls) => {
                for d in decls {
                    expanded.extend(d.default.clone());
                }
            }
            InstructionKind::Copy(c) => {
                expanded.extend(c.sources.iter().cloned());
                expanded.push(c.dest.clone());
                expanded.extend(c.chown.clone());
                expanded.extend(c.chmod.clone());
            }
            InstructionKind::User(u) | InstructionKind::StopSignal(u) => expanded.push(u.clone()),
            InstructionKind::Expose(v) | InstructionKind::Volume(v) => {
                expanded.extend(v.iter().cloned())
            }
            _ => {}
        }
        expanded
    }

    /// UndefinedVar for one word of `ins`.
    fn undefined_vars(&self, ins: &Instruction, w: &str, meta: &Meta, out: &mut Vec<Finding>) {
        let known: Vec<(String, String)> = self
            .scope
            .iter()
            .map(|k| (k.clone(), String::new()))
            .collect();
        let Ok(e) = meta.lex.expand(w, &known) else {
            return;
        };
        for v in e.unmatched {
            if COMMON_BASE_ENV.contains(&v.as_str())
                || crate::plan::is_proxy_arg(&v)
                || guarded(w, &v)
            {
                continue;
            }
            if v.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                continue;
            }
            let mut msg = format!("Usage of undefined variable '${v}'");
            if let Some(s) = did_you_mean(&v, self.scope.iter().map(String::as_str)) {
                msg.push_str(&format!(" (did you mean ${s}?)"));
            } else if meta.names.contains(&v) {
                msg.push_str(&format!(" (ARG {v} is declared before FROM: add \"ARG {v}\" inside the stage to use it)"));
            }
            push(out, "UndefinedVar", B, ins.span, msg);
        }
    }
}

fn secret_check(out: &mut Vec<Finding>, ins: &Instruction, what: &str, name: &str) {
    if is_secret_name(name) {
        push(
            out,
            "SecretsUsedInArgOrEnv",
            B,
            ins.span,
            format!("Do not use ARG or ENV instructions for sensitive data ({what} \"{name}\")"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        assert!(is_secret_name("API_TOKEN"));
        assert!(is_secret_name("password"));
        assert!(!is_secret_name("PUBLIC_KEY"));
        assert!(!is_secret_name("KEYBOARD"));
    }
}
