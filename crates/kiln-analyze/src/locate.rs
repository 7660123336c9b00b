//! Where the files an ELF guard found missing are in the build's other
//! stages, so the warning can say what to `COPY --from`: "found in stage
//! build at /usr/lib/x86_64-linux-gnu/libc.so.6".

use std::collections::{BTreeMap, BTreeSet};

use kiln_oci::oci_spec::image::Descriptor;
use kiln_store::Store;

use crate::error::{Error, Result};
use crate::guards::Finding;

/// A stage of the build other than the image's own, by its layers.
#[derive(Clone, Debug)]
pub struct StageLayers {
    pub name: String,
    pub layers: Vec<Descriptor>,
}

/// Adds to every finding that misses files where the first of `stages`
/// that has them keeps them. Stages whose layers are not all in the store
/// (lazily cached, never fetched) are skipped: nothing is downloaded.
pub fn locate_missing(
    store: &Store,
    stages: &[StageLayers],
    findings: &mut [Finding],
) -> Result<()> {
    let mut wanted: BTreeSet<&str> = findings
        .iter()
        .flat_map(|f| &f.missing)
        .map(|m| base_name(m))
        .collect();
    // base name → (stage, path)
    let mut found: BTreeMap<String, (String, String)> = BTreeMap::new();
    for stage in stages {
        if wanted.is_empty() {
            break;
        }
        if !stage.layers.iter().all(|l| has(store, l)) {
            continue;
        }
        for (name, path) in files_named(store, &stage.layers, &wanted)? {
            wanted.remove(name.as_str());
            found.insert(name, (stage.name.clone(), path));
        }
    }
    for f in findings.iter_mut() {
        let mut by_stage: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for m in &f.missing {
            if let Some((stage, path)) = found.get(base_name(m)) {
                by_stage.entry(stage).or_default().push(path);
            }
        }
        if by_stage.is_empty() {
            continue;
        }
        let places: Vec<String> = by_stage
            .iter()
            .map(|(stage, paths)| format!("found in stage {stage} at {}", paths.join(", ")))
            .collect();
        f.message = format!("{} ({})", f.message, places.join("; "));
        let (stage, paths) = by_stage.iter().next().expect("not empty");
        f.hint = format!(
            "link it statically, or copy what it needs from that stage: COPY --from={stage} {} (to the same path)",
            paths[0]
        );
    }
    Ok(())
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn has(store: &Store, l: &Descriptor) -> bool {
    kiln_store::descriptor_digest(l).is_some_and(|d| store.has_blob(&d))
}

/// The absolute path of the entries of `layers` (later layers winning)
/// whose base name is in `wanted`; a regular file beats a symlink.
fn files_named(
    store: &Store,
    layers: &[Descriptor],
    wanted: &BTreeSet<&str>,
) -> Result<BTreeMap<String, String>> {
    let mut out: BTreeMap<String, (bool, String)> = BTreeMap::new();
    for (index, desc) in layers.iter().enumerate() {
        let layer_error = |source| Error::Layer {
            layer: index,
            source,
        };
        let mut archive = crate::layer_read::open_layer(store, desc, index)?;
        for entry in archive.entries().map_err(layer_error)? {
            let entry = entry.map_err(layer_error)?;
            let path = entry.path().map_err(layer_error)?;
            let path = path.to_string_lossy();
            let name = base_name(path.trim_end_matches('/'));
            if !wanted.contains(name) {
                continue;
            }
            let kind = entry.header().entry_type();
            let file = kind.is_file() || kind.is_hard_link();
            if !(file || kind.is_symlink()) {
                continue;
            }
            let absolute = format!("/{}", path.trim_start_matches("./").trim_start_matches('/'));
            match out.get(name) {
                Some((true, _)) if !file => {}
                _ => {
                    out.insert(name.to_string(), (file, absolute));
                }
            }
        }
    }
    Ok(out.into_iter().map(|(k, (_, p))| (k, p)).collect())
}
