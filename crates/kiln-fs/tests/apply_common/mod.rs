//! Crafting layer tars byte by byte (names the `tar` crate's builder would
//! refuse, like `..`), and fingerprints of directory trees to prove that a
//! hostile layer changed nothing outside its target.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub struct Tar {
    b: tar::Builder<Vec<u8>>,
    pub mtime: u64,
}

impl Default for Tar {
    fn default() -> Self {
        Self::new()
    }
}

impl Tar {
    pub fn new() -> Tar {
        Tar {
            b: tar::Builder::new(Vec::new()),
            mtime: 1_600_000_000,
        }
    }

    /// Appends an entry with exactly these name and link bytes (PAX records
    /// when they do not fit the ustar fields).
    pub fn raw(
        &mut self,
        ty: tar::EntryType,
        name: &[u8],
        link: &[u8],
        mode: u32,
        data: &[u8],
        pax: &[(&str, &[u8])],
    ) -> &mut Self {
        let mut records: Vec<(&str, &[u8])> = pax.to_vec();
        if name.len() > 100 {
            records.push(("path", name));
        }
        if link.len() > 100 {
            records.push(("linkpath", link));
        }
        if !records.is_empty() {
            self.b.append_pax_extensions(records).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        let n = name.len().min(100);
        old.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(100);
        old.linkname[..l].copy_from_slice(&link[..l]);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(
            tar::EntryType::Directory,
            name.as_bytes(),
            b"",
            0o755,
            b"",
            &[],
        )
    }
    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(
            tar::EntryType::Regular,
            name.as_bytes(),
            b"",
            0o644,
            data,
            &[],
        )
    }
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            tar::EntryType::Symlink,
            name.as_bytes(),
            target.as_bytes(),
            0o777,
            b"",
            &[],
        )
    }
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            tar::EntryType::Link,
            name.as_bytes(),
            target.as_bytes(),
            0o644,
            b"",
            &[],
        )
    }
    pub fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

/// Everything observable about a tree: type, mode, owner, size, content,
/// link target, link count and mtime of each path below `root`.
pub fn fingerprint(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let mut ents: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    ents.sort_by_key(|e| e.file_name());
    for e in ents {
        let p = e.path();
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let what = if ft.is_symlink() {
            format!("link {:?}", fs::read_link(&p).unwrap())
        } else if ft.is_file() {
            format!("file {:?}", fs::read(&p).unwrap())
        } else if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_char_device() {
            format!("chr {}", md.rdev())
        } else {
            "other".to_string()
        };
        out.insert(
            p.strip_prefix(root).unwrap().to_path_buf(),
            format!(
                "{what} mode={:o} uid={} gid={} nlink={} mtime={}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.nlink(),
                md.mtime()
            ),
        );
        if ft.is_dir() {
            walk(root, &p, out);
        }
    }
}

/// A scratch area: `base/root` is the extraction target, `base/outside`
/// holds files a hostile layer must not touch.
pub struct Arena {
    pub base: tempfile::TempDir,
}

impl Arena {
    pub fn new() -> Arena {
        let base = tempfile::Builder::new()
            .prefix("kiln-apply-")
            .tempdir()
            .unwrap();
        fs::create_dir(base.path().join("root")).unwrap();
        fs::create_dir_all(base.path().join("outside/dir")).unwrap();
        fs::write(base.path().join("outside/secret"), b"secret").unwrap();
        fs::write(base.path().join("outside/dir/f"), b"f").unwrap();
        Arena { base }
    }
    pub fn root(&self) -> PathBuf {
        self.base.path().join("root")
    }
    pub fn outside(&self) -> PathBuf {
        self.base.path().join("outside")
    }
    /// Fingerprint of everything in the arena except the target.
    pub fn outside_state(&self) -> BTreeMap<PathBuf, String> {
        let mut fp = fingerprint(self.base.path());
        fp.retain(|p, _| !p.starts_with("root"));
        fp
    }
}
