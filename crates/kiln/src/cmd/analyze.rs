//! `kiln analyze IMAGE|ARCHIVE|OCI-LAYOUT`: where the bytes are, what is
//! wasted, and CI gates on both.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use kiln_analyze::{human_size, short_command, Analysis, Budget};

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Image name or id in the store, a `docker save`/OCI archive, or an OCI layout directory
    image: String,
    /// Output format (json: see docs/analyze.md for the schema)
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Also write a self-contained HTML report (treemap and layer table)
    #[arg(long, value_name = "FILE")]
    html: Option<std::path::PathBuf>,
    /// How many files, directories and wasted files to list
    #[arg(long, default_value_t = 10)]
    top: usize,
    #[command(flatten)]
    gates: GateArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// The CI gates `analyze` and `build` share.
#[derive(clap::Args, Clone, Default)]
pub struct GateArgs {
    /// Fail (exit 1) when the uncompressed image is bigger (10485760, 50MB, 10MiB)
    #[arg(long, value_name = "SIZE", value_parser = kiln_analyze::parse_size)]
    max_size: Option<u64>,
    /// Fail when final bytes / shipped bytes is lower (0.9 or 90%)
    #[arg(long, value_name = "RATIO", value_parser = kiln_analyze::parse_ratio)]
    min_efficiency: Option<f64>,
    /// Fail when more bytes than this are wasted
    #[arg(long, value_name = "SIZE", value_parser = kiln_analyze::parse_size)]
    max_wasted: Option<u64>,
}

impl GateArgs {
    pub fn budget(&self) -> Budget {
        Budget {
            max_size: self.max_size,
            min_efficiency: self.min_efficiency,
            max_wasted: self.max_wasted,
        }
    }
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let input = kiln_analyze::open_input(&global.root, &args.image)
        .with_context(|| format!("analyzing {}", args.image))?;
    let analysis = kiln_analyze::analyze(&input.store, &input.image, &input.name)
        .with_context(|| format!("analyzing {}", args.image))?;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &analysis)?;
            writeln!(out)?;
        }
        Format::Text => print_text(&mut out, &analysis, args.top)?,
    }
    if let Some(path) = &args.html {
        let page = kiln_analyze::html::render(&analysis);
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(enforce(&analysis, &args.gates.budget()))
}

/// Checks the gates; prints what broke each one to stderr.
pub fn enforce(analysis: &Analysis, budget: &Budget) -> ExitCode {
    let failures = budget.check(analysis);
    for f in &failures {
        eprintln!("error: budget {}: {}", f.gate, f.message);
        for line in &f.breakdown {
            eprintln!("  {line}");
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `build 830MB → final 4.6MB`
pub fn stage_line(stages: &[kiln_analyze::StageSize]) -> String {
    stages
        .iter()
        .map(|s| format!("{} {}", s.name, human_size(s.size)))
        .collect::<Vec<_>>()
        .join(" → ")
}

fn print_text(out: &mut impl Write, a: &Analysis, top: usize) -> std::io::Result<()> {
    let t = &a.totals;
    writeln!(out, "Image:      {} ({})", a.image, &a.config_digest)?;
    writeln!(
        out,
        "Size:       {} uncompressed, {} compressed, {} layers, {} files",
        human_size(t.uncompressed),
        human_size(t.compressed),
        a.layers.len(),
        t.files
    )?;
    if !a.stages.is_empty() {
        writeln!(out, "Stages:     {}", stage_line(&a.stages))?;
    }
    writeln!(
        out,
        "Wasted:     {} bytes ({}): deleted {}, overwritten {}, metadata-only copy-ups {}",
        t.wasted,
        human_size(t.wasted),
        t.wasted_deleted,
        t.wasted_overwritten,
        t.wasted_metadata_only
    )?;
    writeln!(
        out,
        "Efficiency: {:.4} ({} bytes in the final filesystem of {} shipped)",
        t.efficiency, t.final_bytes, t.shipped
    )?;
    writeln!(
        out,
        "\nLAYER  COMPRESSED  UNCOMPRESSED  WASTED-LATER  CREATED BY"
    )?;
    for l in &a.layers {
        writeln!(
            out,
            "{:<6} {:<11} {:<13} {:<13} {}",
            l.index,
            human_size(l.compressed),
            human_size(l.uncompressed),
            human_size(l.wasted_later),
            short_command(&l.created_by, 60)
        )?;
    }
    writeln!(out, "\nLargest directories:")?;
    for d in a.largest_dirs.iter().take(top) {
        writeln!(
            out,
            "  {:>9}  {} ({} files)",
            human_size(d.size),
            d.path,
            d.files
        )?;
    }
    writeln!(out, "\nLargest files:")?;
    for f in a.largest_files.iter().take(top) {
        writeln!(
            out,
            "  {:>9}  {} (layer {})",
            human_size(f.size),
            f.path,
            f.layer
        )?;
    }
    if !a.waste.is_empty() {
        writeln!(out, "\nWasted files:")?;
        for w in a.waste.iter().take(top) {
            writeln!(
                out,
                "  {:>9}  {} (added in layer {}, {} in layer {})",
                human_size(w.size),
                w.path,
                w.added_in,
                w.reason.verb(),
                w.removed_in
            )?;
        }
    }
    Ok(())
}
