//! Image archives: `save` writes one tar that is both a docker-archive
//! (`manifest.json`, `repositories`) and an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`); `load` reads docker save output (classic
//! and Docker 25+), OCI archives (skopeo `oci-archive:`) and kiln's own.

mod load;
mod save;
mod verify;

pub use load::{load, LoadReport, LoadedImage};
pub use save::{save, save_images, SaveItem};

/// One entry of a docker-archive `manifest.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DockerManifestEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}
