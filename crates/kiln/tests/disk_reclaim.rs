//! Disk given back (issue 16 item 10): `kiln prune` removes the layer
//! snapshots and build cache nothing needs, `--all` drops the build cache,
//! the cache has an LRU size limit, `kiln system df` accounts for it all,
//! and builds running meanwhile stay correct. Needs root and the base
//! images (`scripts/test.sh` sets them up).

mod common;

use std::path::{Path, PathBuf};

use common::cli::{du, fails, kiln, ok};
use kiln_testkit as tk;

/// A fresh root with busybox imported, and a directory for contexts.
fn setup() -> Option<(tempfile::TempDir, PathBuf)> {
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

/// Builds `dockerfile` (with `files` in its context) as `tag`.
fn build(root: &Path, dir: &Path, tag: &str, dockerfile: &str, extra: &[&str]) -> String {
    let ctx = dir.join(format!("ctx-{}", tag.replace([':', '/'], "-")));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(ctx.join("small.txt"), "small\n").unwrap();
    ok(kiln(root)
        .args(["build", "--progress", "plain", "-t", tag])
        .args(extra)
        .arg(&ctx))
}

fn snapshot_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().len() == 64)
        .count()
}

/// Random (incompressible) bytes written by a RUN step.
fn big_run(name: &str, mb: u32) -> String {
    format!("FROM busybox\nRUN head -c {mb}000000 /dev/urandom > /{name}\n")
}

#[test]
fn rm_and_prune_return_the_disk_of_a_fresh_root() {
    let Some((tmp, root)) = setup() else { return };
    let dir = tmp.path();
    build(
        &root,
        dir,
        "small",
        "FROM busybox\nCOPY small.txt /\nRUN echo made > /made\n",
        &[],
    );
    build(&root, dir, "big1", &big_run("big1", 30), &[]);
    build(&root, dir, "big2", &big_run("big2", 20), &[]);
    let full = du(&root);
    let df = ok(kiln(&root).args(["system", "df"]));
    for row in [
        "Images",
        "Build cache",
        "Layer snapshots",
        "Cache mounts",
        "Unused blobs",
    ] {
        assert!(df.contains(row), "no {row} row in:\n{df}");
    }

    let snapshots = snapshot_count(&root);
    ok(kiln(&root).args(["rm", "big1", "big2"]));
    // Plain prune keeps what the cache records hold (under the default
    // limit): a tagged image's layers are the cache's own uncompressed
    // blobs, so only its config and manifest go.
    ok(kiln(&root).arg("prune"));
    let pruned = du(&root);
    assert!(pruned <= full, "{full} -> {pruned}: prune grew the store");
    assert_eq!(
        snapshot_count(&root),
        snapshots,
        "plain prune dropped cached snapshots"
    );
    // A limit of 0 evicts every record and what only they held (the
    // uncompressed layers and their snapshots); the images' snapshots stay.
    let out = ok(kiln(&root).args(["prune", "--cache-max-size", "0"]));
    let trimmed = du(&root);
    assert!(
        trimmed < pruned - 90_000_000,
        "{pruned} -> {trimmed} bytes:\n{out}"
    );
    assert!(
        snapshot_count(&root) > 0,
        "the images' snapshots were removed"
    );
    let out = ok(kiln(&root).args(["prune", "--all"]));
    assert_eq!(snapshot_count(&root), 0, "{out}");

    // The remaining images, loaded into a fresh root opened the same way.
    let archive = dir.join("remaining.tar");
    ok(kiln(&root)
        .args(["save", "-o"])
        .arg(&archive)
        .args(["busybox:latest", "small"]));
    let fresh = dir.join("fresh");
    ok(kiln(&fresh).arg("load").arg("-i").arg(&archive));
    ok(kiln(&fresh).args(["prune", "--all"]));
    let (after, want) = (du(&root), du(&fresh));
    eprintln!("du: {full} built, {pruned} after rm + prune, {trimmed} after prune --cache-max-size 0, {after} after prune --all, fresh root {want}");
    assert!(
        after.abs_diff(want) * 20 <= want,
        "store uses {after} bytes after rm + prune, a fresh root with the same images {want}"
    );
    ok(kiln(&root).arg("fsck"));
    // What is left still builds and runs.
    let out = build(
        &root,
        dir,
        "again",
        "FROM small\nRUN cat /made /small.txt\n",
        &[],
    );
    assert!(out.contains("made"), "{out}");
}

#[test]
fn lru_evicts_the_least_recently_used_records() {
    let Some((tmp, root)) = setup() else { return };
    let dir = tmp.path();
    for name in ["a", "b", "c"] {
        build(&root, dir, name, &big_run(name, 5), &[]);
    }
    // A hit makes `a` the most recently used.
    let out = build(&root, dir, "a", &big_run("a", 5), &[]);
    assert!(out.contains("CACHED"), "{out}");
    ok(kiln(&root).args(["rm", "a", "b", "c"]));
    // Each record holds a 5 MB blob and its ~5 MB snapshot: one fits.
    ok(kiln(&root).args(["prune", "--cache-max-size", "12MB"]));
    let a = build(&root, dir, "a", &big_run("a", 5), &[]);
    assert!(
        a.contains("CACHED"),
        "the recently used record was evicted:\n{a}"
    );
    for name in ["b", "c"] {
        let out = build(&root, dir, name, &big_run(name, 5), &[]);
        assert!(!out.contains("CACHED"), "{name} was kept over a:\n{out}");
    }
    // The limit also applies after a build.
    let out = build(
        &root,
        dir,
        "d",
        &big_run("d", 5),
        &["--cache-max-size", "0"],
    );
    assert!(!out.contains("CACHED"), "{out}");
    let again = build(&root, dir, "d", &big_run("d", 5), &[]);
    assert!(
        !again.contains("CACHED"),
        "--cache-max-size 0 kept the record:\n{again}"
    );
    ok(kiln(&root).arg("fsck"));
}

#[test]
fn a_trim_after_a_build_leaves_room_for_the_next_builds() {
    let Some((tmp, root)) = setup() else { return };
    let dir = tmp.path();
    // Three untagged records of ~10 MB (a 5 MB blob and its snapshot),
    // oldest first: ~30 MB.
    for name in ["a", "b", "c"] {
        build(&root, dir, name, &big_run(name, 5), &[]);
    }
    ok(kiln(&root).args(["rm", "a", "b", "c"]));
    build(
        &root,
        dir,
        "d",
        "FROM busybox\n",
        &["--cache-max-size", "23MB"],
    );
    // Over 23 MB, so trimmed to 80% of it (18.4 MB): a and b go, where
    // trimming to the limit would have taken a alone.
    for (name, kept) in [("c", true), ("b", false)] {
        let out = build(&root, dir, name, &big_run(name, 5), &[]);
        assert_eq!(out.contains("CACHED"), kept, "{name}:\n{out}");
    }
    ok(kiln(&root).arg("fsck"));
}

/// A `--no-cache` rebuild replaces its records and moves the tag on: the
/// layers the old ones held are kept by nothing, count against the limit
/// and go at the next trim, so a root rebuilt again and again stays
/// bounded (it grew by a layer blob and a snapshot per rebuild).
#[test]
fn no_cache_rebuilds_stay_within_the_cache_limit() {
    let Some((tmp, root)) = setup() else { return };
    let dir = tmp.path();
    let dockerfile = big_run("a", 5);
    let limit = ["--cache-max-size", "30MB"];
    build(&root, dir, "a", &dockerfile, &limit);
    let one = du(&root);
    for _ in 0..8 {
        build(
            &root,
            dir,
            "a",
            &dockerfile,
            &["--no-cache", limit[0], limit[1]],
        );
    }
    // ~10 MB left behind per rebuild: 80 MB without a trim, at most the
    // 30 MB limit (and the rebuild that passed it) with one.
    let grown = du(&root).saturating_sub(one);
    assert!(
        grown < 50_000_000,
        "8 rebuilds grew the root by {grown} bytes"
    );
    let df = ok(kiln(&root).args(["system", "df"]));
    let out = build(&root, dir, "a", &dockerfile, &[]);
    assert!(
        out.contains("CACHED"),
        "the latest record went:\n{out}\n{df}"
    );
    ok(kiln(&root).arg("fsck"));
}

#[test]
fn prune_all_during_a_build_leaves_it_correct() {
    let Some((tmp, root)) = setup() else { return };
    let dir = tmp.path();
    build(
        &root,
        dir,
        "base",
        "FROM busybox\nRUN head -c 20000000 /dev/urandom > /data && sha256sum /data > /data.sum\n",
        &[],
    );
    let ctx = dir.join("ctx-user");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM base\nRUN sleep 4 && sha256sum -c /data.sum && cp /data /copy\nRUN sha256sum /copy | cut -c1-64 > /copy.sum\n",
    )
    .unwrap();
    let mut child = kiln(&root)
        .args(["build", "--progress", "plain", "-t", "user"])
        .arg(&ctx)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Prune everything it may take while the build runs on base's snapshots.
    let mut prunes = 0;
    while child.try_wait().unwrap().is_none() && prunes < 30 {
        ok(kiln(&root).args(["prune", "--all", "-q"]));
        prunes += 1;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    let log = common::cli::text(&out);
    assert!(out.status.success(), "build failed while pruning:\n{log}");
    assert!(log.contains("/data: OK"), "{log}");
    ok(kiln(&root).args(["prune", "--all"]));
    let sums = ok(kiln(&root).args([
        "run",
        "--rm",
        "user",
        "sh",
        "-c",
        "cut -c1-64 /data.sum; cat /copy.sum",
    ]));
    let lines: Vec<&str> = sums.lines().filter(|l| l.len() == 64).collect();
    assert_eq!(lines.len(), 2, "{sums}");
    assert_eq!(lines[0], lines[1], "the copy differs from the data: {sums}");
    ok(kiln(&root).arg("fsck"));
}

/// A pulled or loaded layer extracted again after prune removed its
/// snapshot is verified against its diff_id again.
#[test]
fn re_extraction_after_prune_verifies_the_diff_id() {
    let Some((tmp, root)) = setup() else { return };
    let dir = tmp.path();
    build(&root, dir, "one", "FROM busybox\nRUN true\n", &[]);
    ok(kiln(&root).args(["prune", "--all"]));
    // Swap busybox's layer blob for another valid tar (as a disk or a
    // hand that edits the store could).
    let inspect = ok(kiln(&root).args(["inspect", "busybox:latest"]));
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("inspect prints JSON");
    let layer = v[0]["Manifest"]["layers"][0]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no layer digest in {inspect}"))
        .to_string();
    let blob = root
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "other", &b"xyz"[..]).unwrap();
    std::fs::write(&blob, b.into_inner().unwrap()).unwrap();
    let ctx = dir.join("ctx-two");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo again\n").unwrap();
    let err = fails(kiln(&root).args(["build", "--progress", "plain"]).arg(&ctx));
    assert!(err.contains("diff_id"), "{err}");
    assert_eq!(
        snapshot_count(&root),
        0,
        "a layer with the wrong diff_id became a snapshot"
    );
}
