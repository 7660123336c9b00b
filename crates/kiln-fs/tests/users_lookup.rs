//! /etc/passwd and /etc/group lookups inside a rootfs.

use std::fs;
use std::os::unix::fs::symlink;

use kiln_fs::users::{lookup_chown, lookup_file_owner, lookup_user, Ids, UserError};

fn rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::create_dir(d.path().join("etc")).unwrap();
    fs::write(
        d.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:2000::/home/app:/bin/sh\nbroken line\n",
    )
    .unwrap();
    fs::write(
        d.path().join("etc/group"),
        "root:x:0:\nappg:x:2000:\nother:x:3000:app,root\nwheel:x:10:root\n",
    )
    .unwrap();
    d
}

#[test]
fn name_gets_primary_group_and_memberships() {
    let r = rootfs();
    let ids = lookup_user(r.path(), "app").unwrap();
    assert_eq!(
        ids,
        Ids {
            uid: 1000,
            gid: 2000,
            additional_gids: vec![2000, 3000]
        }
    );
    let root = lookup_user(r.path(), "root").unwrap();
    assert_eq!(root.additional_gids, vec![0, 10, 3000]);
}

#[test]
fn explicit_group_by_name_or_number() {
    let r = rootfs();
    assert_eq!(lookup_user(r.path(), "app:other").unwrap().gid, 3000);
    assert_eq!(lookup_user(r.path(), "app:77").unwrap().gid, 77);
    assert_eq!(lookup_user(r.path(), "1000:appg").unwrap().gid, 2000);
}

#[test]
fn numeric_ids_work_without_entries_or_files() {
    let r = rootfs();
    let ids = lookup_user(r.path(), "4242").unwrap();
    assert_eq!((ids.uid, ids.gid), (4242, 0));
    // A known numeric uid takes its passwd primary group for RUN.
    assert_eq!(lookup_user(r.path(), "1000").unwrap().gid, 2000);
    let empty = tempfile::tempdir().unwrap();
    let ids = lookup_user(empty.path(), "5:6").unwrap();
    assert_eq!((ids.uid, ids.gid, ids.additional_gids), (5, 6, vec![6]));
}

#[test]
fn chown_rules_match_docker() {
    let r = rootfs();
    // Checked with Docker 20.10: name → primary group, number alone → gid = uid.
    assert_eq!(lookup_chown(r.path(), "app").unwrap(), (1000, 2000));
    assert_eq!(lookup_chown(r.path(), "1000").unwrap(), (1000, 1000));
    assert_eq!(lookup_chown(r.path(), "4242").unwrap(), (4242, 4242));
    assert_eq!(lookup_chown(r.path(), "app:other").unwrap(), (1000, 3000));
}

#[test]
fn unknown_names_are_errors_naming_the_file() {
    let r = rootfs();
    let e = lookup_user(r.path(), "nobody").unwrap_err();
    assert!(matches!(e, UserError::NoUser { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("nobody") && msg.contains("etc/passwd"),
        "{msg}"
    );
    let e = lookup_chown(r.path(), "app:nogroup")
        .unwrap_err()
        .to_string();
    assert!(e.contains("nogroup") && e.contains("etc/group"), "{e}");
    // Names need the files: none in the rootfs → not found.
    let empty = tempfile::tempdir().unwrap();
    assert!(lookup_user(empty.path(), "app").is_err());
    assert!(lookup_user(r.path(), "").is_err());
    assert!(lookup_user(r.path(), "app:").is_err());
}

#[test]
fn passwd_symlink_cannot_leave_the_rootfs() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
    let r = tempfile::tempdir().unwrap();
    fs::create_dir(r.path().join("etc")).unwrap();
    // Absolute and relative escapes both resolve inside the rootfs.
    let depth = r.path().components().count() + 2;
    let rel = format!(
        "{}{}",
        "../".repeat(depth),
        outside.path().join("passwd").display()
    );
    symlink(&rel, r.path().join("etc/passwd")).unwrap();
    symlink(outside.path().join("group"), r.path().join("etc/group")).unwrap();
    assert!(matches!(
        lookup_user(r.path(), "evil"),
        Err(UserError::NoUser { .. })
    ));
    // The same target inside the rootfs is what is read.
    let inner = r.path().join(outside.path().strip_prefix("/").unwrap());
    fs::create_dir_all(&inner).unwrap();
    fs::write(inner.join("passwd"), "inside:x:7:8::/:/bin/sh\n").unwrap();
    assert_eq!(lookup_chown(r.path(), "inside").unwrap(), (7, 8));
}

#[test]
fn file_owner_follows_buildkit_read_user() {
    let r = rootfs();
    let owner = |spec| lookup_file_owner(r.path(), spec).unwrap();
    assert_eq!(owner("app"), (1000, 2000));
    // A numeric uid alone: gid = uid, even when passwd knows another group.
    assert_eq!(owner("1000"), (1000, 1000));
    assert_eq!(owner("3000:3001"), (3000, 3001));
    assert_eq!(owner("app:other"), (1000, 3000));
    assert_eq!(owner("root"), (0, 0));
    // Unknown names are not errors: BuildKit leaves 0 / the user's gid.
    assert_eq!(owner("ghost"), (0, 0));
    assert_eq!(owner("app:ghosts"), (1000, 2000));
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(lookup_file_owner(empty.path(), "nobody").unwrap(), (0, 0));
}
