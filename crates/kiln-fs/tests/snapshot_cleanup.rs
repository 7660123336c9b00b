//! Snapshot dirs left by a process that died are removed (and their mounts
//! detached) when the snapshots are opened; ones in use are not.
//! Needs root (mounts).

use std::fs;
use std::path::Path;

use kiln_fs::{CopySnapshotter, Snapshots, Snapshotter};
use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps, CWD};

fn age(path: &Path) {
    let old = Timespec {
        tv_sec: 1_000_000,
        tv_nsec: 0,
    };
    let ts = Timestamps {
        last_access: old,
        last_modification: old,
    };
    utimensat(CWD, path, &ts, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

#[test]
fn stale_snapshot_dirs_are_removed_live_ones_kept() {
    if !kiln_testkit::require_root() {
        return;
    }
    let dir = kiln_testkit::tempdir();
    let snaps = Snapshots::open(dir.path()).unwrap();
    let active = snaps.root().join("active");

    // A crashed step: its dir with a mount still on merged/, no lock held.
    let stale = active.join("ovl-dead");
    fs::create_dir_all(stale.join("merged")).unwrap();
    fs::create_dir_all(stale.join("upper")).unwrap();
    fs::write(stale.join("upper/f"), b"x").unwrap();
    rustix::mount::mount_bind(stale.join("upper"), stale.join("merged")).unwrap();
    fs::write(active.join("ovl-dead.lock"), b"").unwrap();
    age(&stale);
    // An extraction that died half-way, without even a lock file.
    let half = snaps.root().join("tmp/snap-dead");
    fs::create_dir_all(half.join("fs/usr")).unwrap();
    age(&half);

    // A live snapshot, old enough to be considered, but locked.
    let s = CopySnapshotter::new(snaps.clone());
    let live = s.prepare(&[]).unwrap();
    age(live.dir());

    let reopened = Snapshots::open(dir.path()).unwrap();
    assert!(!stale.exists());
    assert!(!half.exists());
    assert!(!active.join("ovl-dead.lock").exists());
    assert!(live.dir().exists(), "a live snapshot was removed");
    assert_eq!(reopened.cleanup_stale().unwrap(), 0);
    let live_dir = live.dir().to_path_buf();
    s.remove(live).unwrap();
    assert!(!live_dir.exists());
    // Only the lock files of nothing remain: none.
    assert_eq!(fs::read_dir(&active).unwrap().count(), 0);
}
