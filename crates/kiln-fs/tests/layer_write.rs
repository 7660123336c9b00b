//! Layer tars written from an overlay upper dir: names (long, non-ASCII),
//! PAX records, whiteouts, opaque dirs, hardlinks, xattrs, clamped times;
//! they round-trip through the extractor and GNU tar reads them.
//! Needs root (whiteout devices, trusted.* xattrs).

mod apply_common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use kiln_fs::layer::LayerOptions;
use kiln_fs::{apply_layer_with, write_layer_from_upper, ApplyMode, Digest};
use rustix::fs::{lsetxattr, mknodat, FileType, Mode, XattrFlags, CWD};

fn make_upper(root: &Path) {
    let long_dir = root.join("d".repeat(120));
    fs::create_dir(&long_dir).unwrap();
    fs::write(long_dir.join("f".repeat(200)), b"long").unwrap();
    fs::write(root.join("ünïcødé"), b"u").unwrap();
    fs::write(root.join("caps"), b"c").unwrap();
    lsetxattr(root.join("caps"), "user.kiln", b"v", XattrFlags::empty()).unwrap();
    lsetxattr(
        root.join("caps"),
        "trusted.overlay.origin",
        b"o",
        XattrFlags::empty(),
    )
    .unwrap();
    fs::write(root.join("big-ids"), b"b").unwrap();
    rustix::fs::chownat(
        CWD,
        root.join("big-ids"),
        Some(rustix::fs::Uid::from_raw(3_000_000)),
        Some(rustix::fs::Gid::from_raw(3_000_001)),
        rustix::fs::AtFlags::empty(),
    )
    .unwrap();
    fs::create_dir(root.join("opq")).unwrap();
    lsetxattr(
        root.join("opq"),
        "trusted.overlay.opaque",
        b"y",
        XattrFlags::empty(),
    )
    .unwrap();
    fs::write(root.join("opq/kept"), b"k").unwrap();
    mknodat(
        CWD,
        root.join("deleted"),
        FileType::CharacterDevice,
        Mode::empty(),
        0,
    )
    .unwrap();
    fs::write(root.join("h1"), b"same").unwrap();
    fs::hard_link(root.join("h1"), root.join("h2")).unwrap();
    symlink("/usr/lib", root.join("lib")).unwrap();
    fs::write(root.join("suid"), b"s").unwrap();
    fs::set_permissions(root.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
}

#[test]
fn upper_dir_round_trips() {
    if !kiln_testkit::require_root() {
        return;
    }
    let upper = kiln_testkit::tempdir();
    make_upper(upper.path());
    let opts = LayerOptions {
        source_date_epoch: Some(1_000_000),
    };
    let mut tar = Vec::new();
    let info = write_layer_from_upper(upper.path(), &mut tar, &opts).unwrap();
    assert_eq!(info.diff_id.0, Digest::sha256(&tar));
    assert_eq!(info.size, tar.len() as u64);

    // Writing again gives the same bytes.
    let mut again = Vec::new();
    write_layer_from_upper(upper.path(), &mut again, &opts).unwrap();
    assert!(tar == again);

    let mut names = Vec::new();
    let mut archive = tar::Archive::new(&tar[..]);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        assert!(h.mtime().unwrap() <= 1_000_000);
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        let path = e.path().unwrap().into_owned();
        let mut pax = Vec::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                pax.push(format!(
                    "{}={}",
                    x.key().unwrap(),
                    String::from_utf8_lossy(x.value_bytes())
                ));
            }
        }
        if path.as_os_str().as_bytes() == b"caps" {
            assert_eq!(pax, ["SCHILY.xattr.user.kiln=v"]);
        }
        if path.as_os_str().as_bytes() == b"big-ids" {
            assert_eq!(pax, ["gid=3000001", "uid=3000000"]);
        }
        if path.as_os_str().as_bytes() == b"h2" {
            assert_eq!(h.entry_type(), tar::EntryType::Link);
            assert_eq!(e.link_name().unwrap().unwrap().to_str(), Some("h1"));
        }
        names.push(path.display().to_string().trim_end_matches('/').to_string());
    }
    let long_file = format!("{}/{}", "d".repeat(120), "f".repeat(200));
    let expected = vec![
        "big-ids".to_string(),
        "caps".into(),
        format!("{}", "d".repeat(120)),
        long_file.clone(),
        ".wh.deleted".into(),
        "h1".into(),
        "h2".into(),
        "lib".into(),
        "opq".into(),
        "opq/.wh..wh..opq".into(),
        "opq/kept".into(),
        "suid".into(),
        "ünïcødé".into(),
    ];
    assert_eq!(names, expected);

    // Extracted as an overlay lower, it reproduces the upper dir.
    let back = kiln_testkit::tempdir();
    apply_layer_with(back.path(), &tar[..], ApplyMode::OverlayLower).unwrap();
    let strip = |p: &Path| {
        let mut fp = apply_common::fingerprint(p);
        for v in fp.values_mut() {
            *v = v.split(" mtime=").next().unwrap().to_string();
        }
        fp
    };
    assert_eq!(strip(back.path()), strip(upper.path()));
    let mut buf = [0u8; 4];
    let n =
        rustix::fs::lgetxattr(back.path().join("opq"), "trusted.overlay.opaque", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
    assert!(
        rustix::fs::lgetxattr(back.path().join("caps"), "trusted.overlay.origin", &mut buf)
            .is_err()
    );

    // GNU tar agrees on the names.
    let tar_file = tempfile::NamedTempFile::new().unwrap();
    fs::write(tar_file.path(), &tar).unwrap();
    let out = Command::new("tar")
        .arg("-tf")
        .arg(tar_file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    assert_eq!(listed, expected);
}

#[test]
fn empty_upper_is_an_empty_layer() {
    let upper = kiln_testkit::tempdir();
    let mut tar = Vec::new();
    let info = write_layer_from_upper(upper.path(), &mut tar, &LayerOptions::default()).unwrap();
    assert!(info.is_empty());
    assert_eq!(tar, vec![0u8; 1024]);
}
