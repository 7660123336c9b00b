//! `--cache-to`: this build's records and the blobs they name, as a cache
//! manifest (an OCI image manifest whose config holds the records, the
//! form BuildKit 0.12+ writes and ECR accepts) in a registry or an OCI
//! layout directory; `type=inline` puts the records in the image config.

use std::collections::BTreeSet;
use std::path::Path;

use kiln_oci::media_type as mt;
use kiln_oci::Digest;

use crate::cache::LayerRecord;
use crate::compress::compressed_for_export;
use crate::error::{BuildError, Context};
use crate::explain::Link;
use crate::layer::Layer;
use crate::options::LayerCompression;
use crate::options::{CacheTarget, CacheTo};
use crate::progress::Steps;
use crate::remote::{CacheConfig, MountBlob, CONFIG_MEDIA_TYPE};
use crate::session::Session;

/// Annotation naming the cache mount a layer of a cache manifest holds.
const MOUNT_ANNOTATION: &str = "io.kiln.cache.mount";

/// Exports every `--cache-to` but inline ones (done with the image).
/// `stages` are the chains of all stages; `target` the target's. `pushed`
/// names the image just pushed: its blobs are mounted, not uploaded again,
/// into a cache repository of the same registry.
pub fn export_caches(
    session: &Session,
    tos: &[CacheTo],
    pushed: Option<&kiln_oci::Reference>,
    steps: &Steps,
    stages: &[&[Link]],
    target: &[Link],
) -> Result<(), BuildError> {
    for to in tos {
        let name = match &to.target {
            CacheTarget::Inline => continue,
            CacheTarget::Registry(r) => r.to_string(),
            CacheTarget::Local(d) => d.display().to_string(),
        };
        let step = steps.start(format!("exporting cache to {name}"));
        let chains = if to.max {
            stages.to_vec()
        } else {
            vec![target]
        };
        let (config, mut layers) = collect(session, &chains, to.compression, to.cache_mounts)?;
        layers.extend(mount_descriptors(&config, to.compression));
        let config_bytes = serde_json::to_vec(&config).expect("cache config serialises");
        let config_digest = session
            .store
            .write_blob(&config_bytes)
            .context(|| "writing the cache config".to_string())?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": mt::OCI_MANIFEST,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": config_digest.to_string(),
                "size": config_bytes.len(),
            },
            "layers": layers,
        });
        let raw = serde_json::to_vec(&manifest).expect("manifest serialises");
        match &to.target {
            CacheTarget::Registry(r) => {
                session
                    .block_on(session.registry().push_manifest(
                        &session.store,
                        &raw,
                        pushed,
                        r,
                        &kiln_registry::NoProgress,
                    ))
                    .context(|| format!("pushing the build cache to {r}"))?;
            }
            CacheTarget::Local(dir) => write_layout(session, dir, &raw, &manifest)
                .context(|| format!("writing the build cache to {}", dir.display()))?,
            CacheTarget::Inline => unreachable!("skipped above"),
        }
        step.done();
    }
    Ok(())
}

/// The records of the steps in `chains` (each once), their layers
/// compressed as `compression` says, and the descriptors of those layers;
/// with `mounts`, the cache mounts too, compressed the same way.
pub fn collect(
    session: &Session,
    chains: &[&[Link]],
    compression: LayerCompression,
    mounts: bool,
) -> Result<(CacheConfig, Vec<serde_json::Value>), BuildError> {
    let mut config = CacheConfig {
        version: 1,
        ..Default::default()
    };
    let mut layers = Vec::new();
    let mut seen = BTreeSet::new();
    let mut blobs = BTreeSet::new();
    for link in chains.iter().flat_map(|c| c.iter()) {
        let key = link.inputs.key();
        if !seen.insert(key) {
            continue;
        }
        let Some(mut record) = session.record(&key) else {
            continue;
        };
        if let Some(l) = &record.layer {
            let layer = layer_of(l)?;
            match session.ensure_blob(&layer.digest) {
                // An imported blob that is gone or wrong: the step is not
                // exported (a later build runs it) rather than failing this one.
                Err(BuildError::RemoteCache { digest, message }) => {
                    tracing::warn!("not exporting the cache record of {digest}: {message}");
                    continue;
                }
                other => other?,
            }
            let (digest, size, media_type) =
                compressed_for_export(&session.store, &session.cache, &layer, compression)?;
            let media_type = crate::compress::oci_media_type(&media_type);
            if blobs.insert(digest) {
                layers.push(serde_json::json!({
                    "mediaType": media_type, "digest": digest.to_string(), "size": size,
                }));
            }
            record.layer = Some(LayerRecord {
                digest: digest.to_string(),
                diff_id: l.diff_id.clone(),
                size,
                media_type,
            });
        }
        config.records.push((key, record));
    }
    if mounts {
        config.mounts = pack_mounts(session, compression)?;
    }
    Ok((config, layers))
}

fn layer_of(l: &LayerRecord) -> Result<Layer, BuildError> {
    let digest: Digest = l
        .digest
        .parse()
        .context(|| "a cache record's layer".to_string())?;
    let diff_id: Digest = l
        .diff_id
        .parse()
        .context(|| "a cache record's diff_id".to_string())?;
    Ok(Layer {
        digest,
        diff_id: kiln_oci::DiffId(diff_id),
        size: l.size,
        media_type: l.media_type.clone(),
    })
}

fn mount_descriptors(config: &CacheConfig, c: LayerCompression) -> Vec<serde_json::Value> {
    config
        .mounts
        .iter()
        .map(|m| {
            serde_json::json!({
                "mediaType": c.format().1,
                "digest": m.digest,
                "size": m.size,
                "annotations": {MOUNT_ANNOTATION: m.id},
            })
        })
        .collect()
}

/// Every cache mount this build used, as a tar blob in the store.
fn pack_mounts(session: &Session, c: LayerCompression) -> Result<Vec<MountBlob>, BuildError> {
    let ids: Vec<String> = session
        .used_mounts
        .lock()
        .unwrap()
        .iter()
        .cloned()
        .collect();
    let mut out = Vec::new();
    for id in ids {
        let dir = session.paths.cache_mount(&id);
        if !dir.is_dir() {
            continue;
        }
        let pack = || -> std::io::Result<(Digest, u64)> {
            let ingest = session.store.ingest(None).map_err(std::io::Error::other)?;
            let writer = kiln_oci::compression::CompressWriter::new(ingest, c.format().0)?;
            let mut tar = tar::Builder::new(writer);
            tar.follow_symlinks(false);
            tar.append_dir_all(".", &dir)?;
            let (_, _, ingest) = tar.into_inner()?.finish()?;
            ingest.commit().map_err(std::io::Error::other)
        };
        let (digest, size) = pack().context(|| format!("packing cache mount {id}"))?;
        out.push(MountBlob {
            id,
            digest: digest.to_string(),
            size,
        });
    }
    Ok(out)
}

/// An OCI image layout holding the cache manifest and its blobs; the index
/// is replaced atomically, then the blobs it no longer reaches (an earlier
/// export's) are deleted, so a CI cache directory does not grow forever.
fn write_layout(
    session: &Session,
    dir: &Path,
    raw: &[u8],
    manifest: &serde_json::Value,
) -> std::io::Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut digests = vec![manifest["config"]["digest"]
        .as_str()
        .unwrap_or("")
        .to_string()];
    for l in manifest["layers"].as_array().into_iter().flatten() {
        digests.push(l["digest"].as_str().unwrap_or("").to_string());
    }
    for d in &digests {
        let digest: Digest = d.parse().map_err(std::io::Error::other)?;
        let dest = blobs.join(digest.hex());
        if !dest.exists() {
            let tmp = blobs.join(format!(".{}.tmp", digest.hex()));
            std::fs::copy(session.store.blob_path(&digest), &tmp)?;
            std::fs::rename(&tmp, &dest)?;
        }
    }
    let digest = Digest::sha256(raw);
    std::fs::write(blobs.join(digest.hex()), raw)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": [{
            "mediaType": mt::OCI_MANIFEST,
            "digest": digest.to_string(),
            "size": raw.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    let tmp = dir.join(".index.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&index).expect("index serialises"))?;
    std::fs::rename(tmp, dir.join("index.json"))?;
    let mut keep: BTreeSet<String> = digests
        .iter()
        .map(|d| d.trim_start_matches("sha256:").to_string())
        .collect();
    keep.insert(digest.hex());
    collect_garbage(&blobs, &keep)
}

/// Deletes every file of `blobs` whose name `keep` does not hold.
fn collect_garbage(blobs: &Path, keep: &BTreeSet<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(blobs)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(&name) && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}
