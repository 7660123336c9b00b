//! Layers kept only as snapshots. A step's overlay upper dir *is* its
//! layer, so once committed as a snapshot its tar can be written again at
//! any time: a build commits a step by hashing the tar (its diff_id) and
//! writes the blob only when something needs it (an exported image, a
//! remote cache), as Docker's store keeps layers as directories. A builder
//! stage's toolchain layer is then never written at all.
//!
//! - `<chain-id hex>/layer`: present when the snapshot's `fs` is such an
//!   upper dir; holds the [`LayerOptions`] its tar was written with.
//! - `diffs/<diff_id hex>`: a symlink to `../<chain-id hex>`, the snapshot
//!   that can write that layer (layers do not depend on their parents).

use std::io::Write;
use std::path::{Path, PathBuf};

use kiln_oci::{DiffId, Digest};

use super::{io_at, SnapshotError, Snapshots};
use crate::layer::{write_layer_from_upper, LayerInfo, LayerOptions};

/// The marker of a snapshot whose `fs` is the layer itself.
pub(crate) const LAYER: &str = "layer";

impl Snapshots {
    fn diffs_dir(&self) -> PathBuf {
        self.root().join("diffs")
    }

    /// Writes the layer `diff_id` again from the snapshot a step committed
    /// it as; `None` when no such snapshot is here. The caller verifies the
    /// digest (the store's ingest does).
    pub fn rewrite_layer(
        &self,
        diff_id: &DiffId,
        out: &mut dyn Write,
    ) -> Result<Option<LayerInfo>, SnapshotError> {
        let Some((fs, opts)) = self.layer_source(diff_id) else {
            return Ok(None);
        };
        Ok(Some(write_layer_from_upper(&fs, out, &opts)?))
    }

    /// Whether [`Self::rewrite_layer`] can write `diff_id`; the snapshot
    /// then stays (prune leaves it alone) until this process ends.
    pub fn can_rewrite_layer(&self, diff_id: &DiffId) -> bool {
        self.layer_source(diff_id).is_some()
    }

    fn layer_source(&self, diff_id: &DiffId) -> Option<(PathBuf, LayerOptions)> {
        let link = self.diffs_dir().join(diff_id.digest().hex());
        let target = std::fs::read_link(&link).ok()?;
        let chain = target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| Digest::from_hex(n).ok())?;
        let Some(fs) = self.get(&chain) else {
            // Pruned since: the link is all that is left.
            let _ = std::fs::remove_file(&link);
            return None;
        };
        let opts = read_options(&fs.with_file_name(LAYER))?;
        Some((fs, opts))
    }

    /// Points `diffs/<diff_id>` at the snapshot of `chain_id` when it keeps
    /// its layer (called once it is published).
    pub(crate) fn link_layer(
        &self,
        chain_id: &Digest,
        diff_id: &DiffId,
    ) -> Result<(), SnapshotError> {
        if !self.dir(chain_id).join(LAYER).is_file() {
            return Ok(());
        }
        let dir = self.diffs_dir();
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let link = dir.join(diff_id.digest().hex());
        // A new link renamed over the old one, which may point at a
        // snapshot pruned since.
        let tmp = dir.join(format!(
            ".{}-{}",
            diff_id.digest().hex(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        let target = Path::new("..").join(chain_id.hex());
        std::os::unix::fs::symlink(&target, &tmp).map_err(io_at(&tmp))?;
        std::fs::rename(&tmp, &link).map_err(io_at(&link))
    }
}

/// Records that `fs` (an upper dir about to be committed) is its layer,
/// written with `opts`.
pub(crate) fn write_marker(dir: &Path, opts: &LayerOptions) -> Result<(), SnapshotError> {
    let file = dir.join(LAYER);
    let text = match opts.source_date_epoch {
        Some(epoch) => format!("source_date_epoch={epoch}\n"),
        None => String::new(),
    };
    std::fs::write(&file, text).map_err(io_at(&file))
}

fn read_options(file: &Path) -> Option<LayerOptions> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut opts = LayerOptions::default();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("source_date_epoch", v)) => opts.source_date_epoch = Some(v.parse().ok()?),
            _ => return None,
        }
    }
    Some(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for opts in [
            LayerOptions::default(),
            LayerOptions {
                source_date_epoch: Some(-5),
            },
        ] {
            write_marker(dir.path(), &opts).unwrap();
            assert_eq!(read_options(&dir.path().join(LAYER)), Some(opts));
        }
        std::fs::write(dir.path().join(LAYER), "other=1\n").unwrap();
        assert_eq!(read_options(&dir.path().join(LAYER)), None);
    }
}
