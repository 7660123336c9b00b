//! Helpers shared by kiln's CLI integration tests: driving kiln and Docker,
//! reading docker-archive tars into comparable images, and differential
//! cases. Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod archive;
pub mod case;
pub mod compare;
pub mod engine;
pub mod tree;

use std::path::PathBuf;

/// The repository root (crates/kiln/../..).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

/// A name unique to this test process, usable as a Docker/kiln repository
/// name component.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}
