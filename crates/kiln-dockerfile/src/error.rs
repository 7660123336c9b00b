//! Diagnostics, the floor every layer of the frontend stands on: source
//! spans, the one error type (`file:line:col: message`, then the offending
//! source line with a `^` marker under the bad part) and warnings.

use std::fmt;

use serde::Serialize;

/// A source position: 1-based line and column (in characters) of the start,
/// and of the end (exclusive column) of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Span {
    pub line: usize,
    pub col: usize,
    pub end_line: usize,
    pub end_col: usize,
}

impl Span {
    pub fn point(line: usize, col: usize) -> Span {
        Span {
            line,
            col,
            end_line: line,
            end_col: col + 1,
        }
    }
}

/// Something worth telling the user that does not stop the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// A short rule name (`UnusedBuildArg`, `NoEmptyContinuation`).
    pub rule: String,
    pub message: String,
    pub span: Option<Span>,
}

/// A Dockerfile (or `.dockerignore`, or option) error. Its fields are
/// reachable through `Deref` ([`ErrorDetail`]); boxed to keep `Result` small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(Box<ErrorDetail>);

impl std::ops::Deref for Error {
    type Target = ErrorDetail;
    fn deref(&self) -> &ErrorDetail {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    /// File name as given to `parse` (`Dockerfile`, `-`, `.dockerignore`).
    pub file: String,
    /// Where it went wrong, when it is known.
    pub span: Option<Span>,
    /// What went wrong, with a suggestion in parentheses when one can be made.
    pub message: String,
    /// The source line the span starts on, for the snippet.
    pub source_line: Option<String>,
    /// Further lines shown after the snippet (e.g. the list of stages).
    pub notes: Vec<String>,
}

impl Error {
    /// An error without a location (`Dockerfile: message`).
    pub fn new(file: &str, message: impl Into<String>) -> Error {
        Error(Box::new(ErrorDetail {
            file: file.to_string(),
            span: None,
            message: message.into(),
            source_line: None,
            notes: Vec::new(),
        }))
    }

    /// An error at `span`; `lines` are the physical source lines.
    pub fn at(file: &str, lines: &[String], span: Span, message: impl Into<String>) -> Error {
        Error(Box::new(ErrorDetail {
            file: file.to_string(),
            source_line: span.line.checked_sub(1).and_then(|i| lines.get(i)).cloned(),
            span: Some(span),
            message: message.into(),
            notes: Vec::new(),
        }))
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Error {
        self.0.notes.push(note.into());
        self
    }

    /// The first line only: `Dockerfile:3:1: message`.
    pub fn headline(&self) -> String {
        match self.span {
            Some(s) => format!("{}:{}:{}: {}", self.file, s.line, s.col, self.message),
            None => format!("{}: {}", self.file, self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.headline())?;
        if let (Some(span), Some(line)) = (self.span, &self.source_line) {
            let num = span.line.to_string();
            let pad = " ".repeat(num.len());
            let shown: String = line.replace('\t', " ");
            writeln!(f)?;
            writeln!(f, " {num} | {shown}")?;
            let width = shown.chars().count();
            let start = span.col.saturating_sub(1).min(width);
            let len = if span.end_line == span.line && span.end_col > span.col {
                span.end_col - span.col
            } else {
                width.saturating_sub(start).max(1)
            };
            write!(
                f,
                " {pad} | {}{}",
                " ".repeat(start),
                "^".repeat(len.max(1))
            )?;
        }
        for n in &self.notes {
            write!(f, "\n{n}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
