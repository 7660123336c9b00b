//! Comparing two images the way the differential suite promises: image
//! config fields and root filesystems (paths, types, modes, owners, sizes,
//! link targets, contents, hard-link groups), timestamps excepted.

use serde_json::Value;

use super::archive::Image;
use super::tree::{Entry, Tree};

/// The `config` fields compared. `Shell` is included because `SHELL` is
/// recorded there and images built FROM this one inherit it.
pub const CONFIG_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Labels",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// What a case declares as an accepted difference.
#[derive(Default, Clone, Debug)]
pub struct Ignore {
    /// Paths (with everything below them) not compared.
    pub paths: Vec<String>,
    /// `config` fields not compared.
    pub config: Vec<String>,
}

impl Ignore {
    pub fn covers_path(&self, path: &str) -> bool {
        self.paths
            .iter()
            .any(|p| path == p || path.starts_with(&format!("{}/", p.trim_end_matches('/'))))
    }
}

/// Every difference between `left` (named `left_name`, e.g. "docker") and
/// `right`, one readable line each; empty when the images match.
pub fn compare(
    left_name: &str,
    left: &Image,
    right_name: &str,
    right: &Image,
    ignore: &Ignore,
) -> Vec<String> {
    let mut out = Vec::new();
    for top in ["os", "architecture"] {
        let (l, r) = (&left.config[top], &right.config[top]);
        if l != r {
            out.push(format!("{top}: {left_name}={l}, {right_name}={r}"));
        }
    }
    for field in CONFIG_FIELDS {
        if ignore.config.iter().any(|c| c == field) {
            continue;
        }
        let l = normalise_field(left.container_config().get(*field));
        let r = normalise_field(right.container_config().get(*field));
        if l != r {
            out.push(format!(
                "config.{field}: {left_name}={}, {right_name}={}",
                show(&l),
                show(&r)
            ));
        }
    }
    compare_trees(
        left_name,
        &left.tree,
        right_name,
        &right.tree,
        ignore,
        &mut out,
    );
    out
}

/// A missing field and `null` mean the same; so do an empty list/map and
/// null (Docker writes `"Volumes": null`, others omit it or write `{}`).
/// `Env` is compared as written, order included (later entries win).
fn normalise_field(v: Option<&Value>) -> Value {
    match v {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Array(a)) if a.is_empty() => Value::Null,
        Some(Value::Object(o)) if o.is_empty() => Value::Null,
        Some(Value::String(s)) if s.is_empty() => Value::Null,
        Some(v) => v.clone(),
    }
}

fn show(v: &Value) -> String {
    if v.is_null() {
        "(unset)".into()
    } else {
        v.to_string()
    }
}

fn compare_trees(
    ln: &str,
    left: &Tree,
    rn: &str,
    right: &Tree,
    ignore: &Ignore,
    out: &mut Vec<String>,
) {
    let mut paths: Vec<&String> = left.entries.keys().chain(right.entries.keys()).collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        if ignore.covers_path(path) {
            continue;
        }
        match (left.entries.get(path), right.entries.get(path)) {
            (Some(l), None) => out.push(format!("{path}: only in {ln} ({l})")),
            (None, Some(r)) => out.push(format!("{path}: only in {rn} ({r})")),
            (Some(l), Some(r)) if l != r => {
                out.push(format!("{path}: {ln}={l}, {rn}={r}"));
                if let Some(hint) = content_hint(l, r) {
                    out.push(hint);
                }
            }
            _ => {}
        }
    }
    let groups = |t: &Tree| {
        t.hardlink_groups()
            .into_iter()
            .filter(|g| !g.iter().any(|p| ignore.covers_path(p)))
            .collect::<Vec<_>>()
    };
    let (lg, rg) = (groups(left), groups(right));
    for g in lg.iter().filter(|g| !rg.contains(g)) {
        out.push(format!("hard links {}: only in {ln}", g.join(" = ")));
    }
    for g in rg.iter().filter(|g| !lg.contains(g)) {
        out.push(format!("hard links {}: only in {rn}", g.join(" = ")));
    }
}

/// For small text files that differ in content, the two contents.
fn content_hint(l: &Entry, r: &Entry) -> Option<String> {
    let (a, b) = (l.content.as_ref()?, r.content.as_ref()?);
    if a == b || a.len() > 4096 || b.len() > 4096 {
        return None;
    }
    let text = |d: &[u8]| {
        let s = String::from_utf8_lossy(d);
        let s: String = s.chars().take(300).collect();
        format!("{s:?}")
    };
    Some(format!("    contents: {} vs {}", text(a), text(b)))
}

/// Asserts that `got` (named `what`) is the root build `reference`: config,
/// flattened filesystem with owners, and the number of layers.
pub fn assert_same_image(reference: &Image, got: &Image, what: &str) {
    let diffs = compare("root build", reference, what, got, &Ignore::default());
    assert!(diffs.is_empty(), "{what} differs:\n{}", diffs.join("\n"));
    assert_eq!(
        reference.layer_count, got.layer_count,
        "{what}: layer count"
    );
}
