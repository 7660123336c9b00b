//! kiln's lean-image hints: toolchain images shipped as the final stage,
//! package-manager layers that grow the image, ADD where COPY is meant, and
//! exec forms that silently became shell forms.

use super::{push, Finding, Origin};
use crate::instructions::{Command, Dockerfile, Instruction, InstructionKind};

const K: Origin = Origin::Kiln;

/// Repository base names of compiler/toolchain images.
const TOOLCHAINS: &[&str] = &[
    "golang",
    "rust",
    "gcc",
    "maven",
    "gradle",
    "openjdk",
    "eclipse-temurin",
    "mcr.microsoft.com/dotnet/sdk",
];

const ARCHIVES: &[&str] = &[
    ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz", ".tar.zst", ".tzst",
    ".gz", ".bz2", ".xz",
];

fn repo_name(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    let name = last.split(':').next().unwrap_or(last).to_ascii_lowercase();
    if no_digest.starts_with("mcr.microsoft.com/dotnet/sdk") {
        return "mcr.microsoft.com/dotnet/sdk".into();
    }
    name
}

fn run_text(k: &InstructionKind) -> Option<(String, bool)> {
    match k {
        InstructionKind::Run(r) => {
            let text = match &r.command {
                Command::Shell(s) => s.clone(),
                Command::Exec(v) => v.join(" "),
            };
            let cache_mount = r.mounts.iter().any(|m| m.value.contains("type=cache"));
            Some((text, cache_mount))
        }
        _ => None,
    }
}

pub(super) fn check(df: &Dockerfile, out: &mut Vec<Finding>) {
    for ins in &df.instructions {
        malformed_json(ins, out);
        add_local_file(ins, out);
    }
    let Ok(split) = crate::plan::split(df) else {
        return;
    };
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut bases: Vec<String> = Vec::new();
    for (idx, (from, body)) in split.stages.iter().enumerate() {
        let InstructionKind::From(f) = &from.kind else {
            continue;
        };
        // A stage built FROM another stage inherits that stage's base image.
        let base = names
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&f.image))
            .map(|(_, i)| bases[*i].clone())
            .unwrap_or_else(|| f.image.clone());
        if let Some(n) = &f.stage_name {
            names.push((n.clone(), idx));
        }
        bases.push(base.clone());

        let mut pending_update: Option<usize> = None;
        for ins in body.iter() {
            if let Some((text, cache_mount)) = run_text(&ins.kind) {
                package_rules(ins, &text, cache_mount, &mut pending_update, out);
            }
        }
    }
    // ToolchainFinalImage: only the last stage becomes the image by default.
    if let (Some((from, body)), Some(base)) = (split.stages.last(), bases.last()) {
        toolchain_final_image(from, body, base, out);
    }
}

/// MalformedJSONForm: `CMD ["a", 'b']` runs `/bin/sh -c ["a", 'b']`.
fn malformed_json(ins: &Instruction, out: &mut Vec<Finding>) {
    let cmdlike = matches!(
        ins.kind,
        InstructionKind::Cmd(_) | InstructionKind::Entrypoint(_) | InstructionKind::Run(_)
    );
    if cmdlike && !ins.json && ins.args.trim_start().starts_with('[') {
        if let Err(crate::syntax::words::JsonError::Invalid(e)) =
            crate::syntax::words::parse_json(&ins.args)
        {
            push(out, "MalformedJSONForm", K, ins.span, format!(
                "{} arguments start with '[' but are not valid JSON ({e}); they run as a shell command. Use double quotes: [\"executable\", \"arg\"]",
                ins.name()
            ));
        }
    }
}

fn add_local_file(ins: &Instruction, out: &mut Vec<Finding>) {
    if let InstructionKind::Copy(c) = &ins.kind {
        if c.is_add {
            for s in &c.sources {
                let lower = s.to_ascii_lowercase();
                let remote = lower.starts_with("http://")
                    || lower.starts_with("https://")
                    || lower.starts_with("git@")
                    || lower.ends_with(".git");
                let archive = ARCHIVES.iter().any(|a| lower.ends_with(a));
                let has_var = s.contains('$');
                if !remote && !archive && !has_var {
                    push(out, "AddLocalFile", K, ins.span, format!(
                        "ADD of local file '{s}' which is not an archive: use COPY (ADD also downloads URLs and extracts archives, COPY just copies)"
                    ));
                }
            }
        }
    }
}

/// AptUpdateSeparateLayer and PackageCacheLeftBehind for one RUN.
fn package_rules(
    ins: &Instruction,
    text: &str,
    cache_mount: bool,
    pending_update: &mut Option<usize>,
    out: &mut Vec<Finding>,
) {
    let t = text.to_ascii_lowercase();
    let has_update = t.contains("apt-get update") || t.contains("apt update");
    let has_install = t.contains("apt-get install")
        || t.contains("apt install")
        || t.contains("apt-get upgrade")
        || t.contains("apt-get dist-upgrade");
    if has_update && !has_install {
        *pending_update = Some(ins.span.line);
    }
    if has_install && !has_update {
        if let Some(line) = *pending_update {
            push(out, "AptUpdateSeparateLayer", K, ins.span, format!(
                "apt-get install runs in a different RUN than the apt-get update on line {line}: the cached update layer goes stale and its package lists stay in the image; use RUN apt-get update && apt-get install -y … && rm -rf /var/lib/apt/lists/*"
            ));
        }
    }
    if has_install && !cache_mount && !t.contains("/var/lib/apt/lists") {
        push(out, "PackageCacheLeftBehind", K, ins.span,
            "apt-get install leaves /var/lib/apt/lists in this layer: end the same RUN with && rm -rf /var/lib/apt/lists/* (or use a cache mount)".into());
    }
    if (t.contains("pip install") || t.contains("pip3 install"))
        && !cache_mount
        && !t.contains("--no-cache-dir")
        && !t.contains("pip_no_cache_dir")
    {
        push(out, "PackageCacheLeftBehind", K, ins.span,
            "pip install keeps its download cache (~/.cache/pip) in this layer: add --no-cache-dir (or use RUN --mount=type=cache,target=/root/.cache/pip)".into());
    }
    if t.contains("apk add")
        && !cache_mount
        && !t.contains("--no-cache")
        && !t.contains("/var/cache/apk")
    {
        push(
            out,
            "PackageCacheLeftBehind",
            K,
            ins.span,
            "apk add keeps /var/cache/apk in this layer: use apk add --no-cache".into(),
        );
    }
}

fn toolchain_final_image(
    from: &Instruction,
    body: &[Instruction],
    base: &str,
    out: &mut Vec<Finding>,
) {
    let repo = repo_name(base);
    let runs: String = body
        .iter()
        .filter_map(|i| run_text(&i.kind).map(|(t, _)| t.to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join("\n");
    let build_tools = [
        "build-essential",
        "gcc",
        "g++",
        "make",
        "python3-dev",
        "musl-dev",
        "build-base",
    ]
    .iter()
    .any(|t| {
        runs.split(|c: char| c.is_whitespace() || c == '\\')
            .any(|w| w == *t)
    });
    let toolchain = if TOOLCHAINS.contains(&repo.as_str()) {
        Some("a compiler toolchain image")
    } else if repo == "node"
        && (build_tools || runs.contains("npm run build") || runs.contains("yarn build"))
    {
        Some("node with build tools and a build step")
    } else if (repo == "python" || repo == "pypy") && build_tools {
        Some("python with compilers installed")
    } else {
        None
    };
    if let Some(what) = toolchain {
        push(out, "ToolchainFinalImage", K, from.span, format!(
            "the final stage is based on {base} ({what}): build in a first stage (FROM {base} AS build) and copy only the result into a small runtime image (FROM gcr.io/distroless/static, alpine or scratch) to shrink the image"
        ));
    }
}
