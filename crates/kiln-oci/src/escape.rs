//! Making untrusted text safe to print. Names and messages that come from
//! registries, archives, images and build contexts may hold terminal
//! control sequences (`ESC]0;…` retitles the window, `ESC[2J` clears it) or
//! bidi overrides that make a name read differently than it is. Every kiln
//! message that carries such text passes it through [`escape`] (the CLI
//! also passes each whole message through it before printing).

use std::borrow::Cow;

/// `text` with every control character (C0, DEL, C1), bidi control and
/// invisible format character replaced by a visible escape as Rust writes
/// them (`\u{1b}`, `\n`, `\u{202e}`). Printable text, backslashes included,
/// is kept as is, so escaping twice changes nothing.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Bytes (a tar header field, a file name that is not UTF-8) as text:
/// valid UTF-8 escaped as [`escape`] does, every other byte as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&escape(chunk.valid()));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// A path as text, escaped as [`escape_bytes`] does: a name that is not
/// UTF-8 shows its bytes (`\xC3`), never a lossy `\u{fffd}`.
pub fn escape_path(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    escape_bytes(path.as_os_str().as_bytes())
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202e}' // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{2069}' // word joiner, bidi isolates
            | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_become_visible() {
        assert_eq!(escape("plain/name.txt"), "plain/name.txt");
        assert_eq!(
            escape("a\u{1b}]0;pwned\u{7}b\u{1b}[2J"),
            "a\\u{1b}]0;pwned\\u{7}b\\u{1b}[2J"
        );
        assert_eq!(escape("x\ny\tz\r"), "x\\ny\\tz\\r");
        assert_eq!(escape("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m");
        // Already escaped text stays the same: safe to apply twice.
        let once = escape("a\u{1b}b").into_owned();
        assert_eq!(escape(&once), once);
        assert_eq!(escape("caf\u{e9} \\ ok"), "caf\u{e9} \\ ok");
    }

    #[test]
    fn bytes_keep_utf8_and_show_the_rest_in_hex() {
        assert_eq!(escape_bytes(b"\xC3(x\x1b"), "\\xC3(x\\u{1b}");
        assert_eq!(escape_bytes("é".as_bytes()), "é");
        use std::os::unix::ffi::OsStrExt;
        let p = std::path::Path::new(std::ffi::OsStr::from_bytes(b"/a/caf\xC3(\n"));
        assert_eq!(escape_path(p), "/a/caf\\xC3(\\n");
    }
}
