//! Keeps the house in order (issue 15): no import cycle between the modules
//! of a crate, and no non-test function over 100 lines. `scripts/check-modules.sh`
//! runs this test with its report printed.
//!
//! Imports are read from the source text: every `crate::`, `super::`, `self::`
//! and child-module path (in `use` trees and inline), resolved to the longest
//! module it names, with one hop through a module's `pub use` re-exports.
//! A module naming its own ancestors (the crate root's `Error`, a parent's
//! shared trait) is not an edge: that is the tree's one direction.
//! Test code (`#[cfg(test)]` onwards, `tests.rs`, `tests/`) is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_FN_LINES: usize = 100;

/// Crates that still have a module cycle (issue 15 work not done yet).
/// Remove an entry when its cycle is gone: the test fails while a listed
/// crate is acyclic, so this list only shrinks.
const CRATES_WITH_KNOWN_CYCLES: &[&str] = &[];

/// Functions still over the limit (issue 15, move 6), as `crate/path::fn`.
/// The test fails when one is no longer over it, so this list only shrinks.
const KNOWN_LONG_FNS: &[&str] = &[];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn crates() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(workspace().join("crates"))
        .expect("read crates/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("src").is_dir())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    out
}

/// A module of a crate: its path (`lower::run`, `` for the root) and source.
struct Module {
    path: String,
    file: PathBuf,
    /// Source up to its first `#[cfg(test)]`.
    code: String,
}

fn modules(krate: &Path) -> Vec<Module> {
    let src = krate.join("src");
    let mut out = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "bin") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") || p.file_name().unwrap() == "tests.rs" {
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            let text = fs::read_to_string(&p).unwrap();
            let code = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            out.push(Module {
                path: parts.join("::"),
                file: p,
                code: strip_comments(&code),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Line comments removed, so paths in prose are not read as imports.
fn strip_comments(code: &str) -> String {
    code.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn join(base: &str, rest: &str) -> String {
    match (base.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_string(),
        (_, true) => base.to_string(),
        _ => format!("{base}::{rest}"),
    }
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map_or(String::new(), |(p, _)| p.to_string())
}

/// Expands a use tree (`a::{b, c::D}` → `a::b`, `a::c::D`).
fn expand_tree(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree.trim_end_matches("::").to_string()];
    };
    let prefix = tree[..open].trim_end_matches("::");
    let close = tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len());
    let inner = &tree[open + 1..close];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|i| !i.is_empty())
        .flat_map(expand_tree)
        .map(|p| match p.as_str() {
            "self" => prefix.to_string(),
            _ => join(prefix, &p),
        })
        .collect()
}

/// Every path this module names, made absolute (`crate::` dropped).
fn named_paths(m: &Module, children: &BTreeSet<String>) -> Vec<String> {
    let code = &m.code;
    let self_mod = m.path.clone();
    let mut out = Vec::new();
    // `use` trees, whole (they may span lines and hold braces).
    let mut rest = code.as_str();
    while let Some(i) = rest.find("use ") {
        let ok = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        let after = &rest[i + 4..];
        let end = after.find(';').unwrap_or(after.len());
        if ok {
            out.extend(expand_tree(&after[..end]));
        }
        rest = &after[end.min(after.len())..];
    }
    // Inline paths (`crate::plan::split(…)`).
    for key in ["crate::", "super::", "self::"] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(key) {
            let ok = i == 0
                || !is_ident(rest.as_bytes()[i - 1] as char) && rest.as_bytes()[i - 1] != b':';
            let tail = &rest[i..];
            let len = tail
                .find(|c: char| !(is_ident(c) || c == ':'))
                .unwrap_or(tail.len());
            if ok {
                out.push(tail[..len].trim_end_matches(':').to_string());
            }
            rest = &rest[i + key.len()..];
        }
    }
    out.into_iter()
        .filter_map(|p| {
            let segs: Vec<&str> = p.split("::").collect();
            let mut base = self_mod.clone();
            let mut i = 0;
            match segs.first().copied() {
                Some("crate") => {
                    base = String::new();
                    i = 1;
                }
                Some("self") => i = 1,
                Some("super") => {
                    while segs.get(i) == Some(&"super") {
                        base = parent(&base);
                        i += 1;
                    }
                }
                Some(s) if children.contains(&join(&self_mod, s)) => {}
                _ => return None,
            }
            Some(join(&base, &segs[i..].join("::")))
        })
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `pub use` re-exports of each module: item name → the module it is from.
fn reexports(mods: &[Module], all: &BTreeSet<String>) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for m in mods {
        let mut rest = m.code.as_str();
        while let Some(i) = rest.find("pub use ") {
            let after = &rest[i + 8..];
            let end = after.find(';').unwrap_or(after.len());
            for p in expand_tree(&after[..end]) {
                let p = p
                    .strip_prefix("crate::")
                    .map_or_else(|| join(&m.path, &p), str::to_string);
                if let Some((module, item)) = p.rsplit_once("::") {
                    let item = item.rsplit(" as ").next().unwrap_or(item).to_string();
                    if let Some(target) = longest_module(module, all) {
                        out.insert((m.path.clone(), item), target);
                    }
                }
            }
            rest = &after[end..];
        }
    }
    out
}

fn longest_module(path: &str, all: &BTreeSet<String>) -> Option<String> {
    let segs: Vec<&str> = path.split("::").collect();
    (0..=segs.len())
        .rev()
        .map(|n| segs[..n].join("::"))
        .find(|p| all.contains(p))
}

/// The module import graph of one crate.
fn graph(krate: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(krate);
    let all: BTreeSet<String> = mods.iter().map(|m| m.path.clone()).collect();
    let reexp = reexports(&mods, &all);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &mods {
        let children: BTreeSet<String> = all
            .iter()
            .filter(|c| !c.is_empty() && parent(c) == m.path)
            .cloned()
            .collect();
        let edges = g.entry(m.path.clone()).or_default();
        for p in named_paths(m, &children) {
            let Some(mut target) = longest_module(&p, &all) else {
                continue;
            };
            let item = p[target.len()..].trim_start_matches("::");
            let item = item.split("::").next().unwrap_or("");
            if let Some(t) = reexp.get(&(target.clone(), item.to_string())) {
                target = t.clone();
            }
            // What an enclosing module defines (the crate root's error type, a
            // parent's shared trait) is the floor its children stand on.
            let ancestor = target.is_empty() || m.path.starts_with(&format!("{target}::"));
            if target != m.path && !ancestor {
                edges.insert(target);
            }
        }
    }
    g
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(if w.is_empty() {
                    "(root)".to_string()
                } else {
                    w.to_string()
                });
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// Source with string and char literal contents blanked, so braces inside
/// them do not count.
fn blank_literals(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // Raw strings: r"…", r#"…"#, br"…".
        if c == 'r' && (i == 0 || !is_ident(chars[i - 1]) || chars[i - 1] == 'b') {
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) == Some(&'"') {
                let close: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let body_start = i + 2 + hashes;
                let rest: String = chars[body_start..].iter().collect();
                let len = rest
                    .find(&close)
                    .map_or(rest.len(), |n| rest[..n].chars().count());
                out.push_str("r\"");
                out.extend(chars[body_start..body_start + len].iter().map(|&c| {
                    if c == '\n' {
                        '\n'
                    } else {
                        ' '
                    }
                }));
                out.push('"');
                i = body_start + len + close.chars().count();
                continue;
            }
        }
        if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(if chars[i] == '\n' { '\n' } else { ' ' });
                }
                i += 1;
            }
            out.push('"');
            i += 1;
            continue;
        }
        if c == '\'' {
            // A char literal ('x', '\n', '\u{7f}'), not a lifetime.
            let end = if chars.get(i + 1) == Some(&'\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&c| c == '\'')
                    .map(|p| i + 2 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(end) = end {
                out.push_str("' '");
                i = end + 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Non-test functions over the limit: `(name, lines)`.
fn long_fns(code: &str) -> Vec<(String, usize)> {
    let code = blank_literals(code);
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let Some(at) = t.find("fn ") else { continue };
        let head = &t[..at];
        let is_decl = head.split_whitespace().all(|w| {
            matches!(w, "pub" | "async" | "const" | "unsafe" | "extern") || w.starts_with("pub(")
        });
        if !is_decl {
            continue;
        }
        let name: String = t[at + 3..].chars().take_while(|&c| is_ident(c)).collect();
        // Find the body: the first `{` before a `;` (a trait method without
        // a body ends at `;`).
        let mut depth = 0usize;
        let mut started = false;
        let mut end = None;
        'scan: for (k, l) in lines.iter().enumerate().skip(n) {
            let from = if k == n { line.len() - t.len() + at } else { 0 };
            for c in l[from..].chars() {
                match c {
                    ';' if !started && depth == 0 => break 'scan,
                    '{' => {
                        started = true;
                        depth += 1;
                    }
                    '}' if started => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(k);
                            break 'scan;
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(end) = end {
            let len = end - n + 1;
            if len > MAX_FN_LINES {
                out.push((name, len));
            }
        }
    }
    out
}

#[test]
fn no_import_cycles_inside_a_crate() {
    let mut problems = Vec::new();
    for (name, dir) in crates() {
        let found = cycles(&graph(&dir));
        for c in &found {
            println!("{name}: cycle {}", c.join(" ↔ "));
        }
        let known = CRATES_WITH_KNOWN_CYCLES.contains(&name.as_str());
        if !found.is_empty() && !known {
            problems.push(format!(
                "{name} has an import cycle: {}",
                found[0].join(" ↔ ")
            ));
        }
        if found.is_empty() && known {
            problems.push(format!(
                "{name} has no import cycle any more: remove it from CRATES_WITH_KNOWN_CYCLES"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_function_over_100_lines() {
    let mut found = Vec::new();
    for (name, dir) in crates() {
        for m in modules(&dir) {
            let rel = m.file.strip_prefix(&dir).unwrap().display().to_string();
            for (f, len) in long_fns(&m.code) {
                println!("{name}/{rel}::{f}: {len} lines");
                found.push(format!("{name}/{rel}::{f}"));
            }
        }
    }
    let new: Vec<&String> = found
        .iter()
        .filter(|f| !KNOWN_LONG_FNS.contains(&f.as_str()))
        .collect();
    let gone: Vec<&&str> = KNOWN_LONG_FNS
        .iter()
        .filter(|k| !found.iter().any(|f| f == *k))
        .collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them at their natural parts): {new:?}\n\
         no longer over the limit (remove from KNOWN_LONG_FNS): {gone:?}"
    );
}

#[test]
fn the_checks_see_what_they_should() {
    let code = "use crate::{a::B, c::{D, e::F}};\nfn g() { super::h::i(); }\n";
    let m = Module {
        path: "x::y".into(),
        file: PathBuf::new(),
        code: code.into(),
    };
    let paths = named_paths(&m, &BTreeSet::new());
    for want in ["a::B", "c::D", "c::e::F", "x::h::i"] {
        assert!(paths.iter().any(|p| p == want), "{want} not in {paths:?}");
    }
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into();
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
    let body = "    x();\n".repeat(MAX_FN_LINES);
    let code = format!("pub fn long() {{\n    let s = \"{{\";\n{body}}}\nfn short() {{}}\n");
    assert_eq!(
        long_fns(&code),
        vec![("long".to_string(), MAX_FN_LINES + 3)]
    );
}
