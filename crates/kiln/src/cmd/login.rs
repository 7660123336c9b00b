//! `kiln login [-u USER] [-p PASS | --password-stdin] [REGISTRY]`: checks
//! the credentials against the registry, then stores them in Docker's
//! config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`), as
//! `docker login` does.

use std::io::{BufRead, IsTerminal, Write};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context as _};

use super::pull::client;
use super::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Registry (HOST[:PORT]). Default: docker.io.
    pub registry: Option<String>,
    /// Username (asked for on a terminal when missing).
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password. Prefer --password-stdin: this one shows in `ps`.
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let registry = registry_arg(args.registry.as_deref())?;
    let password = if args.password_stdin {
        if args.username.is_none() {
            bail!("--password-stdin needs --username");
        }
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let p = line.trim_end_matches(['\n', '\r']).to_string();
        if p.is_empty() {
            bail!("no password on standard input");
        }
        Some(p)
    } else {
        args.password
    };
    let username = match args.username {
        Some(u) => u,
        None => prompt("Username: ", true)?,
    };
    if username.is_empty() {
        bail!("a username is required to log in to {registry}");
    }
    let password = match password {
        Some(p) => p,
        None => prompt("Password: ", false)?,
    };
    if password.is_empty() {
        bail!("a password is required to log in to {registry}");
    }
    let client = client(global);
    kiln_registry::block_on(client.login(&registry, &username, &password))?;
    eprintln!(
        "Credentials stored in {}",
        client.docker_config().path().display()
    );
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// `REGISTRY` as Docker spells it: no scheme or path; Docker Hub's aliases
/// become `docker.io`.
pub(crate) fn registry_arg(arg: Option<&str>) -> anyhow::Result<String> {
    let raw = arg.unwrap_or("docker.io");
    let s = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .unwrap_or(raw);
    let host = s.split('/').next().unwrap_or(s);
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '@') {
        bail!("invalid registry {raw:?}: expected HOST[:PORT]");
    }
    Ok(match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_ascii_lowercase(),
    })
}

/// Reads one line from the terminal; without echo for passwords.
fn prompt(label: &str, echo: bool) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "cannot ask for the {} without a terminal; use --username and --password-stdin",
            label.trim_end_matches(": ").to_lowercase()
        );
    }
    eprint!("{label}");
    std::io::stderr().flush().ok();
    let stty = |arg: &str| {
        Command::new("stty")
            .arg(arg)
            .stdin(Stdio::inherit())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let hidden = !echo && stty("-echo");
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if hidden {
        stty("echo");
        eprintln!();
    }
    read.context("reading from the terminal")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
