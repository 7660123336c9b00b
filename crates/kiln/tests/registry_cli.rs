//! `kiln pull`, `push`, `login`, `logout` as a user runs them, against the
//! real registries: output like Docker's, digests kept, credentials in a
//! temporary DOCKER_CONFIG, one-line errors, concurrent pulls into one root.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_testkit::{
    require_docker, require_registries, AUTH_PASSWORD, AUTH_REGISTRY, AUTH_USER, REGISTRY,
};

fn kiln(root: &Path, docker_config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.arg("--root")
        .arg(root)
        .env("DOCKER_CONFIG", docker_config);
    c
}

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "kiln-test/cli-{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

fn ok(o: Output) -> (String, String) {
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "failed: {}\nstdout:\n{out}\nstderr:\n{err}",
        o.status
    );
    (out, err)
}

/// Copies Docker's busybox:latest into the open registry with skopeo.
fn seed_busybox() -> String {
    let name = format!("{REGISTRY}/{}:latest", unique("busybox"));
    let o = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "docker-daemon:busybox:latest",
        ])
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    name
}

fn digest_line(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn pull_push_and_login_round_trip() {
    if !require_registries() || !require_docker() {
        return;
    }
    let tmp = kiln_testkit::tempdir();
    let (root, cfg) = (tmp.path().join("root"), tmp.path().join("docker"));
    let name = seed_busybox();

    let (out, _) = ok(kiln(&root, &cfg).args(["pull", &name]).output().unwrap());
    let pulled = digest_line(&out, "Digest: ");
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    assert!(out.trim_end().ends_with(&name), "{out}");
    // Again: nothing to download.
    let (out, _) = ok(kiln(&root, &cfg).args(["pull", &name]).output().unwrap());
    assert!(out.contains("Status: Image is up to date"), "{out}");

    // To another repository: same digest.
    let other = format!("{REGISTRY}/{}:v2", unique("copy"));
    let (out, _) = ok(kiln(&root, &cfg)
        .args(["push", &name, &other])
        .output()
        .unwrap());
    assert!(
        out.starts_with(&format!(
            "The push refers to repository [{}]",
            other.trim_end_matches(":v2")
        )),
        "{out}"
    );
    assert_eq!(digest_line(&out, "v2: digest: "), pulled);

    // The auth registry: wrong password, then login, push, logout.
    let secured = format!("{AUTH_REGISTRY}/{}:v3", unique("auth"));
    let login = |password: &str| {
        let mut c = kiln(&root, &cfg);
        c.args(["login", "-u", AUTH_USER, "--password-stdin", AUTH_REGISTRY])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let o = login("wrong");
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert_eq!(
        err.trim(),
        format!("error: login to {AUTH_REGISTRY} failed: incorrect username or password")
    );
    assert!(!cfg.join("config.json").exists());

    let o = kiln(&root, &cfg)
        .args(["push", &name, &secured])
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert_eq!(
        err.trim(),
        format!("error: authentication failed for {AUTH_REGISTRY}: check `kiln login`")
    );

    let (out, _) = ok(login(AUTH_PASSWORD));
    assert!(out.contains("Login Succeeded"), "{out}");
    let config = std::fs::read_to_string(cfg.join("config.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert!(v["auths"][AUTH_REGISTRY]["auth"].is_string(), "{config}");

    let (out, _) = ok(kiln(&root, &cfg)
        .args(["push", &name, &secured])
        .output()
        .unwrap());
    assert_eq!(digest_line(&out, "v3: digest: "), pulled);
    let fresh = tmp.path().join("fresh");
    let (out, _) = ok(kiln(&fresh, &cfg)
        .args(["pull", &secured])
        .output()
        .unwrap());
    assert_eq!(digest_line(&out, "Digest: "), pulled);

    let (out, _) = ok(kiln(&root, &cfg)
        .args(["logout", AUTH_REGISTRY])
        .output()
        .unwrap());
    assert!(out.contains("Removing login credentials"), "{out}");
    let config = std::fs::read_to_string(cfg.join("config.json")).unwrap();
    assert!(!config.contains(AUTH_REGISTRY), "{config}");
}

#[test]
fn concurrent_pulls_into_one_root() {
    if !require_registries() || !require_docker() {
        return;
    }
    let tmp = kiln_testkit::tempdir();
    let (root, cfg) = (tmp.path().join("root"), tmp.path().join("docker"));
    let name = seed_busybox();
    let children: Vec<_> = (0..2)
        .map(|_| {
            kiln(&root, &cfg)
                .args(["pull", "--quiet", &name])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let (out, _) = ok(c.wait_with_output().unwrap());
        assert_eq!(out.trim(), name);
    }
    let store = kiln_store::Store::open(&root).unwrap();
    assert!(store.fsck().unwrap().is_clean());
    let img = store.resolve(&name).unwrap();
    for l in img.manifest.layers() {
        let d: kiln_oci::Digest = l.digest().to_string().parse().unwrap();
        assert!(store.has_blob(&d));
    }
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn bad_input_gives_one_line_errors() {
    if !require_registries() {
        return;
    }
    let tmp = kiln_testkit::tempdir();
    let (root, cfg) = (tmp.path().join("root"), tmp.path().join("docker"));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cases = [
        (
            format!("127.0.0.1:{port}/x:y"),
            format!("error: cannot reach registry 127.0.0.1:{port}: connection refused"),
        ),
        (
            format!("{REGISTRY}/kiln-test/never-pushed:nope"),
            format!("error: manifest unknown: {REGISTRY}/kiln-test/never-pushed:nope is not in the registry"),
        ),
    ];
    for (name, want) in cases {
        let o = kiln(&root, &cfg).args(["pull", &name]).output().unwrap();
        let (_, err) = text(&o);
        assert!(!o.status.success());
        let last = err.trim().lines().last().unwrap_or("");
        assert_eq!(last, want, "stderr:\n{err}");
    }
    let o = kiln(&root, &cfg)
        .args([
            "push",
            "kiln-test/not-stored:v1",
            &format!("{REGISTRY}/x:y"),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let (_, err) = text(&o);
    assert!(err.contains("not-stored"), "{err}");
    let o = kiln(&root, &cfg)
        .args(["pull", "--platform", "linux", "busybox"])
        .output()
        .unwrap();
    assert!(!o.status.success());
}
