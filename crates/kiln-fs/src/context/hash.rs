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
    checksum_on(root, hashes, sources, opts, true)
}

/// [`checksum`], the walk forked over the cores or (`forks` false) on
/// this thread only: the hash is the same.
fn checksum_on(
    root: &SourceRoot,
    hashes: &FileHashes,
    sources: &[String],
    opts: &CopyHashOptions,
    forks: bool,
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
            hash_matched(root, hashes, &m, exclude.as_ref(), &mut h, forks)?;
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
    forks: bool,
) -> Result<(), SourceError> {
    let root_name = root_name(root);
    let mut v = HashVisitor {
        root,
        hashes,
        root_name: &root_name,
        source_path: &m.path,
        out: Out::Hasher(h),
        links: HashMap::new(),
        count: 0,
        forks,
        key: FileKey::default(),
    };
    walk::walk(root, m, exclude, &mut v)
}

struct HashVisitor<'a> {
    root: &'a SourceRoot,
    hashes: &'a FileHashes,
    /// [`root_name`] of `root`, once per walk.
    root_name: &'a [u8],
    source_path: &'a str,
    out: Out<'a>,
    /// (dev, ino) of multiply-linked files → index of the first entry
    /// (the caller's visitor only: forks record such files for it).
    links: HashMap<(u64, u64), u64>,
    /// Entries visited (by this visitor and the forks it joined).
    count: u64,
    /// Whether runs of entries may be walked on other threads.
    forks: bool,
    /// The key of the file looked up last (its buffer reused: one lookup
    /// per file of the context on every build).
    key: FileKey,
}

/// Where a visitor's fields go: into the hasher, or, for a fork walking a
/// run of entries on another thread, into a record the hasher gets when
/// the fork is joined, in walk order. The hash is the same either way.
enum Out<'a> {
    Hasher(&'a mut blake3::Hasher),
    Record(Record),
}

#[derive(Default)]
struct Record {
    bytes: Vec<u8>,
    /// Multiply-linked files, resolved at the join: whether one is the
    /// first of its group depends on entries other forks walk.
    linked: Vec<Linked>,
}

struct Linked {
    /// Where in `bytes` its fields go.
    at: usize,
    id: (u64, u64),
    /// Its entry index, counted from the fork's first entry.
    index: u64,
    digest: [u8; 32],
}

/// What the fields of the key are written to.
trait Sink {
    fn update(&mut self, bytes: &[u8]);
}

impl Sink for blake3::Hasher {
    fn update(&mut self, bytes: &[u8]) {
        blake3::Hasher::update(self, bytes);
    }
}

impl Sink for Out<'_> {
    fn update(&mut self, bytes: &[u8]) {
        match self {
            Out::Hasher(h) => {
                h.update(bytes);
            }
            Out::Record(r) => r.bytes.extend_from_slice(bytes),
        }
    }
}

fn field(out: &mut impl Sink, label: &[u8], value: &[u8]) {
    out.update(&(label.len() as u64).to_le_bytes());
    out.update(label);
    out.update(&(value.len() as u64).to_le_bytes());
    out.update(value);
}

impl Visitor for HashVisitor<'_> {
    fn entry(&mut self, e: &Entry<'_>) -> Result<(), SourceError> {
        let index = self.count;
        self.count += 1;
        let out = &mut self.out;
        field(out, b"path", e.rel);
        field(out, b"mode", &(e.stat.st_mode & 0o7777).to_le_bytes());
        match e.kind {
            Kind::Dir => field(out, b"dir", b""),
            Kind::Symlink(t) => field(out, b"symlink", t.as_bytes()),
            Kind::Special(ft, rdev) => {
                let tag: &[u8] = match ft {
                    FileType::CharacterDevice => b"char",
                    FileType::BlockDevice => b"block",
                    FileType::Fifo => b"fifo",
                    _ => b"socket",
                };
                field(out, tag, &rdev.to_le_bytes());
            }
            Kind::File if e.stat.st_nlink > 1 => {
                let id = (e.stat.st_dev, e.stat.st_ino);
                if matches!(self.out, Out::Record(_)) {
                    let digest = self.file_digest(e)?;
                    let Out::Record(r) = &mut self.out else {
                        unreachable!("matched above")
                    };
                    let at = r.bytes.len();
                    r.linked.push(Linked {
                        at,
                        id,
                        index,
                        digest,
                    });
                } else {
                    self.linked(id, index, |v| v.file_digest(e))?;
                }
            }
            Kind::File => {
                let digest = self.file_digest(e)?;
                field(&mut self.out, b"file", &digest);
            }
        }
        Ok(())
    }

    fn leave_dir(&mut self, _: &Entry<'_>) -> Result<(), SourceError> {
        field(&mut self.out, b"end", b"");
        Ok(())
    }

    fn fork(&self) -> Option<Self> {
        self.forks.then_some(HashVisitor {
            out: Out::Record(Record::default()),
            links: HashMap::new(),
            count: 0,
            key: FileKey::default(),
            ..*self
        })
    }

    fn join(&mut self, fork: Self) -> Result<(), SourceError> {
        let Out::Record(r) = fork.out else {
            unreachable!("forks record")
        };
        let base = self.count;
        if let Out::Record(mine) = &mut self.out {
            let offset = mine.bytes.len();
            mine.linked.extend(r.linked.into_iter().map(|l| Linked {
                at: l.at + offset,
                index: l.index + base,
                ..l
            }));
            mine.bytes.extend_from_slice(&r.bytes);
        } else {
            let mut from = 0;
            for l in r.linked {
                self.out.update(&r.bytes[from..l.at]);
                from = l.at;
                self.linked(l.id, l.index + base, |_| Ok(l.digest))?;
            }
            self.out.update(&r.bytes[from..]);
        }
        self.count += fork.count;
        Ok(())
    }
}

impl HashVisitor<'_> {
    fn file_digest(&mut self, e: &Entry<'_>) -> Result<[u8; 32], SourceError> {
        let (base, rel) = (self.source_path.as_bytes(), e.rel);
        self.key.reset(self.root_name, base, rel, e.stat);
        lookup_or_read(self.root, self.hashes, &self.key, self.source_path, e)
    }

    /// The fields of multiply-linked file `id` at entry `index`: its
    /// content the first time, else which entry it is a link to.
    fn linked(
        &mut self,
        id: (u64, u64),
        index: u64,
        digest: impl FnOnce(&mut Self) -> Result<[u8; 32], SourceError>,
    ) -> Result<(), SourceError> {
        if let Some(first) = self.links.get(&id) {
            field(&mut self.out, b"hardlink", &first.to_le_bytes());
            return Ok(());
        }
        self.links.insert(id, index);
        let digest = digest(self)?;
        field(&mut self.out, b"file", &digest);
        Ok(())
    }
}

/// The digest `hashes` has for `key`, else file entry `e` (of the walk of
/// `source_path` in `root`) read, hashed and remembered.
fn lookup_or_read(
    root: &SourceRoot,
    hashes: &FileHashes,
    key: &FileKey,
    source_path: &str,
    e: &Entry<'_>,
) -> Result<[u8; 32], SourceError> {
    if let Some(d) = hashes.get(key) {
        return Ok(d);
    }
    let path = super::source::join_bytes(source_path.as_bytes(), e.rel);
    let io = |source: io::Error| SourceError::Io {
        path: kiln_oci::escape_bytes(&path),
        root: root.path().to_path_buf(),
        source,
    };
    let fd = e.at.open_read().map_err(io)?;
    let d = hash_reader(std::fs::File::from(fd)).map_err(io)?;
    hashes.put(key.clone(), d);
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
    let mut key = FileKey::default();
    key.reset(&root_name(root), source_path.as_bytes(), e.rel, e.stat);
    match hashes.known(&key) {
        Some(d) => Ok(d),
        None => lookup_or_read(root, hashes, &key, source_path, e),
    }
}

/// How the file-hash index names `root`: a context by its directory; every
/// image or stage file system alike, as their files' keys hold their inodes.
pub(crate) fn root_name(root: &SourceRoot) -> Vec<u8> {
    match root.confinement() {
        Confinement::Chroot => ROOTFS.as_bytes().to_vec(),
        Confinement::Context => root.path().as_os_str().as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Directories big enough to be walked in runs on several threads,
    /// hard links across runs and across directories, an excluded
    /// directory with a re-included file: the forked walk hashes exactly
    /// what the walk on one thread does, and a changed file changes it.
    #[test]
    fn the_forked_walk_hashes_as_the_walk_on_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path();
        for d in 0..40 {
            let sub = ctx.join(format!("d{d:02}"));
            fs::create_dir(&sub).unwrap();
            for f in 0..40 {
                fs::write(sub.join(format!("f{f:02}")), format!("{d} {f}")).unwrap();
            }
        }
        fs::hard_link(ctx.join("d00/f00"), ctx.join("d39/link")).unwrap();
        fs::hard_link(ctx.join("d00/f00"), ctx.join("d20/f99")).unwrap();
        fs::hard_link(ctx.join("d05/f01"), ctx.join("d05/f98")).unwrap();
        fs::create_dir_all(ctx.join("skip/keep")).unwrap();
        fs::write(ctx.join("skip/keep/x"), "x").unwrap();
        fs::write(ctx.join("skip/y"), "y").unwrap();
        let root = SourceRoot::scratch(ctx).unwrap();
        let hashes = FileHashes::default();
        let opts = CopyHashOptions {
            exclude: vec!["skip".into(), "!skip/keep".into()],
            parents: false,
        };
        let sources = [".".to_string()];
        let both = |opts: &CopyHashOptions| {
            let forked = checksum_on(&root, &hashes, &sources, opts, true).unwrap();
            let one = checksum_on(&root, &hashes, &sources, opts, false).unwrap();
            assert_eq!(forked, one);
            one
        };
        let before = both(&opts);
        assert_ne!(
            before,
            both(&CopyHashOptions::default()),
            "--exclude counts"
        );
        fs::write(ctx.join("d33/f07"), "changed").unwrap();
        assert_ne!(both(&opts), before);
    }
}
