//! The Executor conformance suite, run against both backends. Needs root and
//! the busybox rootfs (`scripts/setup.sh`); skipped otherwise outside CI.

mod common;

use std::fs;
use std::time::Duration;

use common::{exists, setup};
use kiln_exec::{Error, ExitStatus, Mount, Network, Runtime, Stdio};

/// Kills, from the host, the process whose argv is exactly `argv`, once it
/// shows up.
fn kill_when_running(argv: &[&str], signal: i32) {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    for _ in 0..500 {
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if fs::read(entry.path().join("cmdline")).is_ok_and(|c| c == wanted) {
                // SAFETY: sending a signal to a pid.
                unsafe { libc::kill(pid, signal) };
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{argv:?} never started");
}

fn output_and_exit_codes(runtime: Runtime) {
    let Some(env) = setup(runtime) else { return };
    let out = env.sh("echo", "echo hello; echo oops >&2; exit 3");
    assert_eq!(out.status(), ExitStatus::Code(3));
    assert_eq!(out.stdout, "hello\n");
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(env.sh("true", "true").status(), ExitStatus::Code(0));
    // Larger output than a pipe buffer arrives complete.
    let big = env.sh("big", "i=0; while [ $i -lt 2000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done");
    assert_eq!(big.ok().lines().count(), 2000);
    // stdin is an empty pipe (what `runc run` gives for a /dev/null stdin).
    assert_eq!(env.sh("stdin", "cat; echo end").ok(), "end\n");
    env.assert_clean();
}

fn process_identity(runtime: Runtime) {
    let Some(env) = setup(runtime) else { return };
    let mut spec = env.spec(
        "ident",
        &[
            "sh",
            "-c",
            "echo $FOO; pwd; id -u; id -g; id -G; echo $HOME; head -1 /etc/hosts; stat -c %a /work /work/sub; echo err > /dev/stderr; [ -p /dev/stdin ] && echo stdin-pipe",
        ],
    );
    spec.env.push("FOO=bar baz".into());
    spec.cwd = "/work/sub".into();
    spec.uid = 1000;
    spec.gid = 1001;
    spec.additional_gids = vec![10, 20];
    let out = env.run(&spec);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(
        lines,
        [
            "bar baz",
            "/work/sub",
            "1000",
            "1001",
            "1001 10 20",
            "/",
            "127.0.0.1\tlocalhost kiln-test",
            "755",
            "755",
            "stdin-pipe",
        ]
    );
    // The stdio pipes belong to the process user (runc's fixStdioPermissions).
    assert_eq!(out.stderr, "err\n");
    assert!(
        env.rootfs().join("work/sub").is_dir(),
        "the working directory stays"
    );
    // root's HOME comes from the rootfs's /etc/passwd.
    assert_eq!(env.sh("home", "echo $HOME").ok(), "/root\n");
    env.assert_clean();
}

fn hostname_and_etc_files(runtime: Runtime) {
    let Some(env) = setup(runtime) else { return };
    let etc = env.rootfs().join("etc");
    assert!(!exists(&etc.join("hosts")) && !exists(&etc.join("resolv.conf")));
    // An old mtime, so that a change to it cannot hide in the same second.
    let old = std::process::Command::new("touch")
        .args(["-d", "2001-01-01"])
        .arg(&etc)
        .status()
        .unwrap();
    assert!(old.success());
    let mtime = || fs::metadata(&etc).unwrap().modified().unwrap();
    let before = mtime();
    let out = env.sh("etc", "hostname; cat /etc/hosts; grep -c nameserver /etc/resolv.conf; echo x > /etc/hosts || echo ro; ls /etc >/dev/null");
    let text = out.ok();
    assert!(
        text.starts_with("kiln-test\n127.0.0.1\tlocalhost kiln-test\n"),
        "{text}"
    );
    assert!(text.ends_with("ro\n"), "{text}");
    assert_eq!(mtime(), before, "/etc's mtime changed by the mountpoints");
    assert!(
        !exists(&etc.join("hosts")),
        "created mountpoint /etc/hosts left in the rootfs"
    );
    assert!(
        !exists(&etc.join("resolv.conf")),
        "created mountpoint /etc/resolv.conf left"
    );
    // An existing file is mounted over and kept as it was.
    fs::write(etc.join("hosts"), "mine\n").unwrap();
    assert!(env
        .sh("etc2", "cat /etc/hosts")
        .ok()
        .contains("localhost kiln-test"));
    assert_eq!(fs::read_to_string(etc.join("hosts")).unwrap(), "mine\n");
    env.assert_clean();
}

fn network_modes(runtime: Runtime) {
    let Some(env) = setup(runtime) else { return };
    let list = "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '";
    let mut spec = env.spec(
        "netnone",
        &["sh", "-c", &format!("{list}; ip link show lo")],
    );
    spec.network = Network::None;
    let out = env.run(&spec);
    let text = out.ok();
    assert!(text.starts_with("lo\n"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| !l.contains(' ') && !l.is_empty())
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("UP"), "loopback is up: {text}");
    let host = fs::read_to_string("/proc/net/dev").unwrap();
    let other = host
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim())
        .find(|i| *i != "lo");
    let out = env.sh("nethost", list);
    if let Some(iface) = other {
        assert!(
            out.ok().lines().any(|l| l == iface),
            "host interface {iface} not seen: {}",
            out.stdout
        );
    }
    env.assert_clean();
}

fn mounts(runtime: Runtime) {
    let Some(env) = setup(runtime) else { return };
    let data = env.dir.path().join("data");
    let rw = env.dir.path().join("rw");
    fs::create_dir_all(&data).unwrap();
    fs::create_dir_all(&rw).unwrap();
    fs::write(data.join("in.txt"), "from host\n").unwrap();
    let file = env.dir.path().join("single.txt");
    fs::write(&file, "single\n").unwrap();
    let mut spec = env.spec(
        "mounts",
        &[
            "sh",
            "-c",
            "cat /src/in.txt /one/file.txt; touch /src/x 2>/dev/null || echo ro-ok; \
                       echo out > /out/result; grep ' /scratch ' /proc/mounts | cut -d' ' -f3; \
                       echo t > /scratch/t && cat /scratch/t",
        ],
    );
    spec.mounts = vec![
        Mount::Bind {
            source: data.clone(),
            destination: "/src".into(),
            readonly: true,
        },
        Mount::Bind {
            source: rw.clone(),
            destination: "/out".into(),
            readonly: false,
        },
        Mount::Bind {
            source: file,
            destination: "/one/file.txt".into(),
            readonly: true,
        },
        Mount::Tmpfs {
            destination: "/scratch".into(),
            size: Some(1 << 20),
        },
    ];
    let out = env.run(&spec);
    assert_eq!(out.ok(), "from host\nsingle\nro-ok\ntmpfs\nt\n");
    assert_eq!(fs::read_to_string(rw.join("result")).unwrap(), "out\n");
    for gone in ["src", "out", "one", "scratch"] {
        assert!(
            !exists(&env.rootfs().join(gone)),
            "mountpoint /{gone} left in the rootfs"
        );
    }
    env.assert_clean();
}

fn devices_proc_security(runtime: Runtime) {
    let Some(env) = setup(runtime) else { return };
    let out = env.sh(
        "sec",
        "echo x > /dev/null && head -c 4 /dev/zero | wc -c && test -c /dev/urandom && test -c /dev/full \
         && test -c /dev/tty && test -e /dev/ptmx && test -d /dev/pts && test -d /dev/shm && test -d /dev/mqueue \
         && grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status | tr -d '\\t' \
         && touch /sys/x 2>/dev/null || echo sys-ro; cat /proc/1/cmdline | tr '\\0' ' '; echo; \
         ulimit -n; mount -t tmpfs none /mnt 2>/dev/null || echo no-mount; \
         for d in /sys/fs/cgroup/*/; do mkdir $d/kiln-x 2>/dev/null && echo cgroup''-writable-$d; done; umask",
    );
    let text = out.ok();
    assert!(text.contains("CapEff:00000000a80425fb"), "{text}");
    assert!(text.contains("Seccomp:2"), "{text}");
    assert!(text.contains("NoNewPrivs:0"), "{text}");
    assert!(text.contains("sys-ro"), "{text}");
    assert!(text.contains("no-mount"), "{text}");
    assert!(!text.contains("cgroup-writable"), "{text}");
    assert!(text.ends_with("\n0022\n"), "umask: {text}");
    assert!(text.starts_with("4\n"), "{text}");
    assert!(
        text.contains("sh -c"),
        "pid 1 is the process itself: {text}"
    );
    env.assert_clean();
}

fn missing_executable(runtime: Runtime) {
    let Some(env) = setup(runtime) else { return };
    let out = env.run(&env.spec("missing", &["no-such-command", "arg"]));
    match &out.result {
        Err(e @ Error::ExecutableNotFound { name }) => {
            assert_eq!(name, "no-such-command");
            assert_eq!(e.exit_code(), Some(127));
            assert_eq!(e.to_string(), "executable file not found: no-such-command");
        }
        other => panic!("expected ExecutableNotFound, got {other:?}"),
    }
    let out = env.run(&env.spec("notexec", &["/etc/passwd"]));
    assert!(
        matches!(out.result, Err(Error::ExecutableNotRunnable { .. })),
        "{:?}",
        out.result
    );
    env.assert_clean();
}

fn killed_by_signal(runtime: Runtime, secs: &'static str) {
    let Some(env) = setup(runtime) else { return };
    let spec = env.spec("killed", &["sleep", secs]);
    let argv = ["sleep", secs];
    let killer = std::thread::spawn(move || kill_when_running(&argv, libc::SIGKILL));
    let out = env.run(&spec);
    killer.join().unwrap();
    assert_eq!(out.status(), ExitStatus::Signal(9));
    assert_eq!(out.status().code(), 137);
    env.assert_clean();
}

/// A background process left behind (it holds stdout open) ends with the
/// container: the run returns when the main process exits.
fn background_processes_die_with_the_container(runtime: Runtime, secs: &str) {
    let Some(env) = setup(runtime) else { return };
    let out = env.sh("daemon", &format!("sleep {secs} & echo started"));
    assert_eq!(out.ok(), "started\n");
    let wanted = format!("sleep\0{secs}\0").into_bytes();
    let alive = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted));
    assert!(!alive, "the background sleep outlived its container");
    env.assert_clean();
}

fn concurrent_runs(runtime: Runtime) {
    let Some(env) = setup(runtime) else { return };
    // Two runs share the main rootfs (they take turns), two have their own.
    let copies: Vec<_> = (0..2)
        .map(|i| {
            let copy = env.dir.path().join(format!("rootfs-{i}"));
            let ok = std::process::Command::new("cp")
                .arg("-a")
                .arg(env.rootfs())
                .arg(&copy)
                .status()
                .unwrap();
            assert!(ok.success());
            copy
        })
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let env = &env;
                let rootfs = if i < 2 {
                    env.rootfs()
                } else {
                    copies[i - 2].clone()
                };
                s.spawn(move || {
                    let id = format!("par-{i}");
                    let mut spec = env.spec(
                        &id,
                        &["sh", "-c", &format!("echo {id}; cat /etc/hosts | head -1")],
                    );
                    spec.rootfs = rootfs.clone();
                    let out = env.run(&spec);
                    assert_eq!(out.ok(), format!("{id}\n127.0.0.1\tlocalhost kiln-test\n"));
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    for rootfs in copies.iter().chain([&env.rootfs()]) {
        assert!(!exists(&rootfs.join("etc/hosts")), "{}", rootfs.display());
    }
    // The same id again once the first is gone.
    env.sh("par-0", "true").ok();
    env.assert_clean();
}

/// Runs `f` with this process's fd 1 and 2 pointing at /dev/null (one test
/// thread at a time: the fds are the whole process's).
fn with_stdout_on_dev_null<T>(f: impl FnOnce() -> T) -> T {
    use std::os::fd::AsRawFd;
    static SWAP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = SWAP.lock().unwrap_or_else(|p| p.into_inner());
    let null = fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    // SAFETY: dup/dup2 on valid fds; restored below.
    let saved = unsafe { [libc::dup(1), libc::dup(2)] };
    unsafe {
        libc::dup2(null.as_raw_fd(), 1);
        libc::dup2(null.as_raw_fd(), 2);
    }
    let result = f();
    unsafe {
        libc::dup2(saved[0], 1);
        libc::dup2(saved[1], 2);
        libc::close(saved[0]);
        libc::close(saved[1]);
    }
    result
}

fn terminal_and_inherited_stdio(runtime: Runtime) {
    let Some(env) = setup(runtime) else { return };
    let mut spec = env.spec(
        "tty",
        &["sh", "-c", "[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && exit 7"],
    );
    spec.stdio = Stdio::Inherit { tty: true };
    assert_eq!(
        env.run(&spec).status(),
        ExitStatus::Code(7),
        "no terminal inside"
    );
    let mut spec = env.spec("inherit", &["sh", "-c", "exit 4"]);
    spec.stdio = Stdio::Inherit { tty: false };
    assert_eq!(env.run(&spec).status(), ExitStatus::Code(4));
    // kiln's output going to /dev/null must stay writable inside.
    let mut spec = env.spec(
        "devnull",
        &["sh", "-c", "echo out && echo err >&2 && exit 6"],
    );
    spec.stdio = Stdio::Inherit { tty: false };
    assert_eq!(
        with_stdout_on_dev_null(|| env.run(&spec)).status(),
        ExitStatus::Code(6)
    );
    env.assert_clean();
}

fn invalid_specs_are_refused(runtime: Runtime) {
    let Some(env) = setup(runtime) else { return };
    let mut spec = env.spec("bad-env", &["true"]);
    spec.env.push("NOEQUALS".into());
    let out = env.run(&spec);
    assert!(
        matches!(&out.result, Err(Error::InvalidSpec { reason, .. }) if reason.contains("NOEQUALS")),
        "{:?}",
        out.result
    );
    let mut spec = env.spec("bad-cwd", &["true"]);
    spec.cwd = "relative".into();
    assert!(matches!(
        env.run(&spec).result,
        Err(Error::InvalidSpec { .. })
    ));
    assert!(matches!(
        env.run(&env.spec("bad/id", &["true"])).result,
        Err(Error::InvalidId { .. })
    ));
    env.assert_clean();
}

fn duplicate_id_is_refused(runtime: Runtime) {
    let Some(env) = setup(runtime) else { return };
    let bundles = env.state().join("bundles/dup");
    fs::create_dir_all(&bundles).unwrap();
    let out = env.sh("dup", "true");
    assert!(
        matches!(out.result, Err(Error::AlreadyExists { .. })),
        "{:?}",
        out.result
    );
    fs::remove_dir(&bundles).unwrap();
    env.assert_clean();
}

macro_rules! conformance {
    ($backend:ident, $runtime:expr, $secs:literal, $bg:literal) => {
        mod $backend {
            use super::*;
            #[test]
            fn output_and_exit_codes() {
                super::output_and_exit_codes($runtime)
            }
            #[test]
            fn process_identity() {
                super::process_identity($runtime)
            }
            #[test]
            fn hostname_and_etc_files() {
                super::hostname_and_etc_files($runtime)
            }
            #[test]
            fn network_modes() {
                super::network_modes($runtime)
            }
            #[test]
            fn mounts() {
                super::mounts($runtime)
            }
            #[test]
            fn devices_proc_security() {
                super::devices_proc_security($runtime)
            }
            #[test]
            fn missing_executable() {
                super::missing_executable($runtime)
            }
            #[test]
            fn killed_by_signal() {
                super::killed_by_signal($runtime, $secs)
            }
            #[test]
            fn background_processes_die_with_the_container() {
                super::background_processes_die_with_the_container($runtime, $bg)
            }
            #[test]
            fn concurrent_runs() {
                super::concurrent_runs($runtime)
            }
            #[test]
            fn terminal_and_inherited_stdio() {
                super::terminal_and_inherited_stdio($runtime)
            }
            #[test]
            fn invalid_specs_are_refused() {
                super::invalid_specs_are_refused($runtime)
            }
            #[test]
            fn duplicate_id_is_refused() {
                super::duplicate_id_is_refused($runtime)
            }
        }
    };
}

conformance!(youki, Runtime::Youki, "1231", "1271");
conformance!(runc, Runtime::Runc, "1232", "1272");
