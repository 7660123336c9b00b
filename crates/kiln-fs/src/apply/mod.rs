//! Extracting a layer tar into a directory, safely and with OCI whiteouts.
//!
//! The `tar` crate parses the format; everything that touches the disk is
//! ours (`root.rs`), because a layer is untrusted input: no entry may create,
//! change or read anything outside the target, whatever symlinks or
//! hardlinks earlier entries (or the target's existing content) set up.

mod meta;
mod name;
mod protect;
mod root;
mod write;

use std::collections::HashSet;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use kiln_oci::DiffId;
use kiln_oci::HashingReader;

pub use name::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
pub use protect::Protected;
pub use root::force_userspace_resolution;
use root::Root;

/// How whiteouts in the tar are carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyMode {
    /// The target holds the full content of the lower layers: a whiteout
    /// deletes what it names (Docker's "naive" apply).
    Merge,
    /// The target is a fresh directory that will be an overlay lowerdir: a
    /// whiteout becomes a 0/0 character device, an opaque directory gets
    /// `trusted.overlay.opaque=y` (containerd's overlay apply; `user.` in a user
    /// namespace, see [`crate::mount::overlay_xattr`]).
    OverlayLower,
}

/// What an extraction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Tar entries processed (including whiteouts and skipped ones).
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Character/block devices and fifos.
    pub specials: u64,
    pub whiteouts: u64,
    /// Bytes of regular file content written.
    pub file_bytes: u64,
    /// Size of the uncompressed tar stream.
    pub tar_size: u64,
    /// sha256 of the uncompressed tar stream (whole stream, padding included).
    pub diff_id: Option<DiffId>,
    /// xattrs the target filesystem refused (and that were skipped).
    pub xattrs_skipped: u64,
    /// Device nodes left out because a user namespace may not make them.
    pub devices_skipped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("open extraction target {path}: {source}")]
    Target { path: PathBuf, source: io::Error },
    #[error("read layer tar: {0}")]
    Read(#[source] io::Error),
    #[error("layer entry {name:?} refused: {reason}")]
    Refused { name: PathBuf, reason: String },
    #[error("extract layer entry {name:?} into {target}: {source}")]
    Entry {
        name: PathBuf,
        target: PathBuf,
        source: io::Error,
    },
}

/// Extracts an uncompressed layer tar onto a full root filesystem
/// ([`ApplyMode::Merge`]).
pub fn apply_layer(target: &Path, reader: impl Read) -> Result<ApplyStats, ApplyError> {
    apply_layer_with(target, reader, ApplyMode::Merge)
}

/// Extracts a layer that may be compressed (any format Docker reads,
/// sniffed from its first bytes) or plain.
pub fn apply_compressed_layer(
    target: &Path,
    reader: impl Read,
    mode: ApplyMode,
) -> Result<ApplyStats, ApplyError> {
    let plain = kiln_oci::compression::decompress(reader).map_err(ApplyError::Read)?;
    apply_layer_with(target, plain, mode)
}

/// Extracts an uncompressed layer tar into `target` in the given mode.
pub fn apply_layer_with(
    target: &Path,
    reader: impl Read,
    mode: ApplyMode,
) -> Result<ApplyStats, ApplyError> {
    apply_layer_protected(target, reader, mode, &Protected::default())
}

/// Like [`apply_layer_with`], leaving `protected` paths of the target
/// untouched (entries at or below them are skipped, deletions go around
/// them).
pub fn apply_layer_protected(
    target: &Path,
    reader: impl Read,
    mode: ApplyMode,
    protected: &Protected,
) -> Result<ApplyStats, ApplyError> {
    let root = Root::open(target).map_err(|source| ApplyError::Target {
        path: target.to_path_buf(),
        source,
    })?;
    let mut ex = write::Extractor {
        root,
        target: target.to_path_buf(),
        mode,
        stats: ApplyStats::default(),
        xattr_errors: Default::default(),
        written: HashSet::new(),
        parents: HashSet::new(),
        dir_times: Vec::new(),
        buf: vec![0; 256 * 1024],
        protected: protected.clone(),
    };
    let mut archive = tar::Archive::new(BufReader::with_capacity(
        256 * 1024,
        HashingReader::new(reader),
    ));
    for entry in archive.entries().map_err(ApplyError::Read)? {
        let mut entry = entry.map_err(ApplyError::Read)?;
        ex.stats.entries += 1;
        ex.entry(&mut entry)?;
    }
    ex.finish_dir_times()?;
    // Hash the end-of-archive blocks and any trailing padding too, so the
    // digest is that of the whole stream as stored.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(ApplyError::Read)?;
    let (_, digest, size) = rest.into_inner().finish();
    ex.stats.diff_id = Some(DiffId(digest));
    ex.stats.tar_size = size;
    ex.stats.xattrs_skipped = ex.xattr_errors.0;
    Ok(ex.stats)
}
