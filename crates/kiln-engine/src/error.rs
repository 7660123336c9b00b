//! Errors of the build engine. Each names what failed and where.

/// An invalid command-line value: names the flag, the value and why.
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag} {value:?}: {reason}")]
pub struct OptionError {
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

impl OptionError {
    pub fn new(flag: &'static str, value: &str, reason: &str) -> Self {
        OptionError {
            flag,
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Option(#[from] OptionError),
    /// The Dockerfile is invalid; the message carries file:line:col and a snippet.
    #[error("{0}")]
    Dockerfile(String),
    /// A RUN step's command exited non-zero.
    #[error("{location}: {instruction}: process {command:?} did not complete successfully: exit code {code}")]
    RunFailed {
        location: String,
        instruction: String,
        command: String,
        code: i32,
    },
    /// A step could not be carried out.
    #[error("{location}: {instruction}: {message}")]
    Step {
        location: String,
        instruction: String,
        message: String,
        #[source]
        source: Option<Source>,
    },
    /// Anything else: what was being done, and why it failed.
    #[error("{action}: {source}")]
    Other {
        action: String,
        #[source]
        source: Source,
    },
    #[error("build interrupted")]
    Interrupted,
    /// A blob of an imported remote cache is missing or wrong; the build
    /// is retried without the records that name it.
    #[error("remote cache blob {digest}: {message}")]
    RemoteCache { digest: String, message: String },
}

impl BuildError {
    pub fn other(action: impl Into<String>, source: impl Into<Source>) -> Self {
        BuildError::Other {
            action: action.into(),
            source: source.into(),
        }
    }
}

/// Adds "what we were doing" to any error.
pub trait Context<T> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T, BuildError>;
}

impl<T, E: Into<Source>> Context<T> for Result<T, E> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T, BuildError> {
        self.map_err(|e| BuildError::Other {
            action: action(),
            source: e.into(),
        })
    }
}
