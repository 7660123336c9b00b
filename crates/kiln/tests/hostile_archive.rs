//! `kiln load` and `kiln import` of crafted archives: an OCI archive whose
//! descriptor sizes lie or whose config names the wrong diff_id is refused
//! with the store unchanged (index.json and every blob byte-identical); a
//! layer that decompresses past the store's free space is stopped there;
//! tar names and header fields holding terminal escapes print escaped.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest as _, Sha256};

fn kiln(root: &Path) -> Command {
    let mut c = Command::new(kiln_bin());
    c.arg("--root").arg(root);
    c
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A tar holding one file.
fn layer_tar(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

/// What to get wrong in a crafted OCI archive.
#[derive(Default, Clone, Copy)]
struct Lies {
    layer_size: bool,
    manifest_size: bool,
    config_size: bool,
    diff_id: bool,
}

/// An OCI archive (`oci-layout`, `index.json`, `blobs/sha256/…`) of one
/// image named `hostile:1` with a gzip layer made from `plain`.
fn oci_archive(plain: &[u8], lies: Lies) -> Vec<u8> {
    let layer = gzip(plain);
    let diff_id = if lies.diff_id {
        sha256(b"some other layer")
    } else {
        sha256(plain)
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let plus = |lie: bool| if lie { 1 } else { 0 };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha256(&config), "size": config.len() + plus(lies.config_size)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(&layer), "size": layer.len() + plus(lies.layer_size)}],
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": sha256(&manifest),
                       "size": manifest.len() + plus(lies.manifest_size),
                       "annotations": {"io.containerd.image.name": "docker.io/library/hostile:1"}}],
    }))
    .unwrap();
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".into(), index),
    ];
    for blob in [manifest, config, layer] {
        let name = format!("blobs/sha256/{}", &sha256(&blob)[7..]);
        files.push((name, blob));
    }
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// index.json and every blob's bytes (by hash), to prove nothing changed.
fn snapshot(root: &Path) -> (Vec<u8>, BTreeMap<String, String>) {
    let index = fs::read(root.join("index.json")).unwrap();
    let mut blobs = BTreeMap::new();
    for e in fs::read_dir(root.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let data = fs::read(e.path()).unwrap();
        blobs.insert(e.file_name().to_string_lossy().into_owned(), sha256(&data));
    }
    (index, blobs)
}

/// A store holding one imported image.
fn store_with_an_image(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::write(rootfs.join("etc/hello"), b"hello\n").unwrap();
    let out = kiln(&root)
        .arg("import")
        .arg(&rootfs)
        .arg("small:1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    root
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn load(root: &Path, archive: &Path) -> Output {
    kiln(root)
        .arg("load")
        .arg("-i")
        .arg(archive)
        .output()
        .unwrap()
}

/// Loads `archive` into a store that holds an image and checks the load
/// fails with `want` in its message and the store stays byte-identical.
fn refused(dir: &Path, archive: &[u8], want: &str) -> String {
    let root = store_with_an_image(dir);
    let file = dir.join("crafted.tar");
    fs::write(&file, archive).unwrap();
    let before = snapshot(&root);
    let out = load(&root, &file);
    let err = stderr(&out);
    assert!(!out.status.success(), "load should fail: {err}");
    assert!(err.contains(want), "{want:?} missing from: {err}");
    assert_eq!(snapshot(&root), before, "the store changed: {err}");
    let left = fs::read_dir(root.join("ingest"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "temp files left in ingest/");
    err
}

fn plain_layer() -> Vec<u8> {
    layer_tar("hello.txt", b"hello from a crafted archive\n")
}

#[test]
fn an_honest_crafted_archive_loads() {
    // The control: without lies the same archive loads and checks clean, so
    // the refusals below are due to the lies alone.
    let tmp = tempfile::tempdir().unwrap();
    let root = store_with_an_image(tmp.path());
    let file = tmp.path().join("honest.tar");
    fs::write(&file, oci_archive(&plain_layer(), Lies::default())).unwrap();
    let out = load(&root, &file);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kiln(&root).arg("fsck").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_lying_layer_size_is_refused_and_the_store_is_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let lies = Lies {
        layer_size: true,
        ..Lies::default()
    };
    let err = refused(
        tmp.path(),
        &oci_archive(&plain_layer(), lies),
        "descriptor says",
    );
    assert!(err.contains("layer of manifest"), "{err}");
}

#[test]
fn lying_manifest_and_config_sizes_are_refused() {
    for (lies, what) in [
        (
            Lies {
                manifest_size: true,
                ..Lies::default()
            },
            "image manifest",
        ),
        (
            Lies {
                config_size: true,
                ..Lies::default()
            },
            "image config",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let err = refused(
            tmp.path(),
            &oci_archive(&plain_layer(), lies),
            "descriptor says",
        );
        assert!(err.contains(what), "{what}: {err}");
    }
}

#[test]
fn a_wrong_diff_id_is_refused_and_the_store_is_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let lies = Lies {
        diff_id: true,
        ..Lies::default()
    };
    refused(
        tmp.path(),
        &oci_archive(&plain_layer(), lies),
        "expects diff_id",
    );
}

#[test]
fn a_layer_bigger_than_the_free_space_is_stopped_early() {
    if !kiln_testkit::require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a small tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    // 64 MiB of zeros: about 64 KiB gzipped, eight times the free space.
    let bomb = layer_tar("zeros", &vec![0u8; 64 << 20]);
    let file = tmp.path().join("bomb.tar");
    fs::write(&file, oci_archive(&bomb, Lies::default())).unwrap();
    let root = small.join("root");
    let out = load(&root, &file);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("decompresses to more than") && err.contains("free"),
        "{err}"
    );
}

/// Asserts no terminal control byte reached stderr and the escape shows.
fn escaped(err: &str, shown: &str) {
    assert!(
        !err.contains(['\u{1b}', '\u{7}', '\u{9b}']),
        "raw control bytes printed: {err:?}"
    );
    assert!(err.contains(shown), "{shown:?} missing from: {err}");
}

/// A tar whose one entry has raw `name` bytes and `size_field` in its size
/// field (checksum fixed, so the field itself is what fails to parse).
fn raw_tar(name: &[u8], size_field: Option<&[u8]>) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_size(4);
    h.set_mode(0o644);
    let bytes = h.as_mut_bytes();
    bytes[..name.len()].copy_from_slice(name);
    if let Some(f) = size_field {
        bytes[124..124 + f.len()].copy_from_slice(f);
    }
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(&[b'x'; 4]);
    out.resize(512 * 2, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[test]
fn escape_bytes_in_archive_names_and_headers_print_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let title = b"\x1b]0;owned\x07";
    // A name that leaves the archive, with a window-title sequence in it.
    let mut name = b"../evil".to_vec();
    name.extend_from_slice(title);
    let file = tmp.path().join("names.tar");
    fs::write(&file, raw_tar(&name, None)).unwrap();
    let out = load(&root, &file);
    assert!(!out.status.success());
    escaped(&stderr(&out), "evil\\u{1b}]0;owned\\u{7}");

    // A size field holding a clear-screen sequence: a tar parse error.
    let file = tmp.path().join("header.tar");
    fs::write(&file, raw_tar(b"file", Some(b"\x1b[2J\x1b]0;x\x07"))).unwrap();
    for cmd in ["load", "import"] {
        let mut c = kiln(&root);
        if cmd == "load" {
            c.arg("load").arg("-i").arg(&file);
        } else {
            c.arg("import").arg(&file).arg("x:1");
        }
        let out = c.output().unwrap();
        assert!(!out.status.success(), "{cmd}");
        escaped(&stderr(&out), "\\u{1b}[2J");
    }
}

/// The kiln under test; `KILN_TEST_BIN` points these tests at another build
/// (to show an older kiln fails them).
fn kiln_bin() -> String {
    std::env::var("KILN_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kiln").to_string())
}
