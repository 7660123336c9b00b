//! kiln: a daemonless container image builder.
//!
//! This crate is the only one that prints. Each subcommand lives in its own
//! file under `cmd/`, with its clap arguments and a `run` function.

mod cmd;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kiln", version, about = "Daemonless container image builder")]
struct Cli {
    /// Directory of kiln's image store and caches.
    /// Default: /var/lib/kiln for root, $XDG_DATA_HOME/kiln otherwise.
    #[arg(long, env = "KILN_ROOT", global = true, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Registry to talk to over plain HTTP (repeatable). localhost and
    /// 127.0.0.0/8 always are.
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile
    Build(cmd::build::Args),
    /// kaniko's command line (--context, --dockerfile, --destination, …),
    /// built with --isolation=chroot
    Executor(cmd::executor::Args),
    /// Show where an image's bytes are: layers, stages, largest files, waste
    Analyze(cmd::analyze::Args),
    /// Check a final image for what stops it from starting or must not ship
    Check(cmd::check::Args),
    /// Run a command in a new container from an image
    Run(cmd::run::Args),
    /// Copy files out of an image without running it
    Cp(cmd::cp::Args),
    /// Check a Dockerfile for mistakes and image-size problems
    Lint(cmd::lint::Args),
    /// Show what kiln understood of a Dockerfile
    #[command(subcommand)]
    Debug(cmd::debug::Command),
    /// List images
    Images(cmd::images::Args),
    /// Show an image's manifest and config
    Inspect(cmd::inspect::Args),
    /// Show the layers of an image and what made them
    History(cmd::history::Args),
    /// Give an image another name
    Tag(cmd::tag::Args),
    /// Remove image names
    Rm(cmd::rm::Args),
    /// Remove blobs, layer snapshots and build cache nothing needs
    Prune(cmd::prune::Args),
    /// Disk use of the store and caches
    #[command(subcommand)]
    System(cmd::system::Command),
    /// Verify every blob in the store
    Fsck(cmd::fsck::Args),
    /// Write images to a tar archive (docker-archive and OCI layout at once)
    Save(cmd::save::Args),
    /// Load images from a docker save or OCI archive
    Load(cmd::load::Args),
    /// Make a one-layer image from a root filesystem
    Import(cmd::import::Args),
    /// Pull an image from a registry
    Pull(cmd::pull::Args),
    /// Push an image to a registry
    Push(cmd::push::Args),
    /// Store credentials for a registry
    Login(cmd::login::Args),
    /// Remove stored credentials for a registry
    Logout(cmd::logout::Args),
}

impl Command {
    /// Whether the command touches the store or runs steps, so that a
    /// normal user's kiln runs it rootless (see `kiln_exec::rootless`).
    fn needs_namespace(&self) -> bool {
        !matches!(
            self,
            Command::Lint(_) | Command::Debug(_) | Command::Login(_) | Command::Logout(_)
        )
    }
}

/// glibc gives each thread that allocates its own arena (up to 8 per core)
/// and keeps what is freed there; with the build's worker threads that
/// tripled peak RSS over the live heap (bigctx 2x: 69 MB vs 40 MB with one
/// arena, see docs/benchmarks.md). One arena, though, serializes the
/// context walk's threads on its lock (a cached bigctx walk: 45 ms, against
/// 29 ms with one arena per core; peak RSS the same). So: one per core.
fn malloc_arena_per_core() {
    #[cfg(target_env = "gnu")]
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: mallopt only changes malloc's tuning; called before threads start.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores.min(64) as libc::c_int);
        }
    }
}

fn main() -> ExitCode {
    // RUN steps execute in a re-executed copy of this binary; that copy must
    // take over before anything else starts (no threads, no tokio).
    kiln_exec::helper::run_if_helper();

    quiet_on_closed_stdout();
    malloc_arena_per_core();
    let cli = Cli::parse();
    // A normal user's kiln goes on in its own user namespace (still one
    // thread here, as `unshare` needs).
    if cli.command.needs_namespace() {
        if let Err(e) = kiln_exec::rootless::enter() {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let global = cmd::Global::new(cli.root, cli.insecure_registries);
    let result = match cli.command {
        Command::Build(a) => cmd::build::run(&global, a),
        Command::Executor(a) => cmd::executor::run(&global, a),
        Command::Analyze(a) => cmd::analyze::run(&global, a),
        Command::Check(a) => cmd::check::run(&global, a),
        Command::Run(a) => cmd::run::run(&global, a),
        Command::Cp(a) => cmd::cp::run(&global, a),
        Command::Lint(a) => cmd::lint::run(&global, a),
        Command::Debug(c) => cmd::debug::run(&global, c),
        Command::Images(a) => cmd::images::run(&global, a),
        Command::Inspect(a) => cmd::inspect::run(&global, a),
        Command::History(a) => cmd::history::run(&global, a),
        Command::Tag(a) => cmd::tag::run(&global, a),
        Command::Rm(a) => cmd::rm::run(&global, a),
        Command::Prune(a) => cmd::prune::run(&global, a),
        Command::System(c) => cmd::system::run(&global, c),
        Command::Fsck(a) => cmd::fsck::run(&global, a),
        Command::Save(a) => cmd::save::run(&global, a),
        Command::Load(a) => cmd::load::run(&global, a),
        Command::Import(a) => cmd::import::run(&global, a),
        Command::Pull(a) => cmd::pull::run(&global, a),
        Command::Push(a) => cmd::push::run(&global, a),
        Command::Login(a) => cmd::login::run(&global, a),
        Command::Logout(a) => cmd::logout::run(&global, a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", printable(&chain(&e)));
            ExitCode::FAILURE
        }
    }
}

/// `kiln inspect IMAGE | head`: printing to a pipe whose reader is gone
/// panics in `println!`; exit quietly instead, with the status a process
/// killed by SIGPIPE has (as `cat` and `git` do). SIGPIPE itself stays
/// ignored, so a closed socket or helper pipe is an error, not a death.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.starts_with("failed printing to std") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// A message made safe for the terminal line by line: whatever untrusted
/// text reached it unescaped (a library's message quoting a registry or an
/// archive) cannot send control sequences. Already escaped text, line
/// breaks and tabs (a Dockerfile line shown in an error) are kept.
fn printable(message: &str) -> String {
    let escape_line = |line: &str| {
        line.split('\t')
            .map(|part| kiln_oci::escape(part).into_owned())
            .collect::<Vec<_>>()
            .join("\t")
    };
    message
        .split('\n')
        .map(escape_line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The error and its causes on one line, each cause once: many errors
/// already include their source in their own message.
fn chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
