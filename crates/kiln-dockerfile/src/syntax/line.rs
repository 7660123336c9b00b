//! A logical line (continuations joined) with the map from each of its bytes
//! back to the physical line and column it came from.

use crate::error::{Error, Span};

/// One piece of a logical line: where it starts in the joined text and where
/// that text came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub offset: usize,
    pub line: usize,
    /// 0-based character column of the segment's first character.
    pub col: usize,
}

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
pub(crate) fn split_keyword(text: &str, start: usize) -> (usize, usize, usize) {
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
