//! `--isolation=chroot`: RUN steps as plain child processes of kiln, for
//! where neither namespaces nor mounts are allowed (an unprivileged
//! container, kaniko's model). The root filesystem is normally `/` itself
//! (the base image was unpacked there); any other root is entered with
//! `chroot(2)`, which needs CAP_SYS_CHROOT.
//!
//! What this cannot do: mounts (`RUN --mount`), a private network
//! (`--network=none`), a hostname, and any isolation of the process from
//! kiln — it runs with kiln's own capabilities and sees kiln's files.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as ProcStdio};
use std::sync::Mutex;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::prepare::{Kind, Preparer};
use crate::{Error, ExitStatus, Network, OutputStream, Result, RunSpec, Stdio};

/// Process groups of running steps, for [`cancel`].
static GROUPS: Mutex<(bool, BTreeSet<i32>)> = Mutex::new((false, BTreeSet::new()));

fn groups() -> std::sync::MutexGuard<'static, (bool, BTreeSet<i32>)> {
    GROUPS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Kills every running step (each runs in its own process group).
pub(crate) fn cancel() {
    let mut g = groups();
    g.0 = true;
    for pgid in &g.1 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(*pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

pub(crate) struct ChrootExecutor;

impl crate::Executor for ChrootExecutor {
    fn run(
        &self,
        spec: &RunSpec,
        output: &mut dyn FnMut(OutputStream, &[u8]),
    ) -> Result<ExitStatus> {
        refuse_unsupported(spec)?;
        // Docker creates a missing working directory (0755) and keeps it.
        let cwd = Preparer::new(&spec.rootfs).ensure(&spec.cwd, Kind::Dir, false)?;
        let home = crate::bundle::home_dir(&spec.rootfs, spec.uid);
        let env = crate::spec::environment(&spec.env, &home);
        let program = find_program(spec, &env)?;
        // Executed after chroot(2): the path inside the rootfs.
        let mut cmd = Command::new(&program);
        cmd.arg0(&spec.args[0])
            .args(&spec.args[1..])
            .env_clear()
            .envs(env.iter().filter_map(|e| e.split_once('=')));
        ids_and_root(&mut cmd, spec, &cwd)?;
        let mut readers = Vec::new();
        match spec.stdio {
            Stdio::Inherit { .. } => {}
            Stdio::Capture => {
                let (out_r, out_w) = pipe()?;
                let (err_r, err_w) = pipe()?;
                cmd.stdin(ProcStdio::null()).stdout(out_w).stderr(err_w);
                readers.push((OutputStream::Stdout, fs::File::from(out_r)));
                readers.push((OutputStream::Stderr, fs::File::from(err_r)));
            }
        }
        let mut child = {
            let mut g = groups();
            if g.0 {
                return Err(Error::Cancelled {
                    id: spec.id.clone(),
                });
            }
            let child = cmd.spawn().map_err(|e| spawn_error(spec, &program, e))?;
            g.1.insert(child.id() as i32);
            child
        };
        // Our copies of the write ends must go, or EOF never comes.
        drop(cmd);
        let relayed = relay(readers, output);
        let status = child.wait();
        groups().1.remove(&(child.id() as i32));
        relayed?;
        let status = status.map_err(|e| Error::io("waiting for", &program, e))?;
        if groups().0 {
            return Err(Error::Cancelled {
                id: spec.id.clone(),
            });
        }
        Ok(match (status.code(), status.signal()) {
            (Some(c), _) => ExitStatus::Code(c),
            (None, Some(s)) => ExitStatus::Signal(s),
            (None, None) => ExitStatus::Code(255),
        })
    }
}

fn refuse_unsupported(spec: &RunSpec) -> Result<()> {
    let reason = if !spec.mounts.is_empty() {
        "RUN --mount needs mounts, which --isolation=chroot does without; copy the files in with COPY instead, or build with the default isolation"
    } else if spec.network == Network::None {
        "a step without network (--network=none) needs a network namespace, which --isolation=chroot does without"
    } else if spec.args.is_empty() {
        "no command to run"
    } else {
        return Ok(());
    };
    Err(Error::InvalidSpec {
        id: spec.id.clone(),
        reason: reason.into(),
    })
}

/// `args[0]` as the process finds it through `PATH`: its path inside the
/// rootfs (what is executed after `chroot`).
fn find_program(spec: &RunSpec, env: &[String]) -> Result<PathBuf> {
    let name = &spec.args[0];
    let candidates: Vec<String> = if name.contains('/') {
        if name.starts_with('/') {
            vec![name.clone()]
        } else {
            vec![format!("{}/{name}", spec.cwd)]
        }
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(crate::spec::DEFAULT_PATH);
        path.split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| format!("{d}/{name}"))
            .collect()
    };
    for c in candidates {
        // Resolved as the process will: inside the root.
        let Ok(real) = Preparer::new(&spec.rootfs).resolve(&c) else {
            continue;
        };
        match fs::metadata(spec.rootfs.join(real.trim_start_matches('/'))) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                return Ok(PathBuf::from(c))
            }
            Ok(m) if m.is_file() => {
                return Err(Error::ExecutableNotRunnable { name: name.clone() })
            }
            _ => {}
        }
    }
    Err(Error::ExecutableNotFound { name: name.clone() })
}

/// Enters the root and the working directory and takes the step's user,
/// in the child between fork and exec.
fn ids_and_root(cmd: &mut Command, spec: &RunSpec, cwd: &str) -> Result<()> {
    let cstr = |s: &[u8], what: &str| {
        CString::new(s).map_err(|_| Error::InvalidSpec {
            id: spec.id.clone(),
            reason: format!("{what} holds a NUL byte"),
        })
    };
    let root = (spec.rootfs != Path::new("/"))
        .then(|| cstr(spec.rootfs.as_os_str().as_bytes(), "the rootfs path"))
        .transpose()?;
    let cwd = cstr(cwd.as_bytes(), "the working directory")?;
    let (uid, gid) = (spec.uid, spec.gid);
    let mut groups: Vec<libc::gid_t> = vec![gid];
    groups.extend(&spec.additional_gids);
    // Without a change of user no capability is needed (`--cap-drop ALL`).
    let same_user = uid == nix::unistd::geteuid().as_raw()
        && gid == nix::unistd::getegid().as_raw()
        && spec.additional_gids.is_empty();
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| {
                if r != 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            check(libc::setpgid(0, 0))?;
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            if let Some(root) = &root {
                check(libc::chroot(root.as_ptr()))?;
            }
            check(libc::chdir(cwd.as_ptr()))?;
            if !same_user {
                check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
            }
            Ok(())
        });
    }
    Ok(())
}

fn spawn_error(spec: &RunSpec, program: &Path, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::ExecutableNotFound {
            name: spec.args[0].clone(),
        },
        Some(libc::EACCES) => Error::ExecutableNotRunnable {
            name: spec.args[0].clone(),
        },
        Some(libc::EPERM) => Error::Runtime {
            id: spec.id.clone(),
            runtime: "chroot",
            message: format!(
                "starting {} as uid {} gid {}: {e} (switching user needs CAP_SETUID and CAP_SETGID, a root other than / needs CAP_SYS_CHROOT)",
                program.display(),
                spec.uid,
                spec.gid
            ),
        },
        _ => Error::io("starting", program, e),
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("creating pipe", "pipe", e.into()))
}

/// Passes output on until every pipe is at EOF.
fn relay(
    mut readers: Vec<(OutputStream, fs::File)>,
    output: &mut dyn FnMut(OutputStream, &[u8]),
) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    while !readers.is_empty() {
        let mut fds: Vec<PollFd> = readers
            .iter()
            .map(|(_, f)| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::io("polling step output", "pipe", e.into())),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut finished = Vec::new();
        for (i, (stream, file)) in readers.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            match file.read(&mut buf) {
                Ok(0) => finished.push(i),
                Ok(n) => output(*stream, &buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("reading step output", "pipe", e)),
            }
        }
        for i in finished.into_iter().rev() {
            readers.remove(i);
        }
    }
    Ok(())
}
