//! `kiln analyze`, `kiln check` and the build-time guards and gates, on
//! real images: built by kiln, built and saved by the Docker engine, and
//! copied to an OCI layout by skopeo. Needs root, dockerd, skopeo and the
//! base images (`scripts/test.sh` sets them up).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_testkit as tk;
use serde_json::Value;

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

fn ok(c: &mut Command) -> String {
    let o = c.output().expect("run");
    assert!(o.status.success(), "{c:?} failed:\n{}", text(&o));
    text(&o)
}

/// Runs a command that must exit 1; returns its output.
fn exits_1(c: &mut Command) -> String {
    let o = c.output().expect("run");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{c:?} should exit 1:\n{}",
        text(&o)
    );
    text(&o)
}

fn json(c: &mut Command) -> Value {
    let o = c.output().expect("run");
    assert!(o.status.success(), "{c:?} failed:\n{}", text(&o));
    serde_json::from_slice(&o.stdout).expect("analyze --format json prints JSON")
}

/// A root with busybox (and optionally debian) imported and a context dir.
fn setup(debian: bool, files: &[(&str, &str)]) -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    if !(tk::require_root() && tk::require_base_images()) {
        return None;
    }
    let tmp = tk::tempdir();
    let (root, ctx) = (tmp.path().join("root"), tmp.path().join("ctx"));
    for (name, content) in files {
        let p = ctx.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    ok(kiln(&root)
        .arg("import")
        .arg(tk::busybox_rootfs_tar())
        .arg("busybox:latest"));
    if debian {
        ok(kiln(&root)
            .arg("import")
            .arg(tk::debian_rootfs_tar())
            .arg("debian:bookworm"));
    }
    Some((tmp, root, ctx))
}

const WASTE: &str = "FROM busybox
RUN head -c 10485760 /dev/zero > /big
RUN rm /big
RUN head -c 5000000 /dev/urandom > /five
RUN chmod 600 /five
";

fn assert_exact_waste(a: &Value, what: &str) {
    let t = &a["totals"];
    assert_eq!(t["wasted_deleted"], 10485760, "{what}: {t}");
    assert_eq!(t["wasted_metadata_only"], 5000000, "{what}: {t}");
    assert_eq!(t["wasted_overwritten"], 0, "{what}: {t}");
    assert_eq!(t["wasted"], 15485760, "{what}: {t}");
    let shipped = t["shipped"].as_u64().unwrap();
    assert_eq!(
        shipped,
        t["final_bytes"].as_u64().unwrap() + 15485760,
        "{what}"
    );
    let eff = t["efficiency"].as_f64().unwrap();
    let expect = t["final_bytes"].as_f64().unwrap() / shipped as f64;
    assert!((eff - expect).abs() < 1e-9, "{what}: {eff} vs {expect}");
    let big = a["waste"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["path"] == "/big");
    let big = big.unwrap_or_else(|| panic!("{what}: /big not among the wasted files"));
    assert_eq!(big["reason"], "deleted", "{what}");
    let layers = a["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 5, "{what}");
    assert!(
        layers[1]["created_by"]
            .as_str()
            .unwrap()
            .contains("head -c 10485760"),
        "{what}: layer 1 names its RUN: {}",
        layers[1]
    );
    assert_eq!(layers[1]["wasted_later"], 10485760, "{what}");
    assert_eq!(layers[3]["wasted_later"], 5000000, "{what}");
}

#[test]
fn waste_is_counted_once_in_kiln_docker_save_and_skopeo_layouts() {
    let Some((tmp, root, ctx)) = setup(false, &[("Dockerfile", WASTE)]) else {
        return;
    };
    if !tk::require_docker() {
        return;
    }
    let tag = common::unique("kiln-analyze-waste");
    ok(kiln(&root)
        .args(["build", "--progress", "plain", "-t", &tag])
        .arg(&ctx));
    assert_exact_waste(
        &json(kiln(&root).args(["analyze", "--format", "json", &tag])),
        "kiln",
    );

    // Gates: exactly at the limit passes, one byte under fails with a breakdown.
    ok(kiln(&root).args([
        "analyze",
        &tag,
        "--max-wasted",
        "15485760",
        "--min-efficiency",
        "0.3",
    ]));
    let out = exits_1(kiln(&root).args(["analyze", &tag, "--max-wasted", "15485759"]));
    assert!(
        out.contains("budget max-wasted") && out.contains("/big"),
        "{out}"
    );
    let out = exits_1(kiln(&root).args([
        "analyze",
        &tag,
        "--min-efficiency",
        "90%",
        "--max-size",
        "1MB",
    ]));
    assert!(
        out.contains("budget min-efficiency") && out.contains("budget max-size"),
        "{out}"
    );
    assert!(
        out.contains("head -c 10485760"),
        "max-size names the biggest layers: {out}"
    );
    let out = exits_1(
        kiln(&root)
            .args([
                "build",
                "--progress",
                "plain",
                "--max-wasted",
                "10MB",
                "-t",
                &tag,
            ])
            .arg(&ctx),
    );
    assert!(out.contains("budget max-wasted"), "{out}");

    // The same Dockerfile built by Docker, then saved, then copied by skopeo.
    let mut build = tk::docker();
    build
        .env("DOCKER_BUILDKIT", "1")
        .args(["build", "-q", "-t", &tag])
        .arg(&ctx);
    ok(&mut build);
    let archive = tmp.path().join("docker.tar");
    ok(tk::docker().args(["save", "-o"]).arg(&archive).arg(&tag));
    let _ = tk::docker().args(["rmi", &tag]).output();
    assert_exact_waste(
        &json(
            kiln(&root)
                .args(["analyze", "--format", "json"])
                .arg(&archive),
        ),
        "docker save",
    );
    let layout = tmp.path().join("layout");
    let mut skopeo = Command::new("skopeo");
    skopeo
        .arg("copy")
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("oci:{}:lean", layout.display()));
    ok(&mut skopeo);
    assert_exact_waste(
        &json(
            kiln(&root)
                .args(["analyze", "--format", "json"])
                .arg(&layout),
        ),
        "skopeo layout",
    );

    // Text output states the same numbers.
    let out = ok(kiln(&root).arg("analyze").arg(&archive));
    assert!(out.contains("Wasted:     15485760 bytes"), "{out}");
    assert!(out.contains("metadata-only copy-ups 5000000"), "{out}");
}

#[test]
fn bad_inputs_name_what_failed() {
    let Some((tmp, root, _)) = setup(false, &[]) else {
        return;
    };
    let out = exits_1(kiln(&root).args(["analyze", "no-such-image"]));
    assert!(out.contains("no-such-image"), "{out}");
    let out = exits_1(kiln(&root).arg("analyze").arg(tmp.path()));
    assert!(out.contains("not an OCI image layout"), "{out}");
    let junk = tmp.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar at all").unwrap();
    let out = exits_1(kiln(&root).arg("analyze").arg(&junk));
    assert!(out.contains("junk.tar"), "{out}");
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["analyze", "x", "--max-size", "5XB"])
        .output()
        .unwrap();
    assert!(text(&out).contains("unknown unit"), "{}", text(&out));
}

const GUARDS: &str = r#"FROM debian:bookworm AS build
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-unsafe-io golang-go gcc libc6-dev ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY main.go go.mod ./
COPY hello.c /csrc/
RUN mkdir /out && gcc -O2 -o /out/c-dynamic /csrc/hello.c && gcc -static -O2 -o /out/c-static /csrc/hello.c
RUN CGO_ENABLED=1 go build -o /out/go-cgo . && CGO_ENABLED=0 go build -ldflags="-s -w" -o /out/go-static .

FROM scratch AS c-dynamic
COPY --from=build /out/c-dynamic /app
USER 65534:65534
ENTRYPOINT ["/app"]

FROM scratch AS c-static
COPY --from=build /out/c-static /app
USER 65534:65534
ENTRYPOINT ["/app"]

FROM scratch AS go-cgo
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/go-cgo /app
USER 65534:65534
ENTRYPOINT ["/app"]

FROM scratch AS go-static-no-certs
COPY --from=build /out/go-static /app
USER 65534:65534
ENTRYPOINT ["/app"]

FROM scratch AS go-static
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/go-static /app
USER 65534:65534
ENTRYPOINT ["/app"]

FROM scratch AS shell-form
COPY --from=build /out/c-static /app
USER 65534:65534
CMD /app

FROM busybox AS broken
USER app
ENTRYPOINT ["/app"]

FROM busybox AS secret
RUN mkdir -p /root/.ssh && printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACBu0pr2bx9mZ9E8b8wtWZ3RzZ5iS8JcmQpC3Lq7xG1n7QAAAJg=\n-----END OPENSSH PRIVATE KEY-----\n' > /root/.ssh/id_ed25519
RUN rm -rf /root/.ssh
USER nobody
ENTRYPOINT ["/bin/true"]
"#;

const HELLO_C: &str = "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n";
const TLS_GO: &str = r#"package main

import (
	"crypto/tls"
	"fmt"
	"net"
)

func main() {
	var d net.Dialer
	_, err := tls.DialWithDialer(&d, "tcp", "127.0.0.1:1", &tls.Config{})
	fmt.Println("dial:", err)
}
"#;

/// Builds `target` (warnings only), checks it with `kiln check` and with
/// `kiln build --strict`; returns the check output.
fn guard(root: &Path, ctx: &Path, target: &str, clean: bool) -> String {
    let tag = common::unique(&format!("kiln-guard-{target}"));
    let build = |strict: bool| {
        let mut c = kiln(root);
        c.args([
            "build",
            "--progress",
            "plain",
            "--target",
            target,
            "-t",
            &tag,
        ]);
        if strict {
            c.arg("--strict");
        }
        c.arg(ctx);
        c
    };
    let out = ok(&mut build(false));
    if clean {
        assert!(
            !out.contains("warning["),
            "{target}: unexpected warning:\n{out}"
        );
        ok(&mut build(true));
        let check = ok(kiln(root).args(["check", &tag]));
        assert!(check.contains("no problems found"), "{check}");
        check
    } else {
        assert!(
            out.contains("warning["),
            "{target}: kiln build warns:\n{out}"
        );
        let strict = exits_1(&mut build(true));
        assert!(
            strict.contains("error["),
            "{target}: --strict makes them errors:\n{strict}"
        );
        exits_1(kiln(root).args(["check", &tag]))
    }
}

#[test]
fn guards_catch_broken_lean_finals_and_pass_good_ones() {
    let files = [
        ("Dockerfile", GUARDS),
        ("hello.c", HELLO_C),
        ("main.go", TLS_GO),
        ("go.mod", "module tlsapp\n\ngo 1.19\n"),
    ];
    let Some((_tmp, root, ctx)) = setup(true, &files) else {
        return;
    };
    let out = guard(&root, &ctx, "c-dynamic", false);
    assert!(
        out.contains("warning[elf-loader]: /app: its ELF interpreter /lib64/ld-linux-x86-64.so.2"),
        "{out}"
    );
    assert!(
        out.contains("warning[elf-library]: /app: needs libc.so.6"),
        "{out}"
    );
    guard(&root, &ctx, "c-static", true);

    let out = guard(&root, &ctx, "go-cgo", false);
    assert!(out.contains("warning[elf-loader]"), "{out}");
    assert!(!out.contains("ca-bundle"), "certificates are there: {out}");
    let out = guard(&root, &ctx, "go-static-no-certs", false);
    assert!(out.contains("warning[ca-bundle]: /app does TLS"), "{out}");
    assert!(!out.contains("elf-"), "static Go needs no loader: {out}");
    guard(&root, &ctx, "go-static", true);

    let out = guard(&root, &ctx, "shell-form", false);
    assert!(
        out.contains("CMD is in shell form (/bin/sh -c /app), but the image has no /bin/sh"),
        "{out}"
    );
    let out = guard(&root, &ctx, "broken", false);
    assert!(
        out.contains("ENTRYPOINT runs /app, which is not in the image"),
        "{out}"
    );
    assert!(
        out.contains("USER app: user app cannot be resolved: /etc/passwd has no entry"),
        "{out}"
    );
    let out = guard(&root, &ctx, "secret", false);
    assert!(
        out.contains(
            "a private key in /root/.ssh/id_ed25519 of layer 1 (RUN /bin/sh -c mkdir -p /root/.ssh"
        ) && out.contains("(deleted later, but still shipped in that layer)"),
        "{out}"
    );
    assert!(
        !out.contains("warning[user]") && !out.contains("warning[entrypoint]"),
        "{out}"
    );
}

/// The ELF guard names the stage that has what the final image misses; a
/// rebuild of the same image takes the guards' results from
/// ROOT/cache/guards instead of reading its layers again; `--no-guards`
/// turns them off.
#[test]
fn the_elf_guard_points_at_the_stage_with_the_libraries_and_is_remembered() {
    let dockerfile = "FROM debian:bookworm AS build\n\
                      FROM scratch\n\
                      COPY --from=build /usr/bin/true /app\n\
                      USER 65534:65534\n\
                      ENTRYPOINT [\"/app\"]\n";
    let Some((_tmp, root, ctx)) = setup(true, &[("Dockerfile", dockerfile)]) else {
        return;
    };
    let build = |extra: &[&str]| {
        ok(kiln(&root)
            .args(["build", "--progress", "plain", "-t", "true-in-scratch"])
            .args(extra)
            .arg(&ctx))
    };
    let out = build(&[]);
    assert!(
        out.contains(
            "warning[elf-library]: /app: needs libc.so.6 which the image does not have \
             (found in stage build at /usr/lib/x86_64-linux-gnu/libc.so.6)"
        ),
        "{out}"
    );
    assert!(
        out.contains("(found in stage build at /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2)"),
        "{out}"
    );
    assert!(
        out.contains("COPY --from=build /usr/lib/x86_64-linux-gnu/libc.so.6"),
        "the hint says what to copy:\n{out}"
    );

    // Remembered: an entry changed by hand is what the rebuild prints;
    // and the image's one layer, by its digest, for images that share it.
    let dir = root.join("cache/guards");
    let entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let layers = std::fs::read_dir(dir.join("layers")).unwrap().count();
    assert_eq!(layers, 1, "one layer remembered");
    let text = std::fs::read_to_string(&entries[0]).unwrap();
    std::fs::write(
        &entries[0],
        text.replace("needs libc.so.6", "needs remembered.so"),
    )
    .unwrap();
    let out = build(&[]);
    assert!(out.contains("/app: needs remembered.so"), "{out}");

    let out = build(&["--no-guards"]);
    assert!(!out.contains("warning["), "{out}");
}
