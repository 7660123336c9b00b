//! Here-documents: which ones a line opens (`<<EOF`, `<<-'EOT'`, `3<<EOF`)
//! and the tab chomping of `<<-`, as BuildKit's `ParseHeredoc` does.

use serde::Serialize;

use super::flags::extract_flags;
use super::line::{split_keyword, LineCtx};
use super::shell::Lexer;
use super::words;
use crate::error::Error;

/// A here-document body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (`EOF`).
    pub name: String,
    /// The body, each line with its newline; leading tabs removed for `<<-`
    /// where BuildKit removes them (COPY/ADD sources, simple RUN bodies).
    pub content: String,
    /// False when the delimiter was quoted: no variable expansion.
    pub expand: bool,
    /// `<<-`: leading tabs stripped.
    pub chomp: bool,
    /// File descriptor prefix (`3<<EOF`), 0 when none.
    pub fd: u32,
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
