//! The OCI runtime spec (`config.json`) of a RUN container, shared by both
//! backends: Docker's defaults for a non-privileged container (namespaces,
//! capability set, seccomp profile, masked and read-only paths, device
//! cgroup rules, `/dev`, `/proc`, `/sys` mounts) plus what the [`RunSpec`]
//! asks for.

use std::path::Path;

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::{rootless, seccomp, Error, Mount, Network, Result, RunSpec};

/// Docker's `PATH` when the environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set (CapEff `00000000a80425fb` for root).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Open files limit of a RUN process (soft and hard), as BuildKit sets it;
/// lowered to kiln's own hard limit when that is smaller and kiln may not
/// raise it (no CAP_SYS_RESOURCE, as in some CI sandboxes).
pub const NOFILE_LIMIT: u64 = 1_048_576;

const CAP_SYS_RESOURCE: u32 = 24;

fn nofile_limit() -> u64 {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(NOFILE_LIMIT);
    // CAP_SYS_RESOURCE of a user namespace does not raise a hard limit.
    let can_raise = caps_effective().is_some_and(|c| c & (1 << CAP_SYS_RESOURCE) != 0)
        && !rootless::in_user_namespace();
    if can_raise {
        NOFILE_LIMIT
    } else {
        NOFILE_LIMIT.min(hard)
    }
}

/// This process's effective capability mask.
fn caps_effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

const MASKED_PATHS: [&str; 10] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Mountpoints every container has; they are created (and removed again)
/// when the rootfs lacks them, as in a `FROM scratch` stage.
pub(crate) const BASE_MOUNTPOINTS: [&str; 3] = ["/proc", "/dev", "/sys"];

/// Paths in the rootfs and the bundle the spec refers to, after the
/// mountpoints were resolved inside the rootfs.
pub struct SpecPaths<'a> {
    /// Host path of the generated resolv.conf and hosts files.
    pub resolv_conf: &'a Path,
    pub hosts: &'a Path,
    /// Symlink-free destinations of `RunSpec::mounts`, same order.
    pub mount_destinations: &'a [String],
    /// Symlink-free destinations of `/etc/resolv.conf` and `/etc/hosts`.
    pub resolv_conf_destination: &'a str,
    pub hosts_destination: &'a str,
    /// `HOME` for the process when its environment has none.
    pub home: &'a str,
    /// The container's cgroup, unique on the machine (ids are unique only
    /// within one state directory).
    pub cgroup: &'a str,
}

/// The runtime spec for `run` (process, mounts, namespaces, security).
pub fn generate(run: &RunSpec, paths: &SpecPaths<'_>) -> Result<Spec> {
    let terminal = matches!(run.stdio, crate::Stdio::Inherit { tty: true });
    let caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    let seccomp = default_seccomp(&caps)?;

    let nofile = nofile_limit();
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if run.network == Network::None {
        namespaces.push(json!({"type": "network"}));
    }

    let config = json!({
        "ociVersion": "1.0.2",
        "root": {"path": run.rootfs, "readonly": false},
        "hostname": run.hostname,
        "process": {
            "terminal": terminal,
            "user": {
                "uid": run.uid,
                "gid": run.gid,
                "additionalGids": run.additional_gids,
                // Docker's, whatever kiln's own umask is: files a RUN step
                // creates get the same modes everywhere.
                "umask": 0o022,
            },
            "args": run.args,
            "env": environment(&run.env, paths.home),
            "cwd": run.cwd,
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            // No new privileges stays off (Docker's default) by leaving the
            // field out: libcontainer 0.7 loads the seccomp filter while it
            // still holds CAP_SYS_ADMIN only when the field is absent; with
            // an explicit `false` the load fails after capabilities drop.
        },
        "mounts": mounts(run, paths),
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": paths.cgroup,
            "resources": resources(),
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": readonly_paths(),
            "seccomp": seccomp,
        },
    });
    serde_json::from_value(config).map_err(|e| Error::Spec(format!("container {}: {e}", run.id)))
}

/// Docker's device rules; none in a user namespace, where no cgroup
/// enforces them (and no device node can be made anyway).
fn resources() -> Value {
    if rootless::in_user_namespace() {
        json!({})
    } else {
        json!({"devices": device_rules()})
    }
}

/// The resolved default profile, computed once per process: the capability
/// set and the kernel do not change between runs.
fn default_seccomp(caps: &[String]) -> Result<Value> {
    static PROFILE: std::sync::OnceLock<std::result::Result<Value, String>> =
        std::sync::OnceLock::new();
    let value = PROFILE.get_or_init(|| {
        seccomp::running_kernel()
            .and_then(|kernel| seccomp::default_profile(caps, kernel))
            .map_err(|e| e.to_string())
            .and_then(|p| serde_json::to_value(p).map_err(|e| e.to_string()))
    });
    match value {
        Ok(v) => Ok(v.clone()),
        Err(e) => Err(Error::Seccomp(e.clone())),
    }
}

/// Docker's read-only paths, plus each cgroup v1 hierarchy under
/// `/sys/fs/cgroup`: libcontainer 0.7 bind-mounts those read-write whatever
/// the cgroup mount's options say, and a listed path is remounted read-only
/// by both runtimes (runc's are read-only already).
fn readonly_paths() -> Vec<String> {
    let mut paths: Vec<String> = READONLY_PATHS.iter().map(|p| p.to_string()).collect();
    if rootless::in_user_namespace() {
        // libcontainer takes the v2 path there (see `rootless`).
        return paths;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split(' ').nth(4).unwrap_or("");
        let fs_type = right.split(' ').next().unwrap_or("");
        if fs_type != "cgroup" {
            continue;
        }
        if let Some(name) = mount_point.strip_prefix("/sys/fs/cgroup/") {
            if !name.is_empty() && !name.contains('/') {
                paths.push(format!("/sys/fs/cgroup/{name}"));
            }
        }
    }
    paths
}

/// `env` with `PATH` and `HOME` added when missing, as Docker does.
pub(crate) fn environment(env: &[String], home: &str) -> Vec<String> {
    let mut out = env.to_vec();
    let has = |key: &str| {
        env.iter()
            .any(|e| e.split_once('=').map(|(k, _)| k) == Some(key))
    };
    if !has("PATH") {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOME") {
        out.push(format!("HOME={home}"));
    }
    out
}

fn mounts(run: &RunSpec, paths: &SpecPaths<'_>) -> Vec<Value> {
    let mut m = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        sys_mount(run.network),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": paths.resolv_conf_destination, "type": "bind",
               "source": paths.resolv_conf, "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}),
        json!({"destination": paths.hosts_destination, "type": "bind",
               "source": paths.hosts, "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}),
    ];
    for (mount, dest) in run.mounts.iter().zip(paths.mount_destinations) {
        m.push(match mount {
            Mount::Bind {
                source, readonly, ..
            } => json!({"destination": dest, "type": "bind", "source": source,
                        "options": ["rbind", if *readonly { "ro" } else { "rw" }, "rprivate"]}),
            Mount::Tmpfs { size, .. } => {
                let mut options = vec!["nosuid".to_string(), "nodev".to_string()];
                if let Some(size) = size {
                    options.push(format!("size={size}"));
                }
                json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options})
            }
        });
    }
    m
}

/// `/sys`: a new sysfs, except in a user namespace sharing the host's
/// network, where the kernel allows sysfs only for a network namespace the
/// user namespace owns: there the host's `/sys`, read-only, as podman does.
fn sys_mount(network: Network) -> Value {
    if rootless::in_user_namespace() && network == Network::Host {
        json!({"destination": "/sys", "type": "bind", "source": "/sys",
               "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
    } else {
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]})
    }
}

/// Docker's device cgroup rules: deny everything, then allow mknod of any
/// device and use of the standard ones.
fn device_rules() -> Vec<Value> {
    let allow = |typ: &str, major: Option<i64>, minor: Option<i64>, access: &str| json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access});
    vec![
        json!({"allow": false, "access": "rwm"}),
        allow("c", None, None, "m"),
        allow("b", None, None, "m"),
        allow("c", Some(1), Some(3), "rwm"),    // null
        allow("c", Some(1), Some(8), "rwm"),    // random
        allow("c", Some(1), Some(7), "rwm"),    // full
        allow("c", Some(5), Some(0), "rwm"),    // tty
        allow("c", Some(1), Some(5), "rwm"),    // zero
        allow("c", Some(1), Some(9), "rwm"),    // urandom
        allow("c", Some(136), None, "rwm"),     // pts/*
        allow("c", Some(5), Some(2), "rwm"),    // ptmx
        allow("c", Some(10), Some(200), "rwm"), // net/tun
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stdio;

    fn run() -> RunSpec {
        RunSpec {
            rootfs: "/rootfs".into(),
            args: vec!["sh".into()],
            env: vec!["A=1".into()],
            cwd: "/".into(),
            uid: 1,
            gid: 2,
            additional_gids: vec![3],
            mounts: vec![Mount::Tmpfs {
                destination: "/t".into(),
                size: Some(4096),
            }],
            network: Network::None,
            hostname: "h".into(),
            stdio: Stdio::Capture,
            id: "c1".into(),
        }
    }

    #[test]
    fn spec_has_docker_defaults() {
        let dests = vec!["/t".to_string()];
        let paths = SpecPaths {
            resolv_conf: Path::new("/b/resolv.conf"),
            hosts: Path::new("/b/hosts"),
            mount_destinations: &dests,
            resolv_conf_destination: "/etc/resolv.conf",
            hosts_destination: "/etc/hosts",
            home: "/root",
            cgroup: "/kiln/c1",
        };
        let spec = generate(&run(), &paths).unwrap();
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["process"]["user"]["additionalGids"], json!([3]));
        assert_eq!(
            v["process"]["env"],
            json!(["A=1", format!("PATH={DEFAULT_PATH}"), "HOME=/root"])
        );
        assert_eq!(
            v["process"]["capabilities"]["effective"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert!(v["process"]["capabilities"]["inheritable"].is_null());
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "network"));
        let mounts = v["mounts"].as_array().unwrap();
        let t = mounts.iter().find(|m| m["destination"] == "/t").unwrap();
        assert_eq!(t["options"], json!(["nosuid", "nodev", "size=4096"]));
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    }
}
