//! Layer tars from a step's changes: the overlay upper dir
//! ([`write_layer_from_upper`]) or a comparison of two full trees
//! ([`write_layer_from_compare`], for machines without overlayfs).

mod compare;
mod scan;
mod writer;

use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::file_hashes::FileHashes;

pub use compare::write_layer_from_compare;
pub use scan::write_layer_from_scan;
pub(crate) use writer::{get_xattr, read_xattrs, sorted_children, LayerWriter};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerOptions {
    /// Clamp every mtime to this (BuildKit's rewrite-timestamp); also the
    /// mtime of whiteout entries (0 when unset).
    pub source_date_epoch: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar.
    pub diff_id: kiln_oci::DiffId,
    /// Uncompressed tar size in bytes.
    pub size: u64,
    /// Tar entries written (PAX headers not counted).
    pub entries: u64,
}

impl LayerInfo {
    /// Whether the layer holds no change (only the end-of-archive blocks).
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("write layer from {}: {source}", kiln_oci::escape_path(path))]
pub struct LayerError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the changes recorded in an overlay upper dir as a layer tar.
pub fn write_layer_from_upper(
    upper: &Path,
    out: impl Write,
    opts: &LayerOptions,
) -> Result<LayerInfo, LayerError> {
    write_upper_recording(upper, out, opts, None)
}

/// [`write_layer_from_upper`], recording each file's content hash in
/// `hashes` (the upper dir is about to become a snapshot).
pub(crate) fn write_upper_recording(
    upper: &Path,
    out: impl Write,
    opts: &LayerOptions,
    hashes: Option<Arc<FileHashes>>,
) -> Result<LayerInfo, LayerError> {
    let mut w = LayerWriter::new(out, opts).recording_hashes(hashes);
    walk_upper(upper, Path::new(""), &mut w)?;
    w.finish().map(|(info, _)| info).map_err(at(upper))
}

fn walk_upper<W: Write>(root: &Path, rel: &Path, w: &mut LayerWriter<W>) -> Result<(), LayerError> {
    let dir = root.join(rel);
    for name in sorted_children(&dir).map_err(at(&dir))? {
        let rel = rel.join(&name);
        let full = root.join(&rel);
        let md = std::fs::symlink_metadata(&full).map_err(at(&full))?;
        let ft = md.file_type();
        if is_whiteout(&full, &md).map_err(at(&full))? {
            w.whiteout(&rel).map_err(at(&full))?;
            continue;
        }
        let xattrs = read_xattrs(&full).map_err(at(&full))?;
        w.add(&rel, &full, &md, &xattrs).map_err(at(&full))?;
        if ft.is_dir() {
            let opaque = get_xattr(&full, "trusted.overlay.opaque").map_err(at(&full))?
                == Some(b"y".to_vec())
                || get_xattr(&full, "user.overlay.opaque").map_err(at(&full))?
                    == Some(b"y".to_vec());
            if opaque {
                w.opaque(&rel).map_err(at(&full))?;
            }
            walk_upper(root, &rel, w)?;
        }
    }
    Ok(())
}

/// Overlay records a deletion as a 0/0 character device, or (Linux 6.7+,
/// in some setups) an empty file with an `overlay.whiteout` xattr.
fn is_whiteout(full: &Path, md: &std::fs::Metadata) -> io::Result<bool> {
    let ft = md.file_type();
    if ft.is_char_device() && md.rdev() == 0 {
        return Ok(true);
    }
    if ft.is_file() && md.size() == 0 {
        return Ok(get_xattr(full, "trusted.overlay.whiteout")?.is_some()
            || get_xattr(full, "user.overlay.whiteout")?.is_some());
    }
    Ok(false)
}
