//! The two builders under comparison, driven through their CLIs: Docker
//! 20.10 with BuildKit (`/usr/bin/docker`), and kiln (the binary under test,
//! in a temporary `--root`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What to build; the same request goes to both engines.
pub struct BuildRequest<'a> {
    pub dockerfile: &'a Path,
    pub context: &'a Path,
    pub tag: &'a str,
    pub target: Option<&'a str>,
    pub build_args: &'a BTreeMap<String, String>,
    /// Secret id → file.
    pub secrets: Vec<(String, PathBuf)>,
    pub no_cache: bool,
}

impl BuildRequest<'_> {
    /// The `docker build`-compatible flags both CLIs take.
    fn flags(&self, cmd: &mut Command) {
        cmd.arg("--progress").arg("plain");
        cmd.arg("-f").arg(self.dockerfile).arg("-t").arg(self.tag);
        if let Some(t) = self.target {
            cmd.arg("--target").arg(t);
        }
        for (k, v) in self.build_args {
            cmd.arg("--build-arg").arg(format!("{k}={v}"));
        }
        for (id, src) in &self.secrets {
            cmd.arg("--secret")
                .arg(format!("id={id},src={}", src.display()));
        }
        if self.no_cache {
            cmd.arg("--no-cache");
        }
        cmd.arg(self.context);
    }
}

/// A builder that can build an image and export it as a docker-archive.
pub trait Engine: Sync {
    fn name(&self) -> &str;
    fn build(&self, req: &BuildRequest) -> Result<(), String>;
    /// Writes `tag` as a docker-archive tar to `dest`.
    fn save(&self, tag: &str, dest: &Path) -> Result<(), String>;
    /// Forgets `tag` (best effort: cleanup must not hide the real result).
    fn remove(&self, tag: &str);
}

/// How long one build may take before it is killed and reported.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `cmd`, returning its stdout; on failure (or after `timeout`) the
/// error names the command and ends with the tail of its output.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let dir = kiln_testkit::tempdir();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    // Output goes to files, not pipes: nothing can block on a full pipe.
    let out = std::fs::File::create(&out_path).map_err(|e| format!("{what}: {e}"))?;
    let err = std::fs::File::create(&err_path).map_err(|e| format!("{what}: {e}"))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("{what}: wait: {e}")),
        }
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(stdout),
        other => {
            let why = match other {
                Some(s) => format!("failed ({s})"),
                None => format!("timed out after {}s", timeout.as_secs()),
            };
            Err(format!(
                "{what} {why}\n{}",
                tail(&format!("{stdout}{stderr}"), 25)
            ))
        }
    }
}

/// The last `n` lines of `text`, indented.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Docker 20.10 with BuildKit, through the harness's dockerd.
pub struct Docker;

impl Engine for Docker {
    fn name(&self) -> &str {
        "docker"
    }

    fn build(&self, req: &BuildRequest) -> Result<(), String> {
        let mut cmd = kiln_testkit::docker();
        cmd.env("DOCKER_BUILDKIT", "1").arg("build");
        req.flags(&mut cmd);
        run(&mut cmd, BUILD_TIMEOUT).map(drop)
    }

    fn save(&self, tag: &str, dest: &Path) -> Result<(), String> {
        let mut cmd = kiln_testkit::docker();
        cmd.arg("save").arg("-o").arg(dest).arg(tag);
        run(&mut cmd, BUILD_TIMEOUT).map(drop)
    }

    fn remove(&self, tag: &str) {
        let _ = kiln_testkit::docker()
            .args(["rmi", "--no-prune", tag])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The kiln binary under test (`KILN_BIN` overrides the one cargo built).
pub fn kiln_bin() -> PathBuf {
    std::env::var_os("KILN_BIN")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_BIN_EXE_kiln").map(PathBuf::from))
        .expect("no kiln binary: set KILN_BIN")
}

/// kiln with its own store in `root`.
pub struct Kiln {
    pub root: PathBuf,
}

impl Kiln {
    pub fn new(root: &Path) -> Kiln {
        Kiln {
            root: root.to_path_buf(),
        }
    }

    /// `kiln --root ROOT` with `args`.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(kiln_bin());
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    /// Imports the root filesystems Docker knows as `busybox:latest` and
    /// `debian:bookworm`, so both builders start from identical bytes.
    pub fn import_base_images(&self) -> Result<(), String> {
        for (tar, name) in [
            (kiln_testkit::busybox_rootfs_tar(), "busybox:latest"),
            (kiln_testkit::debian_rootfs_tar(), "debian:bookworm"),
        ] {
            let mut cmd = self.cmd();
            cmd.arg("import").arg(&tar).arg(name);
            run(&mut cmd, BUILD_TIMEOUT).map_err(|e| format!("importing {name} into kiln: {e}"))?;
        }
        Ok(())
    }
}

impl Engine for Kiln {
    fn name(&self) -> &str {
        "kiln"
    }

    fn build(&self, req: &BuildRequest) -> Result<(), String> {
        let mut cmd = self.cmd();
        cmd.arg("build");
        req.flags(&mut cmd);
        run(&mut cmd, BUILD_TIMEOUT).map(drop)
    }

    fn save(&self, tag: &str, dest: &Path) -> Result<(), String> {
        let mut cmd = self.cmd();
        cmd.arg("save").arg("-o").arg(dest).arg(tag);
        run(&mut cmd, BUILD_TIMEOUT).map(drop)
    }

    fn remove(&self, tag: &str) {
        let _ = self
            .cmd()
            .args(["rm", tag])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
