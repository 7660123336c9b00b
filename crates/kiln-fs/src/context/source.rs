//! A directory that COPY reads from, and how source paths resolve in it.
//!
//! - The build context ([`Confinement::Context`]): resolution uses
//!   `openat2(RESOLVE_BENEATH)`, so a source path that leads outside through a
//!   symlink (absolute, or with too many `..`) is refused with an error naming
//!   it. BuildKit resolves such a link as if the context were `/` and then
//!   usually fails with `"/etc/hostname" not found`; kiln says why.
//! - Another stage's or image's rootfs ([`Confinement::Chroot`]):
//!   `openat2(RESOLVE_IN_ROOT)`, symlinks resolve as if chrooted there.
//!
//! Either way the top-level source is followed through symlinks (BuildKit
//! copies a symlink source's target), while symlinks *inside* a copied
//! directory are copied as symlinks by the walker.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{openat, openat2, readlinkat, statat, AtFlags, Mode, OFlags, ResolveFlags, Stat};

use super::glob;
use super::ignore::PathFilter;
use super::suggest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confinement {
    Context,
    Chroot,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {path:?} not found in {root}{hint}")]
    NotFound {
        path: String,
        root: PathBuf,
        /// "; did you mean ...?" or empty.
        hint: String,
    },
    #[error("source {path:?} is a symlink pointing outside the build context{target}")]
    SymlinkEscape { path: String, target: String },
    #[error("source {path:?}: {source}")]
    Pattern {
        path: String,
        source: glob::BadPattern,
    },
    #[error("--exclude: {0}")]
    Exclude(String),
    /// `path` may hold a name that is not UTF-8, escaped (`\xC3`).
    #[error(
        "read \"{}\" in {}: {source}",
        kiln_oci::escape(path),
        kiln_oci::escape_path(root)
    )]
    Io {
        path: String,
        root: PathBuf,
        source: io::Error,
    },
}

/// A source path after wildcard expansion and symlink resolution.
pub struct Matched {
    /// Clean path relative to the source root, as named (before following a
    /// final symlink): its base name names the copy at the destination.
    pub path: String,
    /// `O_PATH` handle of what the path resolves to.
    pub fd: OwnedFd,
    pub stat: Stat,
}

impl Matched {
    /// The name a file source gets inside a destination directory.
    pub fn base_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or("")
    }
}

/// A directory COPY reads from.
pub struct SourceRoot {
    fd: OwnedFd,
    path: PathBuf,
    confinement: Confinement,
    ignore: Option<PathFilter>,
}

const PATH_DIR: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

impl SourceRoot {
    /// A rootfs (another stage, an image, a scratch dir): chroot-style lookups.
    pub fn rootfs(path: &Path) -> io::Result<SourceRoot> {
        SourceRoot::open(path, Confinement::Chroot, None)
    }

    /// A scratch directory kiln made (heredocs, downloads): contained like
    /// the context, and copied as 0:0 unless `--chown` says otherwise.
    pub fn scratch(path: &Path) -> io::Result<SourceRoot> {
        SourceRoot::open(path, Confinement::Context, None)
    }

    pub(crate) fn open(
        path: &Path,
        confinement: Confinement,
        ignore: Option<PathFilter>,
    ) -> io::Result<SourceRoot> {
        let fd = openat(rustix::fs::CWD, path, PATH_DIR, Mode::empty())?;
        Ok(SourceRoot {
            fd,
            path: path.to_path_buf(),
            confinement,
            ignore,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn confinement(&self) -> Confinement {
        self.confinement
    }

    pub(crate) fn ignore(&self) -> Option<&PathFilter> {
        self.ignore.as_ref()
    }

    /// Whether `.dockerignore` hides `rel` (context-relative).
    pub fn is_ignored(&self, rel: &str) -> bool {
        self.ignore
            .as_ref()
            .is_some_and(|f| f.excludes(rel.as_bytes()))
    }

    fn io_err(&self, path: &str, source: io::Error) -> SourceError {
        SourceError::Io {
            path: path.to_string(),
            root: self.path.clone(),
            source,
        }
    }

    /// Expands one COPY source (wildcards per path component, Go
    /// `filepath.Match`) and resolves each match. A missing literal path is
    /// an error that suggests close names; a pattern matching nothing gives
    /// no matches (BuildKit's AllowEmptyWildcard).
    pub fn expand(&self, source: &str) -> Result<Vec<Matched>, SourceError> {
        let clean = clean_rel(source);
        if !glob::has_wildcard(&clean) {
            return Ok(vec![self.resolve(&clean)?]);
        }
        let comps: Vec<&str> = clean.split('/').collect();
        // Paths found so far (relative, clean), extended one component at a time.
        let mut found: Vec<String> = vec![String::new()];
        for comp in &comps {
            let mut next = Vec::new();
            for base in &found {
                if !glob::has_wildcard(comp) {
                    next.push(join(base, comp));
                    continue;
                }
                glob::matches(comp, "").map_err(|source| SourceError::Pattern {
                    path: source.0.clone(),
                    source,
                })?;
                self.refuse_bytes_match(base, comp)?;
                for name in self.list_dir(base)? {
                    let rel = join(base, &name);
                    if glob::matches(comp, &name).unwrap_or(false) && !self.is_ignored(&rel) {
                        next.push(rel);
                    }
                }
            }
            found = next;
        }
        let mut out = Vec::new();
        for rel in found {
            match self.resolve(&rel) {
                Ok(m) => out.push(m),
                // A literal tail under a wildcard dir that lacks it: not a match.
                Err(SourceError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if out.is_empty() {
            // BuildKit copies every source with AllowEmptyWildcard: a pattern
            // that matches nothing is skipped. fsutil still walks the literal
            // directory before the first wildcard, so that must exist.
            let literal: Vec<&str> = comps
                .iter()
                .copied()
                .take_while(|c| !glob::has_wildcard(c))
                .collect();
            if !literal.is_empty() {
                self.resolve(&literal.join("/"))?;
            }
        }
        Ok(out)
    }

    /// Resolves a clean relative path, following symlinks (the final one too).
    pub fn resolve(&self, rel: &str) -> Result<Matched, SourceError> {
        if self.is_ignored(rel) {
            return Err(self.not_found(rel));
        }
        let fd = match self.open_at(rel, OFlags::PATH | OFlags::CLOEXEC) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc_exdev()) => {
                return Err(SourceError::SymlinkEscape {
                    path: rel.to_string(),
                    target: self.escaping_link(rel),
                })
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
            {
                return Err(self.not_found(rel))
            }
            Err(e) => return Err(self.io_err(rel, e)),
        };
        let stat = statat(&fd, "", AtFlags::EMPTY_PATH).map_err(|e| self.io_err(rel, e.into()))?;
        Ok(Matched {
            path: rel.to_string(),
            fd,
            stat,
        })
    }

    /// Opens `rel` under the confinement rules (empty = the root itself).
    pub(crate) fn open_at(&self, rel: &str, flags: OFlags) -> io::Result<OwnedFd> {
        let rel = if rel.is_empty() { "." } else { rel };
        let how = match self.confinement {
            Confinement::Context => ResolveFlags::BENEATH,
            Confinement::Chroot => ResolveFlags::IN_ROOT,
        } | ResolveFlags::NO_MAGICLINKS;
        Ok(openat2(&self.fd, rel, flags, Mode::empty(), how)?)
    }

    /// Names in directory `rel`, sorted; a missing or non-directory is empty.
    fn list_dir(&self, rel: &str) -> Result<Vec<String>, SourceError> {
        let fd = match self.open_at(rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc_exdev()) => {
                return Err(SourceError::SymlinkEscape {
                    path: rel.to_string(),
                    target: self.escaping_link(rel),
                })
            }
            Err(_) => return Ok(Vec::new()),
        };
        let mut names = read_names(fd.as_fd()).map_err(|e| self.io_err(rel, e))?;
        names.sort();
        Ok(names
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .collect())
    }

    /// A wildcard matching a name that is not UTF-8 is refused: the copy
    /// would name its destination after it, and destinations are text
    /// (names inside a copied directory are copied byte-exact).
    fn refuse_bytes_match(&self, base: &str, comp: &str) -> Result<(), SourceError> {
        use std::os::unix::ffi::OsStrExt;
        let Ok(fd) = self.open_at(base, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC)
        else {
            return Ok(()); // list_dir reports what is wrong with `base`
        };
        let names = read_names(fd.as_fd()).map_err(|e| self.io_err(base, e))?;
        for name in names.iter().filter(|n| n.to_str().is_none()) {
            let lossy = name.to_string_lossy();
            let rel = join(base, &lossy);
            if glob::matches(comp, &lossy).unwrap_or(false) && !self.is_ignored(&rel) {
                let shown = kiln_oci::escape_bytes(&join_bytes(base.as_bytes(), name.as_bytes()));
                return Err(self.io_err(
                    &shown,
                    io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "the wildcard {comp:?} matches this name, which is not UTF-8; \
                             copy the directory holding it instead (names inside a copied \
                             directory are copied byte-exact)"
                        ),
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Finds the first component of `rel` that is a symlink leading out, for
    /// the error message (" (x -> /etc/hostname)").
    fn escaping_link(&self, rel: &str) -> String {
        let mut prefix = String::new();
        for comp in rel.split('/') {
            prefix = join(&prefix, comp);
            if let Ok(parent) = self.open_at(parent_of(&prefix), PATH_DIR) {
                if let Ok(t) = readlinkat(&parent, comp, Vec::new()) {
                    let t = t.to_string_lossy().into_owned();
                    let escapes = t.starts_with('/') || {
                        let depth = prefix.matches('/').count() as i64;
                        let ups = t.split('/').filter(|c| *c == "..").count() as i64;
                        ups > depth
                    };
                    if escapes {
                        return format!(" ({prefix} -> {t})");
                    }
                }
            }
        }
        String::new()
    }

    fn not_found(&self, rel: &str) -> SourceError {
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", rel),
        };
        let names: Vec<String> = self
            .list_dir(parent)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| !self.is_ignored(&join(parent, n)))
            .collect();
        let close = suggest::close_names(name, &names);
        let hint = if close.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = close
                .iter()
                .map(|n| format!("{:?}", join(parent, n)))
                .collect();
            format!("; did you mean {}?", list.join(" or "))
        };
        SourceError::NotFound {
            path: rel.to_string(),
            root: self.path.clone(),
            hint,
        }
    }
}

fn libc_exdev() -> i32 {
    rustix::io::Errno::XDEV.raw_os_error()
}

/// All names in an open directory except `.` and `..`.
pub(crate) fn read_names(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut d = rustix::fs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(std::ffi::OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(out)
}

/// Cleans a COPY source the way Go's `filepath.Clean("/" + p)` does, without
/// the leading slash: `./a//b/../c/` → `a/c`, `..` never climbs above the root,
/// `.` and `/` become the empty string (the root).
pub fn clean_rel(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for comp in p.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

pub(crate) fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// [`join`] for file names, which are bytes.
pub(crate) fn join_bytes(base: &[u8], name: &[u8]) -> Vec<u8> {
    if base.is_empty() {
        return name.to_vec();
    }
    let mut out = Vec::with_capacity(base.len() + 1 + name.len());
    out.extend_from_slice(base);
    out.push(b'/');
    out.extend_from_slice(name);
    out
}

fn parent_of(rel: &str) -> &str {
    rel.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::clean_rel;

    #[test]
    fn cleaning() {
        assert_eq!(clean_rel("./a//b/../c/"), "a/c");
        assert_eq!(clean_rel("/"), "");
        assert_eq!(clean_rel("."), "");
        assert_eq!(clean_rel("../../x"), "x");
        assert_eq!(clean_rel("/usr/bin/"), "usr/bin");
    }
}
