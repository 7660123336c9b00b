//! Several kiln processes importing and tagging into one root at once leave
//! a valid index.json holding every name.

use std::fs;
use std::path::Path;
use std::process::Command;

fn kiln(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.arg("--root").arg(root);
    c
}

#[test]
fn concurrent_imports_and_tags_keep_every_name() {
    let dir = kiln_testkit::tempdir();
    let root = dir.path().join("root");
    const WRITERS: usize = 6;
    let mut children = Vec::new();
    for i in 0..WRITERS {
        let rootfs = dir.path().join(format!("rootfs{i}"));
        fs::create_dir_all(&rootfs).unwrap();
        fs::write(rootfs.join("id"), format!("{i}\n")).unwrap();
        // Each process imports its own image, then gives it a second name.
        let script = format!(
            "{kiln} --root {root} import {rootfs} conc/img{i}:a && {kiln} --root {root} tag conc/img{i}:a localhost:5000/conc/img{i}:b && {kiln} --root {root} prune -q",
            kiln = env!("CARGO_BIN_EXE_kiln"),
            root = root.display(),
            rootfs = rootfs.display(),
        );
        children.push(Command::new("sh").args(["-c", &script]).spawn().unwrap());
    }
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["io.containerd.image.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(names.len(), 2 * WRITERS, "{names:?}");
    for i in 0..WRITERS {
        assert!(
            names.contains(&format!("docker.io/conc/img{i}:a").as_str()),
            "{names:?}"
        );
        assert!(
            names.contains(&format!("localhost:5000/conc/img{i}:b").as_str()),
            "{names:?}"
        );
    }
    // Prunes running alongside the imports removed nothing an image needs.
    let out = kiln(&root).arg("fsck").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(fs::read_dir(root.join("ingest")).unwrap().count(), 0);
}
