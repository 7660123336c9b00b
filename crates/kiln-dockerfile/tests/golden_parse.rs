//! Golden parser tests: `testdata/parse/<case>/Dockerfile` with either
//! `expected.jsonl` (the `kiln debug parse --format json` dump) or
//! `error.txt` (the full error text). KILN_UPDATE_GOLDEN=1 rewrites them.

mod common;

#[test]
fn parse_goldens() {
    let dir = common::testdata().join("parse");
    let mut failures = Vec::new();
    let mut n = 0;
    for case in common::sorted_dir(&dir) {
        let src = std::fs::read_to_string(case.join("Dockerfile")).unwrap();
        n += 1;
        let err_file = case.join("error.txt");
        let (path, actual) = match kiln_dockerfile::parse("Dockerfile", &src) {
            Ok(df) => (
                case.join("expected.jsonl"),
                kiln_dockerfile::dump::to_json_lines(&df),
            ),
            Err(e) => (err_file, format!("{e}\n")),
        };
        let other = if path.ends_with("error.txt") {
            "expected.jsonl"
        } else {
            "error.txt"
        };
        if case.join(other).exists() && !common::update() {
            failures.push(format!(
                "{}: expected {other} but got {}",
                case.display(),
                actual
            ));
            continue;
        }
        if let Err(e) = common::golden(&path, &actual) {
            failures.push(e);
        }
    }
    assert!(n >= 20, "only {n} golden cases");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
