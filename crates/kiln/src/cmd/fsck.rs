use std::process::ExitCode;

use anyhow::Context;

use super::images::{human_size, open_store};
use super::Global;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(global: &Global, _args: Args) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let report = store.fsck().context("checking the store")?;
    for p in &report.problems {
        let what = match (&p.digest, p.path.as_os_str().is_empty()) {
            (_, false) => p.path.display().to_string(),
            (Some(d), true) => d.to_string(),
            (None, true) => "(unknown)".to_string(),
        };
        match &p.needed_by {
            Some(who) => println!("{what}: {} (needed by {who})", p.problem),
            None => println!("{what}: {}", p.problem),
        }
    }
    println!(
        "checked {} blobs ({}) and {} images: {}",
        report.blobs_checked,
        human_size(report.bytes_checked),
        report.images_checked,
        if report.is_clean() {
            "ok".to_string()
        } else {
            format!("{} problems", report.problems.len())
        }
    );
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
