use std::process::ExitCode;

use kiln_engine::disk::PruneOptions;
use kiln_engine::Builder;

use super::images::human_size;
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Do not list each deleted blob
    #[arg(short, long)]
    quiet: bool,
    /// Also drop the whole build cache, the RUN cache mounts and every
    /// layer snapshot not in use (images keep their blobs)
    #[arg(short, long, visible_alias = "cache")]
    all: bool,
    /// Trim the build cache to SIZE, least recently used records first
    /// (default 10GB)
    #[arg(long = "cache-max-size", value_name = "SIZE", value_parser = super::build::parse_size)]
    cache_max_size: Option<u64>,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let builder = Builder::open(&global.root)?;
    let report = builder.disk().prune(&PruneOptions {
        all: args.all,
        cache_max_size: args.cache_max_size,
    })?;
    if !args.quiet {
        for (d, _) in &report.blobs.removed {
            println!("Deleted: {d}");
        }
    }
    println!(
        "Deleted {} blobs ({}), {} build cache records ({}), {} layer snapshots ({}), {} cache mounts ({})",
        report.blobs.removed.len(),
        human_size(report.blobs.bytes_freed),
        report.records,
        human_size(report.record_bytes),
        report.snapshots,
        human_size(report.snapshot_bytes),
        report.cache_mounts,
        human_size(report.cache_mount_bytes),
    );
    println!(
        "Total reclaimed space: {}",
        human_size(report.bytes_freed())
    );
    Ok(ExitCode::SUCCESS)
}
