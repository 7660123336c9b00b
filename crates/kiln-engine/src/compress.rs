//! Layer compression for what leaves the machine: an archive, a push, a
//! remote cache. Built layers are stored uncompressed, also under a tag
//! (as Docker's store keeps them); each is compressed once per diff_id and
//! compression, remembered in the cache.

use kiln_oci::media_type as mt;
use kiln_store::Store;

use crate::cache::{Cache, LayerRecord};
use crate::error::{BuildError, Context};
use crate::layer::Layer;
use crate::options::LayerCompression;

/// The blob an image carries for `layer`: built layers (stored
/// uncompressed) are compressed as asked, once per diff_id and compression
/// (remembered in the cache); base image layers stay as they came.
pub fn compressed_for_export(
    store: &Store,
    cache: &Cache,
    layer: &Layer,
    compression: LayerCompression,
) -> Result<(kiln_oci::Digest, u64, String), BuildError> {
    let (kind, media_type) = compression.format();
    // The cache's name for the compression (recorded per diff_id).
    let name = match compression {
        LayerCompression::Gzip => "gzip",
        LayerCompression::Zstd => "zstd",
        LayerCompression::Uncompressed => "none",
    };
    if layer.media_type != mt::OCI_LAYER || kind == kiln_oci::compression::Compression::None {
        return Ok((layer.digest, layer.size, layer.media_type.clone()));
    }
    if let Some(done) = cache.compressed(&layer.diff_id.to_string(), name) {
        if let Ok(digest) = done.digest.parse::<kiln_oci::Digest>() {
            if store.has_blob(&digest) {
                return Ok((digest, done.size, done.media_type));
            }
        }
    }
    let mut source = store
        .open_blob(&layer.digest)
        .context(|| format!("reading layer {}", layer.digest))?;
    let ingest = store
        .ingest(None)
        .context(|| "starting a compressed layer blob".to_string())?;
    let mut writer = kiln_oci::compression::CompressWriter::new(ingest, kind)
        .context(|| "starting layer compression".to_string())?;
    std::io::copy(&mut source, &mut writer)
        .context(|| format!("compressing layer {}", layer.digest))?;
    let (_, _, ingest) = writer
        .finish()
        .context(|| "finishing layer compression".to_string())?;
    let (digest, size) = ingest
        .commit()
        .context(|| "committing the compressed layer blob".to_string())?;
    store
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
    cache
        .put_compressed(&layer.diff_id.to_string(), name, &record)
        .context(|| "remembering the compressed layer".to_string())?;
    Ok((digest, size, media_type.to_string()))
}

/// Base image layers keep their bytes; only their media type is restated.
pub fn oci_media_type(media_type: &str) -> String {
    match media_type {
        kiln_oci::media_type::DOCKER_LAYER_GZIP => kiln_oci::media_type::OCI_LAYER_GZIP.into(),
        kiln_oci::media_type::DOCKER_LAYER => kiln_oci::media_type::OCI_LAYER.into(),
        kiln_oci::media_type::DOCKER_LAYER_ZSTD => kiln_oci::media_type::OCI_LAYER_ZSTD.into(),
        other => other.into(),
    }
}

/// The manifest of the stored image `name` as a push sends it: its
/// uncompressed layers compressed as asked (the config, and the image's id,
/// stay the same). Layers are compressed one after another, each on every
/// core (parallel gzip members, multithreaded zstd).
pub fn manifest_for_push(
    store: &Store,
    cache: &Cache,
    name: &str,
    compression: LayerCompression,
) -> Result<Vec<u8>, BuildError> {
    let image = store
        .resolve(name)
        .context(|| format!("finding the image {name}"))?;
    let raw = store
        .read_blob(&image.manifest_digest)
        .context(|| format!("reading the manifest of {name}"))?;
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&raw).context(|| format!("parsing the manifest of {name}"))?;
    let Some(layers) = manifest["layers"].as_array_mut() else {
        return Ok(raw);
    };
    let mut changed = false;
    for (desc, diff_id) in layers
        .iter_mut()
        .zip(&image.config.rootfs().diff_ids().clone())
    {
        let media_type = desc["mediaType"].as_str().unwrap_or_default().to_string();
        if media_type != mt::OCI_LAYER && media_type != mt::DOCKER_LAYER {
            continue;
        }
        let layer = Layer {
            digest: desc["digest"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .context(|| format!("a layer digest of {name}"))?,
            diff_id: kiln_oci::DiffId(diff_id.parse().context(|| format!("a diff_id of {name}"))?),
            size: desc["size"].as_u64().unwrap_or_default(),
            media_type: mt::OCI_LAYER.to_string(),
        };
        let (digest, size, media_type) = compressed_for_export(store, cache, &layer, compression)?;
        desc["mediaType"] = oci_media_type(&media_type).into();
        desc["digest"] = digest.to_string().into();
        desc["size"] = size.into();
        changed = true;
    }
    if !changed {
        return Ok(raw);
    }
    let bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    store
        .write_blob(&bytes)
        .context(|| format!("writing the push manifest of {name}"))?;
    Ok(bytes)
}
