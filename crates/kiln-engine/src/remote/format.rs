//! The remote cache format: an OCI image manifest (the form BuildKit 0.12+
//! writes with `image-manifest=true`, which every registry stores) whose
//! config blob holds kiln's cache records and whose layers are the layer
//! blobs the records name, or an image config carrying the same records
//! under `io.kiln.cache.v1` (inline cache).

use std::collections::HashMap;
use std::path::Path;

use kiln_oci::media_type as mt;
use kiln_oci::Digest;
use kiln_store::Store;
use serde::{Deserialize, Serialize};

use super::{Source, Transport};
use crate::cache::{CacheKey, CacheRecord};

pub const CONFIG_MEDIA_TYPE: &str = mt::KILN_CACHE_CONFIG;
/// The image config field an inline cache lives in.
pub const INLINE_FIELD: &str = "io.kiln.cache.v1";

/// The config blob of a cache manifest.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CacheConfig {
    pub version: u32,
    /// Records by key; their layers name blobs of the manifest.
    pub records: Vec<(CacheKey, CacheRecord)>,
    /// `RUN --mount=type=cache` contents (`cache-mounts=true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountBlob>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountBlob {
    pub id: String,
    /// A gzip tar of the mount's files, one of the manifest's layers.
    pub digest: String,
    pub size: u64,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
}

/// Reads a source's records and the sizes of the blobs it lists.
pub(super) fn read(
    source: &Source,
    t: &Transport,
) -> Result<(CacheConfig, HashMap<Digest, u64>), String> {
    let raw = match source {
        Source::Registry(r) => {
            t.runtime
                .block_on(t.client.fetch_manifest(r, &kiln_registry::NoProgress))
                .map_err(|e| e.to_string())?
                .0
        }
        Source::Local(dir) => {
            let index: serde_json::Value = read_json(&dir.join("index.json"))?;
            let digest = index["manifests"][0]["digest"]
                .as_str()
                .ok_or("its index.json lists no manifest")?;
            read_local_blob(dir, &parse_digest(digest)?)?
        }
    };
    let m: Manifest =
        serde_json::from_slice(&raw).map_err(|e| format!("not an image manifest: {e}"))?;
    if !m.media_type.is_empty()
        && m.media_type != mt::OCI_MANIFEST
        && m.media_type != mt::DOCKER_MANIFEST
    {
        return Err(format!("unexpected manifest type {}", m.media_type));
    }
    let config_digest = parse_digest(&m.config.digest)?;
    let config_bytes = match source {
        Source::Registry(r) => {
            t.runtime
                .block_on(t.client.fetch_blob(
                    t.store,
                    r,
                    config_digest,
                    m.config.size,
                    &kiln_registry::NoProgress,
                ))
                .map_err(|e| e.to_string())?;
            t.store
                .read_blob(&config_digest)
                .map_err(|e| e.to_string())?
        }
        Source::Local(dir) => read_local_blob(dir, &config_digest)?,
    };
    let config: CacheConfig = if m.config.media_type == CONFIG_MEDIA_TYPE {
        serde_json::from_slice(&config_bytes).map_err(|e| format!("bad cache config: {e}"))?
    } else {
        let image: serde_json::Value =
            serde_json::from_slice(&config_bytes).map_err(|e| format!("bad image config: {e}"))?;
        let inline = image
            .get(INLINE_FIELD)
            .ok_or("neither a kiln cache nor an image with an inline cache")?;
        serde_json::from_value(inline.clone()).map_err(|e| format!("bad inline cache: {e}"))?
    };
    if config.version != 1 {
        return Err(format!("cache format version {} is not 1", config.version));
    }
    let sizes = m
        .layers
        .iter()
        .filter_map(|l| Some((l.digest.parse().ok()?, l.size)))
        .collect();
    Ok((config, sizes))
}

fn parse_digest(s: &str) -> Result<Digest, String> {
    s.parse().map_err(|e| format!("bad digest {s:?}: {e}"))
}

fn read_json(path: &Path) -> Result<serde_json::Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn local_blob_path(dir: &Path, digest: &Digest) -> std::path::PathBuf {
    dir.join("blobs/sha256").join(digest.hex())
}

/// A small blob of a layout directory, checked against its digest.
fn read_local_blob(dir: &Path, digest: &Digest) -> Result<Vec<u8>, String> {
    let path = local_blob_path(dir, digest);
    let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if Digest::sha256(&bytes) != *digest {
        return Err(format!("{} does not match its digest", path.display()));
    }
    Ok(bytes)
}

/// Copies a layout directory's blob into the store (which verifies it).
pub(super) fn copy_local_blob(dir: &Path, digest: &Digest, store: &Store) -> Result<(), String> {
    let path = local_blob_path(dir, digest);
    let mut file =
        std::fs::File::open(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut ingest = store.ingest(Some(*digest)).map_err(|e| e.to_string())?;
    std::io::copy(&mut file, &mut ingest)
        .map_err(|e| format!("copying {}: {e}", path.display()))?;
    ingest.commit().map(drop).map_err(|e| e.to_string())
}
