//! COPY and ADD into a mounted rootfs, with Docker's rules (docs/copy.md).
//!
//! ```no_run
//! # use kiln_fs::{context::BuildContext, copy::{copy_into, CopyOptions}};
//! # let ctx = BuildContext::open("app".as_ref(), None)?;
//! let opts = CopyOptions {
//!     sources: vec!["src/".into()],
//!     dest: "/app/".into(),
//!     workdir: "/".into(),
//!     chown: Some("app:app".into()),
//!     ..Default::default()
//! };
//! let stats = copy_into(ctx.source(), "/path/to/rootfs".as_ref(), &opts)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod archive;
mod chmod;
mod dest;
mod host;
mod tree;
pub mod url;

use std::collections::HashMap;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

pub use chmod::{Chmod, ChmodError};
pub use host::HostPolicy;
pub use tree::Owner;

use crate::context::walk;
use crate::context::{clean_rel, Confinement, Matched, PathFilter, SourceError, SourceRoot};
use crate::users::{lookup_chown, UserError};
use dest::{DestRoot, NewDir};
use tree::TreeWriter;

/// One COPY/ADD instruction, fully expanded by the frontend.
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// Source paths or wildcard patterns, relative to the source root.
    pub sources: Vec<String>,
    /// Destination; relative to `workdir` unless absolute.
    pub dest: String,
    /// The stage's WORKDIR (absolute); empty means `/`.
    pub workdir: String,
    /// `--chown=user[:group]`, resolved in the target rootfs.
    pub chown: Option<String>,
    /// `--chmod=` octal or symbolic.
    pub chmod: Option<String>,
    /// `--exclude=` patterns (relative to each matched source).
    pub exclude: Vec<String>,
    /// `--parents`: keep each match's path (from the root or a `/./` pivot).
    pub parents: bool,
    /// ADD: extract local tar archives (plain/gzip/bzip2/xz/zstd) into dest.
    pub unpack: bool,
    /// Where ADD extracts archives before merging them (default: system temp).
    pub tmp_dir: Option<PathBuf>,
    /// The destination is the host, not a rootfs: devices, setuid/setgid
    /// bits and owners are kept only as far as this allows.
    pub host: Option<HostPolicy>,
    /// The overlay upper dir of the rootfs (`ActiveSnapshot::upper`). A
    /// lone directory source whose destination does not exist yet is
    /// written there directly, skipping overlayfs's create and lookups.
    /// Only for a copy that nothing else writes into during the step.
    pub upper: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub specials: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Archives ADD extracted.
    pub archives: u64,
    /// What a copy onto the host did not keep, one note per entry.
    pub skipped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("COPY --chown: {0}")]
    Chown(#[from] UserError),
    #[error(transparent)]
    Chmod(#[from] ChmodError),
    #[error("COPY to {dest} in {rootfs}: {source}")]
    Dest {
        dest: String,
        rootfs: PathBuf,
        source: io::Error,
    },
    #[error("ADD: extract archive {path:?}: {source}")]
    Archive { path: String, source: io::Error },
}

/// Copies `opts.sources` from `src` into `rootfs` at `opts.dest`.
///
/// Ownership: `--chown` if given; else 0:0 for the build context (and
/// scratch sources such as heredocs), the source's own uid/gid for another
/// rootfs (`COPY --from`), as BuildKit does.
pub fn copy_into(
    src: &SourceRoot,
    rootfs: &Path,
    opts: &CopyOptions,
) -> Result<CopyStats, CopyError> {
    let chmod = opts.chmod.as_deref().map(Chmod::parse).transpose()?;
    let fixed = match &opts.chown {
        Some(spec) => Some(lookup_chown(rootfs, spec)?),
        None => None,
    };
    let owner = match (fixed, src.confinement()) {
        (Some((u, g)), _) => Owner::Fixed(u, g),
        (None, Confinement::Context) => Owner::Fixed(0, 0),
        (None, Confinement::Chroot) => Owner::Preserve,
    };
    let (nu, ng) = fixed.unwrap_or((0, 0));
    // Current BuildKit applies --chmod to the directories it creates.
    let new_dir = NewDir {
        uid: nu,
        gid: ng,
        mode: chmod.as_ref().map_or(0o755, |c| c.apply(0o755, true)),
    };

    let dest_err = |dest: &str, source: io::Error| CopyError::Dest {
        dest: format!("/{dest}"),
        rootfs: rootfs.to_path_buf(),
        source,
    };
    let root = DestRoot::open(rootfs).map_err(|e| dest_err("", e))?;
    let workdir = if opts.workdir.is_empty() {
        "/"
    } else {
        &opts.workdir
    };
    let joined = if opts.dest.starts_with('/') {
        opts.dest.clone()
    } else {
        format!("{workdir}/{}", opts.dest)
    };
    let dest_rel = clean_rel(&joined);
    let d = opts.dest.as_str();
    let dest_says_dir = d.ends_with('/')
        || d == "."
        || d == ".."
        || d.ends_with("/.")
        || d.ends_with("/..")
        || dest_rel.is_empty();

    // Resolve every source before writing anything.
    let mut matched: Vec<(Matched, String)> = Vec::new();
    for s in &opts.sources {
        let pivot = pivot_of(s);
        for m in src.expand(s)? {
            let kept = strip_pivot(&m.path, &pivot).to_string();
            matched.push((m, kept));
        }
    }
    // Several sources onto a dest without a trailing slash are copied one
    // after the other (BuildKit does no check): files overwrite one `dest`.
    let dest_is_dir = dest_says_dir || opts.parents;
    let exclude = PathFilter::from_patterns(&opts.exclude).map_err(SourceError::Exclude)?;

    let mut stats = CopyStats::default();
    let mut links = HashMap::new();
    for (m, kept) in &matched {
        let is_dir = FileType::from_raw_mode(m.stat.st_mode) == FileType::Directory;
        let base_rel = if opts.parents {
            join_rel(&dest_rel, kept)
        } else {
            dest_rel.clone()
        };
        if is_dir {
            let fresh = matched.len() == 1
                && !opts.parents
                && root
                    .open_dir(&base_rel)
                    .map_err(|e| dest_err(&base_rel, e))?
                    .is_none();
            let dir = root
                .mkdir_all(&base_rel, new_dir)
                .map_err(|e| dest_err(&base_rel, e))?;
            let dir = match opts.upper.as_deref().filter(|_| fresh) {
                Some(upper) => in_upper(upper, &base_rel)
                    .map_err(|e| dest_err(&base_rel, e))?
                    .unwrap_or(dir),
                None => dir,
            };
            let shown = format!("/{base_rel}");
            let mut w = writer(&dir, &shown, owner, chmod.as_ref(), &mut stats, links);
            w.contents_into = Some(dir.as_fd());
            w.host = opts.host;
            walk::walk(src, m, exclude.as_ref(), &mut w)?;
            links = std::mem::take(&mut w.links);
            continue;
        }
        if opts.unpack && FileType::from_raw_mode(m.stat.st_mode) == FileType::RegularFile {
            let into = if opts.parents {
                parent_rel(&base_rel)
            } else {
                base_rel.clone()
            };
            if archive::is_archive_fd(m.fd.as_fd()).map_err(|e| CopyError::Archive {
                path: m.path.clone(),
                source: e,
            })? {
                // Extracted entries keep the tar's owners unless --chown (Docker 20.10).
                let tar_owner = if fixed.is_some() {
                    owner
                } else {
                    Owner::Preserve
                };
                let s = archive::unpack_into(
                    m,
                    &root,
                    &into,
                    new_dir,
                    tar_owner,
                    chmod.as_ref(),
                    opts,
                )?;
                add_stats(&mut stats, &s);
                stats.archives += 1;
                continue;
            }
        }
        let target = if opts.parents {
            base_rel
        } else if dest_is_dir || root.is_dir(&base_rel).map_err(|e| dest_err(&base_rel, e))? {
            join_rel(&base_rel, m.base_name())
        } else {
            base_rel
        };
        if target.is_empty() {
            return Err(dest_err(
                "",
                io::Error::other("cannot replace the root directory with a file"),
            ));
        }
        let slot = root
            .slot(&target, new_dir)
            .map_err(|e| dest_err(&target, e))?;
        let mut w = writer(
            &slot.dir,
            &slot.shown,
            owner,
            chmod.as_ref(),
            &mut stats,
            links,
        );
        w.top_name = &slot.name;
        w.host = opts.host;
        walk::walk(src, m, exclude.as_ref(), &mut w)?;
        links = std::mem::take(&mut w.links);
    }
    if opts.host.is_some() {
        // Notes name the destination path; on the host, say where it is.
        let root = rootfs.display().to_string();
        let root = root.trim_end_matches('/').escape_debug().to_string();
        for note in &mut stats.skipped {
            note.insert_str(0, &root);
        }
    }
    Ok(stats)
}

/// The directory `rel` that overlayfs just created, as it is in the upper
/// dir; `None` if it is not there as a plain directory (e.g. it was made at
/// a symlink's target in a lower layer), and the copy goes through the
/// merged view instead.
fn in_upper(upper: &Path, rel: &str) -> io::Result<Option<std::os::fd::OwnedFd>> {
    Ok(DestRoot::open(upper)?.open_dir(rel).ok().flatten())
}

fn writer<'a>(
    dir: &'a std::os::fd::OwnedFd,
    shown: &'a str,
    owner: Owner,
    chmod: Option<&'a Chmod>,
    stats: &'a mut CopyStats,
    links: HashMap<(u64, u64), (std::os::fd::OwnedFd, std::ffi::OsString)>,
) -> TreeWriter<'a> {
    TreeWriter {
        top_dir: dir.as_fd(),
        top_name: std::ffi::OsStr::new(""),
        contents_into: None,
        owner,
        chmod,
        shown,
        stats,
        stack: Vec::new(),
        links,
        host: None,
    }
}

pub(crate) fn add_stats(a: &mut CopyStats, b: &CopyStats) {
    a.files += b.files;
    a.dirs += b.dirs;
    a.symlinks += b.symlinks;
    a.hardlinks += b.hardlinks;
    a.specials += b.specials;
    a.bytes += b.bytes;
    a.archives += b.archives;
    a.skipped.extend(b.skipped.iter().cloned());
}

/// `--parents` pivot: the part of a source before `/./` is dropped from the
/// kept path (`src/./pkg/a` keeps `pkg/a`).
fn pivot_of(source: &str) -> String {
    let s = source.trim_start_matches("./");
    match s.find("/./") {
        Some(i) => clean_rel(&s[..i]),
        None => String::new(),
    }
}

fn strip_pivot<'a>(path: &'a str, pivot: &str) -> &'a str {
    if pivot.is_empty() {
        return path;
    }
    path.strip_prefix(pivot)
        .map(|r| r.trim_start_matches('/'))
        .unwrap_or(path)
}

fn join_rel(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

fn parent_rel(p: &str) -> String {
    p.rsplit_once('/')
        .map(|(a, _)| a.to_string())
        .unwrap_or_default()
}

/// Writes a heredoc (`COPY <<EOF /dest`) as file `name` (mode 0644, like
/// BuildKit) in `dir`, a scratch directory to open with
/// [`SourceRoot::scratch`] and copy from.
pub fn write_heredoc(dir: &Path, name: &str, content: &[u8]) -> io::Result<()> {
    use std::io::Write;
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::other(format!(
            "heredoc name {name:?} is not a file name"
        )));
    }
    let fd = rustix::fs::openat(
        rustix::fs::CWD,
        dir.join(name),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o644))?;
    std::fs::File::from(fd).write_all(content)
}

/// `mkdir -p` of `path` inside the rootfs at `root`, like BuildKit's file-op
/// mkdir (`fs.RootPath` then `MkdirAll`): the path is cleaned, symlinks
/// resolve as if chrooted in `root` (a dangling one gets its target
/// created), and each directory created gets `uid:gid` and `mode`;
/// existing ones are left alone.
pub fn mkdir_all(root: &Path, path: &str, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    let rel = clean_rel(path);
    DestRoot::open(root)?.mkdir_all(&rel, NewDir { uid, gid, mode })?;
    Ok(())
}
