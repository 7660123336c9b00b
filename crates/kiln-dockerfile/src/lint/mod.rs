//! Lint checks: BuildKit's build checks (same rule names and messages) and
//! kiln's own lean-image hints (`lean.rs`). `# check=skip=…` is honoured.

mod buildkit;
mod lean;

use serde::Serialize;

use crate::instructions::{Dockerfile, Span};

/// Who defines a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// One of BuildKit's build checks.
    Buildkit,
    /// A kiln lean-image hint.
    Kiln,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub origin: Origin,
    pub message: String,
    pub span: Span,
}

/// Every rule kiln knows, with a one-line description.
pub const RULES: &[(&str, &str)] = &[
    ("FromAsCasing", "The 'as' keyword should match the case of the 'from' keyword"),
    ("StageNameCasing", "Stage names should be lowercase"),
    ("JSONArgsRecommended", "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals"),
    ("UndefinedVar", "Variables should be defined before their use"),
    ("MaintainerDeprecated", "The MAINTAINER instruction is deprecated, use a label instead"),
    ("ConsistentInstructionCasing", "All commands within the Dockerfile should use the same casing"),
    ("DuplicateStageName", "Stage names should be unique"),
    ("WorkdirRelativePath", "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes"),
    ("SecretsUsedInArgOrEnv", "Sensitive data should not be used in the ARG or ENV commands"),
    ("UndefinedArgInFrom", "FROM command must use declared ARGs"),
    ("MultipleInstructionsDisallowed", "Multiple instructions of the same type should not be used in the same stage"),
    ("LegacyKeyValueFormat", "Legacy key/value format with whitespace separator should not be used"),
    ("NoEmptyContinuation", "Empty continuation lines will become errors in a future release"),
    ("ReservedStageName", "Reserved words should not be used as stage names"),
    ("ToolchainFinalImage", "The final image should not be a compiler toolchain image; copy the result into a small runtime stage"),
    ("AptUpdateSeparateLayer", "apt-get update and apt-get install belong in the same RUN"),
    ("PackageCacheLeftBehind", "Package manager caches should be removed in the layer that created them"),
    ("AddLocalFile", "Use COPY for local files that are not archives"),
    ("MalformedJSONForm", "Arguments that start with '[' but are not valid JSON run as a shell command"),
];

/// What `# check=` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckDirective {
    pub skip_all: bool,
    pub skip: Vec<String>,
    pub error: bool,
}

/// Parses `# check=skip=A,B;error=true`.
pub fn check_directive(df: &Dockerfile) -> CheckDirective {
    let mut out = CheckDirective::default();
    let Some(v) = df.directive("check") else {
        return out;
    };
    for part in v.split(';') {
        let Some((k, val)) = part.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "skip" => {
                for r in val.split(',') {
                    let r = r.trim();
                    if r.eq_ignore_ascii_case("all") {
                        out.skip_all = true;
                    } else if !r.is_empty() {
                        out.skip.push(r.to_string());
                    }
                }
            }
            "error" => out.error = val.trim().eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    out
}

/// Runs every rule not skipped by `# check=`; findings sorted by position.
pub fn lint(df: &Dockerfile) -> Vec<Finding> {
    let mut out = Vec::new();
    buildkit::check(df, &mut out);
    lean::check(df, &mut out);
    let dir = check_directive(df);
    out.retain(|f| {
        if f.origin == Origin::Buildkit && dir.skip_all {
            return false;
        }
        !dir.skip.iter().any(|s| s.eq_ignore_ascii_case(f.rule))
    });
    out.sort_by_key(|f| (f.span.line, f.span.col, f.rule));
    out.dedup();
    out
}

pub(crate) fn push(
    out: &mut Vec<Finding>,
    rule: &'static str,
    origin: Origin,
    span: Span,
    message: String,
) {
    out.push(Finding {
        rule,
        origin,
        message,
        span,
    });
}
