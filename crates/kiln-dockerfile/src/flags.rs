//! Instruction flags (`--from=…`), validated like BuildKit's `BFlags`, with
//! a suggestion for misspelled names.

use std::collections::BTreeMap;

use crate::ast::Flag;
use crate::error::Error;
use crate::instruction::LineCtx;
use crate::suggest::did_you_mean;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Strs,
    Bool,
}

pub(crate) struct FlagSet<'a> {
    ctx: &'a LineCtx<'a>,
    instr: String,
    flags: &'a [Flag],
}

/// Parsed flag values by name.
#[derive(Debug, Default)]
pub(crate) struct Values {
    map: BTreeMap<String, Vec<String>>,
    bools: BTreeMap<String, bool>,
}

impl Values {
    pub fn str(&self, name: &str) -> Option<String> {
        self.map.get(name).and_then(|v| v.last().cloned())
    }
    pub fn strs(&self, name: &str) -> Vec<String> {
        self.map.get(name).cloned().unwrap_or_default()
    }
    pub fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }
    pub fn bool_opt(&self, name: &str) -> Option<bool> {
        self.bools.get(name).copied()
    }
}

impl<'a> FlagSet<'a> {
    pub fn new(ctx: &'a LineCtx<'a>, instr: &str, flags: &'a [Flag]) -> FlagSet<'a> {
        FlagSet {
            ctx,
            instr: instr.to_string(),
            flags,
        }
    }

    fn err(&self, f: &Flag, msg: String) -> Error {
        Error::at(self.ctx.file, self.ctx.lines, f.span, msg)
    }

    pub fn all(&self) -> &'a [Flag] {
        self.flags
    }

    /// No flags allowed.
    pub fn finish(&self) -> Result<(), Error> {
        self.parse(&[]).map(|_| ())
    }

    pub fn parse(&self, defs: &[(&str, Kind)]) -> Result<Values, Error> {
        let mut out = Values::default();
        for f in self.flags {
            let Some((_, kind)) = defs.iter().find(|(n, _)| *n == f.name) else {
                let mut msg = if f.name.is_empty() {
                    "empty flag name \"--\"".to_string()
                } else {
                    format!("unknown flag --{} for {}", f.name, self.instr)
                };
                if let Some(s) = did_you_mean(&f.name, defs.iter().map(|(n, _)| *n)) {
                    msg.push_str(&format!(" (did you mean --{s}?)"));
                } else if defs.is_empty() {
                    msg.push_str(&format!(" ({} takes no flags)", self.instr));
                } else {
                    let names: Vec<String> = defs.iter().map(|(n, _)| format!("--{n}")).collect();
                    msg.push_str(&format!(" (valid flags: {})", names.join(", ")));
                }
                return Err(self.err(f, msg));
            };
            let seen = out.map.contains_key(&f.name) || out.bools.contains_key(&f.name);
            if seen && *kind != Kind::Strs {
                return Err(self.err(f, format!("duplicate flag specified: --{}", f.name)));
            }
            match kind {
                Kind::Bool => {
                    let v = match f.value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                        None => true,
                        Some("true") => true,
                        Some("false") => false,
                        Some("") => {
                            return Err(
                                self.err(f, format!("missing a value on flag: --{}", f.name))
                            )
                        }
                        Some(_) => {
                            return Err(self.err(
                                f,
                                format!(
                                    "expecting boolean value for flag --{}, not: {}",
                                    f.name,
                                    f.value.as_deref().unwrap_or_default()
                                ),
                            ))
                        }
                    };
                    out.bools.insert(f.name.clone(), v);
                }
                Kind::Str | Kind::Strs => {
                    let Some(v) = &f.value else {
                        return Err(self.err(
                            f,
                            format!(
                                "missing a value on flag: --{} (write --{}=VALUE)",
                                f.name, f.name
                            ),
                        ));
                    };
                    out.map.entry(f.name.clone()).or_default().push(v.clone());
                }
            }
        }
        Ok(out)
    }
}
