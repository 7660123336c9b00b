//! The store and its archives against the real Docker, skopeo and umoci.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn kiln(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.arg("--root").arg(root);
    c
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A name unique to this test run, so parallel runs and leftovers never clash.
fn unique(prefix: &str) -> String {
    format!("kiln-test/{prefix}-{}", std::process::id())
}

/// Removes Docker images at the end of a test, even when it fails.
struct DockerCleanup(Vec<String>);

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = kiln_testkit::docker()
                .args(["rmi", "-f", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
fn import_then_save_runs_in_docker_and_reads_with_skopeo_and_umoci() {
    if !kiln_testkit::require_base_images() || !kiln_testkit::require_docker() {
        return;
    }
    let dir = kiln_testkit::tempdir();
    let root = dir.path().join("root");
    let name = format!("{}:v1", unique("imported"));
    let _cleanup = DockerCleanup(vec![name.clone()]);
    ok(
        kiln(&root)
            .arg("import")
            .arg(kiln_testkit::busybox_rootfs_tar())
            .arg(&name)
            .args([
                "--change",
                r#"CMD ["sh"]"#,
                "--change",
                "ENV GREETING=hello",
            ])
            .output()
            .unwrap(),
        "kiln import",
    );

    // `kiln images` and `kiln history` show it.
    let images = ok(kiln(&root).arg("images").output().unwrap(), "kiln images");
    assert!(images.starts_with("REPOSITORY"), "{images}");
    assert!(
        images.contains(&unique("imported")) && images.contains("v1"),
        "{images}"
    );
    let json = ok(
        kiln(&root)
            .args(["images", "--format", "json"])
            .output()
            .unwrap(),
        "kiln images --format json",
    );
    let row: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert!(row["UncompressedSize"].as_u64().unwrap() > row["CompressedSize"].as_u64().unwrap());
    let history = ok(
        kiln(&root).args(["history", &name]).output().unwrap(),
        "kiln history",
    );
    assert!(history.contains("Imported from"), "{history}");

    // The store itself is an OCI layout skopeo and umoci read.
    let full = format!("docker.io/{name}");
    let sk = ok(
        Command::new("skopeo")
            .args(["inspect", &format!("oci:{}:{full}", root.display())])
            .output()
            .unwrap(),
        "skopeo inspect oci:ROOT:NAME",
    );
    assert!(sk.contains("\"Layers\""), "{sk}");
    let bundle = dir.path().join("bundle");
    ok(
        Command::new("umoci")
            .args(["unpack", "--image", &format!("{}:{full}", root.display())])
            .arg(&bundle)
            .output()
            .unwrap(),
        "umoci unpack",
    );
    assert!(bundle.join("rootfs/bin/busybox").exists());

    // kiln save | docker load, then run it.
    let archive = dir.path().join("img.tar");
    ok(
        kiln(&root)
            .args(["save", "-o"])
            .arg(&archive)
            .arg(&name)
            .output()
            .unwrap(),
        "kiln save",
    );
    let loaded = ok(
        kiln_testkit::docker()
            .args(["load", "-i"])
            .arg(&archive)
            .output()
            .unwrap(),
        "docker load",
    );
    assert!(loaded.contains(&name), "{loaded}");
    let hello = ok(
        kiln_testkit::docker()
            .args(["run", "--rm", &name, "sh", "-c", "echo $GREETING"])
            .output()
            .unwrap(),
        "docker run",
    );
    assert_eq!(hello.trim(), "hello");

    // skopeo reads the same file as an OCI archive.
    let copied = dir.path().join("copied");
    ok(
        Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci-archive:{}:{full}", archive.display()))
            .arg(format!("oci:{}:x", copied.display()))
            .output()
            .unwrap(),
        "skopeo copy oci-archive:FILE",
    );
    assert!(copied.join("index.json").exists());
}

#[test]
fn docker_save_load_save_round_trip() {
    if !kiln_testkit::require_base_images() || !kiln_testkit::require_docker() {
        return;
    }
    let dir = kiln_testkit::tempdir();
    let root = dir.path().join("root");
    let original = format!("{}:orig", unique("roundtrip"));
    let back = format!("{}:back", unique("roundtrip"));
    let _cleanup = DockerCleanup(vec![original.clone(), back.clone()]);
    ok(
        kiln_testkit::docker()
            .args(["tag", "busybox:latest", &original])
            .output()
            .unwrap(),
        "docker tag",
    );
    let saved = dir.path().join("docker.tar");
    ok(
        kiln_testkit::docker()
            .args(["save", "-o"])
            .arg(&saved)
            .arg(&original)
            .output()
            .unwrap(),
        "docker save",
    );
    // Through stdin, as `docker save | kiln load`.
    let loaded = ok(
        kiln(&root)
            .arg("load")
            .stdin(std::fs::File::open(&saved).unwrap())
            .output()
            .unwrap(),
        "kiln load",
    );
    assert!(
        loaded.contains(&format!("Loaded image: {original}")),
        "{loaded}"
    );
    ok(
        kiln(&root)
            .args(["tag", &original, &back])
            .output()
            .unwrap(),
        "kiln tag",
    );
    ok(kiln(&root).arg("fsck").output().unwrap(), "kiln fsck");

    let ours = dir.path().join("kiln.tar");
    ok(
        kiln(&root)
            .args(["save", "-o"])
            .arg(&ours)
            .arg(&back)
            .output()
            .unwrap(),
        "kiln save",
    );
    ok(
        kiln_testkit::docker()
            .args(["load", "-i"])
            .arg(&ours)
            .output()
            .unwrap(),
        "docker load",
    );
    let id = |n: &str| {
        ok(
            kiln_testkit::docker()
                .args(["image", "inspect", "-f", "{{.Id}}", n])
                .output()
                .unwrap(),
            "docker image inspect",
        )
    };
    // Same config, so Docker sees the very same image.
    assert_eq!(id(&original), id(&back));
    let hello = ok(
        kiln_testkit::docker()
            .args(["run", "--rm", &back, "echo", "hello"])
            .output()
            .unwrap(),
        "docker run",
    );
    assert_eq!(hello.trim(), "hello");

    // Loading our own archive back into a fresh store works too.
    let root2 = dir.path().join("root2");
    let again = ok(
        kiln(&root2)
            .args(["load", "-i"])
            .arg(&ours)
            .output()
            .unwrap(),
        "kiln load of a kiln archive",
    );
    assert!(again.contains(&back), "{again}");
}
