//! The diff of two full trees (a layer's parent and the step's result), for
//! the copy snapshotter: added and changed entries, `.wh.` for deletions,
//! and the parent directories of every change (as overlay's copy-up and
//! containerd's diff writer include them).

use std::fs::Metadata;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{at, read_xattrs, sorted_children, LayerError, LayerInfo, LayerOptions, LayerWriter};

/// Writes what changed from `lower` to `upper_full` as a layer tar.
pub fn write_layer_from_compare(
    lower: &Path,
    upper_full: &Path,
    out: impl Write,
    opts: &LayerOptions,
) -> Result<LayerInfo, LayerError> {
    let mut c = Compare {
        lower,
        upper: upper_full,
        w: LayerWriter::new(out, opts),
        pending: Vec::new(),
    };
    c.dir(Path::new(""))?;
    c.w.finish().map(|(info, _)| info).map_err(at(upper_full))
}

struct Compare<'a, W: Write> {
    lower: &'a Path,
    upper: &'a Path,
    w: LayerWriter<W>,
    /// Ancestor directories of the current position not yet written; they
    /// are written just before the first change below them.
    pending: Vec<PathBuf>,
}

impl<W: Write> Compare<'_, W> {
    fn flush_parents(&mut self) -> Result<(), LayerError> {
        for rel in std::mem::take(&mut self.pending) {
            self.add(&rel)?;
        }
        Ok(())
    }

    fn add(&mut self, rel: &Path) -> Result<(), LayerError> {
        let full = self.upper.join(rel);
        let md = std::fs::symlink_metadata(&full).map_err(at(&full))?;
        let xattrs = read_xattrs(&full).map_err(at(&full))?;
        self.w.add(rel, &full, &md, &xattrs).map_err(at(&full))
    }

    /// Everything under `rel` in upper is new.
    fn add_tree(&mut self, rel: &Path) -> Result<(), LayerError> {
        self.flush_parents()?;
        self.add(rel)?;
        let full = self.upper.join(rel);
        if std::fs::symlink_metadata(&full)
            .map_err(at(&full))?
            .is_dir()
        {
            for name in sorted_children(&full).map_err(at(&full))? {
                self.add_tree(&rel.join(name))?;
            }
        }
        Ok(())
    }

    fn dir(&mut self, rel: &Path) -> Result<(), LayerError> {
        let (ldir, udir) = (self.lower.join(rel), self.upper.join(rel));
        let lnames = sorted_children(&ldir).map_err(at(&ldir))?;
        let unames = sorted_children(&udir).map_err(at(&udir))?;
        let (mut i, mut j) = (0, 0);
        while i < lnames.len() || j < unames.len() {
            let order = match (lnames.get(i), unames.get(j)) {
                (Some(l), Some(u)) => l.as_os_str().as_bytes().cmp(u.as_os_str().as_bytes()),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    self.flush_parents()?;
                    let r = rel.join(&lnames[i]);
                    self.w.whiteout(&r).map_err(at(&self.lower.join(&r)))?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    self.add_tree(&rel.join(&unames[j]))?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    self.both(&rel.join(&unames[j]))?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    fn both(&mut self, rel: &Path) -> Result<(), LayerError> {
        let (lf, uf) = (self.lower.join(rel), self.upper.join(rel));
        let lm = std::fs::symlink_metadata(&lf).map_err(at(&lf))?;
        let um = std::fs::symlink_metadata(&uf).map_err(at(&uf))?;
        if um.is_dir() && !lm.is_dir() {
            return self.add_tree(rel);
        }
        let changed = differs(&lf, &lm, &uf, &um).map_err(at(&uf))?;
        if um.is_dir() {
            if changed {
                self.flush_parents()?;
                self.add(rel)?;
            } else {
                self.pending.push(rel.to_path_buf());
            }
            self.dir(rel)?;
            // Leaving the directory: if nothing below changed it is not
            // written.
            if self.pending.last().map(PathBuf::as_path) == Some(rel) {
                self.pending.pop();
            }
            return Ok(());
        }
        if changed {
            self.flush_parents()?;
            self.add(rel)?;
        }
        Ok(())
    }
}

fn kind(md: &Metadata) -> u8 {
    let ft = md.file_type();
    match () {
        _ if ft.is_dir() => 1,
        _ if ft.is_symlink() => 2,
        _ if ft.is_file() => 3,
        _ if ft.is_char_device() => 4,
        _ if ft.is_block_device() => 5,
        _ if ft.is_fifo() => 6,
        _ => 7,
    }
}

/// Type, mode, owner, mtime, size, link count, device, link target, xattrs; file bytes
/// only when all of that matches and the mtime has no sub-second part (a
/// filesystem too coarse to show a rewrite), as continuity decides.
fn differs(lf: &Path, lm: &Metadata, uf: &Path, um: &Metadata) -> io::Result<bool> {
    if kind(lm) != kind(um)
        || lm.mode() != um.mode()
        || lm.uid() != um.uid()
        || lm.gid() != um.gid()
        || lm.rdev() != um.rdev()
        || (!um.is_dir() && (lm.size() != um.size()))
        // A new hardlink to an unchanged file: writing the file too keeps
        // the link in the layer (overlay copies it up the same way).
        || (um.is_file() && lm.nlink() != um.nlink())
        || (lm.mtime(), lm.mtime_nsec()) != (um.mtime(), um.mtime_nsec())
    {
        return Ok(true);
    }
    if um.file_type().is_symlink() && std::fs::read_link(lf)? != std::fs::read_link(uf)? {
        return Ok(true);
    }
    if read_xattrs(lf)? != read_xattrs(uf)? {
        return Ok(true);
    }
    if um.is_file() && um.mtime_nsec() == 0 {
        return Ok(!same_content(lf, uf)?);
    }
    Ok(false)
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
