//! Facts about layer blobs that cost a decompression to learn (diff id and
//! uncompressed size), cached in `ROOT/meta/sha256/<hex>.json`. Whoever
//! writes a layer and already knows them records them for free.

use std::fs;
use std::io;

use kiln_oci::media_type as mt;
use kiln_oci::oci_spec::image::Descriptor;
use kiln_oci::Compression;
use kiln_oci::{DiffId, Digest, HashingWriter};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsio::write_temp;
use crate::names::checked_digest;
use crate::Store;

/// What a layer blob holds once decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerInfo {
    pub diff_id: DiffId,
    pub uncompressed_size: u64,
}

impl Store {
    fn meta_path(&self, digest: &Digest) -> std::path::PathBuf {
        self.root()
            .join("meta/sha256")
            .join(format!("{}.json", digest.hex()))
    }

    /// Records what a layer blob decompresses to (skips a later
    /// decompression in `kiln images` and `kiln history`).
    pub fn record_layer_info(&self, digest: &Digest, info: &LayerInfo) -> Result<()> {
        let json = serde_json::to_vec(info).map_err(|e| Error::invalid("layer info", e))?;
        let dir = self.root().join("meta/sha256");
        let tmp = write_temp(&dir, &json)?;
        let dest = self.meta_path(digest);
        tmp.persist(&dest)
            .map_err(|e| Error::io("writing", &dest, e.error))?;
        Ok(())
    }

    /// Diff id and uncompressed size of a layer, from the cache or by
    /// decompressing the blob once.
    pub fn layer_info(&self, layer: &Descriptor) -> Result<LayerInfo> {
        let digest = checked_digest(layer, "layer descriptor")?;
        if let Ok(data) = fs::read(self.meta_path(&digest)) {
            if let Ok(info) = serde_json::from_slice::<LayerInfo>(&data) {
                return Ok(info);
            }
        }
        let media_type = layer.media_type().to_string();
        let compression =
            mt::layer_compression(&media_type).ok_or_else(|| Error::UnsupportedMediaType {
                what: format!("layer {digest}"),
                media_type: media_type.clone(),
            })?;
        let info = self.compute_layer_info(&digest, compression)?;
        self.record_layer_info(&digest, &info)?;
        Ok(info)
    }

    fn compute_layer_info(&self, digest: &Digest, compression: Compression) -> Result<LayerInfo> {
        let path = self.blob_path(digest);
        let mut reader = kiln_oci::compression::decoder(self.open_blob(digest)?, compression)
            .ctx("starting a decoder for", &path)?;
        let mut hasher = HashingWriter::new(io::sink());
        io::copy(&mut reader, &mut hasher).map_err(|e| {
            Error::invalid(format!("layer {digest}"), format!("cannot decompress: {e}"))
        })?;
        let (_, d, n) = hasher.finish();
        Ok(LayerInfo {
            diff_id: DiffId(d),
            uncompressed_size: n,
        })
    }

    /// Removes cached facts about a blob (prune does this).
    pub(crate) fn forget_meta(&self, digest: &Digest) {
        let _ = fs::remove_file(self.meta_path(digest));
    }
}
