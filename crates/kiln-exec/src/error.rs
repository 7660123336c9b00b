//! Errors of kiln-exec: each names the container, the path or the program
//! involved, and carries the cause.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("executable file not found: {name}")]
    ExecutableNotFound { name: String },

    #[error("permission denied executing {name}")]
    ExecutableNotRunnable { name: String },

    #[error("container {id}: cancelled")]
    Cancelled { id: String },

    #[error("invalid container id {id:?}: use 1-64 characters of [A-Za-z0-9_.+-]")]
    InvalidId { id: String },

    #[error("container {id} already exists (state in {})", path.display())]
    AlreadyExists { id: String, path: PathBuf },

    #[error("invalid run spec for container {id}: {reason}")]
    InvalidSpec { id: String, reason: String },

    #[error("unknown container runtime {0:?} (expected youki or runc)")]
    UnknownRuntime(String),

    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("container {id}: starting helper {}: {source}", helper.display())]
    SpawnHelper {
        id: String,
        helper: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("container {id}: helper process failed ({status}) without a result{}", stderr_note(.stderr))]
    HelperDied {
        id: String,
        status: String,
        stderr: String,
    },

    #[error("container {id}: {runtime}: {message}")]
    Runtime {
        id: String,
        runtime: &'static str,
        message: String,
    },

    #[error("seccomp profile: {0}")]
    Seccomp(String),

    #[error("OCI runtime spec: {0}")]
    Spec(String),
}

fn stderr_note(s: &str) -> String {
    if s.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", s.trim())
    }
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// The exit code Docker reports for this failure to start a process:
    /// 127 when the executable is missing, 126 when it cannot be executed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Error::ExecutableNotFound { .. } => Some(127),
            Error::ExecutableNotRunnable { .. } => Some(126),
            _ => None,
        }
    }
}
