//! The README's quick start, tested as written: `examples/build-all.sh` runs
//! with the kiln binary under test (`KILN=`) and a fresh store
//! (`KILN_ROOT=`), so it installs, builds every example with kiln and runs it
//! with `kiln run`, exactly as a user's first command does. Each example's
//! section of the script's output must hold what its README promises; then
//! each image is exported with `kiln save`, loaded into the real Docker and
//! run there, with the same promise checked.
//!
//! `KILN_EXAMPLES=a,b` runs only these examples (passed to the script).

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::engine::{kiln_bin, run, Kiln, BUILD_TIMEOUT};

/// An example and the lines its program's output must contain.
struct Example {
    name: &'static str,
    expect: &'static [&'static str],
}

const EXAMPLES: &[Example] = &[
    Example {
        name: "go-scratch",
        expect: &[
            "hello from a static Go binary (go1.",
            "CA bundle loaded: HTTPS would work",
        ],
    },
    Example {
        name: "c-static",
        expect: &["hello from static C on Linux"],
    },
    Example {
        name: "python-venv",
        expect: &["python venv example", "| venv   | /venv   |"],
    },
    Example {
        name: "builder-pattern",
        expect: &["builder pattern: 11 words"],
    },
    Example {
        name: "source-mounted",
        expect: &["built with the source mounted, not copied"],
    },
];

/// The whole script: every example's toolchain install and build.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(3600);

/// The script's stdout cut at its `== NAME` headers: header → text below it.
fn sections(output: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current = String::new();
    for line in output.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            current = name.trim().to_string();
            out.entry(current.clone()).or_default();
        } else if let Some(text) = out.get_mut(&current) {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// Whether `output` (of `how`) has every line `ex` promises.
fn check_output(ex: &Example, how: &str, output: &str) -> Result<(), String> {
    let missing: Vec<&&str> = ex
        .expect
        .iter()
        .filter(|want| !output.contains(**want))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{how}: output lacks {missing:?}:\n{}",
            common::engine::tail(output, 20)
        ))
    }
}

/// The image the script built for `ex`, saved by kiln, loaded into Docker
/// under a name unique to this process, and run there.
fn run_in_docker(kiln: &Kiln, ex: &Example) -> Result<(), String> {
    let tag = format!("kiln-example-{}:{}", ex.name, std::process::id());
    let scratch = kiln_testkit::tempdir();
    let archive = scratch.path().join("image.tar");
    run(kiln.cmd().args(["tag", ex.name, &tag]), BUILD_TIMEOUT)
        .map_err(|e| format!("kiln tag: {e}"))?;
    let mut save = kiln.cmd();
    save.arg("save").arg("-o").arg(&archive).arg(&tag);
    run(&mut save, BUILD_TIMEOUT).map_err(|e| format!("kiln save: {e}"))?;
    let mut load = kiln_testkit::docker();
    load.arg("load").arg("-i").arg(&archive);
    run(&mut load, BUILD_TIMEOUT).map_err(|e| format!("docker load of kiln's archive: {e}"))?;
    let output = run(
        kiln_testkit::docker().args(["run", "--rm", &tag]),
        BUILD_TIMEOUT,
    );
    let _ = kiln_testkit::docker().args(["rmi", &tag]).output();
    check_output(
        ex,
        "docker run",
        &output.map_err(|e| format!("docker run: {e}"))?,
    )
}

/// Every directory in `examples/` is an example the script and this test know.
fn check_example_list() {
    let dir = common::repo_root().join("examples");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("read examples/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut known: Vec<String> = EXAMPLES.iter().map(|e| e.name.to_string()).collect();
    known.sort();
    assert_eq!(
        on_disk, known,
        "examples/ and this test's EXAMPLES list differ: add the example to both \
         examples/build-all.sh and EXAMPLES"
    );
    for ex in EXAMPLES {
        assert!(
            dir.join(ex.name).join("README.md").is_file(),
            "example {} has no README.md",
            ex.name
        );
    }
}

#[test]
fn quick_start_script_builds_and_runs_every_example() {
    if !kiln_testkit::require_root()
        || !kiln_testkit::require_docker()
        || !kiln_testkit::require_base_images()
    {
        return;
    }
    check_example_list();
    let only: Vec<String> = std::env::var("KILN_EXAMPLES")
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let selected: Vec<&Example> = EXAMPLES
        .iter()
        .filter(|e| only.is_empty() || only.iter().any(|n| n == e.name))
        .collect();

    let root = kiln_testkit::tempdir();
    let repo = common::repo_root();
    let mut script = Command::new(repo.join("examples/build-all.sh"));
    script
        .args(&only)
        .env("KILN", kiln_bin())
        .env("KILN_ROOT", root.path())
        .current_dir(&repo);
    let output = run(&mut script, SCRIPT_TIMEOUT)
        .unwrap_or_else(|e| panic!("the README's quick start failed:\n{e}"));
    let sections = sections(&output);
    let kiln = Kiln::new(root.path());
    let mut problems = Vec::new();
    for ex in &selected {
        let result = match sections.get(ex.name) {
            None => Err(format!("the script printed no `== {}` section", ex.name)),
            Some(text) => check_output(ex, "examples/build-all.sh (kiln run)", text),
        };
        let result = result.and_then(|()| run_in_docker(&kiln, ex));
        match result {
            Ok(()) => eprintln!("ok      {}", ex.name),
            Err(e) => problems.push(format!("FAILED  {}:\n    {e}", ex.name)),
        }
    }
    assert!(problems.is_empty(), "examples:\n{}", problems.join("\n"));
}
