//! The build context: a directory (or a tar from stdin, unpacked into a
//! temporary directory) read under its `.dockerignore` rules, with lookups
//! that never leave it, and content hashes of exactly what a COPY reads.
//!
//! ```no_run
//! # use kiln_fs::context::{BuildContext, CopyHashOptions};
//! let ctx = BuildContext::open("app".as_ref(), Some("app/Dockerfile".as_ref()))?;
//! let key = ctx.checksum(&["src/".into(), "go.mod".into()], &CopyHashOptions::default())?;
//! // … then kiln_fs::copy::copy_into(ctx.source(), rootfs, &opts)
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod dockerignore;
pub mod glob;
mod hash;
mod ignore;
mod source;
mod suggest;
pub mod walk;

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::file_hashes::FileHashes;

pub use hash::{listed_digest, ContentHash, CopyHashOptions};
pub use ignore::PathFilter;
pub use source::{clean_rel, Confinement, Matched, SourceError, SourceRoot};
pub use suggest::{close_names, distance};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("open build context {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("read {path}: {source}")]
    Ignore { path: PathBuf, source: io::Error },
    #[error("{path}: {why}")]
    IgnoreSyntax { path: PathBuf, why: String },
    #[error("unpack build context tar into {path}: {source}")]
    Unpack { path: PathBuf, source: io::Error },
}

pub struct BuildContext {
    root: SourceRoot,
    hashes: Arc<FileHashes>,
    /// Where `.dockerignore` rules came from, if anywhere.
    ignore_file: Option<PathBuf>,
    /// Keeps an unpacked stdin context alive for the build.
    _tmp: Option<tempfile::TempDir>,
}

impl BuildContext {
    /// Opens a context directory. `dockerfile` is the Dockerfile's path (on
    /// the host): a `<Dockerfile>.dockerignore` next to it wins over the
    /// context's `.dockerignore` (BuildKit's rule).
    pub fn open(dir: &Path, dockerfile: Option<&Path>) -> Result<BuildContext, ContextError> {
        let specific = dockerfile.map(|df| {
            let mut p = df.as_os_str().to_os_string();
            p.push(".dockerignore");
            PathBuf::from(p)
        });
        let candidates = specific.into_iter().chain([dir.join(".dockerignore")]);
        let mut rules = None;
        for path in candidates {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    rules = Some((path, text));
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(ContextError::Ignore { path, source }),
            }
        }
        let (ignore_file, filter) = match rules {
            Some((p, text)) => {
                let f = PathFilter::parse(&text).map_err(|why| ContextError::IgnoreSyntax {
                    path: p.clone(),
                    why,
                })?;
                (Some(p), Some(f))
            }
            None => (None, None),
        };
        let root = SourceRoot::open(dir, Confinement::Context, filter).map_err(|source| {
            ContextError::Open {
                path: dir.to_path_buf(),
                source,
            }
        })?;
        Ok(BuildContext {
            root,
            hashes: Arc::default(),
            ignore_file,
            _tmp: None,
        })
    }

    /// Unpacks a context tar (`kiln build -`; plain or gzip/bzip2/xz/zstd)
    /// into a fresh directory under `tmp_parent` with the same safe
    /// extraction as image layers, then opens it. `dockerfile` is the
    /// Dockerfile's path inside the tar (default `Dockerfile`).
    pub fn from_tar(
        reader: impl Read,
        tmp_parent: &Path,
        dockerfile: Option<&str>,
    ) -> Result<BuildContext, ContextError> {
        let tmp = tempfile::Builder::new()
            .prefix("context-")
            .tempdir_in(tmp_parent)
            .map_err(|source| ContextError::Unpack {
                path: tmp_parent.to_path_buf(),
                source,
            })?;
        let plain =
            kiln_oci::compression::decompress(reader).map_err(|source| ContextError::Unpack {
                path: tmp.path().to_path_buf(),
                source,
            })?;
        crate::apply_layer(tmp.path(), plain).map_err(|e| ContextError::Unpack {
            path: tmp.path().to_path_buf(),
            source: io::Error::other(e),
        })?;
        let df = tmp
            .path()
            .join(clean_rel(dockerfile.unwrap_or("Dockerfile")));
        let mut ctx = BuildContext::open(tmp.path(), Some(&df))?;
        ctx._tmp = Some(tmp);
        Ok(ctx)
    }

    /// Keeps content hashes in `hashes` (the store's persistent index)
    /// instead of an index of this build alone.
    pub fn with_hashes(mut self, hashes: Arc<FileHashes>) -> BuildContext {
        hashes.preload(&hash::root_name(&self.root));
        self.hashes = hashes;
        self
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// The `.dockerignore` file in force, if any.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// The context as a COPY source.
    pub fn source(&self) -> &SourceRoot {
        &self.root
    }

    /// The content hashes of its files known so far.
    pub fn hashes(&self) -> &FileHashes {
        &self.hashes
    }

    /// Whether `.dockerignore` hides `rel` (context-relative, `/`-separated).
    pub fn is_ignored(&self, rel: &str) -> bool {
        self.root.is_ignored(&clean_rel(rel))
    }

    /// Content hash of what `COPY <sources> …` with these flags reads. Errors
    /// like the copy would (missing source with suggestions, escaping symlink).
    pub fn checksum(
        &self,
        sources: &[String],
        opts: &CopyHashOptions,
    ) -> Result<ContentHash, SourceError> {
        hash::checksum(&self.root, &self.hashes, sources, opts)
    }

    /// Reads a whole file of the context (e.g. the Dockerfile of a tar
    /// context), under the same rules as COPY, `.dockerignore` aside.
    pub fn read_file(&self, rel: &str) -> Result<Vec<u8>, SourceError> {
        let rel = clean_rel(rel);
        let fd = self
            .root
            .open_at(
                &rel,
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            )
            .map_err(|source| SourceError::Io {
                path: rel.clone(),
                root: self.path().to_path_buf(),
                source,
            })?;
        let mut out = Vec::new();
        std::fs::File::from(fd)
            .read_to_end(&mut out)
            .map_err(|source| SourceError::Io {
                path: rel,
                root: self.path().to_path_buf(),
                source,
            })?;
        Ok(out)
    }
}

/// Hashes COPY sources of any source root (e.g. a heredoc scratch dir).
pub fn checksum(
    root: &SourceRoot,
    hashes: &FileHashes,
    sources: &[String],
    opts: &CopyHashOptions,
) -> Result<ContentHash, SourceError> {
    hash::checksum(root, hashes, sources, opts)
}
