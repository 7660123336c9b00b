//! The middle layer: one typed struct per instruction, built from the
//! logical lines and flags of [`crate::syntax`]. A [`Dockerfile`] holds every
//! instruction with its span, its flags and arguments as written, and a typed
//! but still unexpanded form.

mod document;
mod kinds;
pub(crate) mod mount;
mod parse;
mod request;

use serde::Serialize;

pub use crate::error::Span;
use crate::error::{Error, Warning};
pub use crate::syntax::flags::Flag;
pub use crate::syntax::heredoc::Heredoc;
pub use crate::syntax::lines::Directive;
pub(crate) use document::parse_fragment;

/// A whole Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    pub file_name: String,
    /// The escape token (`\` unless `# escape=` says otherwise).
    pub escape: char,
    /// Parser directives in the order written (`syntax`, `escape`, `check`).
    pub directives: Vec<Directive>,
    pub instructions: Vec<Instruction>,
    /// Problems that are not errors (empty continuation lines).
    pub warnings: Vec<Warning>,
    /// Physical source lines (without line endings), for error snippets.
    pub lines: Vec<String>,
}

impl Dockerfile {
    /// The value of a parser directive, by lower-case name.
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }

    pub(crate) fn error(&self, span: Span, msg: impl Into<String>) -> Error {
        Error::at(&self.file_name, &self.lines, span, msg)
    }
}

/// One instruction as written plus its typed form.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    pub span: Span,
    /// The keyword as written (`run`, `RUN`, `Run`).
    pub keyword: String,
    pub flags: Vec<Flag>,
    /// Everything after the flags, trimmed, continuation lines joined.
    pub args: String,
    /// Whether the arguments were a valid JSON array (exec form).
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
    /// The whole logical line (continuations joined), for progress output.
    pub original: String,
    pub kind: InstructionKind,
}

impl Instruction {
    /// The upper-case instruction name (`RUN`).
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}

/// Exec form or shell form of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "value", rename_all = "lowercase")]
pub enum Command {
    /// Shell form: one string run with the current SHELL.
    Shell(String),
    /// Exec (JSON) form.
    Exec(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Legacy `ENV key value` / `LABEL key value` syntax.
    pub legacy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromInstr {
    pub image: String,
    /// `AS name` as written.
    pub stage_name: Option<String>,
    pub platform: Option<String>,
}

/// A `--mount` flag, kept as written; typed during lowering after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountFlag {
    pub value: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInstr {
    pub command: Command,
    pub mounts: Vec<MountFlag>,
    pub network: Option<String>,
    pub security: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstr {
    pub is_add: bool,
    pub sources: Vec<String>,
    /// Here-documents used as sources (`COPY <<EOF /dest`).
    pub heredocs: Vec<Heredoc>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthInstr {
    None,
    Check {
        /// `["CMD", …]` or `["CMD-SHELL", "…"]`.
        test: Vec<String>,
        interval: Option<std::time::Duration>,
        timeout: Option<std::time::Duration>,
        start_period: Option<std::time::Duration>,
        start_interval: Option<std::time::Duration>,
        retries: Option<i64>,
    },
}

/// The typed, unexpanded form of each instruction.
#[derive(Debug, Clone, PartialEq)]
pub enum InstructionKind {
    From(FromInstr),
    Run(RunInstr),
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    Label(Vec<KeyValue>),
    Maintainer(String),
    Expose(Vec<String>),
    Env(Vec<KeyValue>),
    Copy(CopyInstr),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Arg(Vec<ArgDecl>),
    /// The trigger expression as it goes into the image config, and the
    /// parsed trigger (validated now so mistakes show at parse time).
    Onbuild(String, Box<Instruction>),
    StopSignal(String),
    Healthcheck(HealthInstr),
}

impl InstructionKind {
    pub fn name(&self) -> &'static str {
        match self {
            InstructionKind::From(_) => "FROM",
            InstructionKind::Run(_) => "RUN",
            InstructionKind::Cmd(_) => "CMD",
            InstructionKind::Entrypoint(_) => "ENTRYPOINT",
            InstructionKind::Shell(_) => "SHELL",
            InstructionKind::Label(_) => "LABEL",
            InstructionKind::Maintainer(_) => "MAINTAINER",
            InstructionKind::Expose(_) => "EXPOSE",
            InstructionKind::Env(_) => "ENV",
            InstructionKind::Copy(c) if c.is_add => "ADD",
            InstructionKind::Copy(_) => "COPY",
            InstructionKind::Volume(_) => "VOLUME",
            InstructionKind::User(_) => "USER",
            InstructionKind::Workdir(_) => "WORKDIR",
            InstructionKind::Arg(_) => "ARG",
            InstructionKind::Onbuild(..) => "ONBUILD",
            InstructionKind::StopSignal(_) => "STOPSIGNAL",
            InstructionKind::Healthcheck(_) => "HEALTHCHECK",
        }
    }
}

/// Every instruction keyword, upper case.
pub const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];
