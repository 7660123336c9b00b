//! Files of a `COPY --from` taken by hardlink from the layer snapshot that
//! holds them instead of copying their bytes (BuildKit gets the same from
//! its snapshotter's hardlinks/reflinks). It is safe because a snapshot is
//! never written after its commit and overlayfs copies a lower file up
//! before anything changes it; the copy must be writing into an overlay
//! upper dir that nothing else of the step writes through.
//!
//! Only a file the copy keeps as it is (owner, mode, mtime: no `--chown`,
//! no `--chmod`) with one link is taken: so an inode is shared by its
//! origin and one copy at most, and never by two paths of one stage (a
//! later copy of that stage would see them as hardlinks of each other) —
//! which is also why layers below the destination are not linked from.
//! Anything else, or a link the filesystem refuses, is copied.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{
    linkat, openat2, statat, AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, CWD,
};

/// The layer snapshots behind a `--from` view (`CopyOptions::link_from`).
#[derive(Clone, Debug, Default)]
pub struct LinkFrom {
    /// The view's layer directories, topmost first (as overlayfs stacks them).
    pub layers: Vec<PathBuf>,
    /// Those that are below the destination too: not linked from.
    pub shared: Vec<PathBuf>,
}

/// [`LinkFrom`] opened for one copy.
pub(super) struct LayerLinks {
    layers: Vec<(OwnedFd, bool)>,
    /// The last source directory looked up, opened in each layer.
    parent: Option<(Vec<u8>, Vec<Option<OwnedFd>>)>,
    /// Set once the destination refused a link (another filesystem).
    refused: bool,
}

impl LayerLinks {
    /// `None` when there is nothing to link from or a layer cannot be opened.
    pub fn open(from: &LinkFrom) -> Option<LayerLinks> {
        let layers = from
            .layers
            .iter()
            .map(|dir| {
                let fd = openat2(
                    CWD,
                    dir,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::empty(),
                )
                .ok()?;
                Some((fd, !from.shared.contains(dir)))
            })
            .collect::<Option<Vec<_>>>()?;
        (!layers.is_empty()).then_some(LayerLinks {
            layers,
            parent: None,
            refused: false,
        })
    }

    /// Links `path` (relative to the view's root; `st` is its stat there)
    /// as `name` in `dir`; false when it must be copied instead.
    pub fn link(&mut self, path: &[u8], st: &Stat, dir: BorrowedFd<'_>, name: &OsStr) -> bool {
        if self.refused || st.st_nlink != 1 {
            return false;
        }
        let Some((parent, base)) = split(path) else {
            return false;
        };
        let linked = {
            let Some((from, real, usable)) = self.holder(parent, base) else {
                return false;
            };
            // The inode the view showed (overlayfs on one filesystem
            // reports the real inode numbers), in a layer it may be taken from.
            let same = FileType::from_raw_mode(real.st_mode) == FileType::RegularFile
                && real.st_ino == st.st_ino;
            if !(same && usable) {
                return false;
            }
            linkat(from, OsStr::from_bytes(base), dir, name, AtFlags::empty())
        };
        match linked {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(_) => {
                self.refused = true;
                false
            }
        }
    }

    /// The topmost layer with an entry at `parent/base`: that directory,
    /// the entry's stat, and whether the layer may be linked from.
    fn holder(&mut self, parent: &[u8], base: &[u8]) -> Option<(BorrowedFd<'_>, Stat, bool)> {
        if self.parent.as_ref().is_none_or(|(p, _)| p != parent) {
            let dirs = self
                .layers
                .iter()
                .map(|(fd, _)| open_dir(fd.as_fd(), parent));
            self.parent = Some((parent.to_vec(), dirs.collect()));
        }
        let (_, dirs) = self.parent.as_ref()?;
        dirs.iter().zip(&self.layers).find_map(|(d, (_, usable))| {
            let d = d.as_ref()?;
            let st = statat(d, OsStr::from_bytes(base), AtFlags::SYMLINK_NOFOLLOW).ok()?;
            Some((d.as_fd(), st, *usable))
        })
    }
}

/// `parent` inside a layer, following no symlink (a symlinked directory in
/// a layer is not what the view showed at that path).
fn open_dir(layer: BorrowedFd<'_>, parent: &[u8]) -> Option<OwnedFd> {
    let parent = if parent.is_empty() { b"." } else { parent };
    openat2(
        layer,
        OsStr::from_bytes(parent),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()
}

/// `a/b/c` → (`a/b`, `c`); `c` → (``, `c`).
fn split(path: &[u8]) -> Option<(&[u8], &[u8])> {
    let path = path.strip_prefix(b"/").unwrap_or(path);
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => Some((&path[..i], &path[i + 1..])),
        None if !path.is_empty() => Some((&[][..], path)),
        None => None,
    }
}
