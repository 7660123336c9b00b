use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use kiln_oci::{Platform, Reference};
use kiln_store::import::{import_dir, import_tar, ImportOptions};

use super::images::open_store;
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Root filesystem: a tar (optionally gzip/zstd), a directory, or `-` for stdin
    source: PathBuf,
    /// Name for the image
    name: Option<String>,
    /// Dockerfile instruction to apply to the config (CMD, ENTRYPOINT, ENV,
    /// EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// Platform to record (default: this machine's)
    #[arg(long)]
    platform: Option<String>,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let name = args.name.as_deref().map(Reference::parse).transpose()?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let store = open_store(global)?;
    let opts = ImportOptions {
        changes: args.changes.clone(),
        source: args.source.display().to_string(),
        platform,
        name,
    };
    // The input's size: what a full disk needed room for.
    let size = std::fs::metadata(&args.source)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| format!(" ({} bytes)", m.len()))
        .unwrap_or_default();
    let what = || format!("importing {}{size}", args.source.display());
    let imported = if args.source.as_os_str() == "-" {
        import_tar(&store, std::io::stdin().lock(), &opts).with_context(what)?
    } else if args.source.is_dir() {
        import_dir(&store, &args.source, &opts).with_context(what)?
    } else {
        let f = File::open(&args.source)
            .with_context(|| format!("opening {}", args.source.display()))?;
        import_tar(&store, std::io::BufReader::new(f), &opts).with_context(what)?
    };
    if let (Some(name), true) = (&opts.name, opts.platform == Platform::host()) {
        // As `docker import` does: the first build on it need not wait.
        kiln_engine::Builder::open(&global.root)?.unpack(&name.to_string())?;
    }
    println!("{}", imported.config_digest);
    Ok(ExitCode::SUCCESS)
}
