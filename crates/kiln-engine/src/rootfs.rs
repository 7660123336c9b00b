//! Root file systems of a stage: a writable one for a step (overlay of the
//! stage's layer snapshots plus a fresh upper dir), read-only views for
//! `COPY --from` and `RUN --mount=from=`, and turning a step's changes into
//! a layer.

use std::path::{Path, PathBuf};

use kiln_fs::context::SourceRoot;
use kiln_fs::copy::{copy_into, CopyOptions};
use kiln_fs::snapshot::{ActiveSnapshot, Snapshotter};

use crate::builder::{Builder, Compression};
use crate::cache::{CacheKey, CacheRecord, LayerRecord};
use crate::error::{BuildError, Context};
use crate::layer::{top_chain_id, Layer};

fn snapshot_paths(layers: &[Layer]) -> Vec<PathBuf> {
    // Snapshotters want the topmost layer first.
    layers.iter().rev().map(|l| l.snapshot.clone()).collect()
}

/// A writable root for one step. Dropping it unmounts and deletes it.
pub struct WorkingRootfs<'a> {
    snapshotter: &'a dyn Snapshotter,
    active: Option<ActiveSnapshot>,
    parent_chain: Option<kiln_oci::Digest>,
}

impl<'a> WorkingRootfs<'a> {
    pub fn prepare(
        builder: &'a Builder,
        layers: &[Layer],
    ) -> Result<WorkingRootfs<'a>, BuildError> {
        let snapshotter = builder.snapshotter.as_ref();
        let active = snapshotter
            .prepare(&snapshot_paths(layers))
            .context(|| format!("preparing a {} snapshot", snapshotter.name()))?;
        Ok(WorkingRootfs {
            snapshotter,
            active: Some(active),
            parent_chain: top_chain_id(layers),
        })
    }

    pub fn merged(&self) -> &Path {
        self.active.as_ref().expect("active until dropped").rootfs()
    }

    /// Writes what changed as an uncompressed layer blob into the store and
    /// keeps it as the new layer's snapshot. `None` if nothing changed.
    ///
    /// Uncompressed on purpose: most layers of a multi-stage build (the
    /// toolchain of a builder stage) never leave the machine; the ones that
    /// do are compressed once, at export (`compressed_for_export`).
    pub fn commit(mut self, builder: &Builder) -> Result<Option<Layer>, BuildError> {
        let mut active = self.active.take().expect("active until dropped");
        let result = self.commit_active(&mut active, builder);
        let removed = self
            .snapshotter
            .remove(active)
            .context(|| "removing the step's snapshot".to_string());
        let layer = result?;
        removed?;
        Ok(layer)
    }

    fn commit_active(
        &self,
        active: &mut ActiveSnapshot,
        builder: &Builder,
    ) -> Result<Option<Layer>, BuildError> {
        let mut ingest = builder
            .store
            .ingest(None)
            .context(|| "starting a layer blob in the store".to_string())?;
        let info = self
            .snapshotter
            .diff(active, &mut ingest, &layer_options())
            .context(|| "writing the step's changes as a layer".to_string())?;
        if info.is_empty() {
            return Ok(None);
        }
        let (digest, size) = ingest
            .commit()
            .context(|| "committing the layer blob".to_string())?;
        builder
            .store
            .record_layer_info(
                &digest,
                &kiln_store::LayerInfo {
                    diff_id: info.diff_id,
                    uncompressed_size: info.size,
                },
            )
            .context(|| "recording the layer's diff_id".to_string())?;
        let chain = crate::layer::chain_id(self.parent_chain.as_ref(), &info.diff_id);
        let snapshot = self
            .snapshotter
            .commit(active, &chain, &info.diff_id)
            .context(|| "keeping the step's snapshot".to_string())?;
        Ok(Some(Layer {
            digest,
            diff_id: info.diff_id,
            size,
            media_type: kiln_oci::media_type::OCI_LAYER.to_string(),
            snapshot,
        }))
    }
}

impl Drop for WorkingRootfs<'_> {
    fn drop(&mut self) {
        if let Some(active) = self.active.take() {
            if let Err(e) = self.snapshotter.remove(active) {
                tracing::warn!("removing a step's snapshot: {e}");
            }
        }
    }
}

/// The blob an image carries for `layer`: built layers (stored
/// uncompressed) are compressed as asked, once per diff_id and compression
/// (remembered in the cache); base image layers stay as they came.
pub fn compressed_for_export(
    builder: &Builder,
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
    if let Some(done) = builder.cache.compressed(&layer.diff_id.to_string(), name) {
        if let Ok(digest) = done.digest.parse::<kiln_oci::Digest>() {
            if builder.store.has_blob(&digest) {
                return Ok((digest, done.size, done.media_type));
            }
        }
    }
    let mut source = builder
        .store
        .open_blob(&layer.digest)
        .context(|| format!("reading layer {}", layer.digest))?;
    let ingest = builder
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
    builder
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
    builder
        .cache
        .put_compressed(&layer.diff_id.to_string(), name, &record)
        .context(|| "remembering the compressed layer".to_string())?;
    Ok((digest, size, media_type.to_string()))
}

fn layer_options() -> kiln_fs::layer::LayerOptions {
    kiln_fs::layer::LayerOptions {
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.parse().ok()),
    }
}

/// A view of a stage's or image's files, for reading (`COPY --from`,
/// `RUN --mount=from=`, `kiln cp`, local exports); changes are discarded.
pub struct ReadonlyRootfs<'a> {
    snapshotter: &'a dyn Snapshotter,
    active: Option<ActiveSnapshot>,
}

impl<'a> ReadonlyRootfs<'a> {
    pub fn mount(builder: &'a Builder, layers: &[Layer]) -> Result<ReadonlyRootfs<'a>, BuildError> {
        let snapshotter = builder.snapshotter.as_ref();
        let active = snapshotter
            .view(&snapshot_paths(layers))
            .context(|| format!("preparing a {} view of a stage", snapshotter.name()))?;
        Ok(ReadonlyRootfs {
            snapshotter,
            active: Some(active),
        })
    }

    pub fn path(&self) -> &Path {
        self.active.as_ref().expect("active until dropped").rootfs()
    }
}

impl Drop for ReadonlyRootfs<'_> {
    fn drop(&mut self) {
        if let Some(active) = self.active.take() {
            if let Err(e) = self.snapshotter.remove(active) {
                tracing::warn!("removing a view of a stage: {e}");
            }
        }
    }
}

/// Copies everything under `source` (a root file system or any host
/// directory) into the host directory `dest`, keeping modes and owners.
pub fn copy_dir(source: &Path, dest: &Path) -> Result<(), BuildError> {
    let root = SourceRoot::rootfs(source).context(|| format!("opening {}", source.display()))?;
    std::fs::create_dir_all(dest).context(|| format!("creating {}", dest.display()))?;
    let opts = CopyOptions {
        sources: vec!["/".into()],
        dest: "/".into(),
        workdir: "/".into(),
        ..Default::default()
    };
    copy_into(&root, dest, &opts)
        .context(|| format!("copying {} to {}", source.display(), dest.display()))?;
    Ok(())
}

/// A private writable copy of a host directory (for `RUN
/// --mount=type=bind,rw`), discarded with the returned TempDir.
pub fn scratch_view(
    builder: &Builder,
    source: &Path,
) -> Result<(tempfile::TempDir, PathBuf), BuildError> {
    let dir = tempfile::Builder::new()
        .prefix("rw-")
        .tempdir_in(builder.root.join("tmp"))
        .context(|| "creating a directory for a rw bind mount".to_string())?;
    let copy = dir.path().join("data");
    if source.is_dir() {
        copy_dir(source, &copy)?;
    } else {
        std::fs::copy(source, &copy).context(|| format!("copying {}", source.display()))?;
    }
    Ok((dir, copy))
}

/// A cache hit on top of `parents`: the layer (or `None` for a step that
/// changed nothing) with its snapshot ready. A record whose blob is gone is
/// a miss.
pub fn cached_layer(
    builder: &Builder,
    key: &CacheKey,
    parents: &[Layer],
) -> Result<Option<Option<Layer>>, BuildError> {
    let Some(record) = builder.cache.get(key) else {
        return Ok(None);
    };
    let Some(l) = record.layer else {
        return Ok(Some(None));
    };
    let (Ok(digest), Ok(diff_id)) = (
        l.digest.parse::<kiln_oci::Digest>(),
        l.diff_id.parse::<kiln_oci::Digest>(),
    ) else {
        return Ok(None);
    };
    if !builder.store.has_blob(&digest) {
        return Ok(None);
    }
    let diff_id = kiln_oci::DiffId(diff_id);
    let chain = crate::layer::chain_id(top_chain_id(parents).as_ref(), &diff_id);
    let snapshot = ensure_snapshot(builder, &chain, &diff_id, &digest)?;
    Ok(Some(Some(Layer {
        digest,
        diff_id,
        size: l.size,
        media_type: l.media_type,
        snapshot,
    })))
}

fn ensure_snapshot(
    builder: &Builder,
    chain: &kiln_oci::Digest,
    diff_id: &kiln_oci::DiffId,
    digest: &kiln_oci::Digest,
) -> Result<PathBuf, BuildError> {
    builder
        .snapshotter
        .snapshots()
        .ensure(chain, diff_id, || {
            builder
                .store
                .open_blob(digest)
                .map_err(std::io::Error::other)
        })
        .context(|| format!("extracting layer {digest}"))
}

pub fn record(layer: Option<&Layer>) -> CacheRecord {
    CacheRecord {
        layer: layer.map(|l| LayerRecord {
            digest: l.digest.to_string(),
            diff_id: l.diff_id.digest().to_string(),
            size: l.size,
            media_type: l.media_type.clone(),
        }),
    }
}

/// Makes sure every layer has its extracted snapshot (extracting from the
/// store's blob the ones that are missing) and fills in `snapshot`.
pub fn ensure_snapshots(builder: &Builder, layers: &mut [Layer]) -> Result<(), BuildError> {
    let mut chain: Option<kiln_oci::Digest> = None;
    for l in layers.iter_mut() {
        let id = crate::layer::chain_id(chain.as_ref(), &l.diff_id);
        l.snapshot = ensure_snapshot(builder, &id, &l.diff_id, &l.digest)?;
        chain = Some(id);
    }
    Ok(())
}
