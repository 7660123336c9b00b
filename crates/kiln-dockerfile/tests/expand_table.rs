//! The expansion table `testdata/expand/cases.txt`: `input | expected` with
//! a fixed environment; `expected` starting with `error: ` must match the
//! start of the error; `words: a ␞ b` checks word splitting instead.

mod common;

use kiln_dockerfile::shell::Lexer;

fn env() -> Vec<(String, String)> {
    [
        ("FOO", "foo"),
        ("BAR", "bar baz"),
        ("EMPTY", ""),
        ("FILE", "dir/archive.tar.gz"),
        ("URL", "https://example.com/a/b"),
        ("PATHV", "/usr/local/bin:/usr/bin"),
        ("STAR", "a*b"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn expansion_table() {
    for (file, escape) in [("cases.txt", '\\'), ("cases_backtick.txt", '`')] {
        let path = common::testdata().join("expand").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let lex = Lexer::new(escape);
        let env = env();
        let mut failures = Vec::new();
        let mut count = 0;
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((input, expected)) = line.split_once(" | ") else {
                panic!("{file}:{}: no ' | ' separator", n + 1);
            };
            count += 1;
            let ok = if let Some(words) = expected.strip_prefix("words: ") {
                let want: Vec<&str> = if words.is_empty() {
                    vec![]
                } else {
                    words.split(" ␞ ").collect()
                };
                match lex.process_words(input, &env) {
                    Ok(got) => {
                        got == want || {
                            failures.push(format!(
                                "{file}:{}: {input:?}: words {got:?}, want {want:?}",
                                n + 1
                            ));
                            true
                        }
                    }
                    Err(e) => {
                        failures.push(format!("{file}:{}: {input:?}: error {e}", n + 1));
                        true
                    }
                }
            } else {
                match (
                    lex.process_word(input, &env),
                    expected.strip_prefix("error: "),
                ) {
                    (Ok(got), None) if got == expected => true,
                    (Err(e), Some(want)) if e.contains(want) => true,
                    (got, _) => {
                        failures.push(format!(
                            "{file}:{}: {input:?} gave {got:?}, want {expected:?}",
                            n + 1
                        ));
                        true
                    }
                }
            };
            assert!(ok);
        }
        assert!(count >= 10, "{file}: only {count} cases");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
