//! The root snapshotter (`--isolation=chroot`) on a scratch root: protected
//! paths survive laying out, whiteouts and opaque directories; a root that
//! already holds a step's parents is reused, not laid out again; a failed
//! step forces a fresh layout. (Its layers are checked byte for byte
//! against the other backends in snapshot_conformance.rs.) Needs root.

mod apply_common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use apply_common::Tar;
use kiln_fs::apply::Protected;
use kiln_fs::layer::LayerOptions;
use kiln_fs::snapshot::RootSnapshotter;
use kiln_fs::{DiffId, Digest, Snapshots, Snapshotter};

fn layer(snaps: &Snapshots, name: &str, tar: &[u8]) -> PathBuf {
    snaps
        .ensure(
            &Digest::sha256(name.as_bytes()),
            &DiffId(Digest::sha256(tar)),
            || Ok(tar),
        )
        .unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    snaps: Snapshots,
    root: PathBuf,
    s: RootSnapshotter,
}

/// A root holding kiln's "own" files and a stale file from before.
fn setup() -> Setup {
    let dir = kiln_testkit::tempdir();
    let snaps = Snapshots::open(dir.path()).unwrap();
    let root = dir.path().join("live");
    fs::create_dir_all(root.join("kiln/store")).unwrap();
    fs::write(root.join("kiln/store/blob"), b"mine").unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/resolv.conf"), b"nameserver 1.1.1.1").unwrap();
    fs::write(root.join("stale"), b"from before").unwrap();
    let protected = Protected::new(["kiln", "etc/resolv.conf"].map(PathBuf::from));
    let s = RootSnapshotter::new(snaps.clone(), root.clone(), protected);
    Setup {
        _dir: dir,
        snaps,
        root,
        s,
    }
}

fn kept(root: &Path) {
    assert_eq!(fs::read(root.join("kiln/store/blob")).unwrap(), b"mine");
    assert_eq!(
        fs::read(root.join("etc/resolv.conf")).unwrap(),
        b"nameserver 1.1.1.1"
    );
}

fn opts() -> LayerOptions {
    LayerOptions::default()
}

#[test]
fn layout_never_touches_protected_paths() {
    if !kiln_testkit::require_root() {
        return;
    }
    let t = setup();
    // A hostile base writes into kiln's dir and over resolv.conf; the
    // next layer makes /etc opaque and deletes /kiln, the top one deletes
    // /etc, which holds a protected file.
    let base = layer(
        &t.snaps,
        "base",
        &Tar::new()
            .dir("etc")
            .file("etc/resolv.conf", b"evil")
            .file("etc/os-release", b"base")
            .dir("kiln")
            .file("kiln/store/blob", b"evil")
            .file("bin", b"sh")
            .finish(),
    );
    let mid = layer(
        &t.snaps,
        "mid",
        &Tar::new()
            .dir("etc")
            .file("etc/.wh..wh..opq", b"")
            .file("etc/hostname", b"h")
            .file(".wh.kiln", b"")
            .finish(),
    );
    let top = layer(
        &t.snaps,
        "top",
        &Tar::new()
            .file(".wh.etc", b"")
            .file(".wh.bin", b"")
            .file("app", b"app")
            .finish(),
    );
    let active = t.s.prepare(&[top, mid.clone(), base.clone()]).unwrap();
    kept(&t.root);
    assert!(!t.root.join("stale").exists(), "the old root is cleared");
    assert!(!t.root.join("bin").exists());
    assert_eq!(
        fs::read_dir(t.root.join("etc")).unwrap().count(),
        1,
        "only the protected file is left of the deleted /etc"
    );
    assert_eq!(fs::read(t.root.join("app")).unwrap(), b"app");
    // Protected paths are not part of any diff.
    fs::write(t.root.join("kiln/store/new-blob"), b"x").unwrap();
    let mut tar = Vec::new();
    assert!(t.s.diff(&active, &mut tar, &opts()).unwrap().is_empty());
    t.s.remove(active).unwrap();

    let again = t.s.prepare(&[mid, base]).unwrap();
    kept(&t.root);
    assert!(!t.root.join("etc/os-release").exists(), "opaque /etc");
    assert_eq!(fs::read(t.root.join("etc/hostname")).unwrap(), b"h");
    assert_eq!(fs::read(t.root.join("bin")).unwrap(), b"sh");
    assert!(!t.root.join("app").exists());
    t.s.remove(again).unwrap();
}

#[test]
fn a_root_holding_the_parents_is_reused() {
    if !kiln_testkit::require_root() {
        return;
    }
    let t = setup();
    let base = layer(&t.snaps, "base", &Tar::new().file("f", b"1").finish());
    let ino = |p: &str| fs::symlink_metadata(t.root.join(p)).unwrap().ino();

    let mut a = t.s.prepare(std::slice::from_ref(&base)).unwrap();
    let base_ino = ino("f");
    fs::write(t.root.join("g"), b"2").unwrap();
    let mut tar = Vec::new();
    let info = t.s.diff(&a, &mut tar, &opts()).unwrap();
    let chain = Digest::sha256(b"step");
    let step = t.s.commit(&mut a, &chain, &info.diff_id).unwrap();
    t.s.remove(a).unwrap();
    assert_eq!(
        fs::read(step.join("g")).unwrap(),
        b"2",
        "committed snapshot"
    );

    // Holds [step, base]: nothing is laid out again.
    let b = t.s.prepare(&[step.clone(), base.clone()]).unwrap();
    assert_eq!(ino("f"), base_ino);
    let mut empty = Vec::new();
    assert!(t.s.diff(&b, &mut empty, &opts()).unwrap().is_empty());
    t.s.remove(b).unwrap();

    // A step that fails (no diff) leaves the root unknown: laid out anew.
    let c = t.s.prepare(&[step.clone(), base.clone()]).unwrap();
    fs::write(t.root.join("half-done"), b"x").unwrap();
    t.s.remove(c).unwrap();
    let d = t.s.prepare(&[step, base]).unwrap();
    assert!(!t.root.join("half-done").exists(), "laid out anew");
    assert_eq!(fs::read(t.root.join("g")).unwrap(), b"2");
    kept(&t.root);
    t.s.remove(d).unwrap();
}

#[test]
fn a_second_step_waits_for_the_first() {
    if !kiln_testkit::require_root() {
        return;
    }
    let t = setup();
    let a = t.s.prepare(&[]).unwrap();
    let order = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        sc.spawn(|| {
            let b = t.s.prepare(&[]).unwrap();
            order.lock().unwrap().push("second");
            t.s.remove(b).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(200));
        order.lock().unwrap().push("first done");
        t.s.remove(a).unwrap();
    });
    assert_eq!(*order.lock().unwrap(), ["first done", "second"]);
}
