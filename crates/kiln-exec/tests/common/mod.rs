//! Shared setup of kiln-exec's integration tests: a busybox rootfs, an
//! executor per backend pointed at the test helper binary, and a runner that
//! collects output.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_exec::{
    executor_with, Error, Executor, ExecutorOptions, ExitStatus, Network, OutputStream, RunSpec,
    Runtime, Stdio,
};

pub struct Env {
    pub dir: tempfile::TempDir,
    pub exec: Box<dyn Executor>,
    pub runtime: Runtime,
}

pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub result: Result<ExitStatus, Error>,
}

impl Output {
    pub fn status(&self) -> ExitStatus {
        match &self.result {
            Ok(s) => *s,
            Err(e) => panic!(
                "run failed: {e}\nstdout: {}\nstderr: {}",
                self.stdout, self.stderr
            ),
        }
    }

    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.status(),
            ExitStatus::Code(0),
            "stderr: {}",
            self.stderr
        );
        &self.stdout
    }
}

/// `None` when the test must be skipped (not root, outside CI).
pub fn setup(runtime: Runtime) -> Option<Env> {
    if !kiln_testkit::require_root() || !kiln_testkit::require_base_images() {
        return None;
    }
    let dir = kiln_testkit::tempdir();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let status = Command::new("tar")
        .arg("-xf")
        .arg(kiln_testkit::busybox_rootfs_tar())
        .arg("-C")
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(status.success(), "extracting the busybox rootfs");
    // The tar's root entry is 0700 (mktemp -d); an image root is 0755.
    std::fs::set_permissions(&rootfs, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let exec = executor_with(ExecutorOptions {
        runtime: runtime.clone(),
        state_dir: dir.path().join("state"),
        helper: Some(PathBuf::from(env!("CARGO_BIN_EXE_kiln-exec-helper"))),
        runc: None,
    })
    .unwrap();
    Some(Env { dir, exec, runtime })
}

impl Env {
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn spec(&self, id: &str, args: &[&str]) -> RunSpec {
        RunSpec {
            rootfs: self.rootfs(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            mounts: vec![],
            network: Network::Host,
            hostname: "kiln-test".into(),
            stdio: Stdio::Capture,
            id: id.into(),
        }
    }

    pub fn run(&self, spec: &RunSpec) -> Output {
        run_with(&*self.exec, spec)
    }

    pub fn sh(&self, id: &str, script: &str) -> Output {
        self.run(&self.spec(id, &["sh", "-c", script]))
    }

    /// Nothing of any run may be left: no bundle, no runtime state.
    pub fn assert_clean(&self) {
        for sub in ["bundles", "youki", "runc"] {
            let d = self.state().join(sub);
            if let Ok(entries) = std::fs::read_dir(&d) {
                let left: Vec<_> = entries.map(|e| e.unwrap().file_name()).collect();
                assert!(left.is_empty(), "left in {}: {left:?}", d.display());
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir.path().to_string_lossy().into_owned();
        assert!(!mounts.contains(&dir), "mounts left under {dir}");
    }
}

pub fn run_with(exec: &dyn Executor, spec: &RunSpec) -> Output {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let result = exec.run(spec, &mut |stream, data| match stream {
        OutputStream::Stdout => stdout.extend_from_slice(data),
        OutputStream::Stderr => stderr.extend_from_slice(data),
    });
    Output {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        result,
    }
}

pub fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}
