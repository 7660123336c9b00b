//! COPY and ADD: expanded sources, destination and flags, inline here-doc
//! files, and the `--from` source resolved to a stage or an image.

use super::scope::Scope;
use super::step::{CopyFrom, CopyStep, StepKind};
use crate::instructions::{CopyInstr, Heredoc};
use crate::plan::{resolve_ref, StageRef};
use crate::syntax::shell::Lexer;

pub(crate) fn lower_copy(scope: &mut Scope, c: &CopyInstr) -> Result<(StepKind, String), String> {
    let mut sources = Vec::new();
    for s in &c.sources {
        sources.push(scope.expand(s)?);
    }
    let dest = scope.expand(&c.dest)?;
    let opt = |v: &Option<String>, scope: &Scope| -> Result<Option<String>, String> {
        v.as_ref().map(|s| scope.expand(s)).transpose()
    };
    let chown = opt(&c.chown, scope)?.filter(|s| !s.is_empty());
    let chmod = opt(&c.chmod, scope)?.filter(|s| !s.is_empty());
    let checksum = opt(&c.checksum, scope)?.filter(|s| !s.is_empty());
    if let Some(m) = &chmod {
        match u32::from_str_radix(m, 8) {
            Ok(v) if v <= 0o7777 => {}
            _ => {
                return Err(format!(
                "invalid chmod parameter: '{m}'. it should be octal string and between 0 and 07777"
            ))
            }
        }
    }
    if checksum.is_some() {
        if sources.len() != 1 {
            return Err("checksum can't be specified for multiple sources".into());
        }
        let s = &sources[0];
        if !(s.starts_with("http://")
            || s.starts_with("https://")
            || s.starts_with("git@")
            || s.ends_with(".git"))
        {
            return Err("checksum can't be specified for non-HTTP(S) sources".into());
        }
    }
    if !c.is_add {
        for s in &sources {
            if s.starts_with("http://") || s.starts_with("https://") {
                return Err(format!(
                    "source can't be a URL for COPY: {s} (use ADD to download)"
                ));
            }
        }
    }
    let mut exclude = Vec::new();
    for e in &c.exclude {
        exclude.push(scope.expand(e)?);
    }
    let from = match &c.from {
        None => None,
        Some(f) => {
            let v = scope.lex.process_word(f, &scope.plan.global_args)?;
            Some(match resolve_ref(&v, &scope.plan.all_stages)? {
                StageRef::Stage(i) if i >= scope.stage => {
                    return Err(format!(
                    "cannot copy from stage {v:?}, it needs to be defined before the current stage"
                ))
                }
                StageRef::Stage(i) => CopyFrom::Stage(i),
                StageRef::Image(img) => CopyFrom::Image(img),
            })
        }
    };
    let mut heredocs = Vec::new();
    let mut raw = Lexer::new('\\');
    raw.skip_process_quotes = true;
    let vars = scope.vars();
    for h in &c.heredocs {
        let content = if h.expand {
            raw.process_word(&h.content, &vars)?
        } else {
            h.content.clone()
        };
        heredocs.push(Heredoc {
            content,
            ..h.clone()
        });
    }
    let mut msg = String::from(if c.is_add { "ADD" } else { "COPY" });
    if c.parents {
        msg.push_str(" --parents");
    }
    if let Some(v) = &chown {
        msg.push_str(&format!(" --chown={v}"));
    }
    if let Some(v) = &chmod {
        msg.push_str(&format!(" --chmod={v}"));
    }
    for s in &sources {
        msg.push(' ');
        msg.push_str(s);
    }
    for h in &heredocs {
        msg.push_str(&format!(" <<{}", h.name));
    }
    msg.push(' ');
    msg.push_str(&dest);
    msg.push_str(" # buildkit");
    Ok((
        StepKind::Copy(CopyStep {
            is_add: c.is_add,
            sources,
            heredocs,
            dest,
            from,
            chown,
            chmod,
            link: c.link,
            exclude,
            parents: c.parents,
            checksum,
            keep_git_dir: c.keep_git_dir,
            unpack: c.unpack,
        }),
        msg,
    ))
}
