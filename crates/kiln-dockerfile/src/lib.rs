//! kiln-dockerfile: the pure Dockerfile frontend (no I/O).
//!
//! ```text
//! parse(name, source) ─▶ Dockerfile (every node has a span)
//! plan(&Dockerfile, &PlanOptions) ─▶ Plan (reachable stages, deps first)
//! lower(&Plan, stage, &BaseImageConfig) ─▶ Vec<Step> (expanded, typed)
//! ```
//!
//! Syntax, expansion and scoping follow BuildKit's current Dockerfile
//! frontend; `docs/frontend.md` lists where and why kiln differs.

pub mod ast;
pub mod dockerignore;
pub mod dump;
mod duration;
mod error;
mod flags;
mod instruction;
mod instruction_kinds;
pub mod lint;
mod lower;
mod lower_copy;
mod lower_run;
mod mount;
mod parser;
mod plan;
mod ports;
pub mod quote;
pub mod shell;
mod suggest;
mod words;

use serde::Serialize;

pub use ast::{Command, Dockerfile, Heredoc, Instruction, InstructionKind, Span};
pub use duration::{format_go_duration, parse_go_duration};
pub use error::{Error, ErrorDetail};
pub use lower::{
    lower, lower_with, BaseConfigProvider, BaseImageConfig, Healthcheck, Step, StepKind,
};
pub use lower_copy::CopyFrom;
pub use lower_run::{Network, Security};
pub use mount::{CacheSharing, MountFrom, RunMount};
pub use parser::{chomp_heredoc, parse};
pub use plan::{plan, Base, Plan, PlanOptions, PlannedStage, StageRef};
pub use suggest::did_you_mean;

/// Something worth telling the user that does not stop the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// A short rule name (`UnusedBuildArg`, `NoEmptyContinuation`).
    pub rule: String,
    pub message: String,
    pub span: Option<Span>,
}

/// Expands one word with the default lexer, as `kiln debug expand` does.
pub fn expand_word(word: &str, env: &[(String, String)], escape: char) -> Result<String, String> {
    shell::Lexer::new(escape).process_word(word, env)
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
