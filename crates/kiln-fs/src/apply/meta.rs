//! Ownership, mode, times and xattrs of a tar entry (ustar fields overridden
//! by PAX records), and applying them to a file created in a root.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{
    chmodat, chownat, fchmod, fchown, fsetxattr, futimens, lsetxattr, utimensat, AtFlags, Gid,
    Mode, Timespec, Timestamps, Uid, XattrFlags,
};

#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, u32),
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Meta {
    pub fn from_entry<R: io::Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let h = entry.header();
        let mut meta = Meta {
            mode: h.mode()? & 0o7777,
            uid: to_id(h.uid()?)?,
            gid: to_id(h.gid()?)?,
            mtime: (h.mtime()? as i64, 0),
            xattrs: Vec::new(),
        };
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let key = ext.key_bytes();
                let val = ext.value_bytes();
                match key {
                    b"uid" => meta.uid = to_id(parse_u64(val)?)?,
                    b"gid" => meta.gid = to_id(parse_u64(val)?)?,
                    b"mtime" => meta.mtime = parse_pax_time(val)?,
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            meta.xattrs
                                .push((OsStr::from_bytes(name).to_os_string(), val.to_vec()));
                        }
                    }
                }
            }
        }
        // Overlay's own attributes (`trusted.overlay.*`, or `user.overlay.*`
        // when mounted with `userxattr`) would let a layer redirect or hide
        // paths of other layers; they are never taken from a tar.
        meta.xattrs.retain(|(k, _)| {
            let k = k.as_bytes();
            !k.starts_with(b"trusted.overlay.") && !k.starts_with(b"user.overlay.")
        });
        Ok(meta)
    }

    fn times(&self) -> Timestamps {
        let t = Timespec {
            tv_sec: self.mtime.0,
            tv_nsec: self.mtime.1 as _,
        };
        Timestamps {
            last_access: t,
            last_modification: t,
        }
    }

    /// Applies owner, mode, xattrs and mtime through an open (non-`O_PATH`)
    /// descriptor. Owner first: chown clears setuid bits and capabilities.
    pub fn apply_fd(&self, fd: BorrowedFd<'_>, stats: &mut XattrErrors) -> io::Result<()> {
        chown_result(fchown(fd, Some(uid(self.uid)), Some(gid(self.gid))))?;
        fchmod(fd, Mode::from_raw_mode(self.mode))?;
        for (k, v) in &self.xattrs {
            xattr_result(
                fsetxattr(fd, k.as_os_str(), v, XattrFlags::empty()),
                k,
                stats,
            )?;
        }
        futimens(fd, &self.times())?;
        Ok(())
    }

    /// The same for `name` in `dir` without following it (symlinks and
    /// device nodes, which cannot be opened for writing). `chmod` is skipped
    /// for symlinks, which have no mode of their own on Linux.
    pub fn apply_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        is_symlink: bool,
        stats: &mut XattrErrors,
    ) -> io::Result<()> {
        chown_result(chownat(
            dir,
            name,
            Some(uid(self.uid)),
            Some(gid(self.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        ))?;
        if !is_symlink {
            chmodat(dir, name, Mode::from_raw_mode(self.mode), AtFlags::empty())?;
        }
        if !self.xattrs.is_empty() {
            // The parent is pinned by its descriptor, so this path cannot be
            // redirected; `lsetxattr` does not follow the last component.
            let path = proc_path(dir, name);
            for (k, v) in &self.xattrs {
                xattr_result(
                    lsetxattr(&path, k.as_os_str(), v, XattrFlags::empty()),
                    k,
                    stats,
                )?;
            }
        }
        self.set_mtime_at(dir, name)
    }

    pub fn set_mtime_at(&self, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        utimensat(dir, name, &self.times(), AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }
}

/// Counts xattrs the filesystem refused (not supported, or not permitted for
/// an unprivileged user); Docker ignores these the same way.
#[derive(Debug, Default)]
pub struct XattrErrors(pub u64);

fn xattr_result(r: rustix::io::Result<()>, name: &OsStr, errs: &mut XattrErrors) -> io::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::NOTSUP | rustix::io::Errno::PERM) => {
            tracing::debug!(xattr = ?name, "filesystem refused xattr; skipped");
            errs.0 += 1;
            Ok(())
        }
        Err(e) => Err(io::Error::other(format!("set xattr {name:?}: {e}"))),
    }
}

/// Without root, files keep the extracting user's ownership.
fn chown_result(r: rustix::io::Result<()>) -> io::Result<()> {
    match r {
        Err(rustix::io::Errno::PERM) if !rustix::process::geteuid().is_root() => Ok(()),
        r => r.map_err(Into::into),
    }
}

pub fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> OsString {
    let mut p = OsString::from(format!("/proc/self/fd/{}/", dir.as_fd().as_raw_fd()));
    p.push(name);
    p
}

fn uid(id: u32) -> Uid {
    Uid::from_raw(id)
}
fn gid(id: u32) -> Gid {
    Gid::from_raw(id)
}

fn to_id(v: u64) -> io::Result<u32> {
    u32::try_from(v)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("id {v} out of range")))
}

fn parse_u64(v: &[u8]) -> io::Result<u64> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad numeric PAX record"))
}

/// PAX times are decimal seconds with an optional fraction: `1700000000.5`.
fn parse_pax_time(v: &[u8]) -> io::Result<(i64, u32)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad PAX time record");
    let s = std::str::from_utf8(v).map_err(|_| bad())?.trim();
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    let mut nanos = 0u32;
    for (i, c) in frac.chars().take(9).enumerate() {
        let d = c.to_digit(10).ok_or_else(bad)?;
        nanos += d * 10u32.pow(8 - i as u32);
    }
    // A negative time with a fraction counts down from the whole second.
    if secs < 0 && nanos > 0 {
        return Ok((secs - 1, 1_000_000_000 - nanos));
    }
    Ok((secs, nanos))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pax_time() {
        assert_eq!(super::parse_pax_time(b"12.5").unwrap(), (12, 500_000_000));
        assert_eq!(super::parse_pax_time(b"7").unwrap(), (7, 0));
        assert!(super::parse_pax_time(b"x").is_err());
    }
}
