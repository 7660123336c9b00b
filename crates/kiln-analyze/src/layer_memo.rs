//! A layer's events remembered by its digest, for a pass whose `keep` is
//! fully named by a filter string (the guards'), so a build whose image
//! shares layers with one checked before (its base, a context COPY whose
//! files did not change) reads only its new layers. A layer blob never
//! changes under its digest; what the events depend on besides the layer is
//! the filter, whether files are hashed, and this crate's version.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Entries no pass used for this long are removed when one is written.
const UNUSED_FOR: Duration = Duration::from_secs(14 * 24 * 3600);
/// What the entries may take together (a 20,000-file layer takes 2 MB).
const KEEP_BYTES: u64 = 128 << 20;

/// Where a pass's layer events are remembered, and what names its filter.
pub(crate) struct LayerMemo<'a> {
    pub dir: &'a Path,
    /// Everything `keep` depends on, as text.
    pub filter: String,
}

impl LayerMemo<'_> {
    fn path(&self, digest: &str, hashes: bool) -> PathBuf {
        let mut key = blake3::Hasher::new();
        for part in [
            "kiln-layer-events-v1",
            env!("CARGO_PKG_VERSION"),
            digest,
            if hashes { "hashes" } else { "no-hashes" },
            &self.filter,
        ] {
            key.update(part.as_bytes());
            key.update(b"\0");
        }
        self.dir.join(format!("{}.json", key.finalize().to_hex()))
    }

    /// The remembered events of the layer `digest`, or `None` (never
    /// remembered, or damaged: then it is read again).
    pub fn load<E: DeserializeOwned>(&self, digest: &str, hashes: bool) -> Option<Vec<E>> {
        let path = self.path(digest, hashes);
        let events = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        // Renewed, so the sweep keeps what builds still use.
        if let Ok(f) = std::fs::File::options().append(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
        Some(events)
    }

    /// Remembers `events` of the layer `digest`; a failure only loses the
    /// shortcut. Sweeps old entries first.
    pub fn save<E: Serialize>(&self, digest: &str, hashes: bool, events: &[E]) {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(self.dir)?;
            self.sweep();
            let mut tmp = tempfile::NamedTempFile::new_in(self.dir)?;
            serde_json::to_writer(std::io::BufWriter::new(tmp.as_file_mut()), events)?;
            tmp.persist(self.path(digest, hashes))
                .map_err(|e| e.error)?;
            Ok(())
        };
        let _ = write();
    }

    /// Keeps the most recently used entries within [`KEEP_BYTES`], none
    /// unused for [`UNUSED_FOR`]: a big context's layer is remembered at
    /// every build that changed it, and most are never read again.
    fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir) else {
            return;
        };
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        let now = SystemTime::now();
        let mut kept = 0;
        for (used, len, path) in entries {
            kept += len;
            let unused = now.duration_since(used).unwrap_or_default();
            if kept > KEEP_BYTES || unused > UNUSED_FOR {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
