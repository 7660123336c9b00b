//! What lowering produces: one [`Step`] per instruction, its kind a named
//! struct where the engine needs the fields together ([`RunStep`],
//! [`CopyStep`]) so it can borrow the step whole.

use std::time::Duration;

use serde::Serialize;

use super::mount::RunMount;
use crate::error::Span;
use crate::instructions::{Command, Heredoc};

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
    Run(RunStep),
    Copy(CopyStep),
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

/// A lowered RUN.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunStep {
    /// The command; shell form is run as `shell + [cmd]`.
    pub cmd: Command,
    /// The SHELL in effect (default `["/bin/sh", "-c"]`).
    pub shell: Vec<String>,
    pub mounts: Vec<RunMount>,
    pub network: Option<Network>,
    pub security: Option<Security>,
    /// ARG values in scope (not shadowed by ENV): in the RUN environment
    /// and cache key, never in the image config.
    pub build_env: Vec<(String, String)>,
    /// Predefined proxy args given with --build-arg and not declared:
    /// in the RUN environment only, out of history and cache keys.
    pub proxy_env: Vec<(String, String)>,
    pub heredocs: Vec<Heredoc>,
}

/// A lowered COPY or ADD.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopyStep {
    pub is_add: bool,
    pub sources: Vec<String>,
    /// Inline files (`COPY <<EOF /dest`): name = file name, content
    /// with chomp and expansion applied; created with mode 0644 unless chmod.
    pub heredocs: Vec<Heredoc>,
    /// Destination as written (expanded); relative to the working dir.
    pub dest: String,
    pub from: Option<CopyFrom>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
    pub parents: bool,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Sandbox,
    Insecure,
}

/// Where COPY --from reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum CopyFrom {
    Stage(usize),
    Image(String),
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
