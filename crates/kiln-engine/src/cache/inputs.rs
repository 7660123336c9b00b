//! What each kind of step's key is made of: the contract of docs/cache.md
//! as pure functions from a step's resolved inputs to its [`Inputs`].
//!
//! Nothing here reads files or runs anything; the ops resolve content
//! hashes and source keys first and pass them in.

use kiln_dockerfile::{CacheSharing, Heredoc, MountFrom, RunMount};

use super::key::{CacheKey, Inputs, Value};

/// The start of a `FROM scratch` stage.
pub fn scratch(platform: &str) -> Inputs {
    Inputs::root("scratch").with("platform", Value::text(platform))
}

/// The start of a `FROM image` stage: the image's manifest digest.
pub fn image(manifest_digest: &str) -> Inputs {
    Inputs::root("image").with("manifest", Value::text(manifest_digest))
}

/// A config-only step (ENV, ARG, LABEL, …): its history text.
pub fn meta(parent: CacheKey, created_by: &str, original: &str) -> Inputs {
    Inputs::new("meta", parent)
        .with("instruction", Value::text(created_by))
        .with("original", Value::text(original))
}

/// WORKDIR: the path and the user that creates it.
pub fn workdir(parent: CacheKey, path: &str, user: &str) -> Inputs {
    Inputs::new("workdir", parent)
        .with("path", Value::text(path))
        .with("user", Value::text(user))
}

/// RUN, after expansion and with every mount's source resolved.
pub struct Run<'a> {
    pub parent: CacheKey,
    /// After SHELL.
    pub argv: &'a [String],
    /// The image config's environment.
    pub env: &'a [String],
    /// ARG values in scope that no ENV shadows (`NAME=value`).
    pub build_args: &'a [String],
    pub user: &'a str,
    pub workdir: &'a str,
    /// `host` or `none`.
    pub network: &'a str,
    /// Each mount with the key of what it mounts (context content, a
    /// stage's key, an image's key), `None` for mounts with no source.
    pub mounts: &'a [(&'a RunMount, Option<CacheKey>)],
}

pub fn run(r: &Run) -> Inputs {
    let mut i = Inputs::new("run", r.parent);
    i.add("argv", Value::list(r.argv))
        .add("env", Value::list(r.env))
        .add("build_args", Value::list(r.build_args))
        .add("user", Value::text(r.user))
        .add("workdir", Value::text(r.workdir))
        .add("network", Value::text(r.network));
    for (n, (m, source)) in r.mounts.iter().enumerate() {
        for (name, value) in mount(m, *source) {
            i.add(format!("mount{n}.{name}"), value);
        }
    }
    i
}

fn from_value(from: &MountFrom) -> Value {
    match from {
        MountFrom::Context => Value::text("context"),
        MountFrom::Stage(i) => Value::text(format!("stage {i}")),
        MountFrom::Image(name) => Value::text(format!("image {name}")),
    }
}

/// A mount's options as named fields. A cache mount's contents and a
/// secret's value are deliberately absent (as in BuildKit).
fn mount(m: &RunMount, source: Option<CacheKey>) -> Vec<(&'static str, Value)> {
    let source_key = ("source-key", source.map_or(Value::None, Value::Key));
    let num = |n: u32| Value::Number(u64::from(n));
    match m {
        RunMount::Bind {
            target,
            source,
            from,
            rw,
        } => vec![
            ("type", Value::text("bind")),
            ("target", Value::text(target)),
            ("source", Value::text(source)),
            ("from", from_value(from)),
            ("rw", Value::Flag(*rw)),
            source_key,
        ],
        RunMount::Cache {
            target,
            id,
            sharing,
            from,
            source,
            mode,
            uid,
            gid,
            readonly,
        } => vec![
            ("type", Value::text("cache")),
            ("target", Value::text(target)),
            ("id", Value::text(id)),
            ("sharing", Value::text(sharing_name(sharing))),
            ("from", from.as_ref().map_or(Value::None, from_value)),
            ("source", Value::text(source)),
            ("mode", num(*mode)),
            ("uid", num(*uid)),
            ("gid", num(*gid)),
            ("readonly", Value::Flag(*readonly)),
            source_key,
        ],
        RunMount::Tmpfs { target, size } => vec![
            ("type", Value::text("tmpfs")),
            ("target", Value::text(target)),
            ("size", size.map_or(Value::None, Value::Number)),
        ],
        RunMount::Secret {
            id,
            target,
            required,
            mode,
            uid,
            gid,
            env,
        } => vec![
            ("type", Value::text("secret")),
            ("id", Value::text(id)),
            ("target", Value::opt(target.as_deref())),
            ("required", Value::Flag(*required)),
            ("mode", num(*mode)),
            ("uid", num(*uid)),
            ("gid", num(*gid)),
            ("env", Value::opt(env.as_deref())),
        ],
        RunMount::Ssh {
            id,
            target,
            required,
            mode,
            uid,
            gid,
        } => vec![
            ("type", Value::text("ssh")),
            ("id", Value::text(id)),
            ("target", Value::text(target)),
            ("required", Value::Flag(*required)),
            ("mode", num(*mode)),
            ("uid", num(*uid)),
            ("gid", num(*gid)),
        ],
        RunMount::HeredocFile {
            dir,
            name,
            content,
            mode,
        } => vec![
            ("type", Value::text("heredoc")),
            ("target", Value::text(dir)),
            ("name", Value::text(name)),
            ("content", Value::hash_of(content.as_bytes())),
            ("mode", num(*mode)),
        ],
    }
}

fn sharing_name(s: &CacheSharing) -> &'static str {
    match s {
        CacheSharing::Shared => "shared",
        CacheSharing::Private => "private",
        CacheSharing::Locked => "locked",
    }
}

/// Where a COPY's files come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopySource {
    /// No file sources (only here-documents or URLs).
    None,
    /// The content hash of the files read from the build context.
    Context([u8; 32]),
    /// The content hash of the files read from a stage or an image.
    Stage([u8; 32]),
    /// The key of the stage or image read from: the fast key of a
    /// `COPY --from`, which finds its record without reading any file.
    StageKey(CacheKey),
}

/// COPY and ADD, after expansion and with the sources hashed.
pub struct Copy<'a> {
    pub parent: CacheKey,
    pub is_add: bool,
    /// The source paths as written (after expansion): the content hash
    /// covers them too, but a fast key has no content hash.
    pub sources: &'a [String],
    pub dest: &'a str,
    pub workdir: &'a str,
    pub chown: Option<&'a str>,
    pub chmod: Option<&'a str>,
    pub link: bool,
    pub exclude: &'a [String],
    pub parents: bool,
    /// ADD's `--unpack`; `None` is the default (local archives unpack).
    pub unpack: Option<bool>,
    pub heredocs: &'a [Heredoc],
    pub source: CopySource,
    /// Fetched URLs with the SHA-256 of what they returned.
    pub urls: &'a [(String, String)],
}

pub fn copy(c: &Copy) -> Inputs {
    let mut i = Inputs::new(if c.is_add { "add" } else { "copy" }, c.parent);
    i.add("sources", Value::list(c.sources))
        .add("dest", Value::text(c.dest))
        .add("workdir", Value::text(c.workdir))
        .add("chown", Value::opt(c.chown))
        .add("chmod", Value::opt(c.chmod))
        .add("link", Value::Flag(c.link))
        .add("exclude", Value::list(c.exclude))
        .add("parents", Value::Flag(c.parents))
        .add("unpack", c.unpack.map_or(Value::None, Value::Flag));
    for (n, h) in c.heredocs.iter().enumerate() {
        i.add(format!("heredoc{n}.name"), Value::text(&h.name));
        i.add(
            format!("heredoc{n}.content"),
            Value::hash_of(h.content.as_bytes()),
        );
    }
    match c.source {
        CopySource::None => {}
        CopySource::Context(h) => {
            i.add("context", Value::hash(&h));
        }
        CopySource::Stage(h) => {
            i.add("from-content", Value::hash(&h));
        }
        CopySource::StageKey(k) => {
            i.add("from-key", Value::Key(k));
        }
    }
    for (n, (url, sha256)) in c.urls.iter().enumerate() {
        i.add(format!("url{n}"), Value::text(url));
        i.add(format!("url{n}.sha256"), Value::text(sha256));
    }
    i
}

#[cfg(test)]
mod tests;
