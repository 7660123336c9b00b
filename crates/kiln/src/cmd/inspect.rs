use std::process::ExitCode;

use anyhow::Context;
use serde_json::{json, Value};

use super::images::open_store;
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Images to inspect (name, id or digest)
    #[arg(required = true)]
    images: Vec<String>,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let mut out = Vec::new();
    for name in &args.images {
        let img = store
            .resolve(name)
            .with_context(|| format!("inspecting {name}"))?;
        let raw = |d: &kiln_oci::Digest| -> anyhow::Result<Value> {
            Ok(serde_json::from_slice(&store.read_blob(d)?)?)
        };
        let names: Vec<String> = store
            .entries()?
            .into_iter()
            .filter(|e| {
                e.digest() == Some(img.manifest_digest)
                    || img
                        .index_descriptor
                        .as_ref()
                        .is_some_and(|i| i.digest() == e.descriptor.digest())
            })
            .filter_map(|e| e.name.map(|n| n.familiar()))
            .collect();
        out.push(json!({
            "Id": img.config_digest.to_string(),
            "RepoTags": names,
            "ManifestDigest": img.manifest_digest.to_string(),
            "ManifestMediaType": img.manifest_descriptor.media_type().to_string(),
            "Manifest": raw(&img.manifest_digest)?,
            "Config": raw(&img.config_digest)?,
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
