//! How RUN steps are isolated: in containers (youki or runc, needing
//! root or a user namespace), or — `--isolation=chroot`, kaniko's model for
//! a container without privileges — as plain processes in a root
//! filesystem that the build lays out in place (normally `/`).

use std::path::{Component, Path, PathBuf};

use kiln_fs::apply::Protected;
use kiln_fs::snapshot::{RootSnapshotter, Snapshots};

use crate::error::BuildError;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Each step in a container over an overlay (or copy) snapshot.
    #[default]
    Container,
    /// Each step a child process in `Chroot::root` (see [`Chroot`]).
    Chroot(Chroot),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chroot {
    /// The root filesystem the stages are laid out in, replacing what was
    /// there: `/` inside a throwaway container.
    pub root: PathBuf,
    /// Paths under `root` the build must not touch besides kiln's own (the
    /// store, the binary, CA certificates) and the mount points: the build
    /// context, the Dockerfile, output files.
    pub keep: Vec<PathBuf>,
    /// Lay out `/` even where kiln does not seem to run in a container.
    pub force: bool,
}

/// The snapshotter of a chroot build: `c.root` with everything kiln needs
/// protected.
pub(crate) fn root_snapshotter(
    snapshots: Snapshots,
    c: &Chroot,
    store_root: &Path,
) -> Result<RootSnapshotter, BuildError> {
    let root = std::path::absolute(&c.root)
        .map_err(|e| BuildError::other(format!("--chroot-dir {}", c.root.display()), e))?;
    if root == Path::new("/") && !c.force && !in_container() {
        return Err(BuildError::other(
            "--isolation=chroot",
            "it replaces the files of / with the image's, and kiln does not seem to run in a container; run it in one (docker run … kiln build --isolation=chroot), give a scratch directory with --chroot-dir DIR, or pass --force on a machine you can throw away",
        ));
    }
    if !root.is_dir() {
        return Err(BuildError::other(
            format!("--chroot-dir {}", root.display()),
            "not a directory",
        ));
    }
    let mut keep: Vec<PathBuf> = c.keep.clone();
    keep.push(store_root.to_path_buf());
    keep.extend(std::env::current_exe().ok());
    for var in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
        keep.extend(std::env::var_os(var).map(PathBuf::from));
    }
    keep.extend(mount_points());
    if root == Path::new("/") {
        keep.extend(["/proc", "/sys", "/dev"].map(PathBuf::from));
    }
    let inside: Vec<PathBuf> = keep.iter().filter_map(|p| relative_to(&root, p)).collect();
    Ok(RootSnapshotter::new(
        snapshots,
        root,
        Protected::new(inside),
    ))
}

/// `path` relative to `root` when it lies strictly below it.
fn relative_to(root: &Path, path: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(path).ok()?;
    // Lexically clean: `..` in a kept path must not widen it to `/`.
    if abs.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    let rel = abs.strip_prefix(root).ok()?;
    (!rel.as_os_str().is_empty()).then(|| rel.to_path_buf())
}

/// Every mount point of this process (`/proc/self/mountinfo`, octal
/// escapes decoded).
fn mount_points() -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(std::ffi::OsString::from_vec(unescape(p))))
        .collect()
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (b[i], octal) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// What kaniko checks too: Docker's and Podman's marker files, or a pod.
fn in_container() -> bool {
    Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        || std::env::var_os("container").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape(r"/mnt/a\040b"), b"/mnt/a b");
        assert_eq!(unescape(r"/x\\y"), br"/x\\y");
    }

    #[test]
    fn kept_paths_are_made_relative_and_never_widened() {
        let root = Path::new("/r");
        assert_eq!(relative_to(root, Path::new("/r/kiln")), Some("kiln".into()));
        assert_eq!(relative_to(root, Path::new("/r")), None);
        assert_eq!(relative_to(root, Path::new("/other")), None);
        assert_eq!(relative_to(root, Path::new("/r/a/../..")), None);
    }
}
