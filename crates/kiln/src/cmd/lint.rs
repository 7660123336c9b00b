//! `kiln lint`: BuildKit's build checks plus kiln's lean-image hints.
//! Exit 0 when clean, 1 when something was found or the file does not parse.

use std::process::ExitCode;

use kiln_dockerfile::lint::{lint, Finding, Origin};

use super::debug::{read_dockerfile, Format};
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Dockerfile to check (`-` for standard input)
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    file: String,
    #[arg(long, value_enum, default_value = "plain")]
    format: Format,
}

fn finding_json(name: &str, f: &Finding) -> serde_json::Value {
    serde_json::json!({
        "file": name,
        "rule": f.rule,
        "origin": match f.origin { Origin::Buildkit => "buildkit", Origin::Kiln => "kiln" },
        "message": f.message,
        "line": f.span.line,
        "column": f.span.col,
        "end_line": f.span.end_line,
    })
}

/// What `kiln build` would reject before running anything: the stage plan
/// and each stage's instructions (lowered against an empty base config,
/// as no image is looked at here).
fn rejects(df: &kiln_dockerfile::Dockerfile) -> Result<(), kiln_dockerfile::Error> {
    let host = kiln_oci::Platform::host().to_string();
    let opts = kiln_dockerfile::PlanOptions {
        target: None,
        build_args: Vec::new(),
        target_platform: host.clone(),
        build_platform: host,
    };
    let plan = kiln_dockerfile::plan(df, &opts)?;
    for stage in &plan.stages {
        kiln_dockerfile::lower(&plan, stage.index, &Default::default())?;
    }
    Ok(())
}

pub fn run(_global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let (name, text) = read_dockerfile(&args.file)?;
    let df = match kiln_dockerfile::parse(&name, &text).and_then(|df| rejects(&df).map(|()| df)) {
        Ok(df) => df,
        Err(e) => {
            match args.format {
                Format::Plain => eprintln!("{e}"),
                Format::Json => println!(
                    "{}",
                    serde_json::json!({ "file": name, "error": e.headline() })
                ),
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let findings = lint(&df);
    match args.format {
        Format::Json => {
            let list: Vec<serde_json::Value> =
                findings.iter().map(|f| finding_json(&name, f)).collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        Format::Plain => {
            for f in &findings {
                println!(
                    "{name}:{}:{}: {}: {}",
                    f.span.line, f.span.col, f.rule, f.message
                );
                if let Some(line) = df.lines.get(f.span.line.wrapping_sub(1)) {
                    println!("  {} | {}", f.span.line, line);
                }
            }
            if findings.is_empty() {
                println!("{name}: no problems found");
            } else {
                println!("{} problem(s) found", findings.len());
            }
        }
    }
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
