//! `prune`: delete blobs that no image name, lease or caller-given root
//! reaches. Runs entirely under the exclusive store lock, so no blob commit,
//! lease update or tag can interleave with it. `blob_usage` says, for
//! `kiln system df`, which blobs are named, leased or neither.

use std::collections::HashSet;
use std::fs;
use std::time::{Duration, SystemTime};

use kiln_oci::Digest;

use crate::error::{Error, IoContext, Result};
use crate::lease::is_locked;
use crate::Store;

/// What prune removed.
#[derive(Debug, Default, Clone)]
pub struct PruneReport {
    /// Removed blobs and their sizes.
    pub removed: Vec<(Digest, u64)>,
    pub bytes_freed: u64,
    /// Temp files of crashed writers removed from `ROOT/ingest`.
    pub stale_temp_files: usize,
}

/// Unlocked temp files younger than this may belong to a writer that has not
/// locked them yet; leave them for the next prune.
const TEMP_GRACE: Duration = Duration::from_secs(60);
/// Blobs larger than this are never manifests or indexes.
const MAX_JSON_BLOB: u64 = 16 << 20;

/// What a manifest or index refers to. A manifest's config and layers
/// never refer to anything, so a mark does not read them (a trim after
/// every build would otherwise read and verify every small layer).
#[derive(Default)]
struct Refs {
    /// An index's manifests, which may refer to more.
    manifests: Vec<Digest>,
    config: Option<Digest>,
    layers: Vec<Digest>,
}

/// What a mark reached, and the configs of the image manifests among it.
struct Marked {
    live: HashSet<Digest>,
    configs: Vec<Digest>,
}

/// Which blobs are kept by what (see [`Store::blob_usage`]).
#[derive(Debug, Default, Clone)]
pub struct BlobUsage {
    /// Every blob in the store and its size.
    pub blobs: Vec<(Digest, u64)>,
    /// Reachable from an image name (index.json).
    pub named: HashSet<Digest>,
    /// Reachable from a live lease (running builds, named leases).
    pub leased: HashSet<Digest>,
    /// The config of every image manifest reachable from a name.
    pub configs: Vec<Digest>,
}

impl Store {
    /// Removes every blob not reachable from an index entry, a lease (see
    /// `lease.rs`) or `extra_roots`. Manifests and indexes among the roots
    /// keep their children.
    pub fn prune(&self, extra_roots: &[Digest]) -> Result<PruneReport> {
        self.prune_with(|| Ok(extra_roots.to_vec()))
    }

    /// [`Store::prune`] with extra roots computed under the exclusive lock,
    /// so that whatever they are read from (the build cache's records) is
    /// seen as it is when the sweep runs.
    pub fn prune_with(
        &self,
        extra_roots: impl FnOnce() -> Result<Vec<Digest>>,
    ) -> Result<PruneReport> {
        let _lock = self.lock(true)?;
        let mut roots = self.named_roots()?;
        let named = roots.len();
        roots.extend(self.lease_roots(true)?);
        roots.extend(extra_roots()?);
        let live = self.mark(&roots, named)?.live;

        let mut report = PruneReport::default();
        for (digest, size) in self.all_blobs()? {
            if live.contains(&digest) {
                continue;
            }
            let path = self.blob_path(&digest);
            fs::remove_file(&path).ctx("removing blob", &path)?;
            self.forget_meta(&digest);
            report.bytes_freed += size;
            report.removed.push((digest, size));
        }
        report.stale_temp_files = self.remove_stale_temps()?;
        Ok(report)
    }

    /// Which blobs images and leases keep, as a prune would see them now.
    pub fn blob_usage(&self) -> Result<BlobUsage> {
        let _lock = self.lock(false)?;
        let roots = self.named_roots()?;
        let named = self.mark(&roots, roots.len())?;
        let leased = self.mark(&self.lease_roots(false)?, 0)?.live;
        Ok(BlobUsage {
            blobs: self.all_blobs()?,
            named: named.live,
            leased,
            configs: named.configs,
        })
    }

    /// The digests index.json names.
    fn named_roots(&self) -> Result<Vec<Digest>> {
        self.entries()?
            .iter()
            .map(|e| {
                e.digest().ok_or_else(|| {
                    Error::invalid(
                        "index.json",
                        format!("entry with unsupported digest {}", e.descriptor.digest()),
                    )
                })
            })
            .collect()
    }

    /// Every file in `blobs/sha256` named like a blob, with its size.
    fn all_blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let dir = self.root().join("blobs/sha256");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).ctx("listing blobs in", &dir)? {
            let entry = entry.ctx("listing blobs in", &dir)?;
            // Only files named like blobs; anything else is not ours.
            let Ok(digest) = Digest::from_hex(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            out.push((digest, entry.metadata().map(|m| m.len()).unwrap_or(0)));
        }
        Ok(out)
    }

    /// Everything reachable from `roots`. The first `named` roots are index
    /// entries: an unreadable manifest there aborts the prune, since its
    /// children cannot be known and would otherwise be deleted.
    fn mark(&self, roots: &[Digest], named: usize) -> Result<Marked> {
        let mut live = HashSet::new();
        let mut configs = Vec::new();
        let mut stack: Vec<(Digest, bool)> = roots
            .iter()
            .enumerate()
            .map(|(i, d)| (*d, i < named))
            .collect();
        while let Some((d, must_parse)) = stack.pop() {
            if !live.insert(d) {
                continue;
            }
            match self.refs(&d) {
                Ok(refs) => {
                    stack.extend(refs.manifests.into_iter().map(|c| (c, false)));
                    live.extend(refs.config.iter().chain(&refs.layers));
                    configs.extend(refs.config);
                }
                Err(e) if must_parse && self.has_blob(&d) => {
                    return Err(Error::invalid(
                        format!("image {d}"),
                        format!("cannot read it to find what it refers to ({e}); run `kiln fsck`, refusing to prune"),
                    ))
                }
                Err(_) => {}
            }
        }
        configs.sort();
        configs.dedup();
        Ok(Marked { live, configs })
    }

    /// What a manifest or index refers to; nothing for other blobs.
    fn refs(&self, digest: &Digest) -> Result<Refs> {
        let size = match self.blob_size(digest) {
            Ok(s) => s,
            Err(Error::BlobNotFound { .. }) => return Ok(Refs::default()),
            Err(e) => return Err(e),
        };
        if size > MAX_JSON_BLOB {
            return Ok(Refs::default());
        }
        let data = self.read_blob(digest)?;
        if data.first() != Some(&b'{') {
            return Ok(Refs::default());
        }
        let v: serde_json::Value = serde_json::from_slice(&data)
            .map_err(|e| Error::invalid(format!("blob {digest}"), e))?;
        let digest_of = |d: &serde_json::Value| -> Result<Option<Digest>> {
            d.get("digest")
                .and_then(|s| s.as_str())
                .map(|s| Ok(s.parse::<Digest>()?))
                .transpose()
        };
        let list = |key: &str| -> Result<Vec<Digest>> {
            let items = v.get(key).and_then(|m| m.as_array());
            let digests = items.into_iter().flatten().map(digest_of);
            digests.filter_map(Result::transpose).collect()
        };
        let mut refs = Refs {
            manifests: list("manifests")?,
            ..Refs::default()
        };
        if let (Some(c), true) = (
            v.get("config"),
            v.get("layers").is_some_and(|l| l.is_array()),
        ) {
            refs.config = digest_of(c)?;
            refs.layers = list("layers")?;
        }
        Ok(refs)
    }

    fn remove_stale_temps(&self) -> Result<usize> {
        let dir = self.ingest_dir();
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in fs::read_dir(&dir).ctx("listing", &dir)? {
            let entry = entry.ctx("listing", &dir)?;
            let path = entry.path();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() > TEMP_GRACE)
                .unwrap_or(false);
            if old && !is_locked(&path)? {
                fs::remove_file(&path).ctx("removing stale temp file", &path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
