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
mod files;
mod host;
mod layer_links;
mod tree;
pub mod url;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};

pub use chmod::{Chmod, ChmodError};
pub use host::HostPolicy;
pub use layer_links::LinkFrom;
pub use tree::Owner;

use crate::context::walk;
use crate::context::{clean_rel, Confinement, Matched, PathFilter, SourceError, SourceRoot};
use crate::users::{lookup_chown, UserError};
use dest::{DestRoot, NewDir};
use layer_links::LayerLinks;
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
    /// The layer snapshots of a `--from` source, to hardlink unchanged
    /// files from where the copy writes into `upper` (see `layer_links`).
    pub link_from: Option<LinkFrom>,
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
    let root = DestRoot::open(rootfs).map_err(|e| dest_err(rootfs, "", e))?;
    let (dest_rel, dest_says_dir) = destination(opts);
    // Resolve every source before writing anything.
    let matched = expand_sources(src, &opts.sources)?;
    // Several sources onto a dest without a trailing slash are copied one
    // after the other (BuildKit does no check): files overwrite one `dest`.
    let dest_is_dir = dest_says_dir || opts.parents;
    let mut job = Job::new(src, rootfs, opts, root, fixed, chmod.as_ref())?;
    for (m, kept) in &matched {
        let base_rel = if opts.parents {
            join_rel(&dest_rel, kept)
        } else {
            dest_rel.clone()
        };
        let kind = FileType::from_raw_mode(m.stat.st_mode);
        if kind == FileType::Directory {
            job.directory(m, &base_rel, matched.len() == 1)?;
        } else if !(opts.unpack && kind == FileType::RegularFile && job.archive(m, &base_rel)?) {
            job.entry(m, base_rel, dest_is_dir)?;
        }
    }
    Ok(job.finish())
}

fn dest_err(rootfs: &Path, dest: &str, source: io::Error) -> CopyError {
    CopyError::Dest {
        dest: format!("/{dest}"),
        rootfs: rootfs.to_path_buf(),
        source,
    }
}

/// The destination relative to the rootfs, and whether its spelling says
/// it is a directory (`dir/`, `.`, `..`, `/`).
fn destination(opts: &CopyOptions) -> (String, bool) {
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
    let rel = clean_rel(&joined);
    let d = opts.dest.as_str();
    let says_dir = d.ends_with('/')
        || d == "."
        || d == ".."
        || d.ends_with("/.")
        || d.ends_with("/..")
        || rel.is_empty();
    (rel, says_dir)
}

/// Every match of every source, with the path `--parents` keeps.
fn expand_sources(
    src: &SourceRoot,
    sources: &[String],
) -> Result<Vec<(Matched, String)>, CopyError> {
    let mut matched = Vec::new();
    for s in sources {
        let pivot = pivot_of(s);
        for m in src.expand(s)? {
            let kept = strip_pivot(&m.path, &pivot).to_string();
            matched.push((m, kept));
        }
    }
    Ok(matched)
}

/// One COPY in progress: what every matched source is written with, and
/// what the copies so far have counted and linked.
struct Job<'a> {
    src: &'a SourceRoot,
    rootfs: &'a Path,
    opts: &'a CopyOptions,
    root: DestRoot,
    /// `--chown`, resolved.
    fixed: Option<(u32, u32)>,
    owner: Owner,
    chmod: Option<&'a Chmod>,
    new_dir: NewDir,
    exclude: Option<PathFilter>,
    stats: CopyStats,
    links: HashMap<(u64, u64), (OwnedFd, OsString)>,
    layer_links: Option<LayerLinks>,
}

impl<'a> Job<'a> {
    fn new(
        src: &'a SourceRoot,
        rootfs: &'a Path,
        opts: &'a CopyOptions,
        root: DestRoot,
        fixed: Option<(u32, u32)>,
        chmod: Option<&'a Chmod>,
    ) -> Result<Self, CopyError> {
        let owner = match (fixed, src.confinement()) {
            (Some((u, g)), _) => Owner::Fixed(u, g),
            (None, Confinement::Context) => Owner::Fixed(0, 0),
            (None, Confinement::Chroot) => Owner::Preserve,
        };
        let (uid, gid) = fixed.unwrap_or((0, 0));
        // Current BuildKit applies --chmod to the directories it creates.
        let new_dir = NewDir {
            uid,
            gid,
            mode: chmod.map_or(0o755, |c| c.apply(0o755, true)),
        };
        let exclude = PathFilter::from_patterns(&opts.exclude).map_err(SourceError::Exclude)?;
        Ok(Job {
            src,
            rootfs,
            opts,
            root,
            fixed,
            owner,
            chmod,
            new_dir,
            exclude,
            stats: CopyStats::default(),
            links: HashMap::new(),
            layer_links: opts.link_from.as_ref().and_then(LayerLinks::open),
        })
    }

    fn err(&self, dest: &str, e: io::Error) -> CopyError {
        dest_err(self.rootfs, dest, e)
    }

    /// A directory source: its contents are merged into `base_rel`. A lone
    /// one whose destination is new is written into the upper dir.
    fn directory(&mut self, m: &Matched, base_rel: &str, alone: bool) -> Result<(), CopyError> {
        let fresh = alone
            && !self.opts.parents
            && self
                .root
                .open_dir(base_rel)
                .map_err(|e| self.err(base_rel, e))?
                .is_none();
        let dir = self
            .root
            .mkdir_all(base_rel, self.new_dir)
            .map_err(|e| self.err(base_rel, e))?;
        let dir = match self.opts.upper.as_deref().filter(|_| fresh) {
            Some(upper) => in_upper(upper, base_rel)
                .map_err(|e| self.err(base_rel, e))?
                .unwrap_or(dir),
            None => dir,
        };
        self.walk(m, &dir, &format!("/{base_rel}"), OsStr::new(""), true)
    }

    /// ADD of a local tar archive: extracted into the destination. False
    /// if the file is not an archive (then it is copied as it is).
    fn archive(&mut self, m: &Matched, base_rel: &str) -> Result<bool, CopyError> {
        let is_archive = archive::is_archive_fd(m.fd.as_fd()).map_err(|e| CopyError::Archive {
            path: m.path.clone(),
            source: e,
        })?;
        if !is_archive {
            return Ok(false);
        }
        let into = if self.opts.parents {
            parent_rel(base_rel)
        } else {
            base_rel.to_string()
        };
        // Extracted entries keep the tar's owners unless --chown (Docker 20.10).
        let tar_owner = if self.fixed.is_some() {
            self.owner
        } else {
            Owner::Preserve
        };
        let s = archive::unpack_into(
            m,
            &self.root,
            &into,
            self.new_dir,
            tar_owner,
            self.chmod,
            self.opts,
        )?;
        add_stats(&mut self.stats, &s);
        self.stats.archives += 1;
        Ok(true)
    }

    /// A file, link or special source: it becomes `base_rel`, or a name in
    /// it when that is (or is said to be) a directory.
    fn entry(&mut self, m: &Matched, base_rel: String, dest_is_dir: bool) -> Result<(), CopyError> {
        let target = if self.opts.parents {
            base_rel
        } else if dest_is_dir
            || self
                .root
                .is_dir(&base_rel)
                .map_err(|e| self.err(&base_rel, e))?
        {
            join_rel(&base_rel, m.base_name())
        } else {
            base_rel
        };
        if target.is_empty() {
            return Err(self.err(
                "",
                io::Error::other("cannot replace the root directory with a file"),
            ));
        }
        let slot = self
            .root
            .slot(&target, self.new_dir)
            .map_err(|e| self.err(&target, e))?;
        self.walk(m, &slot.dir, &slot.shown, &slot.name, false)
    }

    /// Walks `m` into `dir`: as `name` in it, or, for `contents`, merged
    /// into `dir` itself.
    fn walk(
        &mut self,
        m: &Matched,
        dir: &OwnedFd,
        shown: &str,
        name: &OsStr,
        contents: bool,
    ) -> Result<(), CopyError> {
        // Threads only pay off for a tree of files.
        let tree = FileType::from_raw_mode(m.stat.st_mode) == FileType::Directory;
        let links = std::mem::take(&mut self.links);
        let (walked, links) = files::with_writers(tree, |writers| {
            let mut w = TreeWriter {
                top_dir: dir.as_fd(),
                top_name: name,
                contents_into: contents.then(|| dir.as_fd()),
                owner: self.owner,
                chmod: self.chmod,
                shown,
                stats: &mut self.stats,
                stack: Vec::new(),
                links,
                layer_links: self.layer_links.as_mut().map(|l| (l, m.path.as_bytes())),
                host: self.opts.host,
                writers,
                dir_times: Vec::new(),
                batch: None,
            };
            let walked = walk::walk(self.src, m, self.exclude.as_ref(), &mut w);
            // The workers' files are waited for even after an error.
            let finished = w.finish();
            (walked.and(finished), w.links)
        });
        self.links = links;
        Ok(walked?)
    }

    fn finish(mut self) -> CopyStats {
        if self.opts.host.is_some() {
            // Notes name the destination path; on the host, say where it is.
            let root = self.rootfs.display().to_string();
            let root = root.trim_end_matches('/').escape_debug().to_string();
            for note in &mut self.stats.skipped {
                note.insert_str(0, &root);
            }
        }
        self.stats
    }
}

/// The directory `rel` that overlayfs just created, as it is in the upper
/// dir; `None` if it is not there as a plain directory (e.g. it was made at
/// a symlink's target in a lower layer), and the copy goes through the
/// merged view instead.
fn in_upper(upper: &Path, rel: &str) -> io::Result<Option<OwnedFd>> {
    Ok(DestRoot::open(upper)?.open_dir(rel).ok().flatten())
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
