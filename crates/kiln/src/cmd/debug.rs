use std::process::ExitCode;

use super::Global;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print each instruction as parsed
    Parse {},
    /// Print the expansion of one word
    Expand {},
    /// Print the stages to build, in order
    Plan {},
}

pub fn run(_global: &Global, _command: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("kiln debug: not yet implemented")
}
