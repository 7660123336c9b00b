//! The engine's modules depend on each other one way: no module reaches a
//! module that reaches it back (docs/architecture.md lists the layers).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name (first path segment under `src/`) → modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
            let module = rel.split('/').next().unwrap().trim_end_matches(".rs");
            if module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let deps = out.entry(module.to_string()).or_default();
            for (i, _) in text.match_indices("crate::") {
                let name: String = text[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // `crate::interrupted()` and the like live in lib.rs.
                let is_module = src.join(format!("{name}.rs")).exists() || src.join(&name).is_dir();
                if is_module && name != module {
                    deps.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn no_module_cycle() {
    let g = graph();
    assert!(g.contains_key("step") && g.contains_key("session"), "{g:?}");
    // Depth-first search from every module, failing on a back edge.
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("module cycle: {} -> {m}", path[i..].join(" -> "));
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            visit(g, d, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        visit(&g, m, &mut Vec::new(), &mut done);
    }
}

#[test]
fn ops_see_the_session_not_the_builder() {
    let g = graph();
    for m in [
        "ops", "step", "state", "rootfs", "base", "export", "session",
    ] {
        assert!(
            !g[m].contains("builder") && !g[m].contains("stage"),
            "{m} depends on {:?}",
            g[m]
        );
    }
}
