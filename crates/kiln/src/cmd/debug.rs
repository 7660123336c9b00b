//! `kiln debug parse|expand|plan`: show what the frontend understood.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use kiln_dockerfile::{Base, PlanOptions};

use super::Global;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Plain,
    Json,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print each instruction as parsed
    Parse {
        /// Dockerfile to read (`-` for standard input)
        #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
        file: String,
        #[arg(long, value_enum, default_value = "plain")]
        format: Format,
    },
    /// Print the expansion of one word
    Expand {
        /// A variable in scope (repeatable)
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Escape character (`\` or a backtick)
        #[arg(long, default_value = "\\")]
        escape: char,
        /// The word to expand
        #[arg(allow_hyphen_values = true)]
        word: String,
    },
    /// Print the stages to build, in order
    Plan {
        #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
        file: String,
        /// Stage to build (default: the last one)
        #[arg(long)]
        target: Option<String>,
        /// Build argument (repeatable)
        #[arg(long = "build-arg", value_name = "KEY=VALUE")]
        build_args: Vec<String>,
        /// Target platform (default: this machine's)
        #[arg(long)]
        platform: Option<String>,
    },
}

/// Reads a Dockerfile; `-` means standard input. Returns the name for messages.
pub fn read_dockerfile(file: &str) -> anyhow::Result<(String, String)> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the Dockerfile from standard input")?;
        return Ok(("-".into(), s));
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading Dockerfile {file}"))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{file}: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    Ok((file.to_string(), text))
}

/// Splits `KEY=VALUE` (a bare `KEY` takes its value from the environment, as docker does).
pub fn key_value(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some(("", _)) => anyhow::bail!("{what} {s:?}: the name before '=' is empty"),
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None => match std::env::var(s) {
            Ok(v) => Ok((s.to_string(), v)),
            Err(_) => anyhow::bail!(
                "{what} {s:?}: expected KEY=VALUE (and {s} is not set in the environment)"
            ),
        },
    }
}

pub fn run(_global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Parse { file, format } => {
            let (name, text) = read_dockerfile(&file)?;
            let df = match kiln_dockerfile::parse(&name, &text) {
                Ok(df) => df,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            match format {
                Format::Json => print!("{}", kiln_dockerfile::dump::to_json_lines(&df)),
                Format::Plain => print!("{}", kiln_dockerfile::dump::to_plain(&df)),
            }
            for w in &df.warnings {
                eprintln!("warning: {}", w.message);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Expand { env, escape, word } => {
            if escape != '\\' && escape != '`' {
                anyhow::bail!("--escape must be \\ or ` (got {escape:?})");
            }
            let mut vars = Vec::new();
            for e in &env {
                vars.push(key_value(e, "--env")?);
            }
            match kiln_dockerfile::expand_word(&word, &vars, escape) {
                Ok(s) => {
                    println!("{s}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Plan {
            file,
            target,
            build_args,
            platform,
        } => {
            let (name, text) = read_dockerfile(&file)?;
            let mut args = Vec::new();
            for a in &build_args {
                args.push(key_value(a, "--build-arg")?);
            }
            let host = kiln_oci::Platform::host().to_string();
            let opts = PlanOptions {
                target,
                build_args: args,
                target_platform: platform.unwrap_or_else(|| host.clone()),
                build_platform: host,
            };
            let plan = match kiln_dockerfile::parse(&name, &text)
                .and_then(|df| kiln_dockerfile::plan(&df, &opts))
            {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            print!("{}", render_plan(&plan));
            for w in &plan.warnings {
                eprintln!("warning: {}", w.message);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn stage_name(plan: &kiln_dockerfile::Plan, i: usize) -> String {
    match plan.all_stages.get(i).and_then(|(_, n)| n.as_deref()) {
        Some(n) => format!("{i} ({n})"),
        None => i.to_string(),
    }
}

/// The plan as text: stages in build order, then parallel waves.
pub fn render_plan(plan: &kiln_dockerfile::Plan) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "target: stage {}\n",
        stage_name(plan, plan.target)
    ));
    out.push_str("stages (build order):\n");
    for st in &plan.stages {
        let base = match &st.base {
            Base::Scratch => "scratch".to_string(),
            Base::Stage(i) => format!("stage {}", stage_name(plan, *i)),
            Base::Image(r) => format!("image {r}"),
        };
        out.push_str(&format!(
            "  stage {}: from {base}",
            stage_name(plan, st.index)
        ));
        if let Some(p) = &st.platform {
            out.push_str(&format!(" platform={p}"));
        }
        out.push('\n');
        if !st.deps.is_empty() {
            let d: Vec<String> = st.deps.iter().map(|d| stage_name(plan, *d)).collect();
            out.push_str(&format!("    needs stages: {}\n", d.join(", ")));
        }
        if !st.image_deps.is_empty() {
            out.push_str(&format!("    needs images: {}\n", st.image_deps.join(", ")));
        }
    }
    out.push_str("parallel waves:\n");
    for (n, w) in plan.waves().iter().enumerate() {
        let d: Vec<String> = w.iter().map(|d| stage_name(plan, *d)).collect();
        out.push_str(&format!("  {}: {}\n", n + 1, d.join(", ")));
    }
    out
}
