//! `kiln build --squash`: the target stage's layers become one, the base
//! layers keep their digests, the filesystem is the same file for file, and
//! Docker runs the result. Needs root, dockerd and the base images.

mod common;

use std::path::Path;
use std::process::Command;

use common::archive::read_docker_archive;
use kiln_testkit as tk;
use serde_json::Value;

fn kiln(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.arg("--root").arg(root);
    c
}

fn ok(c: &mut Command) -> String {
    let o = c.output().expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{c:?} failed:\n{text}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const DOCKERFILE: &str = "FROM busybox
RUN mkdir -p /app/data && echo one > /app/data/a && head -c 100000 /dev/urandom > /app/blob
RUN rm /app/data/a && echo two > /app/data/b && rm -rf /bin/wget
ENV GREETING=squashed
RUN chmod 600 /app/blob && ln -s /app/data/b /app/link && printf '#!/bin/sh\\necho $GREETING\\n' > /app/run.sh && chmod 755 /app/run.sh
WORKDIR /app
CMD [\"/app/run.sh\"]
";

fn manifest(root: &Path, tag: &str) -> Value {
    let out = ok(kiln(root).args(["inspect", tag]));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("inspect {tag}: {e}\n{out}"))
}

#[test]
fn squash_merges_the_stage_layers_keeps_base_layers_and_runs_in_docker() {
    if !(tk::require_root() && tk::require_base_images() && tk::require_docker()) {
        return;
    }
    let tmp = tk::tempdir();
    let (root, ctx) = (tmp.path().join("root"), tmp.path().join("ctx"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    ok(kiln(&root)
        .arg("import")
        .arg(tk::busybox_rootfs_tar())
        .arg("busybox:latest"));
    let plain = common::unique("kiln-squash-plain");
    let squashed = common::unique("kiln-squash");
    ok(kiln(&root).args(["build", "-q", "-t", &plain]).arg(&ctx));
    ok(kiln(&root)
        .args(["build", "-q", "--squash", "-t", &squashed])
        .arg(&ctx));

    let (a, b) = (
        tmp.path().join("plain.tar"),
        tmp.path().join("squashed.tar"),
    );
    ok(kiln(&root).args(["save", "-o"]).arg(&a).arg(&plain));
    ok(kiln(&root).args(["save", "-o"]).arg(&b).arg(&squashed));
    let (pa, pb) = (
        read_docker_archive(&a, None).unwrap(),
        read_docker_archive(&b, None).unwrap(),
    );
    assert_eq!(pa.layer_count, 4);
    assert_eq!(pb.layer_count, 2, "busybox's layer plus one squashed layer");
    assert_eq!(
        pa.tree.entries.keys().collect::<Vec<_>>(),
        pb.tree.entries.keys().collect::<Vec<_>>()
    );
    for (path, e) in &pa.tree.entries {
        assert_eq!(
            Some(e),
            pb.tree.entries.get(path),
            "{path} differs after --squash"
        );
    }
    assert!(
        !pb.tree.entries.contains_key("/bin/wget") && !pb.tree.entries.contains_key("/app/data/a")
    );

    // Base layer unchanged; history: one entry per instruction, one layer.
    let base = read_docker_archive_layers(&root, "busybox:latest");
    let squashed_layers = read_docker_archive_layers(&root, &squashed);
    assert_eq!(
        base[0], squashed_layers[0],
        "the base layer keeps its digest"
    );
    let (ha, hb) = (&pa.config["history"], &pb.config["history"]);
    assert_eq!(ha.as_array().unwrap().len(), hb.as_array().unwrap().len());
    let with_layer: Vec<&Value> = hb
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["empty_layer"] != true)
        .collect();
    assert_eq!(with_layer.len(), 2, "{hb}");
    assert!(
        with_layer[1]["comment"]
            .as_str()
            .unwrap()
            .contains("3 layers merged"),
        "{hb}"
    );

    ok(tk::docker().args(["load", "-i"]).arg(&b));
    let out = ok(tk::docker().args(["run", "--rm", &squashed]));
    let _ = tk::docker().args(["rmi", &squashed]).output();
    assert_eq!(out.trim(), "squashed");
}

fn read_docker_archive_layers(root: &Path, tag: &str) -> Vec<String> {
    let m = manifest(root, tag);
    let layers = m["Manifest"]["layers"]
        .as_array()
        .or_else(|| m[0]["Manifest"]["layers"].as_array());
    let layers = layers.unwrap_or_else(|| panic!("no layers in inspect output of {tag}: {m}"));
    layers
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}
