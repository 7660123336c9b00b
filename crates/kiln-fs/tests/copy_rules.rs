//! COPY into a rootfs: Docker's destination rules, ownership, modes,
//! mtimes, links, exclusions, --parents, and hostile destinations.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use kiln_fs::context::{BuildContext, SourceRoot};
use kiln_fs::copy::{copy_into, write_heredoc, CopyError, CopyOptions};

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

const OLD: u64 = 981_173_106; // 2001-02-03

fn context() -> (tempfile::TempDir, BuildContext) {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "f.txt", "hello\n");
    write(r, "dir/a", "a");
    write(r, "dir/sub/b", "b");
    write(r, "dir/skip.md", "md");
    fs::set_permissions(r.join("dir/a"), fs::Permissions::from_mode(0o4755)).unwrap();
    symlink("../../outside", r.join("dir/esc")).unwrap();
    fs::hard_link(r.join("dir/sub/b"), r.join("dir/b2")).unwrap();
    symlink("f.txt", r.join("link")).unwrap();
    for p in ["f.txt", "dir/a", "dir/sub/b", "dir/sub"] {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(OLD);
        let f = fs::File::open(r.join(p)).unwrap();
        f.set_modified(t).unwrap();
    }
    std::os::unix::fs::chown(r.join("f.txt"), Some(1234), Some(4321)).unwrap();
    let ctx = BuildContext::open(r, None).unwrap();
    (d, ctx)
}

fn rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "etc/passwd",
        "root:x:0:0::/root:/bin/sh\napp:x:1000:2000::/home/app:/bin/sh\n",
    );
    write(d.path(), "etc/group", "root:x:0:\nappg:x:2000:\n");
    d
}

fn opts(sources: &[&str], dest: &str) -> CopyOptions {
    CopyOptions {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        dest: dest.into(),
        workdir: "/".into(),
        ..Default::default()
    }
}

fn meta(p: impl AsRef<Path>) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap()
}

#[test]
fn file_to_name_to_dir_and_through_workdir() {
    let (_c, ctx) = context();
    let root = rootfs();
    let r = root.path();
    copy_into(ctx.source(), r, &opts(&["f.txt"], "/x")).unwrap();
    assert_eq!(fs::read_to_string(r.join("x")).unwrap(), "hello\n");
    copy_into(ctx.source(), r, &opts(&["f.txt"], "/d/")).unwrap();
    assert!(r.join("d/f.txt").is_file());
    // An existing directory takes the file inside it even without a slash.
    copy_into(ctx.source(), r, &opts(&["f.txt"], "/d")).unwrap();
    assert!(r.join("d/f.txt").is_file());
    // Relative destinations are relative to WORKDIR.
    let mut o = opts(&["f.txt"], "rel/");
    o.workdir = "/app/w".into();
    copy_into(ctx.source(), r, &o).unwrap();
    assert!(r.join("app/w/rel/f.txt").is_file());
    let mut o = opts(&["f.txt"], ".");
    o.workdir = "/app".into();
    copy_into(ctx.source(), r, &o).unwrap();
    assert!(r.join("app/f.txt").is_file());
    // Several files onto a dest without a slash: copied one after the
    // other, as BuildKit does, so the last one is the file `/multi`.
    copy_into(ctx.source(), r, &opts(&["f.txt", "dir/a"], "/multi")).unwrap();
    assert_eq!(fs::read_to_string(r.join("multi")).unwrap(), "a");
    // A pattern matching nothing is skipped; nothing is created.
    copy_into(ctx.source(), r, &opts(&["*.nomatch"], "/none/")).unwrap();
    assert!(!r.join("none").exists());
}

#[test]
fn metadata_like_buildkit() {
    let (_c, ctx) = context();
    let root = rootfs();
    let r = root.path();
    copy_into(ctx.source(), r, &opts(&["f.txt", "dir"], "/t/")).unwrap();
    let f = meta(r.join("t/f.txt"));
    // Context files become 0:0; mode and mtime are kept.
    assert_eq!((f.uid(), f.gid()), (0, 0));
    assert_eq!(f.mtime() as u64, OLD);
    assert_eq!(f.mode() & 0o7777, 0o644);
    // A directory source copies its contents; setuid survives.
    assert_eq!(meta(r.join("t/a")).mode() & 0o7777, 0o4755);
    assert_eq!(meta(r.join("t/sub")).mtime() as u64, OLD);
    // Symlinks inside are copied as symlinks, even pointing outside.
    assert_eq!(
        fs::read_link(r.join("t/esc")).unwrap().to_str(),
        Some("../../outside")
    );
    // Hardlinks among copied files stay hardlinks.
    assert_eq!(meta(r.join("t/b2")).ino(), meta(r.join("t/sub/b")).ino());
    // The created parent is 0755 and root-owned.
    let t = meta(r.join("t"));
    assert_eq!((t.mode() & 0o7777, t.uid()), (0o755, 0));
}

#[test]
fn symlink_source_copies_its_target_under_its_own_name() {
    let (_c, ctx) = context();
    let root = rootfs();
    copy_into(ctx.source(), root.path(), &opts(&["link"], "/t/")).unwrap();
    let m = meta(root.path().join("t/link"));
    assert!(m.is_file());
    assert_eq!(
        fs::read_to_string(root.path().join("t/link")).unwrap(),
        "hello\n"
    );
}

#[test]
fn chown_and_chmod_apply_to_files_dirs_and_created_parents() {
    let (_c, ctx) = context();
    let root = rootfs();
    let r = root.path();
    let mut o = opts(&["dir"], "/o/p/q/");
    o.chown = Some("app".into());
    o.chmod = Some("0750".into());
    copy_into(ctx.source(), r, &o).unwrap();
    for p in ["o", "o/p", "o/p/q", "o/p/q/sub", "o/p/q/a"] {
        let m = meta(r.join(p));
        assert_eq!((m.uid(), m.gid()), (1000, 2000), "{p}");
        assert_eq!(m.mode() & 0o7777, 0o750, "{p}");
    }
    let l = meta(r.join("o/p/q/esc"));
    assert_eq!((l.uid(), l.gid()), (1000, 2000));
    let mut o = opts(&["f.txt"], "/s");
    o.chmod = Some("u+x,g+w".into());
    o.chown = Some("7:8".into());
    copy_into(ctx.source(), r, &o).unwrap();
    let m = meta(r.join("s"));
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o764, 7, 8));

    let mut o = opts(&["f.txt"], "/x");
    o.chown = Some("ghost".into());
    let e = copy_into(ctx.source(), r, &o).unwrap_err().to_string();
    assert!(e.contains("ghost") && e.contains("etc/passwd"), "{e}");
    assert!(!r.join("x").exists());
    o.chown = None;
    o.chmod = Some("u+q".into());
    assert!(matches!(
        copy_into(ctx.source(), r, &o),
        Err(CopyError::Chmod(_))
    ));
}

#[test]
fn exclude_and_parents() {
    let (_c, ctx) = context();
    let root = rootfs();
    let r = root.path();
    let mut o = opts(&["dir"], "/e/");
    o.exclude = vec!["*.md".into(), "sub".into()];
    copy_into(ctx.source(), r, &o).unwrap();
    assert!(r.join("e/a").exists());
    assert!(!r.join("e/skip.md").exists() && !r.join("e/sub").exists());

    let mut o = opts(&["dir/sub/b", "f.txt"], "/p/");
    o.parents = true;
    copy_into(ctx.source(), r, &o).unwrap();
    assert!(r.join("p/dir/sub/b").is_file() && r.join("p/f.txt").is_file());
    // A `/./` pivot drops what is before it.
    let mut o = opts(&["dir/./sub/b"], "/q/");
    o.parents = true;
    copy_into(ctx.source(), r, &o).unwrap();
    assert!(r.join("q/sub/b").is_file());
}

#[test]
fn dockerignored_files_are_not_copied() {
    let (c, _) = context();
    write(c.path(), ".dockerignore", "dir/sub\n!dir/sub/b\ndir/a\n");
    let ctx = BuildContext::open(c.path(), None).unwrap();
    let root = rootfs();
    copy_into(ctx.source(), root.path(), &opts(&["dir"], "/i/")).unwrap();
    assert!(!root.path().join("i/a").exists());
    assert!(
        root.path().join("i/sub/b").is_file(),
        "re-included by the exception"
    );
    assert!(root.path().join("i/skip.md").exists());
}

#[test]
fn destination_symlinks_resolve_inside_the_rootfs() {
    let outside = tempfile::tempdir().unwrap();
    let (_c, ctx) = context();
    let root = rootfs();
    let r = root.path();
    symlink(outside.path(), r.join("abs")).unwrap();
    symlink("../../../../../../../../..", r.join("up")).unwrap();
    symlink(outside.path().join("file"), r.join("filelink")).unwrap();
    fs::create_dir(r.join("real")).unwrap();
    symlink("/real", r.join("good")).unwrap();
    copy_into(ctx.source(), r, &opts(&["f.txt"], "/abs/")).unwrap();
    copy_into(ctx.source(), r, &opts(&["dir"], "/up/tmp/x")).unwrap();
    copy_into(ctx.source(), r, &opts(&["f.txt"], "/filelink")).unwrap();
    copy_into(ctx.source(), r, &opts(&["f.txt"], "/good/")).unwrap();
    assert_eq!(
        fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside"
    );
    let inner = r.join(outside.path().strip_prefix("/").unwrap());
    assert!(inner.join("f.txt").is_file());
    assert!(
        inner.join("file").is_file(),
        "a file symlink is written through, in the root"
    );
    assert!(r.join("tmp/x/a").is_file());
    assert!(r.join("real/f.txt").is_file());
}

#[test]
fn non_directory_in_the_way_is_an_error() {
    let (c, _) = context();
    write(c.path(), "tree/lib/x", "x");
    let ctx = BuildContext::open(c.path(), None).unwrap();
    let root = rootfs();
    let r = root.path();
    fs::create_dir_all(r.join("usr/lib")).unwrap();
    symlink("usr/lib", r.join("lib")).unwrap();
    let e = copy_into(ctx.source(), r, &opts(&["tree"], "/"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot copy to non-directory"), "{e}");
    write(r, "plain", "p");
    let e = copy_into(ctx.source(), r, &opts(&["dir"], "/plain/"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("non-directory"), "{e}");
    fs::create_dir_all(r.join("t/f.txt")).unwrap();
    let e = copy_into(ctx.source(), r, &opts(&["dir"], "/t2")).map(|_| ());
    assert!(e.is_ok());
    let e = copy_into(ctx.source(), r, &opts(&["f.txt"], "/t/f.txt")).map(|_| ());
    // Existing directory at the destination: the file goes inside it.
    assert!(e.is_ok() && r.join("t/f.txt/f.txt").is_file());
}

#[test]
fn from_rootfs_keeps_ownership_and_follows_links_in_its_root() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(s, "src/y", "y");
    std::os::unix::fs::chown(s.join("src/y"), Some(1234), Some(4321)).unwrap();
    symlink("/src/y", s.join("ly")).unwrap();
    symlink("/", s.join("rootlink")).unwrap();
    let source = SourceRoot::rootfs(s).unwrap();
    let root = rootfs();
    let r = root.path();
    copy_into(&source, r, &opts(&["/ly", "/src", "rootlink/src/y"], "/p/")).unwrap();
    let m = meta(r.join("p/ly"));
    assert!(m.is_file());
    assert_eq!((m.uid(), m.gid()), (1234, 4321));
    assert_eq!(meta(r.join("p/y")).uid(), 1234);
}

#[test]
fn heredoc_files_are_0644_root_owned() {
    let tmp = tempfile::tempdir().unwrap();
    write_heredoc(tmp.path(), "EOF", b"line\n").unwrap();
    let src = SourceRoot::scratch(tmp.path()).unwrap();
    let root = rootfs();
    copy_into(&src, root.path(), &opts(&["EOF"], "/etc/conf")).unwrap();
    let m = meta(root.path().join("etc/conf"));
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o644, 0));
    assert_eq!(fs::read(root.path().join("etc/conf")).unwrap(), b"line\n");
    assert!(write_heredoc(tmp.path(), "../x", b"").is_err());
}

#[test]
fn missing_source_fails_before_anything_is_written() {
    let (_c, ctx) = context();
    let root = rootfs();
    let e = copy_into(ctx.source(), root.path(), &opts(&["f.txt", "f.tx"], "/w/")).unwrap_err();
    assert!(e.to_string().contains("did you mean \"f.txt\""), "{e}");
    assert!(!root.path().join("w").exists());
}

/// A tree's files are written on worker threads while the walk goes on:
/// every file still gets its content, mode and mtime, and every directory
/// its mtime, though its files may land after the walk has left it (more
/// directories than the writer holds back at once).
#[test]
fn big_tree_keeps_every_file_and_directory_mtime() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(OLD);
    for i in 0..300 {
        for j in 0..4 {
            write(src, &format!("t/d{i:03}/f{j}"), &format!("{i}/{j}"));
            let f = fs::File::open(src.join(format!("t/d{i:03}/f{j}"))).unwrap();
            f.set_modified(old).unwrap();
        }
        fs::File::open(src.join(format!("t/d{i:03}")))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    fs::hard_link(src.join("t/d000/f0"), src.join("t/d299/link")).unwrap();
    fs::File::open(src.join("t/d299"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let ctx = BuildContext::open(src, None).unwrap();
    let root = rootfs();
    let r = root.path();
    let stats = copy_into(ctx.source(), r, &opts(&["t"], "/app")).unwrap();
    assert_eq!((stats.files, stats.hardlinks), (1200, 1));
    for i in 0..300 {
        let dir = r.join(format!("app/d{i:03}"));
        for j in 0..4 {
            let f = dir.join(format!("f{j}"));
            assert_eq!(fs::read_to_string(&f).unwrap(), format!("{i}/{j}"));
            assert_eq!((meta(&f).mtime() as u64, meta(&f).uid()), (OLD, 0));
        }
        assert_eq!(meta(&dir).mtime() as u64, OLD, "{}", dir.display());
    }
    assert_eq!(
        meta(r.join("app/d299/link")).ino(),
        meta(r.join("app/d000/f0")).ino()
    );
    // A file the workers cannot write fails the copy with its path.
    fs::remove_file(r.join("app/d150/f2")).unwrap();
    fs::create_dir(r.join("app/d150/f2")).unwrap();
    let err = copy_into(ctx.source(), r, &opts(&["t"], "/app")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("/app/d150/f2"), "{msg}");
    assert!(msg.contains("cannot replace a directory"), "{msg}");
}
