//! "Why was this rebuilt": on a miss, the step's inputs are compared with
//! the closest earlier record of the same step (same stage and position,
//! or same instruction text). A changed input of its own is the reason;
//! when only its parent differs, the comparison walks down to the parent
//! step's earlier record, and so on to the stage's base, so a RUN after a
//! COPY says which file the COPY read differently.

use std::collections::BTreeMap;

use crate::cache::{Cache, CacheKey, CacheRecord, Inputs, Value};

/// Detail behind hashed inputs (see `CacheRecord::details`).
pub type Details = BTreeMap<String, Vec<(String, String)>>;

/// One step of a stage's history as this build sees it.
#[derive(Clone, Debug)]
pub struct Link {
    pub inputs: Inputs,
    /// `COPY at Dockerfile:4`, `FROM debian:bookworm`.
    pub label: String,
    pub details: Details,
}

/// Why a step missed the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// One line: `file main.go changed (COPY at Dockerfile:4)`.
    pub reason: String,
    /// The full comparison: every input that differs, `name: old → new`.
    pub changes: Vec<String>,
}

/// Where earlier records are found: this root's cache, and imported ones.
pub trait Records {
    fn get(&self, key: &CacheKey) -> Option<CacheRecord>;
    /// The key recorded last for a step identity.
    fn latest(&self, identity: &str) -> Option<CacheKey>;
}

impl Records for Cache {
    fn get(&self, key: &CacheKey) -> Option<CacheRecord> {
        Cache::get(self, key)
    }

    fn latest(&self, identity: &str) -> Option<CacheKey> {
        Cache::latest(self, identity)
    }
}

/// Explains why `step` (on top of `chain`, its parent last) has no record,
/// or `None` when no earlier record of it exists.
pub fn explain(
    cache: &dyn Records,
    chain: &[Link],
    step: &Link,
    identities: &[String],
) -> Option<Explanation> {
    let key = step.inputs.key();
    let best = identities
        .iter()
        .filter_map(|id| cache.latest(id))
        .filter_map(|k| Some((k, cache.get(&k)?)))
        .filter(|(_, r)| r.inputs.is_some())
        .min_by_key(|(_, r)| differences(&step.inputs, inputs_of(r)).len())?;
    if best.0 == key {
        return Some(Explanation {
            reason: "the layer of its cache record is gone from the store".into(),
            changes: Vec::new(),
        });
    }
    Some(compare(cache, chain, step, &best.1, 0))
}

fn inputs_of(r: &CacheRecord) -> &Inputs {
    r.inputs.as_ref().expect("filtered for inputs")
}

fn compare(
    cache: &dyn Records,
    chain: &[Link],
    cur: &Link,
    old: &CacheRecord,
    depth: usize,
) -> Explanation {
    let old_inputs = inputs_of(old);
    let diffs = differences(&cur.inputs, old_inputs);
    let at = |s: String| {
        if depth == 0 || cur.label.starts_with("FROM ") {
            s
        } else {
            format!("{s} ({})", cur.label)
        }
    };
    if let Some(first) = diffs.first() {
        return Explanation {
            reason: at(describe(cur, old, first)),
            changes: diffs
                .iter()
                .map(|d| {
                    let c = format!("{}: {} → {}", d.name, show(&d.old), show(&d.new));
                    if depth == 0 {
                        c
                    } else {
                        format!("{}: {c}", cur.label)
                    }
                })
                .collect(),
        };
    }
    let old_parent = old_inputs.parent();
    if old_parent != cur.inputs.parent() {
        let record = old_parent
            .and_then(|k| cache.get(&k))
            .filter(|r| r.inputs.is_some());
        if let (Some((parent, rest)), Some(record)) = (chain.split_last(), record) {
            return compare(cache, rest, parent, &record, depth + 1);
        }
        return Explanation {
            reason: at("it builds on a different parent, of which no record is left".into()),
            changes: vec!["parent: changed".into()],
        };
    }
    Explanation {
        reason: at("same inputs as its earlier record".into()),
        changes: Vec::new(),
    }
}

struct Difference<'a> {
    name: &'a str,
    old: Option<&'a Value>,
    new: Option<&'a Value>,
}

/// The inputs that differ, the parent aside, in the step's field order.
fn differences<'a>(new: &'a Inputs, old: &'a Inputs) -> Vec<Difference<'a>> {
    let mut out = Vec::new();
    if new.kind != old.kind {
        out.push(Difference {
            name: "kind",
            old: None,
            new: None,
        });
    }
    for (name, v) in &new.fields {
        let o = old.get(name);
        if name != "parent" && o != Some(v) {
            out.push(Difference {
                name,
                old: o,
                new: Some(v),
            });
        }
    }
    for (name, v) in &old.fields {
        if new.get(name).is_none() {
            out.push(Difference {
                name,
                old: Some(v),
                new: None,
            });
        }
    }
    out
}

fn show(v: &Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(Value::Text(s)) => short(s),
        Some(Value::List(l)) => short(&l.join(" ")),
        Some(Value::Flag(f)) => f.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::None) => "(not given)".into(),
        Some(Value::Key(k)) => format!("key {}", &k.hex()[..12]),
        Some(Value::Hash(h)) => format!("hash {}", &h[..h.len().min(12)]),
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 60 {
        format!(
            "{:?}",
            format!("{}…", s.chars().take(60).collect::<String>())
        )
    } else {
        format!("{s:?}")
    }
}

/// One readable sentence for the first difference.
fn describe(cur: &Link, old: &CacheRecord, d: &Difference) -> String {
    let text = |v: Option<&Value>| match v {
        Some(Value::Text(s)) => s.clone(),
        _ => String::new(),
    };
    let list = |v: Option<&Value>| match v {
        Some(Value::List(l)) => l.clone(),
        _ => Vec::new(),
    };
    match d.name {
        "env" => vars("ENV", &list(d.old), &list(d.new)),
        "build_args" => vars("build arg", &list(d.old), &list(d.new)),
        "manifest" => format!(
            "base image {} is now {} (was {})",
            cur.label.trim_start_matches("FROM "),
            text(d.new),
            text(d.old)
        ),
        "instruction" if text(d.new).starts_with("ARG ") && text(d.old).starts_with("ARG ") => {
            let words = |s: String| s[4..].split(' ').map(str::to_string).collect::<Vec<_>>();
            vars("build arg", &words(text(d.old)), &words(text(d.new)))
        }
        "instruction" => format!("instruction changed: {} → {}", show(&d.old), show(&d.new)),
        "argv" => format!("command changed: {} → {}", show(&d.old), show(&d.new)),
        "context" | "from-content" => {
            files(d.name, old.details.get(d.name), cur.details.get(d.name))
        }
        "platform" => format!("platform changed {} → {}", text(d.old), text(d.new)),
        n if n.ends_with(".source-key") => format!(
            "the files mounted by --mount {} changed",
            n.trim_start_matches("mount")
                .trim_end_matches(".source-key")
        ),
        n => format!("{n} changed: {} → {}", show(&d.old), show(&d.new)),
    }
}

/// `NAME=value` lists compared by name.
fn vars(what: &str, old: &[String], new: &[String]) -> String {
    let map = |l: &[String]| -> BTreeMap<String, String> {
        l.iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    };
    let (old, new) = (map(old), map(new));
    let mut out = Vec::new();
    for (k, v) in &new {
        match old.get(k) {
            Some(o) if o == v => {}
            Some(o) => out.push(format!("{what} {k} changed {o} → {v}")),
            None => out.push(format!("{what} {k} set to {v}")),
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(format!("{what} {k} removed"));
    }
    if out.is_empty() {
        format!("{what} order changed")
    } else {
        out.join(", ")
    }
}

/// Which files a COPY read differently, from the per-file details of its
/// `input` (`context` or `from-content`).
fn files(
    input: &str,
    old: Option<&Vec<(String, String)>>,
    new: Option<&Vec<(String, String)>>,
) -> String {
    let vague = match input {
        "context" => "the files it reads from the build context changed",
        _ => "the files it reads from the --from source changed",
    };
    let (Some(old), Some(new)) = (old, new) else {
        return vague.into();
    };
    let o: BTreeMap<&str, &str> = old.iter().map(|(p, h)| (p.as_str(), h.as_str())).collect();
    let n: BTreeMap<&str, &str> = new.iter().map(|(p, h)| (p.as_str(), h.as_str())).collect();
    let mut out = Vec::new();
    for (p, h) in &n {
        match o.get(p) {
            Some(oh) if oh == h => {}
            Some(_) => out.push(format!("file {p} changed")),
            None => out.push(format!("file {p} added")),
        }
    }
    for p in o.keys().filter(|p| !n.contains_key(*p)) {
        out.push(format!("file {p} removed"));
    }
    match out.len() {
        0 => vague.into(),
        1..=3 => out.join(", "),
        k => format!("{} and {} more", out[..3].join(", "), k - 3),
    }
}

/// A record of a step that is not looked up, only compared against later
/// (a stage's base, a config-only step).
pub fn record_link(cache: &Cache, link: &Link) {
    let record = CacheRecord {
        layer: None,
        inputs: Some(link.inputs.clone()),
        step: Some(crate::cache::StepInfo {
            label: link.label.clone(),
            identities: Vec::new(),
        }),
        details: link.details.clone(),
        fast_key: None,
    };
    if let Err(e) = cache.put_once(&link.inputs.key(), &record) {
        tracing::warn!("recording {} in the build cache: {e}", link.label);
    }
}

/// Per-file hashes of what a COPY reads from `root`, for `details`;
/// `None` past `MAX_FILES` entries (the explanation then says only that
/// the files changed). File contents come from `hashes`, which the step's
/// checksum has just filled: nothing is read twice.
pub fn listing(
    root: &kiln_fs::context::SourceRoot,
    hashes: &kiln_fs::file_hashes::FileHashes,
    sources: &[String],
    exclude: &[String],
) -> Option<Vec<(String, String)>> {
    use kiln_fs::context::walk;
    let exclude = kiln_fs::context::PathFilter::from_patterns(exclude).ok()?;
    let mut v = Listing {
        root,
        hashes,
        source: String::new(),
        prefix: String::new(),
        out: Vec::new(),
    };
    for source in sources {
        for m in root.expand(source).ok()? {
            v.prefix = m
                .path
                .trim_start_matches("./")
                .trim_matches('/')
                .to_string();
            if v.prefix == "." {
                v.prefix.clear();
            }
            v.source.clone_from(&m.path);
            // Past MAX_FILES the visitor stops the walk with an error.
            walk::walk(root, &m, exclude.as_ref(), &mut v).ok()?;
        }
    }
    Some(v.out)
}

const MAX_FILES: usize = 20_000;

struct Listing<'a> {
    root: &'a kiln_fs::context::SourceRoot,
    hashes: &'a kiln_fs::file_hashes::FileHashes,
    /// The matched path being walked, as the hash index keys it.
    source: String,
    /// ... and as it is shown.
    prefix: String,
    out: Vec<(String, String)>,
}

impl kiln_fs::context::walk::Visitor for Listing<'_> {
    fn entry(
        &mut self,
        e: &kiln_fs::context::walk::Entry<'_>,
    ) -> Result<(), kiln_fs::context::SourceError> {
        use kiln_fs::context::walk::Kind;
        use std::os::unix::ffi::OsStrExt;
        // Shown text: a name that is not UTF-8 is escaped.
        let rel = kiln_oci::escape_bytes(e.rel);
        let path = match (self.prefix.as_str(), rel.as_str()) {
            (p, "") => p.to_string(),
            ("", r) => r.to_string(),
            (p, r) => format!("{p}/{r}"),
        };
        let mut h = blake3::Hasher::new();
        h.update(&(e.stat.st_mode & 0o7777).to_le_bytes());
        match e.kind {
            Kind::Dir => return Ok(()),
            Kind::Symlink(t) => {
                h.update(b"symlink\0").update(t.as_bytes());
            }
            Kind::Special(_, rdev) => {
                h.update(b"special\0").update(&rdev.to_le_bytes());
            }
            Kind::File => {
                let digest =
                    kiln_fs::context::listed_digest(self.root, self.hashes, &self.source, e)?;
                h.update(b"content\0").update(&digest);
            }
        }
        if self.out.len() == MAX_FILES {
            return Err(kiln_fs::context::SourceError::Io {
                path,
                root: Default::default(),
                source: std::io::Error::other("too many files to list"),
            });
        }
        self.out.push((path, h.finalize().to_hex().to_string()));
        Ok(())
    }

    fn leave_dir(
        &mut self,
        _: &kiln_fs::context::walk::Entry<'_>,
    ) -> Result<(), kiln_fs::context::SourceError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
