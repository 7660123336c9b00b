//! Entry names from a layer tar, normalised the way Docker does (leading `/`
//! and `./` dropped, `.` components removed) and refused when they try to
//! leave the root (`..`) or cannot name a file.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A normalised path relative to the extraction root: no empty, `.` or `..`
/// components, never absolute. Empty means the root itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(PathBuf);

#[derive(Debug, thiserror::Error)]
pub enum NameError {
    #[error("path {0:?} has a `..` component")]
    DotDot(PathBuf),
    #[error("path {0:?} contains a NUL byte")]
    Nul(PathBuf),
}

impl RelPath {
    pub fn parse(raw: &[u8]) -> Result<RelPath, NameError> {
        let shown = || PathBuf::from(OsStr::from_bytes(raw));
        if raw.contains(&0) {
            return Err(NameError::Nul(shown()));
        }
        let mut out = PathBuf::new();
        for comp in raw.split(|b| *b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => return Err(NameError::DotDot(shown())),
                c => out.push(OsStr::from_bytes(c)),
            }
        }
        Ok(RelPath(out))
    }

    pub fn as_path(&self) -> &Path {
        &self.0
    }

    /// The parent and the last component; `None` for the root.
    pub fn split_last(&self) -> Option<(RelPath, &OsStr)> {
        let name = self.0.file_name()?;
        let parent = self.0.parent().unwrap_or(Path::new(""));
        Some((RelPath(parent.to_path_buf()), name))
    }

    pub fn join(&self, name: &OsStr) -> RelPath {
        RelPath(self.0.join(name))
    }

    /// Every proper ancestor, nearest first, ending before the root.
    pub fn ancestors(&self) -> impl Iterator<Item = &Path> {
        self.0
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
    }
}

/// What an entry's last component says about whiteouts.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout {
    /// Not a whiteout.
    None,
    /// `.wh..wh..opq`: hide everything below the parent from lower layers.
    Opaque,
    /// `.wh.NAME`: delete NAME.
    File(OsString),
    /// Other AUFS metadata (`.wh..wh.plnk` …): skipped, as Docker does.
    AufsMeta,
}

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
#[error("whiteout {0:?} names no file that can be deleted")]
pub struct BadWhiteout(pub OsString);

pub fn classify(name: &OsStr) -> Result<Whiteout, BadWhiteout> {
    let b = name.as_bytes();
    if b == OPAQUE_WHITEOUT.as_bytes() {
        return Ok(Whiteout::Opaque);
    }
    if b.starts_with(b".wh..wh.") {
        return Ok(Whiteout::AufsMeta);
    }
    match b.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        None => Ok(Whiteout::None),
        Some(b"" | b"." | b"..") => Err(BadWhiteout(name.to_os_string())),
        Some(rest) => Ok(Whiteout::File(OsStr::from_bytes(rest).to_os_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let p = |s: &str| RelPath::parse(s.as_bytes()).map(|r| r.0);
        assert_eq!(p("/etc/passwd").unwrap(), PathBuf::from("etc/passwd"));
        assert_eq!(p("./usr//bin/./ls").unwrap(), PathBuf::from("usr/bin/ls"));
        assert_eq!(p("./").unwrap(), PathBuf::new());
        assert!(p("../x").is_err());
        assert!(p("a/../../x").is_err());
        assert!(p("a/..").is_err());
        assert!(RelPath::parse(b"a\0b").is_err());
    }

    #[test]
    fn classifies_whiteouts() {
        let c = |s: &str| classify(OsStr::new(s));
        assert_eq!(c("file").unwrap(), Whiteout::None);
        assert_eq!(c(".wh..wh..opq").unwrap(), Whiteout::Opaque);
        assert_eq!(c(".wh..wh.plnk").unwrap(), Whiteout::AufsMeta);
        assert_eq!(c(".wh.a").unwrap(), Whiteout::File("a".into()));
        assert!(c(".wh...").is_err());
        assert!(c(".wh..").is_err());
        assert!(c(".wh.").is_err());
    }
}
