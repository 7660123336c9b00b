//! Helpers shared by kiln's CLI integration tests: driving kiln and Docker,
//! reading docker-archive tars into comparable images, and differential
//! cases. Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod archive;
pub mod case;
pub mod cli;
pub mod compare;
pub mod engine;
pub mod readme;
pub mod tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// A `KNOWN_FAILURES` file: `name  one-line reason` per line, `#` comments.
/// A missing file lists nothing.
pub fn known_failures(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, reason) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (name.to_string(), reason.trim().to_string())
        })
        .collect()
}

/// Copies a directory tree (files, directories, symlinks) to `to`.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}
