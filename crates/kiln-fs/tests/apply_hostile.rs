//! Hostile layers: whatever a layer holds, nothing outside the extraction
//! target is created, changed, deleted or linked. Each case runs in both
//! apply modes; some must fail, all must leave the outside untouched.

#[path = "apply_common/mod.rs"]
mod apply_common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use apply_common::{Arena, Tar};
use kiln_fs::{apply_layer_with, ApplyError, ApplyMode};
use tar::EntryType;

const MODES: [ApplyMode; 2] = [ApplyMode::Merge, ApplyMode::OverlayLower];

/// Per-binary setup: nothing here; `apply_hostile_userspace.rs` runs these
/// same cases with the user-space path walk.
#[allow(dead_code)]
pub fn setup() {}

fn host_passwd() -> (u64, i64, u64) {
    let md = fs::metadata("/etc/passwd").unwrap();
    (md.ino(), md.mtime(), md.nlink())
}

/// Applies the tar built by `build` (given the outside dir's absolute path)
/// and checks the outside is unchanged. Returns the apply result.
fn run(
    mode: ApplyMode,
    build: impl Fn(&str) -> Vec<u8>,
) -> (Arena, Result<kiln_fs::ApplyStats, ApplyError>) {
    crate::setup();
    let arena = Arena::new();
    let before = arena.outside_state();
    let passwd = host_passwd();
    let tar = build(arena.outside().to_str().unwrap());
    let res = apply_layer_with(&arena.root(), &tar[..], mode);
    assert_eq!(arena.outside_state(), before, "outside changed ({mode:?})");
    assert_eq!(host_passwd(), passwd, "host /etc/passwd changed");
    assert!(!std::path::Path::new("/kiln-pwned").exists());
    (arena, res)
}

fn refused(res: &Result<kiln_fs::ApplyStats, ApplyError>) -> bool {
    matches!(res, Err(ApplyError::Refused { .. }))
}

#[test]
fn dotdot_names_are_refused() {
    for mode in MODES {
        for name in [
            "../escape",
            "a/../../escape",
            "./../escape",
            "a/b/../../../x",
            "..",
        ] {
            let (_, res) = run(mode, |_| Tar::new().file(name, b"x").finish());
            assert!(refused(&res), "{name}: {res:?}");
        }
        let (_, res) = run(mode, |_| Tar::new().dir("../outside/newdir").finish());
        assert!(refused(&res), "{res:?}");
    }
}

#[test]
fn absolute_names_stay_inside() {
    for mode in MODES {
        let (arena, res) = run(mode, |out| {
            Tar::new()
                .file("/kiln-pwned", b"x")
                .file(&format!("{out}/secret"), b"overwritten")
                .file("///./abs/f", b"y")
                .finish()
        });
        res.unwrap();
        assert_eq!(fs::read(arena.root().join("kiln-pwned")).unwrap(), b"x");
        let inner = arena
            .root()
            .join(arena.outside().strip_prefix("/").unwrap());
        assert_eq!(fs::read(inner.join("secret")).unwrap(), b"overwritten");
        assert_eq!(fs::read(arena.root().join("abs/f")).unwrap(), b"y");
    }
}

#[test]
fn writing_through_symlinks_stays_inside() {
    for mode in MODES {
        // Absolute symlink to the real outside dir, relative one climbing
        // out, and one to `/`: children resolve as if chrooted.
        let (arena, _) = run(mode, |out| {
            Tar::new()
                .symlink("abs", out)
                .file("abs/secret", b"pwned")
                .file("abs/new", b"pwned")
                .finish()
        });
        assert!(!arena.outside().join("new").exists());
        let (_, _) = run(mode, |_| {
            Tar::new()
                .symlink("rel", "../outside")
                .file("rel/secret", b"pwned")
                .symlink("deep", "../../../../../../../..")
                .file("deep/kiln-pwned", b"pwned")
                .finish()
        });
        let (arena, res) = run(mode, |_| {
            Tar::new()
                .symlink("slash", "/")
                .file("slash/etc/kiln-test", b"inside")
                .finish()
        });
        res.unwrap();
        assert_eq!(
            fs::read(arena.root().join("etc/kiln-test")).unwrap(),
            b"inside"
        );
        // A directory entry on top of a symlink replaces the symlink.
        let (arena, res) = run(mode, |out| {
            Tar::new()
                .symlink("d", out)
                .dir("d")
                .file("d/x", b"1")
                .finish()
        });
        res.unwrap();
        assert!(arena.root().join("d").is_dir());
        assert!(!arena.root().join("d").is_symlink());
    }
}

#[test]
fn replacing_a_symlink_with_a_file_does_not_write_its_target() {
    for mode in MODES {
        let (arena, res) = run(mode, |out| {
            Tar::new()
                .symlink("f", &format!("{out}/secret"))
                .file("f", b"pwned")
                .symlink("g", "../outside/secret")
                .hardlink("h", "g")
                .file("h", b"pwned")
                .finish()
        });
        res.unwrap();
        assert_eq!(fs::read(arena.root().join("f")).unwrap(), b"pwned");
    }
}

#[test]
fn symlink_swapped_in_for_a_parent_stays_inside() {
    for mode in MODES {
        let (arena, res) = run(mode, |out| {
            Tar::new()
                .dir("d")
                .file("d/x", b"1")
                .symlink("d", out)
                .file("d/secret", b"pwned")
                .file("d/y", b"2")
                .finish()
        });
        // Either refused or created below the root; never outside.
        if res.is_ok() {
            assert!(fs::symlink_metadata(arena.root().join("d"))
                .unwrap()
                .is_symlink());
        }
    }
}

#[test]
fn existing_symlinks_in_the_target_are_not_followed_out() {
    crate::setup();
    for mode in MODES {
        let arena = Arena::new();
        let out = arena.outside();
        std::os::unix::fs::symlink(&out, arena.root().join("etc")).unwrap();
        std::os::unix::fs::symlink(out.join("secret"), arena.root().join("file")).unwrap();
        let before = arena.outside_state();
        let tar = Tar::new()
            .file("etc/secret", b"pwned")
            .file("file", b"replaced")
            .raw(EntryType::Fifo, b"etc/fifo", b"", 0o644, b"", &[])
            .file("etc/.wh.secret", b"")
            .file("etc/.wh..wh..opq", b"")
            .finish();
        let _ = apply_layer_with(&arena.root(), &tar[..], mode);
        assert_eq!(arena.outside_state(), before, "{mode:?}");
    }
}

#[test]
fn hardlinks_cannot_reach_outside() {
    for mode in MODES {
        let (_, res) = run(mode, |_| {
            Tar::new().hardlink("h", "../outside/secret").finish()
        });
        assert!(refused(&res), "{res:?}");
        let (_, res) = run(mode, |_| {
            Tar::new().hardlink("passwd", "/etc/passwd").finish()
        });
        assert!(refused(&res), "{res:?}");
        let (_, res) = run(mode, |out| {
            Tar::new()
                .symlink("s", out)
                .hardlink("h", "s/secret")
                .finish()
        });
        assert!(res.is_err(), "{res:?}");
        let (_, res) = run(mode, |_| {
            Tar::new()
                .symlink("up", "../../../../..")
                .hardlink("h", "up/etc/passwd")
                .finish()
        });
        assert!(res.is_err(), "{res:?}");
        let (_, res) = run(mode, |_| Tar::new().hardlink("h", "/").finish());
        assert!(refused(&res), "{res:?}");
    }
}

#[test]
fn whiteouts_cannot_delete_outside() {
    for mode in MODES {
        for name in [".wh..", ".wh...", "a/.wh..", "a/.wh...", ".wh."] {
            let (_, res) = run(mode, |_| Tar::new().dir("a").file(name, b"").finish());
            assert!(refused(&res), "{name}: {res:?}");
        }
        let (_, res) = run(mode, |_| {
            Tar::new().file("../outside/.wh.secret", b"").finish()
        });
        assert!(refused(&res), "{res:?}");
        let (_, res) = run(mode, |out| {
            Tar::new()
                .symlink("s", out)
                .file("s/.wh.secret", b"")
                .file("s/.wh.dir", b"")
                .symlink("r", "../outside")
                .file("r/.wh..wh..opq", b"")
                .finish()
        });
        let _ = res;
    }
}

#[test]
fn huge_names_fail_cleanly() {
    for mode in MODES {
        let long_comp = "x".repeat(300);
        let (_, res) = run(mode, |_| Tar::new().file(&long_comp, b"x").finish());
        assert!(res.is_err());
        let deep = vec!["d".repeat(200); 40].join("/");
        let (_, res) = run(mode, |_| Tar::new().file(&deep, b"x").finish());
        assert!(res.is_err());
        let mut dotted = "a/".repeat(3000);
        dotted.push_str("../".repeat(3001).as_str());
        let (_, res) = run(mode, |_| Tar::new().file(&dotted, b"x").finish());
        assert!(refused(&res), "{res:?}");
        let link_target = "../".repeat(5000);
        let (_, res) = run(mode, |_| {
            Tar::new()
                .symlink("l", &link_target)
                .file("l/kiln-pwned", b"x")
                .finish()
        });
        let _ = res;
    }
}

#[test]
fn truncated_and_garbage_input_is_an_error() {
    for mode in MODES {
        let (_, res) = run(mode, |_| {
            let t = Tar::new().file("a", &[7u8; 4000]).finish();
            t[..1500].to_vec()
        });
        assert!(
            matches!(
                res,
                Err(ApplyError::Read(_)) | Err(ApplyError::Entry { .. })
            ),
            "{res:?}"
        );
        let (_, res) = run(mode, |_| vec![0xAB; 2048]);
        assert!(res.is_err());
    }
}

#[test]
fn symlink_loops_fail_cleanly() {
    for mode in MODES {
        let (_, res) = run(mode, |_| {
            Tar::new()
                .symlink("a", "b")
                .symlink("b", "/a")
                .file("a/x", b"x")
                .finish()
        });
        assert!(res.is_err(), "{res:?}");
    }
}

#[test]
fn rewriting_a_hardlinked_name_leaves_the_other_name_alone() {
    for mode in MODES {
        let (arena, res) = run(mode, |_| {
            Tar::new()
                .dir("etc")
                .file("etc/passwd", b"root:x:0:0")
                .hardlink("h", "etc/passwd")
                .file("h", b"pwned")
                .finish()
        });
        res.unwrap();
        assert_eq!(
            fs::read(arena.root().join("etc/passwd")).unwrap(),
            b"root:x:0:0"
        );
        assert_eq!(fs::read(arena.root().join("h")).unwrap(), b"pwned");
    }
}
