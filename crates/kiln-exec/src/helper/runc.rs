//! The runc backend: `runc create` + `runc start` with the helper as the
//! child subreaper, so that it waits for the container's init process itself
//! and sees exactly how it ended (`runc run` folds a signal into 128+n).

use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

use nix::unistd::Pid;

use super::tty::{wait_with_terminal, ConsoleSocket};
use super::wait::{block_signals, kill_requested, wait_for};
use super::{Outcome, Request};

const LOG: &str = "runc.log";
const PID_FILE: &str = "init.pid";

fn runc(r: &Request) -> Command {
    let mut c = Command::new(&r.runc);
    c.arg("--root")
        .arg(&r.state_root)
        .arg("--log")
        .arg(r.bundle.join(LOG))
        .arg("--log-format")
        .arg("json");
    c
}

/// runc's error messages from its JSON log (its stderr is the container's).
fn log_errors(bundle: &Path) -> String {
    let text = std::fs::read_to_string(bundle.join(LOG)).unwrap_or_default();
    let msgs: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("error" | "fatal")))
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .collect();
    msgs.join("; ")
}

/// The name in runc's `exec: "NAME": ...` error.
fn exec_name(text: &str) -> Option<String> {
    let rest = &text[text.find("exec: \"")? + 7..];
    Some(rest[..rest.find('"')?].to_string())
}

fn classify(action: &str, errors: String) -> Outcome {
    if let Some(name) = exec_name(&errors) {
        if errors.contains("executable file not found")
            || errors.contains("no such file or directory")
        {
            return Outcome::NotFound(name);
        }
        if errors.contains("permission denied") {
            return Outcome::NotRunnable(name);
        }
    }
    Outcome::Failed(format!("{action}: {errors}"))
}

fn run_step(r: &Request, args: &[&str], action: &str) -> Result<(), Outcome> {
    let mut cmd = runc(r);
    cmd.args(args);
    // `runc create` passes its stdio on as is; `runc run` (BuildKit) gives a
    // RUN an empty pipe for its /dev/null stdin: do the same.
    if args.first() == Some(&"create") && super::youki::is_dev_null(std::io::stdin().as_fd()) {
        match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
            Ok((read, _write)) => {
                cmd.stdin(read);
            }
            Err(e) => return Err(Outcome::Failed(format!("{action}: stdin pipe: {e}"))),
        }
    }
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => {
            let mut errors = log_errors(&r.bundle);
            if errors.is_empty() {
                errors = format!("{} exited with {s}", r.runc.display());
            }
            Err(classify(action, errors))
        }
        Err(e) => Err(Outcome::Failed(format!(
            "{action}: running {}: {e}",
            r.runc.display()
        ))),
    }
}

/// `runc delete --force ID` when runc still knows the container.
pub(crate) fn delete(runc_bin: &Path, state_root: &Path, id: &str) -> Result<(), String> {
    if !state_root.join(id).exists() {
        return Ok(());
    }
    let out = Command::new(runc_bin)
        .arg("--root")
        .arg(state_root)
        .args(["delete", "--force", id])
        .output()
        .map_err(|e| format!("running {} delete: {e}", runc_bin.display()))?;
    if out.status.success() || !state_root.join(id).exists() {
        Ok(())
    } else {
        Err(format!(
            "runc delete {id}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub(crate) fn run(r: &Request) -> Outcome {
    if kill_requested(r.interactive) {
        return Outcome::Cancelled;
    }
    // The init process runc forks is orphaned when `runc create` exits; as
    // subreaper the helper adopts and can wait for it.
    // SAFETY: plain prctl.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
        return Outcome::Failed(format!(
            "becoming child subreaper: {}",
            std::io::Error::last_os_error()
        ));
    }
    let bundle = r.bundle.to_string_lossy().into_owned();
    let pid_file = r.bundle.join(PID_FILE).to_string_lossy().into_owned();
    let console = match r.tty.then(|| ConsoleSocket::listen(&r.bundle)).transpose() {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(e),
    };
    let mut args = vec!["create", "--bundle", &bundle, "--pid-file", &pid_file];
    let socket = console
        .as_ref()
        .map(|c| c.path.to_string_lossy().into_owned());
    if let Some(socket) = &socket {
        args.extend(["--console-socket", socket]);
    }
    args.push(&r.id);
    let outcome = match run_step(r, &args, "creating container") {
        Ok(()) => start_and_wait(r, console.as_ref()),
        Err(outcome) => outcome,
    };
    match delete(&r.runc, &r.state_root, &r.id) {
        Ok(()) => outcome,
        Err(d) => match outcome {
            Outcome::Failed(f) => Outcome::Failed(format!("{f}; {d}")),
            _ => Outcome::Failed(d),
        },
    }
}

fn start_and_wait(r: &Request, console: Option<&ConsoleSocket>) -> Outcome {
    let set = match block_signals() {
        Ok(set) => set,
        Err(e) => return Outcome::Failed(format!("blocking signals: {e}")),
    };
    if kill_requested(r.interactive) {
        return Outcome::Cancelled;
    }
    let pid_file = r.bundle.join(PID_FILE);
    let pid = match std::fs::read_to_string(&pid_file).map(|s| s.trim().parse::<i32>()) {
        Ok(Ok(pid)) => Pid::from_raw(pid),
        Ok(Err(e)) => return Outcome::Failed(format!("parsing {}: {e}", pid_file.display())),
        Err(e) => return Outcome::Failed(format!("reading {}: {e}", pid_file.display())),
    };
    let master = match console.map(ConsoleSocket::receive).transpose() {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(e),
    };
    if let Err(outcome) = run_step(r, &["start", &r.id], "starting container") {
        return outcome;
    }
    let waited = match master {
        Some(master) => wait_with_terminal(pid, &set, master),
        None => wait_for(pid, &set, r.interactive),
    };
    match waited {
        Ok(w) if w.cancelled && !r.interactive => Outcome::Cancelled,
        Ok(w) => Outcome::Exited(w.status),
        Err(e) => Outcome::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_errors_are_classified() {
        let e = r#"runc create failed: unable to start container process: exec: "nope": executable file not found in $PATH"#;
        assert!(matches!(classify("x", e.into()), Outcome::NotFound(n) if n == "nope"));
        let e = r#"unable to start container process: exec: "/bin/x": permission denied"#;
        assert!(matches!(classify("x", e.into()), Outcome::NotRunnable(n) if n == "/bin/x"));
        assert!(matches!(
            classify("x", "cgroup trouble".into()),
            Outcome::Failed(_)
        ));
    }
}
