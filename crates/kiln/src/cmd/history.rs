use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::images::{created_since, human_size, open_store};
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Image (name, id or digest)
    image: String,
    /// Do not truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Print sizes in bytes
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    human: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let img = store
        .resolve(&args.image)
        .with_context(|| format!("reading history of {}", args.image))?;
    let layers = img.manifest.layers();
    let history = img.config.history().clone().unwrap_or_default();
    // Pair each non-empty history entry with the next layer, as Docker does.
    let mut rows = Vec::new();
    let mut next_layer = 0;
    for h in &history {
        let size = if h.empty_layer().unwrap_or(false) {
            0
        } else {
            let Some(layer) = layers.get(next_layer) else {
                anyhow::bail!(
                    "image {}: its history lists more layers than its manifest has ({})",
                    args.image,
                    layers.len()
                );
            };
            next_layer += 1;
            store
                .layer_info(layer)
                .with_context(|| format!("reading layer {}", layer.digest()))?
                .uncompressed_size
        };
        rows.push((h.clone(), size));
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<15} {:<23} {:<48} {:<10} COMMENT",
        "IMAGE", "CREATED", "CREATED BY", "SIZE"
    )?;
    let id = img.config_digest.to_string();
    for (i, (h, size)) in rows.iter().enumerate().rev() {
        let image = if i + 1 == rows.len() {
            if args.no_trunc {
                id.clone()
            } else {
                img.config_digest.short()
            }
        } else {
            "<missing>".to_string()
        };
        let created = h
            .created()
            .as_deref()
            .map(created_since)
            .unwrap_or_default();
        // From the image's config: an untrusted image may put escapes there.
        let by = kiln_oci::escape(h.created_by().as_deref().unwrap_or_default()).into_owned();
        let by = if args.no_trunc || by.chars().count() <= 45 {
            by
        } else {
            format!("{}…", by.chars().take(44).collect::<String>())
        };
        let size = if args.human {
            human_size(*size)
        } else {
            size.to_string()
        };
        let comment = kiln_oci::escape(h.comment().as_deref().unwrap_or_default()).into_owned();
        writeln!(
            out,
            "{image:<15} {created:<23} {by:<48} {size:<10} {comment}"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
