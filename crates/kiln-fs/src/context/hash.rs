//! Content hash of exactly what a COPY reads, for the cache key.
//!
//! Per entry: the path relative to the matched source, the type, the mode
//! bits (permissions plus setuid/setgid/sticky), the symlink target or the
//! file content (BLAKE3), device numbers, and hardlink grouping. Never
//! mtime, uid/gid or inode numbers: the key must be the same on another
//! machine, under another umask, after a `git clone`.

use std::collections::HashMap;
use std::io;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::FileType;

use super::ignore::PathFilter;
use super::source::{Confinement, Matched, SourceError, SourceRoot};
use super::walk::{self, Entry, Kind, Visitor};
use crate::file_hashes::{hash_reader, FileHashes, FileKey, ROOTFS};

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

/// Hashes `sources` (COPY source patterns) read from `root`.
pub fn checksum(
    root: &SourceRoot,
    hashes: &FileHashes,
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
            hash_matched(root, hashes, &m, exclude.as_ref(), &mut h)?;
        }
    }
    Ok(ContentHash(*h.finalize().as_bytes()))
}

fn hash_matched(
    root: &SourceRoot,
    hashes: &FileHashes,
    m: &Matched,
    exclude: Option<&PathFilter>,
    h: &mut blake3::Hasher,
) -> Result<(), SourceError> {
    let mut v = HashVisitor {
        root,
        hashes,
        source_path: &m.path,
        h,
        links: HashMap::new(),
        count: 0,
    };
    walk::walk(root, m, exclude, &mut v)
}

struct HashVisitor<'a> {
    root: &'a SourceRoot,
    hashes: &'a FileHashes,
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
        field(self.h, b"path", e.rel);
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
        file_digest(self.root, self.hashes, self.source_path, e)
    }
}

/// The BLAKE3 of file entry `e` of the walk of `source_path` in `root`,
/// from `hashes` when they know it unchanged, else read (and then
/// remembered there).
pub(crate) fn file_digest(
    root: &SourceRoot,
    hashes: &FileHashes,
    source_path: &str,
    e: &Entry<'_>,
) -> Result<[u8; 32], SourceError> {
    let (key, path) = entry_key(root, source_path, e);
    lookup_or_read(root, hashes, key, &path, e)
}

/// The digest `hashes` has for `key`, else file entry `e` (at `path` in
/// `root`) read, hashed and remembered.
fn lookup_or_read(
    root: &SourceRoot,
    hashes: &FileHashes,
    key: FileKey,
    path: &[u8],
    e: &Entry<'_>,
) -> Result<[u8; 32], SourceError> {
    if let Some(d) = hashes.get(&key) {
        return Ok(d);
    }
    let io = |source: io::Error| SourceError::Io {
        path: kiln_oci::escape_bytes(path),
        root: root.path().to_path_buf(),
        source,
    };
    let fd = e.at.open_read().map_err(io)?;
    let d = hash_reader(std::fs::File::from(fd)).map_err(io)?;
    hashes.put(key, d);
    Ok(d)
}

/// [`file_digest`] for a file the step's checksum has just hashed (its
/// listing for `--explain-cache`): a second lookup is not counted.
pub fn listed_digest(
    root: &SourceRoot,
    hashes: &FileHashes,
    source_path: &str,
    e: &Entry<'_>,
) -> Result<[u8; 32], SourceError> {
    let (key, path) = entry_key(root, source_path, e);
    match hashes.known(&key) {
        Some(d) => Ok(d),
        None => lookup_or_read(root, hashes, key, &path, e),
    }
}

/// The index key of file entry `e` of the walk of `source_path`, and its
/// path in `root`.
fn entry_key(root: &SourceRoot, source_path: &str, e: &Entry<'_>) -> (FileKey, Vec<u8>) {
    let path = super::source::join_bytes(source_path.as_bytes(), e.rel);
    (FileKey::new(&root_name(root), &path, e.stat), path)
}

/// How the file-hash index names `root`: a context by its directory; every
/// image or stage file system alike, as their files' keys hold their inodes.
fn root_name(root: &SourceRoot) -> Vec<u8> {
    match root.confinement() {
        Confinement::Chroot => ROOTFS.as_bytes().to_vec(),
        Confinement::Context => root.path().as_os_str().as_bytes().to_vec(),
    }
}
