use std::process::ExitCode;

use super::Global;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_global: &Global, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("kiln save: not yet implemented")
}
