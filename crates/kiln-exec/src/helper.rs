//! The re-executed single-threaded helper process that starts containers.
//!
//! [`crate::Executor::run`] starts `<helper binary> __kiln-exec-helper
//! <backend> <bundle> <state root> <id> <parent pid> <runc>` with the
//! container's stdio as its own stdio. The helper creates and starts the
//! container (embedded libcontainer, or the runc binary), waits for its init
//! process, deletes it, and writes `result.json` into the bundle.
//!
//! Signals: the kernel sends SIGUSR1 when kiln dies (parent-death signal,
//! armed between fork and exec and again first thing in the helper), and
//! [`crate::cancel_all`] sends it too: the container is killed at once, and
//! the helper kills any child still waiting to become the container before
//! it exits.
//! SIGINT/SIGTERM/SIGHUP (Ctrl-C reaches the helper, which shares kiln's
//! process group) kill a captured (build) container at once; an interactive
//! one (`kiln run`) first gets the signal forwarded, and is killed on the
//! second.

mod loopback;
mod runc;
mod tty;
mod wait;
mod workload;
mod youki;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use serde::{Deserialize, Serialize};

use crate::bundle::RESULT;
use crate::ExitStatus;

/// argv[1] of a helper process.
pub const MARKER: &str = "__kiln-exec-helper";

/// What the helper reports in `result.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Outcome {
    Exited(ExitStatus),
    NotFound(String),
    NotRunnable(String),
    Cancelled,
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Youki,
    Runc,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Youki => "youki",
            Backend::Runc => "runc",
        }
    }
}

pub(crate) struct Request {
    pub backend: Backend,
    pub bundle: PathBuf,
    pub state_root: PathBuf,
    pub id: String,
    pub interactive: bool,
    pub tty: bool,
    pub runc: PathBuf,
}

/// If this process was started as the container helper, do its job and exit;
/// otherwise return at once.
pub fn run_if_helper() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_none_or(|a| a != MARKER) {
        return;
    }
    let code = match parse(&args[2..]) {
        Some((request, parent)) => helper_main(&request, parent),
        None => {
            eprintln!("kiln helper: invalid arguments {args:?}");
            2
        }
    };
    std::process::exit(code);
}

/// The argv after the marker, in [`crate::run`]'s order.
pub(crate) fn argv(r: &Request, parent: u32) -> Vec<OsString> {
    let mode = match (r.interactive, r.tty) {
        (false, _) => "capture",
        (true, false) => "inherit",
        (true, true) => "tty",
    };
    vec![
        MARKER.into(),
        r.backend.name().into(),
        r.bundle.clone().into(),
        r.state_root.clone().into(),
        r.id.clone().into(),
        parent.to_string().into(),
        mode.into(),
        r.runc.clone().into(),
    ]
}

fn parse(args: &[OsString]) -> Option<(Request, i32)> {
    let [backend, bundle, state_root, id, parent, mode, runc] = args else {
        return None;
    };
    let backend = match backend.to_str()? {
        "youki" => Backend::Youki,
        "runc" => Backend::Runc,
        _ => return None,
    };
    let (interactive, tty) = match mode.to_str()? {
        "capture" => (false, false),
        "inherit" => (true, false),
        "tty" => (true, true),
        _ => return None,
    };
    Some((
        Request {
            backend,
            bundle: bundle.into(),
            state_root: state_root.into(),
            id: id.to_str()?.to_string(),
            interactive,
            tty,
            runc: runc.into(),
        },
        parent.to_str()?.parse().ok()?,
    ))
}

/// The first termination request seen before the wait loop blocks signals.
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember(signal: libc::c_int) {
    // Keep the strongest request: SIGUSR1 (kill now) over the others.
    let _ = PENDING.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    if signal == libc::SIGUSR1 {
        PENDING.store(signal, Ordering::SeqCst);
    }
}

/// Signals that ask the helper to stop the container.
pub(crate) fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGUSR1,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    set
}

pub(crate) fn pending_signal() -> Option<Signal> {
    Signal::try_from(PENDING.load(Ordering::SeqCst)).ok()
}

/// Ignored signals survive exec: the Rust runtime ignores SIGPIPE, and kiln's
/// parent may have ignored others. A container process starts with every
/// signal at its default action, as under Docker (`yes | head -1` must end
/// `yes` with SIGPIPE, not with an EPIPE error).
fn reset_ignored_signals() {
    for signo in 1..=libc::SIGRTMAX() {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        // SAFETY: querying, then (only if ignored) resetting, a disposition.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signo, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                libc::signal(signo, libc::SIG_DFL);
            }
        }
    }
}

fn helper_main(request: &Request, parent: i32) -> i32 {
    // Before anything else (kiln also sets it between fork and exec): until
    // the handler below is installed, SIGUSR1 simply ends the helper, which
    // has created nothing yet.
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR1) };
    if nix::unistd::getppid().as_raw() != parent {
        return 1; // kiln died before the parent-death signal was armed
    }
    reset_ignored_signals();
    // Until the wait loop blocks them, stop signals only set a flag: the
    // container processes forked meanwhile inherit the handler, never a
    // blocked mask (exec resets handlers, not masks).
    let action = SigAction::new(
        SigHandler::Handler(remember),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in stop_signals().iter() {
        // SAFETY: the handler only touches an atomic.
        if let Err(e) = unsafe { sigaction(s, &action) } {
            return finish(
                request,
                Outcome::Failed(format!("installing signal handler: {e}")),
            );
        }
    }
    // A parent that died while the handler was being installed.
    if nix::unistd::getppid().as_raw() != parent {
        PENDING.store(libc::SIGUSR1, Ordering::SeqCst);
    }
    let outcome = match request.backend {
        Backend::Youki => youki::run(request),
        Backend::Runc => runc::run(request),
    };
    // A container that was never started (creation interrupted by a stop
    // request) leaves its intermediate and init processes waiting for a
    // start that never comes: they must not outlive the helper.
    kill_children();
    finish(request, outcome)
}

/// SIGKILLs and reaps every child of this process (after a normal run
/// there are none left).
fn kill_children() {
    let me = std::process::id();
    for _ in 0..10 {
        let children = crate::procs::children_of(me);
        if children.is_empty() {
            return;
        }
        for pid in children {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::__WALL));
        }
    }
}

fn finish(request: &Request, outcome: Outcome) -> i32 {
    match write_result(&request.bundle, &outcome) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "kiln helper: writing result for container {}: {e}",
                request.id
            );
            1
        }
    }
}

fn write_result(bundle: &Path, outcome: &Outcome) -> std::io::Result<()> {
    let tmp = bundle.join(format!("{RESULT}.tmp"));
    fs::write(&tmp, serde_json::to_vec(outcome)?)?;
    fs::rename(&tmp, bundle.join(RESULT))
}

pub(crate) use runc::delete as delete_runc;
pub(crate) use youki::delete_by_id as delete_youki;

pub(crate) fn read_result(bundle: &Path) -> Option<Outcome> {
    let data = fs::read(bundle.join(RESULT)).ok()?;
    serde_json::from_slice(&data).ok()
}
