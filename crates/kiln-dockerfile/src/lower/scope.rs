//! The ARG/ENV/SHELL/WORKDIR state while a stage is lowered, and how it
//! expands words.

use crate::instructions::Command;
use crate::plan::Plan;
use crate::syntax::shell::Lexer;

pub(crate) const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The mutable scope while a stage is lowered.
pub(crate) struct Scope<'p> {
    pub plan: &'p Plan,
    pub stage: usize,
    pub lex: Lexer,
    /// Image config env, in order.
    pub env: Vec<(String, String)>,
    /// Declared build args, in declaration order (a later one replaces).
    pub args: Vec<(String, Option<String>)>,
    pub shell: Vec<String>,
    pub workdir: String,
    /// ARG values declared after an ENV of the same name: BuildKit's
    /// `dispatchArg` adds them to the build state's env, so they win over
    /// that ENV in expansion and RUN until the next ENV of the name (the
    /// image config keeps the ENV value).
    pub args_over_env: Vec<(String, String)>,
}

impl Scope<'_> {
    /// The variables visible to expansion: ARG values, shadowed by ENV,
    /// shadowed by an ARG redeclared after that ENV.
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
            .collect();
        out.extend(self.env.iter().cloned());
        out.extend(self.args_over_env.iter().cloned());
        out
    }

    pub fn expand(&self, word: &str) -> Result<String, String> {
        self.lex.process_word(word, &self.vars())
    }

    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_env(&mut self, k: String, v: String) {
        self.args_over_env.retain(|(a, _)| *a != k);
        if let Some(e) = self.env.iter_mut().find(|(ek, _)| *ek == k) {
            e.1 = v;
        } else {
            self.env.push((k, v));
        }
    }

    /// `runCommandString`'s build-arg prefix entries (first position, last value).
    pub fn history_args(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.args {
            let val = self
                .env_value(k)
                .map(str::to_string)
                .unwrap_or_else(|| v.clone().unwrap_or_default());
            if let Some(e) = out.iter_mut().find(|(ek, _)| ek == k) {
                e.1 = val;
            } else {
                out.push((k.clone(), val));
            }
        }
        out
    }
}

pub(crate) fn parse_env_entry(e: &str) -> (String, String) {
    match e.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (e.to_string(), String::new()),
    }
}

pub(crate) fn cmd_args(shell: &[String], c: &Command) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = shell.to_vec();
            v.push(s.clone());
            v
        }
    }
}

/// `path.Clean` for absolute Unix paths.
pub(crate) fn clean_abs(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}
