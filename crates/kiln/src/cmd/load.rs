use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::images::open_store;
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Read from this archive instead of stdin (`-` is stdin)
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Do not print the loaded image names
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let report = match args.input.filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            let f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            kiln_store::archive::load(&store, std::io::BufReader::new(f))
                .with_context(|| format!("loading {}", path.display()))?
        }
        None => kiln_store::archive::load(&store, std::io::stdin().lock())
            .context("loading the archive from stdin")?,
    };
    if !args.quiet {
        for img in &report.images {
            if img.names.is_empty() {
                println!("Loaded image ID: {}", img.config_digest);
            }
            for n in &img.names {
                println!("Loaded image: {}", n.familiar());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
