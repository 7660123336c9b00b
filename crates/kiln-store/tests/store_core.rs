//! Blob ingest, names, leases, prune and fsck against a real directory.

use std::fs;
use std::io::Write;

use kiln_oci::media_type as mt;
use kiln_oci::oci_spec::image::{Descriptor, ImageIndex};
use kiln_oci::{Digest, Platform, Reference};
use kiln_store::{Error, Store};

/// A minimal valid image: config, one (uncompressed) layer, manifest.
fn small_image(store: &Store, seed: &str) -> Descriptor {
    let layer = {
        let mut b = tar::Builder::new(Vec::new());
        let data = seed.as_bytes();
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "seed.txt", data).unwrap();
        b.into_inner().unwrap()
    };
    let layer_digest = store.write_blob(&layer).unwrap();
    let config = serde_json::json!({
        "architecture": Platform::host().architecture,
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]},
        "history": [{"created_by": format!("seed {seed}")}],
    });
    let config_desc = store.write_json(&config, mt::OCI_CONFIG).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": config_desc,
        "layers": [{"mediaType": mt::OCI_LAYER, "digest": layer_digest.to_string(), "size": layer.len()}],
    });
    store.write_json(&manifest, mt::OCI_MANIFEST).unwrap()
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn ingest_is_empty(store: &Store) -> bool {
    fs::read_dir(store.root().join("ingest")).unwrap().count() == 0
}

#[test]
fn open_creates_an_oci_layout() {
    let dir = kiln_testkit::tempdir();
    let root = dir.path().join("new/root");
    let store = Store::open(&root).unwrap();
    let layout = fs::read_to_string(root.join("oci-layout")).unwrap();
    assert!(layout.contains("\"imageLayoutVersion\":\"1.0.0\""));
    let index: ImageIndex =
        serde_json::from_str(&fs::read_to_string(root.join("index.json")).unwrap()).unwrap();
    assert!(index.manifests().is_empty());
    assert!(root.join("blobs/sha256").is_dir());
    // Reopening keeps what is there.
    let d = store.write_blob(b"hello").unwrap();
    let again = Store::open(&root).unwrap();
    assert_eq!(again.read_blob(&d).unwrap(), b"hello");
}

#[test]
fn blobs_are_verified_and_temps_never_left_behind() {
    let dir = kiln_testkit::tempdir();
    let store = Store::open(dir.path()).unwrap();
    let d = store.write_blob(b"abc").unwrap();
    assert_eq!(d, Digest::sha256(b"abc"));
    assert!(store.has_blob(&d));
    assert_eq!(store.blob_size(&d).unwrap(), 3);

    // Wrong expected digest: error, nothing stored, temp removed.
    let wrong = Digest::sha256(b"something else");
    let mut w = store.ingest(Some(wrong)).unwrap();
    w.write_all(b"xyz").unwrap();
    match w.commit() {
        Err(Error::DigestMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, Digest::sha256(b"xyz"));
        }
        other => panic!("expected digest mismatch, got {other:?}"),
    }
    assert!(!store.has_blob(&Digest::sha256(b"xyz")));
    assert!(!store.has_blob(&wrong));
    assert!(ingest_is_empty(&store));

    // Dropped uncommitted: temp removed.
    let mut w = store.ingest(None).unwrap();
    w.write_all(b"partial").unwrap();
    assert!(w.temp_path().exists());
    drop(w);
    assert!(ingest_is_empty(&store));

    // Wrong size.
    let w = store.ingest(None).unwrap().expect_size(10);
    assert!(matches!(w.commit(), Err(Error::SizeMismatch { .. })));

    // ingest_file moves a file in (same file system) after checking it.
    let src = dir.path().join("layer.tmp");
    fs::write(&src, b"file content").unwrap();
    let (fd, n) = store.ingest_file(&src, None).unwrap();
    assert_eq!((fd, n), (Digest::sha256(b"file content"), 12));
    assert!(!src.exists());
    fs::write(&src, b"other").unwrap();
    assert!(store.ingest_file(&src, Some(fd)).is_err());

    // A blob whose content was altered is refused by read_blob.
    fs::write(store.blob_path(&d), b"abd").unwrap();
    assert!(matches!(store.read_blob(&d), Err(Error::Corrupt { .. })));
}

#[test]
fn names_tag_resolve_list_untag() {
    let dir = kiln_testkit::tempdir();
    let store = Store::open(dir.path()).unwrap();
    let one = small_image(&store, "one");
    let two = small_image(&store, "two");
    assert!(store.tag(&r("app:1"), one.clone()).unwrap().is_none());
    store
        .tag(&r("localhost:5000/team/app:1"), two.clone())
        .unwrap();
    // Retagging replaces and returns the old target.
    let old = store.tag(&r("app:1"), two.clone()).unwrap().unwrap();
    assert_eq!(old.digest(), one.digest());
    store.tag(&r("app:old"), one.clone()).unwrap();

    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 3, "one descriptor per name: {index}");
    let names: Vec<&str> = manifests
        .iter()
        .map(|m| {
            m["annotations"]["io.containerd.image.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(names.contains(&"docker.io/library/app:1"));
    assert!(names.contains(&"localhost:5000/team/app:1"));
    for m in manifests {
        assert_eq!(
            m["annotations"]["io.containerd.image.name"],
            m["annotations"]["org.opencontainers.image.ref.name"]
        );
    }

    let img = store.resolve("app:1").unwrap();
    assert_eq!(img.manifest_digest.to_string(), two.digest().to_string());
    assert_eq!(img.config.history().as_ref().unwrap().len(), 1);
    // By image id prefix, full config digest, manifest digest and name@digest.
    let by_id = store.resolve(&img.config_digest.hex()[..8]).unwrap();
    assert_eq!(by_id.manifest_digest, img.manifest_digest);
    assert!(store.resolve(&img.config_digest.to_string()).is_ok());
    assert!(store.resolve(&img.manifest_digest.to_string()).is_ok());
    assert!(store
        .resolve(&format!("app@{}", img.manifest_digest))
        .is_ok());

    let list = store.list().unwrap();
    assert_eq!(list.len(), 3);
    for s in &list {
        assert!(s.problem.is_none(), "{s:?}");
        assert!(s.uncompressed_size >= 1024, "{s:?}");
        assert!(s.compressed_size > 0);
    }

    assert!(matches!(
        store.resolve("nope"),
        Err(Error::ImageNotFound { .. })
    ));
    assert!(matches!(
        store.resolve("UPPER/case"),
        Err(Error::Reference(_))
    ));
    store.untag(&r("app:1")).unwrap();
    assert!(store.resolve("app:1").is_err());
    assert!(matches!(
        store.untag(&r("app:1")),
        Err(Error::ImageNotFound { .. })
    ));
}

#[test]
fn tag_refuses_targets_with_missing_blobs() {
    let dir = kiln_testkit::tempdir();
    let store = Store::open(dir.path()).unwrap();
    let img = small_image(&store, "x");
    let m: serde_json::Value = serde_json::from_slice(
        &store
            .read_blob(&img.digest().to_string().parse().unwrap())
            .unwrap(),
    )
    .unwrap();
    let layer: Digest = m["layers"][0]["digest"].as_str().unwrap().parse().unwrap();
    fs::remove_file(store.blob_path(&layer)).unwrap();
    let before = fs::read(dir.path().join("index.json")).unwrap();
    let err = store.tag(&r("x"), img).unwrap_err();
    assert!(err.to_string().contains(&layer.to_string()), "{err}");
    assert_eq!(fs::read(dir.path().join("index.json")).unwrap(), before);
}

#[test]
fn prune_keeps_named_leased_and_session_blobs() {
    let dir = kiln_testkit::tempdir();
    let writer = Store::open(dir.path()).unwrap();
    let img = small_image(&writer, "kept");
    writer.tag(&r("kept"), img).unwrap();
    let leased = writer.write_blob(b"cache blob").unwrap();
    writer.set_lease("build-cache", &[leased]).unwrap();
    let in_flight = writer.write_blob(b"layer before its manifest").unwrap();
    let extra = writer.write_blob(b"extra root").unwrap();
    drop(writer);

    // A second process-like handle writes a blob and keeps its session open.
    let live = Store::open(dir.path()).unwrap();
    let live_blob = live.write_blob(b"live session blob").unwrap();

    let pruner = Store::open(dir.path()).unwrap();
    let report = pruner.prune(&[extra]).unwrap();
    // The first session ended (dropped): its unreferenced blob goes.
    assert_eq!(
        report.removed.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![in_flight]
    );
    assert!(pruner.has_blob(&leased) && pruner.has_blob(&extra) && pruner.has_blob(&live_blob));
    assert!(pruner.resolve("kept").is_ok());
    assert!(pruner.fsck().unwrap().is_clean());

    drop(live);
    pruner.remove_lease("build-cache").unwrap();
    let report = pruner.prune(&[]).unwrap();
    let removed: Vec<Digest> = report.removed.iter().map(|r| r.0).collect();
    assert!(removed.contains(&leased) && removed.contains(&live_blob) && removed.contains(&extra));
    assert!(pruner.resolve("kept").is_ok());

    pruner.untag(&r("kept")).unwrap();
    pruner.prune(&[]).unwrap();
    assert_eq!(
        fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn fsck_reports_corrupt_and_missing_blobs() {
    let dir = kiln_testkit::tempdir();
    let store = Store::open(dir.path()).unwrap();
    let img = small_image(&store, "f");
    store.tag(&r("f"), img).unwrap();
    let clean = store.fsck().unwrap();
    assert!(clean.is_clean(), "{:?}", clean.problems);
    assert_eq!(clean.blobs_checked, 3);

    let image = store.resolve("f").unwrap();
    let layer: Digest = image.manifest.layers()[0]
        .digest()
        .to_string()
        .parse()
        .unwrap();
    let mut bytes = fs::read(store.blob_path(&layer)).unwrap();
    bytes[600] ^= 1;
    fs::write(store.blob_path(&layer), &bytes).unwrap();
    fs::remove_file(store.blob_path(&image.config_digest)).unwrap();

    let report = store.fsck().unwrap();
    assert!(!report.is_clean());
    let corrupt = report
        .problems
        .iter()
        .find(|p| p.digest == Some(layer) && p.problem.contains("hashes to"))
        .expect("corrupt layer reported");
    assert_eq!(corrupt.path, store.blob_path(&layer));
    assert!(report
        .problems
        .iter()
        .any(|p| p.digest == Some(image.config_digest)
            && p.problem == "missing"
            && p.needed_by.as_deref() == Some("docker.io/library/f:latest")));
}

/// A tar holding one file.
fn one_file_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

fn compressed(data: &[u8], c: kiln_oci::Compression) -> Vec<u8> {
    let mut out = Vec::new();
    kiln_oci::compression::compress(data, &mut out, c).unwrap();
    out
}

/// Docker reads bzip2 and xz layers in a `docker save` archive; so does
/// `load`, storing them as gzip (they have no OCI media type).
#[test]
fn load_reads_bzip2_and_xz_layers() {
    use kiln_oci::Compression;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let plain = [
        one_file_tar("a.txt", b"bzip2"),
        one_file_tar("b.txt", b"xz"),
    ];
    let blobs = [
        compressed(&plain[0], Compression::Bzip2),
        compressed(&plain[1], Compression::Xz),
    ];
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": Platform::host().architecture, "os": "linux",
        "rootfs": {"type": "layers",
                   "diff_ids": plain.iter().map(|p| Digest::sha256(p).to_string()).collect::<Vec<_>>()},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": "config.json", "RepoTags": ["packed:1"],
        "Layers": ["a/layer.tar", "b/layer.tar"],
    }]))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("manifest.json", &manifest),
        ("config.json", &config),
        ("a/layer.tar", &blobs[0]),
        ("b/layer.tar", &blobs[1]),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let archive = b.into_inner().unwrap();
    let report = kiln_store::archive::load(&store, &archive[..]).unwrap();
    assert_eq!(report.images.len(), 1);
    let raw = store.read_blob(&report.images[0].manifest_digest).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for (layer, want) in layers.iter().zip(&plain) {
        assert_eq!(layer["mediaType"], mt::OCI_LAYER_GZIP);
        let digest: Digest = layer["digest"].as_str().unwrap().parse().unwrap();
        let blob = store.read_blob(&digest).unwrap();
        assert_eq!(kiln_oci::compression::sniff(&blob), Compression::Gzip);
        let mut back = Vec::new();
        std::io::Read::read_to_end(
            &mut kiln_oci::compression::decompress(&blob[..]).unwrap(),
            &mut back,
        )
        .unwrap();
        assert_eq!(&back, want);
    }
}

/// `import` takes a tar compressed any way Docker reads.
#[test]
fn import_reads_bzip2_and_xz_tars() {
    use kiln_oci::Compression;
    let plain = one_file_tar("hello.txt", b"hi");
    for c in [Compression::Bzip2, Compression::Xz] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let opts = kiln_store::import::ImportOptions {
            changes: Vec::new(),
            source: "-".into(),
            platform: Platform::host(),
            name: None,
        };
        let got =
            kiln_store::import::import_tar(&store, &compressed(&plain, c)[..], &opts).unwrap();
        assert_eq!(got.diff_id.0, Digest::sha256(&plain), "{c:?}");
    }
}
