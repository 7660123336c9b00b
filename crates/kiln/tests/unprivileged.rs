//! `--isolation=chroot` and `kiln executor` (kaniko's model): the same
//! multi-stage Dockerfile built the root way (containers, overlay) and
//! the chroot way — in a scratch directory on the host, and inside
//! `docker run` without `--privileged` (Docker's default seccomp profile
//! and capabilities, then only the capabilities docs/unprivileged.md
//! names) — gives the same image (config and flattened filesystem, owners
//! included), which Docker loads and runs, and which the executor pushes.
//! Needs root, dockerd, the base images and the registry on 127.0.0.1:5000.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::archive::{read_docker_archive, Image};
use common::cli::ok;
use common::compare::assert_same_image;
use kiln_testkit as tk;

const DOCKERFILE: &str = r#"FROM busybox:latest AS build
RUN mkdir -p /out/etc && echo built > /out/hello \
 && echo nobody-owned > /out/theirs && chown 65534:65534 /out/theirs \
 && chmod 4755 /out/hello && ln -s hello /out/link && ln /out/hello /out/hard
COPY app.txt /out/app.txt
FROM busybox:latest
COPY --from=build /out/ /srv/
RUN rm -rf /home /bin/vi && mkdir /data && chown 65534:65534 /data \
 && echo step > /data/step && cat /srv/app.txt > /data/copied
ENV GREETING=hi
USER nobody
CMD ["cat", "/srv/hello", "/data/copied"]
"#;

fn kiln(root: &Path) -> Command {
    let mut c = common::cli::kiln(root);
    c.env("SOURCE_DATE_EPOCH", "1000");
    c
}

struct Env {
    tmp: tempfile::TempDir,
    ctx: PathBuf,
}

fn env() -> Option<Env> {
    if !(tk::require_root()
        && tk::require_base_images()
        && tk::require_docker()
        && tk::require_registries())
    {
        return None;
    }
    let tmp = tk::tempdir();
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(ctx.join("app.txt"), "from the context\n").unwrap();
    Some(Env { tmp, ctx })
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// A store with busybox imported.
    fn store(&self, name: &str) -> PathBuf {
        let root = self.path(name);
        ok(kiln(&root)
            .arg("import")
            .arg(tk::busybox_rootfs_tar())
            .arg("busybox:latest"));
        root
    }

    /// The root way: containers over overlay snapshots.
    fn reference(&self) -> Image {
        let root = self.store("ref-store");
        let tar = self.path("ref.tar");
        ok(kiln(&root)
            .args(["build", "-q", "-t", "ref", "-o"])
            .arg(format!("type=docker,dest={}", tar.display()))
            .arg(&self.ctx));
        read_docker_archive(&tar, None).unwrap()
    }
}

/// Loads a docker-archive into Docker, runs it, and removes it again.
fn runs_in_docker(tar: &Path, tag: &str) {
    ok(tk::docker().arg("load").arg("-i").arg(tar));
    let out = ok(tk::docker().args(["run", "--rm", tag]));
    let _ = tk::docker().args(["rmi", "-f", tag]).output();
    assert_eq!(out, "built\nfrom the context\n");
}

#[test]
fn chroot_build_in_a_scratch_dir_equals_the_root_build() {
    let Some(env) = env() else { return };
    let reference = env.reference();
    let root = env.store("chroot-store");
    let live = env.path("live");
    std::fs::create_dir_all(&live).unwrap();
    let tar = env.path("chroot.tar");
    let tag = tk_tag("chroot-dir");
    ok(kiln(&root)
        .args(["build", "-q", "--isolation", "chroot", "--chroot-dir"])
        .arg(&live)
        .args(["-t", &tag, "-o"])
        .arg(format!("type=docker,dest={}", tar.display()))
        .arg(&env.ctx));
    let got = read_docker_archive(&tar, None).unwrap();
    assert_same_image(&reference, &got, "chroot build");
    runs_in_docker(&tar, &tag);
    // A second build reuses the cache and the laid-out root.
    let again = ok(kiln(&root)
        .args([
            "build",
            "--progress",
            "plain",
            "--isolation",
            "chroot",
            "--chroot-dir",
        ])
        .arg(&live)
        .arg(&env.ctx));
    assert_eq!(again.matches("CACHED").count(), 4, "{again}");
}

#[test]
fn chroot_without_a_container_needs_a_dir_or_force() {
    let Some(env) = env() else { return };
    let root = env.path("store");
    let o = kiln(&root)
        .args(["build", "--isolation", "chroot"])
        .arg(&env.ctx)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    // The test host may itself be a container (/.dockerenv): then the
    // guard lets it through, and the build must not start on /.
    if !Path::new("/.dockerenv").exists() {
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("--chroot-dir") && err.contains("--force"),
            "{err}"
        );
    }
}

fn tk_tag(what: &str) -> String {
    common::unique(&format!("kiln-unpriv-{what}"))
}

/// Where kiln runs in Docker: the binary under test mounted at
/// /kiln/bin/kiln in a Debian container (whose libraries it links), or
/// the kiln image.
#[derive(Clone, Copy)]
enum Runner<'a> {
    MountedBinary,
    Image(&'a str),
}

/// `docker run` of kiln without `--privileged`, with `caps` (`docker run`
/// flags), the store of the host mounted at /kiln/store.
fn in_docker(env: &Env, runner: Runner, store: &Path, caps: &[&str], kiln_args: &[&str]) -> String {
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_kiln"));
    let mut c = tk::docker();
    c.args(["run", "--rm", "--network", "host"]).args(caps);
    if let Runner::MountedBinary = runner {
        c.arg("-v")
            .arg(format!("{}:/kiln/bin/kiln:ro", bin.display()));
    }
    c.arg("-v")
        .arg(format!("{}:/kiln/store", store.display()))
        .arg("-v")
        .arg(format!("{}:/workspace:ro", env.ctx.display()))
        .arg("-v")
        .arg(format!("{}:/results", out.display()))
        .args(["-e", "SOURCE_DATE_EPOCH=1000"]);
    match runner {
        Runner::MountedBinary => c.args(["--entrypoint", "/kiln/bin/kiln", "debian:bookworm"]),
        Runner::Image(tag) => c.arg(tag),
    };
    c.args(["--root", "/kiln/store"]).args(kiln_args);
    ok(&mut c)
}

fn executor_in_docker(env: &Env, runner: Runner, caps: &[&str], name: &str) {
    let reference = env.reference();
    let store = env.store(&format!("{name}-store"));
    let dest = format!("127.0.0.1:5000/{}:1", tk_tag(name));
    let log = in_docker(
        env,
        runner,
        &store,
        caps,
        &[
            "executor",
            "--context",
            "/workspace",
            "--dockerfile",
            "/workspace/Dockerfile",
            "--destination",
            &dest,
            "--tar-path",
            "/results/image.tar",
            "--digest-file",
            "/results/digest",
        ],
    );
    let tar = env.path("out/image.tar");
    let got = read_docker_archive(&tar, None).unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_same_image(&reference, &got, name);
    let digest = std::fs::read_to_string(env.path("out/digest")).unwrap();
    assert!(digest.starts_with("sha256:"), "{digest}");
    // What was pushed is that image, and Docker runs it.
    ok(tk::docker().args(["pull", &dest]));
    let out = ok(tk::docker().args(["run", "--rm", &dest]));
    let _ = tk::docker().args(["rmi", "-f", &dest]).output();
    assert_eq!(out, "built\nfrom the context\n");
}

#[test]
fn executor_in_docker_with_default_capabilities() {
    let Some(env) = env() else { return };
    executor_in_docker(&env, Runner::MountedBinary, &[], "default-caps");
}

#[test]
fn executor_in_docker_with_only_the_documented_capabilities() {
    let Some(env) = env() else { return };
    let caps = [
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CHOWN",
        "--cap-add",
        "DAC_OVERRIDE",
        "--cap-add",
        "FOWNER",
        "--cap-add",
        "FSETID",
        "--cap-add",
        "SETUID",
        "--cap-add",
        "SETGID",
    ];
    executor_in_docker(&env, Runner::MountedBinary, &caps, "few-caps");
}

/// The kiln image (images/kiln/Dockerfile, built by kiln from the
/// repository root with the static binary of `scripts/kiln-image.sh`) runs
/// `executor` without privileges, and `build` too.
#[test]
#[ignore = "needs the musl build of scripts/kiln-image.sh (minutes of CPU); run with --ignored"]
fn the_kiln_image_builds_without_privileges() {
    let Some(env) = env() else { return };
    let repo = common::repo_root();
    let musl = repo.join("target/x86_64-unknown-linux-musl/release/kiln");
    assert!(
        musl.is_file(),
        "{} missing: run scripts/kiln-image.sh",
        musl.display()
    );
    let root = env.store("image-store");
    ok(kiln(&root)
        .arg("import")
        .arg(tk::debian_rootfs_tar())
        .arg("debian:bookworm"));
    let tag = tk_tag("image");
    let tar = env.path("kiln-image.tar");
    ok(kiln(&root)
        .args(["build", "-q", "-f"])
        .arg(repo.join("images/kiln/Dockerfile"))
        .args(["-t", &tag, "-o"])
        .arg(format!("type=docker,dest={}", tar.display()))
        .arg(&repo));
    ok(tk::docker().arg("load").arg("-i").arg(&tar));
    executor_in_docker(&env, Runner::Image(&tag), &[], "image");
    let store = env.store("image-build-store");
    let log = in_docker(
        &env,
        Runner::Image(&tag),
        &store,
        &[],
        &["build", "-q", "/workspace"],
    );
    assert!(log.contains("sha256:"), "{log}");
    let _ = tk::docker().args(["rmi", "-f", &tag]).output();
}
