//! Lint goldens: `testdata/lint/<case>.Dockerfile` and the findings as
//! `line:col rule: message` lines in `<case>.expected`.

mod common;

#[test]
fn lint_goldens() {
    let dir = common::testdata().join("lint");
    let mut failures = Vec::new();
    for f in common::sorted_dir(&dir) {
        if f.extension().is_none_or(|e| e != "Dockerfile") {
            continue;
        }
        let src = std::fs::read_to_string(&f).unwrap();
        let df = kiln_dockerfile::parse("Dockerfile", &src).unwrap();
        let mut out = String::new();
        for x in kiln_dockerfile::lint::lint(&df) {
            out.push_str(&format!(
                "{}:{} {}: {}\n",
                x.span.line, x.span.col, x.rule, x.message
            ));
        }
        if let Err(e) = common::golden(&f.with_extension("expected"), &out) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
