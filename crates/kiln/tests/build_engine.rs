//! `kiln build`, `kiln run` and `kiln cp` end to end: real containers,
//! overlay snapshots, the store, and the Docker engine running the result.
//! Needs root, dockerd and the base images (`scripts/test.sh` sets them up).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_testkit as tk;

fn kiln(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.arg("--root").arg(root);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(mut c: impl std::borrow::BorrowMut<Command>) -> String {
    let c = c.borrow_mut();
    let o = c.output().expect("run kiln");
    assert!(o.status.success(), "{c:?} failed:\n{}", text(&o));
    text(&o)
}

fn fails(mut c: impl std::borrow::BorrowMut<Command>) -> String {
    let c = c.borrow_mut();
    let o = c.output().expect("run kiln");
    assert!(
        !o.status.success(),
        "{c:?} should have failed:\n{}",
        text(&o)
    );
    text(&o)
}

/// A fresh root with busybox imported, and a context dir holding `files`.
struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    ctx: PathBuf,
}

fn env(dockerfile: &str, files: &[(&str, &str)]) -> Option<Env> {
    if !(tk::require_root() && tk::require_base_images()) {
        return None;
    }
    let tmp = tk::tempdir();
    let root = tmp.path().join("root");
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    for (name, content) in files {
        let p = ctx.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    ok(kiln(&root)
        .arg("import")
        .arg(tk::busybox_rootfs_tar())
        .arg("busybox:latest"));
    Some(Env {
        _tmp: tmp,
        root,
        ctx,
    })
}

impl Env {
    /// Blocks until a build of this env has a step mounted (its container
    /// starting), then gives the container a moment to run.
    fn wait_until_a_step_runs(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let root = self.root.to_str().unwrap();
        while !std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .contains(root)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the build never mounted its step"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(std::time::Duration::from_millis(400));
    }

    fn build(&self, extra: &[&str]) -> Command {
        let mut c = kiln(&self.root);
        c.args(["build", "--progress", "plain"])
            .args(extra)
            .arg(&self.ctx);
        c
    }
}

/// Steps that ran (not from the cache) in a `--progress json` log.
fn executed_steps(json_log: &str) -> Vec<String> {
    let mut names = std::collections::HashMap::new();
    let mut ran = Vec::new();
    for line in json_log.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let id = v["step"].as_u64();
        match v["event"].as_str() {
            Some("started") => {
                names.insert(id, v["name"].as_str().unwrap_or("").to_string());
            }
            Some("done") => ran.push(names[&id].clone()),
            _ => {}
        }
    }
    ran.retain(|n| n.contains(" RUN ") || n.contains(" COPY ") || n.contains(" ADD "));
    ran
}

const TWO_STAGE: &str = r#"
FROM busybox AS build
WORKDIR /src
COPY greeting.txt .
RUN echo "built from $(cat greeting.txt)" > /out.txt
COPY other.txt .
RUN cat other.txt > /other.out

FROM scratch
COPY --from=build /bin/busybox /bin/busybox
COPY --from=build /out.txt /out.txt
CMD ["/bin/busybox", "cat", "/out.txt"]
"#;

#[test]
fn two_stage_build_runs_in_docker_and_rebuilds_from_cache() {
    let Some(e) = env(
        TWO_STAGE,
        &[("greeting.txt", "kiln\n"), ("other.txt", "x\n")],
    ) else {
        return;
    };
    if !tk::require_docker() {
        return;
    }
    let name = format!("kiln-test/two-stage:{}", std::process::id());
    ok(e.build(&["-t", &name]));
    // The builder stage's layers stay snapshots: no blob holds them.
    assert_eq!(blobs_holding(&e.root, "src/greeting.txt"), 0);

    // The image's layers stay uncompressed under the tag, as Docker's store
    // keeps them (compressed only when they leave: push, archives).
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(kiln(&e.root).args(["inspect", &name]))).unwrap();
    let layers = inspect[0]["Manifest"]["layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), 2, "{inspect}");
    for l in &layers {
        assert_eq!(
            l["mediaType"], "application/vnd.oci.image.layer.v1.tar",
            "{l}"
        );
    }

    // The store is an OCI layout skopeo reads directly.
    let full = format!("docker.io/{name}");
    let inspect = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{full}", e.root.display()))
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{}", text(&inspect));

    assert_eq!(run_in_docker(&e.root, &name, &[]), "built from kiln\n");

    // Nothing changed: every step comes from the cache.
    let log = ok(e.build(&["-t", &name, "--progress", "json"]));
    assert_eq!(executed_steps(&log), Vec::<String>::new(), "{log}");

    // Tagging the builder stage, from the cache, writes its layers from
    // their snapshots; Docker runs the image they make.
    let builder = format!("kiln-test/two-stage-builder:{}", std::process::id());
    let log = ok(e.build(&["-t", &builder, "--target", "build", "--progress", "json"]));
    assert_eq!(executed_steps(&log), Vec::<String>::new(), "{log}");
    assert_eq!(blobs_holding(&e.root, "src/greeting.txt"), 1);
    assert_eq!(
        run_in_docker(
            &e.root,
            &builder,
            &["cat", "/src/greeting.txt", "/other.out"]
        ),
        "kiln\nx\n"
    );

    // other.txt changed: only its COPY and what follows in that stage run;
    // the final stage's inputs are unchanged, so it stays cached.
    std::fs::write(e.ctx.join("other.txt"), "y\n").unwrap();
    let log = ok(e.build(&["-t", &name, "--progress", "json"]));
    let ran = executed_steps(&log);
    assert_eq!(ran.len(), 2, "{ran:?}");
    assert!(ran[0].contains("COPY other.txt"), "{ran:?}");
    assert!(ran[1].contains("RUN cat other.txt"), "{ran:?}");

    // --no-cache runs everything again.
    let log = ok(e.build(&["-t", &name, "--progress", "json", "--no-cache"]));
    assert_eq!(executed_steps(&log).len(), 6, "{log}");
}

/// Saves `image` from the store, loads it into Docker and runs `cmd` in
/// it (the image is removed from Docker again); returns its stdout.
fn run_in_docker(root: &Path, image: &str, cmd: &[&str]) -> String {
    let archive = root.join("../image.tar");
    ok(kiln(root).args(["save", "-o"]).arg(&archive).arg(image));
    let load = tk::docker()
        .arg("load")
        .arg("-i")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(load.status.success(), "{}", text(&load));
    let run = tk::docker()
        .args(["run", "--rm", image])
        .args(cmd)
        .output()
        .unwrap();
    let _ = tk::docker().args(["rmi", "-f", image]).output();
    assert!(run.status.success(), "{}", text(&run));
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// How many uncompressed tar blobs in the store hold `path`.
fn blobs_holding(root: &Path, path: &str) -> usize {
    let dir = root.join("blobs/sha256");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if bytes.get(257..262) != Some(&b"ustar"[..]) {
            continue; // JSON, or a compressed layer
        }
        let mut archive = tar::Archive::new(&bytes[..]);
        let holds = archive.entries().unwrap().any(|e| {
            e.ok()
                .and_then(|e| e.path().ok().map(|p| p.to_str() == Some(path)))
                .unwrap_or(false)
        });
        n += holds as usize;
    }
    n
}

#[test]
fn failing_run_reports_line_exit_code_and_output() {
    let df = "FROM busybox\nRUN echo preparing\nRUN echo 'something broke' >&2 && exit 7\n";
    let Some(e) = env(df, &[]) else { return };
    let out = fails(&mut e.build(&["--progress", "quiet"]));
    assert!(out.contains("Dockerfile:3"), "{out}");
    assert!(out.contains("exit code 7"), "{out}");
    assert!(out.contains("something broke"), "{out}");
    // Nothing is left mounted under the root.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(e.root.to_str().unwrap()), "{mounts}");
}

#[test]
fn missing_copy_source_names_the_path_and_a_close_name() {
    let Some(e) = env(
        "FROM busybox\nCOPY mian.go /app/\n",
        &[("main.go", "package main\n")],
    ) else {
        return;
    };
    let out = fails(&mut e.build(&[]));
    assert!(out.contains("mian.go"), "{out}");
    assert!(out.contains("main.go"), "{out}");
    assert!(out.contains("Dockerfile:2"), "{out}");
}

#[test]
fn target_builds_only_reachable_stages_and_local_output_extracts_files() {
    let df = r#"
FROM busybox AS broken
RUN exit 1

FROM busybox AS app
ARG VERSION=0
RUN mkdir -p /dist && echo "v$VERSION" > /dist/version && ln -s version /dist/link

FROM app AS final
RUN exit 1
"#;
    let Some(e) = env(df, &[]) else { return };
    let out_dir = e.root.join("../out");
    ok(e.build(&[
        "--target",
        "app",
        "--build-arg",
        "VERSION=3",
        "-o",
        &format!("type=local,dest={}", out_dir.display()),
    ]));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("dist/version")).unwrap(),
        "v3\n"
    );
    assert_eq!(
        std::fs::read_link(out_dir.join("dist/link")).unwrap(),
        Path::new("version")
    );
    assert!(out_dir.join("bin/busybox").is_file());

    let out = fails(&mut e.build(&["--target", "nope"]));
    assert!(out.contains("nope"), "{out}");
    assert!(out.contains("app"), "lists the stages: {out}");
}

#[test]
fn secrets_reach_run_but_not_the_image_and_network_none_isolates() {
    let df = r#"
FROM busybox
RUN --mount=type=secret,id=token cat /run/secrets/token > /seen-token
RUN --network=none cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /ifaces
RUN ls /run/secrets 2>/dev/null | wc -l > /secrets-left
"#;
    let Some(e) = env(df, &[]) else { return };
    let secret = e.root.join("../token");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let out_dir = e.root.join("../out");
    ok(e.build(&[
        "--secret",
        &format!("id=token,src={}", secret.display()),
        "-o",
        &format!("type=local,dest={}", out_dir.display()),
    ]));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("seen-token")).unwrap(),
        "s3cr3t"
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("ifaces"))
            .unwrap()
            .trim(),
        "lo"
    );
    assert!(!out_dir.join("run/secrets/token").exists());
    assert_eq!(
        std::fs::read_to_string(out_dir.join("secrets-left"))
            .unwrap()
            .trim(),
        "0"
    );

    let out = fails(&mut e.build(&["--secret", "id=token,src=/nonexistent/kiln-secret"]));
    assert!(out.contains("/nonexistent/kiln-secret"), "{out}");
}

#[test]
fn run_with_source_mounted_and_cp_out_of_an_image() {
    let Some(e) = env(
        "FROM busybox\nRUN echo inside > /marker\n",
        &[("src/input.txt", "abc\n")],
    ) else {
        return;
    };
    ok(e.build(&["-t", "tools:1"]));
    // `docker run -v $PWD:/src -w /src` style: the result lands on the host.
    let src = e.ctx.join("src");
    let out = ok(kiln(&e.root)
        .args(["run", "--rm", "-v"])
        .arg(format!("{}:/src", src.display()))
        .args([
            "-w",
            "/src",
            "tools:1",
            "sh",
            "-c",
            "tr a-z A-Z < input.txt > output.txt && cat /marker",
        ]));
    assert!(out.contains("inside"), "{out}");
    assert_eq!(
        std::fs::read_to_string(src.join("output.txt")).unwrap(),
        "ABC\n"
    );

    // The exit code of the command is kiln's.
    let o = kiln(&e.root)
        .args(["run", "tools:1", "sh", "-c", "exit 5"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));

    let dest = e.root.join("../copied-marker");
    ok(kiln(&e.root).args(["cp", "tools:1:/marker"]).arg(&dest));
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "inside\n");
    let out = fails(kiln(&e.root).args(["cp", "tools:1:/nope"]).arg(&dest));
    assert!(out.contains("/nope"), "{out}");
}

#[test]
fn killed_build_leaves_a_consistent_store_and_the_next_build_succeeds() {
    let df = "FROM busybox\nRUN echo start && sleep 30 && echo never > /x\n";
    let Some(e) = env(df, &[]) else { return };
    let mut child = e
        .build(&[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the step's container is running, then kill -9.
    e.wait_until_a_step_runs();
    child.kill().unwrap();
    child.wait().unwrap();

    ok(kiln(&e.root).arg("fsck"));
    // A different step now; the stale state of the killed one is cleaned up.
    std::fs::write(
        e.ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo done > /x\n",
    )
    .unwrap();
    ok(e.build(&["-t", "after-kill:1"]));
    ok(kiln(&e.root).arg("fsck"));
    // The killed step's mount was too young to be taken for stale; once it
    // is older than any live build's unlocked moment, the next kiln detaches it.
    assert!(
        !tk::mounts_under(&e.root).is_empty(),
        "the killed step left no mount"
    );
    tk::age_active_snapshots(&e.root);
    ok(kiln(&e.root).args(["system", "df"]));
    assert_eq!(tk::mounts_under(&e.root), Vec::<String>::new());
}

#[test]
fn dockerfile_from_stdin_and_bad_flags() {
    let Some(e) = env("", &[("a.txt", "a")]) else {
        return;
    };
    let mut c = e.build(&["-f", "-", "-t", "stdin:1"]);
    c.stdin(std::process::Stdio::piped());
    let mut child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"FROM busybox\nCOPY a.txt /a.txt\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));

    let out = fails(&mut e.build(&["--build-arg", "=x"]));
    assert!(out.contains("--build-arg"), "{out}");
    let out = fails(&mut e.build(&["-o", "type=zip,dest=x"]));
    assert!(out.contains("--output") && out.contains("zip"), "{out}");
    let out = fails(&mut e.build(&["--secret", "src=/x"]));
    assert!(out.contains("--secret") && out.contains("id"), "{out}");
    let out = fails(&mut e.build(&["-f", "/nonexistent/Dockerfile"]));
    assert!(out.contains("/nonexistent/Dockerfile"), "{out}");
}

#[test]
fn interrupted_build_unmounts_everything_and_exits_non_zero() {
    let df = "FROM busybox\nRUN echo start && sleep 60\n";
    let Some(e) = env(df, &[]) else { return };
    let child = e
        .build(&[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    e.wait_until_a_step_runs();
    // What a terminal's Ctrl-C sends to kiln.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("interrupted"), "{}", text(&o));
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(e.root.to_str().unwrap()),
        "left mounted: {mounts}"
    );
    ok(kiln(&e.root).arg("fsck"));
}

#[test]
fn missing_base_is_pulled_and_push_sends_the_tags() {
    let Some(e) = env("", &[]) else { return };
    if !tk::require_registries() {
        return;
    }
    let repo = format!(
        "{}/kiln-build-test/base-{}",
        tk::REGISTRY,
        std::process::id()
    );
    ok(kiln(&e.root).args(["tag", "busybox:latest", &format!("{repo}:1")]));
    ok(kiln(&e.root).args(["push", &format!("{repo}:1")]));

    // A fresh root has no base: FROM pulls it.
    let fresh = e.root.join("../fresh");
    std::fs::write(
        e.ctx.join("Dockerfile"),
        format!("FROM {repo}:1\nRUN echo pulled > /p\n"),
    )
    .unwrap();
    let pushed = format!("{repo}:built");
    ok(kiln(&fresh)
        .args(["build", "--progress", "plain", "-t", &pushed, "--push"])
        .arg(&e.ctx));
    // The pushed image comes back into another root and has the RUN's file.
    let other = e.root.join("../other");
    ok(kiln(&other).args(["pull", &pushed]));
    let dest = e.root.join("../p");
    ok(kiln(&other)
        .args(["cp", &format!("{pushed}:/p")])
        .arg(&dest));
    assert_eq!(std::fs::read_to_string(dest).unwrap(), "pulled\n");

    let out = fails(
        kiln(&fresh)
            .args(["build", "--platform", "linux/s390x"])
            .arg(&e.ctx),
    );
    assert!(out.contains("s390x"), "{out}");
}

#[test]
fn a_relative_root_and_context_work() {
    let Some(e) = env("FROM busybox\nRUN echo ok > /ok\n", &[]) else {
        return;
    };
    let parent = e.root.parent().unwrap();
    let out = ok(Command::new(env!("CARGO_BIN_EXE_kiln"))
        .current_dir(parent)
        .args(["--root", "root", "build", "--progress", "plain", "ctx"]));
    assert!(out.contains("DONE"), "{out}");
}

#[test]
fn the_copy_snapshotter_builds_the_same_image() {
    let Some(e) = env(
        TWO_STAGE,
        &[("greeting.txt", "copy\n"), ("other.txt", "x\n")],
    ) else {
        return;
    };
    let out_dir = e.root.join("../out");
    ok(
        e.build(&["-o", &format!("type=local,dest={}", out_dir.display())])
            .env("KILN_SNAPSHOTTER", "copy"),
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("out.txt")).unwrap(),
        "built from copy\n"
    );
    assert!(out_dir.join("bin/busybox").is_file());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(e.root.to_str().unwrap()), "{mounts}");
}

#[test]
fn unreachable_base_and_escaping_context_symlink_are_clear_errors() {
    let Some(e) = env("FROM 127.0.0.1:1/nowhere/base:1\nRUN true\n", &[]) else {
        return;
    };
    let out = fails(e.build(&[]));
    assert!(out.contains("127.0.0.1:1/nowhere/base:1"), "{out}");
    assert!(
        out.contains("connection refused") || out.contains("cannot reach"),
        "{out}"
    );

    std::fs::write(e.ctx.join("Dockerfile"), "FROM busybox\nCOPY secret /\n").unwrap();
    std::os::unix::fs::symlink("/etc/shadow", e.ctx.join("secret")).unwrap();
    let out = fails(e.build(&[]));
    assert!(out.contains("outside the build context"), "{out}");
    assert!(out.contains("Dockerfile:2"), "{out}");
}

#[test]
fn context_tar_on_stdin_in_any_compression() {
    let Some(e) = env(
        "FROM busybox\nCOPY a.txt /a.txt\n",
        &[("a.txt", "from tar\n")],
    ) else {
        return;
    };
    for compress in ["", "--xz", "--bzip2", "--gzip"] {
        let tar = Command::new("tar")
            .args(["-C"])
            .arg(&e.ctx)
            .args(["-c", "."])
            .args(if compress.is_empty() {
                vec![]
            } else {
                vec![compress]
            })
            .output()
            .unwrap();
        assert!(tar.status.success(), "{}", text(&tar));
        let out_dir = e.root.join(format!("../out{compress}"));
        let mut child = kiln(&e.root)
            .args(["build", "--progress", "plain", "-o"])
            .arg(format!("type=local,dest={}", out_dir.display()))
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&tar.stdout).unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{compress}: {}", text(&o));
        assert_eq!(
            std::fs::read_to_string(out_dir.join("a.txt")).unwrap(),
            "from tar\n"
        );
    }
}
