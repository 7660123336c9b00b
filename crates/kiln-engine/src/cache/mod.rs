//! The build cache: which layer a step produced, keyed by everything the
//! step's result depends on. See docs/cache.md for the key contract.
//!
//! Records live in `ROOT/cache/steps/<key>.json`, each written to a temporary
//! file and renamed into place, so a build killed at any point leaves either
//! the old state or a complete record — never a torn one.
//!
//! `key` encodes named inputs into keys; `inputs` says which inputs each
//! kind of step has (the contract of docs/cache.md).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod inputs;
mod key;
mod usage;

pub use key::{CacheKey, Inputs, Value};
pub use usage::Entry;

/// What a cached step produced.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CacheRecord {
    /// `None` when the step changed no file (BuildKit then adds no layer).
    pub layer: Option<LayerRecord>,
    /// What the key was made of (records of older kilns have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Inputs>,
    /// Which step this was, to find the record again on a later miss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepInfo>,
    /// Detail behind hashed inputs, only to explain a later miss: input
    /// name → (file path, BLAKE3 of its entry) of the files a COPY read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, Vec<(String, String)>>,
    /// A second key that finds this record without computing its inputs
    /// (a `COPY --from` keyed by its source stage's key instead of the
    /// content it reads), so a remote hit needs none of that stage's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_key: Option<CacheKey>,
}

/// The step a record was made for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepInfo {
    /// `COPY at Dockerfile:4`, `FROM debian:bookworm`.
    pub label: String,
    /// Identities the index finds it under: same stage and position,
    /// same instruction text.
    pub identities: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    /// Digest of the compressed blob in the store.
    pub digest: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Size of the compressed blob.
    pub size: u64,
    pub media_type: String,
}

#[derive(Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open(root: &Path) -> std::io::Result<Cache> {
        let dir = root.join("cache/steps");
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(root.join("cache/index"))?;
        std::fs::create_dir_all(root.join("cache/aliases"))?;
        std::fs::create_dir_all(root.join("cache/origins"))?;
        Ok(Cache { dir })
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.hex()))
    }

    /// The record for `key`, if any. A damaged record counts as a miss.
    pub fn get(&self, key: &CacheKey) -> Option<CacheRecord> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes the record for `key` and points its step's identities at it.
    pub fn put(&self, key: &CacheKey, record: &CacheRecord) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(record).expect("cache record serialises");
        write_atomically(&self.dir, &self.path(key), &bytes)?;
        for id in record.step.iter().flat_map(|s| &s.identities) {
            let path = self.index_path(id);
            write_atomically(
                path.parent().expect("index dir"),
                &path,
                key.hex().as_bytes(),
            )?;
        }
        match record.fast_key {
            Some(fast) => self.put_alias(&fast, key),
            None => Ok(()),
        }
    }

    fn alias_path(&self, fast: &CacheKey) -> PathBuf {
        self.dir.with_file_name("aliases").join(fast.hex())
    }

    /// The key of the record a fast key (see `CacheRecord::fast_key`) names.
    pub fn alias(&self, fast: &CacheKey) -> Option<CacheKey> {
        let hex = std::fs::read_to_string(self.alias_path(fast)).ok()?;
        CacheKey::from_hex(hex.trim())
    }

    /// Lets `fast` find the record of `key`.
    pub fn put_alias(&self, fast: &CacheKey, key: &CacheKey) -> std::io::Result<()> {
        if self.alias(fast) == Some(*key) {
            return Ok(());
        }
        let path = self.alias_path(fast);
        write_atomically(
            path.parent().expect("alias dir"),
            &path,
            key.hex().as_bytes(),
        )
    }

    /// Like `put`, but leaves an existing record alone (config-only steps
    /// and stage bases are recorded once, only to explain later misses).
    pub fn put_once(&self, key: &CacheKey, record: &CacheRecord) -> std::io::Result<()> {
        if self.path(key).exists() {
            return Ok(());
        }
        self.put(key, record)
    }

    fn index_path(&self, identity: &str) -> PathBuf {
        let name = blake3::hash(identity.as_bytes()).to_hex();
        self.dir.with_file_name("index").join(name.as_str())
    }

    /// The key last recorded for a step with this identity.
    pub fn latest(&self, identity: &str) -> Option<CacheKey> {
        let hex = std::fs::read_to_string(self.index_path(identity)).ok()?;
        CacheKey::from_hex(hex.trim())
    }

    fn origin_path(&self, digest: &kiln_oci::Digest) -> PathBuf {
        self.dir.with_file_name("origins").join(digest.hex())
    }

    /// Where the blob of a record adopted from a remote cache can be
    /// fetched (the remote cache's own JSON; see `RemoteCache::adopt`).
    pub fn origin(&self, digest: &kiln_oci::Digest) -> Option<Vec<u8>> {
        std::fs::read(self.origin_path(digest)).ok()
    }

    pub fn put_origin(&self, digest: &kiln_oci::Digest, origin: &[u8]) -> std::io::Result<()> {
        let path = self.origin_path(digest);
        write_atomically(path.parent().expect("origins dir"), &path, origin)
    }

    fn compressed_path(&self, diff_id: &str, compression: &str) -> PathBuf {
        let hex = diff_id.trim_start_matches("sha256:");
        self.dir
            .with_file_name("compressed")
            .join(format!("{hex}.{compression}.json"))
    }

    /// The compressed blob already made for an uncompressed built layer.
    pub fn compressed(&self, diff_id: &str, compression: &str) -> Option<LayerRecord> {
        let bytes = std::fs::read(self.compressed_path(diff_id, compression)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn put_compressed(
        &self,
        diff_id: &str,
        compression: &str,
        record: &LayerRecord,
    ) -> std::io::Result<()> {
        let path = self.compressed_path(diff_id, compression);
        let dir = path.parent().expect("compressed records have a directory");
        std::fs::create_dir_all(dir)?;
        write_atomically(
            dir,
            &path,
            &serde_json::to_vec(record).expect("record serialises"),
        )
    }

    /// Every layer blob the cache refers to (kept alive by `kiln prune`).
    pub fn referenced_blobs(&self) -> Vec<kiln_oci::Digest> {
        self.entries()
            .into_iter()
            .filter_map(|e| e.layer.map(|(d, _)| d))
            .collect()
    }
}

/// Temp file in `dir`, fsync, rename: readers see all of it or nothing.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let key = Inputs::root("t").key();
        assert_eq!(cache.get(&key), None);
        let rec = CacheRecord {
            layer: Some(LayerRecord {
                digest: "sha256:aa".into(),
                diff_id: "sha256:bb".into(),
                size: 3,
                media_type: "m".into(),
            }),
            inputs: Some(Inputs::root("t")),
            step: Some(StepInfo {
                label: "RUN at Dockerfile:2".into(),
                identities: vec!["text RUN x".into()],
            }),
            details: BTreeMap::new(),
            fast_key: Some(Inputs::root("fast").key()),
        };
        cache.put(&key, &rec).unwrap();
        assert_eq!(cache.get(&key), Some(rec.clone()));
        assert_eq!(cache.latest("text RUN x"), Some(key));
        assert_eq!(cache.latest("text RUN y"), None);
        assert_eq!(cache.alias(&Inputs::root("fast").key()), Some(key));
        // put_once keeps what is there.
        let other = CacheRecord {
            layer: None,
            ..rec.clone()
        };
        cache.put_once(&key, &other).unwrap();
        assert_eq!(cache.get(&key), Some(rec));
        assert_eq!(cache.entries().len(), 1);
        std::fs::write(cache.path(&key), b"{\"layer\":").unwrap();
        assert_eq!(cache.get(&key), None);
    }
}
