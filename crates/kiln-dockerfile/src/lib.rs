//! kiln-dockerfile: the pure Dockerfile frontend (no I/O).
//!
//! ```text
//! parse(name, source) ─▶ Dockerfile (every node has a span)
//! plan(&Dockerfile, &PlanOptions) ─▶ Plan (reachable stages, deps first)
//! lower(&Plan, stage, &BaseImageConfig) ─▶ Vec<Step> (expanded, typed)
//! ```
//!
//! Four layers, each importing only the ones below it (BuildKit's
//! `parser` → `instructions` → `dockerfile2llb`):
//!
//! ```text
//! lint, dump            read a Dockerfile (and its plan)
//! lower/                stage → steps (RunStep, CopyStep, …)
//! plan                  stages, bases, build args, validation
//! instructions/         logical line → one typed struct per instruction
//! syntax/               text → logical lines, flags, here-documents, words
//! error, quote, suggest, duration: spans and messages, used by all
//! ```
//!
//! Syntax, expansion and scoping follow BuildKit's current Dockerfile
//! frontend; `docs/frontend.md` lists where and why kiln differs.

pub mod dump;
mod duration;
mod error;
pub mod instructions;
pub mod lint;
mod lower;
mod plan;
pub mod quote;
mod suggest;
mod syntax;

pub use duration::{format_go_duration, parse_go_duration};
pub use error::{Error, ErrorDetail, Span, Warning};
pub use instructions::{Command, Dockerfile, Heredoc, Instruction, InstructionKind};
pub use lower::{
    lower, lower_with, BaseConfigProvider, BaseImageConfig, CacheSharing, CopyFrom, CopyStep,
    Healthcheck, MountFrom, Network, RunMount, RunStep, Security, Step, StepKind,
};
pub use plan::{is_proxy_arg, plan, Base, Plan, PlanOptions, PlannedStage, StageRef, PROXY_ARGS};
pub use suggest::did_you_mean;
pub use syntax::heredoc::chomp_heredoc;
pub use syntax::shell;

/// Parses a Dockerfile. `file_name` is used in error messages only.
pub fn parse(file_name: &str, source: &str) -> Result<Dockerfile, Error> {
    let df = instructions::parse_fragment(file_name, source)?;
    // Only ARG may precede the first FROM, and there must be one.
    plan::split(&df)?;
    Ok(df)
}

/// Expands one word with the default lexer, as `kiln debug expand` does.
pub fn expand_word(word: &str, env: &[(String, String)], escape: char) -> Result<String, String> {
    shell::Lexer::new(escape).process_word(word, env)
}
