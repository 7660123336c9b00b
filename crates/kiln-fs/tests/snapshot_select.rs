//! Choosing the snapshotter: `KILN_SNAPSHOTTER` wins, otherwise overlay
//! when it works. One test in its own binary, as it sets the variable.

use kiln_fs::{snapshotter, SnapshotError, Snapshots};

#[test]
fn env_override_and_probe() {
    let dir = kiln_testkit::tempdir();
    let snaps = Snapshots::open(dir.path()).unwrap();
    std::env::set_var("KILN_SNAPSHOTTER", "copy");
    assert_eq!(snapshotter(snaps.clone()).unwrap().name(), "copy");
    std::env::set_var("KILN_SNAPSHOTTER", "zfs");
    let err = snapshotter(snaps.clone()).err().expect("unknown backend");
    assert!(matches!(err, SnapshotError::UnknownBackend(_)));
    assert!(err.to_string().contains("zfs"));
    if kiln_testkit::require_root() {
        std::env::set_var("KILN_SNAPSHOTTER", "overlay");
        assert_eq!(snapshotter(snaps.clone()).unwrap().name(), "overlay");
        std::env::remove_var("KILN_SNAPSHOTTER");
        assert_eq!(snapshotter(snaps.clone()).unwrap().name(), "overlay");
        // The success is remembered for this boot, so the next process
        // skips the probe's mount.
        let marker = std::fs::read_to_string(snaps.root().join("overlay-works")).unwrap();
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
        assert!(marker.starts_with(boot.trim()), "{marker}");
    }
    // The probe leaves nothing behind.
    assert_eq!(
        std::fs::read_dir(snaps.root().join("tmp")).unwrap().count(),
        0
    );
}
