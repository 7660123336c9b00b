//! `kiln check IMAGE|ARCHIVE|OCI-LAYOUT`: the lean-final guards on an image.

use std::process::ExitCode;

use anyhow::Context;
use kiln_analyze::{Finding, Severity};

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Image name or id in the store, a `docker save`/OCI archive, or an OCI layout directory
    image: String,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let input = kiln_analyze::open_input(&global.root, &args.image)
        .with_context(|| format!("checking {}", args.image))?;
    let analysis = kiln_analyze::analyze(&input.store, &input.image, &input.name)
        .with_context(|| format!("checking {}", args.image))?;
    let findings = kiln_analyze::check(&analysis);
    print_findings(&findings);
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    if warnings == 0 {
        println!("{}: no problems found", args.image);
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{}: {warnings} problem(s) found", args.image);
        Ok(ExitCode::FAILURE)
    }
}

/// `warning[elf-loader]: /app: … \n  hint: …`, on stdout.
pub fn print_findings(findings: &[Finding]) {
    for f in findings {
        let level = match f.severity {
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        println!("{level}[{}]: {}", f.rule, f.message);
        println!("  hint: {}", f.hint);
    }
}
