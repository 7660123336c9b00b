//! What each instruction's parser is handed: the logical line, its flags
//! and arguments, and ways to blame the right part of them.

use super::Command;
use crate::error::{Error, Span};
use crate::syntax::flags::FlagSet;
use crate::syntax::heredoc::Heredoc;
use crate::syntax::line::LineCtx;
use crate::syntax::words;

/// What the per-instruction parsers get.
pub(crate) struct Request<'a> {
    pub ctx: &'a LineCtx<'a>,
    pub name: String,
    pub flags: FlagSet<'a>,
    pub args: &'a str,
    pub args_off: usize,
    pub heredocs: &'a [Heredoc],
    pub kw_span: Span,
    /// Set by the parser when the arguments were a JSON array (exec form).
    pub json: bool,
}

impl Request<'_> {
    /// An error pointing at the arguments.
    pub fn err_args(&self, msg: impl Into<String>) -> Error {
        let end = self.args_off + self.args.len();
        self.ctx.err(self.args_off, end, msg)
    }

    /// An error pointing at the keyword (nothing after it to point at).
    pub fn missing(&self, msg: impl Into<String>) -> Error {
        Error::at(self.ctx.file, self.ctx.lines, self.kw_span, msg)
    }

    /// Values and spans of every use of a flag.
    pub fn flags_list(&self, name: &str) -> Vec<(String, Span)> {
        self.flags
            .all()
            .iter()
            .filter(|f| f.name == name)
            .map(|f| (f.value.clone().unwrap_or_default(), f.span))
            .collect()
    }

    /// Span of the last use of a flag (or of the keyword).
    pub fn flag_span(&self, name: &str) -> Span {
        self.flags
            .all()
            .iter()
            .rev()
            .find(|f| f.name == name)
            .map_or(self.kw_span, |f| f.span)
    }

    /// Shell form, or exec form when the arguments are a JSON string array.
    pub fn command(&self) -> Result<(Command, bool), Error> {
        match words::parse_json(self.args) {
            Ok(list) => Ok((Command::Exec(list), true)),
            Err(words::JsonError::NotStrings) => Err(self.err_args(
                "when using JSON array syntax, arrays must be comprised of strings only",
            )),
            Err(_) => Ok((Command::Shell(self.args.to_string()), false)),
        }
    }
}
