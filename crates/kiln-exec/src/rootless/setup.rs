//! What a rootless kiln needs from the machine — subordinate id ranges,
//! `newuidmap`/`newgidmap`, user namespaces allowed — each missing piece
//! an error that says how to add it.

use std::path::{Path, PathBuf};

/// A machine not set up for rootless kiln.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("rootless kiln: user {user} (uid {uid}) has no subordinate {kind} range in {file}; add one as root: `usermod --add-subuids {free} --add-subgids {free} {user}` (any range of 65536 ids no other user has), or run kiln as root")]
    NoRange {
        user: String,
        uid: u32,
        kind: &'static str,
        file: &'static str,
        /// A range after every one in the file, `FIRST-LAST`.
        free: String,
    },
    #[error("rootless kiln: reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rootless kiln: {program} not found (in PATH, /usr/bin, /usr/sbin, /bin); it writes the user namespace's id map from /etc/subuid and /etc/subgid: install it as root with `apt-get install uidmap` (Debian, Ubuntu) or `dnf install shadow-utils` (Fedora)")]
    NoMapper { program: &'static str },
    #[error("rootless kiln: user namespaces are disabled for normal users ({sysctl} = 0); enable them as root with `sysctl -w {sysctl}={enable}` (and in /etc/sysctl.d/ to keep it), or run kiln as root")]
    Disabled {
        sysctl: &'static str,
        enable: &'static str,
    },
    #[error("rootless kiln: creating a user namespace failed: {0}; user namespaces may be restricted here (Ubuntu 24.04: `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` or an AppArmor profile for kiln; in a container: seccomp or a missing --privileged), or run kiln as root")]
    Unshare(String),
    #[error("rootless kiln: {program} {args}: {message}; check the ranges of this user in /etc/subuid and /etc/subgid (they must not overlap another user's) and that {program} is setuid root or has its file capability (`ls -l {program}`)")]
    Mapping {
        program: String,
        args: String,
        message: String,
    },
    #[error("rootless kiln: {0}")]
    Other(String),
}

/// One `/etc/subuid` or `/etc/subgid` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u32,
    pub count: u32,
}

/// The ranges of `user` (by name or by uid) in the text of an
/// `/etc/subuid`-format file, in file order.
pub fn ranges_in(text: &str, user: &str, uid: u32) -> Vec<Range> {
    let uid = uid.to_string();
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().splitn(3, ':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            if owner != user && owner != uid {
                return None;
            }
            let range = Range {
                start: start.trim().parse().ok()?,
                count: count.trim().parse().ok()?,
            };
            (range.count > 0).then_some(range)
        })
        .collect()
}

/// The first multiple of 65536, at least 100000's, after every range of an
/// `/etc/subuid`-format text: where a new user's range fits.
pub fn free_start(text: &str) -> u64 {
    let end = text
        .lines()
        .filter_map(|line| {
            let mut f = line.trim().split(':').skip(1);
            let start: u64 = f.next()?.trim().parse().ok()?;
            let count: u64 = f.next()?.trim().parse().ok()?;
            Some(start + count)
        })
        .max()
        .unwrap_or(0);
    end.div_ceil(65536).max(2) * 65536
}

/// The user's ranges in `file` (`/etc/subuid` or `/etc/subgid`).
pub fn ranges(file: &'static str, user: &str, uid: u32) -> Result<Vec<Range>, SetupError> {
    let kind = if file.ends_with("subgid") {
        "gid"
    } else {
        "uid"
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(SetupError::Read {
                path: file.into(),
                source,
            })
        }
    };
    let found = ranges_in(&text, user, uid);
    if found.is_empty() {
        let first = free_start(&text);
        return Err(SetupError::NoRange {
            user: user.to_string(),
            uid,
            kind,
            file,
            free: format!("{first}-{}", first + 65535),
        });
    }
    Ok(found)
}

/// `program` in `PATH` or the usual places (a user's `PATH` may lack
/// `/usr/sbin`).
pub fn find_mapper(program: &'static str) -> Result<PathBuf, SetupError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or(SetupError::NoMapper { program })
}

/// Debian's and older Ubuntu's `kernel.unprivileged_userns_clone`, and
/// `user.max_user_namespaces` everywhere: 0 forbids what kiln needs.
pub fn check_sysctls() -> Result<(), SetupError> {
    let checks = [
        (
            "/proc/sys/kernel/unprivileged_userns_clone",
            "kernel.unprivileged_userns_clone",
            "1",
        ),
        (
            "/proc/sys/user/max_user_namespaces",
            "user.max_user_namespaces",
            "15000",
        ),
    ];
    for (path, sysctl, enable) in checks {
        if read_number(Path::new(path)) == Some(0) {
            return Err(SetupError::Disabled { sysctl, enable });
        }
    }
    Ok(())
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The `newuidmap`/`newgidmap` arguments after the pid: the user's own id
/// as 0, then the subordinate ranges one after the other from 1.
pub fn map_args(own: u32, ranges: &[Range]) -> Vec<String> {
    let mut args = vec!["0".to_string(), own.to_string(), "1".to_string()];
    let mut inside: u64 = 1;
    for r in ranges {
        args.extend([inside.to_string(), r.start.to_string(), r.count.to_string()]);
        inside += u64::from(r.count);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:200000:65536\nbob:300000:10\n# x\nalice:400000:5\n";
        assert_eq!(
            ranges_in(text, "alice", 1000),
            vec![
                Range {
                    start: 100000,
                    count: 65536
                },
                Range {
                    start: 400000,
                    count: 5
                }
            ]
        );
        assert_eq!(ranges_in(text, "carol", 1001)[0].start, 200000);
        assert!(ranges_in(text, "dave", 1002).is_empty());
        assert!(ranges_in("eve:1:0\neve:x:5\n", "eve", 7).is_empty());
    }

    #[test]
    fn a_free_range_comes_after_all_others() {
        assert_eq!(free_start(""), 131072);
        assert_eq!(free_start("a:100000:65536\n"), 196608);
        assert_eq!(free_start("a:100000:65536\nb:262144:65536\n"), 327680);
    }

    #[test]
    fn maps_put_the_user_at_0_and_the_ranges_after_it() {
        let ranges = [
            Range {
                start: 100000,
                count: 65536,
            },
            Range {
                start: 400000,
                count: 5,
            },
        ];
        assert_eq!(
            map_args(1000, &ranges).join(" "),
            "0 1000 1 1 100000 65536 65537 400000 5"
        );
    }
}
