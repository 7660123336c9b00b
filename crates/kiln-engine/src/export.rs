//! The end of a build: the image (config + manifest) written to the store
//! under its tags, then each requested output.

use std::collections::BTreeMap;
use std::io::Write;

use kiln_oci::media_type as mt;
use kiln_oci::{Digest, Platform};

use crate::compress::{compressed_for_export, oci_media_type};
use crate::error::{BuildError, Context};
use crate::image::ImageConfig;
use crate::layer::Layer;
use crate::options::CacheTarget;
use crate::options::{LayerCompression, Output};
use crate::progress::Steps;
use crate::request::{BuildRequest, Built};
use crate::rootfs::ReadonlyRootfs;
use crate::session::Session;
use crate::state::StageOutput;

/// Where the image's final config is assembled (platform, labels, diff
/// ids, inline cache) and the image written, named and sent to its outputs.
pub fn export(
    session: &Session,
    req: &BuildRequest,
    steps: &Steps,
    target: &StageOutput,
    stages: &[kiln_analyze::StageSize],
    platform: &Platform,
) -> Result<Built, BuildError> {
    let step = steps.start("exporting to image".into());
    let mut config = base_config(target, req, platform);
    let squashed;
    let layers_out = if req.squash {
        squashed = crate::squash::squash(session, target, &mut config)?;
        &squashed
    } else {
        &target.layers
    };
    config.rootfs.diff_ids = layers_out
        .iter()
        .map(|l| l.diff_id.digest().to_string())
        .collect();
    let compression = layer_compression(req);
    let layers = image_layers(session, layers_out, compression)?;
    if req.cache_to.iter().any(|t| t.target == CacheTarget::Inline) {
        // The target's records, naming the layers this image carries.
        let (inline, _) =
            crate::cache_export::collect(session, &[&target.chain], compression, false)?;
        config.extra.insert(
            crate::remote::INLINE_FIELD.to_string(),
            serde_json::to_value(inline).expect("cache config serialises"),
        );
    }
    let image = write_image(session, req, &config, layers, stages, platform)?;
    step.done();
    for output in &req.outputs {
        write_output(session, req, steps, target, output, &image, platform)?;
    }
    if req.push {
        push_tags(session, req, steps)?;
    }
    Ok(Built {
        image_id: image.config_digest,
        manifest_digest: image.manifest_digest,
        stages: stages.to_vec(),
        other_stages: Vec::new(),
    })
}

/// The target stage's config for `platform`, with the build's labels.
fn base_config(target: &StageOutput, req: &BuildRequest, platform: &Platform) -> ImageConfig {
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
    config
}

/// Built layers stay uncompressed in the store, also under a tag (as
/// Docker's do); an image that leaves through a push or an archive gets
/// them compressed (once; `kiln push` compresses at push time).
fn layer_compression(req: &BuildRequest) -> LayerCompression {
    if !req.push
        && req
            .outputs
            .iter()
            .all(|o| matches!(o, Output::Image | Output::Local { .. } | Output::Tar { .. }))
    {
        LayerCompression::Uncompressed
    } else {
        req.compression
    }
}

/// The image as written to the store.
struct Written {
    config_digest: Digest,
    manifest_digest: Digest,
    manifest_size: u64,
}

/// Writes config and manifest and names the image by the build's tags.
fn write_image(
    session: &Session,
    req: &BuildRequest,
    config: &ImageConfig,
    layers: Vec<serde_json::Value>,
    stages: &[kiln_analyze::StageSize],
    platform: &Platform,
) -> Result<Written, BuildError> {
    // OCI media types: what skopeo's `oci:` transport can see, and what
    // Docker 20.10 loads and pulls as well.
    let config_bytes = serde_json::to_vec(config).expect("config serialises");
    let config_digest = session
        .store
        .write_blob(&config_bytes)
        .context(|| "writing the image config".to_string())?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": {
            "mediaType": mt::OCI_CONFIG,
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": layers,
        "annotations": {
            kiln_analyze::STAGES_ANNOTATION: serde_json::to_string(stages).expect("sizes serialise"),
        },
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    let manifest_digest = session
        .store
        .write_blob(&manifest_bytes)
        .context(|| "writing the image manifest".to_string())?;
    let media_type = mt::OCI_MANIFEST;
    let manifest_size = manifest_bytes.len() as u64;
    for tag in &req.tags {
        session
            .store
            .tag_manifest(tag, media_type, &manifest_digest, manifest_size, platform)
            .context(|| format!("naming the image {tag}"))?;
    }
    Ok(Written {
        config_digest,
        manifest_digest,
        manifest_size,
    })
}

/// One `-o` output beyond the store.
fn write_output(
    session: &Session,
    req: &BuildRequest,
    steps: &Steps,
    target: &StageOutput,
    output: &Output,
    image: &Written,
    platform: &Platform,
) -> Result<(), BuildError> {
    match output {
        Output::Image => {}
        Output::Docker { dest } | Output::Oci { dest } => {
            let step = steps.start(format!("exporting to {}", dest.display()));
            let name = export_name(req, &image.manifest_digest);
            session
                .store
                .tag_manifest(
                    &name,
                    mt::OCI_MANIFEST,
                    &image.manifest_digest,
                    image.manifest_size,
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
        Output::Local { dest, keep } => {
            let step = steps.start(format!("copying files to {}", dest.display()));
            let view = ReadonlyRootfs::mount(session, &target.layers)?;
            let skipped = crate::rootfs::copy_dir(view.path(), dest, Some(*keep))?;
            step.done();
            for note in skipped {
                steps.warn(format!("-o type=local: {note}"));
            }
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
    Ok(())
}

fn push_tags(session: &Session, req: &BuildRequest, steps: &Steps) -> Result<(), BuildError> {
    for tag in &req.tags {
        let step = steps.start(format!("pushing {tag}"));
        session
            .block_on(
                session
                    .registry()
                    .push(&session.store, tag, tag, &kiln_registry::NoProgress),
            )
            .context(|| format!("pushing {tag}"))?;
        step.done();
    }
    Ok(())
}

/// The name an exported archive carries: the first tag, or one made from the digest.
/// The descriptors of the image's layers, compressed as asked; a layer
/// that came from a remote cache is downloaded now, as the image carries it.
fn image_layers(
    session: &Session,
    layers: &[Layer],
    compression: LayerCompression,
) -> Result<Vec<serde_json::Value>, BuildError> {
    layers
        .iter()
        .map(|l| {
            session.ensure_blob(&l.digest)?;
            let (digest, size, media_type) =
                compressed_for_export(&session.store, &session.cache, l, compression)?;
            Ok(serde_json::json!({
                "mediaType": oci_media_type(&media_type),
                "digest": digest.to_string(),
                "size": size,
            }))
        })
        .collect()
}

fn export_name(req: &BuildRequest, digest: &Digest) -> kiln_oci::Reference {
    req.tags.first().cloned().unwrap_or_else(|| {
        format!("kiln.local/build:{}", &digest.hex()[..12])
            .parse()
            .expect("valid reference")
    })
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
