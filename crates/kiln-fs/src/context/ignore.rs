//! Path filters: `.dockerignore` rules (paths relative to the context root)
//! and `COPY --exclude` patterns (paths relative to the copied source). Both
//! use Docker's pattern rules (`dockerignore`).

use super::dockerignore::Matcher;

pub struct PathFilter {
    matcher: Matcher,
}

impl PathFilter {
    /// Rules in `.dockerignore` syntax (one pattern a line, `#` comments,
    /// `!` exceptions). The error names the line.
    pub fn parse(contents: &str) -> Result<PathFilter, String> {
        let matcher = Matcher::parse(contents).map_err(|e| e.to_string())?;
        Ok(PathFilter { matcher })
    }

    /// `COPY --exclude` patterns; `None` when there are none.
    pub fn from_patterns(patterns: &[String]) -> Result<Option<PathFilter>, String> {
        if patterns.is_empty() {
            return Ok(None);
        }
        PathFilter::parse(&patterns.join("\n")).map(Some)
    }

    /// Whether `rel` (slash-separated, no leading `/`) is excluded. File
    /// names are bytes; patterns are text, so a name that is not UTF-8 is
    /// matched as its lossy text (each bad sequence one `\u{fffd}` that `?`
    /// and `*` match) — the name itself is never changed or dropped.
    pub fn excludes(&self, rel: &[u8]) -> bool {
        !rel.is_empty() && self.matcher.matches(&String::from_utf8_lossy(rel))
    }

    /// Whether directory `rel` and everything below it are excluded (no `!`
    /// exception can bring anything back), so a walk may skip it.
    pub fn skips_dir(&self, rel: &[u8]) -> bool {
        !rel.is_empty() && self.matcher.can_skip_dir(&String::from_utf8_lossy(rel))
    }
}
