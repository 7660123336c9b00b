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
    check_flags(c, &sources, &chmod, &checksum)?;
    let mut exclude = Vec::new();
    for e in &c.exclude {
        exclude.push(scope.expand(e)?);
    }
    let from = copy_from(scope, c)?;
    let heredocs = expand_heredocs(scope, c)?;
    let step = CopyStep {
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
    };
    let msg = history_message(&step);
    Ok((StepKind::Copy(step), msg))
}

/// --chmod must be octal, --checksum only for one remote source, and COPY
/// never downloads.
fn check_flags(
    c: &CopyInstr,
    sources: &[String],
    chmod: &Option<String>,
    checksum: &Option<String>,
) -> Result<(), String> {
    if let Some(m) = chmod {
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
        for s in sources {
            if s.starts_with("http://") || s.starts_with("https://") {
                return Err(format!(
                    "source can't be a URL for COPY: {s} (use ADD to download)"
                ));
            }
        }
    }
    Ok(())
}

/// `--from`: an earlier stage (by name or index) or an image.
fn copy_from(scope: &Scope, c: &CopyInstr) -> Result<Option<CopyFrom>, String> {
    Ok(match &c.from {
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
    })
}

/// Inline here-doc files, expanded unless their delimiter was quoted.
fn expand_heredocs(scope: &Scope, c: &CopyInstr) -> Result<Vec<Heredoc>, String> {
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
    Ok(heredocs)
}

/// The history line BuildKit writes for a COPY/ADD.
fn history_message(c: &CopyStep) -> String {
    let mut msg = String::from(if c.is_add { "ADD" } else { "COPY" });
    if c.parents {
        msg.push_str(" --parents");
    }
    if let Some(v) = &c.chown {
        msg.push_str(&format!(" --chown={v}"));
    }
    if let Some(v) = &c.chmod {
        msg.push_str(&format!(" --chmod={v}"));
    }
    for s in &c.sources {
        msg.push(' ');
        msg.push_str(s);
    }
    for h in &c.heredocs {
        msg.push_str(&format!(" <<{}", h.name));
    }
    msg.push(' ');
    msg.push_str(&c.dest);
    msg.push_str(" # buildkit");
    msg
}
