//! The engine side of a run: prepares the bundle, starts the helper process
//! with the right stdio, relays captured output, and turns the helper's
//! result into the `run` result. Also the registry of running helpers that
//! [`cancel_all`] signals.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio as ProcStdio};
use std::sync::{Arc, Mutex};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::bundle::Bundle;
use crate::helper::{self, Backend, Outcome, Request};
use crate::{
    stale, Error, ExecutorOptions, ExitStatus, OutputStream, Result, RunSpec, Runtime, Stdio,
};

struct Registry {
    cancelled: bool,
    helpers: BTreeSet<u32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    cancelled: false,
    helpers: BTreeSet::new(),
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock leaves a plain set behind: still usable.
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Kills every running container of this process and makes later
/// [`crate::Executor::run`] calls fail with [`Error::Cancelled`]; for a
/// Ctrl-C handler. The pending `run` calls return once their container is
/// deleted and its mountpoints are removed.
pub fn cancel_all() {
    crate::chroot::cancel();
    let mut reg = registry();
    reg.cancelled = true;
    for pid in &reg.helpers {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGUSR1);
    }
}

/// One lock per root filesystem: runs over the same rootfs take turns,
/// because each creates and removes the same mountpoints (`/etc/hosts`) and
/// removing one under a running container would unmount it there.
static ROOTFS_LOCKS: Mutex<BTreeMap<PathBuf, Arc<Mutex<()>>>> = Mutex::new(BTreeMap::new());

fn rootfs_lock(rootfs: &Path) -> Arc<Mutex<()>> {
    let key = fs::canonicalize(rootfs).unwrap_or_else(|_| rootfs.to_path_buf());
    let mut locks = ROOTFS_LOCKS.lock().unwrap_or_else(|p| p.into_inner());
    // Forget locks nobody holds any more.
    locks.retain(|_, l| Arc::strong_count(l) > 1);
    locks.entry(key).or_default().clone()
}

/// A started helper. Dropping it (an error or a panic in the output
/// callback) stops the helper, which kills and deletes the container, and
/// waits for it, so the bundle can go after it.
struct RunningHelper(Child);

impl Drop for RunningHelper {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGUSR1);
            let _ = self.0.wait();
        }
        registry().helpers.remove(&self.0.id());
    }
}

pub(crate) struct HelperExecutor {
    backend: Backend,
    helper: PathBuf,
    runc: PathBuf,
    bundles: PathBuf,
    state_root: PathBuf,
}

fn find_runc() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("runc"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/runc"))
}

impl HelperExecutor {
    pub(crate) fn new(o: ExecutorOptions) -> Result<Self> {
        let helper = match o.helper {
            Some(h) => h,
            None => std::env::current_exe()
                .map_err(|e| Error::io("finding the current executable", "/proc/self/exe", e))?,
        };
        let backend = match o.runtime {
            Runtime::Youki => Backend::Youki,
            Runtime::Runc => Backend::Runc,
            Runtime::Chroot => unreachable!("the chroot executor needs no helper"),
        };
        fs::create_dir_all(&o.state_dir)
            .map_err(|e| Error::io("creating state directory", &o.state_dir, e))?;
        // libcontainer canonicalizes its root; use the same path everywhere.
        let state_dir = fs::canonicalize(&o.state_dir)
            .map_err(|e| Error::io("resolving state directory", &o.state_dir, e))?;
        let state_root = state_dir.join(backend.name());
        let bundles = state_dir.join(stale::BUNDLES);
        for d in [&state_root, &bundles] {
            fs::create_dir_all(d).map_err(|e| Error::io("creating state directory", d, e))?;
        }
        Ok(HelperExecutor {
            backend,
            helper,
            runc: o.runc.unwrap_or_else(find_runc),
            bundles,
            state_root,
        })
    }
}

impl crate::Executor for HelperExecutor {
    fn run(
        &self,
        spec: &RunSpec,
        output: &mut dyn FnMut(OutputStream, &[u8]),
    ) -> Result<ExitStatus> {
        if registry().cancelled {
            return Err(Error::Cancelled {
                id: spec.id.clone(),
            });
        }
        let lock = rootfs_lock(&spec.rootfs);
        let _turn = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut bundle = Bundle::create(&self.bundles, spec)?;
        let result = stale::write_owner(&bundle.dir, self.backend)
            .and_then(|()| self.run_bundle(&bundle.dir, spec, output));
        let cleanup = bundle.remove();
        match (result, cleanup) {
            (Ok(status), Err(problems)) => Err(Error::Runtime {
                id: spec.id.clone(),
                runtime: self.backend.name(),
                message: format!("process ended with {status}, but cleaning up failed: {problems}"),
            }),
            (result, _) => result,
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("creating pipe", "pipe", e.into()))
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl HelperExecutor {
    fn run_bundle(
        &self,
        bundle: &Path,
        spec: &RunSpec,
        output: &mut dyn FnMut(OutputStream, &[u8]),
    ) -> Result<ExitStatus> {
        let (interactive, tty) = match spec.stdio {
            Stdio::Capture => (false, false),
            Stdio::Inherit { tty } => (true, tty),
        };
        let request = Request {
            backend: self.backend,
            bundle: bundle.to_path_buf(),
            state_root: self.state_root.clone(),
            id: spec.id.clone(),
            interactive,
            tty,
            runc: self.runc.clone(),
        };
        let mut cmd = Command::new(&self.helper);
        cmd.args(helper::argv(&request, std::process::id()));
        // The helper dies with this thread even before it runs a line of
        // its own (the helper checks its parent pid for a kiln already gone).
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR1) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut readers = Vec::new();
        if interactive {
            cmd.stdin(ProcStdio::inherit())
                .stdout(ProcStdio::inherit())
                .stderr(ProcStdio::inherit());
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            cmd.stdin(ProcStdio::null()).stdout(out_w).stderr(err_w);
            readers.push((OutputStream::Stdout, fs::File::from(out_r)));
            readers.push((OutputStream::Stderr, fs::File::from(err_r)));
        }
        let child = {
            let mut reg = registry();
            if reg.cancelled {
                return Err(Error::Cancelled {
                    id: spec.id.clone(),
                });
            }
            let child = cmd.spawn().map_err(|e| Error::SpawnHelper {
                id: spec.id.clone(),
                helper: self.helper.clone(),
                source: e,
            })?;
            reg.helpers.insert(child.id());
            child
        };
        let mut helper = RunningHelper(child);
        // Our copies of the pipes' write ends must go, or EOF never comes.
        drop(cmd);
        let helper_status = self.relay(&mut helper.0, &request, readers, output)?;
        match helper::read_result(bundle) {
            Some(outcome) => self.outcome(spec, outcome),
            None => Err(Error::HelperDied {
                id: spec.id.clone(),
                status: helper_status,
                stderr: String::new(),
            }),
        }
    }

    fn outcome(&self, spec: &RunSpec, outcome: Outcome) -> Result<ExitStatus> {
        match outcome {
            Outcome::Exited(status) => Ok(status),
            Outcome::NotFound(name) => Err(Error::ExecutableNotFound { name }),
            Outcome::NotRunnable(name) => Err(Error::ExecutableNotRunnable { name }),
            Outcome::Cancelled => Err(Error::Cancelled {
                id: spec.id.clone(),
            }),
            Outcome::Failed(message) => Err(Error::Runtime {
                id: spec.id.clone(),
                runtime: self.backend.name(),
                message,
            }),
        }
    }

    /// Relays output until the helper has exited and every pipe is at EOF.
    /// If the helper dies without cleaning up (it was SIGKILLed), the
    /// container is deleted here, which also ends the pipes. Returns the
    /// helper's exit status as text.
    fn relay(
        &self,
        child: &mut Child,
        request: &Request,
        mut readers: Vec<(OutputStream, fs::File)>,
        output: &mut dyn FnMut(OutputStream, &[u8]),
    ) -> Result<String> {
        let id = &request.id;
        let pidfd = pidfd_open(child.id()).map_err(|e| Error::SpawnHelper {
            id: id.clone(),
            helper: self.helper.clone(),
            source: e,
        })?;
        let mut status = None;
        let mut buf = vec![0u8; 64 * 1024];
        while status.is_none() || !readers.is_empty() {
            let mut fds: Vec<PollFd> = readers
                .iter()
                .map(|(_, f)| PollFd::new(f.as_fd(), PollFlags::POLLIN))
                .collect();
            if status.is_none() {
                fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(Error::io(
                        "polling container output",
                        request.bundle.clone(),
                        e.into(),
                    ))
                }
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if status.is_none() && ready[readers.len()] {
                let s = child
                    .wait()
                    .map_err(|e| Error::io("waiting for helper", &self.helper, e))?;
                if helper::read_result(&request.bundle).is_none() {
                    // The helper was killed: kill and delete its container,
                    // and stop reading. The run has failed, and a process
                    // that outlived the delete would keep the pipes open.
                    readers.clear();
                    stale::kill_unstarted(&request.bundle);
                    if let Err(message) = stale::delete_container(
                        request.backend,
                        &request.state_root,
                        id,
                        &request.runc,
                    ) {
                        return Err(Error::HelperDied {
                            id: id.clone(),
                            status: s.to_string(),
                            stderr: format!("deleting its container failed: {message}"),
                        });
                    }
                }
                status = Some(s.to_string());
            }
            let mut finished = Vec::new();
            for (i, (stream, file)) in readers.iter_mut().enumerate() {
                if !ready[i] {
                    continue;
                }
                match file.read(&mut buf) {
                    Ok(0) => finished.push(i),
                    Ok(n) => output(*stream, &buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(Error::io(
                            "reading container output",
                            request.bundle.clone(),
                            e,
                        ))
                    }
                }
            }
            for i in finished.into_iter().rev() {
                readers.remove(i);
            }
        }
        Ok(status.unwrap_or_default())
    }
}
