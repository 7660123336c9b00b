//! The final filesystem of an image as the layer walk leaves it: one node
//! per path ("usr/bin/app", root is ""), with the layer that put it there,
//! and lookups that follow symlinks the way the kernel would inside the
//! image's root.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::elf::ElfInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Other,
}

// Serialised only as a layer's remembered events (`layer_memo`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
    /// Index of the layer that wrote this entry last (not remembered: the
    /// same layer can sit at another index in another image).
    #[serde(skip)]
    pub layer: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<[u8; 32]>,
    /// Symlink or hard link target, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elf: Option<ElfInfo>,
    /// Contents of the few small text files the guards read (passwd, group, ld.so.conf).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Vec<u8>>,
}

#[derive(Debug, Default, Clone)]
pub struct FinalFs {
    pub nodes: BTreeMap<String, Node>,
}

/// `a/b` + `c` → `a/b/c`; the root is "".
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

impl FinalFs {
    /// Removes `path` and everything below it, returning what was removed.
    pub fn remove_tree(&mut self, path: &str) -> Vec<(String, Node)> {
        let mut out = Vec::new();
        if let Some(n) = self.nodes.remove(path) {
            out.push((path.to_string(), n));
        }
        out.extend(self.remove_children(path, usize::MAX));
        out
    }

    /// Removes what is below `dir` and came from a layer before `before`.
    pub fn remove_children(&mut self, dir: &str, before: usize) -> Vec<(String, Node)> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let keys: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, n)| !k.is_empty() && n.layer < before)
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.nodes.remove(&k).map(|n| (k, n)))
            .collect()
    }

    /// Resolves an absolute or relative (to `cwd`) path inside the image,
    /// following symlinks in every component; `None` if it does not exist.
    pub fn resolve(&self, path: &str, cwd: &str) -> Option<(String, &Node)> {
        let start = if path.starts_with('/') { "" } else { cwd };
        let mut todo: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut cur = start.trim_matches('/').to_string();
        let mut hops = 0;
        while let Some(comp) = todo.pop() {
            match comp.as_str() {
                "" | "." => continue,
                ".." => {
                    cur = parent(&cur).to_string();
                    continue;
                }
                _ => {}
            }
            let next = join(&cur, &comp);
            let node = self.nodes.get(&next)?;
            if node.kind == Kind::Symlink {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let target = node.link.clone().unwrap_or_default();
                if target.starts_with('/') {
                    cur = String::new();
                }
                todo.extend(target.split('/').rev().map(str::to_string));
            } else {
                cur = next;
            }
        }
        let node = self.nodes.get(&cur)?;
        if node.kind == Kind::Hardlink {
            let target = node.link.as_deref()?.trim_start_matches("./");
            let target = target.trim_start_matches('/');
            return self.nodes.get(target).map(|n| (target.to_string(), n));
        }
        Some((cur, node))
    }

    /// Files directly or indirectly in `dir` (no symlink following).
    pub fn files_under<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a String, &'a Node)> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.nodes
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: Kind, link: Option<&str>) -> Node {
        Node {
            kind,
            size: 0,
            mode: 0o755,
            layer: 0,
            hash: None,
            link: link.map(str::to_string),
            elf: None,
            text: None,
        }
    }

    #[test]
    fn resolves_merged_usr_symlinks() {
        let mut fs = FinalFs::default();
        fs.nodes
            .insert("lib".into(), node(Kind::Symlink, Some("usr/lib")));
        fs.nodes
            .insert("lib64".into(), node(Kind::Symlink, Some("usr/lib64")));
        fs.nodes.insert("usr".into(), node(Kind::Dir, None));
        fs.nodes.insert("usr/lib".into(), node(Kind::Dir, None));
        fs.nodes.insert("usr/lib64".into(), node(Kind::Dir, None));
        fs.nodes.insert(
            "usr/lib64/ld-linux-x86-64.so.2".into(),
            node(Kind::Symlink, Some("/lib/x86_64-linux-gnu/ld.so")),
        );
        fs.nodes
            .insert("usr/lib/x86_64-linux-gnu".into(), node(Kind::Dir, None));
        fs.nodes.insert(
            "usr/lib/x86_64-linux-gnu/ld.so".into(),
            node(Kind::File, None),
        );
        let (p, _) = fs.resolve("/lib64/ld-linux-x86-64.so.2", "").unwrap();
        assert_eq!(p, "usr/lib/x86_64-linux-gnu/ld.so");
        assert!(fs.resolve("/lib64/missing", "").is_none());
        let (p, _) = fs.resolve("lib/../lib64", "usr").unwrap();
        assert_eq!(p, "usr/lib64");
    }
}
