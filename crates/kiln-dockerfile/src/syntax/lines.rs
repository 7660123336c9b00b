//! Physical lines → logical lines: parser directives, comments, line
//! continuations (with blank and comment lines inside them) and here-document
//! bodies, following BuildKit's `parser.Parse` line by line, while keeping a
//! map from every byte of a logical line back to its line and column.

use serde::Serialize;

use super::heredoc::{wanted_heredocs, Heredoc};
use super::line::{LineCtx, Segment};
use crate::error::{Error, Span, Warning};

/// Maximum input size accepted; BuildKit's scanner refuses lines over 64 KiB,
/// we refuse whole files over 16 MiB so hostile input stays cheap.
const MAX_SOURCE: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// A source split into logical lines.
pub(crate) struct Source {
    /// The escape token (`\` unless `# escape=` says otherwise).
    pub escape: char,
    pub directives: Vec<Directive>,
    /// Problems that are not errors (empty continuation lines).
    pub warnings: Vec<Warning>,
    /// Physical source lines (without line endings), for error snippets.
    pub lines: Vec<String>,
    pub logical: Vec<LogicalLine>,
}

/// One instruction's text: continuations joined, here-document bodies read.
pub(crate) struct LogicalLine {
    pub text: String,
    pub segs: Vec<Segment>,
    /// The last physical line it (or its last here-document) covers.
    pub end_line: usize,
    pub heredocs: Vec<Heredoc>,
}

impl Source {
    pub fn ctx<'a>(&'a self, file: &'a str, l: &'a LogicalLine) -> LineCtx<'a> {
        LineCtx {
            file,
            lines: &self.lines,
            text: &l.text,
            segs: &l.segs,
            escape: self.escape,
            end_line: l.end_line,
        }
    }
}

/// Splits `source` into logical lines. `file_name` is for errors only.
pub(crate) fn read(file_name: &str, source: &str) -> Result<Source, Error> {
    if source.len() > MAX_SOURCE {
        return Err(Error::new(
            file_name,
            format!(
                "Dockerfile is {} bytes, larger than the 16 MiB kiln accepts",
                source.len()
            ),
        ));
    }
    if source.trim().is_empty() {
        return Err(Error::new(
            file_name,
            "the Dockerfile is empty (it has no instructions)",
        )
        .with_note("hint: a Dockerfile starts with FROM <image>, e.g. FROM alpine:3.20"));
    }
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    // Lines keep their endings (heredoc bodies need them); `lines` are trimmed.
    let raw: Vec<&str> = source.split_inclusive('\n').collect();
    let lines: Vec<String> = raw
        .iter()
        .map(|l| l.trim_end_matches(['\r', '\n']).to_string())
        .collect();
    let mut p = Reader {
        file: file_name,
        raw: &raw,
        lines: &lines,
        escape: '\\',
        directives_done: false,
        directives: Vec::new(),
        warnings: Vec::new(),
        next: 0,
    };
    let mut logical = Vec::new();
    while let Some(l) = p.logical_line()? {
        logical.push(l);
    }
    Ok(Source {
        escape: p.escape,
        directives: p.directives,
        warnings: p.warnings,
        lines,
        logical,
    })
}

struct Reader<'a> {
    file: &'a str,
    raw: &'a [&'a str],
    lines: &'a [String],
    escape: char,
    directives_done: bool,
    directives: Vec<Directive>,
    warnings: Vec<Warning>,
    /// Index of the next physical line to read.
    next: usize,
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn match_directive(line: &str) -> Option<(String, String)> {
    let is_ws = |c: char| matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r');
    let rest = line.strip_prefix('#')?.trim_start_matches(is_ws);
    let name_len = rest
        .char_indices()
        .take_while(|(i, c)| {
            if *i == 0 {
                c.is_ascii_alphabetic()
            } else {
                c.is_ascii_alphanumeric()
            }
        })
        .count();
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let rest = rest.trim_start_matches(is_ws).strip_prefix('=')?;
    let value = rest.trim_matches(is_ws);
    if value.is_empty() {
        return None;
    }
    Some((name.to_string(), value.to_string()))
}

impl Reader<'_> {
    fn err_line(&self, line: usize, msg: impl Into<String>) -> Error {
        let len = self
            .lines
            .get(line - 1)
            .map_or(1, |l| l.chars().count().max(1));
        Error::at(
            self.file,
            self.lines,
            Span {
                line,
                col: 1,
                end_line: line,
                end_col: len + 1,
            },
            msg,
        )
    }

    fn possible_directive(&mut self, token: &str, line: usize) -> Result<(), Error> {
        if self.directives_done {
            return Ok(());
        }
        let Some((name, value)) = match_directive(token) else {
            self.directives_done = true;
            return Ok(());
        };
        let key = name.to_ascii_lowercase();
        if !matches!(key.as_str(), "escape" | "syntax" | "check") {
            self.directives_done = true;
            return Ok(());
        }
        if self.directives.iter().any(|d| d.name == key) {
            return Err(self.err_line(line, format!("only one {key} parser directive can be used")));
        }
        if key == "escape" {
            match value.as_str() {
                "\\" => self.escape = '\\',
                "`" => self.escape = '`',
                _ => {
                    return Err(self.err_line(
                        line,
                        format!("invalid escape token '{value}' does not match ` or \\"),
                    ))
                }
            }
        }
        self.directives.push(Directive {
            name: key,
            value,
            line,
        });
        Ok(())
    }

    /// BuildKit's continuation regex: the escape token as the last
    /// non-blank character, unless it is itself escaped.
    fn trim_continuation<'s>(&self, line: &'s str) -> (&'s str, bool) {
        let t = line.trim_end_matches([' ', '\t']);
        if let Some(body) = t.strip_suffix(self.escape) {
            if body.is_empty() || !body.ends_with(self.escape) {
                return (body, false);
            }
        }
        (line, true)
    }

    /// The next logical line with its here-document bodies, if any is left.
    fn logical_line(&mut self) -> Result<Option<LogicalLine>, Error> {
        while self.next < self.lines.len() {
            let mut line = match self.joined_line()? {
                Some(l) => l,
                None => continue,
            };
            let ctx = LineCtx {
                file: self.file,
                lines: self.lines,
                text: &line.text,
                segs: &line.segs,
                escape: self.escape,
                end_line: line.end_line,
            };
            let wanted = wanted_heredocs(&ctx)?;
            let span = ctx.span(0, line.text.len());
            for h in wanted {
                let h = self.heredoc_body(h, span)?;
                line.heredocs.push(h);
                line.end_line = self.next;
            }
            return Ok(Some(line));
        }
        Ok(None)
    }

    /// One physical line and its continuations, joined; `None` for a line
    /// that holds no instruction (blank, comment, lone continuation).
    fn joined_line(&mut self) -> Result<Option<LogicalLine>, Error> {
        let lineno = self.next + 1;
        let physical = &self.lines[self.next];
        self.next += 1;
        let token = physical.trim_start();
        let lead_cols = physical.chars().count() - token.chars().count();
        self.possible_directive(token, lineno)?;
        let token = if token.starts_with('#') { "" } else { token };
        let (first, mut eol) = self.trim_continuation(token);
        if eol && first.is_empty() {
            return Ok(None);
        }
        let mut text = first.to_string();
        let mut segs = vec![Segment {
            offset: 0,
            line: lineno,
            col: lead_cols,
        }];
        let mut end_line = lineno;
        let mut empty_continuation = false;
        while !eol && self.next < self.lines.len() {
            let phys = &self.lines[self.next];
            let ln = self.next + 1;
            self.next += 1;
            self.possible_directive(phys, ln)?;
            end_line = ln;
            if is_comment(phys) {
                continue;
            }
            if phys.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, e) = self.trim_continuation(phys);
            eol = e;
            segs.push(Segment {
                offset: text.len(),
                line: ln,
                col: 0,
            });
            text.push_str(piece);
        }
        if empty_continuation {
            self.warnings.push(Warning {
                rule: "NoEmptyContinuation".into(),
                message: "empty continuation line (it will become an error in a future release)"
                    .into(),
                span: Some(Span {
                    line: lineno,
                    col: lead_cols + 1,
                    end_line,
                    end_col: 1,
                }),
            });
        }
        Ok(Some(LogicalLine {
            text,
            segs,
            end_line,
            heredocs: Vec::new(),
        }))
    }

    /// Reads the body of `h` up to its delimiter line; `span` is the line
    /// that opened it, blamed when the delimiter never comes.
    fn heredoc_body(&mut self, h: Heredoc, span: Span) -> Result<Heredoc, Error> {
        let mut content = String::new();
        while self.next < self.raw.len() {
            let rawline = self.raw[self.next];
            self.next += 1;
            let mut candidate = rawline.trim_end_matches(['\r', '\n']);
            if h.chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == h.name {
                return Ok(Heredoc { content, ..h });
            }
            content.push_str(rawline);
        }
        Err(Error::at(
            self.file,
            self.lines,
            span,
            format!(
                "unterminated heredoc: no line \"{}\" ends the here-document started here",
                h.name
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives() {
        assert_eq!(
            match_directive("# escape=`"),
            Some(("escape".into(), "`".into()))
        );
        assert_eq!(
            match_directive("#syntax = docker/dockerfile:1 "),
            Some(("syntax".into(), "docker/dockerfile:1".into()))
        );
        assert_eq!(match_directive("# just a comment"), None);
    }
}
