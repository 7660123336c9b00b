//! RUN: here-documents, the SHELL, typed mounts with stage references
//! resolved, network/security modes, build-arg environment and history text.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ast::{Command, Instruction, RunInstr};
use crate::lower::{Scope, StepKind};
use crate::mount::{CacheSharing, MountFrom, RawMount, RunMount};
use crate::parser::{chomp_heredoc, parse_heredoc_word};
use crate::plan::{resolve_ref, StageRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    Sandbox,
    Insecure,
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

fn typed_mount(scope: &Scope, m: RawMount, ssh_index: &mut usize) -> Result<RunMount, String> {
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

pub(crate) fn lower_run(
    scope: &mut Scope,
    ins: &Instruction,
    r: &RunInstr,
) -> Result<(StepKind, String), String> {
    let mut cmd = r.command.clone();
    let mut mounts = Vec::new();
    if !ins.heredocs.is_empty() {
        let Command::Shell(line) = &r.command else {
            return Err("parsing produced an invalid run command: heredoc in exec form".into());
        };
        let simple = parse_heredoc_word(line).ok().flatten();
        if let Some(h) = simple {
            let first = &ins.heredocs[0];
            let data = if h.chomp {
                chomp_heredoc(&first.content)
            } else {
                first.content.clone()
            };
            if first.content.starts_with("#!") {
                mounts.push(RunMount::HeredocFile {
                    dir: "/dev/pipes".into(),
                    name: first.name.clone(),
                    content: data,
                    mode: 0o755,
                });
                cmd = Command::Shell(format!("/dev/pipes/{}", first.name));
            } else {
                cmd = Command::Shell(data);
            }
        } else {
            let mut full = line.clone();
            for h in &ins.heredocs {
                full.push('\n');
                full.push_str(&h.content);
                full.push_str(&h.name);
            }
            cmd = Command::Shell(full);
        }
    }
    let vars = scope.vars();
    let lex = scope.lex.clone();
    let mut ssh_index = 0;
    for m in &r.mounts {
        let mut expand = |v: &str| lex.process_word(v, &vars);
        let raw = crate::mount::parse(&m.value, Some(&mut expand))?;
        mounts.push(typed_mount(scope, raw, &mut ssh_index)?);
    }
    let network = match r.network.as_deref() {
        None => None,
        Some("none") => Some(Network::None),
        Some("host") => Some(Network::Host),
        Some(_) => Some(Network::Default),
    };
    let security = match r.security.as_deref() {
        None => None,
        Some("insecure") => Some(Security::Insecure),
        Some(_) => Some(Security::Sandbox),
    };
    // ARG values visible to the process, unless an ENV of the same name wins
    // (an ARG redeclared after that ENV wins again and replaces it).
    let mut build_env: Vec<(String, String)> = Vec::new();
    let over = |k: &str| scope.args_over_env.iter().find(|(a, _)| a == k);
    for (k, v) in &scope.args {
        let Some(v) = v else { continue };
        let v = match over(k) {
            Some((_, o)) => o,
            None if scope.env_value(k).is_some() => continue,
            None => v,
        };
        if let Some(e) = build_env.iter_mut().find(|(ek, _)| ek == k) {
            e.1 = v.clone();
        } else {
            build_env.push((k.clone(), v.clone()));
        }
    }
    // Like BuildKit's proxyEnvFromBuildArgs + proxyEnvList: a proxy build
    // arg in either case sets both spellings (`http_proxy` gives
    // `HTTP_PROXY` and `http_proxy`); of two spellings the later key wins.
    let given: BTreeMap<&String, &String> = scope
        .plan
        .options
        .build_args
        .iter()
        .filter(|(k, _)| crate::is_proxy_arg(k) && !scope.args.iter().any(|(a, _)| a == k))
        .map(|(k, v)| (k, v))
        .collect();
    let mut proxies: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in given {
        proxies.insert(k.to_ascii_uppercase(), v.clone());
    }
    let proxy_env: Vec<(String, String)> = proxies
        .into_iter()
        .flat_map(|(k, v)| [(k.to_ascii_lowercase(), v.clone()), (k, v)])
        .collect();
    let args: Vec<String> = match &cmd {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = scope.shell.clone();
            v.push(s.clone());
            v
        }
    };
    let hist = scope.history_args();
    let mut parts: Vec<String> = Vec::new();
    if !hist.is_empty() {
        parts.push(format!("|{}", hist.len()));
        parts.extend(hist.iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(args);
    let created_by = format!("RUN {} # buildkit", parts.join(" "));
    Ok((
        StepKind::Run {
            cmd,
            shell: scope.shell.clone(),
            mounts,
            network,
            security,
            build_env,
            proxy_env,
            heredocs: ins.heredocs.clone(),
        },
        created_by,
    ))
}
