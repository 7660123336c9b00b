//! `kiln lint` and `kiln debug parse|expand|plan` as a user runs them.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn kiln(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.args(args)
        .env(
            "KILN_ROOT",
            std::env::temp_dir().join("kiln-frontend-cli-root"),
        )
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn kiln");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn testdata(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn debug_parse_json_lines_from_stdin() {
    let out = kiln(
        &["debug", "parse", "-f", "-", "--format", "json"],
        Some("FROM alpine AS b\nRUN --network=none <<EOF\necho hi\nEOF\nCMD [\"x\"]\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["instruction"], "run");
    assert_eq!(lines[1]["flags"][0]["name"], "network");
    assert_eq!(lines[1]["heredocs"][0]["content"], "echo hi\n");
    assert_eq!(lines[1]["start_line"], 2);
    assert_eq!(lines[1]["end_line"], 4);
    assert_eq!(lines[2]["form"], "json");
}

#[test]
fn debug_parse_error_shows_location_and_suggestion() {
    let out = kiln(
        &["debug", "parse", "-f", "-"],
        Some("FROM alpine\nFORM x\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("-:2:1: unknown instruction \"FORM\" (did you mean \"FROM\"?)"),
        "{err}"
    );
    assert!(err.contains(" 2 | FORM x\n   | ^^^^"), "{err}");
}

#[test]
fn debug_expand_prints_or_fails() {
    let out = kiln(
        &["debug", "expand", "--env", "F=dir/a.tar.gz", "${F##*/}"],
        None,
    );
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "a.tar.gz\n");
    let out = kiln(&["debug", "expand", "--escape", "`", "a` b"], None);
    assert_eq!(text(&out.stdout), "a b\n");
    let out = kiln(&["debug", "expand", "${F"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing '}'"));
}

#[test]
fn debug_plan_lists_build_order_and_waves() {
    let f = testdata("corpus/many-stages-parallel.Dockerfile");
    let out = kiln(&["debug", "plan", "-f", &f], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("target: stage 4 (final)"), "{s}");
    assert!(!s.contains("unused"), "unreachable stage listed: {s}");
    assert!(s.contains("1: 0 (a), 1 (b), 2 (c)\n  2: 4 (final)"), "{s}");
    let out = kiln(
        &[
            "debug",
            "plan",
            "-f",
            &f,
            "--target",
            "nope",
            "--build-arg",
            "X=1",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("target stage \"nope\" could not be found"),
        "{err}"
    );
    assert!(err.contains("stages: a, b, c, unused, final"), "{err}");
    let out = kiln(
        &[
            "debug",
            "plan",
            "-f",
            &f,
            "--target",
            "b",
            "--build-arg",
            "X=1",
        ],
        None,
    );
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("build-arg X was not consumed"));
}

#[test]
fn lint_exit_codes_and_json() {
    let out = kiln(&["lint", "-f", &testdata("lint/clean.Dockerfile")], None);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let out = kiln(
        &[
            "lint",
            "-f",
            &testdata("lint/lean-hints.Dockerfile"),
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    for r in [
        "AptUpdateSeparateLayer",
        "PackageCacheLeftBehind",
        "AddLocalFile",
        "ToolchainFinalImage",
    ] {
        assert!(rules.contains(&r), "{r} missing from {rules:?}");
    }
    let out = kiln(&["lint", "-f", "-"], Some("FROM alpine\nCMD ['x']\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("-:2:1: MalformedJSONForm"));
    let out = kiln(&["lint", "-f", "/nonexistent/Dockerfile"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/Dockerfile"));
}

#[test]
fn lint_fails_on_what_build_rejects() {
    for (dockerfile, says) in [
        ("FROM alpine\nCOPY --from=3 /x /y\n", "3"),
        ("FROM alpine\nCOPY --chmod=999 a /b\n", "999"),
        ("FROM alpine\nEXPOSE 99999\n", "99999"),
        ("FROM alpine\nFROM alpine\nCOPY --from=1 /a /b\n", "1"),
    ] {
        let out = kiln(&["lint", "-f", "-"], Some(dockerfile));
        assert_eq!(out.status.code(), Some(1), "{dockerfile}");
        let err = text(&out.stderr);
        assert!(err.starts_with("-:"), "{dockerfile}: {err}");
        assert!(err.contains(says), "{dockerfile}: {err}");
    }
}

/// `kiln … | head`: a reader that went away makes kiln exit quietly with
/// the status of a SIGPIPE death (141), as `cat` does, not panic.
#[test]
fn a_closed_stdout_exits_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args([
            "debug",
            "plan",
            "-f",
            &testdata("corpus/many-stages-parallel.Dockerfile"),
        ])
        .env(
            "KILN_ROOT",
            std::env::temp_dir().join("kiln-frontend-cli-root"),
        )
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
}
