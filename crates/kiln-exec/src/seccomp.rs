//! Docker's default seccomp profile, turned into the OCI form for one
//! capability set on this machine's architecture.
//!
//! `data/seccomp-default.json` is moby's `profiles/seccomp/default.json` as
//! shipped with Docker 20.10 (Debian's golang-github-docker-docker-dev). Its
//! rules carry conditions (`includes`/`excludes` on architectures,
//! capabilities and minimum kernel); they are resolved here the way moby's
//! `setupSeccomp` does.

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSyscall};
use serde::Deserialize;

use crate::{Error, Result};

const DEFAULT_PROFILE: &str = include_str!("../data/seccomp-default.json");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    syscalls: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Vec<Arch>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    names: Vec<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// The architecture name moby's profile uses for this build's target, and
/// the matching seccomp architecture.
fn native_arch() -> Option<(&'static str, Arch)> {
    match std::env::consts::ARCH {
        "x86_64" => Some(("amd64", Arch::ScmpArchX86_64)),
        "x86" => Some(("x86", Arch::ScmpArchX86)),
        "aarch64" => Some(("arm64", Arch::ScmpArchAarch64)),
        "arm" => Some(("arm", Arch::ScmpArchArm)),
        "powerpc64" => Some(("ppc64le", Arch::ScmpArchPpc64le)),
        "s390x" => Some(("s390x", Arch::ScmpArchS390x)),
        _ => None,
    }
}

/// Docker's default profile for a process whose bounding set is `caps`
/// (names like `CAP_CHOWN`), on a kernel of version `kernel` (major, minor).
pub(crate) fn default_profile(caps: &[String], kernel: (u32, u32)) -> Result<LinuxSeccomp> {
    let profile: Profile = serde_json::from_str(DEFAULT_PROFILE)
        .map_err(|e| Error::Seccomp(format!("parsing the embedded default profile: {e}")))?;
    let arch = native_arch();
    let mut architectures = Vec::new();
    if let Some((_, native)) = arch {
        if let Some(m) = profile.arch_map.iter().find(|m| m.architecture == native) {
            architectures.push(m.architecture);
            architectures.extend(m.sub_architectures.iter().copied());
        }
    }
    let arch_name = arch.map(|(n, _)| n).unwrap_or("");
    let has_cap = |c: &String| caps.iter().any(|have| have == c);
    let kernel_at_least = |v: &str| -> Result<bool> { Ok(kernel >= parse_kernel(v)?) };

    let mut syscalls = Vec::new();
    for rule in profile.syscalls {
        let ex = &rule.excludes;
        if ex.arches.iter().any(|a| a == arch_name) || ex.caps.iter().any(has_cap) {
            continue;
        }
        if let Some(v) = &ex.min_kernel {
            if kernel_at_least(v)? {
                continue;
            }
        }
        let inc = &rule.includes;
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == arch_name) {
            continue;
        }
        if !inc.caps.iter().all(has_cap) {
            continue;
        }
        if let Some(v) = &inc.min_kernel {
            if !kernel_at_least(v)? {
                continue;
            }
        }
        let mut call = LinuxSyscall::default();
        call.set_names(rule.names)
            .set_action(rule.action)
            .set_errno_ret(rule.errno_ret)
            .set_args(rule.args.filter(|a| !a.is_empty()));
        syscalls.push(call);
    }
    let mut seccomp = LinuxSeccomp::default();
    seccomp
        .set_default_action(profile.default_action)
        .set_default_errno_ret(profile.default_errno_ret)
        .set_architectures(Some(architectures))
        .set_syscalls(Some(syscalls));
    Ok(seccomp)
}

fn parse_kernel(v: &str) -> Result<(u32, u32)> {
    let mut parts = v.split('.');
    let mut num = || -> Option<u32> {
        let p = parts.next()?;
        let digits: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().ok()
    };
    match (num(), num()) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        (Some(major), None) => Ok((major, 0)),
        _ => Err(Error::Seccomp(format!("invalid kernel version {v:?}"))),
    }
}

/// The running kernel's (major, minor) version.
pub(crate) fn running_kernel() -> Result<(u32, u32)> {
    let uts = nix::sys::utsname::uname().map_err(|e| Error::Seccomp(format!("uname: {e}")))?;
    parse_kernel(&uts.release().to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn allowed(s: &LinuxSeccomp, name: &str) -> bool {
        s.syscalls().as_ref().unwrap().iter().any(|c| {
            c.action() == LinuxSeccompAction::ScmpActAllow
                && c.names().iter().any(|n| n == name)
                && c.args().is_none()
        })
    }

    #[test]
    fn default_caps_keep_admin_syscalls_out() {
        let s = default_profile(&caps(&["CAP_CHOWN", "CAP_SYS_CHROOT"]), (6, 1)).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert!(allowed(&s, "read"));
        assert!(allowed(&s, "chroot"), "CAP_SYS_CHROOT rule included");
        assert!(!allowed(&s, "mount"), "mount needs CAP_SYS_ADMIN");
        assert!(!allowed(&s, "clone"), "clone only with flag restrictions");
        if std::env::consts::ARCH == "x86_64" {
            assert!(allowed(&s, "arch_prctl"));
            let archs = s.architectures().as_ref().unwrap();
            assert_eq!(archs[0], Arch::ScmpArchX86_64);
            // clone3 fails with ENOSYS so that glibc falls back to clone.
            let clone3 = s
                .syscalls()
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.names().iter().any(|n| n == "clone3"))
                .unwrap();
            assert_eq!(clone3.errno_ret(), Some(38));
        }
    }

    #[test]
    fn sys_admin_allows_mount() {
        let s = default_profile(&caps(&["CAP_SYS_ADMIN"]), (6, 1)).unwrap();
        assert!(allowed(&s, "mount"));
        assert!(allowed(&s, "clone"));
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_kernel("4.8").unwrap(), (4, 8));
        assert_eq!(parse_kernel("6.18.44-fc").unwrap(), (6, 18));
        assert!(parse_kernel("x").is_err());
    }
}
