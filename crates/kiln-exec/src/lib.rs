//! Runs build steps (`RUN`) and `kiln run` in containers.
//!
//! One [`RunSpec`] describes one process in one container over an already
//! mounted root filesystem. [`executor`] returns a backend; both backends are
//! fed the same OCI runtime `config.json` (see [`spec`]) and are driven by a
//! re-executed, single-threaded helper process (see [`helper`]), because
//! forking container processes from a multi-threaded (tokio) process is not
//! safe and because the helper cleans up when kiln dies.
//!
//! Lifecycle of one [`Executor::run`] call:
//!
//! 1. prepare: create missing mountpoints (`/etc/resolv.conf`, `/etc/hosts`,
//!    bind/tmpfs destinations, `/proc`, `/dev`, `/sys`) and the working
//!    directory inside the rootfs, recording what was created;
//! 2. write a bundle (`config.json`, generated `resolv.conf` and `hosts`)
//!    under `STATE/bundles/<id>/`;
//! 3. start the helper, which creates and starts the container, waits for its
//!    init process, deletes the container and writes `result.json`;
//! 4. relay the process's stdout/stderr to the output callback;
//! 5. remove the mountpoints created in step 1 and the bundle, so the
//!    rootfs diff holds only what the process itself wrote.
//!
//! [`cancel_all`] (call it from a Ctrl-C handler) kills every running
//! container; if kiln dies instead, each helper gets SIGTERM from the kernel
//! (parent-death signal) and cleans up; [`cleanup_stale`] removes what a
//! `kill -9` of the helper itself left behind.

mod bundle;
mod chroot;
mod error;
pub mod helper;
mod host;
#[cfg(target_env = "musl")]
mod musl_shim;
mod prepare;
mod procs;
pub mod rootless;
mod run;
mod seccomp;
pub mod spec;
mod stale;

use std::path::{Path, PathBuf};

pub use error::{Error, Result};
pub use run::cancel_all;
pub use stale::cleanup_stale;

/// Everything needed to run one process in one container.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// An already-mounted, writable root filesystem (overlay merged dir).
    pub rootfs: PathBuf,
    /// argv; `args[0]` is looked up in the `PATH` of `env` (or Docker's
    /// default `PATH` when `env` has none).
    pub args: Vec<String>,
    /// `KEY=value` strings, in order.
    pub env: Vec<String>,
    /// Absolute working directory inside the container; created (0755,
    /// root-owned) when missing, like Docker does.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub mounts: Vec<Mount>,
    pub network: Network,
    pub hostname: String,
    pub stdio: Stdio,
    /// Unique container id (`[A-Za-z0-9_.+-]`, at most 64 characters): names
    /// the state directories and appears in errors.
    pub id: String,
}

/// An extra mount on top of the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    Bind {
        source: PathBuf,
        destination: String,
        readonly: bool,
    },
    Tmpfs {
        destination: String,
        /// Size limit in bytes; `None` is the kernel default (half of RAM).
        size: Option<u64>,
    },
}

/// Network namespace of the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// Share the host's network namespace (default for builds, so package
    /// managers work).
    #[default]
    Host,
    /// A new network namespace with only the loopback interface, up.
    None,
}

/// Where the process's standard streams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stdio {
    /// stdin is an empty pipe; stdout and stderr are streamed to the output
    /// callback of [`Executor::run`].
    Capture,
    /// The process uses kiln's own stdin/stdout/stderr (`kiln run`); with
    /// `tty`, a pseudo-terminal is allocated and kiln's terminal (if stdin is
    /// one) is put in raw mode while the container runs.
    Inherit { tty: bool },
}

/// Which of the process's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// How the container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The code a shell (and Docker) reports: the exit code, or 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// Runs processes in containers.
///
/// Lifecycle: create one with [`executor`] per kiln process and share it
/// (`Send + Sync`); call [`Executor::run`] from any number of threads at once
/// (each call blocks until its container is gone, so call it from a blocking
/// thread, e.g. `tokio::task::spawn_blocking`); on Ctrl-C call
/// [`cancel_all`], and the pending `run` calls return [`Error::Cancelled`].
pub trait Executor: Send + Sync {
    /// Runs `spec` to completion. In [`Stdio::Capture`] mode output arrives in
    /// `output` as it is produced (chunks, not lines), on the calling thread.
    ///
    /// A process that runs and fails is `Ok` with its [`ExitStatus`]; `Err`
    /// means it could not be run (e.g. [`Error::ExecutableNotFound`], whose
    /// [`Error::exit_code`] is 127 like Docker's).
    fn run(
        &self,
        spec: &RunSpec,
        output: &mut dyn FnMut(OutputStream, &[u8]),
    ) -> Result<ExitStatus>;
}

/// Container runtime backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// youki's `libcontainer`, embedded in kiln (run in the helper process).
    Youki,
    /// The `runc` binary (`/usr/sbin/runc` unless [`ExecutorOptions::runc`]
    /// says otherwise).
    Runc,
    /// No container: a plain child process in the rootfs (entered with
    /// `chroot(2)` unless it is `/`), for `--isolation=chroot`.
    Chroot,
}

impl std::str::FromStr for Runtime {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "youki" | "libcontainer" => Ok(Runtime::Youki),
            "runc" => Ok(Runtime::Runc),
            "chroot" => Ok(Runtime::Chroot),
            _ => Err(Error::UnknownRuntime(s.to_string())),
        }
    }
}

/// Settings of an executor beyond the runtime and state directory.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    pub runtime: Runtime,
    /// Where the executor keeps bundles and runtime state
    /// (`<state_dir>/bundles`, `<state_dir>/youki`, `<state_dir>/runc`).
    pub state_dir: PathBuf,
    /// The binary re-executed as helper: it must call
    /// [`helper::run_if_helper`] first thing in `main`. Default:
    /// `std::env::current_exe()`.
    pub helper: Option<PathBuf>,
    /// The `runc` binary. Default: `runc` from `PATH`, else `/usr/sbin/runc`.
    pub runc: Option<PathBuf>,
}

/// An executor for `runtime` keeping its state under `state_dir`, with the
/// current executable as helper.
pub fn executor(runtime: Runtime, state_dir: &Path) -> Result<Box<dyn Executor>> {
    executor_with(ExecutorOptions {
        runtime,
        state_dir: state_dir.to_path_buf(),
        helper: None,
        runc: None,
    })
}

/// An executor with explicit options (tests point `helper` at a helper
/// binary).
pub fn executor_with(options: ExecutorOptions) -> Result<Box<dyn Executor>> {
    if options.runtime == Runtime::Chroot {
        return Ok(Box::new(chroot::ChrootExecutor));
    }
    Ok(Box::new(run::HelperExecutor::new(options)?))
}
