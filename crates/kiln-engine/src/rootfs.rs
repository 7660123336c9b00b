//! Root file systems of a stage: a writable one for a step (overlay of the
//! stage's layer snapshots plus a fresh upper dir), read-only views for
//! `COPY --from` and `RUN --mount=from=`, and turning a step's changes into
//! a layer.

use std::path::{Path, PathBuf};

use kiln_fs::context::SourceRoot;
use kiln_fs::copy::{copy_into, CopyOptions};
use kiln_fs::snapshot::{ActiveSnapshot, Snapshotter};

use crate::error::{BuildError, Context};
use crate::layer::{top_chain_id, Layer};
use crate::session::Session;

/// The extracted snapshot of every layer, topmost first (as snapshotters
/// want them), extracting the ones not yet on disk. Layers are extracted
/// only here, when a step needs their files: a cache hit pulls nothing.
fn snapshot_paths(session: &Session, layers: &[Layer]) -> Result<Vec<PathBuf>, BuildError> {
    let mut chain: Option<kiln_oci::Digest> = None;
    let mut out = Vec::new();
    for l in layers {
        let id = crate::layer::chain_id(chain.as_ref(), &l.diff_id);
        out.push(ensure_snapshot(session, &id, &l.diff_id, &l.digest)?);
        chain = Some(id);
    }
    out.reverse();
    Ok(out)
}

/// Extracts the snapshots of `layers` that are not on disk yet.
pub(crate) fn unpack(session: &Session, layers: &[Layer]) -> Result<(), BuildError> {
    snapshot_paths(session, layers).map(drop)
}

/// A writable root for one step. Dropping it unmounts and deletes it.
pub struct WorkingRootfs<'a> {
    snapshotter: &'a dyn Snapshotter,
    active: Option<ActiveSnapshot>,
    parent_chain: Option<kiln_oci::Digest>,
    /// The layer snapshots under it, top-most first.
    lowers: Vec<PathBuf>,
}

impl<'a> WorkingRootfs<'a> {
    pub fn prepare(
        session: &'a Session,
        layers: &[Layer],
    ) -> Result<WorkingRootfs<'a>, BuildError> {
        let snapshotter = session.snapshotter.as_ref();
        let lowers = snapshot_paths(session, layers)?;
        let active = snapshotter
            .prepare(&lowers)
            .context(|| format!("preparing a {} snapshot", snapshotter.name()))?;
        Ok(WorkingRootfs {
            snapshotter,
            active: Some(active),
            parent_chain: top_chain_id(layers),
            lowers,
        })
    }

    /// The layer snapshots under it, top-most first.
    pub fn lowers(&self) -> &[PathBuf] {
        &self.lowers
    }

    pub fn merged(&self) -> &Path {
        self.active.as_ref().expect("active until dropped").rootfs()
    }

    /// The overlay upper dir under `merged`, if any (`ActiveSnapshot::upper`).
    pub fn upper(&self) -> Option<&Path> {
        self.active.as_ref().expect("active until dropped").upper()
    }

    /// Keeps what changed as the new layer's snapshot and returns the
    /// layer (`None` if nothing changed).
    ///
    /// Where the snapshotter keeps the layer itself (overlay), the tar is
    /// only hashed here; its blob is written when something needs it
    /// (`Session::ensure_blob`): most layers of a multi-stage build (the
    /// toolchain of a builder stage) never leave the snapshot. Otherwise,
    /// or with `blob_now` (the image will carry the layer), the
    /// uncompressed blob goes into the store now, in the pass that hashes
    /// it. Layers that leave the machine are compressed once, at export
    /// (`compressed_for_export`).
    pub fn commit(
        mut self,
        session: &Session,
        blob_now: bool,
    ) -> Result<Option<Layer>, BuildError> {
        let mut active = self.active.take().expect("active until dropped");
        let result = self.commit_active(&mut active, session, blob_now);
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
        session: &Session,
        blob_now: bool,
    ) -> Result<Option<Layer>, BuildError> {
        let lazy = self.snapshotter.keeps_layers() && !blob_now;
        let info = if lazy {
            self.diff(active, &mut std::io::sink())?
        } else {
            self.write_blob(active, session)?
        };
        if info.is_empty() {
            return Ok(None);
        }
        let digest = *info.diff_id.digest();
        let chain = crate::layer::chain_id(self.parent_chain.as_ref(), &info.diff_id);
        let snapshots = self.snapshotter.snapshots();
        if lazy
            && !session.store.has_blob(&digest)
            && !snapshots.can_rewrite_layer(&info.diff_id)
            && snapshots.get(&chain).is_some()
        {
            // That chain's snapshot was extracted from a blob pruned since:
            // it cannot write the layer, and committing discards our upper
            // dir in its favour, so the blob is written from ours now.
            self.write_blob(active, session)?;
        }
        self.snapshotter
            .commit(active, &chain, &info.diff_id)
            .context(|| "keeping the step's snapshot".to_string())?;
        Ok(Some(Layer {
            digest,
            diff_id: info.diff_id,
            size: info.size,
            media_type: kiln_oci::media_type::OCI_LAYER.to_string(),
        }))
    }

    /// Writes the step's layer tar as an uncompressed blob into the store
    /// (its digest is its diff_id); an empty layer is not kept.
    fn write_blob(
        &self,
        active: &ActiveSnapshot,
        session: &Session,
    ) -> Result<kiln_fs::layer::LayerInfo, BuildError> {
        let mut ingest = session
            .store
            .ingest(None)
            .context(|| "starting a layer blob in the store".to_string())?;
        let info = self.diff(active, &mut ingest)?;
        if info.is_empty() {
            return Ok(info);
        }
        let (digest, _) = ingest
            .commit()
            .context(|| "committing the layer blob".to_string())?;
        session.record_layer(&digest, &info)?;
        Ok(info)
    }

    fn diff(
        &self,
        active: &ActiveSnapshot,
        out: &mut dyn std::io::Write,
    ) -> Result<kiln_fs::layer::LayerInfo, BuildError> {
        self.snapshotter
            .diff(active, out, &layer_options())
            .context(|| "writing the step's changes as a layer".to_string())
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

pub(crate) fn layer_options() -> kiln_fs::layer::LayerOptions {
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
    /// The layer snapshots it shows, top-most first.
    layers: Vec<PathBuf>,
}

impl<'a> ReadonlyRootfs<'a> {
    pub fn mount(session: &'a Session, layers: &[Layer]) -> Result<ReadonlyRootfs<'a>, BuildError> {
        let snapshotter = session.snapshotter.as_ref();
        let layers = snapshot_paths(session, layers)?;
        let active = snapshotter
            .view(&layers)
            .context(|| format!("preparing a {} view of a stage", snapshotter.name()))?;
        Ok(ReadonlyRootfs {
            snapshotter,
            active: Some(active),
            layers,
        })
    }

    pub fn path(&self) -> &Path {
        self.active.as_ref().expect("active until dropped").rootfs()
    }

    /// The layer snapshots it shows, top-most first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// The content hashes its layers' snapshots recorded when they were
    /// committed: hashing its files then reads only the others.
    pub fn file_hashes(&self) -> kiln_fs::file_hashes::FileHashes {
        let files: Vec<PathBuf> = self
            .layers
            .iter()
            .map(|fs| kiln_fs::snapshot::Snapshots::hashes_of(fs))
            .collect();
        kiln_fs::file_hashes::FileHashes::of_layers(&files)
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
/// `host` is set when `dest` is on the host and `source` is untrusted
/// (`-o type=local`): returns what was not kept.
pub fn copy_dir(
    source: &Path,
    dest: &Path,
    host: Option<kiln_fs::copy::HostPolicy>,
) -> Result<Vec<String>, BuildError> {
    let root = SourceRoot::rootfs(source).context(|| format!("opening {}", source.display()))?;
    std::fs::create_dir_all(dest).context(|| format!("creating {}", dest.display()))?;
    let opts = CopyOptions {
        sources: vec!["/".into()],
        dest: "/".into(),
        workdir: "/".into(),
        host,
        ..Default::default()
    };
    let stats = copy_into(&root, dest, &opts)
        .context(|| format!("copying {} to {}", source.display(), dest.display()))?;
    Ok(stats.skipped)
}

/// A private writable copy of a host directory (for `RUN
/// --mount=type=bind,rw`), discarded with the returned TempDir.
pub fn scratch_view(
    session: &Session,
    source: &Path,
) -> Result<(tempfile::TempDir, PathBuf), BuildError> {
    let dir = tempfile::Builder::new()
        .prefix("rw-")
        .tempdir_in(session.paths.tmp())
        .context(|| "creating a directory for a rw bind mount".to_string())?;
    let copy = dir.path().join("data");
    if source.is_dir() {
        copy_dir(source, &copy, None)?;
    } else {
        std::fs::copy(source, &copy).context(|| format!("copying {}", source.display()))?;
    }
    Ok((dir, copy))
}

fn ensure_snapshot(
    session: &Session,
    chain: &kiln_oci::Digest,
    diff_id: &kiln_oci::DiffId,
    digest: &kiln_oci::Digest,
) -> Result<PathBuf, BuildError> {
    session
        .snapshotter
        .snapshots()
        .ensure(chain, diff_id, || {
            session.open_blob(digest).map_err(std::io::Error::other)
        })
        .map_err(|e| session.blob_error(digest, e))
}
