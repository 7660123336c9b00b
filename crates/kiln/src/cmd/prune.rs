use std::process::ExitCode;

use anyhow::Context;

use super::images::{human_size, open_store};
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Do not list each deleted blob
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let report = store.prune(&[]).context("pruning the store")?;
    if !args.quiet {
        for (d, _) in &report.removed {
            println!("Deleted: {d}");
        }
    }
    println!("Total reclaimed space: {}", human_size(report.bytes_freed));
    Ok(ExitCode::SUCCESS)
}
