//! Guard results remembered by what they depend on: the image's layers and
//! config (without timestamps, which every build renews) and the layers of
//! the stages the ELF guard searches. A rebuild that produced the same
//! image reads none of its layers again.

use std::path::Path;

use kiln_store::Image;

use crate::guards::Finding;
use crate::locate::StageLayers;

/// The findings remembered in `dir` for this image and these stages, or
/// the ones `compute` finds (then remembered). A damaged entry is
/// computed again; one that cannot be written is only a lost shortcut.
pub fn remembered<E>(
    dir: &Path,
    image: &Image,
    stages: &[StageLayers],
    compute: impl FnOnce() -> Result<Vec<Finding>, E>,
) -> Result<Vec<Finding>, E> {
    let path = dir.join(format!("{}.json", key(image, stages)));
    if let Some(findings) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        return Ok(findings);
    }
    let findings = compute()?;
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut tmp, &findings)?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    };
    let _ = write();
    Ok(findings)
}

/// BLAKE3 of the guards' version, the config without its timestamps (it
/// names every layer by diff_id) and the other stages' layer digests.
fn key(image: &Image, stages: &[StageLayers]) -> String {
    let mut config = serde_json::to_value(&image.config).unwrap_or_default();
    if let Some(c) = config.as_object_mut() {
        c.remove("created");
    }
    for h in config["history"].as_array_mut().into_iter().flatten() {
        if let Some(h) = h.as_object_mut() {
            h.remove("created");
        }
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"kiln-guards-v1\0");
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update(b"\0");
    hasher.update(&serde_json::to_vec(&config).expect("config serialises"));
    for s in stages {
        hasher.update(b"\0stage\0");
        hasher.update(s.name.as_bytes());
        for l in &s.layers {
            hasher.update(b"\0");
            hasher.update(l.digest().to_string().as_bytes());
        }
    }
    hasher.finalize().to_hex().to_string()
}
