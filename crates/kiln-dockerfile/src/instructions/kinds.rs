//! Argument rules of each instruction (BuildKit's `instructions/parse.go`).

use super::request::Request;
use super::{
    ArgDecl, Command, CopyInstr, FromInstr, HealthInstr, InstructionKind, KeyValue, MountFlag,
    RunInstr,
};
use crate::error::Error;
use crate::syntax::flags::{Kind, Values};
use crate::syntax::heredoc::{chomp_heredoc, parse_heredoc_word};
use crate::syntax::words;

pub(crate) fn from(req: &mut Request) -> Result<InstructionKind, Error> {
    let v = req.flags.parse(&[("platform", Kind::Str)])?;
    let args = words::split_ws(req.args);
    let stage_name = match args.len() {
        1 => None,
        3 if args[1].eq_ignore_ascii_case("as") => Some(args[2].clone()),
        3 => {
            return Err(req.err_args(format!(
                "FROM requires either one or three arguments: expected \"AS\", found {:?} (did you mean \"FROM {} AS {}\"?)",
                args[1], args[0], args[2]
            )))
        }
        0 => return Err(req.missing("FROM requires either one or three arguments (FROM <image> [AS <name>])")),
        _ => {
            return Err(req.err_args(
                "FROM requires either one or three arguments (FROM <image> [AS <name>])",
            ))
        }
    };
    if let Some(name) = &stage_name {
        if !valid_stage_name(name) {
            return Err(req.err_args(format!(
                "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
            )));
        }
    }
    Ok(InstructionKind::From(FromInstr {
        image: args[0].clone(),
        stage_name,
        platform: v.str("platform"),
    }))
}

/// `^[a-z][a-z0-9-_.]*$` on the lower-cased name.
pub fn valid_stage_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let mut chars = lower.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

pub(crate) fn run(req: &mut Request) -> Result<InstructionKind, Error> {
    let v = req.flags.parse(&[
        ("mount", Kind::Strs),
        ("network", Kind::Str),
        ("security", Kind::Str),
    ])?;
    if req.args.is_empty() {
        return Err(req.missing("RUN requires at least one argument"));
    }
    let (command, j) = req.command()?;
    req.json = j;
    let mounts = req
        .flags_list("mount")
        .into_iter()
        .map(|(value, span)| MountFlag { value, span })
        .collect::<Vec<_>>();
    // Validate now (unexpanded) so a bad option shows at parse time.
    for m in &mounts {
        super::mount::validate(&m.value)
            .map_err(|e| Error::at(req.ctx.file, req.ctx.lines, m.span, e))?;
    }
    let network = v.str("network");
    if let Some(n) = &network {
        if !matches!(n.as_str(), "default" | "none" | "host") {
            let span = req.flag_span("network");
            return Err(Error::at(
                req.ctx.file,
                req.ctx.lines,
                span,
                format!("unsupported network mode {n:?} (use default, none or host)"),
            ));
        }
    }
    let security = v.str("security");
    if let Some(s) = &security {
        if !matches!(s.as_str(), "sandbox" | "insecure") {
            let span = req.flag_span("security");
            return Err(Error::at(
                req.ctx.file,
                req.ctx.lines,
                span,
                format!("unsupported security mode {s:?} (use sandbox or insecure)"),
            ));
        }
    }
    Ok(InstructionKind::Run(RunInstr {
        command,
        mounts,
        network,
        security,
    }))
}

pub(crate) fn maybe_json(req: &mut Request) -> Result<Command, Error> {
    req.flags.finish()?;
    let (c, j) = req.command()?;
    req.json = j;
    Ok(c)
}

pub(crate) fn shell(req: &mut Request) -> Result<InstructionKind, Error> {
    req.flags.finish()?;
    if req.args.is_empty() {
        return Err(req.missing("SHELL requires at least one argument"));
    }
    match words::parse_json(req.args) {
        Ok(list) if list.is_empty() => Err(req.err_args("SHELL requires at least one argument")),
        Ok(list) => {
            req.json = true;
            Ok(InstructionKind::Shell(list))
        }
        Err(words::JsonError::Invalid(e)) => Err(req.err_args(format!(
            "SHELL requires the arguments to be in JSON form: malformed JSON ({e}) (did you mean SHELL [\"/bin/bash\", \"-c\"]?)"
        ))),
        Err(words::JsonError::NotStrings) => Err(req.err_args(
            "when using JSON array syntax, arrays must be comprised of strings only",
        )),
        Err(words::JsonError::NotJson) => Err(req.err_args(format!(
            "SHELL requires the arguments to be in JSON form (did you mean SHELL {}?)",
            suggest_json(req.args)
        ))),
    }
}

fn suggest_json(args: &str) -> String {
    let parts: Vec<String> = words::split_ws(args)
        .iter()
        .map(|w| serde_json::to_string(w).unwrap_or_default())
        .collect();
    format!("[{}]", parts.join(", "))
}

/// ENV and LABEL: `k=v …` or the legacy `k v`.
pub(crate) fn name_vals(req: &mut Request) -> Result<Vec<KeyValue>, Error> {
    req.flags.finish()?;
    let name = req.name.clone();
    let list = words::parse_words(req.args, req.ctx.escape);
    if list.is_empty() {
        return Err(req.missing(format!("{name} requires at least one argument")));
    }
    if !list[0].contains('=') {
        let mut parts = req.args.splitn(2, |c: char| {
            matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
        });
        let key = parts.next().unwrap_or_default();
        let value = parts.next().map(|v| v.trim_start_matches([' ', '\t']));
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Err(req.err_args(format!(
                "{name} must have two arguments: {key} has no value (did you mean \"{name} {key}=value\"?)"
            )));
        };
        return Ok(vec![KeyValue {
            key: key.to_string(),
            value: value.to_string(),
            legacy: true,
        }]);
    }
    let mut out = Vec::new();
    for w in list {
        let Some((k, v)) = w.split_once('=') else {
            return Err(req.err_args(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                crate::quote::go_quote(&w)
            )));
        };
        if k.is_empty() {
            return Err(req.err_args(format!("{name} names can not be blank")));
        }
        out.push(KeyValue {
            key: k.to_string(),
            value: v.to_string(),
            legacy: false,
        });
    }
    Ok(out)
}

pub(crate) fn arg(req: &mut Request) -> Result<InstructionKind, Error> {
    req.flags.finish()?;
    let list = words::parse_words(req.args, req.ctx.escape);
    if list.is_empty() {
        return Err(req.missing("ARG requires at least one argument"));
    }
    let mut out = Vec::new();
    for w in list {
        let (name, default) = match w.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (w, None),
        };
        if name.is_empty() {
            return Err(req.err_args("ARG names can not be blank"));
        }
        out.push(ArgDecl { name, default });
    }
    Ok(InstructionKind::Arg(out))
}

pub(crate) fn copy(req: &mut Request, is_add: bool) -> Result<InstructionKind, Error> {
    let v = if is_add {
        req.flags.parse(&[
            ("chown", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("exclude", Kind::Strs),
            ("keep-git-dir", Kind::Bool),
            ("checksum", Kind::Str),
            ("unpack", Kind::Bool),
        ])?
    } else {
        req.flags.parse(&[
            ("from", Kind::Str),
            ("chown", Kind::Str),
            ("chmod", Kind::Str),
            ("link", Kind::Bool),
            ("parents", Kind::Bool),
            ("exclude", Kind::Strs),
        ])?
    };
    let name = req.name.clone();
    let (list, j) = words::maybe_json_list(req.args).map_err(|e| req.err_args(e))?;
    req.json = j;
    if list.len() < 2 {
        let msg = format!(
            "{name} requires at least two arguments, but only {} provided. Destination could not be determined.",
            if list.is_empty() { "none was".to_string() } else { "one was".to_string() }
        );
        return Err(if list.is_empty() {
            req.missing(msg)
        } else {
            req.err_args(msg)
        });
    }
    let dest = list[list.len() - 1].clone();
    if !j && parse_heredoc_word(&dest).ok().flatten().is_some() {
        return Err(req.err_args(format!("{name} cannot accept a heredoc as a destination")));
    }
    let mut sources = Vec::new();
    let mut heredocs = Vec::new();
    for src in &list[..list.len() - 1] {
        let h = if j {
            None
        } else {
            parse_heredoc_word(src).ok().flatten()
        };
        match h {
            Some(h) => {
                let body = req
                    .heredocs
                    .iter()
                    .find(|d| d.name == h.name)
                    .map(|d| d.content.clone())
                    .unwrap_or_default();
                let content = if h.chomp { chomp_heredoc(&body) } else { body };
                heredocs.push(crate::syntax::heredoc::Heredoc { content, ..h });
            }
            None => sources.push(src.clone()),
        }
    }
    Ok(InstructionKind::Copy(CopyInstr {
        is_add,
        sources,
        heredocs,
        dest,
        from: v.str("from"),
        chown: v.str("chown"),
        chmod: v.str("chmod"),
        link: v.bool("link"),
        parents: v.bool("parents"),
        exclude: v.strs("exclude"),
        keep_git_dir: v.bool("keep-git-dir"),
        checksum: v.str("checksum"),
        unpack: v.bool_opt("unpack"),
    }))
}

pub(crate) fn healthcheck(req: &mut Request) -> Result<InstructionKind, Error> {
    let args = req.args;
    let sep = args.find(char::is_whitespace).unwrap_or(args.len());
    if sep == 0 {
        return Err(
            req.missing("HEALTHCHECK requires at least one argument (CMD <command> or NONE)")
        );
    }
    let typ = args[..sep].to_ascii_uppercase();
    let rest = args[sep..].trim_start();
    if typ == "NONE" {
        req.flags.finish()?;
        if !rest.is_empty() {
            return Err(req.err_args("HEALTHCHECK NONE takes no arguments"));
        }
        return Ok(InstructionKind::Healthcheck(HealthInstr::None));
    }
    let v = req.flags.parse(&[
        ("interval", Kind::Str),
        ("timeout", Kind::Str),
        ("start-period", Kind::Str),
        ("start-interval", Kind::Str),
        ("retries", Kind::Str),
    ])?;
    if typ != "CMD" {
        let mut msg = format!("Unknown type {:?} in HEALTHCHECK (try CMD)", &args[..sep]);
        if crate::suggest::did_you_mean(&typ, ["CMD", "NONE"].into_iter()).is_some() {
            msg = format!(
                "Unknown type {:?} in HEALTHCHECK (did you mean CMD?)",
                &args[..sep]
            );
        }
        return Err(req.err_args(msg));
    }
    let test = health_test(req, rest)?;
    let dur = |name: &str| health_duration(req, &v, name);
    let retries = health_retries(req, &v)?;
    Ok(InstructionKind::Healthcheck(HealthInstr::Check {
        test,
        interval: dur("interval")?,
        timeout: dur("timeout")?,
        start_period: dur("start-period")?,
        start_interval: dur("start-interval")?,
        retries,
    }))
}

/// The HEALTHCHECK CMD test: exec form (`CMD`, args…) or shell (`CMD-SHELL`).
fn health_test(req: &mut Request, rest: &str) -> Result<Vec<String>, Error> {
    let test = match words::parse_json(rest) {
        Ok(list) => {
            req.json = true;
            let mut t = vec!["CMD".to_string()];
            t.extend(list);
            t
        }
        Err(words::JsonError::NotStrings) => {
            return Err(req.err_args(
                "when using JSON array syntax, arrays must be comprised of strings only",
            ))
        }
        Err(_) => vec!["CMD-SHELL".to_string(), rest.to_string()],
    };
    if test.len() < 2 || (test[0] == "CMD-SHELL" && test[1].is_empty()) {
        return Err(req.err_args("Missing command after HEALTHCHECK CMD"));
    }
    Ok(test)
}

/// A HEALTHCHECK duration flag: unset or zero is `None`, under 1ms an error.
fn health_duration(
    req: &Request,
    v: &Values,
    name: &str,
) -> Result<Option<std::time::Duration>, Error> {
    match v.str(name) {
        None => Ok(None),
        Some(s) => {
            let d = crate::duration::parse_go_duration(&s).map_err(|e| {
                Error::at(
                    req.ctx.file,
                    req.ctx.lines,
                    req.flag_span(name),
                    format!("--{name}: {e}"),
                )
            })?;
            if d.is_zero() {
                return Ok(None);
            }
            if d < std::time::Duration::from_millis(1) {
                return Err(Error::at(
                    req.ctx.file,
                    req.ctx.lines,
                    req.flag_span(name),
                    format!("Interval {name} cannot be less than 1ms"),
                ));
            }
            Ok(Some(d))
        }
    }
}

fn health_retries(req: &Request, v: &Values) -> Result<Option<i64>, Error> {
    Ok(match v.str("retries") {
        None => None,
        Some(s) => {
            let n: i64 = s.parse().map_err(|_| {
                Error::at(
                    req.ctx.file,
                    req.ctx.lines,
                    req.flag_span("retries"),
                    format!("--retries: invalid number {s:?}"),
                )
            })?;
            if n < 0 {
                return Err(Error::at(
                    req.ctx.file,
                    req.ctx.lines,
                    req.flag_span("retries"),
                    format!("--retries cannot be negative ({n})"),
                ));
            }
            Some(n)
        }
    })
}

/// MAINTAINER, USER, WORKDIR, STOPSIGNAL: one argument, no flags.
pub(crate) fn single(req: &mut Request) -> Result<InstructionKind, Error> {
    req.flags.finish()?;
    let name = req.name.as_str();
    if req.args.is_empty() {
        return Err(req.missing(format!("{name} requires exactly one argument")));
    }
    let arg = req.args.to_string();
    Ok(match name {
        "MAINTAINER" => InstructionKind::Maintainer(arg),
        "USER" => InstructionKind::User(arg),
        "WORKDIR" => InstructionKind::Workdir(arg),
        _ => InstructionKind::StopSignal(arg),
    })
}

pub(crate) fn expose(req: &mut Request) -> Result<InstructionKind, Error> {
    req.flags.finish()?;
    let ports = words::split_ws(req.args);
    if ports.is_empty() {
        return Err(req.missing("EXPOSE requires at least one argument"));
    }
    Ok(InstructionKind::Expose(ports))
}

pub(crate) fn volume(req: &mut Request) -> Result<InstructionKind, Error> {
    req.flags.finish()?;
    let (list, j) = words::maybe_json_list(req.args).map_err(|e| req.err_args(e))?;
    req.json = j;
    if list.is_empty() {
        return Err(req.missing("VOLUME requires at least one argument"));
    }
    Ok(InstructionKind::Volume(list))
}
