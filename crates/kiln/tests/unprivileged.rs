//! `--isolation=chroot` and `kiln executor` (kaniko's model): the same
//! multi-stage Dockerfile built the root way (containers, overlay) and
//! the chroot way — in a scratch directory on the host, and inside
//! `docker run` without `--privileged` (Docker's default seccomp profile
//! and capabilities, then only the capabilities docs/unprivileged.md
//! names) — gives the same image (config and flattened filesystem, owners
//! included), which Docker loads and runs, and which the executor pushes.
//! The kiln image does the same, and runs the README's GitLab job and
//! Kubernetes pod. Needs root, dockerd, the base images, the registries and
//! the static kiln of `scripts/musl-kiln.sh musl-test` (scripts/test.sh
//! builds it first).

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
    // Kept: the paths of --keep and those of KILN_KEEP, both.
    let kept = ["by-flag", "by-env-1", "by-env-2"].map(|d| live.join(d));
    for d in &kept {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("file"), "kept").unwrap();
    }
    let tar = env.path("chroot.tar");
    let tag = tk_tag("chroot-dir");
    ok(kiln(&root)
        .args(["build", "-q", "--isolation", "chroot", "--chroot-dir"])
        .arg(&live)
        .arg("--keep")
        .arg(&kept[0])
        .env("KILN_KEEP", std::env::join_paths(&kept[1..]).unwrap())
        .args(["-t", &tag, "-o"])
        .arg(format!("type=docker,dest={}", tar.display()))
        .arg(&env.ctx));
    for d in &kept {
        assert!(d.join("file").is_file(), "{} not kept", d.display());
    }
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

/// The smallest set docs/unprivileged.md names.
const FEW_CAPS: [&str; 14] = [
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

#[test]
fn executor_in_docker_with_only_the_documented_capabilities() {
    let Some(env) = env() else { return };
    executor_in_docker(&env, Runner::MountedBinary, &FEW_CAPS, "few-caps");
}

/// The static kiln the image takes, relative to the repository root (the
/// image's build context): `scripts/musl-kiln.sh musl-test`'s, which
/// scripts/test.sh builds before the tests.
fn musl_kiln(repo: &Path) -> String {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo.join("target"), PathBuf::from);
    let bin = target.join("x86_64-unknown-linux-musl/musl-test/kiln");
    assert!(
        bin.is_file(),
        "{} missing: build it with `scripts/musl-kiln.sh musl-test` (scripts/test.sh does)",
        bin.display()
    );
    let rel = bin.strip_prefix(repo).unwrap_or_else(|_| {
        panic!(
            "{} is outside {} (the kiln image's build context): build it without CARGO_TARGET_DIR",
            bin.display(),
            repo.display()
        )
    });
    rel.display().to_string()
}

/// The kiln image and its debug stage, loaded into Docker; removed from
/// Docker when dropped.
struct KilnImages {
    kiln: String,
    debug: String,
}

impl Drop for KilnImages {
    fn drop(&mut self) {
        let _ = tk::docker()
            .args(["rmi", "-f", &self.kiln, &self.debug])
            .output();
    }
}

/// Builds images/kiln/Dockerfile as scripts/kiln-image.sh does (kiln, root,
/// from the repository root) with the musl-test binary, both stages.
fn kiln_images(env: &Env, root: &Path) -> KilnImages {
    let repo = common::repo_root();
    let bin = musl_kiln(&repo);
    let images = KilnImages {
        kiln: tk_tag("image"),
        debug: tk_tag("image-debug"),
    };
    for (tag, target) in [(&images.kiln, "kiln"), (&images.debug, "debug")] {
        let tar = env.path(&format!("{target}-image.tar"));
        ok(kiln(root)
            .args(["build", "-q", "-f"])
            .arg(repo.join("images/kiln/Dockerfile"))
            .args(["--build-arg", &format!("KILN_BIN={bin}")])
            .args(["--target", target, "-t", tag, "-o"])
            .arg(format!("type=docker,dest={}", tar.display()))
            .arg(&repo));
        ok(tk::docker().arg("load").arg("-i").arg(&tar));
    }
    images
}

/// The kiln image (images/kiln/Dockerfile, built by kiln from the
/// repository root with the static binary of `scripts/musl-kiln.sh`) runs
/// `executor` without privileges — Docker's default capabilities, then
/// only the documented ones — and `build` too; its debug stage runs the
/// README's GitLab job as GitLab's runner does, and the plain image the
/// README's Kubernetes pod.
#[test]
fn the_kiln_image_builds_without_privileges() {
    let Some(env) = env() else { return };
    let root = env.store("image-store");
    ok(kiln(&root)
        .arg("import")
        .arg(tk::debian_rootfs_tar())
        .arg("debian:bookworm"));
    let images = kiln_images(&env, &root);
    let tag = images.kiln.as_str();
    executor_in_docker(&env, Runner::Image(tag), &[], "image");
    executor_in_docker(&env, Runner::Image(tag), &FEW_CAPS, "image-few-caps");
    let store = env.store("image-build-store");
    let log = in_docker(
        &env,
        Runner::Image(tag),
        &store,
        &[],
        &["build", "-q", "/workspace"],
    );
    assert!(log.contains("sha256:"), "{log}");
    // The CI examples start from an empty store: the base is pulled.
    let base = format!("{}/{}:1", tk::REGISTRY, tk_tag("base"));
    ok(kiln(&root).args(["push", "busybox:latest", &base]));
    let ctx = env.registry_context(&base);
    gitlab_job(&env, &images.debug, &ctx);
    kubernetes_pod(&env, tag, &ctx);
}

impl Env {
    /// A context whose Dockerfile starts from `base` in a registry.
    fn registry_context(&self, base: &str) -> PathBuf {
        let ctx = self.path("registry-ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            DOCKERFILE.replace("busybox:latest", base),
        )
        .unwrap();
        std::fs::write(ctx.join("app.txt"), "from the context\n").unwrap();
        ctx
    }

    /// A Docker config directory with the credentials of the registry
    /// with authentication.
    fn registry_auth(&self) -> PathBuf {
        use base64::Engine;
        let dir = self.path("registry-auth");
        std::fs::create_dir_all(&dir).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            tk::AUTH_USER,
            tk::AUTH_PASSWORD
        ));
        let config = serde_json::json!({"auths": {tk::AUTH_REGISTRY: {"auth": auth}}});
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        dir
    }
}

/// `image` (in the registry with authentication) pulls and runs: kiln
/// pulls it with the credentials, Docker loads and runs it.
fn pulls_and_runs(env: &Env, name: &str, image: &str) {
    let root = env.path(&format!("{name}-pull-store"));
    let tar = env.path("pulled.tar");
    let auth = env.registry_auth();
    ok(kiln(&root)
        .env("DOCKER_CONFIG", &auth)
        .args(["pull", image]));
    ok(kiln(&root).args(["save", "-o"]).arg(&tar).arg(image));
    runs_in_docker(&tar, image);
}

/// What GitLab's runner (docker executor) runs as the container's command
/// when the image's entrypoint is cleared: the first shell of a fixed list
/// of paths, which reads the job's script from stdin.
const GITLAB_SHELL_DETECTION: &str = "if [ -x /usr/local/bin/bash ]; then
\texec /usr/local/bin/bash
elif [ -x /usr/bin/bash ]; then
\texec /usr/bin/bash
elif [ -x /bin/bash ]; then
\texec /bin/bash
elif [ -x /usr/local/bin/sh ]; then
\texec /usr/local/bin/sh
elif [ -x /usr/bin/sh ]; then
\texec /usr/bin/sh
elif [ -x /bin/sh ]; then
\texec /bin/sh
elif [ -x /busybox/sh ]; then
\texec /busybox/sh
else
\techo shell not found
\texit 1
fi
";

/// Runs `c` with `input` on its stdin; it must succeed.
fn ok_with_stdin(c: &mut Command, input: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let text = common::cli::text(&o);
    assert!(o.status.success(), "{c:?} failed:\n{text}");
    text
}

/// The README's GitLab job in the debug image, as GitLab runs it: the
/// entrypoint cleared, `sh -c` of its shell detection, the script on stdin
/// with GitLab's CI variables; the shell and its tools outlive the build.
fn gitlab_job(env: &Env, debug: &str, ctx: &Path) {
    let job = common::readme::gitlab_job();
    assert!(
        job.image.ends_with("/kiln:debug") && job.entrypoint_cleared,
        "the README's GitLab job no longer runs the debug image with its entrypoint cleared: {}",
        job.image
    );
    let image = format!("{}/{}", tk::AUTH_REGISTRY, tk_tag("gitlab"));
    let script = format!(
        "set -eo pipefail\n{}\nls /busybox/sh /kiln/.docker/config.json\n",
        job.script.join("\n")
    );
    let vars = [
        ("CI_PROJECT_DIR", "/builds/kiln/app".to_string()),
        ("CI_REGISTRY", tk::AUTH_REGISTRY.to_string()),
        ("CI_REGISTRY_USER", tk::AUTH_USER.to_string()),
        ("CI_REGISTRY_PASSWORD", tk::AUTH_PASSWORD.to_string()),
        ("CI_REGISTRY_IMAGE", image.clone()),
        ("CI_COMMIT_SHORT_SHA", "0123abcd".to_string()),
        ("SOURCE_DATE_EPOCH", "1000".to_string()),
    ];
    let mut c = tk::docker();
    c.args(["run", "--rm", "-i", "--network", "host", "--entrypoint", ""]);
    c.arg("-v")
        .arg(format!("{}:/builds/kiln/app", ctx.display()));
    for (k, v) in vars {
        c.arg("-e").arg(format!("{k}={v}"));
    }
    c.args([debug, "sh", "-c", GITLAB_SHELL_DETECTION]);
    let log = ok_with_stdin(&mut c, &script);
    assert!(
        log.contains("/busybox/sh") && log.contains("config.json"),
        "{log}"
    );
    pulls_and_runs(env, "gitlab", &format!("{image}:0123abcd"));
}

/// `docker run` flags for the pod's securityContext; a setting without a
/// mapping here fails the test, so the README's pod stays the one tested.
fn pod_security_flags(security: &[(String, String)]) -> Vec<&'static str> {
    let mut flags = Vec::new();
    for (key, value) in security {
        match (key.as_str(), value.as_str()) {
            // Docker lets processes gain privileges (setuid) by default.
            ("allowPrivilegeEscalation", "true") => {}
            ("allowPrivilegeEscalation", "false") => flags.push("--security-opt=no-new-privileges"),
            // Docker's default seccomp profile is the runtime's default.
            ("seccompProfile", "{ type: RuntimeDefault }") => {}
            _ => panic!("the README's pod sets securityContext {key}: {value}; map it to docker run flags in this test"),
        }
    }
    flags
}

/// The README's Kubernetes pod, as `docker run`: its securityContext as
/// flags, its volumes as read-only mounts, its args with the destination
/// in the registry with authentication.
fn kubernetes_pod(env: &Env, kiln_image: &str, ctx: &Path) {
    let pod = common::readme::pod();
    assert!(pod.image.ends_with("/kiln:latest"), "{}", pod.image);
    let dest = format!("{}/{}:1", tk::AUTH_REGISTRY, tk_tag("pod"));
    let example = "registry.example.com/app:1";
    assert!(pod.args.iter().any(|a| a == example), "{:?}", pod.args);
    let mut c = tk::docker();
    c.args(["run", "--rm", "--network", "host"]);
    c.args(pod_security_flags(&pod.security));
    c.args([
        "-e",
        "KUBERNETES_SERVICE_HOST=10.96.0.1",
        "-e",
        "SOURCE_DATE_EPOCH=1000",
    ]);
    for m in &pod.mounts {
        let host = match m.name.as_str() {
            "context" => ctx.to_path_buf(),
            "registry-auth" => env.registry_auth(),
            // An emptyDir: a directory on the node's disk, like Docker's
            // anonymous volume.
            "store" => {
                c.args(["-v", &m.path]);
                continue;
            }
            other => panic!("the README's pod mounts {other}: give it a directory in this test"),
        };
        let ro = if m.read_only { ":ro" } else { "" };
        c.arg("-v")
            .arg(format!("{}:{}{ro}", host.display(), m.path));
    }
    c.arg(kiln_image);
    c.args(
        pod.args
            .iter()
            .map(|a| if a == example { &dest } else { a }),
    );
    ok(&mut c);
    pulls_and_runs(env, "pod", &dest);
}
