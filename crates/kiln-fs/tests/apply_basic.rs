//! What a layer extraction produces: content, metadata, links, special
//! files, and whiteouts in both modes.

mod apply_common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use apply_common::Tar;
use kiln_fs::{apply_compressed_layer, apply_layer, apply_layer_with, ApplyMode};
use tar::EntryType;

fn getxattr(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(path, name, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

fn sample_layer() -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("./usr/")
        .dir("usr/lib")
        .file("usr/lib/libc.so", b"ELF")
        .symlink("lib", "/usr/lib")
        .hardlink("usr/lib/libc2.so", "usr/lib/libc.so")
        .raw(
            EntryType::Regular,
            b"usr/bin/su",
            b"",
            0o4755,
            b"suid",
            &[
                ("uid", b"1000"),
                ("gid", b"2000"),
                ("mtime", b"1700000000.25"),
                ("SCHILY.xattr.user.kiln", b"hello"),
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ],
        )
        .raw(EntryType::Fifo, b"run/fifo", b"", 0o600, b"", &[])
        .raw(EntryType::Char, b"dev/null", b"", 0o666, b"", &[]);
    t.finish()
}

#[test]
fn extracts_content_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let tar = sample_layer();
    let stats = apply_layer(root, &tar[..]).unwrap();
    assert_eq!(fs::read(root.join("usr/lib/libc.so")).unwrap(), b"ELF");
    // The absolute symlink is kept as written and resolves inside a chroot.
    assert_eq!(
        fs::read_link(root.join("lib")).unwrap().to_str(),
        Some("/usr/lib")
    );
    let a = fs::metadata(root.join("usr/lib/libc.so")).unwrap();
    let b = fs::metadata(root.join("usr/lib/libc2.so")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    let su = fs::metadata(root.join("usr/bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!((su.uid(), su.gid()), (1000, 2000));
    assert_eq!((su.mtime(), su.mtime_nsec()), (1_700_000_000, 250_000_000));
    assert_eq!(
        getxattr(&root.join("usr/bin/su"), "user.kiln").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        getxattr(&root.join("usr/bin/su"), "trusted.overlay.opaque"),
        None
    );
    // Implicit parent created 0755; listed dirs get the tar's mtime even
    // though children were created after them.
    assert_eq!(
        fs::metadata(root.join("usr/bin")).unwrap().mode() & 0o777,
        0o755
    );
    assert_eq!(
        fs::metadata(root.join("usr/lib")).unwrap().mtime(),
        1_600_000_000
    );
    assert!(fs::metadata(root.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(fs::metadata(root.join("dev/null"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(stats.files, 2);
    assert_eq!(stats.hardlinks, 1);
    assert_eq!(stats.symlinks, 1);
    assert_eq!(stats.specials, 2);
    assert_eq!(stats.tar_size, tar.len() as u64);
    assert_eq!(stats.diff_id.unwrap().0, kiln_fs::Digest::sha256(&tar));
}

fn lower_then_upper(mode: ApplyMode) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if mode == ApplyMode::Merge {
        let base = Tar::new()
            .dir("etc")
            .file("etc/keep", b"k")
            .file("etc/gone", b"g")
            .dir("opq")
            .file("opq/old", b"o")
            .dir("opq/sub")
            .file("opq/sub/old", b"o")
            .finish();
        apply_layer(dir.path(), &base[..]).unwrap();
    }
    let upper = Tar::new()
        .file("etc/.wh.gone", b"")
        .file("opq/sub/new", b"n")
        .dir("opq")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"n")
        .file("absent/.wh.nothing", b"")
        .finish();
    let stats = apply_layer_with(dir.path(), &upper[..], mode).unwrap();
    assert_eq!(stats.whiteouts, 3);
    dir
}

#[test]
fn merge_mode_deletes_what_whiteouts_name() {
    let dir = lower_then_upper(ApplyMode::Merge);
    let r = dir.path();
    assert!(r.join("etc/keep").exists());
    assert!(!r.join("etc/gone").exists());
    assert!(!r.join("opq/old").exists());
    assert!(!r.join("opq/sub/old").exists());
    // Written by this same layer before the opaque marker: kept.
    assert!(r.join("opq/sub/new").exists());
    assert!(r.join("opq/new").exists());
}

#[test]
fn overlay_lower_mode_writes_overlay_whiteouts() {
    let dir = lower_then_upper(ApplyMode::OverlayLower);
    let r = dir.path();
    let wh = fs::symlink_metadata(r.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert_eq!(
        getxattr(&r.join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(r.join("opq/sub/new").exists());
    assert!(fs::symlink_metadata(r.join("absent/nothing"))
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn compressed_layers_are_sniffed() {
    let tar = sample_layer();
    for c in [
        kiln_oci::compression::Compression::Gzip,
        kiln_oci::compression::Compression::Zstd,
        kiln_oci::compression::Compression::None,
    ] {
        let mut blob = Vec::new();
        kiln_oci::compression::compress(&tar[..], &mut blob, c).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let stats = apply_compressed_layer(dir.path(), &blob[..], ApplyMode::Merge).unwrap();
        assert_eq!(
            stats.diff_id.unwrap().0,
            kiln_fs::Digest::sha256(&tar),
            "{c:?}"
        );
        assert_eq!(fs::read(dir.path().join("usr/bin/su")).unwrap(), b"suid");
    }
}

/// Docker reads bzip2 and xz layers too.
#[test]
fn bzip2_and_xz_layers_are_read() {
    let tar = sample_layer();
    for c in [
        kiln_oci::compression::Compression::Bzip2,
        kiln_oci::compression::Compression::Xz,
    ] {
        let mut blob = Vec::new();
        kiln_oci::compression::compress(&tar[..], &mut blob, c).unwrap();
        assert_eq!(kiln_oci::compression::sniff(&blob), c);
        let dir = tempfile::tempdir().unwrap();
        let stats = apply_compressed_layer(dir.path(), &blob[..], ApplyMode::Merge).unwrap();
        assert_eq!(
            stats.diff_id.unwrap().0,
            kiln_fs::Digest::sha256(&tar),
            "{c:?}"
        );
        assert_eq!(fs::read(dir.path().join("usr/bin/su")).unwrap(), b"suid");
    }
}

/// Extracts the busybox root filesystem (the Debian one is in
/// `layer_throughput.rs`, too slow for a debug build).
#[test]
fn extracts_busybox_rootfs() {
    if !kiln_testkit::require_base_images() {
        return;
    }
    let mut data = Vec::new();
    fs::File::open(kiln_testkit::busybox_rootfs_tar())
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let stats = apply_layer_with(dir.path(), &data[..], ApplyMode::OverlayLower).unwrap();
    let r = dir.path();
    assert!(r.join("bin/busybox").is_file());
    assert!(r.join("etc/passwd").is_file());
    assert!(stats.entries > 10);
    assert_eq!(stats.diff_id.unwrap().0, kiln_fs::Digest::sha256(&data));
}
