//! Copying out of an untrusted image onto the host (`kiln cp`,
//! `-o type=local`): what is not recreated unless the caller asks for it.
//! Device nodes would give whoever made the image access to the host's
//! disks; setuid/setgid bits and foreign owners would hand out privileges.

/// What a copy onto the host keeps; `Default` keeps none of it. Entries
/// that lose something are reported in [`super::CopyStats::skipped`], named
/// by their host path with control characters escaped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostPolicy {
    /// Create block and character devices (otherwise skipped).
    pub devices: bool,
    /// Keep setuid/setgid bits (otherwise cleared).
    pub setid: bool,
    /// Keep the image's uid/gid (otherwise the copying user's own).
    pub owners: bool,
}

impl HostPolicy {
    /// The owner an entry gets on the host, and a note when that is not
    /// the image's.
    pub(crate) fn owner(&self, uid: u32, gid: u32, shown: &str) -> ((u32, u32), Option<String>) {
        if self.owners {
            return ((uid, gid), None);
        }
        let me = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        let note = ((uid, gid) != me).then(|| {
            format!(
                "{}: owner {uid}:{gid} not kept, now {}:{} (--archive or archive=true keeps them)",
                shown.escape_debug(),
                me.0,
                me.1
            )
        });
        (me, note)
    }

    /// The mode bits an entry gets on the host, and a note when setuid or
    /// setgid bits were dropped.
    pub(crate) fn mode(&self, mode: u32, shown: &str) -> (u32, Option<String>) {
        if self.setid || mode & 0o6000 == 0 {
            return (mode, None);
        }
        let note = format!(
            "{}: setuid/setgid bits not kept, mode {:04o} instead of {mode:04o} (--keep-setid or keep-setid=true keeps them)",
            shown.escape_debug(),
            mode & !0o6000
        );
        (mode & !0o6000, Some(note))
    }

    /// Why a device node is not created, or `None` when it may be.
    pub(crate) fn refuse_device(&self, kind: &str, rdev: u64, shown: &str) -> Option<String> {
        (!self.devices).then(|| {
            let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
            format!(
                "{}: {kind} device {major}:{minor} skipped: device nodes are not created on the host (--devices or devices=true creates them)",
                shown.escape_debug()
            )
        })
    }
}
