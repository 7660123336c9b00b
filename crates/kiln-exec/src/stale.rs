//! Leftovers of runs whose kiln process was killed with SIGKILL (a killed
//! helper is handled by the kiln process that started it): bundle
//! directories and runtime state of containers nobody waits for any more.
//!
//! Each bundle holds `owner` (`<backend> <pid> <start time>` of the kiln
//! process that made it); a bundle whose owner no longer runs is stale. The
//! mountpoints such a run created in its rootfs are not removed: the
//! snapshot of an unfinished step is garbage anyway.

use std::fs;
use std::path::Path;

use crate::helper::Backend;
use crate::{Error, Result};

pub(crate) const BUNDLES: &str = "bundles";
const OWNER: &str = "owner";

/// Start time of a process in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), to tell a live owner from a reused pid.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it don't.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

pub(crate) fn write_owner(bundle: &Path, backend: Backend) -> Result<()> {
    let pid = std::process::id();
    let start = start_time(pid).unwrap_or(0);
    let path = bundle.join(OWNER);
    fs::write(&path, format!("{} {pid} {start}\n", backend.name()))
        .map_err(|e| Error::io("writing", path, e))
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
