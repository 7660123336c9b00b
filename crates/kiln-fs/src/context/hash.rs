//! Content hash of exactly what a COPY reads, for the cache key.
//!
//! Per entry: the path relative to the matched source, the type, the mode
//! bits (permissions plus setuid/setgid/sticky), the symlink target or the
//! file content (BLAKE3), device numbers, and hardlink grouping. Never
//! mtime, uid/gid or inode numbers: the key must be the same on another
//! machine, under another umask, after a `git clone`.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;

use rustix::fs::{FileType, Stat};

use super::ignore::PathFilter;
use super::source::{Matched, SourceError, SourceRoot};
use super::walk::{self, Entry, Kind, Visitor};

/// A 32-byte BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContentHash({})", &self.hex()[..16])
    }
}

/// The COPY flags that change which files are read or where they land.
#[derive(Clone, Debug, Default)]
pub struct CopyHashOptions {
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// `--parents`: the matched path (not just its base name) is kept.
    pub parents: bool,
}

/// File content digests of one build, keyed by what identifies an unchanged
/// file, so each file is read once however many COPY steps name it.
#[derive(Default)]
pub struct HashCache {
    files: Mutex<HashMap<FileKey, [u8; 32]>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct FileKey {
    path: String,
    dev: u64,
    ino: u64,
    size: i64,
    mtime: (i64, u64),
    ctime: (i64, u64),
}

impl HashCache {
    fn get(&self, key: &FileKey) -> Option<[u8; 32]> {
        self.files
            .lock()
            .expect("hash cache lock")
            .get(key)
            .copied()
    }

    fn put(&self, key: FileKey, hash: [u8; 32]) {
        self.files
            .lock()
            .expect("hash cache lock")
            .insert(key, hash);
    }
}

/// Hashes `sources` (COPY source patterns) read from `root`.
pub fn checksum(
    root: &SourceRoot,
    cache: &HashCache,
    sources: &[String],
    opts: &CopyHashOptions,
) -> Result<ContentHash, SourceError> {
    let exclude = PathFilter::from_patterns(&opts.exclude).map_err(SourceError::Exclude)?;
    let mut h = blake3::Hasher::new();
    h.update(b"kiln-copy-sources-v1\0");
    field(&mut h, b"parents", &[u8::from(opts.parents)]);
    for pattern in &opts.exclude {
        field(&mut h, b"exclude", pattern.as_bytes());
    }
    for source in sources {
        field(&mut h, b"source", source.as_bytes());
        for m in root.expand(source)? {
            field(&mut h, b"match", m.path.as_bytes());
            hash_matched(root, cache, &m, exclude.as_ref(), &mut h)?;
        }
    }
    Ok(ContentHash(*h.finalize().as_bytes()))
}

fn hash_matched(
    root: &SourceRoot,
    cache: &HashCache,
    m: &Matched,
    exclude: Option<&PathFilter>,
    h: &mut blake3::Hasher,
) -> Result<(), SourceError> {
    let mut v = HashVisitor {
        root,
        cache,
        source_path: &m.path,
        h,
        links: HashMap::new(),
        count: 0,
    };
    walk::walk(root, m, exclude, &mut v)
}

struct HashVisitor<'a> {
    root: &'a SourceRoot,
    cache: &'a HashCache,
    source_path: &'a str,
    h: &'a mut blake3::Hasher,
    /// (dev, ino) of multiply-linked files → index of the first entry.
    links: HashMap<(u64, u64), u64>,
    count: u64,
}

fn field(h: &mut blake3::Hasher, label: &[u8], value: &[u8]) {
    h.update(&(label.len() as u64).to_le_bytes());
    h.update(label);
    h.update(&(value.len() as u64).to_le_bytes());
    h.update(value);
}

impl Visitor for HashVisitor<'_> {
    fn entry(&mut self, e: &Entry<'_>) -> Result<(), SourceError> {
        let index = self.count;
        self.count += 1;
        field(self.h, b"path", e.rel.as_bytes());
        field(self.h, b"mode", &(e.stat.st_mode & 0o7777).to_le_bytes());
        match e.kind {
            Kind::Dir => field(self.h, b"dir", b""),
            Kind::Symlink(t) => field(self.h, b"symlink", t.as_bytes()),
            Kind::Special(ft, rdev) => {
                let tag: &[u8] = match ft {
                    FileType::CharacterDevice => b"char",
                    FileType::BlockDevice => b"block",
                    FileType::Fifo => b"fifo",
                    _ => b"socket",
                };
                field(self.h, tag, &rdev.to_le_bytes());
            }
            Kind::File => {
                if e.stat.st_nlink > 1 {
                    let id = (e.stat.st_dev, e.stat.st_ino);
                    if let Some(first) = self.links.get(&id) {
                        field(self.h, b"hardlink", &first.to_le_bytes());
                        return Ok(());
                    }
                    self.links.insert(id, index);
                }
                let digest = self.file_digest(e)?;
                field(self.h, b"file", &digest);
            }
        }
        Ok(())
    }

    fn leave_dir(&mut self, _: &Entry<'_>) -> Result<(), SourceError> {
        field(self.h, b"end", b"");
        Ok(())
    }
}

impl HashVisitor<'_> {
    fn file_digest(&mut self, e: &Entry<'_>) -> Result<[u8; 32], SourceError> {
        let path = super::source::join(self.source_path, e.rel);
        let key = file_key(&path, e.stat);
        if let Some(d) = self.cache.get(&key) {
            return Ok(d);
        }
        let io = |source: io::Error| SourceError::Io {
            path: path.clone(),
            root: self.root.path().to_path_buf(),
            source,
        };
        let fd = e.at.open_read().map_err(io)?;
        let mut file = std::fs::File::from(fd);
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let d = *hasher.finalize().as_bytes();
        self.cache.put(key, d);
        Ok(d)
    }
}

// The stat field types differ between architectures; the casts are needed on some.
#[allow(clippy::unnecessary_cast)]
fn file_key(path: &str, st: &Stat) -> FileKey {
    FileKey {
        path: path.to_string(),
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size,
        mtime: (st.st_mtime, st.st_mtime_nsec as u64),
        ctime: (st.st_ctime, st.st_ctime_nsec as u64),
    }
}
