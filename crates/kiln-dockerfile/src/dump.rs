//! Machine- and human-readable dumps of what the parser understood (used by
//! `kiln debug parse` and the golden tests).

use serde_json::{json, Value};

use crate::instructions::{Dockerfile, Instruction};

/// One JSON object per instruction: lower-case name, flags, arguments as
/// written, form (`json`/`shell`), heredocs with content, start/end line.
pub fn instruction_json(ins: &Instruction) -> Value {
    let flags: Vec<Value> = ins
        .flags
        .iter()
        .map(|f| json!({ "name": f.name, "value": f.value }))
        .collect();
    let heredocs: Vec<Value> = ins
        .heredocs
        .iter()
        .map(|h| json!({ "name": h.name, "content": h.content, "expand": h.expand, "chomp": h.chomp }))
        .collect();
    json!({
        "instruction": ins.name().to_ascii_lowercase(),
        "flags": flags,
        "args": ins.args,
        "form": if ins.json { "json" } else { "shell" },
        "heredocs": heredocs,
        "start_line": ins.span.line,
        "end_line": ins.span.end_line,
    })
}

/// JSON lines, one per instruction.
pub fn to_json_lines(df: &Dockerfile) -> String {
    let mut out = String::new();
    for ins in &df.instructions {
        out.push_str(&instruction_json(ins).to_string());
        out.push('\n');
    }
    out
}

/// One line per instruction: `3-4 RUN [--mount=type=cache,target=/x] shell: make`,
/// heredoc bodies indented below.
pub fn to_plain(df: &Dockerfile) -> String {
    let mut out = String::new();
    for d in &df.directives {
        out.push_str(&format!("# {}={}\n", d.name, d.value));
    }
    for ins in &df.instructions {
        let lines = if ins.span.end_line > ins.span.line {
            format!("{}-{}", ins.span.line, ins.span.end_line)
        } else {
            ins.span.line.to_string()
        };
        let mut s = format!("{lines} {}", ins.name());
        for f in &ins.flags {
            match &f.value {
                Some(v) => s.push_str(&format!(" --{}={}", f.name, v)),
                None => s.push_str(&format!(" --{}", f.name)),
            }
        }
        s.push_str(if ins.json { " json: " } else { " shell: " });
        s.push_str(&ins.args);
        out.push_str(&s);
        out.push('\n');
        for h in &ins.heredocs {
            out.push_str(&format!(
                "  <<{} expand={} chomp={}\n",
                h.name, h.expand, h.chomp
            ));
            for l in h.content.lines() {
                out.push_str(&format!("  | {l}\n"));
            }
        }
    }
    out
}
