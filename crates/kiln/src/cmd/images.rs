use std::io::Write;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use kiln_store::Store;
use serde_json::json;

use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Output format: `table` (default) or `json` (one object per line)
    #[arg(long, default_value = "table")]
    format: String,
    /// Only show image ids
    #[arg(short, long)]
    quiet: bool,
    /// Show full image ids
    #[arg(long)]
    no_trunc: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let list = store.list().context("listing images")?;
    let mut out = std::io::stdout().lock();
    let json = match args.format.as_str() {
        "json" | "{{json .}}" => true,
        "table" => false,
        other => anyhow::bail!("unknown --format {other:?} (use table or json)"),
    };
    if !json && !args.quiet {
        writeln!(
            out,
            "{:<40} {:<20} {:<15} {:<23} {:<10} COMPRESSED",
            "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"
        )?;
    }
    for s in list {
        let (repo, tag) = match &s.name {
            Some(r) => (r.familiar_name(), r.tag().unwrap_or("<none>").to_string()),
            None => ("<none>".to_string(), "<none>".to_string()),
        };
        let id = s.config_digest.map(|d| d.to_string()).unwrap_or_default();
        let short = if args.no_trunc {
            id.clone()
        } else {
            id.strip_prefix("sha256:")
                .unwrap_or(&id)
                .chars()
                .take(12)
                .collect()
        };
        let since = s.created.as_deref().map(created_since).unwrap_or_default();
        if args.quiet {
            writeln!(out, "{short}")?;
        } else if json {
            let v = json!({
                "Repository": repo,
                "Tag": tag,
                "ID": short,
                "Digest": s.manifest_digest.to_string(),
                "CreatedAt": s.created,
                "CreatedSince": since,
                "Size": human_size(s.uncompressed_size),
                "UncompressedSize": s.uncompressed_size,
                "CompressedSize": s.compressed_size,
                "Platform": s.platform.map(|p| p.to_string()),
                "Problem": s.problem,
            });
            writeln!(out, "{v}")?;
        } else {
            let size = match &s.problem {
                Some(p) => format!("(unreadable: {p})"),
                None => format!(
                    "{:<10} {}",
                    human_size(s.uncompressed_size),
                    human_size(s.compressed_size)
                ),
            };
            writeln!(out, "{repo:<40} {tag:<20} {short:<15} {since:<23} {size}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn open_store(global: &Global) -> anyhow::Result<Store> {
    Store::open(&global.root)
        .with_context(|| format!("opening the image store at {}", global.root.display()))
}

/// Docker's `units.HumanSizeWithPrecision(n, 3)`: decimal units.
pub(crate) fn human_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    // %.4g, then trim like Go's %g.
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[i])
}

/// "2 hours ago", as Docker's `units.HumanDuration` + " ago".
pub(crate) fn created_since(created: &str) -> String {
    let Some(t) = parse_rfc3339(created) else {
        return String::new();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let s = (now - t).max(0);
    let d = match s {
        0 => "Less than a second".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".to_string(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 2 * 3600 => "About an hour".to_string(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s if s < 14 * 86400 => format!("{} days", s / 86400),
        s if s < 90 * 86400 => format!("{} weeks", s / (7 * 86400)),
        s if s < 730 * 86400 => format!("{} months", s / (30 * 86400)),
        s => format!("{} years", s / (365 * 86400)),
    };
    format!("{d} ago")
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // days_from_civil (Howard Hinnant).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86400 + h * 3600 + mi * 60 + sec - offset)
}
