//! One pass over an image's layers, bottom to top, keeping the final
//! filesystem and counting every byte that a later layer removes or replaces
//! exactly once (when it is removed). The layers are read in parallel
//! ([`crate::layer_read`]); their events are merged here, in layer order.

use std::collections::BTreeMap;

use kiln_store::{Image, Store};

use crate::error::{Error, Result};
use crate::fs::{parent, FinalFs, Kind, Node};
use crate::layer_read::{for_each_layer, Event, Reading};
use crate::report::*;
use crate::secrets::SecretHit;

/// How many wasted files, largest files and directories a report lists.
const TOP: usize = 50;

/// Analyses `image` (named `name` in the report) from `store`.
pub fn analyze(store: &Store, image: &Image, name: &str) -> Result<Analysis> {
    let all = Reading {
        keep: &|_, _| true,
        hashes: true,
        memo: None,
    };
    analyze_keeping(store, image, name, &all)
}

/// [`analyze`], but the final filesystem keeps only the entries
/// `reading.keep` wants (and files with a secret): a pass for one purpose
/// then holds memory in proportion to what it reads, not to the image's
/// file count. Sizes, waste and largest files of the result count only
/// those entries (and without `reading.hashes`, a file replaced by the same
/// content counts as overwritten).
pub(crate) fn analyze_keeping(
    store: &Store,
    image: &Image,
    name: &str,
    reading: &Reading<'_>,
) -> Result<Analysis> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    analyze_on(store, image, name, reading, workers)
}

/// [`analyze_keeping`] with the layers read on up to `workers` threads; the
/// result does not depend on `workers`.
fn analyze_on(
    store: &Store,
    image: &Image,
    name: &str,
    reading: &Reading<'_>,
    workers: usize,
) -> Result<Analysis> {
    let layers = image.manifest.layers();
    let history = created_by_per_layer(image);
    let mut state = Walk {
        fs: FinalFs::default(),
        shipped: 0,
        waste: Vec::new(),
        per_layer: BTreeMap::new(),
        secrets: Vec::new(),
    };
    let mut reports = Vec::new();
    for_each_layer(store, layers, reading, workers, |i, events| {
        let desc = &layers[i];
        let info = store
            .layer_info(desc)
            .map_err(|e| Error::store(format!("reading layer {}", desc.digest()), e))?;
        state.apply(i, events?);
        reports.push(LayerReport {
            index: i,
            digest: desc.digest().to_string(),
            diff_id: info.diff_id.to_string(),
            media_type: desc.media_type().to_string(),
            compressed: desc.size(),
            uncompressed: info.uncompressed_size,
            created_by: history.get(i).cloned().unwrap_or_default(),
            file_bytes: 0,
            files: 0,
            wasted_later: 0,
            wastes: 0,
        });
        Ok(())
    })?;
    for (i, r) in reports.iter_mut().enumerate() {
        let s = state.per_layer.get(&i).copied().unwrap_or_default();
        (r.file_bytes, r.files, r.wasted_later, r.wastes) =
            (s.bytes, s.files, s.wasted_later, s.wastes);
    }
    let config = serde_json::to_value(&image.config).unwrap_or_default();
    Ok(finish(state, reports, image, name, config))
}

fn finish(
    state: Walk,
    layers: Vec<LayerReport>,
    image: &Image,
    name: &str,
    config: serde_json::Value,
) -> Analysis {
    let fs = state.fs;
    let final_bytes: u64 = fs
        .nodes
        .values()
        .filter(|n| n.kind == Kind::File)
        .map(|n| n.size)
        .sum();
    let files = fs.nodes.values().filter(|n| n.kind != Kind::Dir).count() as u64;
    let mut waste = state.waste;
    let by = |r: WasteReason| {
        waste
            .iter()
            .filter(|w| w.reason == r)
            .map(|w| w.size)
            .sum::<u64>()
    };
    let totals = Totals {
        compressed: layers.iter().map(|l| l.compressed).sum(),
        uncompressed: layers.iter().map(|l| l.uncompressed).sum(),
        shipped: state.shipped,
        final_bytes,
        wasted: state.shipped - final_bytes,
        wasted_deleted: by(WasteReason::Deleted),
        wasted_overwritten: by(WasteReason::Overwritten),
        wasted_metadata_only: by(WasteReason::MetadataOnly),
        efficiency: if state.shipped == 0 {
            1.0
        } else {
            final_bytes as f64 / state.shipped as f64
        },
        files,
    };
    waste.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
    waste.truncate(TOP);
    Analysis {
        image: name.to_string(),
        manifest_digest: image.manifest_digest.to_string(),
        config_digest: image.config_digest.to_string(),
        totals,
        stages: stages_of(image),
        largest_files: largest_files(&fs),
        largest_dirs: largest_dirs(&fs),
        layers,
        waste,
        fs,
        secrets: state.secrets,
        config,
    }
}

#[derive(Default, Clone, Copy)]
struct LayerStats {
    bytes: u64,
    files: u64,
    wasted_later: u64,
    wastes: u64,
}

/// The merge of the layers read so far.
struct Walk {
    fs: FinalFs,
    shipped: u64,
    waste: Vec<WasteEntry>,
    per_layer: BTreeMap<usize, LayerStats>,
    secrets: Vec<SecretHit>,
}

impl Walk {
    /// Applies one layer's events on top of the layers below it.
    fn apply(&mut self, layer: usize, events: Vec<Event>) {
        for event in events {
            match event {
                Event::Opaque(dir) => {
                    let removed = self.fs.remove_children(&dir, layer);
                    self.wasted(removed, layer, WasteReason::Deleted, None);
                }
                Event::Whiteout(target) => {
                    let removed = self.fs.remove_tree(&target);
                    self.wasted(removed, layer, WasteReason::Deleted, None);
                }
                Event::Entry {
                    path,
                    node,
                    secrets,
                    keep,
                } => {
                    self.secrets.extend(secrets);
                    self.insert(path, node, layer, keep);
                }
            }
        }
    }

    fn insert(&mut self, path: String, node: Node, layer: usize, keep: bool) {
        let stats = self.per_layer.entry(layer).or_default();
        if node.kind == Kind::File {
            self.shipped += node.size;
            stats.bytes += node.size;
            stats.files += 1;
        }
        if let Some(old) = self.fs.nodes.get(&path) {
            if old.kind == Kind::Dir && node.kind == Kind::Dir {
                self.fs.nodes.insert(path, node);
                return;
            }
            let same = old.kind == Kind::File
                && node.kind == Kind::File
                && old.hash.is_some()
                && old.hash == node.hash;
            let reason = if same {
                WasteReason::MetadataOnly
            } else {
                WasteReason::Overwritten
            };
            let removed = self.fs.remove_tree(&path);
            self.wasted(removed, layer, reason, Some(WasteReason::Overwritten));
        }
        if keep {
            self.fs.nodes.insert(path, node);
        }
    }

    /// Records removed files as waste. `children` is the reason for the
    /// entries below a replaced path (their content did not come back).
    fn wasted(
        &mut self,
        removed: Vec<(String, Node)>,
        layer: usize,
        reason: WasteReason,
        children: Option<WasteReason>,
    ) {
        for (i, (path, node)) in removed.into_iter().enumerate() {
            if node.kind != Kind::File || node.size == 0 {
                continue;
            }
            let reason = if i == 0 {
                reason
            } else {
                children.unwrap_or(reason)
            };
            self.per_layer.entry(node.layer).or_default().wasted_later += node.size;
            self.per_layer.entry(layer).or_default().wastes += node.size;
            self.waste.push(WasteEntry {
                path: format!("/{path}"),
                size: node.size,
                added_in: node.layer,
                removed_in: layer,
                reason,
            });
        }
    }
}

/// `created_by` of the history entry behind each layer (non-empty entries
/// pair with layers in order, as Docker pairs them).
fn created_by_per_layer(image: &Image) -> Vec<String> {
    let history = image.config.history().clone().unwrap_or_default();
    history
        .iter()
        .filter(|h| !h.empty_layer().unwrap_or(false))
        .map(|h| h.created_by().clone().unwrap_or_default())
        .collect()
}

fn stages_of(image: &Image) -> Vec<StageSize> {
    image
        .manifest
        .annotations()
        .as_ref()
        .and_then(|a| a.get(STAGES_ANNOTATION))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

fn largest_files(fs: &FinalFs) -> Vec<FileSize> {
    let mut files: Vec<FileSize> = fs
        .nodes
        .iter()
        .filter(|(_, n)| n.kind == Kind::File)
        .map(|(p, n)| FileSize {
            path: format!("/{p}"),
            size: n.size,
            layer: n.layer,
        })
        .collect();
    files.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
    files.truncate(TOP);
    files
}

/// Directories by the bytes of all files below them.
fn largest_dirs(fs: &FinalFs) -> Vec<DirSize> {
    let mut dirs: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (p, n) in fs.nodes.iter().filter(|(_, n)| n.kind == Kind::File) {
        let mut d = parent(p);
        while !d.is_empty() {
            let e = dirs.entry(d).or_default();
            e.0 += n.size;
            e.1 += 1;
            d = parent(d);
        }
    }
    let mut out: Vec<DirSize> = dirs
        .into_iter()
        .map(|(p, (size, files))| DirSize {
            path: format!("/{p}"),
            size,
            files,
        })
        .collect();
    out.sort_by(|a, b| b.size.cmp(&a.size).then(a.path.cmp(&b.path)));
    out.truncate(TOP);
    out
}

#[cfg(test)]
mod tests;
