//! What a build is asked for and what it returns: plain data, shared by
//! every part of the engine.

use std::path::PathBuf;

use kiln_oci::{Digest, Reference};

use crate::options::{CacheFrom, CacheTo, LayerCompression, NetworkMode, Output, Secret};

/// Which container runtime runs RUN steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// Embedded youki libcontainer.
    #[default]
    Youki,
    /// The external `runc` binary.
    Runc,
}

#[derive(Clone, Debug)]
pub enum DockerfileSource {
    /// `CONTEXT/Dockerfile`.
    InContext,
    Path(PathBuf),
    Stdin,
}

/// Everything `kiln build` was asked for.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    /// A directory, or `-` for a tar (or a lone Dockerfile) on stdin.
    pub context: String,
    pub dockerfile: DockerfileSource,
    pub tags: Vec<Reference>,
    pub target: Option<String>,
    pub build_args: Vec<(String, String)>,
    pub no_cache: bool,
    /// Say for every step that misses why (even a first build).
    pub explain_cache: bool,
    pub pull: bool,
    pub platform: Option<String>,
    pub labels: Vec<(String, String)>,
    pub network: NetworkMode,
    pub secrets: Vec<Secret>,
    pub outputs: Vec<Output>,
    pub push: bool,
    pub runtime: Runtime,
    /// Containers, or plain processes in a root laid out in place.
    pub isolation: crate::isolation::Isolation,
    pub compression: LayerCompression,
    pub insecure_registries: Vec<String>,
    /// Merge the layers the target stage adds into one (`--squash`).
    pub squash: bool,
    /// `--cache-from`: caches to import.
    pub cache_from: Vec<CacheFrom>,
    /// `--cache-to`: where to export this build's cache.
    pub cache_to: Vec<CacheTo>,
    /// `--cache-max-size`: the build cache's limit, enforced after the
    /// build (`None`: `disk::DEFAULT_CACHE_MAX_SIZE`).
    pub cache_max_size: Option<u64>,
}

/// The result of a build.
#[derive(Clone, Debug)]
pub struct Built {
    /// The config digest, which Docker calls the image id.
    pub image_id: Digest,
    pub manifest_digest: Digest,
    /// Size of every stage that was built, the target among them.
    pub stages: Vec<kiln_analyze::StageSize>,
    /// The layers of every other stage (where the ELF guard looks for
    /// the libraries the image misses).
    pub other_stages: Vec<kiln_analyze::StageLayers>,
}
