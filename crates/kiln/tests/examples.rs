//! Every example in `examples/` is built with kiln the way its README says,
//! exported with `kiln save`, loaded into Docker and run there, and run with
//! `kiln run`; both outputs must contain what the README promises. Examples kiln cannot build yet are
//! listed in `examples/KNOWN_FAILURES` (a listed example that passes fails
//! the test, so the list stays honest).
//!
//! `KILN_EXAMPLES=a,b` runs only these examples.

mod common;

use std::path::Path;
use std::time::Instant;

use common::engine::{run, Kiln, BUILD_TIMEOUT};

/// How an example is built: kiln invocations (without `--root`), run in the
/// example's directory. `{tag}` is replaced by the image name under test.
struct Example {
    name: &'static str,
    steps: &'static [&'static [&'static str]],
    /// Lines the program's output must contain.
    expect: &'static [&'static str],
}

const EXAMPLES: &[Example] = &[
    Example {
        name: "go-scratch",
        steps: &[&["build", "--progress", "plain", "-t", "{tag}", "."]],
        expect: &[
            "hello from a static Go binary (go1.",
            "CA bundle loaded: HTTPS would work",
        ],
    },
    Example {
        name: "builder-pattern",
        steps: &[
            &[
                "build",
                "--progress",
                "plain",
                "-f",
                "Dockerfile.build",
                "-o",
                "type=local,dest=out",
                ".",
            ],
            &[
                "build",
                "--progress",
                "plain",
                "-f",
                "Dockerfile",
                "-t",
                "{tag}",
                "out",
            ],
        ],
        expect: &["builder pattern: 11 words"],
    },
    Example {
        name: "source-mounted",
        steps: &[
            &[
                "build",
                "--progress",
                "plain",
                "-t",
                "golang:local",
                "-f",
                "toolchain.Dockerfile",
                ".",
            ],
            &[
                "run",
                "--rm",
                "-v",
                "{dir}:/src",
                "-w",
                "/src",
                "golang:local",
                "go",
                "build",
                "-ldflags=-s -w",
                "-o",
                "greet",
                ".",
            ],
            &["build", "--progress", "plain", "-t", "{tag}", "."],
        ],
        expect: &["built with the source mounted, not copied"],
    },
    Example {
        name: "python-venv",
        steps: &[&["build", "--progress", "plain", "-t", "{tag}", "."]],
        expect: &["python venv example", "| venv   | /venv   |"],
    },
    Example {
        name: "c-static",
        steps: &[&["build", "--progress", "plain", "-t", "{tag}", "."]],
        expect: &["hello from static C on Linux"],
    },
];

/// Builds one example with kiln, loads it into Docker, runs it there and
/// with `kiln run`, and checks both outputs. Returns Docker's on success.
fn build_and_run(kiln: &Kiln, ex: &Example, dir: &Path, tag: &str) -> Result<String, String> {
    for step in ex.steps {
        let args: Vec<String> = step
            .iter()
            .map(|a| {
                a.replace("{tag}", tag)
                    .replace("{dir}", &dir.display().to_string())
            })
            .collect();
        let mut cmd = kiln.cmd();
        cmd.args(&args).current_dir(dir);
        run(&mut cmd, BUILD_TIMEOUT).map_err(|e| format!("kiln {}: {e}", args.join(" ")))?;
    }
    let archive = dir.join("image.tar");
    let mut save = kiln.cmd();
    save.arg("save").arg("-o").arg(&archive).arg(tag);
    run(&mut save, BUILD_TIMEOUT).map_err(|e| format!("kiln save: {e}"))?;
    let mut load = kiln_testkit::docker();
    load.arg("load").arg("-i").arg(&archive);
    run(&mut load, BUILD_TIMEOUT).map_err(|e| format!("docker load of kiln's archive: {e}"))?;
    let mut docker_run = kiln_testkit::docker();
    docker_run.args(["run", "--rm", tag]);
    let output = run(&mut docker_run, BUILD_TIMEOUT);
    let _ = kiln_testkit::docker().args(["rmi", tag]).output();
    let output = output.map_err(|e| format!("docker run: {e}"))?;
    check_output(ex, "docker run", &output)?;
    // The README runs it with `kiln run`, too.
    let mut kiln_run = kiln.cmd();
    kiln_run.args(["run", "--rm", tag]);
    let kiln_output = run(&mut kiln_run, BUILD_TIMEOUT).map_err(|e| format!("kiln run: {e}"))?;
    check_output(ex, "kiln run", &kiln_output)?;
    Ok(output)
}

/// Whether `output` (of `how`) has every line the example promises.
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

#[test]
fn examples_build_with_kiln_and_run_in_docker() {
    if !kiln_testkit::require_root()
        || !kiln_testkit::require_docker()
        || !kiln_testkit::require_base_images()
    {
        return;
    }
    let examples_dir = common::repo_root().join("examples");
    for ex in EXAMPLES {
        assert!(
            examples_dir.join(ex.name).join("README.md").is_file(),
            "example {} has no README.md",
            ex.name
        );
    }
    let known = common::known_failures(&examples_dir.join("KNOWN_FAILURES"));
    for name in known.keys() {
        assert!(
            EXAMPLES.iter().any(|e| e.name == name),
            "examples/KNOWN_FAILURES lists {name}, which is not an example"
        );
    }
    let only: Option<Vec<String>> = std::env::var("KILN_EXAMPLES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());

    // One store for all examples: they share the toolchain layers.
    let root = kiln_testkit::tempdir();
    let kiln = Kiln::new(root.path());
    let setup = kiln.import_base_images();
    // Builds write into the example directory (out/, greet): use a copy.
    let work = kiln_testkit::tempdir();

    let mut report = Vec::new();
    let mut bad = 0;
    for ex in EXAMPLES {
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| n == ex.name))
        {
            continue;
        }
        let dir = work.path().join(ex.name);
        common::copy_tree(&examples_dir.join(ex.name), &dir).expect("copy example");
        let tag = format!("kiln-example-{}:{}", ex.name, std::process::id());
        let started = Instant::now();
        let result = match &setup {
            Ok(()) => build_and_run(&kiln, ex, &dir, &tag),
            Err(e) => Err(e.clone()),
        };
        let secs = started.elapsed().as_secs_f64();
        match (result, known.get(ex.name)) {
            (Ok(_), None) => report.push(format!("ok      {} ({secs:.0}s)", ex.name)),
            (Ok(_), Some(_)) => {
                bad += 1;
                report.push(format!(
                    "PASSES  {}, but examples/KNOWN_FAILURES lists it: remove the line",
                    ex.name
                ));
            }
            (Err(e), Some(reason)) => {
                report.push(format!("KNOWN   {} ({reason}):\n    {e}", ex.name))
            }
            (Err(e), None) => {
                bad += 1;
                report.push(format!("FAILED  {} ({secs:.0}s):\n    {e}", ex.name));
            }
        }
    }
    let report = report.join("\n");
    eprintln!("{report}");
    assert_eq!(bad, 0, "examples:\n{report}");
}
