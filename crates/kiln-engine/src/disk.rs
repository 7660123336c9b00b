//! Disk given back: `kiln prune`, `kiln system df` and the build cache's
//! size limit, over the store's blobs, the build cache's records, the layer
//! snapshots and the cache mounts.
//!
//! What keeps what:
//! - an image name keeps its blobs and the snapshots of its layer chain;
//! - a cache record keeps its layer blob and the snapshots whose top layer
//!   is that layer (a snapshot's parents are not recorded, so any chain
//!   ending in it);
//! - a running kiln keeps every blob its session lease names and every
//!   snapshot it holds a lock on (`kiln_fs::snapshot`), whatever prune
//!   decides: concurrent builds stay correct.
//!
//! What nothing keeps (the layers of an image whose tag moved on, of a
//! record a `--no-cache` build replaced) counts against the build cache's
//! limit and goes whenever the cache is trimmed. Records are evicted least
//! recently used first (a hit renews a record) when the cache is larger
//! than its limit, after every build and by `kiln prune`.

use std::collections::{HashMap, HashSet};

use kiln_fs::snapshot::SnapshotInfo;
use kiln_oci::{DiffId, Digest};
use kiln_store::BlobUsage;

use crate::cache::{Cache, Entry};
use crate::error::{BuildError, Context};
use crate::session::Paths;

/// The build cache's default size limit (records' layer blobs and
/// snapshots that no image holds, and the records themselves).
pub const DEFAULT_CACHE_MAX_SIZE: u64 = 10_000_000_000;
/// What a trim after a build brings the cache down to, in percent of the
/// limit.
const TRIM_TO_PERCENT: u64 = 80;

/// What `kiln prune` is asked for.
#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    /// Drop the whole build cache, the cache mounts and every layer
    /// snapshot not in use (`--all`).
    pub all: bool,
    /// Trim the build cache to this size (default [`DEFAULT_CACHE_MAX_SIZE`]).
    pub cache_max_size: Option<u64>,
}

/// What a prune removed.
#[derive(Debug, Default)]
pub struct PruneReport {
    pub blobs: kiln_store::PruneReport,
    pub records: usize,
    pub record_bytes: u64,
    pub snapshots: usize,
    pub snapshot_bytes: u64,
    pub cache_mounts: usize,
    pub cache_mount_bytes: u64,
}

impl PruneReport {
    pub fn bytes_freed(&self) -> u64 {
        self.blobs.bytes_freed + self.record_bytes + self.snapshot_bytes + self.cache_mount_bytes
    }
}

/// One line of `kiln system df`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    pub kind: &'static str,
    pub total: usize,
    /// In use by a running kiln.
    pub active: usize,
    pub bytes: u64,
    /// Freed by `kiln prune --all`.
    pub reclaimable: u64,
}

/// Everything prune and df decide from, read once.
struct State {
    blobs: BlobUsage,
    sizes: HashMap<Digest, u64>,
    image_chains: HashSet<Digest>,
    records: Vec<Entry>,
    snapshots: Vec<SnapshotInfo>,
}

/// The parts of a root that hold disk (`Builder::disk`).
pub struct Disk<'a> {
    pub store: &'a kiln_store::Store,
    pub cache: &'a Cache,
    pub snapshots: &'a kiln_fs::snapshot::Snapshots,
    pub paths: &'a Paths,
}

impl Disk<'_> {
    /// Removes what nothing needs; see [`PruneOptions`].
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport, BuildError> {
        let mut report = PruneReport::default();
        let state = self.disk_state()?;
        if opts.all {
            report.records = state.records.len();
            report.record_bytes = self.cache.own_bytes();
            self.cache
                .clear()
                .context(|| "clearing the build cache".to_string())?;
        } else {
            let limit = opts.cache_max_size.unwrap_or(DEFAULT_CACHE_MAX_SIZE);
            let (_, evicted) = lru_evict(&state, limit, limit);
            self.remove_records(&evicted, &mut report)?;
        }
        // The lease older kilns kept the cache's blobs with: the records
        // themselves are read under the store's lock now.
        self.store
            .remove_lease("build-cache")
            .context(|| "removing the old build-cache lease".to_string())?;
        self.remove_unkept(&state, opts.all, &mut report)?;
        if opts.all {
            let (n, bytes) = crate::ops::cache_mount::remove_unused(
                &self.paths.cache_mounts(),
                &self.paths.tmp(),
            )?;
            report.cache_mounts = n;
            report.cache_mount_bytes = bytes;
            // The guards' results are a cache too; a build running now
            // only loses the shortcut.
            let guards = self.paths.guards();
            match std::fs::remove_dir_all(&guards) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).context(|| format!("removing {}", guards.display()));
                }
                _ => {}
            }
        }
        Ok(report)
    }

    /// After a build: once the cache is larger than `limit`, evicts least
    /// recently used records (and what only they held) down to
    /// [`TRIM_TO_PERCENT`] of it, so the next builds do not each pay for a
    /// trim (deleting a layer's files also slows the file creates of the
    /// builds right after it on some file systems).
    pub fn trim_cache(&self, limit: u64) -> Result<PruneReport, BuildError> {
        let mut report = PruneReport::default();
        let state = self.disk_state()?;
        let unkept = unkept_bytes(&state);
        let target = limit / 100 * TRIM_TO_PERCENT;
        let (held, evicted) = lru_evict(&state, limit.saturating_sub(unkept), target);
        if held + unkept <= limit {
            return Ok(report);
        }
        self.remove_records(&evicted, &mut report)?;
        self.remove_unkept(&state, false, &mut report)?;
        Ok(report)
    }

    /// Removes the blobs and snapshots nothing keeps once `report`'s
    /// records are gone (with `all`, images' snapshots too).
    fn remove_unkept(
        &self,
        state: &State,
        all: bool,
        report: &mut PruneReport,
    ) -> Result<(), BuildError> {
        report.blobs = self.prune_blobs()?;
        let kept = if all {
            HashSet::new()
        } else {
            record_diff_ids(&self.cache.entries())
        };
        let keep = |s: &SnapshotInfo| {
            (!all && state.image_chains.contains(&s.chain_id))
                || s.diff_id.as_ref().is_some_and(|d| kept.contains(d))
        };
        self.remove_snapshots(&state.snapshots, keep, report)
    }

    /// `kiln system df`: images, build cache, layer snapshots, cache mounts
    /// and blobs nothing names.
    pub fn disk_usage(&self) -> Result<Vec<UsageRow>, BuildError> {
        let state = self.disk_state()?;
        let size = |d: &Digest| state.sizes.get(d).copied().unwrap_or(0);
        let named_bytes: u64 = state.blobs.named.iter().map(size).sum();
        let images = self
            .store
            .entries()
            .context(|| "reading the image names".to_string())?;
        let active_chains: HashSet<Digest> = state
            .snapshots
            .iter()
            .filter(|s| s.in_use)
            .map(|s| s.chain_id)
            .collect();
        let active_images = self.images_in_use(&state, &active_chains);

        let cached: HashSet<Digest> = state
            .records
            .iter()
            .filter_map(|e| e.layer.map(|l| l.0))
            .filter(|d| state.sizes.contains_key(d) && !state.blobs.named.contains(d))
            .collect();
        let cached_bytes: u64 = cached.iter().map(size).sum::<u64>() + self.cache.own_bytes();
        let cached_active: u64 = cached
            .iter()
            .filter(|d| state.blobs.leased.contains(d))
            .map(size)
            .sum();
        let active_records = state
            .records
            .iter()
            .filter(|e| e.layer.is_some_and(|l| state.blobs.leased.contains(&l.0)))
            .count();

        let snap_bytes: u64 = state.snapshots.iter().map(|s| s.bytes).sum();
        let snap_free: u64 = state
            .snapshots
            .iter()
            .filter(|s| !s.in_use)
            .map(|s| s.bytes)
            .sum();
        let mounts = crate::ops::cache_mount::usage(&self.paths.cache_mounts())?;

        let other: Vec<&(Digest, u64)> = state
            .blobs
            .blobs
            .iter()
            .filter(|(d, _)| !state.blobs.named.contains(d) && !cached.contains(d))
            .collect();
        let other_active: Vec<_> = other
            .iter()
            .filter(|(d, _)| state.blobs.leased.contains(d))
            .collect();
        let other_bytes: u64 = other.iter().map(|(_, n)| n).sum();
        let other_active_bytes: u64 = other_active.iter().map(|(_, n)| n).sum();
        Ok(vec![
            UsageRow {
                kind: "Images",
                total: images.len(),
                active: active_images,
                bytes: named_bytes,
                reclaimable: 0,
            },
            UsageRow {
                kind: "Build cache",
                total: state.records.len(),
                active: active_records,
                bytes: cached_bytes,
                reclaimable: cached_bytes - cached_active,
            },
            UsageRow {
                kind: "Layer snapshots",
                total: state.snapshots.len(),
                active: active_chains.len(),
                bytes: snap_bytes,
                reclaimable: snap_free,
            },
            UsageRow {
                kind: "Cache mounts",
                total: mounts.total,
                active: mounts.active,
                bytes: mounts.bytes,
                reclaimable: mounts.reclaimable,
            },
            UsageRow {
                kind: "Unused blobs",
                total: other.len(),
                active: other_active.len(),
                bytes: other_bytes,
                reclaimable: other_bytes - other_active_bytes,
            },
        ])
    }

    fn disk_state(&self) -> Result<State, BuildError> {
        let blobs = self
            .store
            .blob_usage()
            .context(|| "reading the store's blobs".to_string())?;
        let sizes = blobs.blobs.iter().copied().collect();
        let image_chains = self.image_chains(&blobs.configs);
        let snapshots = self
            .snapshots
            .list()
            .context(|| "listing the layer snapshots".to_string())?;
        Ok(State {
            blobs,
            sizes,
            image_chains,
            records: self.cache.entries(),
            snapshots,
        })
    }

    /// The chain id of every layer of the images with these configs.
    fn image_chains(&self, configs: &[Digest]) -> HashSet<Digest> {
        let mut chains = HashSet::new();
        for c in configs {
            let Ok(v) = self.store.read_json::<serde_json::Value>(c, "image config") else {
                continue;
            };
            let diff_ids = v["rootfs"]["diff_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut chain: Option<Digest> = None;
            for d in diff_ids.iter().filter_map(|d| d.as_str()?.parse().ok()) {
                let id = crate::layer::chain_id(chain.as_ref(), &DiffId(d));
                chains.insert(id);
                chain = Some(id);
            }
        }
        chains
    }

    /// Images with a layer snapshot some running kiln holds.
    fn images_in_use(&self, state: &State, active: &HashSet<Digest>) -> usize {
        state
            .blobs
            .configs
            .iter()
            .filter(|c| {
                !self
                    .image_chains(std::slice::from_ref(c))
                    .is_disjoint(active)
            })
            .count()
    }

    fn remove_records(
        &self,
        evicted: &[Entry],
        report: &mut PruneReport,
    ) -> Result<(), BuildError> {
        let keys = evicted.iter().map(|e| e.key).collect();
        self.cache
            .remove(&keys)
            .context(|| "evicting build cache records".to_string())?;
        report.records += evicted.len();
        report.record_bytes += evicted.iter().map(|e| e.bytes).sum::<u64>();
        Ok(())
    }

    /// Prunes the store, the records left in the cache keeping their blobs
    /// (read under the store's exclusive lock).
    fn prune_blobs(&self) -> Result<kiln_store::PruneReport, BuildError> {
        let report = self
            .store
            .prune_with(|| Ok(self.cache.referenced_blobs()))
            .context(|| "pruning the store".to_string())?;
        self.cache
            .forget_compressed(|d| self.store.has_blob(d))
            .context(|| "removing records of deleted compressed layers".to_string())?;
        Ok(report)
    }

    fn remove_snapshots(
        &self,
        snapshots: &[SnapshotInfo],
        keep: impl Fn(&SnapshotInfo) -> bool,
        report: &mut PruneReport,
    ) -> Result<(), BuildError> {
        let snaps = self.snapshots;
        for s in snapshots.iter().filter(|s| !s.in_use && !keep(s)) {
            let removed = snaps
                .remove(&s.chain_id)
                .context(|| format!("removing layer snapshot {}", s.chain_id))?;
            if removed {
                report.snapshots += 1;
                report.snapshot_bytes += s.bytes;
            }
        }
        Ok(())
    }
}

fn record_diff_ids(records: &[Entry]) -> HashSet<DiffId> {
    records
        .iter()
        .filter_map(|e| e.layer.map(|l| l.1))
        .collect()
}

/// What nothing keeps: blobs no name, record or running kiln holds, and
/// snapshots no image chain, record or running kiln holds.
fn unkept_bytes(state: &State) -> u64 {
    let record_blobs: HashSet<Digest> = state
        .records
        .iter()
        .filter_map(|e| e.layer.map(|l| l.0))
        .collect();
    let record_diffs = record_diff_ids(&state.records);
    let blobs: u64 = (state.blobs.blobs.iter())
        .filter(|(d, _)| {
            !state.blobs.named.contains(d)
                && !state.blobs.leased.contains(d)
                && !record_blobs.contains(d)
        })
        .map(|(_, n)| n)
        .sum();
    let snapshots: u64 = (state.snapshots.iter())
        .filter(|s| {
            !s.in_use
                && !state.image_chains.contains(&s.chain_id)
                && s.diff_id.is_none_or(|d| !record_diffs.contains(&d))
        })
        .map(|s| s.bytes)
        .sum();
    blobs + snapshots
}

/// What the cache holds alone (records, their blobs no image holds, the
/// snapshots of their layers no image chain is), and the records to evict,
/// oldest first, once that is over `limit`, until it fits in `target`.
fn lru_evict(state: &State, limit: u64, target: u64) -> (u64, Vec<Entry>) {
    let size = |d: &Digest| state.sizes.get(d).copied().unwrap_or(0);
    let mut snap_bytes: HashMap<DiffId, u64> = HashMap::new();
    for s in &state.snapshots {
        if let (Some(d), false) = (s.diff_id, state.image_chains.contains(&s.chain_id)) {
            *snap_bytes.entry(d).or_default() += s.bytes;
        }
    }
    let mut blob_refs: HashMap<Digest, usize> = HashMap::new();
    let mut diff_refs: HashMap<DiffId, usize> = HashMap::new();
    let mut total = 0u64;
    for e in &state.records {
        total += e.bytes;
        if let Some((blob, diff)) = e.layer {
            if !state.blobs.named.contains(&blob) && state.sizes.contains_key(&blob) {
                let n = blob_refs.entry(blob).or_default();
                total += if *n == 0 { size(&blob) } else { 0 };
                *n += 1;
            }
            let n = diff_refs.entry(diff).or_default();
            total += if *n == 0 {
                snap_bytes.get(&diff).copied().unwrap_or(0)
            } else {
                0
            };
            *n += 1;
        }
    }
    let held = total;
    if total <= limit {
        return (held, Vec::new());
    }
    let mut by_age: Vec<&Entry> = state.records.iter().collect();
    by_age.sort_by_key(|e| e.used);
    let mut evicted = Vec::new();
    for e in by_age {
        if total <= target {
            break;
        }
        total -= e.bytes;
        if let Some((blob, diff)) = e.layer {
            if let Some(n) = blob_refs.get_mut(&blob) {
                *n -= 1;
                total -= if *n == 0 { size(&blob) } else { 0 };
            }
            if let Some(n) = diff_refs.get_mut(&diff) {
                *n -= 1;
                total -= if *n == 0 {
                    snap_bytes.get(&diff).copied().unwrap_or(0)
                } else {
                    0
                };
            }
        }
        evicted.push(e.clone());
    }
    (held, evicted)
}
