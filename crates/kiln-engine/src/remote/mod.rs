//! Remote build caches imported with `--cache-from`: a cache manifest in a
//! registry, an image whose config carries an inline cache, or an OCI
//! layout directory (docs/cache.md, "Remote cache").
//!
//! Only the manifest and the small config (the records) are read up front.
//! A record found here is a cache hit without any download; a layer blob
//! is fetched only when a later step needs its files or the exported image
//! carries it. A blob that cannot be fetched or does not verify is marked
//! bad: its records stop matching, and the step that made it runs again.
//!
//! A record that hits is adopted: written to this root's cache together
//! with where its blob can be fetched (`Cache::origin`), so the next build
//! on the root hits without `--cache-from` and still downloads nothing
//! it does not need.

mod format;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use kiln_oci::{Digest, Reference};
use kiln_store::Store;
use serde::{Deserialize, Serialize};

use crate::cache::{Cache, CacheKey, CacheRecord};
use crate::options::CacheFrom;

pub use format::{CacheConfig, MountBlob, CONFIG_MEDIA_TYPE, INLINE_FIELD};

/// Where an imported blob can be fetched from.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Source {
    Registry(Reference),
    Local(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Registry(r) => write!(f, "{r}"),
            Source::Local(d) => write!(f, "{}", d.display()),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct BlobAt {
    source: Source,
    size: u64,
}

/// What the registry client and async runtime a fetch needs.
pub struct Transport<'a> {
    pub client: &'a kiln_registry::Client,
    pub runtime: &'a tokio::runtime::Runtime,
    pub store: &'a Store,
}

pub struct RemoteCache {
    /// This root's cache, which adopted records and blob origins go to.
    local: Cache,
    records: HashMap<CacheKey, CacheRecord>,
    /// Fast key (a COPY --from keyed by its source stage) → record key.
    aliases: HashMap<CacheKey, CacheKey>,
    /// Step identity → the key recorded last for it (for explanations).
    index: HashMap<String, CacheKey>,
    blobs: HashMap<Digest, BlobAt>,
    /// Cache mount id → its contents as a tar blob.
    mounts: HashMap<String, Digest>,
    bad: Mutex<HashSet<Digest>>,
    /// Blobs this build downloaded (a wrong layer among them is bad too).
    fetched: Mutex<HashSet<Digest>>,
}

impl RemoteCache {
    /// No imported cache yet, but the blob origins `local` remembers.
    pub fn new(local: Cache) -> RemoteCache {
        RemoteCache {
            local,
            records: HashMap::new(),
            aliases: HashMap::new(),
            index: HashMap::new(),
            blobs: HashMap::new(),
            mounts: HashMap::new(),
            bad: Mutex::default(),
            fetched: Mutex::default(),
        }
    }

    /// Imports every source; one that cannot be read is a warning (passed
    /// to `warn`) and imports nothing.
    pub fn import(&mut self, froms: &[CacheFrom], t: &Transport, warn: &dyn Fn(String)) {
        for from in froms {
            let (what, source) = match from {
                CacheFrom::Registry(r) => (r.to_string(), Source::Registry(r.clone())),
                CacheFrom::Local(d) => (d.display().to_string(), Source::Local(d.clone())),
            };
            match format::read(&source, t) {
                Ok((config, sizes)) => self.add(config, sizes, &source),
                Err(e) => warn(format!(
                    "--cache-from {what}: {e}; building without this cache"
                )),
            }
        }
    }

    fn add(&mut self, config: CacheConfig, sizes: HashMap<Digest, u64>, source: &Source) {
        for (digest, size) in sizes {
            self.blobs.entry(digest).or_insert(BlobAt {
                source: source.clone(),
                size,
            });
        }
        for (key, record) in config.records {
            if let Some(fast) = record.fast_key {
                self.aliases.insert(fast, key);
            }
            for id in record.step.iter().flat_map(|s| &s.identities) {
                self.index.insert(id.clone(), key);
            }
            self.records.entry(key).or_insert(record);
        }
        for m in config.mounts {
            if let Ok(d) = m.digest.parse() {
                self.mounts.entry(m.id).or_insert(d);
            }
        }
    }

    /// The imported record for `key`, unless its layer turned out bad.
    pub fn record(&self, key: &CacheKey) -> Option<CacheRecord> {
        let r = self.records.get(key)?;
        let bad = self.bad.lock().unwrap();
        match &r.layer {
            Some(l) if l.digest.parse().is_ok_and(|d: Digest| bad.contains(&d)) => None,
            _ => Some(r.clone()),
        }
    }

    /// Writes a record that hit into this root's cache, with where its
    /// blob comes from (fetched only when needed); a failure is logged.
    pub fn adopt(&self, key: &CacheKey, record: &CacheRecord) {
        let digest = record.layer.as_ref().and_then(|l| l.digest.parse().ok());
        let origin = digest.and_then(|d| Some((d, self.blobs.get(&d)?)));
        let written = origin
            .map_or(Ok(()), |(d, at)| {
                let json = serde_json::to_vec(at).expect("blob origin serialises");
                self.local.put_origin(&d, &json)
            })
            .and_then(|()| self.local.put(key, record));
        if let Err(e) = written {
            tracing::warn!("adopting an imported cache record: {e}");
        }
    }

    /// Where `digest` can be fetched: an imported cache, or the one an
    /// adopted record's blob came from.
    fn locate(&self, digest: &Digest) -> Option<BlobAt> {
        if let Some(at) = self.blobs.get(digest) {
            return Some(at.clone());
        }
        serde_json::from_slice(&self.local.origin(digest)?).ok()
    }

    /// The cache a blob comes from, for messages.
    pub fn origin_name(&self, digest: &Digest) -> String {
        self.locate(digest)
            .map_or_else(|| "no imported cache".into(), |at| at.source.to_string())
    }

    pub fn alias(&self, fast: &CacheKey) -> Option<CacheKey> {
        self.aliases.get(fast).copied()
    }

    pub fn latest(&self, identity: &str) -> Option<CacheKey> {
        self.index.get(identity).copied()
    }

    /// Whether `digest` can be fetched (it is known and not known bad).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        !self.is_bad(digest) && self.locate(digest).is_some()
    }

    pub fn is_bad(&self, digest: &Digest) -> bool {
        self.bad.lock().unwrap().contains(digest)
    }

    /// Marks a blob this build fetched as bad (its content was not what
    /// its record says); `false` if it did not come from a remote cache.
    pub fn reject(&self, digest: &Digest) -> bool {
        if !self.fetched.lock().unwrap().contains(digest) {
            return false;
        }
        self.bad.lock().unwrap().insert(*digest);
        true
    }

    /// The blob holding cache mount `id`'s contents, if imported.
    pub fn mount_blob(&self, id: &str) -> Option<Digest> {
        self.mounts.get(id).copied().filter(|d| self.has_blob(d))
    }

    /// Downloads `digest` into the store (verified there); a failure marks
    /// it bad and says why, naming the cache it came from.
    pub fn fetch(&self, digest: &Digest, t: &Transport) -> Result<(), String> {
        let Some(at) = self.locate(digest).filter(|_| !self.is_bad(digest)) else {
            return Err(format!("blob {digest} is not in any imported cache"));
        };
        let result = match &at.source {
            Source::Registry(r) => t
                .runtime
                .block_on(t.client.fetch_blob(
                    t.store,
                    r,
                    *digest,
                    at.size,
                    &kiln_registry::NoProgress,
                ))
                .map(drop)
                .map_err(|e| e.to_string()),
            Source::Local(dir) => format::copy_local_blob(dir, digest, t.store),
        };
        match result {
            Ok(()) => {
                self.fetched.lock().unwrap().insert(*digest);
                Ok(())
            }
            Err(e) => {
                self.bad.lock().unwrap().insert(*digest);
                Err(format!("from {}: {e}", at.source))
            }
        }
    }
}
