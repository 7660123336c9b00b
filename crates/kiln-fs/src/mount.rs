//! Overlay and bind mounts with guards that unmount on drop.
//!
//! Overlay is mounted through the new mount API, adding lower directories one
//! at a time (`lowerdir+`, Linux 6.8+) so neither path length nor the one-page
//! option limit of `mount(2)` caps the number of layers; older kernels get
//! `mount(2)` with the lower directories as short `/proc/self/fd/N` paths
//! when the plain option string would not fit.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{openat, Mode, OFlags, CWD};
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, mount, mount_bind,
    mount_remount, move_mount, unmount, FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags,
    MoveMountFlags, UnmountFlags,
};

/// Overlay refuses more lower layers than this (`OVL_MAX_STACK`).
pub const MAX_LOWERS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount overlay on {target} ({lowers} lower dirs): {source}")]
    Overlay {
        target: PathBuf,
        lowers: usize,
        source: io::Error,
    },
    #[error("bind mount {source_path} on {target}: {source}")]
    Bind {
        source_path: PathBuf,
        target: PathBuf,
        source: io::Error,
    },
    #[error("overlay supports at most {MAX_LOWERS} lower directories, got {0}")]
    TooManyLowers(usize),
    #[error("a read-only overlay needs at least one lower directory")]
    NoLowers,
    #[error("unmount {target}: {source}")]
    Unmount { target: PathBuf, source: io::Error },
}

/// A mount that is removed when dropped (lazily detached if busy).
#[derive(Debug)]
pub struct MountGuard {
    target: PathBuf,
    mounted: bool,
}

impl MountGuard {
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting failure (drop only logs it).
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.mounted = false;
        unmount_path(&self.target)
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = unmount_path(&self.target) {
                tracing::warn!("{e}");
            }
        }
    }
}

fn unmount_path(target: &Path) -> Result<(), MountError> {
    match unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        // Busy (a process still has a file open): detach now, the kernel
        // finishes when the last user goes.
        Err(rustix::io::Errno::BUSY) => unmount(target, UnmountFlags::DETACH),
        Err(e) => Err(e),
    }
    .map_err(|e| MountError::Unmount {
        target: target.to_path_buf(),
        source: e.into(),
    })
}

/// Mounts an overlay of `lowers` (top-most first) with a writable `upper`
/// (and its `work` dir on the same filesystem) on `target`.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<MountGuard, MountError> {
    if lowers.is_empty() {
        // Overlay needs a lower; an empty one costs nothing.
        return Err(MountError::NoLowers);
    }
    overlay(lowers, Some((upper, work)), target)
}

/// Mounts a read-only view of `lowers` (top-most first). One lower is bind
/// mounted read-only (overlay wants two lowers without an upper).
pub fn mount_overlay_readonly(lowers: &[PathBuf], target: &Path) -> Result<MountGuard, MountError> {
    match lowers {
        [] => Err(MountError::NoLowers),
        [one] => bind_mount(one, target, true),
        _ => overlay(lowers, None, target),
    }
}

/// Bind mounts `source` on `target`, optionally read-only.
pub fn bind_mount(source: &Path, target: &Path, readonly: bool) -> Result<MountGuard, MountError> {
    let err = |e: rustix::io::Errno| MountError::Bind {
        source_path: source.to_path_buf(),
        target: target.to_path_buf(),
        source: e.into(),
    };
    mount_bind(source, target).map_err(err)?;
    let guard = MountGuard {
        target: target.to_path_buf(),
        mounted: true,
    };
    if readonly {
        mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "").map_err(err)?;
    }
    Ok(guard)
}

fn overlay(
    lowers: &[PathBuf],
    rw: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<MountGuard, MountError> {
    if lowers.len() > MAX_LOWERS {
        return Err(MountError::TooManyLowers(lowers.len()));
    }
    let err = |source: io::Error| MountError::Overlay {
        target: target.to_path_buf(),
        lowers: lowers.len(),
        source,
    };
    match overlay_new_api(lowers, rw, target) {
        Ok(()) => {}
        // No new mount API, or no `lowerdir+` (before 6.8).
        Err((rustix::io::Errno::NOSYS | rustix::io::Errno::INVAL, new_api)) => {
            tracing::debug!("new mount API refused overlay ({new_api}); using mount(2)");
            overlay_legacy(lowers, rw, target).map_err(|e| {
                err(io::Error::new(
                    e.kind(),
                    format!("{e}; with the new mount API: {new_api}"),
                ))
            })?;
        }
        Err((_, e)) => return Err(err(e)),
    }
    Ok(MountGuard {
        target: target.to_path_buf(),
        mounted: true,
    })
}

/// Layer diffs need every change to be a plain file in the upper dir:
/// no redirect xattrs for renamed dirs, no metadata-only copy-ups.
/// `off` still follows redirects, which `userxattr` refuses: in a user
/// namespace it is `nofollow` (no redirect is ever made either way).
fn diff_safe_options() -> [(&'static str, &'static str); 2] {
    let redirect = if in_user_namespace() {
        "nofollow"
    } else {
        "off"
    };
    [("redirect_dir", redirect), ("metacopy", "off")]
}

/// Whether this process is in a user namespace other than the initial one
/// (rootless kiln, or kiln inside a rootless container): its uid map is not
/// the identity of all 2^32 ids.
pub fn in_user_namespace() -> bool {
    static INSIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INSIDE.get_or_init(|| {
        let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        let fields: Vec<&str> = map.split_whitespace().collect();
        !fields.is_empty() && fields != ["0", "0", "4294967295"]
    })
}

/// The name of overlay's xattr `name` (`opaque`, `whiteout`): the
/// `trusted.overlay.` ones need CAP_SYS_ADMIN in the initial user
/// namespace, so in another one overlay is mounted with `userxattr` and
/// keeps its marks in `user.overlay.`.
pub fn overlay_xattr(name: &str) -> String {
    let prefix = if in_user_namespace() {
        "user"
    } else {
        "trusted"
    };
    format!("{prefix}.overlay.{name}")
}

/// On failure: the errno (to decide on the fallback) and the error with the
/// kernel's explanation.
fn overlay_new_api(
    lowers: &[PathBuf],
    rw: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<(), (rustix::io::Errno, io::Error)> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| (e, e.into()))?;
    // Which step failed, and what the kernel logged about it.
    let fail = |what: String| {
        let fs = &fs;
        move |e: rustix::io::Errno| {
            let err = kernel_log(fs, e);
            (e, io::Error::new(err.kind(), format!("{what}: {err}")))
        }
    };
    for l in lowers {
        fsconfig_set_string(&fs, "lowerdir+", l.as_path())
            .map_err(fail(format!("lower dir {}", l.display())))?;
    }
    if let Some((upper, work)) = rw {
        fsconfig_set_string(&fs, "upperdir", upper)
            .map_err(fail(format!("upper dir {}", upper.display())))?;
        fsconfig_set_string(&fs, "workdir", work)
            .map_err(fail(format!("work dir {}", work.display())))?;
        // Without `volatile` the unmount at commit syncs the whole upper
        // filesystem (0.2-0.4 s a step after writing 200 MB) and every
        // fsync in a RUN goes to disk. An upper dir never outlives a crash
        // and committed snapshots are a cache, so nothing needs the syncs.
        // (The mount(2) path is for kernels before 6.8: it goes without.)
        if let Err(e) = fsconfig_set_flag(&fs, "volatile") {
            tracing::debug!(
                "overlay option volatile not accepted: {}",
                kernel_log(&fs, e)
            );
        }
    }
    if in_user_namespace() {
        fsconfig_set_flag(&fs, "userxattr").map_err(fail("option userxattr".into()))?;
    }
    for (k, v) in diff_safe_options() {
        // A kernel without the feature has it off anyway.
        if let Err(e) = fsconfig_set_string(&fs, k, v) {
            tracing::debug!(
                "overlay option {k}={v} not accepted: {}",
                kernel_log(&fs, e)
            );
        }
    }
    fsconfig_create(&fs).map_err(fail("create".into()))?;
    let attrs = if rw.is_none() {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(fail("fsmount".into()))?;
    move_mount(
        &mnt,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(fail("move_mount".into()))?;
    Ok(())
}

/// The error with the messages the filesystem left in its context
/// ("overlayfs: upper fs does not support tmpfile" …), which say far more
/// than the errno.
fn kernel_log(fs: &OwnedFd, errno: rustix::io::Errno) -> io::Error {
    let mut msgs = Vec::new();
    let mut buf = [0u8; 512];
    // Reading returns one message per call, ENODATA when there are no more.
    for _ in 0..8 {
        match rustix::io::read(fs, &mut buf) {
            Ok(n) if n > 0 => msgs.push(String::from_utf8_lossy(&buf[..n]).trim().to_string()),
            _ => break,
        }
    }
    let err = io::Error::from(errno);
    if msgs.is_empty() {
        err
    } else {
        io::Error::new(err.kind(), format!("{err} ({})", msgs.join("; ")))
    }
}

/// Characters overlay's option parser treats specially in a path.
fn escape(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn overlay_legacy(lowers: &[PathBuf], rw: Option<(&Path, &Path)>, target: &Path) -> io::Result<()> {
    let page = 4095;
    let tail = match rw {
        Some((u, w)) => format!(",upperdir={},workdir={}", escape(u), escape(w)),
        None => String::new(),
    };
    let plain: Vec<String> = lowers.iter().map(|l| escape(l)).collect();
    // Kept open until the mount is done: the kernel resolves the
    // /proc/self/fd paths during mount(2).
    let mut _fds: Vec<OwnedFd> = Vec::new();
    let mut lower_opt = plain.join(":");
    if lower_opt.len() + tail.len() + 64 > page {
        let mut short = Vec::with_capacity(lowers.len());
        for l in lowers {
            let fd = openat(
                CWD,
                l,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            short.push(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            _fds.push(fd);
        }
        lower_opt = short.join(":");
    }
    let mut data = format!("lowerdir={lower_opt}{tail}");
    if in_user_namespace() {
        data.push_str(",userxattr");
    }
    if data.len() + 40 <= page {
        let [(key, value), _] = diff_safe_options();
        data.push_str(&format!(",{key}={value}"));
    }
    if data.len() > page {
        return Err(io::Error::other(format!(
            "overlay options are {} bytes, over the {page}-byte limit of mount(2)",
            data.len()
        )));
    }
    let cdata = CString::new(data).map_err(io::Error::other)?;
    let flags = if rw.is_none() {
        MountFlags::RDONLY
    } else {
        MountFlags::empty()
    };
    mount(
        "overlay",
        target.as_os_str().as_bytes(),
        "overlay",
        flags,
        cdata.as_c_str(),
    )?;
    Ok(())
}

/// Whether overlay mounts work here (root, a kernel with overlayfs, a
/// filesystem under `scratch` that can be an upper dir). Mounts a tiny
/// overlay in the empty directory `scratch`, which the caller removes.
pub fn probe_overlay(scratch: &Path) -> bool {
    let run = || -> io::Result<bool> {
        let p = scratch;
        for d in ["lower", "upper", "work", "merged"] {
            std::fs::create_dir(p.join(d))?;
        }
        std::fs::write(p.join("lower/f"), b"x")?;
        let guard = match mount_overlay(
            &[p.join("lower")],
            &p.join("upper"),
            &p.join("work"),
            &p.join("merged"),
        ) {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!("overlay probe failed: {e}");
                return Ok(false);
            }
        };
        std::fs::remove_file(p.join("merged/f"))?;
        guard.unmount().map_err(io::Error::other)?;
        // The deletion must show as an overlay whiteout (char device 0/0).
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let md = std::fs::symlink_metadata(p.join("upper/f"))?;
        Ok(md.file_type().is_char_device() && md.rdev() == 0)
    };
    run().unwrap_or_else(|e| {
        tracing::debug!("overlay probe failed: {e}");
        false
    })
}
