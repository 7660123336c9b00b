//! Helpers shared by kiln's integration tests: where the harness
//! (`scripts/setup.sh`, `scripts/services.sh`) put the real components, and
//! checks that fail loudly when one is missing.
//!
//! A test that needs root, overlayfs, dockerd or a registry calls the matching
//! `require_*` first. Under `KILN_REQUIRE_ALL=1` (set by `scripts/test.sh`, so
//! in CI) a missing component is a test failure; otherwise the test is skipped
//! with a message that says what is missing and how to get it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether a missing component must fail the test instead of skipping it.
pub fn strict() -> bool {
    std::env::var_os("KILN_REQUIRE_ALL").is_some_and(|v| v == "1")
        || std::env::var_os("CI").is_some_and(|v| v == "true")
}

/// Returns `true` when the component is there; otherwise panics (strict) or
/// prints why the test is skipped and returns `false`.
#[must_use]
pub fn require(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    let msg =
        format!("{what} is missing; run `sudo scripts/test.sh`, which installs and starts it");
    if strict() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

#[must_use]
pub fn require_root() -> bool {
    require(
        "root (tests mount overlayfs and start containers)",
        is_root(),
    )
}

/// The Docker CLI that matches the harness's dockerd (20.10).
pub fn docker() -> Command {
    Command::new("/usr/bin/docker")
}

#[must_use]
pub fn require_docker() -> bool {
    let up = docker()
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    require("dockerd (Docker engine)", up)
}

fn cache_dir() -> PathBuf {
    std::env::var_os("KILN_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kiln-test"))
}

/// Root filesystem tar of a static busybox with every applet, /etc/passwd and
/// the host's CA bundle. Docker knows it as `busybox:latest`.
pub fn busybox_rootfs_tar() -> PathBuf {
    cache_dir().join("busybox-rootfs.tar")
}

/// Root filesystem tar of Debian bookworm (debootstrap minbase). Docker knows
/// it as `debian:bookworm`.
pub fn debian_rootfs_tar() -> PathBuf {
    cache_dir().join("debian-bookworm-rootfs.tar")
}

#[must_use]
pub fn require_base_images() -> bool {
    require(
        "base root filesystems (scripts/setup.sh)",
        busybox_rootfs_tar().is_file() && debian_rootfs_tar().is_file(),
    )
}

/// The open registry: `127.0.0.1:5000`.
pub const REGISTRY: &str = "127.0.0.1:5000";
/// The registry with htpasswd basic auth: `127.0.0.1:5001`.
pub const AUTH_REGISTRY: &str = "127.0.0.1:5001";
pub const AUTH_USER: &str = "kiln";
pub const AUTH_PASSWORD: &str = "kiln-secret";

fn registry_answers(addr: &str) -> bool {
    std::net::TcpStream::connect(addr).is_ok()
}

#[must_use]
pub fn require_registries() -> bool {
    require(
        "the test registries on 127.0.0.1:5000 and :5001",
        registry_answers(REGISTRY) && registry_answers(AUTH_REGISTRY),
    )
}

/// A fresh temporary directory that is removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kiln-test-")
        .tempdir()
        .expect("create temporary directory")
}

/// Mount points at or below `dir` (`/proc/self/mountinfo`, field 5).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(&dir))
        .map(str::to_string)
        .collect()
}

/// Backdates what a killed kiln left in `root`'s active snapshots: the next
/// kiln then removes it at once (it leaves anything younger than a minute
/// alone, as a live build may not have locked it yet).
pub fn age_active_snapshots(root: &Path) {
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    let active = root.join("snapshots/active");
    for e in std::fs::read_dir(&active).expect("read snapshots/active") {
        let f = std::fs::File::open(e.expect("dir entry").path()).expect("open entry");
        f.set_times(std::fs::FileTimes::new().set_modified(old))
            .expect("backdate entry");
    }
}
