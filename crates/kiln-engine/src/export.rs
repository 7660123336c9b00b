//! The end of a build: the image (config + manifest) written to the store
//! under its tags, then each requested output.

use std::collections::BTreeMap;
use std::io::Write;

use kiln_oci::media_type as mt;
use kiln_oci::{Digest, Platform};

use crate::cache::LayerRecord;
use crate::error::{BuildError, Context};
use crate::layer::Layer;
use crate::options::Output;
use crate::progress::Steps;
use crate::request::{BuildRequest, Built, Compression};
use crate::rootfs::ReadonlyRootfs;
use crate::session::Session;
use crate::state::StageOutput;

pub fn export(
    session: &Session,
    req: &BuildRequest,
    steps: &Steps,
    target: &StageOutput,
    platform: &Platform,
) -> Result<Built, BuildError> {
    let step = steps.start("exporting to image".into());
    let mut config = target.config.clone();
    config.architecture = platform.architecture.clone();
    config.os = platform.os.clone();
    config.variant = platform.variant.clone();
    config.created = Some(crate::time::now_rfc3339());
    if !req.labels.is_empty() {
        let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &req.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    config.rootfs.diff_ids = target
        .layers
        .iter()
        .map(|l| l.diff_id.digest().to_string())
        .collect();

    // OCI media types: what skopeo's `oci:` transport can see, and what
    // Docker 20.10 loads and pulls as well.
    let config_bytes = serde_json::to_vec(&config).expect("config serialises");
    let config_digest = session
        .store
        .write_blob(&config_bytes)
        .context(|| "writing the image config".to_string())?;
    // Built layers are stored uncompressed; an image that leaves through
    // the store, an archive or a push gets them compressed (once).
    let compression = if req.tags.is_empty()
        && !req.push
        && req
            .outputs
            .iter()
            .all(|o| matches!(o, Output::Local { .. } | Output::Tar { .. }))
    {
        Compression::Uncompressed
    } else {
        req.compression
    };
    let mut layers = Vec::new();
    for l in &target.layers {
        let (digest, size, media_type) = compressed_for_export(session, l, compression)?;
        layers.push(serde_json::json!({
            "mediaType": oci_media_type(&media_type),
            "digest": digest.to_string(),
            "size": size,
        }));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": {
            "mediaType": mt::OCI_CONFIG,
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    let manifest_digest = session
        .store
        .write_blob(&manifest_bytes)
        .context(|| "writing the image manifest".to_string())?;
    let media_type = mt::OCI_MANIFEST;
    for tag in &req.tags {
        session
            .store
            .tag_manifest(
                tag,
                media_type,
                &manifest_digest,
                manifest_bytes.len() as u64,
                platform,
            )
            .context(|| format!("naming the image {tag}"))?;
    }
    step.done();

    for output in &req.outputs {
        match output {
            Output::Image => {}
            Output::Docker { dest } | Output::Oci { dest } => {
                let step = steps.start(format!("exporting to {}", dest.display()));
                let name = export_name(req, &manifest_digest);
                session
                    .store
                    .tag_manifest(
                        &name,
                        media_type,
                        &manifest_digest,
                        manifest_bytes.len() as u64,
                        platform,
                    )
                    .context(|| "naming the image for export".to_string())?;
                let result = write_atomically(dest, |w| {
                    kiln_store::archive::save(&session.store, std::slice::from_ref(&name), w)
                        .map_err(std::io::Error::other)
                });
                if req.tags.is_empty() || !req.tags.contains(&name) {
                    let _ = session.store.untag(&name);
                }
                result.context(|| format!("writing {}", dest.display()))?;
                step.done();
            }
            Output::Local { dest } => {
                let step = steps.start(format!("copying files to {}", dest.display()));
                let view = ReadonlyRootfs::mount(session, &target.layers)?;
                crate::rootfs::copy_dir(view.path(), dest)?;
                step.done();
            }
            Output::Tar { dest } => {
                let step = steps.start(format!("writing files to {}", dest.display()));
                let view = ReadonlyRootfs::mount(session, &target.layers)?;
                write_atomically(dest, |w| {
                    let mut tar = tar::Builder::new(w);
                    tar.follow_symlinks(false);
                    tar.append_dir_all(".", view.path())?;
                    tar.finish()
                })
                .context(|| format!("writing {}", dest.display()))?;
                step.done();
            }
        }
    }

    if req.push {
        for tag in &req.tags {
            let step = steps.start(format!("pushing {tag}"));
            session
                .block_on(session.registry.push(
                    &session.store,
                    tag,
                    tag,
                    &kiln_registry::NoProgress,
                ))
                .context(|| format!("pushing {tag}"))?;
            step.done();
        }
    }

    Ok(Built {
        image_id: config_digest,
        manifest_digest,
    })
}

/// The name an exported archive carries: the first tag, or one made from the digest.
fn export_name(req: &BuildRequest, digest: &Digest) -> kiln_oci::Reference {
    req.tags.first().cloned().unwrap_or_else(|| {
        format!("kiln.local/build:{}", &digest.hex()[..12])
            .parse()
            .expect("valid reference")
    })
}

/// Base image layers keep their bytes; only their media type is restated.
fn oci_media_type(media_type: &str) -> String {
    match media_type {
        mt::DOCKER_LAYER_GZIP => mt::OCI_LAYER_GZIP.into(),
        mt::DOCKER_LAYER => mt::OCI_LAYER.into(),
        mt::DOCKER_LAYER_ZSTD => mt::OCI_LAYER_ZSTD.into(),
        other => other.into(),
    }
}

/// Writes `dest` (or stdout for `-`) through a temporary file renamed into
/// place, so a failed export leaves no half-written file.
fn write_atomically(
    dest: &std::path::Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if dest.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        write(&mut out)?;
        return out.flush();
    }
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    {
        let mut buf = std::io::BufWriter::new(tmp.as_file_mut());
        write(&mut buf)?;
        buf.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// The blob an image carries for `layer`: built layers (stored
/// uncompressed) are compressed as asked, once per diff_id and compression
/// (remembered in the cache); base image layers stay as they came.
pub fn compressed_for_export(
    session: &Session,
    layer: &Layer,
    compression: Compression,
) -> Result<(kiln_oci::Digest, u64, String), BuildError> {
    use kiln_oci::media_type as mt;
    let (kind, media_type, name) = match compression {
        Compression::Gzip => (
            kiln_fs::compress::Compression::Gzip,
            mt::OCI_LAYER_GZIP,
            "gzip",
        ),
        Compression::Zstd => (
            kiln_fs::compress::Compression::Zstd,
            mt::OCI_LAYER_ZSTD,
            "zstd",
        ),
        Compression::Uncompressed => (kiln_fs::compress::Compression::None, mt::OCI_LAYER, "none"),
    };
    if layer.media_type != mt::OCI_LAYER || kind == kiln_fs::compress::Compression::None {
        return Ok((layer.digest, layer.size, layer.media_type.clone()));
    }
    if let Some(done) = session.cache.compressed(&layer.diff_id.to_string(), name) {
        if let Ok(digest) = done.digest.parse::<kiln_oci::Digest>() {
            if session.store.has_blob(&digest) {
                return Ok((digest, done.size, done.media_type));
            }
        }
    }
    let mut source = session
        .store
        .open_blob(&layer.digest)
        .context(|| format!("reading layer {}", layer.digest))?;
    let ingest = session
        .store
        .ingest(None)
        .context(|| "starting a compressed layer blob".to_string())?;
    let mut writer = kiln_fs::compress::CompressWriter::new(ingest, kind)
        .context(|| "starting layer compression".to_string())?;
    std::io::copy(&mut source, &mut writer)
        .context(|| format!("compressing layer {}", layer.digest))?;
    let (_, _, ingest) = writer
        .finish()
        .context(|| "finishing layer compression".to_string())?;
    let (digest, size) = ingest
        .commit()
        .context(|| "committing the compressed layer blob".to_string())?;
    session
        .store
        .record_layer_info(
            &digest,
            &kiln_store::LayerInfo {
                diff_id: layer.diff_id,
                uncompressed_size: layer.size,
            },
        )
        .context(|| "recording the layer's diff_id".to_string())?;
    let record = LayerRecord {
        digest: digest.to_string(),
        diff_id: layer.diff_id.to_string(),
        size,
        media_type: media_type.to_string(),
    };
    session
        .cache
        .put_compressed(&layer.diff_id.to_string(), name, &record)
        .context(|| "remembering the compressed layer".to_string())?;
    Ok((digest, size, media_type.to_string()))
}
