//! Cheap guards on the README's first commands (no root, nothing built): on a
//! fresh machine nothing is installed yet, so every quick-start script (and
//! any script it calls) must run `scripts/setup.sh` before its first `cargo`,
//! and the Install section must install libseccomp before `cargo build`.
//! The scripts are found by reading the README, so a renamed one is caught.

mod common;

use std::path::Path;

const SETUP: &str = "scripts/setup.sh";

/// The commands of the first ```console block after `heading` in the README.
fn console_commands(readme: &str, heading: &str) -> Vec<String> {
    let after = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no `{heading}` section"))
        .1;
    let block = after
        .split_once("```console\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("README.md's `{heading}` has no console block"))
        .0;
    block
        .lines()
        .filter_map(|l| l.strip_prefix("# ").or_else(|| l.strip_prefix("$ ")))
        .map(|l| l.split(" # ").next().unwrap_or(l).trim().to_string())
        .collect()
}

/// A line's words, split at blanks and shell punctuation, quotes dropped.
fn words(line: &str) -> Vec<String> {
    let code = line.split(" #").next().unwrap_or(line);
    code.split(|c: char| c.is_whitespace() || ";&|()`".contains(c))
        .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// A repository script a word names (`scripts/x.sh`, `"$(dirname "$0")/../scripts/x.sh"`).
fn script_in(word: &str) -> Option<String> {
    let at = ["scripts/", "examples/"]
        .iter()
        .filter_map(|d| word.find(d))
        .min()?;
    word.ends_with(".sh").then(|| word[at..].to_string())
}

/// What running `script` does first: `Ok(true)` runs setup before any cargo,
/// `Ok(false)` neither, `Err` names the line that runs cargo first.
fn setup_first(repo: &Path, script: &str, depth: usize) -> Result<bool, String> {
    assert!(depth < 8, "{script}: scripts call each other too deeply");
    let text = std::fs::read_to_string(repo.join(script))
        .unwrap_or_else(|e| panic!("the quick start names {script}, which cannot be read: {e}"));
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for word in words(line) {
            if word == "cargo" {
                return Err(format!(
                    "{script}:{}: runs cargo before {SETUP}: {}",
                    n + 1,
                    line.trim()
                ));
            }
            let Some(callee) = script_in(&word) else {
                continue;
            };
            if callee == SETUP || (callee != script && setup_first(repo, &callee, depth + 1)?) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The README's quick-start scripts, plus CI's entry point.
fn quick_start_scripts(repo: &Path) -> Vec<String> {
    let readme = std::fs::read_to_string(repo.join("README.md")).expect("README.md");
    let mut scripts: Vec<String> = console_commands(&readme, "## Quick start")
        .iter()
        .map(|cmd| {
            let first = words(cmd)
                .into_iter()
                .find(|w| w != "sudo")
                .unwrap_or_default();
            script_in(&first)
                .unwrap_or_else(|| panic!("quick-start command `{cmd}` runs no repository script"))
        })
        .collect();
    assert!(
        scripts.len() >= 2,
        "the quick start lost a command: {scripts:?}"
    );
    scripts.push(".ci/run".to_string());
    scripts
}

#[test]
fn quick_start_scripts_install_before_running_cargo() {
    let repo = common::repo_root();
    for script in quick_start_scripts(&repo) {
        match setup_first(&repo, &script, 0) {
            Ok(true) => {}
            Ok(false) => panic!("{script} never runs {SETUP}: a fresh machine lacks its packages"),
            Err(e) => panic!("{e}\n(on a fresh machine the link fails: -lseccomp is missing)"),
        }
    }
}

#[test]
fn the_guard_catches_cargo_before_setup() {
    let dir = kiln_testkit::tempdir();
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let write = |name: &str, body: &str| std::fs::write(scripts.join(name), body).unwrap();
    write("setup.sh", "apt-get install -y libseccomp-dev\n");
    write("bad.sh", "# cargo in a comment is fine\nexport PATH=\"$HOME/.cargo/bin:$PATH\"\ncd x && cargo build --release\nbash scripts/setup.sh\n");
    write("good.sh", "bash scripts/setup.sh\ncargo test\n");
    write("indirect.sh", "bash scripts/bad.sh\n");
    write(
        "via.sh",
        "exec \"$(dirname \"$0\")/../scripts/good.sh\"\ncargo build\n",
    );
    let err = setup_first(dir.path(), "scripts/bad.sh", 0).unwrap_err();
    assert!(err.starts_with("scripts/bad.sh:3: runs cargo"), "{err}");
    assert!(setup_first(dir.path(), "scripts/indirect.sh", 0).is_err());
    assert_eq!(setup_first(dir.path(), "scripts/good.sh", 0), Ok(true));
    assert_eq!(setup_first(dir.path(), "scripts/via.sh", 0), Ok(true));
    assert_eq!(setup_first(dir.path(), "scripts/setup.sh", 0), Ok(false));
}

#[test]
fn install_section_installs_libseccomp_before_cargo_build() {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).unwrap();
    let commands = console_commands(&readme, "## Install");
    let install = commands.iter().position(|c| c.contains("apt-get install"));
    let build = commands.iter().position(|c| c.contains("cargo build"));
    let (Some(install), Some(build)) = (install, build) else {
        panic!("README's Install section must apt-get install, then cargo build: {commands:?}");
    };
    assert!(
        install < build,
        "README's Install builds before installing: {commands:?}"
    );
    for package in ["libseccomp-dev", "pkg-config", "gcc"] {
        assert!(
            commands[install].contains(package),
            "README's Install does not install {package}: {}",
            commands[install]
        );
    }
}
