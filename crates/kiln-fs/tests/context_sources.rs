//! Build context: source expansion, containment, .dockerignore, content hash.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use kiln_fs::context::{BuildContext, CopyHashOptions, SourceError};

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn sample() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    write(r, "main.go", "package main\n");
    write(r, "go.mod", "module x\n");
    write(r, "src/a.txt", "a");
    write(r, "src/b.txt", "b");
    write(r, "src/c.md", "c");
    write(r, "src/sub/d.txt", "d");
    write(r, "docs/x.md", "x");
    d
}

fn names(ctx: &BuildContext, pattern: &str) -> Vec<String> {
    ctx.source()
        .expand(pattern)
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect()
}

fn hash(ctx: &BuildContext, sources: &[&str]) -> String {
    let s: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    ctx.checksum(&s, &CopyHashOptions::default()).unwrap().hex()
}

#[test]
fn wildcards_follow_go_filepath_match_per_component() {
    let d = sample();
    let ctx = BuildContext::open(d.path(), None).unwrap();
    assert_eq!(names(&ctx, "src/*.txt"), ["src/a.txt", "src/b.txt"]);
    assert_eq!(names(&ctx, "./src/[ab].txt"), ["src/a.txt", "src/b.txt"]);
    assert_eq!(names(&ctx, "src/?.md"), ["src/c.md"]);
    // `*` does not cross `/`; `**` is the same as `*` (filepath.Match).
    assert_eq!(
        names(&ctx, "src/**"),
        ["src/a.txt", "src/b.txt", "src/c.md", "src/sub"]
    );
    assert_eq!(names(&ctx, "*/*.md"), ["docs/x.md", "src/c.md"]);
    assert_eq!(names(&ctx, "/src/sub/../a.txt"), ["src/a.txt"]);
    assert_eq!(names(&ctx, "."), [""]);
}

#[test]
fn no_match_names_the_path_and_suggests_close_names() {
    let d = sample();
    let ctx = BuildContext::open(d.path(), None).unwrap();
    let e = ctx.source().expand("mian.go").err().unwrap();
    let msg = e.to_string();
    assert!(matches!(e, SourceError::NotFound { .. }));
    assert!(
        msg.contains("\"mian.go\"") && msg.contains("did you mean \"main.go\""),
        "{msg}"
    );
    // A pattern that matches nothing is skipped (AllowEmptyWildcard), but
    // the literal directory it lists must exist (fsutil walks it).
    assert!(ctx.source().expand("src/*.rs").unwrap().is_empty());
    assert!(ctx.source().expand("*/*.rs").unwrap().is_empty());
    let msg = ctx
        .source()
        .expand("nosuch/*.rs")
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("\"nosuch\"") && msg.contains("not found"),
        "{msg}"
    );
    let msg = ctx
        .source()
        .expand("src/sub/e.txt")
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("did you mean \"src/sub/d.txt\""), "{msg}");
}

#[test]
fn symlinks_leading_out_of_the_context_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), "s").unwrap();
    let d = sample();
    let r = d.path();
    symlink(outside.path().join("secret"), r.join("abs")).unwrap();
    symlink("../../../../../../../../../../etc/hostname", r.join("rel")).unwrap();
    symlink(outside.path(), r.join("outdir")).unwrap();
    symlink("main.go", r.join("inside")).unwrap();
    fs::create_dir(r.join("dir")).unwrap();
    symlink("/etc/passwd", r.join("dir/link")).unwrap();
    let ctx = BuildContext::open(r, None).unwrap();
    for p in ["abs", "rel", "outdir/secret", "dir/link"] {
        let e = ctx
            .source()
            .expand(p)
            .err()
            .unwrap_or_else(|| panic!("{p} resolved"));
        let msg = e.to_string();
        assert!(matches!(e, SourceError::SymlinkEscape { .. }), "{p}: {msg}");
        assert!(
            msg.contains("symlink pointing outside the build context") && msg.contains(p),
            "{msg}"
        );
    }
    assert!(ctx
        .checksum(&["abs".into()], &CopyHashOptions::default())
        .is_err());
    // A symlink inside the context resolves; the match keeps its own name.
    let m = ctx.source().expand("inside").unwrap();
    assert_eq!(m[0].path, "inside");
    assert!(m[0].stat.st_size > 0);
    // Copying the directory that holds an escaping link is fine: the link is
    // an entry (copied as a symlink), never followed; it is hashed by target.
    let h1 = hash(&ctx, &["dir"]);
    fs::remove_file(r.join("dir/link")).unwrap();
    symlink("/etc/group", r.join("dir/link")).unwrap();
    let ctx = BuildContext::open(r, None).unwrap();
    assert_ne!(h1, hash(&ctx, &["dir"]));
}

#[test]
fn dockerignore_hides_files_from_matching_and_hashing() {
    let d = sample();
    let r = d.path();
    write(r, "node_modules/big/index.js", "x");
    write(
        r,
        ".dockerignore",
        "# deps\nnode_modules\nsrc/*.txt\n!src/b.txt\n",
    );
    let ctx = BuildContext::open(r, None).unwrap();
    assert_eq!(ctx.ignore_file(), Some(r.join(".dockerignore").as_path()));
    assert!(ctx.is_ignored("node_modules/big/index.js"));
    assert!(ctx.is_ignored("src/a.txt"));
    assert!(!ctx.is_ignored("src/b.txt"));
    assert_eq!(names(&ctx, "src/*.txt"), ["src/b.txt"]);
    assert!(ctx.source().expand("node_modules").is_err());
    let before = hash(&ctx, &["."]);
    // Changing an ignored file does not change the hash of the whole context…
    write(r, "src/a.txt", "changed");
    write(r, "node_modules/big/index.js", "changed");
    let ctx = BuildContext::open(r, None).unwrap();
    assert_eq!(before, hash(&ctx, &["."]));
    // …changing the re-included one does.
    write(r, "src/b.txt", "changed");
    let ctx = BuildContext::open(r, None).unwrap();
    assert_ne!(before, hash(&ctx, &["."]));
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let d = sample();
    let r = d.path();
    write(r, ".dockerignore", "main.go\n");
    write(r, "build/app.Dockerfile", "FROM scratch\n");
    write(r, "build/app.Dockerfile.dockerignore", "go.mod\n");
    let ctx = BuildContext::open(r, Some(&r.join("build/app.Dockerfile"))).unwrap();
    assert!(ctx.is_ignored("go.mod"));
    assert!(!ctx.is_ignored("main.go"));
    let ctx = BuildContext::open(r, Some(&r.join("Dockerfile"))).unwrap();
    assert!(ctx.is_ignored("main.go"));
    write(r, ".dockerignore", "!\n");
    assert!(BuildContext::open(r, None).is_err());
}

#[test]
fn hash_ignores_mtime_and_owner_but_not_content_or_mode() {
    let d = sample();
    let r = d.path();
    let ctx = BuildContext::open(r, None).unwrap();
    let base = hash(&ctx, &["src", "main.go"]);
    assert_eq!(base, hash(&ctx, &["src", "main.go"]), "deterministic");

    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    fs::File::options()
        .write(true)
        .open(r.join("src/a.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::os::unix::fs::chown(r.join("src/b.txt"), Some(1234), Some(4321)).unwrap();
    let ctx = BuildContext::open(r, None).unwrap();
    assert_eq!(
        base,
        hash(&ctx, &["src", "main.go"]),
        "mtime/owner must not matter"
    );

    // The same tree made elsewhere (another machine, another time) hashes the same.
    let other = sample();
    let octx = BuildContext::open(other.path(), None).unwrap();
    assert_eq!(base, hash(&octx, &["src", "main.go"]));

    write(r, "src/sub/d.txt", "e");
    let ctx = BuildContext::open(r, None).unwrap();
    let changed = hash(&ctx, &["src", "main.go"]);
    assert_ne!(base, changed, "one byte changed");

    fs::set_permissions(r.join("src/a.txt"), fs::Permissions::from_mode(0o755)).unwrap();
    let ctx = BuildContext::open(r, None).unwrap();
    assert_ne!(changed, hash(&ctx, &["src", "main.go"]), "mode changed");

    // Renames and which sources are named matter.
    assert_ne!(hash(&ctx, &["src"]), hash(&ctx, &["src", "main.go"]));
}

#[test]
fn hash_follows_exclude_and_parents_options() {
    let d = sample();
    let ctx = BuildContext::open(d.path(), None).unwrap();
    let all = ctx
        .checksum(&["src".into()], &CopyHashOptions::default())
        .unwrap();
    let ex = CopyHashOptions {
        exclude: vec!["*.md".into()],
        parents: false,
    };
    let without_md = ctx.checksum(&["src".into()], &ex).unwrap();
    assert_ne!(all, without_md);
    // An excluded file's content is not part of the hash.
    write(d.path(), "src/c.md", "other");
    let ctx = BuildContext::open(d.path(), None).unwrap();
    assert_eq!(without_md, ctx.checksum(&["src".into()], &ex).unwrap());
    let par = CopyHashOptions {
        exclude: vec![],
        parents: true,
    };
    assert_ne!(
        ctx.checksum(&["src".into()], &par).unwrap(),
        ctx.checksum(&["src".into()], &CopyHashOptions::default())
            .unwrap()
    );
}

#[test]
fn stdin_tar_context_is_unpacked_safely() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, "Dockerfile", &b"FROM\n"[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(2);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, "app/x.txt", &b"hi"[..]).unwrap();
    write_ignore(&mut b, "app/secret\n");
    let data = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &data).unwrap();
    let gz = gz.finish().unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let ctx = BuildContext::from_tar(&gz[..], tmp.path(), None).unwrap();
    assert!(ctx.path().starts_with(tmp.path()));
    assert_eq!(ctx.read_file("Dockerfile").unwrap(), b"FROM\n");
    assert_eq!(names(&ctx, "app/*"), ["app/x.txt"]);
    assert!(ctx.is_ignored("app/secret"));
    let p = ctx.path().to_path_buf();
    drop(ctx);
    assert!(!p.exists(), "the unpacked context is removed with it");
}

fn write_ignore(b: &mut tar::Builder<Vec<u8>>, rules: &str) {
    let mut h = tar::Header::new_ustar();
    h.set_size(rules.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, ".dockerignore", rules.as_bytes())
        .unwrap();
}
