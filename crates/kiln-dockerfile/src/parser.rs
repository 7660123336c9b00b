//! Physical lines → logical instructions: parser directives, comments, line
//! continuations (with blank and comment lines inside them) and here-document
//! bodies, following BuildKit's `parser.Parse` line by line, while keeping a
//! map from every byte of a logical line back to its line and column.

use crate::ast::{Directive, Dockerfile, Heredoc, Span};
use crate::error::Error;
use crate::instruction::{parse_instruction, LineCtx};
use crate::shell::Lexer;
use crate::Warning;

/// Maximum input size accepted; BuildKit's scanner refuses lines over 64 KiB,
/// we refuse whole files over 16 MiB so hostile input stays cheap.
const MAX_SOURCE: usize = 16 << 20;

/// One piece of a logical line: where it starts in the joined text and where
/// that text came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub offset: usize,
    pub line: usize,
    /// 0-based character column of the segment's first character.
    pub col: usize,
}

/// Parses a Dockerfile. `file_name` is used in error messages only.
pub fn parse(file_name: &str, source: &str) -> Result<Dockerfile, Error> {
    let df = parse_fragment(file_name, source)?;
    // Only ARG may precede the first FROM, and there must be one.
    crate::plan::split(&df)?;
    Ok(df)
}

/// Parses instructions without requiring a FROM (ONBUILD triggers).
pub(crate) fn parse_fragment(file_name: &str, source: &str) -> Result<Dockerfile, Error> {
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

    let mut p = Parser {
        file: file_name,
        raw: &raw,
        lines: &lines,
        escape: '\\',
        directives_done: false,
        directives: Vec::new(),
        warnings: Vec::new(),
    };
    let instructions = p.run()?;
    if instructions.is_empty() {
        return Err(Error::new(
            file_name,
            "the Dockerfile has no instructions (only comments and blank lines)",
        )
        .with_note("hint: a Dockerfile starts with FROM <image>, e.g. FROM alpine:3.20"));
    }
    Ok(Dockerfile {
        file_name: file_name.to_string(),
        escape: p.escape,
        directives: p.directives,
        instructions,
        warnings: p.warnings,
        lines,
    })
}

struct Parser<'a> {
    file: &'a str,
    raw: &'a [&'a str],
    lines: &'a [String],
    escape: char,
    directives_done: bool,
    directives: Vec<Directive>,
    warnings: Vec<Warning>,
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

impl Parser<'_> {
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

    fn run(&mut self) -> Result<Vec<crate::ast::Instruction>, Error> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.lines.len() {
            let lineno = i + 1;
            let physical = &self.lines[i];
            i += 1;
            let token = physical.trim_start();
            let lead_cols = physical.chars().count() - token.chars().count();
            self.possible_directive(token, lineno)?;
            let token = if token.starts_with('#') { "" } else { token };
            let (first, mut eol) = self.trim_continuation(token);
            if eol && first.is_empty() {
                continue;
            }
            let mut text = first.to_string();
            let mut segs = vec![Segment {
                offset: 0,
                line: lineno,
                col: lead_cols,
            }];
            let mut end_line = lineno;
            let mut empty_continuation = false;
            while !eol && i < self.lines.len() {
                let phys = &self.lines[i];
                let ln = i + 1;
                i += 1;
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
                    message:
                        "empty continuation line (it will become an error in a future release)"
                            .into(),
                    span: Some(Span {
                        line: lineno,
                        col: lead_cols + 1,
                        end_line,
                        end_col: 1,
                    }),
                });
            }
            let ctx = LineCtx {
                file: self.file,
                lines: self.lines,
                text: &text,
                segs: &segs,
                escape: self.escape,
                end_line,
            };
            let wanted = crate::instruction::wanted_heredocs(&ctx)?;
            let mut heredocs = Vec::new();
            for h in wanted {
                let mut content = String::new();
                let mut terminated = false;
                while i < self.raw.len() {
                    let rawline = self.raw[i];
                    i += 1;
                    end_line = i;
                    let mut candidate = rawline.trim_end_matches(['\r', '\n']);
                    if h.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == h.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(rawline);
                }
                if !terminated {
                    let span = ctx.span(0, text.len());
                    return Err(Error::at(
                        self.file,
                        self.lines,
                        span,
                        format!(
                            "unterminated heredoc: no line \"{}\" ends the here-document started here",
                            h.name
                        ),
                    ));
                }
                heredocs.push(Heredoc { content, ..h });
            }
            let ctx = LineCtx { end_line, ..ctx };
            out.push(parse_instruction(&ctx, heredocs)?);
        }
        Ok(out)
    }
}

/// `^(\d*)<<(-?)([^<]*)$` and the quote test of BuildKit's `ParseHeredoc`:
/// the delimiter word, whether to expand and whether to chomp.
pub(crate) fn parse_heredoc_word(word: &str) -> Result<Option<Heredoc>, String> {
    let digits = word.chars().take_while(|c| c.is_ascii_digit()).count();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = if digits == 0 {
        0
    } else {
        word[..digits].parse::<u32>().unwrap_or(u32::MAX)
    };
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let empty: Vec<(String, String)> = Vec::new();
    let words = lex.process_words(rest, &empty)?;
    if words.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw_words = lex.process_words(rest, &empty)?;
    if raw_words.len() != 1 {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    }
    let count = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    Ok(Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        expand: count(&words[0]) == count(&raw_words[0]),
        chomp,
        fd,
    }))
}

/// `ChompHeredocContent`: leading tabs removed from every line.
pub fn chomp_heredoc(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
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

    #[test]
    fn heredoc_words() {
        let h = parse_heredoc_word("<<EOF").unwrap().unwrap();
        assert!(h.expand && !h.chomp && h.name == "EOF");
        let h = parse_heredoc_word("<<-'EOT'").unwrap().unwrap();
        assert!(!h.expand && h.chomp && h.name == "EOT");
        let h = parse_heredoc_word("3<<\"E\"OF").unwrap().unwrap();
        assert!(!h.expand && h.fd == 3 && h.name == "EOF");
        assert!(parse_heredoc_word("<<").unwrap().is_none());
        assert!(parse_heredoc_word("a<<EOF").unwrap().is_none());
    }
}
