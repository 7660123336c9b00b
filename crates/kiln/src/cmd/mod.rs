//! One file per subcommand. Each has `Args` (clap) and
//! `run(&Global, Args) -> anyhow::Result<ExitCode>`.

use std::path::PathBuf;

pub mod analyze;
pub mod build;
pub mod check;
pub mod cp;
pub mod debug;
pub mod executor;
pub mod fsck;
pub mod history;
pub mod images;
pub mod import;
pub mod inspect;
pub mod lint;
pub mod load;
pub mod login;
pub mod logout;
pub mod prune;
pub mod pull;
pub mod push;
pub mod rm;
pub mod run;
pub mod save;
pub mod system;
pub mod tag;

/// Flags every subcommand shares.
pub struct Global {
    /// Root of the store and caches (`--root`, `KILN_ROOT`).
    pub root: PathBuf,
    /// Registries reached over plain HTTP besides localhost.
    pub insecure_registries: Vec<String>,
}

impl Global {
    pub fn new(root: Option<PathBuf>, insecure_registries: Vec<String>) -> Self {
        let root = root.unwrap_or_else(default_root);
        Global {
            root,
            insecure_registries,
        }
    }
}

/// `/var/lib/kiln` for root, `$XDG_DATA_HOME/kiln` (or `~/.local/share/kiln`)
/// otherwise — also for a normal user's kiln, which is root in its own user
/// namespace.
fn default_root() -> PathBuf {
    if rustix::process::geteuid().is_root() && !kiln_exec::rootless::active() {
        return PathBuf::from("/var/lib/kiln");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("kiln");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".local/share/kiln")
}
