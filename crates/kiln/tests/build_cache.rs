//! The build cache end to end: `--explain-cache` and the rebuilt reasons in
//! plain and JSON progress, and remote cache export/import through the
//! real registry. Needs root and the base images (`scripts/test.sh`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::cli::{kiln, ok};
use kiln_testkit as tk;

struct Env {
    tmp: tempfile::TempDir,
    ctx: PathBuf,
}

impl Env {
    fn new(dockerfile: &str, files: &[(&str, &str)]) -> Env {
        assert!(tk::require_root() && tk::require_base_images());
        let tmp = tk::tempdir();
        let ctx = tmp.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        let env = Env { tmp, ctx };
        for (name, content) in files {
            env.write(name, content);
        }
        env
    }

    fn write(&self, name: &str, content: &str) {
        std::fs::write(self.ctx.join(name), content).unwrap();
    }

    /// A root (created on first use) with busybox imported.
    fn root(&self, name: &str) -> PathBuf {
        let root = self.tmp.path().join(name);
        if !root.exists() {
            ok(kiln(&root)
                .arg("import")
                .arg(tk::busybox_rootfs_tar())
                .arg("busybox:latest"));
        }
        root
    }

    fn build(&self, root: &str, extra: &[&str]) -> String {
        let root = self.root(root);
        ok(kiln(&root)
            .args(["build", "--progress", "plain"])
            .args(extra)
            .arg(&self.ctx))
    }
}

/// `#N rebuilt: REASON` lines of a plain log, with the step names.
fn rebuilt(log: &str) -> Vec<(String, String)> {
    let mut names = std::collections::HashMap::new();
    let mut out = Vec::new();
    for line in log.lines() {
        let Some((id, rest)) = line.split_once(' ') else {
            continue;
        };
        if rest.starts_with('[') {
            names.insert(id.to_string(), rest.to_string());
        } else if let Some(reason) = rest.strip_prefix("rebuilt: ") {
            out.push((names[id].clone(), reason.to_string()));
        }
    }
    out
}

const MULTI: &str = "FROM busybox:latest AS build
WORKDIR /src
COPY go.mod .
COPY main.go .
ARG VERSION=1.2
RUN cat go.mod main.go > /app && echo $VERSION >> /app
FROM scratch
COPY --from=build /app /app
";

#[test]
fn a_rebuild_says_which_file_arg_or_base_changed() {
    let env = Env::new(
        MULTI,
        &[("go.mod", "module x\n"), ("main.go", "package main\n")],
    );
    let first = env.build("a", &[]);
    assert!(
        rebuilt(&first).is_empty(),
        "a first build explains nothing:\n{first}"
    );

    env.write("main.go", "package main // 2\n");
    let log = env.build("a", &[]);
    let why = rebuilt(&log);
    assert_eq!(
        why,
        vec![
            (
                "[build 3/4] COPY main.go .".into(),
                "file main.go changed".into()
            ),
            (
                "[build 4/4] RUN cat go.mod main.go > /app && echo $VERSION >> /app".into(),
                "file main.go changed (COPY at Dockerfile:4)".into()
            ),
            (
                "[stage-1 1/1] COPY --from=build /app /app".into(),
                "file app changed".into()
            ),
        ],
        "{log}"
    );

    let log = env.build("a", &["--build-arg", "VERSION=1.3", "--explain-cache"]);
    let why = rebuilt(&log);
    assert_eq!(why[0].1, "build arg VERSION changed 1.2 → 1.3", "{log}");
    assert!(
        log.contains(r#"build_args: "VERSION=1.2" → "VERSION=1.3""#),
        "--explain-cache lists the changed input:\n{log}"
    );

    // JSON progress carries the same reason.
    let root = env.root("a");
    let log = ok(kiln(&root)
        .args(["build", "--progress", "json", "--build-arg", "VERSION=1.4"])
        .arg(&env.ctx));
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["event"] == "rebuilt")
        .collect();
    assert_eq!(
        events[0]["reason"], "build arg VERSION changed 1.3 → 1.4",
        "{log}"
    );
    assert!(events[0]["changes"]
        .as_array()
        .is_some_and(|c| !c.is_empty()));
}

#[test]
fn a_new_base_image_is_named() {
    let env = Env::new("FROM busybox:latest\nRUN echo one > /f\n", &[]);
    let root = env.root("a");
    ok(kiln(&root)
        .args(["build", "-t", "kiln-cache-base:1"])
        .arg(&env.ctx));
    let app = env.tmp.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("Dockerfile"),
        "FROM kiln-cache-base:1\nRUN cat /f\n",
    )
    .unwrap();
    ok(kiln(&root).arg("build").arg(&app));
    env.write("Dockerfile", "FROM busybox:latest\nRUN echo two > /f\n");
    ok(kiln(&root)
        .args(["build", "-t", "kiln-cache-base:1"])
        .arg(&env.ctx));
    let log = ok(kiln(&root).args(["build", "--progress", "plain"]).arg(&app));
    let why = rebuilt(&log);
    assert_eq!(why.len(), 1, "{log}");
    assert!(
        why[0]
            .1
            .starts_with("base image kiln-cache-base:1 is now sha256:"),
        "{log}"
    );
}

/// A TCP proxy in front of the open test registry that records the request
/// line of every blob GET and upload PUT, so a test can count what a build
/// downloaded and uploaded.
struct Proxy {
    addr: String,
    gets: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Proxy {
    fn start() -> Proxy {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let gets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = gets.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let upstream = TcpStream::connect("127.0.0.1:5000").expect("registry :5000");
                let (mut c_read, mut u_write) =
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let (mut u_read, mut c_write) = (upstream, client);
                std::thread::spawn(move || std::io::copy(&mut u_read, &mut c_write));
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let (mut buf, mut line) = ([0u8; 65536], Vec::new());
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 || u_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        for &b in &buf[..n] {
                            if b != b'\n' {
                                if line.len() < 4096 {
                                    line.push(b);
                                }
                                continue;
                            }
                            let l = String::from_utf8_lossy(&line).into_owned();
                            let upload = l.starts_with("PUT /v2/") && l.contains("digest=");
                            if upload || (l.starts_with("GET /v2/") && l.contains("/blobs/")) {
                                seen.lock().unwrap().push(l);
                            }
                            line.clear();
                        }
                    }
                    let _ = u_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Proxy { addr, gets }
    }

    /// The blob GETs since the last call (uploads are dropped).
    fn take(&self) -> Vec<String> {
        let all = std::mem::take(&mut *self.gets.lock().unwrap());
        all.into_iter().filter(|l| l.starts_with("GET ")).collect()
    }

    /// The blob digests uploaded since the last call, in order.
    fn uploads(&self) -> Vec<String> {
        let all = std::mem::take(&mut *self.gets.lock().unwrap());
        all.iter()
            .filter(|l| l.starts_with("PUT "))
            .filter_map(|l| l.split("digest=").nth(1))
            .map(|d| d.split([' ', '&']).next().unwrap_or("").replace("%3A", ":"))
            .collect()
    }
}

const REMOTE: &str = "FROM busybox:latest AS build
WORKDIR /src
COPY go.mod .
COPY main.go .
RUN --mount=type=cache,target=/root/.cache ls /root/.cache > /seen; cat main.go >> /root/.cache/log; cat go.mod main.go > /app
FROM scratch
COPY --from=build /app /app
COPY --from=build /seen /seen
";

/// Names of the steps that ran (not from the cache) in a JSON log.
fn ran(json_log: &str) -> Vec<String> {
    let mut names = std::collections::HashMap::new();
    let mut out = Vec::new();
    for v in json_log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let id = v["step"].as_u64();
        match v["event"].as_str() {
            Some("started") => {
                names.insert(id, v["name"].as_str().unwrap_or("").to_string());
            }
            Some("done") => out.push(names[&id].clone()),
            _ => {}
        }
    }
    out.retain(|n| n.contains(" RUN ") || n.contains(" COPY "));
    out
}

impl Env {
    /// A fresh root holding root A's busybox (same digests: same keys).
    fn fresh_root(&self, name: &str) -> PathBuf {
        let archive = self.tmp.path().join("busybox.tar");
        if !archive.exists() {
            ok(kiln(&self.root("a"))
                .args(["save", "-o"])
                .arg(&archive)
                .arg("busybox:latest"));
        }
        let root = self.tmp.path().join(name);
        ok(kiln(&root).args(["load", "-i"]).arg(&archive));
        root
    }

    fn file_of(&self, root: &Path, image: &str, path: &str) -> String {
        let out = self.tmp.path().join(format!("out-{}", std::process::id()));
        let _ = std::fs::remove_file(&out);
        ok(kiln(root)
            .arg("cp")
            .arg(format!("{image}:{path}"))
            .arg(&out));
        std::fs::read_to_string(&out).unwrap()
    }
}

fn layer_digests(root: &Path, image: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(kiln(root).args(["inspect", image]))).unwrap();
    v[0]["Manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

fn diff_ids(root: &Path, image: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&ok(kiln(root).args(["inspect", image]))).unwrap();
    v[0]["Config"]["rootfs"]["diff_ids"].clone()
}

#[test]
fn a_fresh_root_builds_from_the_registry_cache_pulling_only_the_final_layers() {
    assert!(tk::require_registries());
    let nonce = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let main_go = format!("package main // {nonce}\n");
    let env = Env::new(REMOTE, &[("go.mod", "module x\n"), ("main.go", &main_go)]);
    let proxy = Proxy::start();
    let cache = format!("{}/kiln-cache-{}/app:cache", proxy.addr, std::process::id());
    let to = format!("type=registry,ref={cache},mode=max,cache-mounts=true");
    let from = format!("type=registry,ref={cache}");
    let a = env.root("a");
    ok(kiln(&a)
        .args(["build", "-q", "-t", "app:a", "--cache-to", &to])
        .arg(&env.ctx));
    proxy.take();

    // Root B, empty but for the same busybox: every step is a hit, and
    // only the cache config and the final image's two layers come down.
    let b = env.fresh_root("b");
    let log = ok(kiln(&b)
        .args([
            "build",
            "--progress",
            "json",
            "-t",
            "app:b",
            "--cache-from",
            &from,
        ])
        .arg(&env.ctx));
    assert_eq!(
        ran(&log),
        Vec::<String>::new(),
        "everything is cached:\n{log}"
    );
    let gets = proxy.take();
    let finals = layer_digests(&b, "app:b");
    // The same layers (root A keeps them uncompressed under the tag; root
    // B has them as the cache carries them, gzipped).
    assert_eq!(diff_ids(&b, "app:b"), diff_ids(&a, "app:a"));
    assert_eq!(gets.len(), 3, "config + 2 final layers, got {gets:#?}");
    for d in &finals {
        assert!(
            gets.iter().any(|g| g.contains(d.as_str())),
            "{d} in {gets:#?}"
        );
    }
    assert_eq!(
        env.file_of(&b, "app:b", "/app"),
        format!("module x\n{main_go}")
    );

    // Changed source: only the steps that read it (and what depends on them)
    // run, and the cache mount holds root A's files.
    env.write("main.go", &format!("package main // {nonce} v2\n"));
    let log = ok(kiln(&b)
        .args([
            "build",
            "--progress",
            "json",
            "-t",
            "app:b2",
            "--cache-from",
            &from,
        ])
        .arg(&env.ctx));
    let ran_now = ran(&log);
    assert_eq!(
        ran_now.len(),
        4,
        "COPY main.go, RUN, two COPY --from:\n{ran_now:#?}"
    );
    assert!(ran_now[0].contains("COPY main.go"), "{ran_now:?}");
    assert!(
        log.contains("file main.go changed (COPY at Dockerfile:4)"),
        "{log}"
    );
    assert_eq!(
        env.file_of(&b, "app:b2", "/seen"),
        "log\n",
        "root A's cache mount files"
    );

    // A corrupt blob (the final /app layer) in the registry: root C warns,
    // rebuilds that step, and its image is right.
    env.write("main.go", &main_go);
    corrupt_registry_blob(&finals[0]);
    let c = env.fresh_root("c");
    let log = ok(kiln(&c)
        .args([
            "build",
            "--progress",
            "plain",
            "-t",
            "app:c",
            "--cache-from",
            &from,
        ])
        .arg(&env.ctx));
    // Once, naming the blob and the cache; the builder's steps are not
    // walked again (only the target stage goes on from the step that made it).
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("imported cache blob"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(
        warnings[0].contains(finals[0].as_str()) && warnings[0].contains(&cache),
        "{log}"
    );
    assert!(
        warnings[0].contains("rebuilding COPY at Dockerfile:7"),
        "{log}"
    );
    let builder_steps = log
        .lines()
        .filter(|l| {
            l.split_once(' ')
                .is_some_and(|(_, r)| r.starts_with("[build "))
        })
        .count();
    assert_eq!(builder_steps, 4, "each builder step once:\n{log}");
    assert_eq!(
        env.file_of(&c, "app:c", "/app"),
        format!("module x\n{main_go}")
    );

    // A corrupt builder layer (COPY go.mod's) that a miss builds on: only
    // that step runs again, then the steps the change reaches.
    let go_mod_layer = cache_record_layer(&cache, "COPY at Dockerfile:3");
    corrupt_registry_blob(&go_mod_layer);
    env.write("main.go", &format!("package main // {nonce} v3\n"));
    let d = env.fresh_root("d");
    let log = ok(kiln(&d)
        .args([
            "build",
            "--progress",
            "json",
            "-t",
            "app:d",
            "--cache-from",
            &from,
        ])
        .arg(&env.ctx));
    let ran_d = ran(&log);
    assert_eq!(
        ran_d.iter().filter(|n| n.contains("COPY go.mod")).count(),
        1,
        "{ran_d:#?}\n{log}"
    );
    assert!(!ran_d.iter().any(|n| n.contains("WORKDIR")), "{ran_d:#?}");
    assert_eq!(log.matches("imported cache blob").count(), 1, "{log}");
    assert_eq!(
        env.file_of(&d, "app:d", "/app"),
        format!("module x\npackage main // {nonce} v3\n")
    );

    // An unreachable cache registry is a warning, not a failure.
    let log = ok(kiln(&c)
        .args([
            "build",
            "--progress",
            "plain",
            "--cache-from",
            "127.0.0.1:1/none:x",
        ])
        .arg(&env.ctx));
    assert!(
        log.contains("WARNING: --cache-from 127.0.0.1:1/none:x"),
        "{log}"
    );
}

/// A manifest or blob of the open test registry, read through `addr/repo`
/// as a cache reference names it.
fn registry_get(reference: &str, what: &str) -> Vec<u8> {
    let (addr, rest) = reference.split_once('/').unwrap();
    let repo = rest.rsplit_once(':').map_or(rest, |(r, _)| r);
    let o = Command::new("curl")
        .args([
            "-sf",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(format!("http://{addr}/v2/{repo}/{what}"))
        .output()
        .expect("curl");
    assert!(o.status.success(), "GET {what} from {reference}");
    o.stdout
}

fn cache_manifest(reference: &str) -> serde_json::Value {
    let tag = reference.rsplit_once(':').unwrap().1;
    serde_json::from_slice(&registry_get(reference, &format!("manifests/{tag}"))).unwrap()
}

/// The layer digest of the record a cache in the registry has for `label`.
fn cache_record_layer(reference: &str, label: &str) -> String {
    let config = cache_manifest(reference)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let config: serde_json::Value =
        serde_json::from_slice(&registry_get(reference, &format!("blobs/{config}"))).unwrap();
    config["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[1]["step"]["label"] == label && r[1]["layer"].is_object())
        .unwrap_or_else(|| panic!("no record for {label}: {config}"))[1]["layer"]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Overwrites a blob's bytes in the open test registry's storage (the
/// blob is unique to the test: its layer holds a nonce).
fn corrupt_registry_blob(digest: &str) {
    let run = std::env::var("KILN_TEST_RUN").unwrap_or_else(|_| "/run/kiln-test".into());
    let hex = digest.trim_start_matches("sha256:");
    let path = format!(
        "{run}/registry-5000/data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    );
    let len = std::fs::metadata(&path)
        .expect("the blob in the registry storage")
        .len();
    std::fs::write(&path, vec![b'x'; len as usize]).unwrap();
}

/// An image pushed with its cache (same repository): every blob goes up
/// once; the cache's final-stage layers are the image's, by digest.
#[test]
fn the_cache_shares_layers_with_the_pushed_image() {
    assert!(tk::require_registries());
    let nonce = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let env = Env::new(MULTI, &[("go.mod", "module x\n"), ("main.go", &nonce)]);
    let proxy = Proxy::start();
    let repo = format!("{}/kiln-share-{}/app", proxy.addr, std::process::id());
    ok(kiln(&env.root("a"))
        .args(["build", "-q", "--push", "-t", &format!("{repo}:1")])
        .args([
            "--cache-to",
            &format!("type=registry,ref={repo}:cache,mode=max"),
        ])
        .arg(&env.ctx));
    let uploads = proxy.uploads();
    let unique: std::collections::BTreeSet<_> = uploads.iter().collect();
    assert_eq!(
        unique.len(),
        uploads.len(),
        "a blob went up twice: {uploads:#?}"
    );
    let image_layer = &layer_digests(&env.root("a"), &format!("{repo}:1"))[0];
    assert!(uploads.contains(image_layer), "{uploads:#?}");
}

#[test]
fn a_local_cache_directory_round_trips() {
    let env = Env::new(
        MULTI,
        &[("go.mod", "module x\n"), ("main.go", "package main\n")],
    );
    let dir = env.tmp.path().join("ci-cache");
    let to = format!("type=local,dest={},mode=max", dir.display());
    let from = format!("type=local,src={}", dir.display());
    ok(kiln(&env.root("a"))
        .args(["build", "-q", "--cache-to", &to])
        .arg(&env.ctx));
    assert!(dir.join("index.json").is_file() && dir.join("oci-layout").is_file());
    let b = env.fresh_root("b");
    let log = ok(kiln(&b)
        .args([
            "build",
            "--progress",
            "json",
            "-t",
            "app:b",
            "--cache-from",
            &from,
        ])
        .arg(&env.ctx));
    assert_eq!(ran(&log), Vec::<String>::new(), "{log}");
    assert_eq!(
        env.file_of(&b, "app:b", "/app"),
        "module x\npackage main\n1.2\n"
    );

    // A second export after a change keeps only the blobs its index names.
    env.write("main.go", "package main // 2\n");
    ok(kiln(&env.root("a"))
        .args(["build", "-q", "--cache-to", &to])
        .arg(&env.ctx));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(manifest)).unwrap()).unwrap();
    let mut named: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    named.push(manifest["config"]["digest"].as_str().unwrap().to_string());
    named.push(
        index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let mut named: Vec<String> = named
        .iter()
        .map(|d| d.trim_start_matches("sha256:").to_string())
        .collect();
    named.sort();
    named.dedup();
    let mut present: Vec<String> = std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    assert_eq!(present, named, "unreferenced blobs are collected");
}

/// `compression=zstd`: the cache's layers go out zstd through the real
/// registry, and a fresh root hits every step from it. The records it used
/// are adopted: its next build, without `--cache-from`, runs nothing and
/// downloads nothing, and a later miss fetches the builder layers it needs
/// from the registry the records came from.
#[test]
fn a_zstd_cache_round_trips_and_a_fresh_root_adopts_it() {
    assert!(tk::require_registries());
    let nonce = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let env = Env::new(MULTI, &[("go.mod", "module x\n"), ("main.go", &nonce)]);
    let proxy = Proxy::start();
    let cache = format!("{}/kiln-zstd-{}/app:cache", proxy.addr, std::process::id());
    ok(kiln(&env.root("a"))
        .args(["build", "-q", "--cache-to"])
        .arg(format!(
            "type=registry,ref={cache},mode=max,compression=zstd"
        ))
        .arg(&env.ctx));
    let manifest = cache_manifest(&cache);
    let types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert!(
        types.len() >= 4
            && types
                .iter()
                .all(|t| *t == "application/vnd.oci.image.layer.v1.tar+zstd"),
        "{manifest}"
    );

    let b = env.fresh_root("b");
    let build = |tag: &str, extra: &[&str]| {
        ok(kiln(&b)
            .args(["build", "--progress", "json", "-t", tag])
            .args(extra)
            .arg(&env.ctx))
    };
    let log = build("app:b", &["--cache-from", &cache]);
    assert_eq!(ran(&log), Vec::<String>::new(), "{log}");
    assert_eq!(
        env.file_of(&b, "app:b", "/app"),
        format!("module x\n{nonce}1.2\n")
    );
    proxy.take();
    let log = build("app:b2", &[]);
    assert_eq!(
        ran(&log),
        Vec::<String>::new(),
        "adopted records hit:\n{log}"
    );
    assert_eq!(proxy.take(), Vec::<String>::new(), "nothing downloaded");

    env.write("main.go", &format!("{nonce} v2"));
    let log = build("app:b3", &[]);
    assert_eq!(ran(&log).len(), 3, "COPY main.go, RUN, COPY --from:\n{log}");
    assert!(!proxy.take().is_empty(), "the builder's layers came down");
    assert_eq!(
        env.file_of(&b, "app:b3", "/app"),
        format!("module x\n{nonce} v21.2\n")
    );
}

const SINGLE: &str = "FROM busybox:latest
COPY main.go /src/
RUN cat /src/main.go > /x
";

#[test]
fn an_inline_cache_in_a_pushed_image_is_a_cache_source() {
    assert!(tk::require_registries());
    let nonce = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let env = Env::new(SINGLE, &[("main.go", &nonce)]);
    let image = format!("{}/kiln-inline-{}/app:1", tk::REGISTRY, std::process::id());
    ok(kiln(&env.root("a"))
        .args([
            "build",
            "-q",
            "--push",
            "-t",
            &image,
            "--cache-to",
            "type=inline",
        ])
        .arg(&env.ctx));
    let b = env.fresh_root("b");
    let log = ok(kiln(&b)
        .args([
            "build",
            "--progress",
            "json",
            "-t",
            "app:b",
            "--cache-from",
            &image,
        ])
        .arg(&env.ctx));
    assert_eq!(ran(&log), Vec::<String>::new(), "{log}");
    assert_eq!(env.file_of(&b, "app:b", "/x"), nonce);
}

#[test]
fn a_cache_in_the_password_protected_registry() {
    use std::io::Write;
    assert!(tk::require_registries());
    let env = Env::new(SINGLE, &[("main.go", "package main\n")]);
    let config = env.tmp.path().join("docker-config");
    let with_config = |root: &Path| {
        let mut c = kiln(root);
        c.env("DOCKER_CONFIG", &config);
        c
    };
    let a = env.root("a");
    let mut login = with_config(&a);
    login
        .args([
            "login",
            "-u",
            tk::AUTH_USER,
            "--password-stdin",
            tk::AUTH_REGISTRY,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = login.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{}", tk::AUTH_PASSWORD).unwrap();
    assert!(child.wait().unwrap().success());
    let cache = format!(
        "{}/kiln-cache-auth-{}/c:1",
        tk::AUTH_REGISTRY,
        std::process::id()
    );
    ok(with_config(&a)
        .args([
            "build",
            "-q",
            "--cache-to",
            &format!("type=registry,ref={cache}"),
        ])
        .arg(&env.ctx));
    let b = env.fresh_root("b");
    let log = ok(with_config(&b)
        .args(["build", "--progress", "json", "--cache-from", &cache])
        .arg(&env.ctx));
    assert_eq!(ran(&log), Vec::<String>::new(), "{log}");
    // Without credentials the cache is a warning, and the build runs.
    let log = ok(kiln(&env.fresh_root("c"))
        .args(["build", "--progress", "json", "--cache-from", &cache])
        .env("DOCKER_CONFIG", env.tmp.path().join("empty"))
        .arg(&env.ctx));
    assert!(log.contains("building without this cache"), "{log}");
    assert_eq!(ran(&log).len(), 2, "{log}");
}

/// A `COPY --from` found by its fast key (the source stage's key) still
/// depends on which paths it copies.
#[test]
fn copy_from_fast_key_tells_sources_apart() {
    let df = |src: &str| {
        format!("FROM busybox:latest AS s\nRUN echo one > /1 && echo two > /2\nFROM scratch\nCOPY --from=s {src} /x\n")
    };
    let env = Env::new(&df("/1"), &[]);
    let root = env.root("a");
    ok(kiln(&root)
        .args(["build", "-q", "-t", "fk:1"])
        .arg(&env.ctx));
    assert_eq!(env.file_of(&root, "fk:1", "/x"), "one\n");
    env.write("Dockerfile", &df("/2"));
    ok(kiln(&root)
        .args(["build", "-q", "-t", "fk:2"])
        .arg(&env.ctx));
    assert_eq!(env.file_of(&root, "fk:2", "/x"), "two\n");
}

/// `text` without terminal colour sequences (the log colours its fields).
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

/// (hashes found in the file-hash index, files read) of one build, from
/// the engine's log line.
fn file_hash_counts(log: &str) -> (u64, u64) {
    let plain = strip_ansi(log);
    let line = plain
        .lines()
        .find(|l| l.contains("file hashes"))
        .unwrap_or_else(|| panic!("no file-hash line in:\n{log}"));
    let num = |field: &str| -> u64 {
        let at = line.find(field).expect(field) + field.len();
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    (num("from_index="), num("read="))
}

#[test]
fn the_file_hash_index_reads_only_what_changed() {
    let env = Env::new(
        "FROM busybox:latest\nCOPY . /app\nRUN ls /app > /list\n\
         FROM busybox:latest\nCOPY --from=0 /app /app\n",
        &[],
    );
    for i in 0..40 {
        env.write(&format!("f{i:02}.txt"), &format!("file {i:02}\n"));
    }
    // Files changed in the last seconds are never kept in the index (they
    // could change again within one timestamp tick).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let build = || {
        let root = env.root("a");
        ok(kiln(&root)
            .env("KILN_LOG", "kiln_engine=info")
            .args(["build", "--progress", "plain"])
            .arg(&env.ctx))
    };
    // 41 context files (with the Dockerfile) read once; the COPY --from
    // finds all 41 hashed when the COPY's layer was committed.
    assert_eq!(file_hash_counts(&build()), (41, 41));
    // Nothing changed: every context file is only stat-ed, and the
    // COPY --from is a hit by its source stage's key.
    assert_eq!(file_hash_counts(&build()), (41, 0));

    // Same size, same mtime, other bytes: the ctime moved, so it is read.
    let path = env.ctx.join("f03.txt");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    env.write("f03.txt", "file XX\n");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let log = build();
    // 40 context files from the index, 1 read; the new COPY layer's 41
    // files come from the index again for the COPY --from.
    assert_eq!(file_hash_counts(&log), (40 + 41, 1), "{log}");
    let why = rebuilt(&log);
    assert!(
        why.iter().any(|(_, r)| r == "file f03.txt changed"),
        "the changed file is rebuilt: {why:?}"
    );
}
