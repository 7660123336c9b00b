//! Reading layer tars into ordered events, one worker thread per layer:
//! decompression, hashing, ELF parsing and the secret scan depend only on
//! the layer itself, so they run in parallel; what depends on the layers
//! below (whiteouts, overwrites, waste) is left to the caller, which gets
//! each layer's events in layer order on its own thread.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use kiln_oci::oci_spec::image::Descriptor;
use kiln_store::Store;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fs::{join, parent, Kind, Node};
use crate::layer_memo::LayerMemo;
use crate::secrets::{self, SecretHit};

/// Files up to this size are read into memory (ELF parsing, secret scan).
const MAX_IN_MEMORY: u64 = 256 << 20;

/// Which entries the final filesystem keeps; called on worker threads.
pub(crate) type Keep<'k> = &'k (dyn Fn(&str, &Node) -> bool + Sync);

/// How a pass reads each layer.
pub(crate) struct Reading<'k> {
    pub keep: Keep<'k>,
    /// Files' content hashes (the waste report compares them).
    pub hashes: bool,
    /// Where layers' events are remembered, for a pass that reads the same
    /// layers again and again (the guards after every build).
    pub memo: Option<LayerMemo<'k>>,
}

/// One tar entry, as the merge needs it.
// Nearly every event is an `Entry`: boxing its node would cost an
// allocation per file and save no memory.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize)]
pub(crate) enum Event {
    /// `.wh..wh..opq`: the lower layers' contents of this directory go.
    Opaque(String),
    /// `.wh.NAME`: this path and everything below it go.
    Whiteout(String),
    Entry {
        path: String,
        node: Node,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        secrets: Vec<SecretHit>,
        /// Whether the final filesystem keeps the node (`keep` or a secret).
        keep: bool,
    },
}

/// Reads `layers` on up to `workers` threads and hands each layer's events
/// (or its read error) to `apply` in layer order; stops at `apply`'s first
/// error.
pub(crate) fn for_each_layer(
    store: &Store,
    layers: &[Descriptor],
    reading: &Reading<'_>,
    workers: usize,
    mut apply: impl FnMut(usize, Result<Vec<Event>>) -> Result<()>,
) -> Result<()> {
    let (next, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, layers.len().max(1)) {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= layers.len() || stop.load(Ordering::Relaxed) {
                    break;
                }
                if tx
                    .send((i, read_layer(store, &layers[i], i, reading)))
                    .is_err()
                {
                    break;
                }
            });
        }
        drop(tx);
        let r = in_order(layers.len(), &rx, &mut apply);
        // A failed merge makes the other layers moot: take no new ones.
        stop.store(true, Ordering::Relaxed);
        r
    })
}

/// Feeds the layers arriving on `rx` in any order to `apply` in order.
fn in_order(
    count: usize,
    rx: &mpsc::Receiver<(usize, Result<Vec<Event>>)>,
    apply: &mut impl FnMut(usize, Result<Vec<Event>>) -> Result<()>,
) -> Result<()> {
    let mut early = BTreeMap::new();
    for i in 0..count {
        let layer = loop {
            if let Some(l) = early.remove(&i) {
                break l;
            }
            // Senders outlive their layers unless a worker panicked, and
            // the scope re-raises that panic.
            let (j, l) = rx.recv().expect("a layer reader panicked");
            early.insert(j, l);
        };
        apply(i, layer)?;
    }
    Ok(())
}

/// Layer `index` of an image as a tar archive, decompressed.
pub(crate) fn open_layer(
    store: &Store,
    desc: &Descriptor,
    index: usize,
) -> Result<tar::Archive<Box<dyn Read>>> {
    let digest = kiln_store::descriptor_digest(desc).ok_or_else(|| Error::Invalid {
        what: format!("layer {index}"),
        why: format!("unsupported digest {}", desc.digest()),
    })?;
    let blob = store
        .open_blob(&digest)
        .map_err(|e| Error::store(format!("opening layer {digest}"), e))?;
    let reader =
        kiln_oci::compression::decompress(std::io::BufReader::new(blob)).map_err(|source| {
            Error::Layer {
                layer: index,
                source,
            }
        })?;
    Ok(tar::Archive::new(reader))
}

/// All events of layer `index`, in tar order: remembered, or read.
fn read_layer(
    store: &Store,
    desc: &Descriptor,
    index: usize,
    reading: &Reading<'_>,
) -> Result<Vec<Event>> {
    let (digest, hashes) = (desc.digest().to_string(), reading.hashes);
    if let Some(mut events) = reading.memo.as_ref().and_then(|m| m.load(&digest, hashes)) {
        at_layer(&mut events, index);
        return Ok(events);
    }
    let events = read_tar(store, desc, index, reading)?;
    if let Some(memo) = &reading.memo {
        memo.save(&digest, hashes, &events);
    }
    Ok(events)
}

/// Remembered events name no layer index (the same layer sits at other
/// indexes in other images): they get `index`.
fn at_layer(events: &mut [Event], index: usize) {
    for event in events {
        if let Event::Entry { node, secrets, .. } = event {
            node.layer = index;
            for s in secrets {
                s.layer = Some(index);
            }
        }
    }
}

fn read_tar(
    store: &Store,
    desc: &Descriptor,
    index: usize,
    reading: &Reading<'_>,
) -> Result<Vec<Event>> {
    let layer_err = |source| Error::Layer {
        layer: index,
        source,
    };
    let mut archive = open_layer(store, desc, index)?;
    let mut reader = EntryReader {
        layer: index,
        keep: reading.keep,
        hashes: reading.hashes,
        buf: Vec::new(),
    };
    let mut events = Vec::new();
    for entry in archive.entries().map_err(layer_err)? {
        let mut entry = entry.map_err(layer_err)?;
        events.extend(reader.event(&mut entry).map_err(layer_err)?);
    }
    Ok(events)
}

/// Turns the entries of one layer into events; `buf` holds one file's
/// contents at a time and is reused.
struct EntryReader<'k> {
    layer: usize,
    keep: Keep<'k>,
    hashes: bool,
    buf: Vec<u8>,
}

impl EntryReader<'_> {
    fn event<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> std::io::Result<Option<Event>> {
        let raw = entry.path_bytes().into_owned();
        let Some(path) = normalise(&raw) else {
            return Ok(None); // names with `..` never reach a filesystem
        };
        let name = path.rsplit('/').next().unwrap_or("");
        if name == ".wh..wh..opq" {
            return Ok(Some(Event::Opaque(parent(&path).to_string())));
        }
        if let Some(victim) = name.strip_prefix(".wh.") {
            return Ok(Some(Event::Whiteout(join(parent(&path), victim))));
        }
        let mut secrets = Vec::new();
        let mut node = self.node(entry, &path, &mut secrets)?;
        let keep = (self.keep)(&path, &node) || !secrets.is_empty();
        if !keep {
            // The merge only compares kind, size and hash of a dropped node.
            (node.link, node.elf, node.text) = (None, None, None);
        }
        Ok(Some(Event::Entry {
            path,
            node,
            secrets,
            keep,
        }))
    }

    fn node<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &str,
        secrets: &mut Vec<SecretHit>,
    ) -> std::io::Result<Node> {
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::Hardlink,
            _ => Kind::Other,
        };
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let mut node = Node {
            kind,
            size: if kind == Kind::File { entry.size() } else { 0 },
            mode: entry.header().mode().unwrap_or(0),
            layer: self.layer,
            hash: None,
            link,
            elf: None,
            text: None,
        };
        if kind == Kind::File {
            self.content(entry, path, &mut node, secrets)?;
        }
        Ok(node)
    }

    fn content<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &str,
        node: &mut Node,
        secrets: &mut Vec<SecretHit>,
    ) -> std::io::Result<()> {
        let mut hasher = blake3::Hasher::new();
        if node.size <= MAX_IN_MEMORY {
            let buf = &mut self.buf;
            buf.clear();
            entry.read_to_end(buf)?;
            if self.hashes {
                hasher.update(buf);
            }
            node.elf = crate::elf::parse(buf);
            if node.elf.is_none() {
                *secrets = secrets::scan(buf, path, self.layer);
            }
            if wanted_text(path) {
                node.text = Some(buf.clone());
            }
        } else if self.hashes {
            std::io::copy(entry, &mut hasher)?;
        }
        if self.hashes {
            node.hash = Some(*hasher.finalize().as_bytes());
        }
        Ok(())
    }
}

/// A tar entry name as a path below the root (`./usr/` → `usr`), the way
/// Docker normalises it; `None` for names that climb out with `..`.
fn normalise(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let mut parts = Vec::new();
    for comp in text.split('/') {
        match comp {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// The files whose contents the guards need.
fn wanted_text(path: &str) -> bool {
    matches!(path, "etc/passwd" | "etc/group" | "etc/ld.so.conf")
        || (path.starts_with("etc/ld.so.conf.d/") && path.ends_with(".conf"))
}
