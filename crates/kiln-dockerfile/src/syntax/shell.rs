//! Shell-word expansion, a faithful port of BuildKit's `frontend/dockerfile/shell`
//! lexer: `$v`, `${v}`, `${v:-w}` and friends, pattern trimming and
//! replacement, quotes, escapes and word splitting exactly where BuildKit
//! splits. Only what the Dockerfile reference documents is supported; anything
//! else fails the same way BuildKit fails.

use std::collections::BTreeSet;

use crate::quote::go_quote;

/// Where variable values come from. The last definition of a key wins.
pub trait Lookup {
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Lookup for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Lookup for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl Lookup for std::collections::BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Lookup for std::collections::HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// What one expansion produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The word with quotes removed and variables substituted, spaces kept.
    pub result: String,
    /// The same split into words (after substitution), as `ProcessWords` does.
    pub words: Vec<String>,
    /// Variables referenced that had a value.
    pub matched: BTreeSet<String>,
    /// Variables referenced that had none.
    pub unmatched: BTreeSet<String>,
}

/// The lexer. `escape` is the Dockerfile's escape token (`\` or `` ` ``).
#[derive(Debug, Clone)]
pub struct Lexer {
    pub escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (heredoc bodies).
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset_env: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Lexer {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// Expands `word`; the error message is BuildKit's
    /// (`failed to process "…": …`).
    pub fn expand<L: Lookup + ?Sized>(&self, word: &str, env: &L) -> Result<Expansion, String> {
        let mut w = ShellWord {
            lex: self,
            chars: word.chars().collect(),
            pos: 0,
            env,
            raw_escapes: self.raw_escapes,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            depth: 0,
        };
        match w.process_stop_on(None, self.raw_escapes) {
            Ok((result, words)) => Ok(Expansion {
                result,
                words,
                matched: w.matched,
                unmatched: w.unmatched,
            }),
            Err(e) => Err(format!("failed to process {}: {}", go_quote(word), e)),
        }
    }

    /// `ProcessWord`: one word, quotes removed, no splitting.
    pub fn process_word<L: Lookup + ?Sized>(&self, word: &str, env: &L) -> Result<String, String> {
        self.expand(word, env).map(|e| e.result)
    }

    /// `ProcessWords`: split into words after substitution.
    pub fn process_words<L: Lookup + ?Sized>(
        &self,
        word: &str,
        env: &L,
    ) -> Result<Vec<String>, String> {
        self.expand(word, env).map(|e| e.words)
    }
}

/// Nesting bound for `${a:-${b:-${c…}}}` so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 64;

struct ShellWord<'a, L: Lookup + ?Sized> {
    lex: &'a Lexer,
    chars: Vec<char>,
    pos: usize,
    env: &'a L,
    raw_escapes: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
    depth: usize,
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn get_words(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

impl<L: Lookup + ?Sized> ShellWord<'_, L> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("syntax error: substitutions nested too deeply".into());
        }
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                return Ok((result, words.get_words()));
            }
            let special = ch == '$' || (!self.lex.skip_process_quotes && (ch == '\'' || ch == '"'));
            if special {
                let tmp = match ch {
                    '$' => self.process_dollar()?,
                    '\'' => self.process_single_quote()?,
                    _ => self.process_double_quote()?,
                };
                result.push_str(&tmp);
                if ch == '$' {
                    words.add_string(&tmp);
                } else {
                    words.add_raw_string(&tmp);
                }
            } else {
                let mut ch = self.next().unwrap_or_default();
                if ch == self.lex.escape {
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    match self.next() {
                        None => break,
                        Some(c) => ch = c,
                    }
                    words.add_raw_char(ch);
                } else {
                    words.add_char(ch);
                }
                result.push(ch);
            }
        }
        if let Some(s) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {s}"
            ));
        }
        Ok((result, words.get_words()))
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next().unwrap_or('\'');
        if self.lex.raw_quotes {
            result.push(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next().unwrap_or('"');
        if self.lex.raw_quotes {
            result.push(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // an escape at the very end is dropped
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                ch = self.next().unwrap_or_default();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match self.env.lookup(name) {
            Some(v) => {
                self.matched.insert(name.to_string());
                Some(v.to_string())
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{') | Some('}') | Some(':') => {
                return Err("syntax error: bad substitution".into())
            }
            _ => {}
        }
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err("syntax error: missing '}'".into());
        };
        let chs = ch.to_string();
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => self.process_modifier(&name, ch, chs),
            '/' => self.process_replace(&name),
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    /// `${name:-word}` and the other operators taking a word: `-`, `+`, `?`
    /// (each with an optional `:`), `#`/`##` and `%`/`%%`.
    fn process_modifier(
        &mut self,
        name: &str,
        mut ch: char,
        mut chs: String,
    ) -> Result<String, String> {
        let mut null_is_unset = false;
        if ch == ':' {
            null_is_unset = true;
            match self.next() {
                Some(c) => {
                    ch = c;
                    chs.push(c);
                }
                None => return Err("syntax error: missing '}'".into()),
            }
        }
        let raw = ch == '#' || ch == '%';
        let word = self.word_until('}', raw, "syntax error: missing '}'")?;
        let value = self.get_env(name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        apply_modifier(name, ch, &chs, word, value, null_is_unset)
    }

    /// The word up to `stop`; running out of input first is `missing`
    /// (BuildKit's message), any other error is passed on.
    fn word_until(&mut self, stop: char, raw: bool, missing: &str) -> Result<String, String> {
        match self.process_stop_on(Some(stop), raw) {
            Ok((w, _)) => Ok(w),
            Err(_) if self.peek().is_none() => Err(missing.into()),
            Err(e) => Err(e),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn process_replace(&mut self, name: &str) -> Result<String, String> {
        let replace_all = self.peek() == Some('/');
        if replace_all {
            self.next();
        }
        let pattern = self.word_until('/', true, "syntax error: missing '/' in ${}")?;
        let replacement = self.word_until('}', true, "syntax error: missing '}'")?;
        let value = self.get_env(name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        let tokens = compile_pattern(&pattern)
            .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
        Ok(replace(
            &tokens,
            &value.unwrap_or_default(),
            &replacement,
            replace_all,
        ))
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(c) = self.peek() {
                    if !c.is_ascii_digit() {
                        break;
                    }
                    name.push(c);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

/// One element of a shell pattern (`*`, `?` or a literal character).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Star,
    Any,
    Lit(char),
}

/// BuildKit's `convertShellPatternToRegex`, as tokens instead of a regex.
fn compile_pattern(pattern: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '\\' => {
                // `\}` and `\/` only escape the ${} syntax: the backslash is dropped
                if matches!(chars.get(i), Some('}') | Some('/')) {
                    continue;
                }
                match chars.get(i) {
                    Some(&n) if n == '*' || n == '?' || n == '\\' => {
                        out.push(Tok::Lit(n));
                        i += 1;
                    }
                    Some(&n) => return Err(format!("invalid escape '\\{n}'")),
                    None => return Err("invalid escape '\\'".into()),
                }
            }
            c => out.push(Tok::Lit(c)),
        }
    }
    Ok(out)
}

/// Anchored match at `start` following regex preference order (lazy stars
/// try short first, greedy long first); returns the end of the first match.
fn match_at(toks: &[Tok], value: &[char], start: usize, greedy: bool) -> Option<usize> {
    let mut failed = vec![false; (toks.len() + 1) * (value.len() + 1)];
    fn go(
        toks: &[Tok],
        value: &[char],
        ti: usize,
        pos: usize,
        greedy: bool,
        failed: &mut [bool],
    ) -> Option<usize> {
        let key = ti * (value.len() + 1) + pos;
        if failed[key] {
            return None;
        }
        let r = match toks.get(ti) {
            None => Some(pos),
            Some(Tok::Lit(c)) => {
                if value.get(pos) == Some(c) {
                    go(toks, value, ti + 1, pos + 1, greedy, failed)
                } else {
                    None
                }
            }
            Some(Tok::Any) => {
                if pos < value.len() {
                    go(toks, value, ti + 1, pos + 1, greedy, failed)
                } else {
                    None
                }
            }
            Some(Tok::Star) => {
                let mut found = None;
                if greedy {
                    for p in (pos..=value.len()).rev() {
                        if let Some(e) = go(toks, value, ti + 1, p, greedy, failed) {
                            found = Some(e);
                            break;
                        }
                    }
                } else {
                    for p in pos..=value.len() {
                        if let Some(e) = go(toks, value, ti + 1, p, greedy, failed) {
                            found = Some(e);
                            break;
                        }
                    }
                }
                found
            }
        };
        if r.is_none() {
            failed[key] = true;
        }
        r
    }
    go(toks, value, 0, start, greedy, &mut failed)
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let toks = compile_pattern(pattern)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    let chars: Vec<char> = value.chars().collect();
    Ok(match match_at(&toks, &chars, 0, greedy) {
        Some(end) => chars[end..].iter().collect(),
        None => value.to_string(),
    })
}

/// Reverses a pattern without reversing escapes (`a\*c` → `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let p: Vec<char> = pattern.chars().collect();
    if p.is_empty() {
        return String::new();
    }
    let last = p.len() - 1;
    let mut out = vec!['\0'; p.len()];
    let mut i = 0;
    while i <= last {
        let out_idx = last - i;
        if p[i] == '\\' && i != last {
            out[out_idx - 1] = '\\';
            out[out_idx] = p[i + 1];
            i += 2;
        } else {
            out[out_idx] = p[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let rp = reverse_pattern(pattern);
    let rv: String = value.chars().rev().collect();
    let r = trim_prefix(&rp, &rv, greedy)?;
    Ok(r.chars().rev().collect())
}

/// `${v/p/r}` and `${v//p/r}` with Go regexp replacement semantics (greedy,
/// leftmost; an empty match right after a previous match is skipped).
fn replace(toks: &[Tok], value: &str, replacement: &str, all: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut pos = 0; // next char not yet copied
    let mut search = 0;
    let mut last_match_end: Option<usize> = None;
    while search <= chars.len() {
        let mut found = None;
        for s in search..=chars.len() {
            if let Some(e) = match_at(toks, &chars, s, true) {
                found = Some((s, e));
                break;
            }
        }
        let Some((s, e)) = found else { break };
        let accept = !(s == e && last_match_end == Some(s));
        if accept {
            out.extend(&chars[pos..s]);
            out.push_str(replacement);
            pos = e;
            last_match_end = Some(e);
            if !all {
                break;
            }
        }
        search = if e > s { e } else { s + 1 };
    }
    out.extend(&chars[pos.min(chars.len())..]);
    out
}

/// The value of `${name<op>word}` once `word` is read.
fn apply_modifier(
    name: &str,
    ch: char,
    chs: &str,
    word: String,
    value: Option<String>,
    null_is_unset: bool,
) -> Result<String, String> {
    let empty = value
        .as_deref()
        .is_none_or(|v| null_is_unset && v.is_empty());
    match ch {
        '-' => Ok(if empty {
            word
        } else {
            value.unwrap_or_default()
        }),
        '+' => Ok(if empty { String::new() } else { word }),
        '?' => match value {
            None => Err(format!(
                "{name}: {}",
                if word.is_empty() {
                    "is not allowed to be unset"
                } else {
                    &word
                }
            )),
            Some(v) if null_is_unset && v.is_empty() => Err(format!(
                "{name}: {}",
                if word.is_empty() {
                    "is not allowed to be empty"
                } else {
                    &word
                }
            )),
            Some(v) => Ok(v),
        },
        '%' | '#' => {
            let mut pattern = word.as_str();
            let mut greedy = false;
            if pattern.starts_with(ch) {
                greedy = true;
                pattern = &pattern[ch.len_utf8()..];
            }
            let value = value.unwrap_or_default();
            if ch == '%' {
                trim_suffix(pattern, &value, greedy)
            } else {
                trim_prefix(pattern, &value, greedy)
            }
        }
        _ => Err(format!("unsupported modifier ({chs}) in substitution")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![
            ("a".into(), "hello/world.tar.gz".into()),
            ("e".into(), "".into()),
        ]
    }

    #[test]
    fn pattern_ops() {
        let l = Lexer::new('\\');
        let e = env();
        assert_eq!(l.process_word("${a#*/}", &e).unwrap(), "world.tar.gz");
        assert_eq!(l.process_word("${a%.*}", &e).unwrap(), "hello/world.tar");
        assert_eq!(l.process_word("${a%%.*}", &e).unwrap(), "hello/world");
        assert_eq!(l.process_word("${a##*.}", &e).unwrap(), "gz");
        assert_eq!(
            l.process_word("${a/o/0}", &e).unwrap(),
            "hell0/world.tar.gz"
        );
        assert_eq!(
            l.process_word("${a//o/0}", &e).unwrap(),
            "hell0/w0rld.tar.gz"
        );
        assert_eq!(l.process_word("${e:-x}${e-y}", &e).unwrap(), "x");
    }

    #[test]
    fn empty_pattern_replace_all() {
        let toks = compile_pattern("").unwrap();
        assert_eq!(replace(&toks, "abc", "-", true), "-a-b-c-");
        let toks = compile_pattern("b*").unwrap();
        assert_eq!(replace(&toks, "abc", "-", true), "a-");
    }
}
