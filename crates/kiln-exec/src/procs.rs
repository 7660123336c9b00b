//! Reading `/proc`: a process's start time, parent and children. Shared by
//! the helper (reaping its children) and stale-run cleanup (finding orphans).

use std::fs;

/// Start time of a process in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), to tell a live process from a reused pid.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    stat_field(pid, 19)?.parse().ok()
}

/// The parent pid of `pid` (field 4 of `/proc/<pid>/stat`).
pub(crate) fn parent_of(pid: u32) -> Option<u32> {
    stat_field(pid, 1)?.parse().ok()
}

/// Field `n` counted from the one after the command name (field 3 is 0).
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it don't.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(n).map(str::to_string)
}

pub(crate) fn all_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The children of process `pid`.
pub(crate) fn children_of(pid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| parent_of(p) == Some(pid))
        .collect()
}
