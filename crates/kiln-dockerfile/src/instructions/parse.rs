//! One logical line → one typed instruction: the keyword, its flags, and
//! the argument rules of BuildKit's `line_parsers.go` and
//! `instructions/parse.go` (one function per instruction, in `kinds`).

use super::kinds;
use super::request::Request;
use super::{Instruction, InstructionKind, KEYWORDS};
use crate::error::{Error, Span};
use crate::quote::go_quote;
use crate::suggest::did_you_mean;
use crate::syntax::flags::{flags_at, FlagSet};
use crate::syntax::heredoc::Heredoc;
use crate::syntax::line::{split_keyword, LineCtx};

pub(crate) fn parse_instruction(
    ctx: &LineCtx,
    heredocs: Vec<Heredoc>,
) -> Result<Instruction, Error> {
    parse_at(ctx, 0, heredocs, false)
}

/// Parses the instruction starting at byte `start` of the line (not 0 for
/// an ONBUILD trigger).
fn parse_at(
    ctx: &LineCtx,
    start: usize,
    heredocs: Vec<Heredoc>,
    in_onbuild: bool,
) -> Result<Instruction, Error> {
    let (ks, ke, args_start) = split_keyword(ctx.text, start);
    let keyword = ctx.text[ks..ke].to_string();
    let upper = keyword.to_ascii_uppercase();
    if !KEYWORDS.contains(&upper.as_str()) {
        let mut msg = format!("unknown instruction {}", go_quote(&keyword));
        if let Some(s) = did_you_mean(&upper, KEYWORDS.iter().copied()) {
            msg.push_str(&format!(" (did you mean \"{s}\"?)"));
        }
        return Err(ctx.err(ks, ke, msg));
    }
    let (flags, rest_start) = flags_at(ctx, args_start);
    let rest_raw = &ctx.text[rest_start..];
    let args = rest_raw.trim().to_string();
    let mut req = Request {
        ctx,
        flags: FlagSet::new(ctx, &upper, &flags),
        name: upper,
        args: &args,
        args_off: rest_start + (rest_raw.len() - rest_raw.trim_start().len()),
        heredocs: &heredocs,
        kw_span: ctx.span(ks, ke),
        json: false,
    };
    let kind = match req.name.as_str() {
        "FROM" => kinds::from(&mut req)?,
        "RUN" => kinds::run(&mut req)?,
        "CMD" => InstructionKind::Cmd(kinds::maybe_json(&mut req)?),
        "ENTRYPOINT" => InstructionKind::Entrypoint(kinds::maybe_json(&mut req)?),
        "SHELL" => kinds::shell(&mut req)?,
        "LABEL" => InstructionKind::Label(kinds::name_vals(&mut req)?),
        "ENV" => InstructionKind::Env(kinds::name_vals(&mut req)?),
        "MAINTAINER" | "USER" | "WORKDIR" | "STOPSIGNAL" => kinds::single(&mut req)?,
        "EXPOSE" => kinds::expose(&mut req)?,
        "VOLUME" => kinds::volume(&mut req)?,
        "ADD" => kinds::copy(&mut req, true)?,
        "COPY" => kinds::copy(&mut req, false)?,
        "ARG" => kinds::arg(&mut req)?,
        "HEALTHCHECK" => kinds::healthcheck(&mut req)?,
        "ONBUILD" => onbuild(&mut req, (ks, ke), in_onbuild)?,
        _ => unreachable!("keyword list and match agree"),
    };
    let (line, col) = ctx.pos(ks);
    let last_len = ctx
        .lines
        .get(ctx.end_line.saturating_sub(1))
        .map_or(0, |l| l.chars().count());
    let json = req.json;
    Ok(Instruction {
        span: Span {
            line,
            col,
            end_line: ctx.end_line,
            end_col: last_len + 1,
        },
        keyword,
        flags,
        args,
        json,
        heredocs,
        original: ctx.text[start..].trim().to_string(),
        kind,
    })
}

/// `ONBUILD <trigger>`: the trigger is parsed now, so mistakes show at parse
/// time; `keyword` is the byte range of `ONBUILD` itself.
fn onbuild(
    req: &mut Request,
    keyword: (usize, usize),
    in_onbuild: bool,
) -> Result<InstructionKind, Error> {
    let ctx = req.ctx;
    req.flags.finish()?;
    if in_onbuild {
        return Err(ctx.err(
            keyword.0,
            keyword.1,
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ));
    }
    if req.args.is_empty() {
        return Err(req.missing("ONBUILD requires at least one argument"));
    }
    let (tks, tke, _) = split_keyword(ctx.text, req.args_off);
    let trigger = ctx.text[tks..tke].to_ascii_uppercase();
    match trigger.as_str() {
        "ONBUILD" => {
            return Err(ctx.err(
                tks,
                tke,
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
            ))
        }
        "MAINTAINER" | "FROM" => {
            return Err(ctx.err(
                tks,
                tke,
                format!("{trigger} isn't allowed as an ONBUILD trigger"),
            ))
        }
        _ => {}
    }
    let inner = parse_at(ctx, req.args_off, req.heredocs.to_vec(), true)?;
    let mut expression = ctx.text[req.args_off..].to_string();
    for h in req.heredocs {
        expression.push('\n');
        expression.push_str(&h.content);
        expression.push_str(&h.name);
    }
    Ok(InstructionKind::Onbuild(expression, Box::new(inner)))
}
