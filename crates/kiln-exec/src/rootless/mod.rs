//! Rootless kiln: a normal user's kiln re-executes itself in a new user
//! namespace (with its own mount namespace) whose id maps `newuidmap` and
//! `newgidmap` write from `/etc/subuid` and `/etc/subgid` — the user is
//! root there, ids 1..=N are the subordinate range — as buildah's
//! `unshare.MaybeReexecUsingUserNamespace` and `podman unshare` do. Inside
//! it the rest of kiln runs as for root: overlay mounts (`userxattr`,
//! Linux 5.11+), files given to the image's owners, and youki, which sees
//! the user namespace and runs rootless (cgroups best effort).
//!
//! The handshake: the parent starts the child with one end of a socket
//! pair (fd number in `_KILN_ROOTLESS_SYNC`); the child unshares and says
//! `u` (or `e` and why it could not); the parent writes the maps and says
//! `m`; the child becomes uid/gid 0 and goes on. The parent then only waits
//! and passes the child's exit status on.

mod setup;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};

pub use setup::SetupError;
use setup::{check_sysctls, find_mapper, map_args, ranges};

/// Set (to the socket's fd) in the child until the handshake is done.
const SYNC: &str = "_KILN_ROOTLESS_SYNC";
/// `1` in a kiln that runs in its rootless user namespace.
const ACTIVE: &str = "_KILN_ROOTLESS";

/// Whether this kiln runs rootless, in the user namespace a normal user's
/// kiln made for itself (it is uid 0 there).
pub fn active() -> bool {
    std::env::var_os(ACTIVE).is_some_and(|v| v == "1")
}

/// Whether this process is in a user namespace other than the initial one
/// (rootless kiln, or kiln in a rootless container): what was root's alone
/// (cgroups, device nodes, raising rlimits, mounting sysfs for the host's
/// network) is not allowed there.
pub fn in_user_namespace() -> bool {
    static INSIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *INSIDE.get_or_init(|| {
        let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        let fields: Vec<&str> = map.split_whitespace().collect();
        !fields.is_empty() && fields != ["0", "0", "4294967295"]
    })
}

/// Call first thing in `main`, while the process has one thread. For root:
/// returns at once. For a normal user: re-executes kiln in its user
/// namespace and exits with that kiln's status (never returns Ok). In the
/// re-executed kiln: finishes the namespace and returns.
pub fn enter() -> Result<(), SetupError> {
    if let Some(fd) = std::env::var_os(SYNC) {
        return child(fd.to_str().and_then(|s| s.parse().ok()));
    }
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let code = parent()?;
    std::process::exit(code)
}

fn other(what: &str) -> impl Fn(std::io::Error) -> SetupError + '_ {
    move |e| SetupError::Other(format!("{what}: {e}"))
}

/// The user's kiln: checks the machine, starts the child, maps it, waits.
fn parent() -> Result<i32, SetupError> {
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    let user = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name);
    check_sysctls()?;
    let uids = ranges("/etc/subuid", &user, uid.as_raw())?;
    let gids = ranges("/etc/subgid", &user, uid.as_raw())?;
    let maps = [
        (find_mapper("newuidmap")?, map_args(uid.as_raw(), &uids)),
        (find_mapper("newgidmap")?, map_args(gid.as_raw(), &gids)),
    ];
    let (mut sync, theirs) = UnixStream::pair().map_err(other("creating a socket pair"))?;
    let mut child = spawn_child(theirs)?;
    let mut said = [0u8; 1];
    let n = sync
        .read(&mut said)
        .map_err(other("waiting for the namespace"))?;
    match (n, said[0]) {
        (1, b'u') => {}
        (1, b'e') => {
            let mut why = String::new();
            let _ = sync.read_to_string(&mut why);
            let _ = child.wait();
            return Err(SetupError::Unshare(why));
        }
        // The child died (it printed why, or was killed).
        _ => return Ok(wait_for(&mut child)),
    }
    for (program, args) in &maps {
        if let Err(e) = write_map(program, child.id(), args) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    }
    sync.write_all(b"m").map_err(other("starting the child"))?;
    drop(sync);
    Ok(wait_for(&mut child))
}

/// The same kiln, same arguments, with the socket's other end.
fn spawn_child(theirs: UnixStream) -> Result<Child, SetupError> {
    let exe = std::env::current_exe().map_err(other("finding kiln's own binary"))?;
    let fd: RawFd = theirs.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(SYNC, fd.to_string());
    // SAFETY: fcntl and prctl are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // The socket end crosses exec; the child dies with the parent.
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(other("re-executing kiln"))?;
    drop(theirs);
    Ok(child)
}

fn write_map(program: &std::path::Path, pid: u32, args: &[String]) -> Result<(), SetupError> {
    let out = Command::new(program)
        .arg(pid.to_string())
        .args(args)
        .output()
        .map_err(|e| SetupError::Mapping {
            program: program.display().to_string(),
            args: args.join(" "),
            message: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(SetupError::Mapping {
        program: program.display().to_string(),
        args: args.join(" "),
        message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

static CHILD_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = CHILD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    }
}

/// Waits for the child and returns the status to exit with. Ctrl-C and
/// Ctrl-\ reach the child from the terminal itself; SIGTERM and SIGHUP sent
/// to this process are passed on.
fn wait_for(child: &mut Child) -> i32 {
    CHILD_PID.store(child.id() as i32, Ordering::SeqCst);
    // SAFETY: installing handlers that only call kill, or ignoring.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
        libc::signal(
            libc::SIGTERM,
            forward as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGHUP,
            forward as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    loop {
        match child.wait() {
            Ok(s) => return s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("error: rootless kiln: waiting for kiln in its user namespace: {e}");
                return 1;
            }
        }
    }
}

/// The re-executed kiln: unshares, waits for its maps, becomes root there.
fn child(fd: Option<RawFd>) -> Result<(), SetupError> {
    let fd = fd.ok_or_else(|| SetupError::Other(format!("{SYNC} is not a file descriptor")))?;
    // SAFETY: the parent passed this fd for us alone; it is closed on exec
    // from here on (UnixStream is not, by itself, for an inherited fd).
    let mut sync = unsafe { UnixStream::from_raw_fd(fd) };
    // SAFETY: one thread yet; fcntl on our own fd.
    unsafe {
        std::env::remove_var(SYNC);
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let flags = nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNS;
    if let Err(e) = nix::sched::unshare(flags) {
        let _ = sync.write_all(format!("e{e}").as_bytes());
        std::process::exit(1);
    }
    let _ = sync.write_all(b"u");
    let mut said = [0u8; 1];
    if !matches!(sync.read(&mut said), Ok(1)) || said[0] != b'm' {
        // The parent could not map us and says why.
        std::process::exit(1);
    }
    become_root()?;
    // SAFETY: still one thread.
    unsafe { std::env::set_var(ACTIVE, "1") };
    private_mounts()
}

fn become_root() -> Result<(), SetupError> {
    let root_gid = nix::unistd::Gid::from_raw(0);
    let root_uid = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid)
        .and_then(|()| nix::unistd::setresuid(root_uid, root_uid, root_uid))
        .map_err(|e| SetupError::Other(format!("becoming root in the user namespace: {e}")))
}

/// Mounts stay in this namespace. libcontainer puts a rootless container
/// in a cgroup only where that is allowed, on cgroup v2; its v1 code
/// writes to the hierarchies unconditionally, which the user may not. So
/// on a v1 (or hybrid) host kiln gets a cgroup namespace and mounts the v2
/// hierarchy over `/sys/fs/cgroup` (its own view only): libcontainer
/// then takes the v2 path and leaves the process in its parent cgroup.
fn private_mounts() -> Result<(), SetupError> {
    use nix::mount::{mount, MsFlags};
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| {
        SetupError::Other(format!(
            "making / private in kiln's mount namespace: {e} (if AppArmor restricts user namespaces, as on Ubuntu 24.04: `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` or a profile for kiln)"
        ))
    })?;
    let cgroup = std::path::Path::new("/sys/fs/cgroup");
    let is_v2 = nix::sys::statfs::statfs(cgroup)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if is_v2 || !cgroup.is_dir() {
        return Ok(());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
        .and_then(|()| {
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            mount(
                Some("cgroup2"),
                cgroup,
                Some("cgroup2"),
                flags,
                None::<&str>,
            )
        })
        .map_err(|e| {
            SetupError::Other(format!(
                "mounting cgroup2 on /sys/fs/cgroup in kiln's namespaces (a cgroup v1 host): {e}"
            ))
        })
}
