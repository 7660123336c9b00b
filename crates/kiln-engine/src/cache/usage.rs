//! The build cache as disk use: its records with when they were last used
//! (the record file's mtime, renewed on every hit), and removing them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kiln_oci::{DiffId, Digest};

use super::{Cache, CacheKey, CacheRecord};

/// One record on disk.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: CacheKey,
    /// When a build last made or hit it.
    pub used: SystemTime,
    /// Size of the record file.
    pub bytes: u64,
    /// Its layer blob and the layer's diff_id (`None`: no layer).
    pub layer: Option<(Digest, DiffId)>,
}

impl Cache {
    /// Every readable record. Damaged ones count as misses anyway and are
    /// listed without a layer, so that eviction removes them too.
    pub fn entries(&self) -> Vec<Entry> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in dir.flatten() {
            let name = e.file_name();
            let Some(key) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(CacheKey::from_hex)
            else {
                continue;
            };
            let Ok(meta) = e.metadata() else { continue };
            let record: Option<CacheRecord> = std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            out.push(Entry {
                key,
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                bytes: meta.len(),
                layer: record
                    .and_then(|r| r.layer)
                    .and_then(|l| Some((l.digest.parse().ok()?, DiffId(l.diff_id.parse().ok()?)))),
            });
        }
        out
    }

    /// Marks the record for `key` as used now (least recently used records
    /// are evicted first).
    pub fn touch(&self, key: &CacheKey) {
        let path = self.path(key);
        if let Ok(f) = std::fs::File::options().write(true).open(&path) {
            if let Err(e) = f.set_modified(SystemTime::now()) {
                tracing::debug!("touching {}: {e}", path.display());
            }
        }
    }

    /// Removes the records of `keys` and the index and alias entries that
    /// point at them.
    pub fn remove(&self, keys: &HashSet<CacheKey>) -> std::io::Result<()> {
        for key in keys {
            remove_file(&self.path(key))?;
        }
        for dir in ["index", "aliases"] {
            for path in files(&self.dir.with_file_name(dir)) {
                let target = std::fs::read_to_string(&path).ok();
                if target
                    .and_then(|t| CacheKey::from_hex(t.trim()))
                    .is_some_and(|k| keys.contains(&k))
                {
                    remove_file(&path)?;
                }
            }
        }
        Ok(())
    }

    /// Removes every record, index and alias entry and compressed-layer
    /// record.
    pub fn clear(&self) -> std::io::Result<()> {
        for dir in ["steps", "index", "aliases", "compressed"] {
            for path in files(&self.dir.with_file_name(dir)) {
                remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Removes the compressed-layer records whose blob `present` says is
    /// gone.
    pub fn forget_compressed(&self, present: impl Fn(&Digest) -> bool) -> std::io::Result<()> {
        for path in files(&self.dir.with_file_name("compressed")) {
            let record: Option<super::LayerRecord> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let blob = record.and_then(|r| r.digest.parse::<Digest>().ok());
            if !blob.is_some_and(|d| present(&d)) {
                remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Bytes of the cache's own files (records, index, aliases).
    pub fn own_bytes(&self) -> u64 {
        ["steps", "index", "aliases", "compressed"]
            .iter()
            .flat_map(|d| files(&self.dir.with_file_name(d)))
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// The files in `dir` (none if it cannot be read), without the temp files
/// of writers still at work.
fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn remove_file(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(std::io::Error::new(
            e.kind(),
            format!("removing {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}
