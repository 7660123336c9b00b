//! The README's examples for the kiln image — the GitLab CI job and the
//! Kubernetes pod — read from README.md, so the tests that run them break
//! when the README changes.

/// The GitLab job that runs in the kiln image's debug stage.
pub struct GitlabJob {
    /// `image: name:`.
    pub image: String,
    /// `entrypoint: [""]` is set.
    pub entrypoint_cleared: bool,
    /// The `script:` lines, each folded onto one line as YAML does.
    pub script: Vec<String>,
}

/// The Kubernetes pod's container.
pub struct Pod {
    pub image: String,
    pub args: Vec<String>,
    /// `securityContext:` keys and values (flow maps as written).
    pub security: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
}

pub struct Mount {
    pub name: String,
    pub path: String,
    pub read_only: bool,
}

/// The first ```yaml block after `marker` in README.md.
fn yaml_after(marker: &str) -> String {
    let readme = std::fs::read_to_string(super::repo_root().join("README.md")).expect("README.md");
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README.md no longer says {marker:?}"));
    let rest = &readme[at..];
    let start = rest.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let len = rest[start..].find("```").expect("the yaml block's end");
    rest[start..start + len].to_string()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// `line` without a trailing ` # comment`.
fn uncomment(line: &str) -> &str {
    line.split(" #").next().unwrap().trim_end()
}

/// The lines below `key:` (indented deeper than it), trimmed.
fn section<'a>(yaml: &'a str, key: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = yaml.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == key)
        .unwrap_or_else(|| panic!("no {key:?} in\n{yaml}"));
    let depth = indent(lines[at]);
    lines[at + 1..]
        .iter()
        .take_while(|l| indent(l) > depth)
        .map(|l| uncomment(l).trim())
        .collect()
}

fn value<'a>(lines: &[&'a str], key: &str) -> Option<&'a str> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
}

pub fn gitlab_job() -> GitlabJob {
    let yaml = yaml_after("A GitLab CI job runs its `script:`");
    let image = section(&yaml, "image:");
    let mut script: Vec<String> = Vec::new();
    for line in section(&yaml, "script:") {
        match line.strip_prefix("- ") {
            Some(item) => script.push(item.to_string()),
            None => {
                let last = script.last_mut().expect("a script item first");
                last.push(' ');
                last.push_str(line);
            }
        }
    }
    GitlabJob {
        image: value(&image, "name").expect("image name").to_string(),
        entrypoint_cleared: value(&image, "entrypoint") == Some(r#"[""]"#),
        script,
    }
}

/// `{ a: b, c: d }` as pairs.
fn flow_map(text: &str) -> Vec<(String, String)> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'));
    let inner = inner.unwrap_or_else(|| panic!("not a flow map: {text}"));
    inner
        .split(',')
        .map(|kv| {
            let (k, v) = kv.split_once(':').expect("key: value");
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

fn mount(item: &str) -> Mount {
    let map = flow_map(item.strip_prefix("- ").expect("a list item"));
    let get = |k: &str| map.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    Mount {
        name: get("name").expect("mount name"),
        path: get("mountPath").expect("mountPath"),
        read_only: get("readOnly").as_deref() == Some("true"),
    }
}

pub fn pod() -> Pod {
    let yaml = yaml_after("A Kubernetes pod");
    let container = section(&yaml, "containers:");
    let at = container
        .iter()
        .position(|l| l.starts_with("args:"))
        .expect("args");
    let end = at
        + container[at..]
            .iter()
            .position(|l| l.ends_with(']'))
            .expect("args end");
    let args = container[at..=end].join(" ");
    let args = serde_json::from_str(args.strip_prefix("args:").unwrap())
        .unwrap_or_else(|e| panic!("the pod's args: {e}: {args}"));
    let security = section(&yaml, "securityContext:")
        .into_iter()
        .map(|l| {
            let (k, v) = l.split_once(": ").expect("key: value");
            (k.to_string(), v.to_string())
        })
        .collect();
    Pod {
        image: value(&container, "image").expect("image").to_string(),
        args,
        security,
        mounts: section(&yaml, "volumeMounts:")
            .into_iter()
            .map(mount)
            .collect(),
    }
}
