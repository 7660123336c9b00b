//! `kiln run -it`: the runtime allocates the container's pseudo-terminal and
//! sends its master over a console socket in the bundle; the helper relays
//! kiln's stdin/stdout to it, with kiln's terminal in raw mode, and passes
//! window size changes on.

use std::io::{ErrorKind, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::unistd::Pid;

use super::wait::{reap, Stopper, Waited};

pub(crate) const SOCKET: &str = "console.sock";

pub(crate) struct ConsoleSocket {
    listener: UnixListener,
    pub path: PathBuf,
}

impl ConsoleSocket {
    pub(crate) fn listen(bundle: &Path) -> Result<Self, String> {
        let path = bundle.join(SOCKET);
        let listener = UnixListener::bind(&path)
            .map_err(|e| format!("listening on console socket {}: {e}", path.display()))?;
        // The runtime has connected and sent the master by the time create
        // returns; never wait for a runtime that failed to.
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("console socket: {e}"))?;
        Ok(ConsoleSocket { listener, path })
    }

    /// The pty master the runtime sent.
    pub(crate) fn receive(&self) -> Result<OwnedFd, String> {
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| format!("the runtime sent no terminal: {e}"))?;
        stream
            .set_nonblocking(false)
            .map_err(|e| format!("console socket: {e}"))?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("receiving the terminal: {e}"))?;
        for cmsg in msg
            .cmsgs()
            .map_err(|e| format!("receiving the terminal: {e}"))?
        {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(fd) = fds.first() {
                    // SAFETY: the kernel installed this fd in our table.
                    return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
                }
            }
        }
        Err("the runtime's console message held no file descriptor".into())
    }
}

/// kiln's terminal in raw mode while it lives.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enable() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, saved);
        }
    }
}

fn copy_window_size(master: BorrowedFd<'_>) {
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read and write a winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        for fd in [0, 1] {
            if libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) == 0 {
                libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
                return;
            }
        }
    }
}

/// Relays between kiln's stdio and `master` until `init` exits; stop
/// signals are handled like [`super::wait::wait_for`] does.
pub(crate) fn wait_with_terminal(
    init: Pid,
    set: &SigSet,
    master: OwnedFd,
) -> Result<Waited, String> {
    let signals = SignalFd::with_flags(set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))?;
    let mut stopper = Stopper::new(init, true);
    copy_window_size(master.as_fd());
    let _raw = RawMode::enable();
    let mut master = std::fs::File::from(master);
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let (mut master_open, mut stdin_open) = (true, true);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if let Some(status) = reap(init)? {
            drain(&mut master, &mut stdout, &mut buf);
            return Ok(Waited {
                status,
                cancelled: stopper.cancelled,
            });
        }
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if master_open {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("polling the terminal: {e}")),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGWINCH) => copy_window_size(master.as_fd()),
                    Ok(sig) => stopper.on_signal(sig),
                    Err(_) => {}
                }
            }
        }
        let mut i = 1;
        if master_open {
            if ready[i] {
                match master.read(&mut buf) {
                    Ok(0) => master_open = false,
                    Ok(n) => {
                        let _ = stdout.write_all(&buf[..n]);
                        let _ = stdout.flush();
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // EIO: every slave end is closed.
                    Err(_) => master_open = false,
                }
            }
            i += 1;
        }
        if stdin_open && ready[i] {
            match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if master.write_all(&buf[..n]).is_err() {
                        stdin_open = false;
                    }
                }
            }
        }
    }
}

/// Output still buffered in the terminal after the process exited.
fn drain(master: &mut std::fs::File, out: &mut std::io::Stdout, buf: &mut [u8]) {
    loop {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            break;
        }
        match master.read(buf) {
            Ok(n) if n > 0 => {
                let _ = out.write_all(&buf[..n]);
            }
            _ => break,
        }
    }
    let _ = out.flush();
}
