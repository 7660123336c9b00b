//! The process libcontainer's container init executes: looks `args[0]` up
//! in the spec's `PATH` (Docker's default when there is none) before the
//! container starts, so a missing executable is reported as such, and
//! `execve`s it with exactly the spec's environment, in order.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use oci_spec::runtime::Spec;

use crate::spec::DEFAULT_PATH;

/// Prefixes of validation errors, found again in libcontainer's error text.
pub(crate) const NOT_FOUND: &str = "kiln-exec-not-found:";
pub(crate) const NOT_RUNNABLE: &str = "kiln-exec-not-runnable:";

#[derive(Clone)]
pub(crate) struct Workload;

fn args_env(spec: &Spec) -> (&[String], &[String]) {
    let process = spec.process().as_ref();
    let args = process.and_then(|p| p.args().as_deref()).unwrap_or(&[]);
    let env = process.and_then(|p| p.env().as_deref()).unwrap_or(&[]);
    (args, env)
}

fn is_executable_file(path: &Path) -> Option<bool> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    Some(
        meta.permissions().mode() & 0o111 != 0
            && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok(),
    )
}

/// Where `name` is, like execvp's search; `Err` holds the error text.
fn find(name: &str, env: &[String]) -> Result<PathBuf, String> {
    if name.contains('/') {
        return match is_executable_file(Path::new(name)) {
            Some(true) => Ok(PathBuf::from(name)),
            Some(false) => Err(format!("{NOT_RUNNABLE}{name}")),
            None => Err(format!("{NOT_FOUND}{name}")),
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut not_runnable = false;
    for dir in path.split(':') {
        let candidate = Path::new(if dir.is_empty() { "." } else { dir }).join(name);
        match is_executable_file(&candidate) {
            Some(true) => return Ok(candidate),
            Some(false) => not_runnable = true,
            None => {}
        }
    }
    Err(if not_runnable {
        format!("{NOT_RUNNABLE}{name}")
    } else {
        format!("{NOT_FOUND}{name}")
    })
}

fn cstrings(items: &[String]) -> Result<Vec<CString>, String> {
    items
        .iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| format!("{s:?} contains a NUL byte")))
        .collect()
}

impl Executor for Workload {
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let (args, env) = args_env(spec);
        let name = args
            .first()
            .ok_or_else(|| ExecutorValidationError::ArgValidationError("no command".into()))?;
        find(name, env)
            .map(|_| ())
            .map_err(ExecutorValidationError::ArgValidationError)
    }

    fn setup_envs(
        &self,
        _envs: std::collections::HashMap<String, String>,
    ) -> Result<(), libcontainer::workload::ExecutorSetEnvsError> {
        // `exec` passes the spec's environment to execve as it is.
        Ok(())
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let (args, env) = args_env(spec);
        let name = args.first().ok_or(ExecutorError::InvalidArg)?;
        let path = find(name, env).map_err(ExecutorError::Other)?;
        let path =
            CString::new(path.as_os_str().as_bytes()).map_err(|_| ExecutorError::InvalidArg)?;
        let argv = cstrings(args).map_err(ExecutorError::Other)?;
        let envp = cstrings(env).map_err(ExecutorError::Other)?;
        let err = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
        // The container has started: tell the user like a shell would and
        // exit with a shell's codes (the helper then reports that status).
        let msg = format!("kiln: exec {name}: {}\n", err.desc());
        // SAFETY: writing a buffer to fd 2 and exiting; nothing else runs.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            libc::_exit(if err == nix::errno::Errno::ENOENT {
                127
            } else {
                126
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_executables_on_path() {
        assert_eq!(
            find("sh", &["PATH=/nonexistent:/bin".into()]).unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert_eq!(
            find("no-such-program-kiln", &[]).unwrap_err(),
            format!("{NOT_FOUND}no-such-program-kiln")
        );
        assert!(find("/etc/passwd", &[])
            .unwrap_err()
            .starts_with(NOT_RUNNABLE));
        assert!(find("/nonexistent/x", &[])
            .unwrap_err()
            .starts_with(NOT_FOUND));
    }
}
