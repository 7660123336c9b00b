//! A differential case: `tests/differential/cases/<name>/` holds a Dockerfile,
//! its context files and an optional `case.toml` (format in docs/testing.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::archive::Image;
use super::compare::Ignore;

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Dockerfile relative to the case directory (default `Dockerfile`).
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// Build context relative to the case directory (default `.`).
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// Secret id → file relative to the case directory.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Images built first, on both sides (e.g. a base with ONBUILD
    /// triggers); the case's Dockerfile gets each one's name in a build arg.
    #[serde(default)]
    pub prerequisite: Vec<Prerequisite>,
    #[serde(default)]
    pub docker: DockerSpec,
    /// Where Docker 20.10 is known to differ from current BuildKit (and kiln).
    #[serde(default)]
    pub difference: Vec<Difference>,
    #[serde(default)]
    pub expect: Expect,
    /// Where a case written outside this project comes from.
    #[serde(default)]
    pub source: Option<Source>,
}

/// The upstream file (and test function or section) a case is adapted from,
/// and its licence.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// e.g. `moby/buildkit frontend/dockerfile/dockerfile_copy_test.go testCopyWildcards`
    pub upstream: String,
    pub licence: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Prerequisite {
    /// Repository name to build it under; the harness adds a tag unique to
    /// the test process, so concurrent runs sharing one dockerd never meet.
    pub tag: String,
    /// Build argument that carries the full name to the case's Dockerfile
    /// (`ARG BASE` + `FROM $BASE`).
    pub arg: String,
    pub dockerfile: String,
    #[serde(default)]
    pub context: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct DockerSpec {
    /// False when Docker 20.10 rejects the Dockerfile (newer syntax): only
    /// kiln builds it and its result is checked against `[expect]`.
    #[serde(default = "yes")]
    pub builds: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

impl Default for DockerSpec {
    fn default() -> Self {
        DockerSpec {
            builds: true,
            reason: None,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Difference {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub config: Option<String>,
    pub reason: String,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    #[serde(default)]
    pub path: Vec<PathExpect>,
    /// `config` field → expected JSON value (written in TOML).
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct PathExpect {
    pub path: String,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Octal string, e.g. "0755" or "4755".
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub uid: Option<u64>,
    #[serde(default)]
    pub gid: Option<u64>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub absent: bool,
}

pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub spec: Spec,
}

impl Prerequisite {
    /// The name this prerequisite is built under in this test process.
    pub fn unique_tag(&self) -> String {
        format!("{}:{}", self.tag, std::process::id())
    }
}

impl Case {
    pub fn load(dir: &Path) -> Result<Case, String> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: bad case directory name", dir.display()))?
            .to_string();
        let toml_path = dir.join("case.toml");
        let spec = if toml_path.exists() {
            let text = std::fs::read_to_string(&toml_path)
                .map_err(|e| format!("{}: {e}", toml_path.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", toml_path.display()))?
        } else {
            Spec::default()
        };
        let case = Case {
            name,
            dir: dir.to_path_buf(),
            spec,
        };
        case.validate()?;
        Ok(case)
    }

    fn validate(&self) -> Result<(), String> {
        if !self.dockerfile().is_file() {
            return Err(format!("{}: no Dockerfile", self.name));
        }
        if !self.spec.docker.builds && self.spec.docker.reason.is_none() {
            return Err(format!(
                "{}: docker.builds = false needs a reason",
                self.name
            ));
        }
        if !self.spec.docker.builds
            && self.spec.expect.path.is_empty()
            && self.spec.expect.config.is_empty()
        {
            return Err(format!(
                "{}: a case Docker cannot build needs [expect] entries",
                self.name
            ));
        }
        if let Some(src) = &self.spec.source {
            if src.upstream.trim().is_empty() || src.licence.trim().is_empty() {
                return Err(format!(
                    "{}: [source] needs the upstream file and its licence",
                    self.name
                ));
            }
        }
        for d in &self.spec.difference {
            if d.path.is_none() == d.config.is_none() {
                return Err(format!(
                    "{}: a [[difference]] names exactly one of path or config",
                    self.name
                ));
            }
        }
        Ok(())
    }

    pub fn dockerfile(&self) -> PathBuf {
        self.dir
            .join(self.spec.dockerfile.as_deref().unwrap_or("Dockerfile"))
    }

    pub fn context(&self) -> PathBuf {
        self.dir.join(self.spec.context.as_deref().unwrap_or("."))
    }

    pub fn ignore(&self) -> Ignore {
        Ignore {
            paths: self
                .spec
                .difference
                .iter()
                .filter_map(|d| d.path.clone())
                .collect(),
            config: self
                .spec
                .difference
                .iter()
                .filter_map(|d| d.config.clone())
                .collect(),
        }
    }

    /// Checks `[expect]`. `all` includes expectations on paths/fields listed
    /// as differences (which only kiln, following current BuildKit, meets).
    pub fn check_expectations(&self, image: &Image, all: bool) -> Vec<String> {
        let ignore = self.ignore();
        let mut out = Vec::new();
        for e in &self.spec.expect.path {
            if !all && ignore.covers_path(&e.path) {
                continue;
            }
            check_path(image, e, &mut out);
        }
        for (field, want) in &self.spec.expect.config {
            if !all && ignore.config.contains(field) {
                continue;
            }
            let want = serde_json::to_value(want).expect("TOML values are JSON values");
            let got = image
                .container_config()
                .get(field)
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            if got != want {
                out.push(format!("expected config.{field} = {want}, got {got}"));
            }
        }
        out
    }
}

fn check_path(image: &Image, e: &PathExpect, out: &mut Vec<String>) {
    let entry = image.tree.entries.get(&e.path);
    if e.absent {
        if let Some(entry) = entry {
            out.push(format!("expected {} absent, found {entry}", e.path));
        }
        return;
    }
    let Some(entry) = entry else {
        out.push(format!("expected {} to exist", e.path));
        return;
    };
    if let Some(kind) = &e.kind {
        if entry.kind.name() != kind {
            out.push(format!("{}: expected a {kind}, found {entry}", e.path));
        }
    }
    if let Some(mode) = &e.mode {
        match u32::from_str_radix(mode, 8) {
            Ok(m) if m == entry.mode => {}
            Ok(_) => out.push(format!("{}: expected mode {mode}, found {entry}", e.path)),
            Err(_) => out.push(format!("{}: bad mode {mode:?} in case.toml", e.path)),
        }
    }
    if e.uid.is_some_and(|u| u != entry.uid) || e.gid.is_some_and(|g| g != entry.gid) {
        out.push(format!(
            "{}: expected owner {:?}:{:?}, found {entry}",
            e.path, e.uid, e.gid
        ));
    }
    if let Some(target) = &e.target {
        if entry.link.as_deref() != Some(target.as_str()) {
            out.push(format!(
                "{}: expected link to {target}, found {entry}",
                e.path
            ));
        }
    }
    if let Some(content) = &e.content {
        let got = entry.content.as_deref();
        if got.map(Vec::as_slice) != Some(content.as_bytes()) {
            out.push(format!(
                "{}: expected contents {content:?}, found {:?}",
                e.path,
                got.map(|g| String::from_utf8_lossy(g).into_owned())
            ));
        }
    }
}

/// Every case under `dir`, sorted by name.
pub fn load_all(dir: &Path) -> Result<Vec<Case>, String> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| Case::load(d)).collect()
}
