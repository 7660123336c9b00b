//! RUN: here-documents, the SHELL, typed mounts with stage references
//! resolved, network/security modes, build-arg environment and history text.

use std::collections::BTreeMap;

use super::mount::{typed_mount, RunMount};
use super::scope::Scope;
use super::step::{Network, RunStep, Security, StepKind};
use crate::instructions::mount;
use crate::instructions::{Command, Instruction, RunInstr};
use crate::plan::is_proxy_arg;
use crate::syntax::heredoc::{chomp_heredoc, parse_heredoc_word};

pub(crate) fn lower_run(
    scope: &mut Scope,
    ins: &Instruction,
    r: &RunInstr,
) -> Result<(StepKind, String), String> {
    let mut mounts = Vec::new();
    let cmd = with_heredocs(ins, r, &mut mounts)?;
    let vars = scope.vars();
    let lex = scope.lex.clone();
    let mut ssh_index = 0;
    for m in &r.mounts {
        let mut expand = |v: &str| lex.process_word(v, &vars);
        let raw = mount::parse(&m.value, Some(&mut expand))?;
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
    let created_by = history_message(scope, &cmd);
    Ok((
        StepKind::Run(RunStep {
            cmd,
            shell: scope.shell.clone(),
            mounts,
            network,
            security,
            build_env: build_env(scope),
            proxy_env: proxy_env(scope),
            heredocs: ins.heredocs.clone(),
        }),
        created_by,
    ))
}

/// The command with its here-documents: a lone `<<EOF` runs the document
/// itself (as a script file when it starts with `#!`); otherwise they are
/// appended to the shell line.
fn with_heredocs(
    ins: &Instruction,
    r: &RunInstr,
    mounts: &mut Vec<RunMount>,
) -> Result<Command, String> {
    let mut cmd = r.command.clone();
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
    Ok(cmd)
}

/// ARG values visible to the process, unless an ENV of the same name wins
/// (an ARG redeclared after that ENV wins again and replaces it).
fn build_env(scope: &Scope) -> Vec<(String, String)> {
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
    build_env
}

/// Like BuildKit's proxyEnvFromBuildArgs + proxyEnvList: a proxy build
/// arg in either case sets both spellings (`http_proxy` gives
/// `HTTP_PROXY` and `http_proxy`); of two spellings the later key wins.
fn proxy_env(scope: &Scope) -> Vec<(String, String)> {
    let given: BTreeMap<&String, &String> = scope
        .plan
        .options
        .build_args
        .iter()
        .filter(|(k, _)| is_proxy_arg(k) && !scope.args.iter().any(|(a, _)| a == k))
        .map(|(k, v)| (k, v))
        .collect();
    let mut proxies: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in given {
        proxies.insert(k.to_ascii_uppercase(), v.clone());
    }
    proxies
        .into_iter()
        .flat_map(|(k, v)| [(k.to_ascii_lowercase(), v.clone()), (k, v)])
        .collect()
}

/// The history line BuildKit writes: `RUN |n K=V… cmd # buildkit`.
fn history_message(scope: &Scope, cmd: &Command) -> String {
    let args: Vec<String> = match cmd {
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
    format!("RUN {} # buildkit", parts.join(" "))
}
