//! What an untrusted image, context or a killed kiln can do to the host:
//! device nodes and privileges copied out (`kiln cp`, `-o type=local`),
//! whiteout-named files, exec helpers outliving kiln, a full disk.
//! Needs root and the base images (`scripts/test.sh` sets them up).

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::cli::{fails, kiln, ok};
use kiln_testkit as tk;

mod common;

/// A fresh root with busybox imported.
fn root_with_busybox() -> Option<(tempfile::TempDir, PathBuf)> {
    if !(tk::require_root() && tk::require_base_images()) {
        return None;
    }
    let tmp = tk::tempdir();
    let root = tmp.path().join("root");
    ok(kiln(&root)
        .arg("import")
        .arg(tk::busybox_rootfs_tar())
        .arg("busybox:latest"));
    Some((tmp, root))
}

/// A rootfs tar an attacker could publish: the host's disk as a
/// world-writable block device, a character device, a setuid binary and a
/// file of a foreign owner.
fn hostile_rootfs_tar(path: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, ty: tar::EntryType, mode: u32, uid: u64, dev: Option<(u32, u32)>| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_size(if ty == tar::EntryType::Regular { 2 } else { 0 });
        if let Some((major, minor)) = dev {
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
        }
        let data: &[u8] = if ty == tar::EntryType::Regular {
            b"x\n"
        } else {
            b""
        };
        b.append_data(&mut h, name, data).unwrap();
    };
    add("dev/", tar::EntryType::Directory, 0o755, 0, None);
    add("dev/disk", tar::EntryType::Block, 0o666, 0, Some((254, 0)));
    add("dev/mem", tar::EntryType::Char, 0o666, 0, Some((1, 1)));
    add("bin/", tar::EntryType::Directory, 0o755, 0, None);
    add("bin/su", tar::EntryType::Regular, 0o4755, 0, None);
    add("home/", tar::EntryType::Directory, 0o755, 0, None);
    add("home/user-file", tar::EntryType::Regular, 0o644, 1234, None);
    b.finish().unwrap();
}

fn assert_nothing_dangerous(dir: &Path, report: &str) {
    for dev in ["dev/disk", "dev/mem"] {
        assert!(
            std::fs::symlink_metadata(dir.join(dev)).is_err(),
            "{dev} was created on the host"
        );
        assert!(
            report.contains(&format!("{dev}: ")),
            "{dev} not named in: {report}"
        );
    }
    let su = std::fs::metadata(dir.join("bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o755, "setuid bit kept");
    let user = std::fs::metadata(dir.join("home/user-file")).unwrap();
    assert_eq!((user.uid(), user.gid()), (0, 0), "foreign owner kept");
    for name in ["bin/su: setuid", "home/user-file: owner 1234:1234"] {
        assert!(report.contains(name), "{name:?} not named in: {report}");
    }
}

#[test]
fn cp_and_local_output_create_no_device_nodes() {
    let Some((tmp, root)) = root_with_busybox() else {
        return;
    };
    let image = tmp.path().join("hostile.tar");
    hostile_rootfs_tar(&image);
    ok(kiln(&root).arg("import").arg(&image).arg("hostile:1"));

    let out = tmp.path().join("cp");
    let report = ok(kiln(&root).args(["cp", "hostile:1:/"]).arg(&out));
    assert_nothing_dangerous(&out, &report);

    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM hostile:1\n").unwrap();
    let local = tmp.path().join("local");
    let report = ok(kiln(&root)
        .args(["build", "--progress", "plain", "-o"])
        .arg(format!("type=local,dest={}", local.display()))
        .arg(&ctx));
    assert_nothing_dangerous(&local, &report);

    // Asked for explicitly, everything is kept.
    let trusted = tmp.path().join("trusted");
    ok(kiln(&root)
        .args([
            "cp",
            "--devices",
            "--keep-setid",
            "--archive",
            "hostile:1:/",
        ])
        .arg(&trusted));
    let disk = std::fs::symlink_metadata(trusted.join("dev/disk")).unwrap();
    assert!(disk.file_type().is_block_device());
    assert_eq!(
        std::fs::metadata(trusted.join("bin/su")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        std::fs::metadata(trusted.join("home/user-file"))
            .unwrap()
            .uid(),
        1234
    );
}

#[test]
fn whiteout_named_files_are_refused() {
    let Some((tmp, root)) = root_with_busybox() else {
        return;
    };
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("etc")).unwrap();
    std::fs::write(ctx.join("etc/.wh.passwd"), "").unwrap();
    for (dockerfile, name) in [
        ("FROM busybox:latest\nCOPY etc /etc\n", "/etc/.wh.passwd"),
        ("FROM busybox:latest\nADD etc /etc\n", "/etc/.wh.passwd"),
        (
            "FROM busybox:latest\nRUN mkdir /d && touch /d/.wh..wh..opq\n",
            "/d/.wh..wh..opq",
        ),
    ] {
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        let err = fails(kiln(&root).args(["build", "-t", "wh:1"]).arg(&ctx));
        assert!(
            err.contains(&format!("{name}: a file named \".wh.*\" cannot be stored")),
            "{dockerfile}: {err}"
        );
    }
    let images = ok(kiln(&root).arg("images"));
    assert!(!images.contains("wh "), "{images}");
}

/// Processes started as exec helpers for bundles under `root`, with their
/// parent pid; zombies excluded.
fn helpers_of(root: &Path) -> Vec<(u32, u32)> {
    let bundles = root.join("tmp/exec/bundles");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let (Ok(cmdline), Ok(stat)) = (
            std::fs::read(format!("/proc/{pid}/cmdline")),
            std::fs::read_to_string(format!("/proc/{pid}/stat")),
        ) else {
            continue;
        };
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let bundle = argv
            .get(3)
            .map(|b| Path::new(std::str::from_utf8(b).unwrap_or("")));
        if argv.get(1) != Some(&&b"__kiln-exec-helper"[..])
            || !bundle.is_some_and(|b| b.starts_with(&bundles))
        {
            continue;
        }
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        if fields[0] != "Z" {
            found.push((pid, fields[1].parse().unwrap()));
        }
    }
    found
}

/// Waits (bounded) until no helper of `root` is left re-parented to init.
fn orphans_after_kill(root: &Path) -> Vec<(u32, u32)> {
    for _ in 0..400 {
        let orphans: Vec<_> = helpers_of(root).into_iter().filter(|h| h.1 == 1).collect();
        if orphans.is_empty() {
            return orphans;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    helpers_of(root).into_iter().filter(|h| h.1 == 1).collect()
}

#[test]
fn exec_helpers_die_with_a_killed_kiln() {
    let Some((tmp, root)) = root_with_busybox() else {
        return;
    };
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let mut dockerfile = String::from("FROM busybox:latest\n");
    for i in 0..12 {
        dockerfile.push_str(&format!("RUN echo {i} > /f{i}\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    // Random delays from a fixed seed, spread over a whole build.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let mut left = Vec::new();
    for round in 0..50 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = std::time::Duration::from_millis(200 + (seed >> 33) % 2300);
        let mut child = kiln(&root)
            .args(["build", "--no-cache", "-q"])
            .arg(&ctx)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        let orphans = orphans_after_kill(&root);
        if !orphans.is_empty() {
            left.push(format!("round {round} ({delay:?}): {orphans:?}"));
            for (pid, _) in orphans {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
    assert!(
        left.is_empty(),
        "helpers outlived kiln:\n{}",
        left.join("\n")
    );
    // The killed builds' step mounts: the next kiln detaches them.
    tk::age_active_snapshots(&root);
    ok(kiln(&root).args(["system", "df"]));
    assert_eq!(tk::mounts_under(&root), Vec::<String>::new());
}

#[test]
fn next_run_kills_helpers_whose_kiln_is_gone() {
    let Some((tmp, root)) = root_with_busybox() else {
        return;
    };
    // A process that looks like a helper of this root whose kiln is dead.
    let dead = {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(
        bin.join("__kiln-exec-helper"),
        "while :; do sleep 1; done\n",
    )
    .unwrap();
    let bundles = root.join("tmp/exec/bundles");
    std::fs::create_dir_all(&bundles).unwrap();
    let bundle = bundles.canonicalize().unwrap().join("kiln-test-0");
    let mut fake = Command::new("sh")
        .current_dir(&bin)
        .arg("__kiln-exec-helper")
        .arg("youki")
        .arg(&bundle)
        .args(["state", "kiln-test-0", &dead.to_string(), "capture", "runc"])
        .spawn()
        .unwrap();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox:latest\n").unwrap();
    ok(kiln(&root).args(["build", "-q"]).arg(&ctx));
    let mut status = None;
    for _ in 0..200 {
        status = fake.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if status.is_none() {
        let _ = fake.kill();
    }
    let status = status.expect("the next kiln run left the orphaned helper running");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
}

/// Unmounts a tmpfs when dropped.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn import_on_a_full_disk_names_the_disk() {
    if !(tk::require_root() && tk::require_base_images()) {
        return;
    }
    let tmp = tk::tempdir();
    let mnt = tmp.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success(), "mounting a tmpfs");
    let _guard = Tmpfs(mnt.clone());
    let root = mnt.join("root");
    let input = tk::debian_rootfs_tar();
    let size = std::fs::metadata(&input).unwrap().len();
    let err = fails(kiln(&root).arg("import").arg(&input).arg("big:1"));
    assert!(err.contains("the disk is full"), "{err}");
    assert!(
        err.contains(root.to_str().unwrap()),
        "store path missing: {err}"
    );
    assert!(
        err.contains(&format!("{size} bytes")),
        "input size missing: {err}"
    );
    assert!(!err.contains("not a readable tar"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// `kiln load` onto a full disk blames the disk (naming the store path),
/// never the archive, whether the archive comes from a file or stdin.
#[test]
fn load_on_a_full_disk_names_the_disk() {
    let Some((tmp, big)) = root_with_busybox() else {
        return;
    };
    let archive = tmp.path().join("busybox.tar");
    ok(kiln(&big)
        .args(["save", "-o"])
        .arg(&archive)
        .arg("busybox:latest"));
    let mnt = tmp.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=600k", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success(), "mounting a tmpfs");
    let _guard = Tmpfs(mnt.clone());
    let root = mnt.join("root");
    let from_file = fails(kiln(&root).arg("load").arg("-i").arg(&archive));
    let from_stdin = fails(
        kiln(&root)
            .arg("load")
            .stdin(std::fs::File::open(&archive).unwrap()),
    );
    for err in [from_file, from_stdin] {
        assert!(err.contains("the disk is full"), "{err}");
        assert!(
            err.contains(root.to_str().unwrap()),
            "store path missing: {err}"
        );
        assert!(
            !err.contains("corrupt") && !err.contains("not valid"),
            "{err}"
        );
    }
    let left: Vec<_> = std::fs::read_dir(root.join("ingest")).unwrap().collect();
    assert!(left.is_empty(), "temp files left in the store: {left:?}");
}

#[test]
fn run_mount_errors_name_the_mount_once() {
    let Some((tmp, root)) = root_with_busybox() else {
        return;
    };
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("there.txt"), "x").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\nRUN --mount=type=bind,source=ther.txt,target=/t cat /t\n",
    )
    .unwrap();
    let err = fails(kiln(&root).args(["build", "-q"]).arg(&ctx));
    assert!(
        err.contains("RUN --mount=type=bind,source=ther.txt"),
        "{err}"
    );
    assert!(!err.contains("COPY"), "{err}");
    assert_eq!(err.matches("not found").count(), 1, "{err}");
    assert!(err.contains("did you mean \"there.txt\""), "{err}");
}

/// Names below `dir`, relative, as bytes, sorted.
fn names_below(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in std::fs::read_dir(dir.join(&rel)).unwrap() {
            let e = e.unwrap();
            let name = rel.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                todo.push(name.clone());
            }
            out.push(name.into_os_string().into_vec());
        }
    }
    out.sort();
    out
}

/// Linux file names are bytes, not text: a context holding names that are
/// not UTF-8 builds as it does with Docker, every name byte-exact through
/// `.dockerignore`, COPY, the layer tar, COPY --from, `docker load`, and
/// back onto the host with `kiln cp` and `-o type=local`.
#[test]
fn non_utf8_names_are_copied_byte_exact() {
    let Some((tmp, root)) = root_with_busybox() else {
        return;
    };
    if !tk::require_docker() {
        return;
    }
    let ctx = tmp.path().join("ctx");
    let dir: &[u8] = b"d\xFF\xFEir";
    let file: &[u8] = b"caf\xC3(\xA9.txt";
    let inner: &[u8] = b"in\x80ner";
    let at = |rel: &[u8]| ctx.join(OsStr::from_bytes(rel));
    std::fs::create_dir_all(at(dir)).unwrap();
    std::fs::write(at(file), "bytes\n").unwrap();
    std::fs::write(at(dir).join(OsStr::from_bytes(inner)), "inner\n").unwrap();
    std::fs::write(at(b"skip\xE9.log"), "ignored\n").unwrap();
    std::fs::write(
        ctx.join(".dockerignore"),
        "*.log\nDockerfile\n.dockerignore\n",
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest AS tree\nCOPY . /x/\nFROM tree\nCOPY --from=tree /x /y\n",
    )
    .unwrap();
    let tag = format!("kiln-bytes-{}:1", std::process::id());
    ok(kiln(&root).args(["build", "-q", "-t", &tag]).arg(&ctx));

    let rel = [file.to_vec(), dir.to_vec(), [dir, b"/", inner].concat()];
    let mut want: Vec<Vec<u8>> = Vec::new();
    for top in [&b"/x"[..], b"/y"] {
        want.push(top.to_vec());
        want.extend(rel.iter().map(|r| [top, b"/", r].concat()));
    }
    want.sort();

    let archive = tmp.path().join("bytes.tar");
    ok(kiln(&root).args(["save", "-o"]).arg(&archive).arg(&tag));
    let load = tk::docker()
        .arg("load")
        .arg("-i")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(load.status.success(), "{}", common::cli::text(&load));
    let run = tk::docker()
        .args(["run", "--rm", &tag, "find", "/x", "/y"])
        .output()
        .unwrap();
    let _ = tk::docker().args(["rmi", "-f", &tag]).output();
    assert!(run.status.success(), "{}", common::cli::text(&run));
    let mut seen: Vec<Vec<u8>> = run
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    seen.sort();
    assert_eq!(seen, want, "docker run find /x /y");

    let mut want_rel = rel.to_vec();
    want_rel.sort();
    let cp = tmp.path().join("cp");
    ok(kiln(&root).arg("cp").arg(format!("{tag}:/y")).arg(&cp));
    assert_eq!(names_below(&cp), want_rel, "kiln cp");
    let local = tmp.path().join("local");
    ok(kiln(&root)
        .args(["build", "-q", "-o"])
        .arg(format!("type=local,dest={}", local.display()))
        .arg(&ctx));
    assert_eq!(names_below(&local.join("x")), want_rel, "-o type=local");
}

/// Messages that name a file whose name is not UTF-8 show its bytes
/// escaped (`\xC3`), never raw.
#[test]
fn non_utf8_names_print_escaped() {
    let Some((tmp, root)) = root_with_busybox() else {
        return;
    };
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("etc")).unwrap();
    std::fs::write(
        ctx.join("etc").join(OsStr::from_bytes(b".wh.caf\xC3(")),
        "x",
    )
    .unwrap();
    // Builds `dockerfile`, which must fail without printing a raw 0xC3
    // (checked on the raw bytes, so not through `common::cli::fails`).
    let build_fails = |dockerfile: &str| {
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        let o = kiln(&root)
            .args(["build", "-q"])
            .arg(&ctx)
            .output()
            .unwrap();
        let err = common::cli::text(&o);
        assert!(!o.status.success(), "{err}");
        assert!(!o.stderr.contains(&0xC3), "raw byte printed: {err}");
        err
    };
    let err = build_fails("FROM busybox:latest\nCOPY etc /etc/\n");
    assert!(err.contains(r".wh.caf\xC3("), "{err}");

    // A wildcard naming such a file at the top of a COPY is refused (the
    // destination would be named after it), never silently skipped.
    let err = build_fails("FROM busybox:latest\nCOPY etc/*( /x/\n");
    assert!(
        err.contains(r"etc/.wh.caf\xC3(") && err.contains("not UTF-8"),
        "{err}"
    );
}
