//! A RUN's `--mount` options as typed mounts: defaults applied, stage
//! references resolved.

use serde::Serialize;

use super::scope::Scope;
use crate::instructions::mount::RawMount;
use crate::plan::{resolve_ref, StageRef};

/// Where a mount's content comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum MountFrom {
    /// Another stage, by index in the Dockerfile.
    Stage(usize),
    /// An image reference (expanded, as written).
    Image(String),
    /// The build context.
    Context,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// A typed, expanded `--mount`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum RunMount {
    Bind {
        target: String,
        /// Path inside the source (`/` when not given).
        source: String,
        from: MountFrom,
        rw: bool,
    },
    Cache {
        target: String,
        /// Cache key; the target path when not given.
        id: String,
        sharing: CacheSharing,
        /// Seed content for an empty cache.
        from: Option<MountFrom>,
        source: String,
        mode: u32,
        uid: u32,
        gid: u32,
        readonly: bool,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    Secret {
        id: String,
        /// File path; `None` when only `env=` was given.
        target: Option<String>,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
        env: Option<String>,
    },
    Ssh {
        id: String,
        target: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// Not a `--mount`: a here-document run as a script (`RUN <<EOF` whose
    /// body starts with `#!`). The engine mounts a read-only directory at
    /// `dir` holding `name` (mode `mode`) with `content`.
    HeredocFile {
        dir: String,
        name: String,
        content: String,
        mode: u32,
    },
}

fn basename(p: &str) -> String {
    let t = p.trim_end_matches('/');
    t.rsplit('/').next().unwrap_or(t).to_string()
}

fn resolve_from(scope: &Scope, from: &str) -> Result<MountFrom, String> {
    match resolve_ref(from, &scope.plan.all_stages)? {
        StageRef::Stage(i) if i >= scope.stage => Err(format!(
            "--mount from={from} refers to a stage that is not defined before this one"
        )),
        StageRef::Stage(i) => Ok(MountFrom::Stage(i)),
        StageRef::Image(img) => Ok(MountFrom::Image(img)),
    }
}

pub(crate) fn typed_mount(
    scope: &Scope,
    m: RawMount,
    ssh_index: &mut usize,
) -> Result<RunMount, String> {
    let target = m.target.clone().unwrap_or_default();
    Ok(match m.typ.as_str() {
        "bind" => RunMount::Bind {
            target,
            source: m.source.unwrap_or_else(|| "/".into()),
            from: match &m.from {
                Some(f) => resolve_from(scope, f)?,
                None => MountFrom::Context,
            },
            rw: m.readonly == Some(false),
        },
        "cache" => RunMount::Cache {
            id: m
                .id
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| target.clone()),
            target,
            sharing: match m.sharing.as_deref() {
                Some("private") => CacheSharing::Private,
                Some("locked") => CacheSharing::Locked,
                _ => CacheSharing::Shared,
            },
            from: match &m.from {
                Some(f) => Some(resolve_from(scope, f)?),
                None => None,
            },
            source: m.source.unwrap_or_default(),
            mode: m.mode.unwrap_or(0o755),
            uid: m.uid.unwrap_or(0),
            gid: m.gid.unwrap_or(0),
            readonly: m.readonly.unwrap_or(false),
        },
        "tmpfs" => RunMount::Tmpfs {
            target,
            size: m.size,
        },
        "secret" => {
            let id =
                match (m.id, m.source) {
                    (Some(id), _) if !id.is_empty() => id,
                    (_, Some(src)) if !src.is_empty() => src,
                    _ => match (&m.target, &m.env) {
                        (Some(t), _) if !t.is_empty() => basename(t),
                        (_, Some(e)) if !e.is_empty() => e.clone(),
                        _ => return Err(
                            "invalid secret mount: one of id, source, target or env is required"
                                .into(),
                        ),
                    },
                };
            let target = match m.target.filter(|t| !t.is_empty()) {
                Some(t) => Some(t),
                None if m.env.is_some() => None,
                None => Some(format!("/run/secrets/{}", basename(&id))),
            };
            RunMount::Secret {
                id,
                target,
                required: m.required,
                mode: m.mode.unwrap_or(0o400),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
                env: m.env,
            }
        }
        _ => {
            let target = if target.is_empty() {
                let t = format!("/run/buildkit/ssh_agent.{}", *ssh_index);
                *ssh_index += 1;
                t
            } else {
                target
            };
            RunMount::Ssh {
                id: m
                    .id
                    .filter(|i| !i.is_empty())
                    .unwrap_or_else(|| "default".into()),
                target,
                required: m.required,
                mode: m.mode.unwrap_or(0o600),
                uid: m.uid.unwrap_or(0),
                gid: m.gid.unwrap_or(0),
            }
        }
    })
}
