//! One logical line → one typed instruction: the keyword, BuildKit's flag
//! extraction, and the per-instruction argument rules of `line_parsers.go`
//! and `instructions/parse.go`.

use crate::ast::{Command, Flag, Heredoc, Instruction, InstructionKind, Span, KEYWORDS};
use crate::error::Error;
use crate::flags::FlagSet;
use crate::parser::{parse_heredoc_word, Segment};
use crate::shell::Lexer;
use crate::suggest::did_you_mean;
use crate::words;

/// A logical line with its position map.
pub(crate) struct LineCtx<'a> {
    pub file: &'a str,
    pub lines: &'a [String],
    pub text: &'a str,
    pub segs: &'a [Segment],
    pub escape: char,
    pub end_line: usize,
}

impl LineCtx<'_> {
    /// Line and 1-based column of a byte offset in the logical line.
    pub fn pos(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let seg = self
            .segs
            .iter()
            .rev()
            .find(|s| s.offset <= offset)
            .copied()
            .unwrap_or(self.segs[0]);
        let chars = self
            .text
            .get(seg.offset..offset)
            .map_or(0, |s| s.chars().count());
        (seg.line, seg.col + chars + 1)
    }

    pub fn span(&self, start: usize, end: usize) -> Span {
        let (line, col) = self.pos(start);
        let (end_line, end_col) = self.pos(end.max(start));
        Span {
            line,
            col,
            end_line,
            end_col: if end_line == line && end_col <= col {
                col + 1
            } else {
                end_col
            },
        }
    }

    pub fn err(&self, start: usize, end: usize, msg: impl Into<String>) -> Error {
        Error::at(self.file, self.lines, self.span(start, end), msg)
    }
}

fn is_split_ws(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// `splitCommand`: keyword and the offset where its arguments start.
fn split_keyword(text: &str, start: usize) -> (usize, usize, usize) {
    let s = &text[start..];
    let lead = s.len() - s.trim_start().len();
    let kw_start = start + lead;
    let kw_len = text[kw_start..]
        .find(is_split_ws)
        .unwrap_or(text.len() - kw_start);
    let kw_end = kw_start + kw_len;
    let rest = text[kw_end..].trim_start_matches(is_split_ws);
    (kw_start, kw_end, text.len() - rest.len())
}

/// Which here-documents this line opens (RUN/COPY/ADD, also under ONBUILD,
/// never in JSON form), in order.
pub(crate) fn wanted_heredocs(ctx: &LineCtx) -> Result<Vec<Heredoc>, Error> {
    let (ks, ke, mut args) = split_keyword(ctx.text, 0);
    let mut kw = ctx.text[ks..ke].to_ascii_lowercase();
    if kw == "onbuild" {
        let (ks2, ke2, a2) = split_keyword(ctx.text, args);
        kw = ctx.text[ks2..ke2].to_ascii_lowercase();
        args = a2;
    }
    if !matches!(kw.as_str(), "run" | "copy" | "add") {
        return Ok(Vec::new());
    }
    let (_, rest) = extract_flags(ctx.text, args);
    let rest_text = ctx.text[rest..].trim();
    if words::parse_json(rest_text).is_ok() {
        return Ok(Vec::new());
    }
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    let empty: Vec<(String, String)> = Vec::new();
    let line_words = lex.process_words(ctx.text, &empty).unwrap_or_default();
    let mut out = Vec::new();
    for w in line_words {
        match parse_heredoc_word(&w) {
            Ok(Some(h)) => out.push(h),
            Ok(None) => {}
            Err(e) => return Err(ctx.err(0, ctx.text.len(), e)),
        }
    }
    Ok(out)
}

/// `extractBuilderFlags`: leading `--flag[=value]` words (quotes and
/// backslashes processed), with their byte ranges; returns where the
/// arguments start.
pub(crate) fn extract_flags(text: &str, start: usize) -> (Vec<(String, usize, usize)>, usize) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let bytes: Vec<(usize, char)> = text[start..]
        .char_indices()
        .map(|(i, c)| (i + start, c))
        .collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = start;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut k = 0;
    let at = |k: usize| bytes.get(k).map_or(text.len(), |b| b.0);
    while k <= bytes.len() {
        let end = k == bytes.len();
        let ch = if end { '\0' } else { bytes[k].1 };
        if phase == Phase::Spaces {
            if end {
                break;
            }
            if ch.is_whitespace() {
                k += 1;
                continue;
            }
            if ch != '-' || bytes.get(k + 1).map(|b| b.1) != Some('-') {
                return (words, at(k));
            }
            phase = Phase::Word;
            word_start = at(k);
        }
        if end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push((word, word_start, text.len()));
            }
            return (words, text.len());
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (words, at(k));
                }
                if blank_ok || !word.is_empty() {
                    words.push((std::mem::take(&mut word), word_start, at(k)));
                }
                word.clear();
                blank_ok = false;
                k += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                k += 1;
                continue;
            }
            let mut c = ch;
            if ch == '\\' {
                if k + 1 == bytes.len() {
                    k += 1;
                    continue;
                }
                k += 1;
                c = bytes[k].1;
            }
            word.push(c);
            k += 1;
            continue;
        }
        // in a quote
        if ch == quote {
            phase = Phase::Word;
            k += 1;
            continue;
        }
        let mut c = ch;
        if ch == '\\' {
            if k + 1 == bytes.len() {
                phase = Phase::Word;
                k += 1;
                continue;
            }
            k += 1;
            c = bytes[k].1;
        }
        word.push(c);
        k += 1;
    }
    (words, text.len())
}

pub(crate) fn parse_instruction(
    ctx: &LineCtx,
    heredocs: Vec<Heredoc>,
) -> Result<Instruction, Error> {
    parse_at(ctx, 0, heredocs, false)
}

fn parse_at(
    ctx: &LineCtx,
    start: usize,
    heredocs: Vec<Heredoc>,
    in_onbuild: bool,
) -> Result<Instruction, Error> {
    let (ks, ke, args_start) = split_keyword(ctx.text, start);
    let keyword = ctx.text[ks..ke].to_string();
    let upper = keyword.to_ascii_uppercase();
    let kw_span = ctx.span(ks, ke);
    if !KEYWORDS.contains(&upper.as_str()) {
        let mut msg = format!("unknown instruction {}", crate::quote::go_quote(&keyword));
        if let Some(s) = did_you_mean(&upper, KEYWORDS.iter().copied()) {
            msg.push_str(&format!(" (did you mean \"{s}\"?)"));
        }
        return Err(ctx.err(ks, ke, msg));
    }
    let (raw_flags, rest_start) = extract_flags(ctx.text, args_start);
    let flags: Vec<Flag> = raw_flags
        .iter()
        .map(|(w, s, e)| {
            let body = w.strip_prefix("--").unwrap_or(w);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            Flag {
                name,
                value,
                span: ctx.span(*s, *e),
            }
        })
        .collect();
    let rest_raw = &ctx.text[rest_start..];
    let args = rest_raw.trim().to_string();
    let args_off = rest_start + (rest_raw.len() - rest_raw.trim_start().len());
    let mut req = Request {
        ctx,
        name: upper.clone(),
        flags: FlagSet::new(ctx, &upper, &flags),
        args: &args,
        args_off,
        heredocs: &heredocs,
        kw_span,
    };
    let mut json = false;
    let kind = match upper.as_str() {
        "FROM" => crate::instruction_kinds::from(&mut req)?,
        "RUN" => crate::instruction_kinds::run(&mut req, &mut json)?,
        "CMD" => InstructionKind::Cmd(crate::instruction_kinds::maybe_json(&mut req, &mut json)?),
        "ENTRYPOINT" => {
            InstructionKind::Entrypoint(crate::instruction_kinds::maybe_json(&mut req, &mut json)?)
        }
        "SHELL" => crate::instruction_kinds::shell(&mut req, &mut json)?,
        "LABEL" => InstructionKind::Label(crate::instruction_kinds::name_vals(&mut req)?),
        "ENV" => InstructionKind::Env(crate::instruction_kinds::name_vals(&mut req)?),
        "MAINTAINER" | "USER" | "WORKDIR" | "STOPSIGNAL" => {
            req.flags.finish()?;
            if args.is_empty() {
                return Err(req.missing(format!("{upper} requires exactly one argument")));
            }
            match upper.as_str() {
                "MAINTAINER" => InstructionKind::Maintainer(args.clone()),
                "USER" => InstructionKind::User(args.clone()),
                "WORKDIR" => InstructionKind::Workdir(args.clone()),
                _ => InstructionKind::StopSignal(args.clone()),
            }
        }
        "EXPOSE" => {
            req.flags.finish()?;
            let ports = words::split_ws(&args);
            if ports.is_empty() {
                return Err(req.missing("EXPOSE requires at least one argument"));
            }
            InstructionKind::Expose(ports)
        }
        "VOLUME" => {
            req.flags.finish()?;
            let (list, j) = words::maybe_json_list(&args).map_err(|e| req.err_args(e))?;
            json = j;
            if list.is_empty() {
                return Err(req.missing("VOLUME requires at least one argument"));
            }
            InstructionKind::Volume(list)
        }
        "ADD" | "COPY" => crate::instruction_kinds::copy(&mut req, upper == "ADD", &mut json)?,
        "ARG" => crate::instruction_kinds::arg(&mut req)?,
        "HEALTHCHECK" => crate::instruction_kinds::healthcheck(&mut req, &mut json)?,
        "ONBUILD" => {
            req.flags.finish()?;
            if in_onbuild {
                return Err(ctx.err(
                    ks,
                    ke,
                    "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                ));
            }
            if args.is_empty() {
                return Err(req.missing("ONBUILD requires at least one argument"));
            }
            let (tks, tke, _) = split_keyword(ctx.text, args_off);
            let trigger = ctx.text[tks..tke].to_ascii_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err(ctx.err(
                        tks,
                        tke,
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ))
                }
                "MAINTAINER" | "FROM" => {
                    return Err(ctx.err(
                        tks,
                        tke,
                        format!("{trigger} isn't allowed as an ONBUILD trigger"),
                    ))
                }
                _ => {}
            }
            let inner = parse_at(ctx, args_off, heredocs.clone(), true)?;
            let mut expression = ctx.text[args_off..].to_string();
            for h in &heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            InstructionKind::Onbuild(expression, Box::new(inner))
        }
        _ => unreachable!("keyword list and match agree"),
    };
    let (line, col) = ctx.pos(ks);
    let last_len = ctx
        .lines
        .get(ctx.end_line.saturating_sub(1))
        .map_or(0, |l| l.chars().count());
    Ok(Instruction {
        span: Span {
            line,
            col,
            end_line: ctx.end_line,
            end_col: last_len + 1,
        },
        keyword,
        flags,
        args,
        json,
        heredocs,
        original: ctx.text[start..].trim().to_string(),
        kind,
    })
}

/// What the per-instruction parsers get.
pub(crate) struct Request<'a> {
    pub ctx: &'a LineCtx<'a>,
    pub name: String,
    pub flags: FlagSet<'a>,
    pub args: &'a str,
    pub args_off: usize,
    pub heredocs: &'a [Heredoc],
    pub kw_span: Span,
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
