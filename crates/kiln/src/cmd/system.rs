use std::process::ExitCode;

use kiln_engine::Builder;
use serde_json::json;

use super::images::human_size;
use super::Global;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Show disk use: images, build cache, layer snapshots, cache mounts
    /// and unused blobs, with what `kiln prune --all` would reclaim
    Df(DfArgs),
}

#[derive(clap::Args)]
pub struct DfArgs {
    /// Output format: `table` (default) or `json` (one object per line)
    #[arg(long, default_value = "table")]
    format: String,
}

pub fn run(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Df(args) => df(global, args),
    }
}

fn df(global: &Global, args: DfArgs) -> anyhow::Result<ExitCode> {
    let json = match args.format.as_str() {
        "json" | "{{json .}}" => true,
        "table" => false,
        other => anyhow::bail!("unknown --format {other:?} (use table or json)"),
    };
    let rows = Builder::open(&global.root)?.disk().disk_usage()?;
    if !json {
        println!(
            "{:<16}{:<10}{:<10}{:<12}RECLAIMABLE",
            "TYPE", "TOTAL", "ACTIVE", "SIZE"
        );
    }
    for r in rows {
        let percent = (r.reclaimable * 100).checked_div(r.bytes).unwrap_or(0);
        if json {
            let v = json!({
                "Type": r.kind,
                "TotalCount": r.total,
                "Active": r.active,
                "Size": human_size(r.bytes),
                "Reclaimable": human_size(r.reclaimable),
                "SizeBytes": r.bytes,
                "ReclaimableBytes": r.reclaimable,
            });
            println!("{v}");
        } else {
            println!(
                "{:<16}{:<10}{:<10}{:<12}{} ({percent}%)",
                r.kind,
                r.total,
                r.active,
                human_size(r.bytes),
                human_size(r.reclaimable)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
