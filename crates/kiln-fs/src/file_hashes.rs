//! A persistent index of file content hashes (BLAKE3), keyed by what
//! identifies an unchanged file without reading it — path, inode, size,
//! mtime and ctime, as git's index does — so a rebuild stats files instead
//! of reading them.
//!
//! Two kinds of index: one per build-context directory for its files
//! (hashed when a COPY reads them, `ROOT/cache/file-hashes/<root>`, loaded
//! only by builds of that context, so a build's start-up does not grow with
//! every context the store has seen), and one per committed layer
//! snapshot for its files (hashed as the layer writer reads them anyway,
//! kept beside the snapshot and removed with it), so a later `COPY --from`
//! of that stage finds their hashes without reading them again (overlay
//! views keep the lower files' inode numbers).
//!
//! Racy entries are never persisted: a context file changed within the
//! last seconds could change again within one timestamp tick and keep its
//! key (git's "racily clean" problem). Committed snapshot files never
//! change, so theirs are always kept.
//!
//! Written by hand rather than with a serde format: the file is read on
//! every build and holds tens of thousands of entries. Its records are
//! looked up where they lie in the bytes read (a [`Shard`]: a table of
//! offsets, no allocation per entry), so loading 20,000 entries takes
//! about a millisecond instead of five.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use foldhash::fast::RandomState;
use hashbrown::hash_table::{Entry as Slot, HashTable};
use rustix::fs::Stat;

/// Paths to entries. foldhash, not std's SipHash: a lookup per context file
/// on every build is the cached rebuild's biggest cost after the kernel's
/// stat; its seeds are still random per process, so a context cannot pick
/// colliding names.
type Map = HashMap<Vec<u8>, Entry, RandomState>;

const MAGIC: &[u8] = b"kiln-file-hashes-v1\n";
/// Entries unused for this many days are dropped when the index is saved.
const KEEP_DAYS: u32 = 14;
/// A context file whose ctime is this close to now is not persisted.
const RACY_SECS: i64 = 2;

/// What identifies an unchanged file: `root` names the tree it is in
/// (a context directory, or [`ROOTFS`] for image and stage file systems).
#[derive(Clone, Default, PartialEq, Eq, Hash, Debug)]
pub struct FileKey {
    path: Vec<u8>,
    stamp: Stamp,
}

/// What changes when a file's content can have changed.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Debug)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime: (i64, u32),
    ctime: (i64, u32),
}

/// The root name of files inside image and stage file systems.
pub const ROOTFS: &str = "rootfs:";

impl FileKey {
    /// `rel` is the path inside `root`, without a leading `/`.
    pub fn new(root: &[u8], rel: &[u8], st: &Stat) -> FileKey {
        let mut key = FileKey::default();
        key.reset(root, b"", rel, st);
        key
    }

    /// Makes this the key of `base/rel` (`rel` if `base` is empty) in
    /// `root`, reusing its buffer.
    // The stat field types differ between architectures; the casts are needed on some.
    #[allow(clippy::unnecessary_cast)]
    pub fn reset(&mut self, root: &[u8], base: &[u8], rel: &[u8], st: &Stat) {
        self.path.clear();
        self.path.extend_from_slice(root);
        self.path.push(0);
        if !base.is_empty() {
            self.path.extend_from_slice(base);
            self.path.push(b'/');
        }
        self.path.extend_from_slice(rel);
        self.stamp = Stamp {
            ino: st.st_ino as u64,
            size: st.st_size as u64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as u32),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as u32),
        };
    }

    /// The key of a file already `std::fs`-stat'ed.
    pub fn from_metadata(root: &str, rel: &Path, md: &std::fs::Metadata) -> FileKey {
        use std::os::unix::fs::MetadataExt;
        let mut path = Vec::new();
        path.extend_from_slice(root.as_bytes());
        path.push(0);
        path.extend_from_slice(rel.as_os_str().as_bytes());
        let stamp = Stamp {
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec() as u32),
            ctime: (md.ctime(), md.ctime_nsec() as u32),
        };
        FileKey { path, stamp }
    }
}

/// The last hash seen for one path: one entry per path, so the index grows
/// with the number of paths, not with the number of builds.
#[derive(Clone, Copy)]
struct Entry {
    stamp: Stamp,
    hash: [u8; 32],
    /// Days since the epoch when it was last looked up or recorded.
    day: u32,
    /// Whether it may be written to disk (not racy).
    keep: bool,
}

/// The index, shared by every COPY and commit of a build.
pub struct FileHashes {
    /// Where each root's entries are kept, one file per root; `None`: in
    /// memory only.
    dir: Option<PathBuf>,
    entries: RwLock<Index>,
    /// Lookups answered without reading the file, and files read.
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for FileHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileHashes")
            .field("dir", &self.dir)
            .finish()
    }
}

/// Entries by path (`root` NUL `rel`): those recorded or renewed by this
/// process, the files read, and which roots have something new to save.
#[derive(Default)]
struct Index {
    /// Looked up before the shards.
    map: Map,
    /// One per root whose file was read (empty if it had none); for the
    /// layers of a view, top-most first.
    shards: Vec<Shard>,
    changed: HashSet<Vec<u8>>,
    hasher: RandomState,
}

impl Index {
    fn get(&self, path: &[u8]) -> Option<Entry> {
        if let Some(e) = self.map.get(path) {
            return Some(*e);
        }
        let root = root_of(path);
        self.shards
            .iter()
            .filter(|s| s.root == root)
            .find_map(|s| s.get(path, &self.hasher))
    }

    fn has_shard(&self, root: &[u8]) -> bool {
        self.shards.iter().any(|s| s.root == root)
    }

    /// Adds the records of `file` (none if it does not exist; those before
    /// the damage if it is damaged: each is still a true stamp).
    fn read_shard(&mut self, root: &[u8], file: &Path) -> io::Result<()> {
        let data = match std::fs::read(file) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let (shard, whole) = Shard::parse(root.to_vec(), data, &self.hasher);
        self.shards.push(shard);
        if whole {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a kiln file-hash index, or cut short",
            ))
        }
    }
}

/// One file of the index as read: its records stay in its bytes, found
/// through a table of their offsets by the hash of their path.
struct Shard {
    root: Vec<u8>,
    data: Vec<u8>,
    table: HashTable<usize>,
}

/// The bytes of a record after its path.
const TAIL: usize = 8 + 8 + 12 + 12 + 4 + 32;

impl Shard {
    /// The records of `data` (as [`write_entries`] writes them) up to the
    /// first damaged one, and whether there was no damage.
    fn parse(root: Vec<u8>, data: Vec<u8>, hasher: &RandomState) -> (Shard, bool) {
        let mut table = HashTable::new();
        let whole = data.is_empty() || index_records(&data, &mut table, hasher).is_some();
        (Shard { root, data, table }, whole)
    }

    fn get(&self, path: &[u8], hasher: &RandomState) -> Option<Entry> {
        let at = *self
            .table
            .find(hasher.hash_one(path), |&at| path_at(&self.data, at) == path)?;
        Some(entry_at(&self.data, at))
    }

    fn entries(&self) -> impl Iterator<Item = (&[u8], Entry)> {
        self.table
            .iter()
            .map(|&at| (path_at(&self.data, at), entry_at(&self.data, at)))
    }
}

/// Fills `table` with the offsets of the records of `data`; `None` at the
/// first one that is not whole.
fn index_records(data: &[u8], table: &mut HashTable<usize>, hasher: &RandomState) -> Option<()> {
    let mut r = data.strip_prefix(MAGIC)?;
    let n = u64::from_le_bytes(take(&mut r)?);
    table.reserve(n.min(1 << 22) as usize, |&at| {
        hasher.hash_one(path_at(data, at))
    });
    for _ in 0..n {
        let at = data.len() - r.len();
        let len = u32::from_le_bytes(take(&mut r)?) as usize;
        let path = r.get(..len)?;
        r = r.get(len + TAIL..)?;
        let hash = hasher.hash_one(path);
        let same = |&o: &usize| path_at(data, o) == path;
        match table.entry(hash, same, |&o| hasher.hash_one(path_at(data, o))) {
            Slot::Occupied(mut e) => *e.get_mut() = at,
            Slot::Vacant(e) => {
                e.insert(at);
            }
        }
    }
    r.is_empty().then_some(())
}

/// The path of the record at `at` (checked whole by [`index_records`]).
fn path_at(data: &[u8], at: usize) -> &[u8] {
    let len = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
    &data[at + 4..at + 4 + len]
}

fn entry_at(data: &[u8], at: usize) -> Entry {
    let mut r = &data[at + 4 + path_at(data, at).len()..];
    let mut next = |n: usize| {
        let (head, rest) = r.split_at(n);
        r = rest;
        head
    };
    let u64_ = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let u32_ = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
    let ino = u64_(next(8));
    let size = u64_(next(8));
    let mtime = (u64_(next(8)) as i64, u32_(next(4)));
    let ctime = (u64_(next(8)) as i64, u32_(next(4)));
    let day = u32_(next(4));
    let hash = next(32).try_into().expect("32 bytes");
    Entry {
        stamp: Stamp {
            ino,
            size,
            mtime,
            ctime,
        },
        hash,
        day,
        keep: true,
    }
}

/// The root part of an entry's path (what [`FileKey::new`] puts before NUL).
fn root_of(path: &[u8]) -> &[u8] {
    path.split(|b| *b == 0).next().unwrap_or(path)
}

/// The file that keeps one root's entries.
fn shard_file(dir: &Path, root: &[u8]) -> PathBuf {
    dir.join(&blake3::hash(root).to_hex()[..32])
}

impl Default for FileHashes {
    /// An index that lives only as long as the process.
    fn default() -> Self {
        FileHashes::with_index(None, Index::default())
    }
}

impl FileHashes {
    fn with_index(dir: Option<PathBuf>, index: Index) -> FileHashes {
        FileHashes {
            dir,
            entries: RwLock::new(index),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The index kept in `dir`; each root's file is read when a key of
    /// that root is first looked up (none yet, or unreadable: empty — it
    /// is only a cache).
    pub fn open(dir: &Path) -> FileHashes {
        // Before one file per root, the whole index was one file here.
        if dir.is_file() {
            let _ = std::fs::remove_file(dir);
            let _ = std::fs::remove_file(dir.with_extension("lock"));
        }
        FileHashes::with_index(Some(dir.to_path_buf()), Index::default())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.entries.read().expect("file hash lock")
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.entries.write().expect("file hash lock")
    }

    /// The index, written to, with the file of `root` read into it (the
    /// first time only).
    fn loaded(&self, root: &[u8]) -> RwLockWriteGuard<'_, Index> {
        let mut index = self.write();
        let Some(dir) = &self.dir else { return index };
        if !index.has_shard(root) {
            let file = shard_file(dir, root);
            if let Err(e) = index.read_shard(root, &file) {
                tracing::warn!("ignoring the file-hash index {}: {e}", file.display());
            }
        }
        index
    }

    /// Starts reading the file of `root` on another thread: a build opens
    /// its context before its first COPY walks it, and the walk's first
    /// lookup would otherwise wait for the file.
    pub fn preload(self: &Arc<Self>, root: &[u8]) {
        if self.dir.is_none() {
            return;
        }
        let (index, root) = (Arc::clone(self), root.to_vec());
        std::thread::spawn(move || drop(index.loaded(&root)));
    }

    /// Whether the file of `root` is yet to be read.
    fn unloaded(&self, index: &Index, root: &[u8]) -> bool {
        self.dir.is_some() && !index.has_shard(root)
    }

    /// The hash recorded for `key`, if the file is unchanged. Lookups from
    /// walker threads share the lock: only the first of a root (which
    /// reads its file) and one a day per entry (renewing it) write.
    pub fn get(&self, key: &FileKey) -> Option<[u8; 32]> {
        let root = root_of(&key.path);
        let today = today();
        let found = {
            let index = self.read();
            match index.get(&key.path) {
                _ if self.unloaded(&index, root) => None,
                Some(e) if e.stamp == key.stamp && e.day == today => Some(Some(e.hash)),
                Some(e) if e.stamp == key.stamp => None,
                _ => Some(None),
            }
        };
        let found = found.unwrap_or_else(|| self.renew(key, root, today));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// [`Self::get`] under the write lock: loads `root`'s file if needed
    /// and marks a hit used today (worth a write: it keeps the entry from
    /// expiring).
    fn renew(&self, key: &FileKey, root: &[u8], today: u32) -> Option<[u8; 32]> {
        let mut index = self.loaded(root);
        let e = index.get(&key.path).filter(|e| e.stamp == key.stamp)?;
        if e.day != today {
            index
                .map
                .insert(key.path.clone(), Entry { day: today, ..e });
            index.changed.insert(root.to_vec());
        }
        Some(e.hash)
    }

    /// [`Self::get`] for a second look at a file just looked up: not
    /// counted, and it does not renew the entry.
    pub fn known(&self, key: &FileKey) -> Option<[u8; 32]> {
        self.read()
            .get(&key.path)
            .filter(|e| e.stamp == key.stamp)
            .map(|e| e.hash)
    }

    /// Records the hash of a file that may still change (a context file).
    pub fn put(&self, key: FileKey, hash: [u8; 32]) {
        let settled = now_secs() - RACY_SECS;
        let keep = key.stamp.ctime.0 < settled && key.stamp.mtime.0 < settled;
        self.insert(key, hash, keep);
    }

    /// Records the hash of a file that never changes again (a file of a
    /// committed layer snapshot).
    pub fn put_frozen(&self, key: FileKey, hash: [u8; 32]) {
        self.insert(key, hash, true);
    }

    fn insert(&self, key: FileKey, hash: [u8; 32], keep: bool) {
        let e = Entry {
            stamp: key.stamp,
            hash,
            day: today(),
            keep,
        };
        let root = root_of(&key.path).to_vec();
        let mut index = self.loaded(&root);
        index.map.insert(key.path, e);
        index.changed.insert(root);
    }

    /// (lookups answered from the index, files that had to be read).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Adds the lookups of `other` (the index of a view) to this one's counts.
    pub fn add_counts(&self, other: &FileHashes) {
        let (hits, misses) = other.counts();
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses.fetch_add(misses, Ordering::Relaxed);
    }

    /// Writes back the roots that have something new, each merged with
    /// what other builds wrote since it was read, dropping entries unused
    /// for two weeks (and the files of roots unused that long). A no-op for
    /// an in-memory index or when nothing new was recorded (a rebuild that
    /// found every hash writes nothing).
    pub fn save(&self) -> io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let index = self.read();
        if index.changed.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        // One writer at a time; readers see the old or the new file whole.
        let lock = std::fs::File::create(dir.join("lock"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
        let mut ours: HashMap<&[u8], Vec<(&Vec<u8>, &Entry)>> = HashMap::new();
        for (path, e) in index.map.iter().filter(|(_, e)| e.keep) {
            let root = root_of(path);
            if index.changed.contains(root) {
                ours.entry(root).or_default().push((path, e));
            }
        }
        let oldest = today().saturating_sub(KEEP_DAYS);
        for (root, entries) in ours {
            let file = shard_file(dir, root);
            let mut merged = read_file(&file);
            merged.extend(entries.into_iter().map(|(p, e)| (p.clone(), *e)));
            merged.retain(|_, e| e.day >= oldest);
            write_file(&file, &merged)?;
        }
        drop(index);
        remove_unused_files(dir, KEEP_DAYS);
        Ok(())
    }
}

/// Removes the files of roots no build has saved to for `days` days (a
/// context directory that is gone, or not built any more).
fn remove_unused_files(dir: &Path, days: u32) {
    let Ok(list) = std::fs::read_dir(dir) else {
        return;
    };
    let max_age = std::time::Duration::from_secs(u64::from(days) * 86_400);
    for e in list.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > max_age);
        if old && e.file_name() != "lock" {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Writes `entries` to `file` whole (a temporary file renamed over it).
fn write_file(file: &Path, entries: &Map) -> io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    {
        let mut w = io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        write_entries(&mut w, entries)?;
        w.flush()?;
    }
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

impl FileHashes {
    /// Writes every entry recorded to `file` as it is (no merge, no
    /// expiry): the index of one committed snapshot, which lives and goes
    /// with it.
    pub fn write_to(&self, file: &Path) -> io::Result<()> {
        write_file(file, &self.read().map)
    }

    /// The indexes of the layers of one file system view, top-most first:
    /// where two layers hold a path, the upper one's file is the one seen.
    /// Missing or unreadable files add nothing. Never saved.
    pub fn of_layers(files: &[PathBuf]) -> FileHashes {
        let mut index = Index::default();
        for file in files {
            let _ = index.read_shard(ROOTFS.as_bytes(), file);
        }
        FileHashes::with_index(None, index)
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn today() -> u32 {
    (now_secs() / 86_400) as u32
}

fn write_entries(w: &mut impl Write, entries: &Map) -> io::Result<()> {
    w.write_all(MAGIC)?;
    w.write_all(&(entries.len() as u64).to_le_bytes())?;
    for (path, e) in entries {
        w.write_all(&(path.len() as u32).to_le_bytes())?;
        w.write_all(path)?;
        for v in [e.stamp.ino, e.stamp.size] {
            w.write_all(&v.to_le_bytes())?;
        }
        for (s, ns) in [e.stamp.mtime, e.stamp.ctime] {
            w.write_all(&s.to_le_bytes())?;
            w.write_all(&ns.to_le_bytes())?;
        }
        w.write_all(&e.day.to_le_bytes())?;
        w.write_all(&e.hash)?;
    }
    Ok(())
}

/// The entries of `file` as a map (empty if it cannot be read): what a
/// save merges its own entries into.
fn read_file(file: &Path) -> Map {
    let mut index = Index::default();
    let _ = index.read_shard(b"", file);
    let mut out = Map::default();
    for shard in &index.shards {
        out.extend(shard.entries().map(|(p, e)| (p.to_vec(), e)));
    }
    out
}

fn take<const N: usize>(r: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = r.split_first_chunk::<N>()?;
    *r = rest;
    Some(*head)
}

/// BLAKE3 of everything `r` yields.
pub fn hash_reader(mut r: impl Read) -> io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str, ctime: i64) -> FileKey {
        let stamp = Stamp {
            ino: 7,
            size: 3,
            mtime: (ctime, 0),
            ctime: (ctime, 5),
        };
        FileKey {
            path: path.as_bytes().to_vec(),
            stamp,
        }
    }

    #[test]
    fn saved_entries_load_back_and_racy_ones_are_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file-hashes");
        let idx = FileHashes::open(&file);
        idx.put(key("old", 1_000), [1; 32]);
        idx.put(key("racy", now_secs()), [2; 32]);
        idx.put_frozen(key("frozen", now_secs()), [3; 32]);
        idx.save().unwrap();

        let again = FileHashes::open(&file);
        assert_eq!(again.get(&key("old", 1_000)), Some([1; 32]));
        assert_eq!(again.get(&key("racy", now_secs())), None);
        assert_eq!(again.get(&key("frozen", now_secs())), Some([3; 32]));
        // A changed ctime is another key.
        assert_eq!(again.get(&key("old", 1_001)), None);
        assert_eq!(again.counts(), (2, 2));
    }

    #[test]
    fn a_build_reads_only_the_index_of_the_roots_it_looks_up() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file-hashes");
        // The whole index as one file, as kiln kept it before: removed.
        std::fs::write(&file, b"old").unwrap();
        let idx = FileHashes::open(&file);
        assert!(!file.exists());
        idx.put(key("ctx-a\0f", 1_000), [1; 32]);
        idx.put(key("ctx-b\0f", 1_000), [2; 32]);
        idx.put(key("ctx-b\0g", 1_000), [3; 32]);
        idx.save().unwrap();
        assert_eq!(
            std::fs::read_dir(&file).unwrap().count(),
            3,
            "two roots and the lock"
        );

        let again = FileHashes::open(&file);
        assert_eq!(again.get(&key("ctx-a\0f", 1_000)), Some([1; 32]));
        let roots: Vec<Vec<u8>> = again.read().shards.iter().map(|s| s.root.clone()).collect();
        assert_eq!(roots, [b"ctx-a".to_vec()], "ctx-b not read");
        assert_eq!(again.get(&key("ctx-b\0g", 1_000)), Some([3; 32]));
    }

    #[test]
    fn a_view_sees_its_upper_layers_entry_and_a_damaged_layer_keeps_what_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let layer = |name: &str, entries: &[(&str, u8)]| {
            let idx = FileHashes::default();
            for (path, hash) in entries {
                idx.put_frozen(key(&format!("rootfs:\0{path}"), 1_000), [*hash; 32]);
            }
            let file = dir.path().join(name);
            idx.write_to(&file).unwrap();
            file
        };
        let lower = layer("lower", &[("a", 1), ("b", 2)]);
        let upper = layer("upper", &[("a", 3)]);
        let view = FileHashes::of_layers(&[upper.clone(), lower.clone()]);
        assert_eq!(view.get(&key("rootfs:\0a", 1_000)), Some([3; 32]));
        assert_eq!(view.get(&key("rootfs:\0b", 1_000)), Some([2; 32]));
        assert_eq!(view.get(&key("rootfs:\0c", 1_000)), None);

        // Cut into its last record: the records before it still answer.
        let bytes = std::fs::read(&lower).unwrap();
        std::fs::write(&lower, &bytes[..bytes.len() - 3]).unwrap();
        let view = FileHashes::of_layers(&[lower]);
        let found = ["a", "b"].map(|p| view.get(&key(&format!("rootfs:\0{p}"), 1_000)));
        assert_eq!(found.iter().filter(|f| f.is_some()).count(), 1, "{found:?}");
    }

    #[test]
    fn a_preloaded_index_answers_and_an_entry_used_today_is_saved_as_used() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file-hashes");
        let idx = FileHashes::open(&file);
        idx.put(key("ctx\0f", 1_000), [1; 32]);
        {
            let mut index = idx.write();
            index.map.values_mut().for_each(|e| e.day = today() - 1);
        }
        idx.save().unwrap();

        let again = Arc::new(FileHashes::open(&file));
        again.preload(b"ctx");
        assert_eq!(again.get(&key("ctx\0f", 1_000)), Some([1; 32]));
        again.save().unwrap();
        let saved = read_file(&shard_file(&file, b"ctx"));
        assert_eq!(saved.values().map(|e| e.day).collect::<Vec<_>>(), [today()]);
    }

    #[test]
    fn two_writers_merge_and_a_corrupt_index_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file-hashes");
        let a = FileHashes::open(&file);
        let b = FileHashes::open(&file);
        a.put(key("a", 1_000), [1; 32]);
        b.put(key("b", 1_000), [2; 32]);
        a.save().unwrap();
        b.save().unwrap();
        let both = FileHashes::open(&file);
        assert!(both.get(&key("a", 1_000)).is_some() && both.get(&key("b", 1_000)).is_some());

        let shard = shard_file(&file, b"a");
        let bytes = std::fs::read(&shard).unwrap();
        std::fs::write(&shard, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(FileHashes::open(&file).get(&key("a", 1_000)), None);
    }
}
