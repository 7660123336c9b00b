//! The result of an analysis. Serialised as-is for `--format json`; the
//! schema is documented in docs/analyze.md (keep the two in step).

use serde::{Deserialize, Serialize};

/// Manifest annotation in which `kiln build` records the size of every stage.
pub const STAGES_ANNOTATION: &str = "dev.kiln.build.stages";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Analysis {
    /// What was analysed (name, archive or layout path).
    pub image: String,
    pub manifest_digest: String,
    pub config_digest: String,
    pub totals: Totals,
    pub layers: Vec<LayerReport>,
    /// Every stage of the build, when kiln built the image (else empty).
    pub stages: Vec<StageSize>,
    pub largest_files: Vec<FileSize>,
    pub largest_dirs: Vec<DirSize>,
    /// The biggest wasted files (at most 50); totals cover all of them.
    pub waste: Vec<WasteEntry>,
    #[serde(skip)]
    pub(crate) fs: crate::fs::FinalFs,
    #[serde(skip)]
    pub(crate) secrets: Vec<crate::secrets::SecretHit>,
    #[serde(skip)]
    pub(crate) config: serde_json::Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Bytes a pull transfers: the layer blobs as stored.
    pub compressed: u64,
    /// Bytes of the uncompressed layer tars.
    pub uncompressed: u64,
    /// Bytes of regular files in all layers (what the layers ship).
    pub shipped: u64,
    /// Bytes of regular files in the final filesystem.
    pub final_bytes: u64,
    /// shipped - final_bytes: every removed or replaced file, counted once.
    pub wasted: u64,
    pub wasted_deleted: u64,
    pub wasted_overwritten: u64,
    pub wasted_metadata_only: u64,
    /// final_bytes / shipped (1.0 for an image without files).
    pub efficiency: f64,
    pub files: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerReport {
    pub index: usize,
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
    pub compressed: u64,
    pub uncompressed: u64,
    /// The history entry that made the layer (`created_by`).
    pub created_by: String,
    /// Bytes of regular files in the layer.
    pub file_bytes: u64,
    pub files: u64,
    /// Bytes of this layer's files that later layers remove or replace.
    pub wasted_later: u64,
    /// Bytes of earlier layers' files that this layer removes or replaces.
    pub wastes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageSize {
    pub index: usize,
    pub name: String,
    /// Uncompressed bytes of all layers of the stage's file system.
    pub size: u64,
    pub layers: usize,
    /// Whether this is the stage the image was made from.
    #[serde(rename = "final")]
    pub is_final: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileSize {
    pub path: String,
    pub size: u64,
    pub layer: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirSize {
    pub path: String,
    pub size: u64,
    pub files: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WasteReason {
    /// Removed by a whiteout (or an opaque directory) in a later layer.
    Deleted,
    /// Replaced by different content.
    Overwritten,
    /// Copied up unchanged by a chmod/chown/touch: same bytes shipped twice.
    MetadataOnly,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WasteEntry {
    pub path: String,
    pub size: u64,
    /// Layer that added the bytes.
    pub added_in: usize,
    /// Layer that removed or replaced them.
    pub removed_in: usize,
    pub reason: WasteReason,
}

/// Docker's decimal sizes with three significant digits (`4.6MB`).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let text = if i == 0 || v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", UNITS[i])
}

impl WasteReason {
    pub fn verb(self) -> &'static str {
        match self {
            WasteReason::Deleted => "deleted",
            WasteReason::Overwritten => "overwritten",
            WasteReason::MetadataOnly => "copied up by a metadata change",
        }
    }
}

/// A history command shortened for a table (`/bin/sh -c #(nop) ` dropped).
pub fn short_command(created_by: &str, width: usize) -> String {
    let c = created_by.trim_start_matches("/bin/sh -c #(nop) ").trim();
    if c.chars().count() <= width {
        c.to_string()
    } else {
        format!("{}…", c.chars().take(width - 1).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human_size(999), "999B");
        assert_eq!(super::human_size(10_485_760), "10.5MB");
        assert_eq!(super::human_size(4_600_000), "4.6MB");
        assert_eq!(super::human_size(830_000_000), "830MB");
    }
}
