//! Errors of the build engine.

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
