//! `kiln run`: a command in a container of an image, like `docker run --rm`.

use std::process::ExitCode;

use kiln_engine::container::{RunRequest, Volume};
use kiln_engine::options::NetworkMode;
use kiln_engine::{Builder, Runtime};

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Remove the container when it exits (always the case: kiln keeps no containers).
    #[arg(long)]
    rm: bool,
    /// Bind mount HOST:CONTAINER[:ro] (repeatable).
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass the host's).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// User (name or uid[:gid]) to run as.
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Override the image's ENTRYPOINT.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Network: default (the host's), host or none.
    #[arg(long, default_value = "default")]
    network: String,
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Container runtime.
    #[arg(long, value_enum, default_value = "youki")]
    runtime: Runtime,
    /// Image to run.
    image: String,
    /// Command and arguments (default: the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let volumes = args
        .volumes
        .iter()
        .map(|v| Volume::parse(v))
        .collect::<Result<Vec<_>, _>>()?;
    let request = RunRequest {
        image: args.image,
        args: args.command,
        entrypoint: args.entrypoint,
        volumes,
        workdir: args.workdir,
        env: args.env,
        user: args.user,
        network: NetworkMode::parse(&args.network)?,
        tty: args.tty,
        runtime: args.runtime,
        insecure_registries: global.insecure_registries.clone(),
    };
    let _ = (args.rm, args.interactive);
    let code = Builder::open(&global.root)?.run_container(&request)?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}
