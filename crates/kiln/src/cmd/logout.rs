//! `kiln logout [REGISTRY]`: removes stored credentials like `docker logout`.

use std::process::ExitCode;

use super::login::registry_arg;
use super::pull::client;
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Registry (HOST[:PORT]) to forget credentials for. Default: docker.io.
    pub registry: Option<String>,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let registry = registry_arg(args.registry.as_deref())?;
    let client = client(global);
    let found = kiln_registry::block_on(client.logout(&registry))?;
    if found {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}
