//! The embedded youki backend: libcontainer creates the container from the
//! bundle in this (single-threaded) helper process, which then waits for the
//! init process and deletes the container.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;

use super::tty::{wait_with_terminal, ConsoleSocket};
use super::wait::{block_signals, kill_requested, wait_for};
use super::workload::{Workload, NOT_FOUND, NOT_RUNNABLE};
use super::{Outcome, Request};

/// The error and its causes on one line: libcontainer's messages are terse
/// and the useful part (e.g. the init process's own error) is often a cause.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A failure to create or start the container, as an outcome: the init
/// process's executable lookup errors become NotFound/NotRunnable.
fn failure(action: &str, text: String) -> Outcome {
    for (marker, make) in [
        (NOT_FOUND, Outcome::NotFound as fn(String) -> Outcome),
        (NOT_RUNNABLE, Outcome::NotRunnable),
    ] {
        if let Some(pos) = text.find(marker) {
            let rest = &text[pos + marker.len()..];
            // The name runs to the end of libcontainer's quoting or line.
            let name = rest.split(['"', '\'', '\n']).next().unwrap_or(rest);
            return make(name.trim_end_matches(['\\', ')']).to_string());
        }
    }
    Outcome::Failed(format!("{action}: {text}"))
}

pub(crate) fn is_dev_null(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let null = nix::sys::stat::stat("/dev/null");
    let this = nix::sys::stat::fstat(fd.as_raw_fd());
    matches!((null, this), (Ok(n), Ok(t)) if t.st_mode & libc::S_IFMT == libc::S_IFCHR && t.st_rdev == n.st_rdev)
}

/// The container's stdio: copies of the helper's. An output that is
/// `/dev/null` (`kiln run … >/dev/null`) becomes a pipe the helper drains:
/// libcontainer replaces every stdio fd on `/dev/null` with a read-only one;
/// a `/dev/null` stdin becomes an empty pipe, as runc gives.
/// Returns the pipes' read ends, to drain once the init process is forked.
fn dup_stdio() -> std::io::Result<([OwnedFd; 3], Vec<OwnedFd>)> {
    let mut drains = Vec::new();
    let mut output = |fd: std::os::fd::BorrowedFd<'_>| -> std::io::Result<OwnedFd> {
        if !is_dev_null(fd) {
            return fd.try_clone_to_owned();
        }
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        drains.push(read);
        Ok(write)
    };
    let stdout = output(std::io::stdout().as_fd())?;
    let stderr = output(std::io::stderr().as_fd())?;
    // runc (non-detached, no tty) hands the process a pipe it fills from its
    // own stdin: for a RUN (stdin /dev/null) an empty pipe at EOF.
    let stdin = if is_dev_null(std::io::stdin().as_fd()) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?.0
    } else {
        std::io::stdin().as_fd().try_clone_to_owned()?
    };
    Ok(([stdin, stdout, stderr], drains))
}

/// Gives the stdio pipes to the container's user, as runc's
/// `fixStdioPermissions` does (and BuildKit relies on): a RUN as a non-root
/// USER can then open `/dev/stdout` and `/dev/stderr`. Only pipes: a
/// terminal or file kiln inherited stays as it is, and `/dev/null` needs none.
fn give_pipes_to_user(bundle: &std::path::Path, fds: [&OwnedFd; 3]) -> Result<(), String> {
    let path = bundle.join("config.json");
    let spec = oci_spec::runtime::Spec::load(&path)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    let Some(user) = spec.process().as_ref().map(|p| p.user()) else {
        return Ok(());
    };
    let (uid, gid) = (user.uid(), user.gid());
    if uid == 0 && gid == 0 {
        return Ok(());
    }
    for fd in fds {
        let st =
            nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| format!("stat of stdio: {e}"))?;
        if st.st_mode & libc::S_IFMT == libc::S_IFIFO {
            nix::unistd::fchown(
                fd.as_raw_fd(),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| format!("giving the stdio pipes to {uid}:{gid}: {e}"))?;
        }
    }
    Ok(())
}

/// Discards what arrives on `drains`, on threads started after the fork
/// (the helper stays single-threaded while libcontainer forks).
fn start_draining(drains: Vec<OwnedFd>) {
    for fd in drains {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::fs::File::from(fd), &mut std::io::sink());
        });
    }
}

/// Removes whatever a failed or finished container left: processes, cgroup,
/// state directory.
pub(crate) fn delete(container: &mut Container) -> Result<(), String> {
    container
        .delete(true)
        .map_err(|e| format!("deleting container: {}", chain(&e)))
}

/// Deletes the container `id` under `state_root` if it exists, killing
/// every process in its cgroup first.
pub(crate) fn delete_by_id(state_root: &std::path::Path, id: &str) -> Result<(), String> {
    let dir = state_root.join(id);
    if !dir.exists() {
        return Ok(());
    }
    match Container::load(dir.clone()) {
        Ok(mut c) => {
            let killed = kill_cgroup(&c);
            match (delete(&mut c), killed) {
                (Ok(()), _) => Ok(()),
                (Err(d), Err(k)) => Err(format!("{d} (killing its processes: {k})")),
                (Err(d), Ok(())) => Err(d),
            }
        }
        // A state directory without a readable state: nothing runs from it.
        Err(_) => {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))
        }
    }
}

/// SIGKILLs the processes in the container's cgroup (the one its bundle
/// names). libcontainer's delete kills only through the init pid it has
/// recorded, and a helper killed while the container was still "creating"
/// recorded none but can leave a started process behind, holding kiln's
/// output pipes. Killing the pid namespace's init ends the rest.
fn kill_cgroup(container: &Container) -> Result<(), String> {
    use libcgroups::common::{create_cgroup_manager, CgroupConfig, CgroupManager};
    let path = container.bundle().join("config.json");
    let spec = oci_spec::runtime::Spec::load(&path)
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    let Some(cgroup) = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) else {
        return Ok(());
    };
    let manager = create_cgroup_manager(CgroupConfig {
        cgroup_path: cgroup.clone(),
        systemd_cgroup: false,
        container_name: container.id().to_string(),
    })
    .map_err(|e| format!("cgroup {}: {e}", cgroup.display()))?;
    let pids = manager
        .get_all_pids()
        .map_err(|e| format!("listing cgroup {}: {e}", cgroup.display()))?;
    for pid in pids {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    Ok(())
}

pub(crate) fn run(r: &Request) -> Outcome {
    if kill_requested(r.interactive) {
        return Outcome::Cancelled;
    }
    let ([stdin, stdout, stderr], drains) = match dup_stdio() {
        Ok(fds) => fds,
        Err(e) => return Outcome::Failed(format!("duplicating stdio: {e}")),
    };
    if let Err(e) = give_pipes_to_user(&r.bundle, [&stdin, &stdout, &stderr]) {
        return Outcome::Failed(e);
    }
    let console = match r.tty.then(|| ConsoleSocket::listen(&r.bundle)).transpose() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(e),
    };
    // libcontainer wants a console socket only for a "detached" container;
    // detached changes nothing else: the helper still waits for it.
    let built = ContainerBuilder::new(r.id.clone(), SyscallType::default())
        .with_executor(Workload)
        .with_stdin(stdin)
        .with_stdout(stdout)
        .with_stderr(stderr)
        .with_console_socket(console.as_ref().map(|c| c.path.clone()))
        .with_root_path(&r.state_root)
        .and_then(|b| b.validate_id())
        .and_then(|b| {
            b.as_init(&r.bundle)
                .with_systemd(false)
                .with_detach(r.tty)
                .build()
        });
    let mut container = match built {
        Ok(c) => c,
        Err(e) => {
            let outcome = failure("creating container", chain(&e));
            return match delete_by_id(&r.state_root, &r.id) {
                Ok(()) => outcome,
                Err(d) => Outcome::Failed(format!("{outcome:?}; cleaning up: {d}")),
            };
        }
    };
    start_draining(drains);
    let outcome = start_and_wait(r, &mut container, console.as_ref());
    match delete(&mut container) {
        Ok(()) => outcome,
        Err(d) => match outcome {
            Outcome::Failed(f) => Outcome::Failed(format!("{f}; {d}")),
            _ => Outcome::Failed(d),
        },
    }
}

fn start_and_wait(
    r: &Request,
    container: &mut Container,
    console: Option<&ConsoleSocket>,
) -> Outcome {
    let set = match block_signals() {
        Ok(set) => set,
        Err(e) => return Outcome::Failed(format!("blocking signals: {e}")),
    };
    if kill_requested(r.interactive) {
        return Outcome::Cancelled;
    }
    if let Some(pid) = container.pid() {
        if let Err(e) = super::loopback::up_in(pid) {
            // Created, never started: a rootless delete cannot always kill
            // it (no cgroup to find its processes by).
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            return Outcome::Failed(format!(
                "setting up the container's loopback interface: {e}"
            ));
        }
    }
    let master = match console.map(ConsoleSocket::receive).transpose() {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(e),
    };
    if let Err(e) = container.start() {
        return failure("starting container", chain(&e));
    }
    let Some(pid) = container.pid() else {
        return Outcome::Failed("container started without an init process id".into());
    };
    let waited = match master {
        Some(master) => wait_with_terminal(pid, &set, master),
        None => wait_for(pid, &set, r.interactive),
    };
    match waited {
        Ok(w) if w.cancelled && !r.interactive => Outcome::Cancelled,
        Ok(w) => Outcome::Exited(w.status),
        Err(e) => Outcome::Failed(e),
    }
}
