//! User and group lookup inside a root filesystem, the way runc and BuildKit
//! read `/etc/passwd` and `/etc/group` of the image (never the host's).
//!
//! Three callers with slightly different rules:
//! - [`lookup_user`] for `USER` (the RUN process): a name without a group
//!   takes the user's primary group, and the supplementary groups are the
//!   primary gid plus every group that lists the user (current BuildKit;
//!   20.10 leaves the primary gid out); `name:group` gets only that group.
//! - [`lookup_chown`] for `COPY --chown`: as above, except that a numeric uid
//!   without a group gets gid = uid (checked against Docker 20.10: `--chown=1000`
//!   gives 1000:1000 even when uid 1000's primary group is 2000).
//! - [`lookup_file_owner`] for directories WORKDIR creates as `USER`:
//!   BuildKit's file-op `readUser`, which ignores names it cannot find.
//!
//! Files are opened with `openat2(RESOLVE_IN_ROOT)`, so a hostile
//! `/etc/passwd -> /host/etc/shadow` symlink resolves inside the rootfs.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{openat, openat2, Mode, OFlags, ResolveFlags, CWD};

/// Numeric identity of a process or of copied files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (for a RUN process); sorted, without duplicates.
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("invalid user specification {spec:?}: {why}")]
    Invalid { spec: String, why: &'static str },
    #[error("unable to find user {name}: no matching entries in {file}")]
    NoUser { name: String, file: PathBuf },
    #[error("unable to find group {name}: no matching entries in {file}")]
    NoGroup { name: String, file: PathBuf },
    #[error("read {file}: {source}")]
    Read { file: PathBuf, source: io::Error },
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves `USER` (`name|uid[:group|gid]`) for a RUN process.
pub fn lookup_user(rootfs: &Path, spec: &str) -> Result<Ids, UserError> {
    resolve(rootfs, spec, false)
}

/// Resolves `COPY --chown=name|uid[:group|gid]` to the owner of copied files.
pub fn lookup_chown(rootfs: &Path, spec: &str) -> Result<(u32, u32), UserError> {
    let ids = resolve(rootfs, spec, true)?;
    Ok((ids.uid, ids.gid))
}

/// Resolves the owner of directories a file step creates as the current
/// `USER` (WORKDIR), as BuildKit's file-op `readUser` does: a numeric uid
/// without a group gets gid = uid, a name takes its passwd uid and gid, and a
/// name missing from the image's passwd (or group) is not an error — the
/// user part stays 0 (the group part keeps the user's gid).
pub fn lookup_file_owner(rootfs: &Path, spec: &str) -> Result<(u32, u32), UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let numeric = |s: &str| {
        if s == "root" {
            Some(0)
        } else {
            s.parse::<u32>().ok()
        }
    };
    let (uid, mut gid) = match numeric(user) {
        Some(uid) => (uid, uid),
        None => read_table(rootfs, "etc/passwd", parse_passwd)?
            .iter()
            .flatten()
            .find(|e| e.name == user)
            .map_or((0, 0), |e| (e.uid, e.gid)),
    };
    if let Some(g) = group {
        gid = match numeric(g) {
            Some(gid) => gid,
            None => read_table(rootfs, "etc/group", parse_group)?
                .iter()
                .flatten()
                .find(|e| e.name == g)
                .map_or(gid, |e| e.gid),
        };
    }
    Ok((uid, gid))
}

fn resolve(rootfs: &Path, spec: &str, chown: bool) -> Result<Ids, UserError> {
    let invalid = |why| UserError::Invalid {
        spec: spec.to_string(),
        why,
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(invalid("the user part is empty"));
    }
    if group.is_some_and(|g| g.is_empty() || g.contains(':')) {
        return Err(invalid("the group part is empty or has a second ':'"));
    }
    let passwd_path = rootfs.join("etc/passwd");
    let group_path = rootfs.join("etc/group");
    // Numeric ids work without the files; names need them.
    let passwd = read_table(rootfs, "etc/passwd", parse_passwd)?;
    let groups = read_table(rootfs, "etc/group", parse_group)?;

    let (uid, primary, user_name) = match user.parse::<u32>() {
        Ok(uid) => match passwd.iter().flatten().find(|e| e.uid == uid) {
            Some(e) => (uid, if chown { uid } else { e.gid }, Some(e.name.clone())),
            // runc: unknown numeric uid runs with gid 0; Docker's --chown uses gid = uid.
            None => (uid, if chown { uid } else { 0 }, None),
        },
        Err(_) => {
            let e = passwd
                .iter()
                .flatten()
                .find(|e| e.name == user)
                .ok_or_else(|| UserError::NoUser {
                    name: user.to_string(),
                    file: passwd_path.clone(),
                })?;
            (e.uid, e.gid, Some(e.name.clone()))
        }
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                groups
                    .iter()
                    .flatten()
                    .find(|e| e.name == g)
                    .ok_or_else(|| UserError::NoGroup {
                        name: g.to_string(),
                        file: group_path.clone(),
                    })?
                    .gid
            }
        },
    };
    let mut additional_gids = vec![gid];
    // `USER name:group` names the groups: no memberships from /etc/group
    // (BuildKit testUser: `USER dockerio:dockerio` gives `id -G` = 1001).
    if let (Some(name), None) = (&user_name, group) {
        additional_gids.extend(
            groups
                .iter()
                .flatten()
                .filter(|g| g.members.iter().any(|m| m == name))
                .map(|g| g.gid),
        );
    }
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(Ids {
        uid,
        gid,
        additional_gids,
    })
}

/// Reads `rel` inside `rootfs`; a missing file (or a missing rootfs dir such
/// as `FROM scratch` without /etc) is `None`, any other failure an error.
fn read_table<T>(
    rootfs: &Path,
    rel: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<Vec<T>>, UserError> {
    let file = rootfs.join(rel);
    let err = |source| UserError::Read {
        file: file.clone(),
        source,
    };
    let root: OwnedFd = openat(
        CWD,
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(e.into()))?;
    let fd = match openat2(
        &root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(None),
        Err(e) => return Err(err(e.into())),
    };
    let mut text = String::new();
    std::fs::File::from(fd)
        .read_to_string(&mut text)
        .map_err(err)?;
    Ok(Some(text.lines().filter_map(parse).collect()))
}

fn parse_passwd(line: &str) -> Option<PasswdEntry> {
    if line.starts_with('#') {
        return None;
    }
    let mut f = line.split(':');
    let name = f.next()?.trim().to_string();
    let _pw = f.next()?;
    let uid = f.next()?.trim().parse().ok()?;
    let gid = f.next()?.trim().parse().ok()?;
    Some(PasswdEntry { name, uid, gid })
}

fn parse_group(line: &str) -> Option<GroupEntry> {
    if line.starts_with('#') {
        return None;
    }
    let mut f = line.split(':');
    let name = f.next()?.trim().to_string();
    let _pw = f.next()?;
    let gid = f.next()?.trim().parse().ok()?;
    let members = f
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect();
    Some(GroupEntry { name, gid, members })
}
