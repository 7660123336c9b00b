use std::process::ExitCode;

use anyhow::Context;
use kiln_oci::Reference;

use super::images::open_store;
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Existing image (name, id or digest)
    source: String,
    /// New name
    target: String,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let target = Reference::parse(&args.target)?;
    let store = open_store(global)?;
    let img = store
        .resolve(&args.source)
        .with_context(|| format!("tagging {}", args.source))?;
    // Keep a multi-platform name multi-platform.
    let desc = img.index_descriptor.unwrap_or(img.manifest_descriptor);
    store
        .tag(&target, desc)
        .with_context(|| format!("tagging {} as {}", args.source, target.familiar()))?;
    Ok(ExitCode::SUCCESS)
}
