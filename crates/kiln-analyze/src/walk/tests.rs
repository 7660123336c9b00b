//! A three-layer image with whiteouts, an opaque dir, a metadata-only
//! change, an overwrite and a secret: its analysis must not depend on how
//! many threads read the layers.

use std::fmt::Write as _;
use std::path::Path;

use super::*;
use crate::input::open_input;
use crate::layer_memo::LayerMemo;
use crate::layer_read::Keep;

/// An uncompressed layer tar; a path ending in `/` is a directory.
fn layer(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data, mode) in entries {
        let mut h = tar::Header::new_ustar();
        let dir = path.ends_with('/');
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(*mode);
        h.set_size(data.len() as u64);
        tar.append_data(&mut h, path, *data).unwrap();
    }
    tar.into_inner().unwrap()
}

fn layers() -> Vec<Vec<u8>> {
    let token = [&b"token=ghp_"[..], &[b'A'; 36]].concat();
    vec![
        layer(&[
            ("etc/", b"", 0o755),
            ("etc/passwd", b"root:x:0:0", 0o644),
            ("usr/bin/app", &[b'a'; 40], 0o755),
            ("data/", b"", 0o755),
            ("data/a", &[b'a'; 100], 0o644),
            ("data/b", &[b'b'; 200], 0o644),
            ("data/sub/c", &[b'c'; 50], 0o644),
            ("tmp/", b"", 0o755),
            ("tmp/x", &[b'x'; 30], 0o644),
        ]),
        layer(&[
            ("data/.wh.a", b"", 0o644),
            ("data/b", &[b'b'; 200], 0o600),
            ("usr/bin/app", &[b'z'; 60], 0o755),
            ("opt/token", &token, 0o644),
        ]),
        layer(&[
            ("data/sub/.wh..wh..opq", b"", 0o644),
            ("data/sub/d", &[b'd'; 5], 0o644),
            ("tmp", &[b't'; 7], 0o644),
            ("big", &[b'g'; 1000], 0o644),
        ]),
    ]
}

/// A `docker save` archive of [`layers`] at `path`.
fn write_archive(path: &Path) {
    let layers = layers();
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| kiln_oci::Digest::sha256(l).to_string())
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "L0"}, {"created_by": "L1"}, {"created_by": "L2"}],
    });
    let names: Vec<String> = (0..layers.len()).map(|i| format!("{i}.tar")).collect();
    let manifest =
        serde_json::json!([{"Config": "config.json", "RepoTags": ["t:1"], "Layers": names}]);
    let mut tar = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        tar.append_data(&mut h, name, data).unwrap();
    };
    add("config.json", &serde_json::to_vec(&config).unwrap());
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    for (name, l) in names.iter().zip(&layers) {
        add(name, l);
    }
    tar.into_inner().unwrap();
}

/// Everything the walk decides, without the digests of the stored blobs.
fn summary(a: &Analysis) -> String {
    // The gzip the loader writes is not the walk's business.
    let totals = Totals {
        compressed: 0,
        ..a.totals.clone()
    };
    let mut s = serde_json::to_string(&totals).unwrap();
    for l in &a.layers {
        let (i, c) = (l.index, &l.created_by);
        let (b, f, w, ws) = (l.file_bytes, l.files, l.wasted_later, l.wastes);
        write!(
            s,
            "\nlayer {i} {c} bytes={b} files={f} wasted_later={w} wastes={ws}"
        )
        .unwrap();
    }
    for w in &a.waste {
        write!(s, "\n{w:?}").unwrap();
    }
    for (p, n) in &a.fs.nodes {
        let (k, size, mode, l) = (n.kind, n.size, n.mode, n.layer);
        let (hash, text) = (n.hash.is_some(), n.text.is_some());
        write!(
            s,
            "\n{p} {k:?} {size} {mode:o} layer={l} hash={hash} text={text}"
        )
        .unwrap();
    }
    for h in &a.secrets {
        write!(s, "\n{h:?}").unwrap();
    }
    s
}

/// [`summary`] of the image read on 1, 2 and 3 threads, which must agree.
fn analysed(keep: Keep<'_>) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("image.tar");
    write_archive(&archive);
    let input = open_input(tmp.path(), archive.to_str().unwrap()).unwrap();
    let reading = Reading {
        keep,
        hashes: true,
        memo: None,
    };
    let run =
        |workers| summary(&analyze_on(&input.store, &input.image, "t", &reading, workers).unwrap());
    let one = run(1);
    for workers in [2, 3] {
        assert_eq!(run(workers), one, "{workers} workers");
    }
    one
}

/// What the walk made of [`layers`] before it read them in parallel.
const ALL: &str = r#"{"compressed":0,"uncompressed":18432,"shipped":1748,"final_bytes":1328,"wasted":420,"wasted_deleted":150,"wasted_overwritten":70,"wasted_metadata_only":200,"efficiency":0.7597254004576659,"files":7}
layer 0 L0 bytes=430 files=6 wasted_later=420 wastes=0
layer 1 L1 bytes=306 files=3 wasted_later=0 wastes=340
layer 2 L2 bytes=1012 files=3 wasted_later=0 wastes=80
WasteEntry { path: "/data/b", size: 200, added_in: 0, removed_in: 1, reason: MetadataOnly }
WasteEntry { path: "/data/a", size: 100, added_in: 0, removed_in: 1, reason: Deleted }
WasteEntry { path: "/data/sub/c", size: 50, added_in: 0, removed_in: 2, reason: Deleted }
WasteEntry { path: "/usr/bin/app", size: 40, added_in: 0, removed_in: 1, reason: Overwritten }
WasteEntry { path: "/tmp/x", size: 30, added_in: 0, removed_in: 2, reason: Overwritten }
big File 1000 644 layer=2 hash=true text=false
data Dir 0 755 layer=0 hash=false text=false
data/b File 200 600 layer=1 hash=true text=false
data/sub/d File 5 644 layer=2 hash=true text=false
etc Dir 0 755 layer=0 hash=false text=false
etc/passwd File 10 644 layer=0 hash=true text=true
opt/token File 46 644 layer=1 hash=true text=false
tmp File 7 644 layer=2 hash=true text=false
usr/bin/app File 60 755 layer=1 hash=true text=false
SecretHit { place: "/opt/token", layer: Some(1), what: "a GitHub personal access token" }"#;

/// The same, keeping executables and `etc/` only.
const SOME: &str = r#"{"compressed":0,"uncompressed":18432,"shipped":1748,"final_bytes":116,"wasted":1632,"wasted_deleted":0,"wasted_overwritten":40,"wasted_metadata_only":0,"efficiency":0.06636155606407322,"files":3}
layer 0 L0 bytes=430 files=6 wasted_later=40 wastes=0
layer 1 L1 bytes=306 files=3 wasted_later=0 wastes=40
layer 2 L2 bytes=1012 files=3 wasted_later=0 wastes=0
WasteEntry { path: "/usr/bin/app", size: 40, added_in: 0, removed_in: 1, reason: Overwritten }
data Dir 0 755 layer=0 hash=false text=false
etc Dir 0 755 layer=0 hash=false text=false
etc/passwd File 10 644 layer=0 hash=true text=true
opt/token File 46 644 layer=1 hash=true text=false
usr/bin/app File 60 755 layer=1 hash=true text=false
SecretHit { place: "/opt/token", layer: Some(1), what: "a GitHub personal access token" }"#;

#[test]
fn multi_layer_results() {
    let all = analysed(&|_, _| true);
    assert_eq!(all, ALL);
    let some = analysed(&|p, n| n.mode & 0o111 != 0 || p.starts_with("etc/"));
    assert_eq!(some, SOME);
}

/// A pass with a memo gives what it gives without one, reads a remembered
/// layer from the memo and not from the store (its blobs are gone for the
/// second pass), and reads a layer again when its memo is damaged.
#[test]
fn remembered_layers_are_not_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("image.tar");
    write_archive(&archive);
    let input = open_input(tmp.path(), archive.to_str().unwrap()).unwrap();
    let keep = |p: &str, n: &Node| n.mode & 0o111 != 0 || p.starts_with("etc/");
    let memo_dir = tmp.path().join("memo");
    let reading = |memo: bool| Reading {
        keep: &keep,
        hashes: false,
        memo: memo.then(|| LayerMemo {
            dir: &memo_dir,
            filter: "test".into(),
        }),
    };
    let run = |memo: bool| {
        summary(&analyze_on(&input.store, &input.image, "t", &reading(memo), 2).unwrap())
    };
    let fresh = run(false);
    assert!(fresh.contains("SecretHit { place: \"/opt/token\", layer: Some(1)"));
    assert_eq!(run(true), fresh, "first pass, writing the memo");
    let remembered = std::fs::read_dir(&memo_dir).unwrap().count();
    assert_eq!(remembered, 3, "one entry per layer");

    let layers = input.image.manifest.layers();
    for l in layers {
        let d = kiln_store::descriptor_digest(l).unwrap();
        std::fs::remove_file(input.store.blob_path(&d)).unwrap();
    }
    assert_eq!(run(true), fresh, "from the memo alone");
    let err = analyze_on(&input.store, &input.image, "t", &reading(false), 2);
    assert!(err.is_err(), "without the memo the blobs are needed");

    for e in std::fs::read_dir(&memo_dir).unwrap() {
        std::fs::write(e.unwrap().path(), b"[{\"Entry\":").unwrap();
    }
    let damaged = analyze_on(&input.store, &input.image, "t", &reading(true), 2);
    assert!(
        damaged.is_err(),
        "a damaged memo is not trusted: the layer is read again"
    );
}
