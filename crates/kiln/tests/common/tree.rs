//! The root filesystem an image describes, rebuilt in memory from its layer
//! tars (OCI/Docker whiteouts honoured), so two images can be compared by
//! what a container would see rather than by how the layers were cut.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// What kind of filesystem object an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Char => "char",
            Kind::Block => "block",
            Kind::Fifo => "fifo",
        }
    }
}

/// One path of the root filesystem. Timestamps are deliberately absent:
/// they are the one thing two correct builders never agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Size of a regular file's contents; 0 for everything else.
    pub size: u64,
    /// A regular file's contents. Kept whole and compared byte for byte:
    /// hashing in an unoptimised test build is far slower than `memcmp`.
    pub content: Option<Arc<Vec<u8>>>,
    /// Symlink target.
    pub link: Option<String>,
    /// Device numbers of a char/block device.
    pub device: Option<(u32, u32)>,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:04o} {}:{}",
            self.kind.name(),
            self.mode,
            self.uid,
            self.gid
        )?;
        if let Some(content) = &self.content {
            let sha = hex::encode(Sha256::digest(content.as_slice()));
            write!(f, " {} bytes sha256:{}", self.size, &sha[..12])?;
        }
        if let Some(link) = &self.link {
            write!(f, " -> {link}")?;
        }
        if let Some((major, minor)) = self.device {
            write!(f, " dev {major}:{minor}")?;
        }
        Ok(())
    }
}

/// A root filesystem: normalised absolute paths (`/etc/passwd`, the root
/// itself excluded) to entries, plus which regular files are hard links of
/// each other.
#[derive(Default, Debug)]
pub struct Tree {
    pub entries: BTreeMap<String, Entry>,
    /// Hard-link identity: path → inode number local to this tree.
    inode: BTreeMap<String, u64>,
    next_inode: u64,
}

/// Turns a tar member name into `/a/b` form (`None` for the root itself).
pub fn normalise(name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(format!("/{}", parts.join("/")))
    }
}

fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

impl Tree {
    /// Applies one uncompressed layer tar on top of what is there.
    /// Whiteouts of a layer apply to the layers below it, so they are
    /// handled before the layer's own entries are added.
    pub fn apply_layer(&mut self, layer: &[u8]) -> Result<(), String> {
        let mut archive = tar::Archive::new(layer);
        let mut removals = Vec::new();
        let mut opaque = Vec::new();
        let mut members = Vec::new();
        for entry in archive
            .entries()
            .map_err(|e| format!("reading layer tar: {e}"))?
        {
            let mut entry = entry.map_err(|e| format!("reading layer tar entry: {e}"))?;
            let raw = entry
                .path()
                .map_err(|e| format!("layer tar entry name: {e}"))?
                .to_string_lossy()
                .into_owned();
            let Some(path) = normalise(&raw) else {
                continue; // the root directory itself
            };
            let (dir, base) = match path.rfind('/') {
                Some(i) => (&path[..i], &path[i + 1..]),
                None => ("", path.as_str()),
            };
            if base == ".wh..wh..opq" {
                opaque.push(dir.to_string());
                continue;
            }
            if let Some(hidden) = base.strip_prefix(".wh.") {
                removals.push(format!("{dir}/{hidden}"));
                continue;
            }
            let header = entry.header();
            let mode = header.mode().map_err(|e| format!("{raw}: mode: {e}"))? & 0o7777;
            let uid = header.uid().map_err(|e| format!("{raw}: uid: {e}"))?;
            let gid = header.gid().map_err(|e| format!("{raw}: gid: {e}"))?;
            let link = entry
                .link_name()
                .map_err(|e| format!("{raw}: link name: {e}"))?
                .map(|l| l.to_string_lossy().into_owned());
            let kind = entry.header().entry_type();
            let member = match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut data = Vec::new();
                    entry
                        .read_to_end(&mut data)
                        .map_err(|e| format!("{raw}: reading contents: {e}"))?;
                    Member::File(path, mode, uid, gid, data)
                }
                tar::EntryType::Link => {
                    let target = link
                        .as_deref()
                        .and_then(normalise)
                        .ok_or_else(|| format!("{raw}: hard link without a target"))?;
                    Member::HardLink(path, target)
                }
                other => {
                    let kind = match other {
                        tar::EntryType::Directory => Kind::Dir,
                        tar::EntryType::Symlink => Kind::Symlink,
                        tar::EntryType::Char => Kind::Char,
                        tar::EntryType::Block => Kind::Block,
                        tar::EntryType::Fifo => Kind::Fifo,
                        t => return Err(format!("{raw}: unsupported tar entry type {t:?}")),
                    };
                    let device = if matches!(kind, Kind::Char | Kind::Block) {
                        let major = header.device_major().ok().flatten().unwrap_or(0);
                        let minor = header.device_minor().ok().flatten().unwrap_or(0);
                        Some((major, minor))
                    } else {
                        None
                    };
                    Member::Other(
                        path,
                        Entry {
                            kind,
                            mode,
                            uid,
                            gid,
                            size: 0,
                            content: None,
                            link: if kind == Kind::Symlink { link } else { None },
                            device,
                        },
                    )
                }
            };
            members.push(member);
        }
        for path in removals {
            self.remove(&path, true);
        }
        for dir in opaque {
            self.remove(&dir, false);
        }
        for member in members {
            match member {
                Member::File(path, mode, uid, gid, data) => {
                    let entry = Entry {
                        kind: Kind::File,
                        mode,
                        uid,
                        gid,
                        size: data.len() as u64,
                        content: Some(Arc::new(data)),
                        link: None,
                        device: None,
                    };
                    self.insert(&path, entry);
                }
                Member::HardLink(path, target) => {
                    let entry = self
                        .entries
                        .get(&target)
                        .cloned()
                        .ok_or_else(|| format!("{path}: hard link to missing {target}"))?;
                    let inode = self.inode_of(&target);
                    self.insert(&path, entry);
                    self.inode.insert(path, inode);
                }
                Member::Other(path, entry) => self.insert(&path, entry),
            }
        }
        Ok(())
    }

    fn inode_of(&mut self, path: &str) -> u64 {
        if let Some(&i) = self.inode.get(path) {
            return i;
        }
        self.next_inode += 1;
        self.inode.insert(path.to_string(), self.next_inode);
        self.next_inode
    }

    /// Removes everything below `path`, and `path` itself when `itself`.
    fn remove(&mut self, path: &str, itself: bool) {
        let prefix = format!("{path}/");
        let mut doomed: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        if itself {
            doomed.push(path.to_string());
        }
        for k in doomed {
            self.entries.remove(&k);
            self.inode.remove(&k);
        }
    }

    fn insert(&mut self, path: &str, entry: Entry) {
        // Missing parents are created the way an extractor would.
        let mut missing = Vec::new();
        let mut p = parent(path);
        while let Some(dir) = p {
            if self.entries.contains_key(dir) {
                break;
            }
            missing.push(dir.to_string());
            p = parent(dir);
        }
        for dir in missing {
            self.entries.insert(dir, implicit_dir());
        }
        // A non-directory replaces a whole directory; a directory entry over
        // a directory only changes its metadata.
        let replaces_dir = self
            .entries
            .get(path)
            .is_some_and(|old| old.kind == Kind::Dir && entry.kind != Kind::Dir);
        if replaces_dir {
            self.remove(path, false);
        }
        self.inode.remove(path);
        self.entries.insert(path.to_string(), entry);
    }

    /// Groups of two or more paths that are hard links of one file.
    pub fn hardlink_groups(&self) -> BTreeSet<Vec<String>> {
        let mut by_inode: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (path, inode) in &self.inode {
            if self.entries.contains_key(path) {
                by_inode.entry(*inode).or_default().push(path.clone());
            }
        }
        by_inode
            .into_values()
            .filter(|g| g.len() > 1)
            .map(|mut g| {
                g.sort();
                g
            })
            .collect()
    }
}

fn implicit_dir() -> Entry {
    Entry {
        kind: Kind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        content: None,
        link: None,
        device: None,
    }
}

enum Member {
    File(String, u32, u64, u64, Vec<u8>),
    HardLink(String, String),
    Other(String, Entry),
}
