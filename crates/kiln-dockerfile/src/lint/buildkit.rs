//! BuildKit's build checks, evaluated statically on the parsed file.

use std::collections::BTreeSet;

use super::{push, Finding, Origin};
use crate::instructions::{Dockerfile, Instruction, InstructionKind, Span};
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
    // ConsistentInstructionCasing: the majority casing wins.
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

    let Ok(split) = crate::plan::split(df) else {
        return;
    };
    let mut meta_names: BTreeSet<String> = BTreeSet::new();
    let mut meta_vals: Vec<(String, String)> = Vec::new();
    for ins in &split.meta {
        if let InstructionKind::Arg(d) = &ins.kind {
            for a in d {
                secret_check(out, ins, "ARG", &a.name);
                meta_names.insert(a.name.clone());
                meta_vals.push((a.name.clone(), a.default.clone().unwrap_or_default()));
            }
        }
    }
    let platform: Vec<String> = ["PLATFORM", "OS", "ARCH", "VARIANT"]
        .iter()
        .flat_map(|s| [format!("BUILD{s}"), format!("TARGET{s}")])
        .collect();
    let mut stage_names: Vec<(String, usize)> = Vec::new();
    let mut stage_scopes: Vec<BTreeSet<String>> = Vec::new();
    let mut lex = Lexer::new(df.escape);
    lex.skip_unset_env = true;

    for (idx, (from, body)) in split.stages.iter().enumerate() {
        let InstructionKind::From(f) = &from.kind else {
            continue;
        };
        // FromAsCasing / StageNameCasing / DuplicateStageName / ReservedStageName
        if let Some(name) = &f.stage_name {
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
            if name != &name.to_ascii_lowercase() {
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
            stage_names.push((lname, idx));
        }
        // UndefinedArgInFrom
        let mut words = vec![f.image.clone()];
        words.extend(f.platform.clone());
        for w in &words {
            let known: Vec<(String, String)> = meta_vals.clone();
            if let Ok(e) = lex.expand(w, &known) {
                for name in e.unmatched {
                    if platform.contains(&name) || meta_names.contains(&name) {
                        continue;
                    }
                    let mut msg = format!("FROM argument '{name}' is not declared");
                    if let Some(s) = did_you_mean(&name, meta_names.iter().map(String::as_str)) {
                        msg.push_str(&format!(" (did you mean {s}?)"));
                    }
                    push(out, "UndefinedArgInFrom", B, from.span, msg);
                }
            }
        }

        // Per-stage scope for UndefinedVar, WorkdirRelativePath, JSONArgs…
        let lower_image = f.image.to_ascii_lowercase();
        let parent = stage_names
            .iter()
            .find(|(n, i)| *n == lower_image && *i < idx)
            .map(|(_, i)| *i);
        let mut scope: BTreeSet<String> = match parent {
            Some(p) => stage_scopes[p].clone(),
            None => BTreeSet::new(),
        };
        let mut workdir_set = parent.is_some();
        let mut shell_set = false;
        let mut seen_once: Vec<&'static str> = Vec::new();
        for ins in body.iter() {
            let name = ins.name();
            if matches!(name, "CMD" | "ENTRYPOINT" | "HEALTHCHECK") {
                if seen_once.contains(&name) {
                    push(out, "MultipleInstructionsDisallowed", B, keyword_span(ins), format!(
                        "Multiple {name} instructions should not be used in the same stage because only the last one will be used"
                    ));
                }
                seen_once.push(name);
            }
            let mut expanded: Vec<String> = Vec::new();
            match &ins.kind {
                InstructionKind::Maintainer(_) => push(
                    out,
                    "MaintainerDeprecated",
                    B,
                    keyword_span(ins),
                    "Maintainer instruction is deprecated in favor of using label".into(),
                ),
                InstructionKind::Shell(_) => shell_set = true,
                InstructionKind::Cmd(crate::instructions::Command::Shell(_))
                | InstructionKind::Entrypoint(crate::instructions::Command::Shell(_))
                    if !shell_set =>
                {
                    push(out, "JSONArgsRecommended", B, ins.span, format!(
                        "JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"
                    ));
                }
                InstructionKind::Workdir(p) => {
                    if !workdir_set && !p.starts_with('/') && !p.starts_with('$') {
                        push(out, "WorkdirRelativePath", B, ins.span, format!(
                            "Relative workdir \"{p}\" can have unexpected results if the base image changes"
                        ));
                    }
                    workdir_set = true;
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
                InstructionKind::User(u) | InstructionKind::StopSignal(u) => {
                    expanded.push(u.clone())
                }
                InstructionKind::Expose(v) | InstructionKind::Volume(v) => {
                    expanded.extend(v.iter().cloned())
                }
                _ => {}
            }
            for w in &expanded {
                let known: Vec<(String, String)> =
                    scope.iter().map(|k| (k.clone(), String::new())).collect();
                let Ok(e) = lex.expand(w, &known) else {
                    continue;
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
                    if let Some(s) = did_you_mean(&v, scope.iter().map(String::as_str)) {
                        msg.push_str(&format!(" (did you mean ${s}?)"));
                    } else if meta_names.contains(&v) {
                        msg.push_str(&format!(" (ARG {v} is declared before FROM: add \"ARG {v}\" inside the stage to use it)"));
                    }
                    push(out, "UndefinedVar", B, ins.span, msg);
                }
            }
            match &ins.kind {
                InstructionKind::Env(kvs) => {
                    for kv in kvs {
                        secret_check(out, ins, "ENV", &kv.key);
                        scope.insert(kv.key.clone());
                    }
                }
                InstructionKind::Arg(decls) => {
                    for d in decls {
                        secret_check(out, ins, "ARG", &d.name);
                        scope.insert(d.name.clone());
                    }
                }
                _ => {}
            }
        }
        stage_scopes.push(scope);
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
