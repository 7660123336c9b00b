//! The build cache end to end: `--explain-cache` and the rebuilt reasons in
//! plain and JSON progress, and remote cache export/import through the
//! real registry. Needs root and the base images (`scripts/test.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_testkit as tk;

fn kiln(root: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.arg("--root").arg(root);
    c
}

fn ok(c: &mut Command) -> String {
    let o = c.output().expect("run kiln");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{c:?} failed:\n{text}");
    text
}

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
                "the files it reads from the --from source changed".into()
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
