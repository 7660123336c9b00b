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

/// Blocks the stop signals and SIGCHLD for [`wait_for`]. Call it only after
/// the container's processes were forked: they would inherit the mask.
pub(crate) fn block_signals() -> nix::Result<SigSet> {
    let mut set = stop_signals();
    set.add(Signal::SIGCHLD);
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

/// Waits until `init` exits, reaping every other child that exits meanwhile
/// (the helper may be their subreaper). `set` is what [`block_signals`]
/// returned.
pub(crate) fn wait_for(init: Pid, set: &SigSet, interactive: bool) -> Result<Waited, String> {
    let mut cancelled = false;
    let mut forwarded = false;
    match pending_signal() {
        Some(Signal::SIGUSR1) => cancelled = true,
        Some(s) if !interactive => {
            let _ = s;
            cancelled = true;
        }
        Some(s) => {
            let _ = kill(init, s);
            forwarded = true;
        }
        None => {}
    }
    if cancelled {
        let _ = kill(init, Signal::SIGKILL);
    }
    loop {
        if let Some(status) = reap(init)? {
            return Ok(Waited { status, cancelled });
        }
        let signal = set
            .wait()
            .map_err(|e| format!("waiting for signals: {e}"))?;
        match signal {
            Signal::SIGCHLD => {}
            Signal::SIGUSR1 => {
                cancelled = true;
                let _ = kill(init, Signal::SIGKILL);
            }
            s if interactive && !forwarded => {
                forwarded = true;
                let _ = kill(init, s);
            }
            _ => {
                cancelled = true;
                let _ = kill(init, Signal::SIGKILL);
            }
        }
    }
}

fn reap(init: Pid) -> Result<Option<ExitStatus>, String> {
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
