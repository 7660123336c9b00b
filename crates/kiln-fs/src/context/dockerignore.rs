//! `.dockerignore` with Docker's exact rules: `dockerignore.ReadAll` line
//! handling (comments, `!` exceptions, cleaning, leading `/` dropped) and
//! `moby/patternmatcher` matching (`*`, `?`, `[…]`, `**`, escapes, a path
//! also excluded when one of its parent directories matches).

use std::fmt;

/// A `.dockerignore` line that is not a valid pattern, shown like the
/// frontend's errors: `.dockerignore:3:1: message`, the line, a marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// 1-based line number.
    pub line: usize,
    /// The line as written.
    pub text: String,
    pub message: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = self.line.to_string();
        writeln!(f, ".dockerignore:{num}:1: {}", self.message)?;
        writeln!(f, " {num} | {}", self.text.replace('\t', " "))?;
        write!(f, " {} | ^", " ".repeat(num.len()))
    }
}

impl std::error::Error for PatternError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`: any character but `/`.
    One,
    /// `*`: any run of characters without `/`.
    Star,
    /// `**/` or `**` in the middle: `(.*/)?`.
    AnySlash,
    /// `**` at the end: `.*`.
    Any,
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

/// One cleaned pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The cleaned pattern without `!`.
    pub text: String,
    pub exclusion: bool,
    /// 1-based line in the file.
    pub line: usize,
    toks: Vec<Tok>,
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    patterns: Vec<Pattern>,
}

/// Go's `filepath.Clean` for slash paths.
pub fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn compile(p: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = p.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                toks.push(if i >= chars.len() {
                    Tok::Any
                } else {
                    Tok::AnySlash
                });
            }
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::One),
            '\\' => match chars.get(i) {
                Some(&n) => {
                    toks.push(Tok::Lit(n));
                    i += 1;
                }
                None => toks.push(Tok::Lit('\\')),
            },
            '[' => {
                let mut negated = false;
                if matches!(chars.get(i), Some('^') | Some('!')) {
                    negated = true;
                    i += 1;
                }
                let mut items = Vec::new();
                let mut closed = false;
                let mut first = true;
                while i < chars.len() {
                    let mut a = chars[i];
                    if a == ']' && !first {
                        i += 1;
                        closed = true;
                        break;
                    }
                    first = false;
                    i += 1;
                    if a == '\\' {
                        a = *chars.get(i).ok_or("syntax error in pattern")?;
                        i += 1;
                    }
                    let mut b = a;
                    if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
                        b = chars[i + 1];
                        i += 2;
                        if b == '\\' {
                            b = *chars.get(i).ok_or("syntax error in pattern")?;
                            i += 1;
                        }
                        if b < a {
                            return Err("syntax error in pattern".into());
                        }
                    }
                    items.push((a, b));
                }
                if !closed {
                    return Err("syntax error in pattern".into());
                }
                toks.push(Tok::Class { negated, items });
            }
            c => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

fn matches_toks(toks: &[Tok], s: &[char]) -> bool {
    let mut failed = vec![false; (toks.len() + 1) * (s.len() + 1)];
    fn go(toks: &[Tok], s: &[char], ti: usize, si: usize, failed: &mut [bool]) -> bool {
        let key = ti * (s.len() + 1) + si;
        if failed[key] {
            return false;
        }
        let ok = match toks.get(ti) {
            None => si == s.len(),
            Some(Tok::Lit(c)) => s.get(si) == Some(c) && go(toks, s, ti + 1, si + 1, failed),
            Some(Tok::One) => {
                s.get(si).is_some_and(|c| *c != '/') && go(toks, s, ti + 1, si + 1, failed)
            }
            Some(Tok::Class { negated, items }) => {
                s.get(si).is_some_and(|c| {
                    let inside = items.iter().any(|(a, b)| a <= c && c <= b);
                    inside != *negated
                }) && go(toks, s, ti + 1, si + 1, failed)
            }
            Some(Tok::Star) => {
                let mut j = si;
                loop {
                    if go(toks, s, ti + 1, j, failed) {
                        break true;
                    }
                    if j >= s.len() || s[j] == '/' {
                        break false;
                    }
                    j += 1;
                }
            }
            Some(Tok::Any) => (si..=s.len()).any(|j| go(toks, s, ti + 1, j, failed)),
            Some(Tok::AnySlash) => {
                go(toks, s, ti + 1, si, failed)
                    || (si..s.len()).any(|j| s[j] == '/' && go(toks, s, ti + 1, j + 1, failed))
            }
        };
        if !ok {
            failed[key] = true;
        }
        ok
    }
    go(toks, s, 0, 0, &mut failed)
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        matches_toks(&self.toks, &chars)
    }

    /// The part before the first wildcard.
    fn literal_prefix(&self) -> String {
        let mut out = String::new();
        for t in &self.toks {
            match t {
                Tok::Lit(c) => out.push(*c),
                _ => break,
            }
        }
        out
    }
}

impl Matcher {
    /// Parses `.dockerignore` contents.
    pub fn parse(contents: &str) -> Result<Matcher, PatternError> {
        let contents = contents.strip_prefix('\u{feff}').unwrap_or(contents);
        let mut patterns = Vec::new();
        for (n, line) in contents.lines().enumerate() {
            let lineno = n + 1;
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let invert = p.starts_with('!');
            if invert {
                p = p[1..].trim();
            }
            let mut cleaned = String::new();
            if !p.is_empty() {
                cleaned = clean(p);
                if cleaned.len() > 1 && cleaned.starts_with('/') {
                    cleaned.remove(0);
                }
            }
            let err = |message: String| PatternError {
                line: lineno,
                text: line.to_string(),
                message,
            };
            if invert && cleaned.is_empty() {
                return Err(err("illegal exclusion pattern: \"!\"".into()));
            }
            let toks = compile(&cleaned).map_err(|e| err(format!("{e}: {line:?}")))?;
            patterns.push(Pattern {
                text: cleaned,
                exclusion: invert,
                line: lineno,
                toks,
            });
        }
        Ok(Matcher { patterns })
    }

    /// Whether `rel_path` (relative to the context, `/`-separated) is
    /// ignored: the last pattern matching it or one of its parents decides
    /// (`MatchesOrParentMatches`).
    pub fn matches(&self, rel_path: &str) -> bool {
        let file = clean(rel_path.trim_start_matches('/'));
        let parent = match file.rfind('/') {
            Some(i) => file[..i].to_string(),
            None => ".".to_string(),
        };
        let parent_dirs: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut m = p.matches(&file);
            if !m && parent != "." {
                for i in 0..parent_dirs.len() {
                    if p.matches(&parent_dirs[..=i].join("/")) {
                        m = true;
                        break;
                    }
                }
            }
            if m {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether a walker may skip directory `rel_dir` entirely: it is
    /// ignored and no `!` exception could re-include anything below it.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        if !self.matches(rel_dir) {
            return false;
        }
        let dir = clean(rel_dir.trim_start_matches('/'));
        let dir_slash = format!("{dir}/");
        !self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            let prefix = p.literal_prefix();
            let whole = prefix.len() == p.text.len();
            if whole {
                // a literal exception: only one path can come back
                format!("{}/", p.text).starts_with(&dir_slash)
            } else {
                prefix.starts_with(&dir_slash) || dir_slash.starts_with(&prefix)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Matcher {
        Matcher::parse(s).unwrap()
    }

    #[test]
    fn docker_rules() {
        let x = m("# comment\n*.md\n!README.md\n/build\n**/node_modules\ndocs/**\n");
        assert!(x.matches("CHANGES.md"));
        assert!(!x.matches("README.md"));
        assert!(!x.matches("sub/CHANGES.md"), "* does not cross /");
        assert!(x.matches("build/out.o"), "parent dir match");
        assert!(x.matches("a/b/node_modules/x.js"));
        assert!(x.matches("node_modules"));
        assert!(x.matches("docs/a/b"));
        assert!(!x.matches("docs"), "docs/** needs something below docs");
        assert!(!x.matches("src/main.rs"));
    }

    #[test]
    fn exceptions_and_pruning() {
        let x = m("vendor\n!vendor/keep.txt\ntarget\n");
        assert!(x.matches("vendor/a"));
        assert!(!x.matches("vendor/keep.txt"));
        assert!(!x.can_skip_dir("vendor"));
        assert!(x.can_skip_dir("target"));
        let y = m("*\n!**/*.go\n");
        assert!(!y.can_skip_dir("pkg"));
        assert!(!y.matches("pkg/a.go"));
        assert!(y.matches("pkg/a.txt"));
    }

    #[test]
    fn errors() {
        assert!(Matcher::parse("!\n")
            .unwrap_err()
            .to_string()
            .contains("illegal exclusion"));
        assert!(Matcher::parse("a[\n").is_err());
        assert_eq!(clean("./a//b/../c/"), "a/c");
        assert!(m("a\\*b\n").matches("a*b"));
        assert!(m("f?o\n").matches("fxo"));
        assert!(m("[a-c]x\n").matches("bx"));
    }
}
