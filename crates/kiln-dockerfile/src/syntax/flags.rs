//! Instruction flags (`--from=…`): extracted like BuildKit's
//! `extractBuilderFlags`, validated like its `BFlags`, with a suggestion for
//! misspelled names.

use std::collections::BTreeMap;

use serde::Serialize;

use super::line::LineCtx;
use crate::error::{Error, Span};
use crate::suggest::did_you_mean;

/// A `--name[=value]` flag, quotes removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub name: String,
    pub value: Option<String>,
    pub span: Span,
}

/// The leading flags of the arguments starting at `start`, and where the
/// rest of the arguments start.
pub(crate) fn flags_at(ctx: &LineCtx, start: usize) -> (Vec<Flag>, usize) {
    let (raw, rest) = extract_flags(ctx.text, start);
    let flags = raw
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
    (flags, rest)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Strs,
    Bool,
}

pub(crate) struct FlagSet<'a> {
    ctx: &'a LineCtx<'a>,
    instr: String,
    flags: &'a [Flag],
}

/// Parsed flag values by name.
#[derive(Debug, Default)]
pub(crate) struct Values {
    map: BTreeMap<String, Vec<String>>,
    bools: BTreeMap<String, bool>,
}

impl Values {
    pub fn str(&self, name: &str) -> Option<String> {
        self.map.get(name).and_then(|v| v.last().cloned())
    }
    pub fn strs(&self, name: &str) -> Vec<String> {
        self.map.get(name).cloned().unwrap_or_default()
    }
    pub fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }
    pub fn bool_opt(&self, name: &str) -> Option<bool> {
        self.bools.get(name).copied()
    }
}

impl<'a> FlagSet<'a> {
    pub fn new(ctx: &'a LineCtx<'a>, instr: &str, flags: &'a [Flag]) -> FlagSet<'a> {
        FlagSet {
            ctx,
            instr: instr.to_string(),
            flags,
        }
    }

    fn err(&self, f: &Flag, msg: String) -> Error {
        Error::at(self.ctx.file, self.ctx.lines, f.span, msg)
    }

    pub fn all(&self) -> &'a [Flag] {
        self.flags
    }

    /// No flags allowed.
    pub fn finish(&self) -> Result<(), Error> {
        self.parse(&[]).map(|_| ())
    }

    pub fn parse(&self, defs: &[(&str, Kind)]) -> Result<Values, Error> {
        let mut out = Values::default();
        for f in self.flags {
            let Some((_, kind)) = defs.iter().find(|(n, _)| *n == f.name) else {
                let mut msg = if f.name.is_empty() {
                    "empty flag name \"--\"".to_string()
                } else {
                    format!("unknown flag --{} for {}", f.name, self.instr)
                };
                if let Some(s) = did_you_mean(&f.name, defs.iter().map(|(n, _)| *n)) {
                    msg.push_str(&format!(" (did you mean --{s}?)"));
                } else if defs.is_empty() {
                    msg.push_str(&format!(" ({} takes no flags)", self.instr));
                } else {
                    let names: Vec<String> = defs.iter().map(|(n, _)| format!("--{n}")).collect();
                    msg.push_str(&format!(" (valid flags: {})", names.join(", ")));
                }
                return Err(self.err(f, msg));
            };
            let seen = out.map.contains_key(&f.name) || out.bools.contains_key(&f.name);
            if seen && *kind != Kind::Strs {
                return Err(self.err(f, format!("duplicate flag specified: --{}", f.name)));
            }
            match kind {
                Kind::Bool => {
                    let v = match f.value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                        None => true,
                        Some("true") => true,
                        Some("false") => false,
                        Some("") => {
                            return Err(
                                self.err(f, format!("missing a value on flag: --{}", f.name))
                            )
                        }
                        Some(_) => {
                            return Err(self.err(
                                f,
                                format!(
                                    "expecting boolean value for flag --{}, not: {}",
                                    f.name,
                                    f.value.as_deref().unwrap_or_default()
                                ),
                            ))
                        }
                    };
                    out.bools.insert(f.name.clone(), v);
                }
                Kind::Str | Kind::Strs => {
                    let Some(v) = &f.value else {
                        return Err(self.err(
                            f,
                            format!(
                                "missing a value on flag: --{} (write --{}=VALUE)",
                                f.name, f.name
                            ),
                        ));
                    };
                    out.map.entry(f.name.clone()).or_default().push(v.clone());
                }
            }
        }
        Ok(out)
    }
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
