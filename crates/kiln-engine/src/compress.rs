//! Layer compression for what leaves the machine: an exported image, a
//! push, a remote cache. Built layers are stored uncompressed; each is
//! compressed once per diff_id and compression, remembered in the cache.

use crate::cache::LayerRecord;
use crate::error::{BuildError, Context};
use crate::layer::Layer;
use crate::request::Compression;
use crate::session::Session;

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

/// Base image layers keep their bytes; only their media type is restated.
pub fn oci_media_type(media_type: &str) -> String {
    match media_type {
        kiln_oci::media_type::DOCKER_LAYER_GZIP => kiln_oci::media_type::OCI_LAYER_GZIP.into(),
        kiln_oci::media_type::DOCKER_LAYER => kiln_oci::media_type::OCI_LAYER.into(),
        kiln_oci::media_type::DOCKER_LAYER_ZSTD => kiln_oci::media_type::OCI_LAYER_ZSTD.into(),
        other => other.into(),
    }
}
