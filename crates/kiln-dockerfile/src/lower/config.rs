//! The instructions that change the stage's state or image config but make
//! no layer of their own: one function per instruction, each returning the
//! lowered kind and its `created_by` history text.

use std::time::Duration;

use super::ports::parse_port_specs;
use super::scope::{clean_abs, cmd_args, Scope};
use super::step::{Healthcheck, StepKind};
use crate::duration::format_go_duration;
use crate::instructions::{ArgDecl, Command, HealthInstr, KeyValue};
use crate::quote::{go_list, go_quote, go_quote_list, go_quote_rune};

type Lowered = Result<(StepKind, String), String>;

pub(crate) fn env(scope: &mut Scope, kvs: &[KeyValue]) -> Lowered {
    let mut out = Vec::new();
    for kv in kvs {
        out.push((scope.expand(&kv.key)?, scope.expand(&kv.value)?));
    }
    let mut msg = String::from("ENV");
    for (k, v) in &out {
        msg.push_str(&format!(" {k}={v}"));
        scope.set_env(k.clone(), v.clone());
    }
    Ok((StepKind::Env(out), msg))
}

pub(crate) fn arg(scope: &mut Scope, decls: &[ArgDecl]) -> Lowered {
    let mut out = Vec::new();
    for d in decls {
        let name = scope.expand(&d.name)?;
        let value = match (given_arg(scope, &name), &d.default) {
            (Some(v), _) => Some(v),
            (None, Some(def)) => Some(scope.expand(def)?),
            (None, None) => scope
                .plan
                .global_args
                .iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone()),
        };
        if let Some(v) = &value {
            if scope.env_value(&name).is_some() {
                scope.args_over_env.retain(|(a, _)| *a != name);
                scope.args_over_env.push((name.clone(), v.clone()));
            }
        }
        scope.args.push((name.clone(), value.clone()));
        out.push((name, value));
    }
    let parts: Vec<String> = out
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect();
    Ok((StepKind::Arg(out), format!("ARG {}", parts.join(" "))))
}

/// The `--build-arg` value of `name`, the last one given.
fn given_arg(scope: &Scope, name: &str) -> Option<String> {
    let args = &scope.plan.options.build_args;
    args.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

pub(crate) fn workdir(scope: &mut Scope, p: &str) -> Lowered {
    let p = scope.expand(p)?;
    // BuildKit's NormalizeWorkdir: an absolute path is kept as
    // written, a relative one is joined to the current one and cleaned.
    let wd = if p.starts_with('/') {
        p
    } else {
        clean_abs(&format!("{}/{}", scope.workdir, p))
    };
    scope.workdir = wd.clone();
    Ok((StepKind::Workdir(wd.clone()), format!("WORKDIR {wd}")))
}

pub(crate) fn user(scope: &mut Scope, u: &str) -> Lowered {
    let u = scope.expand(u)?;
    Ok((StepKind::User(u.clone()), format!("USER {u}")))
}

pub(crate) fn label(scope: &mut Scope, kvs: &[KeyValue]) -> Lowered {
    let mut out = Vec::new();
    let mut msg = String::from("LABEL");
    for kv in kvs {
        let (k, v) = (scope.expand(&kv.key)?, scope.expand(&kv.value)?);
        msg.push_str(&format!(" {k}={v}"));
        out.push((k, v));
    }
    Ok((StepKind::Label(out), msg))
}

pub(crate) fn expose(scope: &mut Scope, ports: &[String]) -> Lowered {
    let vars = scope.vars();
    let mut words = Vec::new();
    for p in ports {
        words.extend(scope.lex.process_words(p, &vars)?);
    }
    let specs = parse_port_specs(&words)?;
    let shown: Vec<String> = specs.iter().map(|p| format!("{p}:{{}}")).collect();
    Ok((
        StepKind::Expose(specs.clone()),
        format!("EXPOSE map[{}]", shown.join(" ")),
    ))
}

pub(crate) fn volume(scope: &mut Scope, vols: &[String]) -> Lowered {
    let mut out = Vec::new();
    for v in vols {
        let e = scope.expand(v)?;
        if e.is_empty() {
            return Err("VOLUME specified can not be an empty string".into());
        }
        out.push(e);
    }
    let msg = format!("VOLUME {}", go_list(&out));
    Ok((StepKind::Volume(out), msg))
}

pub(crate) fn stop_signal(scope: &mut Scope, s: &str) -> Lowered {
    let s = scope.expand(s)?;
    validate_signal(&s)?;
    Ok((StepKind::StopSignal(s.clone()), format!("STOPSIGNAL {s}")))
}

pub(crate) fn cmd(scope: &mut Scope, c: &Command) -> Lowered {
    let msg = format!("CMD {}", go_quote_list(&cmd_args(&scope.shell, c)));
    Ok((StepKind::Cmd(c.clone()), msg))
}

pub(crate) fn entrypoint(scope: &mut Scope, c: &Command) -> Lowered {
    let msg = format!("ENTRYPOINT {}", go_quote_list(&cmd_args(&scope.shell, c)));
    Ok((StepKind::Entrypoint(c.clone()), msg))
}

pub(crate) fn shell(scope: &mut Scope, s: &[String]) -> Lowered {
    scope.shell = s.to_vec();
    Ok((StepKind::Shell(s.to_vec()), format!("SHELL {}", go_list(s))))
}

pub(crate) fn healthcheck(h: &HealthInstr) -> Lowered {
    let hc = match h {
        HealthInstr::None => Healthcheck {
            test: vec!["NONE".into()],
            interval: Duration::ZERO,
            timeout: Duration::ZERO,
            start_period: Duration::ZERO,
            start_interval: Duration::ZERO,
            retries: 0,
        },
        HealthInstr::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => Healthcheck {
            test: test.clone(),
            interval: interval.unwrap_or_default(),
            timeout: timeout.unwrap_or_default(),
            start_period: start_period.unwrap_or_default(),
            start_interval: start_interval.unwrap_or_default(),
            retries: retries.unwrap_or_default(),
        },
    };
    let d = |d: Duration| go_quote(&format_go_duration(d));
    let msg = format!(
        "HEALTHCHECK &{{{} {} {} {} {} {}}}",
        go_quote_list(&hc.test),
        d(hc.interval),
        d(hc.timeout),
        d(hc.start_period),
        d(hc.start_interval),
        go_quote_rune(hc.retries)
    );
    let kind = if matches!(h, HealthInstr::None) {
        StepKind::Healthcheck(None)
    } else {
        StepKind::Healthcheck(Some(hc))
    };
    Ok((kind, msg))
}

const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
];

/// moby's `signal.ParseSignal`: a number, or a name with or without `SIG`
/// (including `RTMIN+n`).
fn validate_signal(s: &str) -> Result<(), String> {
    if let Ok(n) = s.parse::<u32>() {
        if n == 0 || n > 64 {
            return Err(format!("Invalid signal: {s}"));
        }
        return Ok(());
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    if SIGNALS.contains(&name) || name.starts_with("RTMIN") || name.starts_with("RTMAX") {
        return Ok(());
    }
    Err(format!("Invalid signal: {s}"))
}
