//! `kiln build`: what `docker build` does, without a daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use kiln_engine::options::{self, NetworkMode, Output, Secret};
use kiln_engine::{BuildRequest, Builder, DockerfileSource, LayerCompression, Runtime};

use super::Global;
use crate::progress::{Mode, Renderer};

/// `kiln build`'s flags on their own (for `kiln executor`, which translates
/// kaniko's flags into them).
#[derive(clap::Parser)]
pub struct Cli {
    #[command(flatten)]
    pub args: Args,
}

/// Like docker's flags, a repeated single-value flag takes the last value.
#[derive(clap::Args)]
#[command(args_override_self = true)]
pub struct Args {
    /// Build context: a directory, or `-` to read a tar (or a lone Dockerfile) from stdin.
    #[arg(default_value = ".")]
    context: String,
    /// Dockerfile to build (default: CONTEXT/Dockerfile); `-` reads it from stdin.
    #[arg(short = 'f', long = "file")]
    file: Option<String>,
    /// Name the image (repeatable).
    #[arg(short = 't', long = "tag")]
    tags: Vec<String>,
    /// Stage to build; the last stage by default.
    #[arg(long)]
    target: Option<String>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// Do not use the build cache.
    #[arg(long)]
    no_cache: bool,
    /// Say for every step that runs why it missed the cache, with every
    /// input that differs from its closest earlier build.
    #[arg(long)]
    explain_cache: bool,
    /// Always pull base images, even when the store has them.
    #[arg(long)]
    pull: bool,
    /// Target platform (only the host's platform can run RUN steps).
    #[arg(long)]
    platform: Option<String>,
    /// Add a label to the image (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Network for RUN steps: default (the host's), none or host.
    #[arg(long, default_value = "default")]
    network: String,
    /// Secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR.
    #[arg(long = "secret")]
    secrets: Vec<String>,
    /// Write the image id to this file.
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// Write the image's manifest digest to this file.
    #[arg(long)]
    digest_file: Option<PathBuf>,
    /// How to show progress.
    #[arg(long, value_enum, default_value = "auto")]
    progress: Mode,
    /// Shorthand for --progress=quiet.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Output: type=image|docker|oci|local|tar[,dest=PATH].
    #[arg(short = 'o', long = "output")]
    outputs: Vec<String>,
    /// Push the tags to their registries after the build.
    #[arg(long)]
    push: bool,
    /// Container runtime for RUN steps.
    #[arg(long, value_enum, default_value = "youki")]
    runtime: Runtime,
    #[command(flatten)]
    isolation: IsolationArgs,
    /// Export the build cache: type=registry,ref=REG/REPO:TAG[,mode=min|max][,cache-mounts=true],
    /// type=local,dest=DIR[,mode=…], or type=inline (repeatable).
    #[arg(long = "cache-to")]
    cache_to: Vec<String>,
    /// Import a build cache: type=registry,ref=REF (a cache or an image with an
    /// inline cache), type=local,src=DIR, or a bare REF (repeatable).
    #[arg(long = "cache-from")]
    cache_from: Vec<String>,
    /// Layer compression.
    #[arg(long, value_enum, default_value = "gzip")]
    compression: LayerCompression,
    /// Fail the build (exit 1) when a lean-final guard warns.
    #[arg(long, conflicts_with = "no_guards")]
    strict: bool,
    /// Skip the lean-final guards (the image's layers are then not read
    /// unless a budget gate needs them).
    #[arg(long)]
    no_guards: bool,
    /// Merge the layers the target stage adds over its base into one layer
    #[arg(long)]
    squash: bool,
    /// Limit of the build cache: a build that leaves it larger evicts the
    /// least recently used records down to 80% of it (e.g. 5GB, 500MiB;
    /// default 10GB)
    #[arg(long = "cache-max-size", value_name = "SIZE", value_parser = parse_size)]
    cache_max_size: Option<u64>,
    #[command(flatten)]
    gates: super::analyze::GateArgs,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let request = request(global, &args)?;
    stop_on_signals()?;
    let renderer = Renderer::new(
        if args.quiet {
            Mode::Quiet
        } else {
            args.progress
        },
        args.explain_cache,
    );
    let builder = Builder::open(&global.root)?;
    let result = builder.build(&request, &renderer);
    renderer.finish();
    if result.is_err() && !renderer.streams_logs() {
        print_failed_steps(&renderer);
    }
    let built = result?;
    write_id_files(&args, &built)?;
    if renderer.is_quiet() {
        println!("{}", built.image_id);
    } else {
        for tag in &request.tags {
            eprintln!("naming to {tag}");
        }
        eprintln!("image {}", built.image_id);
    }
    let guards = match (args.no_guards, args.strict) {
        (true, _) => Guards::Off,
        (false, false) => Guards::Warn,
        (false, true) => Guards::Strict,
    };
    after_build(&builder, &built, guards, &args.gates)
}

/// The engine's request from the command line, every flag checked.
fn request(global: &Global, args: &Args) -> anyhow::Result<BuildRequest> {
    let mut build_args = Vec::new();
    for spec in &args.build_args {
        build_args.extend(options::parse_build_arg(spec)?);
    }
    let labels = args
        .labels
        .iter()
        .map(|l| options::parse_label(l))
        .collect::<Result<Vec<_>, _>>()?;
    let secrets = args
        .secrets
        .iter()
        .map(|s| Secret::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut outputs = args
        .outputs
        .iter()
        .map(|o| Output::parse(o))
        .collect::<Result<Vec<_>, _>>()?;
    if outputs.is_empty() {
        outputs.push(Output::Image);
    }
    let tags = args
        .tags
        .iter()
        .map(|t| t.parse().with_context(|| format!("invalid tag {t:?}")))
        .collect::<anyhow::Result<Vec<kiln_oci::Reference>>>()?;
    if args.push && tags.is_empty() {
        anyhow::bail!("--push needs at least one -t NAME to push");
    }

    if args.context == "-" && args.file.as_deref() == Some("-") {
        anyhow::bail!("the context and the Dockerfile cannot both come from stdin (-)");
    }
    let dockerfile = match args.file.as_deref() {
        Some("-") => DockerfileSource::Stdin,
        Some(f) => DockerfileSource::Path(PathBuf::from(f)),
        None => DockerfileSource::InContext,
    };
    let extra_keep: Vec<PathBuf> = outputs
        .iter()
        .filter_map(Output::dest)
        .chain(args.iidfile.clone())
        .chain(args.digest_file.clone())
        .chain(args.isolation.keep.clone())
        .chain(std::env::var_os("KILN_KEEP").map_or_else(Vec::new, |v| keep_list(&v)))
        .collect();
    Ok(BuildRequest {
        context: args.context.clone(),
        dockerfile,
        tags,
        target: args.target.clone(),
        build_args,
        no_cache: args.no_cache,
        explain_cache: args.explain_cache,
        pull: args.pull,
        platform: args.platform.clone(),
        labels,
        network: NetworkMode::parse(&args.network)?,
        secrets,
        outputs,
        push: args.push,
        runtime: args.runtime,
        isolation: args
            .isolation
            .isolation(&args.context, args.file.as_deref(), extra_keep),
        compression: args.compression,
        insecure_registries: global.insecure_registries.clone(),
        squash: args.squash,
        cache_from: args
            .cache_from
            .iter()
            .map(|c| options::CacheFrom::parse(c))
            .collect::<Result<_, _>>()?,
        cache_to: args
            .cache_to
            .iter()
            .map(|c| options::CacheTo::parse(c))
            .collect::<Result<_, _>>()?,
        cache_max_size: args.cache_max_size,
    })
}

/// The output of the steps that failed, when it was not shown as it came.
fn print_failed_steps(renderer: &Renderer) {
    for (name, output) in renderer.failed_steps() {
        if output.is_empty() {
            continue;
        }
        eprintln!("------\n > {name}:");
        for line in String::from_utf8_lossy(&output).lines() {
            eprintln!("{line}");
        }
        eprintln!("------");
    }
}

/// --iidfile and --digest-file.
fn write_id_files(args: &Args, built: &kiln_engine::Built) -> anyhow::Result<()> {
    if let Some(path) = &args.iidfile {
        std::fs::write(path, built.image_id.to_string())
            .with_context(|| format!("writing --iidfile {}", path.display()))?;
    }
    if let Some(path) = &args.digest_file {
        std::fs::write(path, built.manifest_digest.to_string())
            .with_context(|| format!("writing --digest-file {}", path.display()))?;
    }
    Ok(())
}

/// What the lean-final guards do after a build.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Guards {
    Off,
    Warn,
    /// Warnings fail the build.
    Strict,
}

/// Where RUN steps run: containers, or (`chroot`) plain processes in a
/// root filesystem laid out in place.
#[derive(clap::Args)]
pub struct IsolationArgs {
    /// How RUN steps are isolated: container (youki/runc; needs root), or
    /// chroot (kaniko's model, for an unprivileged container: the image is
    /// unpacked into --chroot-dir, / by default, and steps run there as
    /// plain processes).
    #[arg(long, value_enum, env = "KILN_ISOLATION", default_value = "container")]
    pub isolation: IsolationMode,
    /// With --isolation=chroot: the root filesystem to lay out the build in.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub chroot_dir: PathBuf,
    /// With --isolation=chroot: replace the files of / even where kiln does
    /// not seem to run in a container.
    #[arg(long)]
    pub force: bool,
    /// With --isolation=chroot: a path the build must leave alone besides
    /// kiln's own, the context and the outputs (repeatable). The paths of
    /// KILN_KEEP (a `:`-separated list) are kept as well.
    #[arg(long, value_name = "PATH")]
    pub keep: Vec<PathBuf>,
}

/// The paths of a `:`-separated KILN_KEEP; empty entries name nothing.
/// Read apart from `--keep` because clap drops an option's environment
/// variable once the flag is given: `--keep /x` (or the executor's
/// `--ignore-path`) in the kiln image would otherwise let the build delete
/// the image's own /kiln and /busybox.
pub fn keep_list(value: &std::ffi::OsStr) -> Vec<PathBuf> {
    std::env::split_paths(value)
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IsolationMode {
    Container,
    Chroot,
}

impl IsolationArgs {
    /// The engine's isolation; `keep` are output paths the build must not
    /// delete (the context and the Dockerfile are kept as well).
    pub fn isolation(
        &self,
        context: &str,
        dockerfile: Option<&str>,
        mut keep: Vec<PathBuf>,
    ) -> kiln_engine::Isolation {
        if self.isolation == IsolationMode::Container {
            return kiln_engine::Isolation::Container;
        }
        keep.extend(
            [Some(context), dockerfile]
                .into_iter()
                .flatten()
                .filter(|p| *p != "-")
                .map(PathBuf::from),
        );
        kiln_engine::Isolation::Chroot(kiln_engine::Chroot {
            root: self.chroot_dir.clone(),
            keep,
            force: self.force,
        })
    }
}

/// Stage sizes, the lean-final guards and the budgets on the built image.
fn after_build(
    builder: &Builder,
    built: &kiln_engine::Built,
    guards: Guards,
    gates: &super::analyze::GateArgs,
) -> anyhow::Result<ExitCode> {
    give_back_freed_memory();
    if built.stages.len() > 1 {
        eprintln!("stages: {}", super::analyze::stage_line(&built.stages));
    }
    let store = builder.store();
    let image = store
        .resolve(&built.manifest_digest.to_string())
        .context("reading the built image")?;
    let analyze = || {
        kiln_analyze::analyze(store, &image, &built.image_id.to_string())
            .context("analyzing the built image")
    };
    if guards != Guards::Off {
        let started = std::time::Instant::now();
        let findings = guard_findings(&builder.guards_dir(), store, &image, built)?;
        tracing::debug!(took = ?started.elapsed(), "guards");
        for f in &findings {
            let level = match (f.severity, guards) {
                (kiln_analyze::Severity::Info, _) => "info",
                (_, Guards::Strict) => "error",
                _ => "warning",
            };
            eprintln!("{level}[{}]: {}\n  hint: {}", f.rule, f.message, f.hint);
        }
        let warned = findings
            .iter()
            .any(|f| f.severity == kiln_analyze::Severity::Warning);
        if guards == Guards::Strict && warned {
            eprintln!("error: --strict: the image has problems (see above)");
            return Ok(ExitCode::FAILURE);
        }
    }
    let budget = gates.budget();
    if budget.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    Ok(super::analyze::enforce(&analyze()?, &budget))
}

/// The build's worker threads freed their memory into their own malloc
/// arenas, which glibc keeps; give it back before the guards' pass, so the
/// peak is the larger of the two phases, not their sum.
fn give_back_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The guards' findings on the built image, pointing at the stages that
/// have what it misses; remembered under ROOT/cache/guards, so a rebuild
/// that made the same image does not read its layers again, and each
/// layer's entries under ROOT/cache/guards/layers, so one that shares
/// layers with an image checked before reads only its new ones.
fn guard_findings(
    dir: &std::path::Path,
    store: &kiln_store::Store,
    image: &kiln_store::Image,
    built: &kiln_engine::Built,
) -> anyhow::Result<Vec<kiln_analyze::Finding>> {
    let layers = dir.join("layers");
    kiln_analyze::remembered(dir, image, &built.other_stages, || {
        let name = built.image_id.to_string();
        let mut findings = kiln_analyze::guard(store, image, &name, Some(&layers))
            .context("checking the built image")?;
        kiln_analyze::locate_missing(store, &built.other_stages, &mut findings)
            .context("looking for the missing libraries in the other stages")?;
        Ok(findings)
    })
}

/// Ctrl-C (or SIGTERM) stops the build cleanly: containers are killed, mounts
/// undone, the store left as it was. A second one exits at once.
fn stop_on_signals() -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the Ctrl-C handler")?;
    std::thread::spawn(move || {
        let mut seen = 0;
        for _ in signals.forever() {
            seen += 1;
            if seen > 1 {
                std::process::exit(130);
            }
            eprintln!("interrupted: stopping the build (Ctrl-C again to exit at once)");
            kiln_engine::interrupt();
        }
    });
    Ok(())
}

/// `--cache-max-size` values: `10GB`, `500MiB`, `1048576`.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    kiln_analyze::parse_size(text)
}

#[cfg(test)]
mod tests {
    use super::keep_list;
    use std::ffi::OsStr;
    use std::path::PathBuf;

    #[test]
    fn kiln_keep_is_a_colon_separated_list() {
        let want = [PathBuf::from("/kiln"), PathBuf::from("/busybox")];
        assert_eq!(keep_list(OsStr::new("/kiln:/busybox")), want);
        assert_eq!(keep_list(OsStr::new(":/kiln::/busybox:")), want);
        assert_eq!(keep_list(OsStr::new("/kiln")), [PathBuf::from("/kiln")]);
        assert!(keep_list(OsStr::new("")).is_empty());
    }
}
