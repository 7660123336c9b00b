//! Reading a docker-archive tar (`docker save`, `kiln save`): manifest.json →
//! the image config and the layers in order, applied into a [`Tree`].

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde_json::Value;

use super::tree::Tree;

/// An image as a container would see it: its config and its root filesystem.
pub struct Image {
    /// The whole image config JSON (`config.Env`, `architecture`, …).
    pub config: Value,
    pub tree: Tree,
    pub layer_count: usize,
}

impl Image {
    /// The `config` object of the image config (`Env`, `Cmd`, …), or null.
    pub fn container_config(&self) -> &Value {
        self.config.get("config").unwrap_or(&Value::Null)
    }
}

/// Reads the image named `name` (or the only image) from a docker-archive.
/// The member a symlink member points to (`a/layer.tar` -> `../b/layer.tar` is `b/layer.tar`).
fn member_link_target(member: &str, target: &Path) -> String {
    let mut parts: Vec<String> = member.split('/').map(str::to_string).collect();
    parts.pop();
    for part in target.to_string_lossy().split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p.to_string()),
        }
    }
    parts.join("/")
}

pub fn read_docker_archive(path: &Path, name: Option<&str>) -> Result<Image, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut members: HashMap<String, Vec<u8>> = HashMap::new();
    // `docker save` writes a layer that repeats an earlier one (two
    // identical COPY steps) as a symlink to the first one's layer.tar.
    let mut links: Vec<(String, String)> = Vec::new();
    let mut archive = tar::Archive::new(file);
    for entry in archive
        .entries()
        .map_err(|e| format!("{}: not a tar: {e}", path.display()))?
    {
        let mut entry = entry.map_err(|e| format!("{}: bad tar entry: {e}", path.display()))?;
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular && kind != tar::EntryType::Symlink {
            continue;
        }
        let member = entry
            .path()
            .map_err(|e| format!("{}: bad member name: {e}", path.display()))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if kind == tar::EntryType::Symlink {
            if let Some(target) = entry.link_name().ok().flatten() {
                let resolved = member_link_target(&member, &target);
                links.push((member, resolved));
            }
            continue;
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| format!("{}: reading {member}: {e}", path.display()))?;
        members.insert(member, data);
    }
    for (member, target) in links {
        if let Some(data) = members.get(&target).cloned() {
            members.insert(member, data);
        }
    }
    let get = |member: &str| {
        members
            .get(member.trim_start_matches("./"))
            .ok_or_else(|| format!("{}: no member {member}", path.display()))
    };
    let manifest: Value = serde_json::from_slice(get("manifest.json")?)
        .map_err(|e| format!("{}: manifest.json: {e}", path.display()))?;
    let images = manifest
        .as_array()
        .ok_or_else(|| format!("{}: manifest.json is not an array", path.display()))?;
    let chosen = match name {
        Some(name) if images.len() > 1 => images
            .iter()
            .find(|m| {
                m["RepoTags"]
                    .as_array()
                    .is_some_and(|tags| tags.iter().any(|t| tag_matches(t.as_str(), name)))
            })
            .ok_or_else(|| format!("{}: no image tagged {name}", path.display()))?,
        _ => images
            .first()
            .ok_or_else(|| format!("{}: manifest.json lists no image", path.display()))?,
    };
    let config_name = chosen["Config"]
        .as_str()
        .ok_or_else(|| format!("{}: manifest entry without Config", path.display()))?;
    let config: Value = serde_json::from_slice(get(config_name)?)
        .map_err(|e| format!("{}: {config_name}: {e}", path.display()))?;
    let layers = chosen["Layers"]
        .as_array()
        .ok_or_else(|| format!("{}: manifest entry without Layers", path.display()))?;
    let mut tree = Tree::default();
    for layer in layers {
        let layer = layer
            .as_str()
            .ok_or_else(|| format!("{}: layer name is not a string", path.display()))?;
        let bytes = decompress(get(layer)?).map_err(|e| format!("{layer}: {e}"))?;
        tree.apply_layer(&bytes)
            .map_err(|e| format!("{}: layer {layer}: {e}", path.display()))?;
    }
    Ok(Image {
        config,
        tree,
        layer_count: layers.len(),
    })
}

/// `docker save` writes `name:tag`; a short name means `:latest`.
fn tag_matches(tag: Option<&str>, name: &str) -> bool {
    let Some(tag) = tag else { return false };
    let full = |s: &str| {
        if s.rsplit('/').next().is_some_and(|last| last.contains(':')) {
            s.to_string()
        } else {
            format!("{s}:latest")
        }
    };
    full(tag) == full(name)
}

/// Layers in a docker-archive are plain tars; gzip is accepted as well
/// (several concatenated members, as parallel compressors write).
fn decompress(bytes: &[u8]) -> Result<Vec<u8>, String> {
    match bytes {
        [0x1f, 0x8b, ..] => {
            let mut out = Vec::new();
            MultiGzDecoder::new(bytes)
                .read_to_end(&mut out)
                .map_err(|e| format!("gunzip: {e}"))?;
            Ok(out)
        }
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Err("zstd layers are not supported here".into()),
        _ => Ok(bytes.to_vec()),
    }
}
