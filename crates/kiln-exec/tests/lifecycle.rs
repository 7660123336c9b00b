//! Cleanup when things go wrong: a helper killed with SIGKILL, stale state
//! of a kiln process that died. (Cancellation is in `cancel.rs`: it affects
//! the whole process.)

mod common;

use std::fs;
use std::time::Duration;

use common::{exists, setup};
use kiln_exec::{cleanup_stale, Error, Runtime};

/// SIGKILLs the helper process whose argv mentions `needle`, once its
/// container's sleep runs. The helper is told apart by its parent (this test
/// process): youki forks the container's init from the helper, so until init
/// execs `sleep` it has the helper's argv too, and a kill aimed by argv alone
/// can hit the container instead.
fn kill_helper(needle: &str) {
    for _ in 0..500 {
        if sleep_running(needle) {
            if let Some(pid) = helper_pid(needle) {
                // SAFETY: sending a signal to a pid.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no helper for {needle}");
}

fn helper_pid(needle: &str) -> Option<i32> {
    let me = std::process::id().to_string();
    fs::read_dir("/proc").unwrap().flatten().find_map(|entry| {
        let pid = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
        let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
        // The fields after the `(comm)` one: state, then the parent's pid.
        let ppid = stat.rsplit(')').next()?.split_whitespace().nth(1)?;
        let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
        let text = String::from_utf8_lossy(&cmdline);
        (ppid == me && text.contains(kiln_exec::helper::MARKER) && text.contains(needle))
            .then_some(pid)
    })
}

fn sleep_running(needle: &str) -> bool {
    let secs = needle.rsplit('-').next().unwrap();
    let wanted = format!("sleep\0{secs}\0").into_bytes();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted))
}

fn killed_helper_is_cleaned_up(runtime: Runtime, secs: &'static str) {
    let Some(env) = setup(runtime) else { return };
    let id = format!("victim-{secs}");
    let spec = env.spec(&id, &["sleep", secs]);
    let needle = id.clone();
    let killer = std::thread::spawn(move || kill_helper(&needle));
    let out = env.run(&spec);
    killer.join().unwrap();
    assert!(
        matches!(out.result, Err(Error::HelperDied { .. })),
        "{:?}",
        out.result
    );
    assert!(
        !sleep_running(&id),
        "the container's process survived its helper"
    );
    assert!(!exists(&env.rootfs().join("etc/hosts")));
    env.assert_clean();
}

/// A helper killed while libcontainer is still creating the container: its
/// state has no init pid yet, so only the cgroup tells what to kill. kiln
/// once waited forever on the pipes the surviving process held.
#[test]
fn helper_killed_while_creating_youki() {
    let Some(env) = setup(Runtime::Youki) else {
        return;
    };
    let id = "creating-1243".to_string();
    let spec = env.spec(&id, &["sleep", "1243"]);
    let state = env.state().join("youki").join(&id).join("state.json");
    let needle = id.clone();
    let killer = std::thread::spawn(move || {
        for _ in 0..100_000 {
            let creating = fs::read_to_string(&state).is_ok_and(|s| s.contains("\"creating\""));
            if let Some(pid) = helper_pid(&needle).filter(|_| creating) {
                // SAFETY: sending a signal to a pid.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        panic!("never saw {needle} being created");
    });
    let out = env.run(&spec);
    killer.join().unwrap();
    assert!(
        matches!(out.result, Err(Error::HelperDied { .. })),
        "{:?}",
        out.result
    );
    assert!(!sleep_running(&id), "the container's process survived");
    env.assert_clean();
}

#[test]
fn killed_helper_youki() {
    killed_helper_is_cleaned_up(Runtime::Youki, "1241")
}

#[test]
fn killed_helper_runc() {
    killed_helper_is_cleaned_up(Runtime::Runc, "1242")
}

fn panicking_callback_still_cleans_up(runtime: Runtime, secs: &str) {
    let Some(env) = setup(runtime) else { return };
    let spec = env.spec(
        "panics",
        &["sh", "-c", &format!("echo hi; exec sleep {secs}")],
    );
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        env.exec.run(&spec, &mut |_, _| panic!("callback failed"))
    }));
    assert!(unwound.is_err());
    assert!(
        !sleep_running(&format!("x-{secs}")),
        "the container outlived the run"
    );
    assert!(!exists(&env.rootfs().join("etc/hosts")));
    env.assert_clean();
}

#[test]
fn panicking_callback_youki() {
    panicking_callback_still_cleans_up(Runtime::Youki, "1261")
}

#[test]
fn panicking_callback_runc() {
    panicking_callback_still_cleans_up(Runtime::Runc, "1262")
}

#[test]
fn stale_bundles_of_dead_owners_are_removed() {
    let dir = kiln_testkit::tempdir();
    let state = dir.path();
    assert_eq!(cleanup_stale(state).unwrap(), Vec::<String>::new());
    let dead = state.join("bundles/dead");
    fs::create_dir_all(&dead).unwrap();
    // A pid that cannot exist (above pid_max).
    fs::write(dead.join("owner"), "youki 4294967 1\n").unwrap();
    let live = state.join("bundles/live");
    fs::create_dir_all(&live).unwrap();
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let start = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(19)
        .unwrap()
        .to_string();
    fs::write(
        live.join("owner"),
        format!("runc {} {start}\n", std::process::id()),
    )
    .unwrap();
    assert_eq!(cleanup_stale(state).unwrap(), vec!["dead".to_string()]);
    assert!(!dead.exists());
    assert!(live.exists(), "a bundle of a running kiln must stay");
}
