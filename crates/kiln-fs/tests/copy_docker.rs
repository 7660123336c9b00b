//! Differential test: the same COPY/ADD steps through `docker build`
//! (Docker 20.10, BuildKit) and through kiln's `copy_into` on the same
//! busybox rootfs must give the same names, types, modes, owners, sizes
//! and file mtimes. Needs root and dockerd.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use kiln_fs::context::BuildContext;
use kiln_fs::copy::{copy_into, CopyOptions};

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

/// (flags, sources, dest) — all accepted by Docker 20.10's frontend.
const STEPS: &[(&str, &[&str], &str)] = &[
    ("", &["f.txt"], "/t/file"),
    ("", &["dir"], "/t/dir/"),
    ("--chown=1000:1001", &["dir"], "/t/own/p/"),
    ("--chown=root", &["link"], "/t/link"),
    ("", &["src/*.txt"], "/t/glob/"),
    ("", &["f.txt", "dir/a"], "/t/multi/"),
    ("--chmod=0750", &["f.txt"], "/t/chm"),
    ("ADD", &["a.tgz"], "/t/add/"),
];

fn make_context(r: &Path) {
    write(r, "f.txt", "hello\n");
    write(r, "dir/a", "a");
    write(r, "dir/sub/b", "bb");
    write(r, "src/x.txt", "x");
    write(r, "src/y.txt", "yy");
    write(r, "src/z.md", "z");
    fs::set_permissions(r.join("dir/a"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(r.join("dir/sub/b"), fs::Permissions::from_mode(0o600)).unwrap();
    symlink("../f.txt", r.join("dir/up")).unwrap();
    symlink("f.txt", r.join("link")).unwrap();
    fs::hard_link(r.join("dir/a"), r.join("dir/a2")).unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(981_173_106);
    for p in ["f.txt", "dir/a", "dir/sub/b", "src/x.txt", "src/y.txt"] {
        fs::File::open(r.join(p)).unwrap().set_modified(t).unwrap();
    }
    // A gzip tar with owners 1000:1000, made by the tar crate.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o640);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_mtime(1_000_000_000);
    h.set_cksum();
    b.append_data(&mut h, "pkg/file", &b"pkg"[..]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &b.into_inner().unwrap()).unwrap();
    fs::write(r.join("a.tgz"), gz.finish().unwrap()).unwrap();
    let mut df = String::from("FROM busybox:latest\n");
    for (flags, srcs, dest) in STEPS {
        let (ins, flags) = if *flags == "ADD" {
            ("ADD", "")
        } else {
            ("COPY", *flags)
        };
        df.push_str(&format!("{ins} {flags} {} {dest}\n", srcs.join(" ")));
    }
    df.push_str(
        "RUN find /t | sort | while read p; do stat -c '%n|%F|%a|%u:%g|%s|%Y' \"$p\"; done > /listing\n",
    );
    write(r, "Dockerfile", &df);
}

/// Normalises a listing line: sizes and mtimes only for regular files (a
/// directory's size is filesystem-specific; created directories get the
/// build time).
fn norm(line: &str) -> String {
    let f: Vec<&str> = line.split('|').collect();
    let kind = match f[1] {
        "regular file" | "regular empty file" => "file",
        "directory" => "dir",
        "symbolic link" => "symlink",
        other => other,
    };
    let (size, mtime) = if kind == "file" {
        (f[4], f[5])
    } else {
        ("-", "-")
    };
    format!("{}|{kind}|{}|{}|{size}|{mtime}", f[0], f[2], f[3])
}

fn kiln_listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("t")];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let kind = if m.is_dir() {
            "directory"
        } else if m.file_type().is_symlink() {
            "symbolic link"
        } else {
            "regular file"
        };
        let name = format!("/{}", p.strip_prefix(root).unwrap().display());
        out.push(norm(&format!(
            "{name}|{kind}|{:o}|{}:{}|{}|{}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            m.size(),
            m.mtime()
        )));
        if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn copy_matches_docker_build() {
    if !kiln_testkit::require_root()
        || !kiln_testkit::require_docker()
        || !kiln_testkit::require_base_images()
    {
        return;
    }
    let ctx_dir = tempfile::tempdir().unwrap();
    make_context(ctx_dir.path());

    // Docker: build, then read /listing out of the image.
    let tag = format!("kiln-copy-diff:{}", std::process::id());
    let st = kiln_testkit::docker()
        .env("DOCKER_BUILDKIT", "1")
        .args(["build", "-q", "-t", &tag])
        .arg(ctx_dir.path())
        .status()
        .unwrap();
    assert!(st.success(), "docker build failed");
    let out = kiln_testkit::docker()
        .args(["run", "--rm", &tag, "cat", "/listing"])
        .output()
        .unwrap();
    let _ = kiln_testkit::docker().args(["rmi", "-f", &tag]).output();
    assert!(out.status.success());
    let mut docker: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(norm)
        .collect();
    docker.sort();
    assert!(docker.len() > 20, "listing too short: {docker:?}");
    assert!(
        docker.contains(&"/t/own/p|dir|755|1000:1001|-|-".to_string()),
        "{docker:?}"
    );
    assert!(
        docker.contains(&"/t/add/pkg/file|file|640|1000:1000|3|1000000000".to_string()),
        "{docker:?}"
    );

    // kiln: the same steps on the same busybox rootfs.
    let root = tempfile::tempdir().unwrap();
    let tar = fs::File::open(kiln_testkit::busybox_rootfs_tar()).unwrap();
    kiln_fs::apply_layer(root.path(), tar).unwrap();
    let ctx = BuildContext::open(ctx_dir.path(), None).unwrap();
    for (flags, srcs, dest) in STEPS {
        let mut o = CopyOptions {
            sources: srcs.iter().map(|s| s.to_string()).collect(),
            dest: dest.to_string(),
            workdir: "/".into(),
            ..Default::default()
        };
        if let Some(c) = flags.strip_prefix("--chown=") {
            o.chown = Some(c.into());
        }
        if let Some(c) = flags.strip_prefix("--chmod=") {
            o.chmod = Some(c.into());
        }
        o.unpack = *flags == "ADD";
        copy_into(ctx.source(), root.path(), &o).unwrap();
    }
    let kiln = kiln_listing(root.path());
    assert_eq!(
        kiln,
        docker,
        "\nkiln:\n{}\ndocker:\n{}",
        kiln.join("\n"),
        docker.join("\n")
    );
}
