//! Helpers shared by the integration tests (included with `mod common`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata")
}

pub fn update() -> bool {
    std::env::var_os("KILN_UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

pub fn opts() -> kiln_dockerfile::PlanOptions {
    kiln_dockerfile::PlanOptions {
        target: None,
        build_args: Vec::new(),
        target_platform: "linux/amd64".into(),
        build_platform: "linux/amd64".into(),
    }
}

/// Compares `actual` with the file, or rewrites it when KILN_UPDATE_GOLDEN=1.
pub fn golden(path: &Path, actual: &str) -> Result<(), String> {
    if update() {
        std::fs::write(path, actual).unwrap();
        return Ok(());
    }
    let expected = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e} (run with KILN_UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    })?;
    if expected != actual {
        return Err(format!(
            "{} differs\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        ));
    }
    Ok(())
}

pub fn sorted_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}
