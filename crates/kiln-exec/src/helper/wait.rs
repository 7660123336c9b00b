//! Waiting for a container's init process in the helper, with the stop
//! signals turned into kill or forward requests.

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{pending_signal, stop_signals};
use crate::ExitStatus;

pub(crate) struct Waited {
    pub status: ExitStatus,
    /// The container was killed because kiln asked for it (not a forwarded
    /// signal the process chose to die from).
    pub cancelled: bool,
}

/// Blocks the stop signals, SIGCHLD and SIGWINCH for the wait loops. Call it
/// only after the container's processes were forked: they would inherit the
/// mask.
pub(crate) fn block_signals() -> nix::Result<SigSet> {
    let mut set = stop_signals();
    set.add(Signal::SIGCHLD);
    set.add(Signal::SIGWINCH);
    set.thread_block()?;
    Ok(set)
}

/// Whether a stop request arrived that must kill the container right away.
pub(crate) fn kill_requested(interactive: bool) -> bool {
    match pending_signal() {
        Some(Signal::SIGUSR1) => true,
        Some(_) => !interactive,
        None => false,
    }
}

/// What the stop signals do to the container's init process: SIGUSR1 kills
/// it; the others kill a captured (build) container and are forwarded once
/// to an interactive one (killed on the second).
pub(crate) struct Stopper {
    init: Pid,
    interactive: bool,
    forwarded: bool,
    pub cancelled: bool,
}

impl Stopper {
    /// Applies a stop request that arrived before the signals were blocked.
    pub(crate) fn new(init: Pid, interactive: bool) -> Self {
        let mut s = Stopper {
            init,
            interactive,
            forwarded: false,
            cancelled: false,
        };
        if let Some(sig) = pending_signal() {
            s.on_signal(sig);
        }
        s
    }

    /// Handles a stop signal (others are ignored).
    pub(crate) fn on_signal(&mut self, sig: Signal) {
        if !stop_signals().contains(sig) {
            return;
        }
        if sig != Signal::SIGUSR1 && self.interactive && !self.forwarded {
            self.forwarded = true;
            let _ = kill(self.init, sig);
        } else {
            self.cancelled = true;
            let _ = kill(self.init, Signal::SIGKILL);
        }
    }
}

/// Waits until `init` exits, reaping every other child that exits meanwhile
/// (the helper may be their subreaper). `set` is what [`block_signals`]
/// returned.
pub(crate) fn wait_for(init: Pid, set: &SigSet, interactive: bool) -> Result<Waited, String> {
    let mut stopper = Stopper::new(init, interactive);
    loop {
        if let Some(status) = reap(init)? {
            return Ok(Waited {
                status,
                cancelled: stopper.cancelled,
            });
        }
        let signal = set
            .wait()
            .map_err(|e| format!("waiting for signals: {e}"))?;
        stopper.on_signal(signal);
    }
}

/// Reaps exited children without blocking; `Some` once `init` is among them.
pub(crate) fn reap(init: Pid) -> Result<Option<ExitStatus>, String> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == init => {
                return Ok(Some(ExitStatus::Code(code)))
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == init => {
                return Ok(Some(ExitStatus::Signal(sig as i32)))
            }
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => {
                return Err(format!(
                    "container init process {init} is not a child of the helper"
                ))
            }
            Err(e) => return Err(format!("waiting for container init process {init}: {e}")),
        }
    }
}
