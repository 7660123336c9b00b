//! Bringing up the loopback interface of a container's new network
//! namespace: runc does it itself, libcontainer 0.7 does not. A thread of
//! its own enters the namespace (a network namespace is per thread) and
//! ends there: coming back would need CAP_SYS_ADMIN over the helper's own
//! namespace, which a rootless helper does not have for the host's.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use nix::sched::{setns, CloneFlags};
use nix::unistd::Pid;

/// Sets `lo` up in the network namespace of `pid` if that is not ours.
pub(crate) fn up_in(pid: Pid) -> Result<(), String> {
    let own_path = "/proc/self/ns/net";
    let target_path = format!("/proc/{pid}/ns/net");
    let own = File::open(own_path).map_err(|e| format!("opening {own_path}: {e}"))?;
    let target = File::open(&target_path).map_err(|e| format!("opening {target_path}: {e}"))?;
    let same = match (own.metadata(), target.metadata()) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    };
    if same {
        return Ok(());
    }
    // Started after libcontainer forked the container's processes.
    std::thread::spawn(move || {
        setns(&target, CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("entering network namespace of {pid}: {e}"))?;
        set_lo_up()
    })
    .join()
    .unwrap_or_else(|_| Err("the loopback thread panicked".into()))
}

fn set_lo_up() -> Result<(), String> {
    // SAFETY: plain socket(2); the fd is owned right after.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by socket(2).
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write an ifreq.
    unsafe {
        // The request type is c_ulong with glibc, c_int with musl (the kiln image).
        if libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS as libc::Ioctl,
            &mut req,
        ) < 0
        {
            return Err(format!(
                "reading flags of lo: {}",
                std::io::Error::last_os_error()
            ));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as libc::Ioctl, &req) < 0 {
            return Err(format!(
                "setting lo up: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}
