//! Bad input gets a one-line error naming the thing and the cause, a
//! non-zero exit, and leaves the store as it was.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

fn kiln(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.arg("--root").arg(root);
    c
}

fn fails(out: Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what} should fail; stderr: {err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{what}: one-line error expected: {err}"
    );
    err
}

/// index.json and the list of blobs, to check nothing changed.
fn snapshot(root: &Path) -> (Vec<u8>, Vec<String>) {
    let index = fs::read(root.join("index.json")).unwrap();
    let mut blobs: Vec<String> = fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    (index, blobs)
}

fn assert_clean(root: &Path, before: &(Vec<u8>, Vec<String>)) {
    assert_eq!(&snapshot(root), before, "store changed");
    assert_eq!(
        fs::read_dir(root.join("ingest")).unwrap().count(),
        0,
        "temp files left"
    );
}

/// A store with one small imported image, and its saved archive.
fn setup(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = dir.join("small.tar");
    let out = kiln(&root)
        .args(["save", "-o"])
        .arg(&archive)
        .arg("small:1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (root, archive)
}

#[test]
fn corrupt_truncated_and_mismatched_archives_change_nothing() {
    let dir = kiln_testkit::tempdir();
    let (root, archive) = setup(dir.path());
    // Load into a second, empty store so every blob would be new.
    let fresh = dir.path().join("fresh");
    fs::create_dir_all(&fresh).unwrap();
    let out = kiln(&fresh).arg("images").output().unwrap();
    assert!(out.status.success());
    let before = snapshot(&fresh);
    let bytes = fs::read(&archive).unwrap();

    // Truncated in the middle of a blob.
    let cut = dir.path().join("cut.tar");
    fs::write(&cut, &bytes[..bytes.len() / 2 + 100]).unwrap();
    let err = fails(
        kiln(&fresh)
            .args(["load", "-i"])
            .arg(&cut)
            .output()
            .unwrap(),
        "truncated",
    );
    assert!(err.contains("cut.tar") && err.contains("archive"), "{err}");
    assert_clean(&fresh, &before);

    // Not a tar at all.
    let junk = dir.path().join("junk.tar");
    fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let err = fails(
        kiln(&fresh)
            .args(["load", "-i"])
            .arg(&junk)
            .output()
            .unwrap(),
        "junk",
    );
    assert!(err.contains("junk.tar"), "{err}");
    assert_clean(&fresh, &before);

    // A blob whose content does not match its name: flip a byte of the
    // layer (the biggest file) inside the tar.
    let mut ar = tar::Archive::new(&bytes[..]);
    let (offset, size, name) = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.raw_file_position(),
                e.size(),
                e.path().unwrap().display().to_string(),
            )
        })
        .max_by_key(|(_, s, _)| *s)
        .unwrap();
    let mut bad = bytes.clone();
    bad[(offset + size / 2) as usize] ^= 0x55;
    let flipped = dir.path().join("flipped.tar");
    fs::write(&flipped, &bad).unwrap();
    let err = fails(
        kiln(&fresh)
            .args(["load", "-i"])
            .arg(&flipped)
            .output()
            .unwrap(),
        "flipped",
    );
    assert!(err.contains(&name) && err.contains("corrupt"), "{err}");
    assert_clean(&fresh, &before);

    // The original store is untouched by all this, and still loads fine.
    let out = kiln(&fresh)
        .args(["load", "-i"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kiln(&root).arg("fsck").output().unwrap();
    assert!(out.status.success());
}

#[test]
fn unknown_media_type_is_refused() {
    let dir = kiln_testkit::tempdir();
    let (_root, archive) = setup(dir.path());
    let fresh = dir.path().join("fresh");
    // Rewrite index.json to give the manifest an unknown media type.
    let mut out = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(fs::File::open(&archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if path == Path::new("index.json") {
            let s = String::from_utf8(data).unwrap();
            data = s
                .replace(
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/x-unknown",
                )
                .into_bytes();
        }
        if path == Path::new("manifest.json") {
            continue;
        }
        let mut h = e.header().clone();
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.append_data(&mut h, &path, &data[..]).unwrap();
    }
    let patched = dir.path().join("patched.tar");
    fs::write(&patched, out.into_inner().unwrap()).unwrap();
    let _ = kiln(&fresh).arg("images").output().unwrap();
    let before = snapshot(&fresh);
    let err = fails(
        kiln(&fresh)
            .args(["load", "-i"])
            .arg(&patched)
            .output()
            .unwrap(),
        "media type",
    );
    assert!(err.contains("application/x-unknown"), "{err}");
    assert_clean(&fresh, &before);
}

#[test]
fn invalid_references_are_rejected_with_the_name() {
    let dir = kiln_testkit::tempdir();
    let (root, _archive) = setup(dir.path());
    let before = snapshot(&root);
    for bad in ["UPPER/case", "small:", "a//b"] {
        let err = fails(
            kiln(&root).args(["tag", "small:1", bad]).output().unwrap(),
            bad,
        );
        assert!(err.contains(&format!("{bad:?}")), "{err}");
    }
    let err = fails(
        kiln(&root)
            .args(["inspect", "no/such:image"])
            .output()
            .unwrap(),
        "missing",
    );
    assert!(err.contains("no/such:image"), "{err}");
    assert_clean(&root, &before);
}

#[test]
fn fsck_finds_a_corrupt_blob() {
    let dir = kiln_testkit::tempdir();
    let (root, _archive) = setup(dir.path());
    let out = kiln(&root).arg("fsck").output().unwrap();
    assert!(out.status.success());
    // Corrupt the biggest blob (the layer).
    let blob = fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&blob).unwrap();
    f.write_all(b"junk").unwrap();
    let out = kiln(&root).arg("fsck").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains(&blob.display().to_string()) && stdout.contains("hashes to"),
        "{stdout}"
    );
    // Saving an image with a corrupt blob fails instead of passing it on.
    let err = fails(
        kiln(&root)
            .args(["save", "-o"])
            .arg(dir.path().join("x.tar"))
            .arg("small:1")
            .output()
            .unwrap(),
        "save of corrupt image",
    );
    assert!(err.contains("corrupt"), "{err}");
    assert!(!dir.path().join("x.tar").exists());
}

#[test]
fn disk_full_removes_the_temp_and_names_the_path() {
    if !kiln_testkit::require_root() {
        return;
    }
    let dir = kiln_testkit::tempdir();
    let root = dir.path().join("tiny");
    fs::create_dir_all(&root).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&root)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&root);
    // Incompressible data larger than the file system.
    let rootfs = dir.path().join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    let mut data = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    fs::write(rootfs.join("random"), &data).unwrap();
    let out = kiln(&root).args(["images"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = snapshot(&root);
    let err = fails(
        kiln(&root)
            .arg("import")
            .arg(&rootfs)
            .arg("big")
            .output()
            .unwrap(),
        "ENOSPC",
    );
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains(&root.join("ingest").display().to_string()),
        "{err}"
    );
    assert_clean(&root, &before);
}
