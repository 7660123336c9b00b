//! The layer between two [`Index`]es of one live tree (`--isolation=chroot`):
//! entries that are new or whose stamp moved, `.wh.` for the topmost of
//! what is gone, and the unchanged parent directories of every change (as
//! overlay's copy-up and `write_layer_from_compare` include them). Only the
//! changed files are read, to be written into the layer.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{at, read_xattrs, LayerError, LayerInfo, LayerOptions, LayerWriter};
use crate::snapshot::Index;

/// Writes what changed in `root` from `before` to `after` as a layer tar.
pub fn write_layer_from_scan(
    root: &Path,
    before: &Index,
    after: &Index,
    out: impl Write,
    opts: &LayerOptions,
) -> Result<LayerInfo, LayerError> {
    let mut w = LayerWriter::new(out, opts);
    // Directories above the current path: (path, already written).
    let mut parents: Vec<(PathBuf, bool)> = Vec::new();
    let mut gone: Option<PathBuf> = None;
    for (rel, change) in merged(before, after) {
        while parents.last().is_some_and(|(p, _)| !rel.starts_with(p)) {
            parents.pop();
        }
        match change {
            Change::Gone => {
                // Below a deleted directory: the whiteout above covers it.
                if gone.as_ref().is_some_and(|g| rel.starts_with(g)) {
                    continue;
                }
                gone = Some(rel.to_path_buf());
                // A directory replaced by a file needs no whiteouts inside.
                let parent = rel.parent().unwrap_or(Path::new(""));
                let parent_is_dir = parent.as_os_str().is_empty()
                    || after.entries.get(parent).is_some_and(|s| s.is_dir());
                if parent_is_dir {
                    write_parents(&mut w, root, &mut parents)?;
                    w.whiteout(rel).map_err(at(&root.join(rel)))?;
                }
            }
            Change::Same { dir } => {
                if dir {
                    parents.push((rel.to_path_buf(), false));
                }
            }
            Change::Changed { dir } => {
                write_parents(&mut w, root, &mut parents)?;
                add(&mut w, root, rel)?;
                if dir {
                    parents.push((rel.to_path_buf(), true));
                }
            }
        }
    }
    w.finish().map(|(info, _)| info).map_err(at(root))
}

enum Change {
    Gone,
    Same { dir: bool },
    Changed { dir: bool },
}

/// Both indexes' paths in tar order, each with what happened to it.
fn merged<'a>(before: &'a Index, after: &'a Index) -> Vec<(&'a Path, Change)> {
    let mut out = Vec::with_capacity(after.entries.len());
    let mut b = before.entries.iter().peekable();
    for (rel, stamp) in &after.entries {
        while let Some((old, _)) = b.next_if(|(old, _)| old.as_path() < rel.as_path()) {
            out.push((old.as_path(), Change::Gone));
        }
        let dir = stamp.is_dir();
        let change = match b.next_if(|(old, _)| *old == rel) {
            Some((_, was)) if was == stamp => Change::Same { dir },
            _ => Change::Changed { dir },
        };
        out.push((rel.as_path(), change));
    }
    out.extend(b.map(|(old, _)| (old.as_path(), Change::Gone)));
    out
}

fn write_parents<W: Write>(
    w: &mut LayerWriter<W>,
    root: &Path,
    parents: &mut [(PathBuf, bool)],
) -> Result<(), LayerError> {
    for (p, written) in parents.iter_mut().filter(|(_, written)| !*written) {
        add(w, root, p)?;
        *written = true;
    }
    Ok(())
}

fn add<W: Write>(w: &mut LayerWriter<W>, root: &Path, rel: &Path) -> Result<(), LayerError> {
    let full = root.join(rel);
    let md = std::fs::symlink_metadata(&full).map_err(at(&full))?;
    let xattrs = read_xattrs(&full).map_err(at(&full))?;
    w.add(rel, &full, &md, &xattrs).map_err(at(&full))
}
