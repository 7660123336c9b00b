//! Leftovers of runs whose kiln process was killed with SIGKILL (a killed
//! helper is handled by the kiln process that started it): bundle
//! directories and runtime state of containers nobody waits for any more.
//!
//! Helper processes whose kiln is gone (and container processes forked from
//! them that never started) are killed first: the parent-death signal
//! normally ends them, this catches whatever slipped through.
//!
//! Each bundle holds `owner` (`<backend> <pid> <start time>` of the kiln
//! process that made it); a bundle whose owner no longer runs is stale. The
//! mountpoints such a run created in its rootfs are not removed: the
//! snapshot of an unfinished step is garbage anyway.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::helper::Backend;
use crate::procs::{all_pids, parent_of, start_time};
use crate::{Error, Result};

pub(crate) const BUNDLES: &str = "bundles";
const OWNER: &str = "owner";

pub(crate) fn write_owner(bundle: &Path, backend: Backend) -> Result<()> {
    let pid = std::process::id();
    let start = start_time(pid).unwrap_or(0);
    let path = bundle.join(OWNER);
    fs::write(&path, format!("{} {pid} {start}\n", backend.name()))
        .map_err(|e| Error::io("writing", path, e))
}

/// Processes running the helper on a bundle under `bundles` (helpers, and
/// the not yet started container processes forked from them, which carry
/// the same argv), each with the kiln pid its argv names.
fn helper_processes(bundles: &Path) -> Vec<(u32, Option<u32>)> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if argv.get(1) != Some(&crate::helper::MARKER.as_bytes()) {
                return None;
            }
            let bundle = Path::new(std::ffi::OsStr::from_bytes(
                argv.get(3).unwrap_or(&&b""[..]),
            ));
            let kiln = argv
                .get(6)
                .and_then(|p| std::str::from_utf8(p).ok()?.parse().ok());
            bundle.starts_with(bundles).then_some((pid, kiln))
        })
        .collect()
}

/// SIGKILLs helper processes whose kiln is gone: the kiln pid in their argv
/// no longer runs, or they were re-parented away from it.
fn kill_orphaned_helpers(bundles: &Path) {
    for (pid, kiln) in helper_processes(bundles) {
        let kiln_gone = kiln.is_none_or(|k| start_time(k).is_none());
        // A container process's parent is its helper, not kiln.
        let adopted = parent_of(pid) == Some(1) && kiln != Some(1);
        if kiln_gone || adopted {
            sigkill(pid);
        }
    }
}

/// SIGKILLs what is left of a killed helper working on `bundle`: container
/// processes forked from it that never started. Those are in no cgroup yet,
/// or not in all of them, so the runtime's delete cannot find them.
pub(crate) fn kill_unstarted(bundle: &Path) {
    for (pid, _) in helper_processes(bundle) {
        sigkill(pid);
    }
}

fn sigkill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn owner_alive(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Kills and deletes container `id` of `backend` if its runtime state exists.
pub(crate) fn delete_container(
    backend: Backend,
    state_root: &Path,
    id: &str,
    runc: &Path,
) -> std::result::Result<(), String> {
    match backend {
        Backend::Youki => crate::helper::delete_youki(state_root, id),
        Backend::Runc => crate::helper::delete_runc(runc, state_root, id),
    }
}

/// Removes containers and bundles under `state_dir` left by kiln processes
/// that no longer run. Safe while other kiln processes use the same state
/// directory: their runs have live owners. Returns the ids it cleaned up.
pub fn cleanup_stale(state_dir: &Path) -> Result<Vec<String>> {
    let bundles = state_dir.join(BUNDLES);
    // Helpers name their bundle by the canonical path (see run.rs).
    kill_orphaned_helpers(&fs::canonicalize(&bundles).unwrap_or_else(|_| bundles.clone()));
    let entries = match fs::read_dir(&bundles) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing", bundles, e)),
    };
    let runc = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("runc"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| "/usr/sbin/runc".into());
    let mut cleaned = Vec::new();
    let mut problems = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", &bundles, e))?;
        let dir = entry.path();
        let id = entry.file_name().to_string_lossy().into_owned();
        let owner = fs::read_to_string(dir.join(OWNER)).unwrap_or_default();
        let fields: Vec<&str> = owner.split_whitespace().collect();
        let (backends, alive) = match fields.as_slice() {
            [backend, pid, start] => {
                let alive = match (pid.parse(), start.parse()) {
                    (Ok(pid), Ok(start)) => owner_alive(pid, start),
                    _ => false,
                };
                let b = if *backend == "runc" {
                    Backend::Runc
                } else {
                    Backend::Youki
                };
                (vec![b], alive)
            }
            // Owner not written yet: either being created right now or its
            // kiln died at once. Only clean it if it is old.
            _ => {
                let young = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() < 60);
                (vec![Backend::Youki, Backend::Runc], young)
            }
        };
        if alive {
            continue;
        }
        for b in backends {
            if let Err(e) = delete_container(b, &state_dir.join(b.name()), &id, &runc) {
                problems.push(format!("container {id}: {e}"));
            }
        }
        if let Err(e) = fs::remove_dir_all(&dir) {
            problems.push(format!("removing {}: {e}", dir.display()));
        }
        cleaned.push(id);
    }
    if problems.is_empty() {
        Ok(cleaned)
    } else {
        Err(Error::Runtime {
            id: "(stale)".into(),
            runtime: "cleanup",
            message: problems.join("; "),
        })
    }
}
