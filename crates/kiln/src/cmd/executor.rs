//! `kiln executor`: kaniko's command line, so a kaniko pipeline changes
//! only its image. Each flag is translated into `kiln build`'s; the build
//! itself is `kiln build --isolation=chroot` (kaniko's model).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;

use super::Global;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Build context: a directory, or dir://DIR.
    #[arg(short = 'c', long, default_value = "/workspace/")]
    context: String,
    /// The Dockerfile: a path, or one relative to the context.
    #[arg(short = 'f', long, default_value = "Dockerfile")]
    dockerfile: String,
    /// Image to push (repeatable).
    #[arg(short = 'd', long = "destination")]
    destinations: Vec<String>,
    /// Build-time variable KEY=VALUE (repeatable).
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Stage to build.
    #[arg(long)]
    target: Option<String>,
    /// Use a registry cache (in --cache-repo, else DESTINATION-REPO/cache).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    cache: Option<bool>,
    /// Repository of the registry cache.
    #[arg(long)]
    cache_repo: Option<String>,
    /// Build (and write --tar-path) without pushing.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    no_push: Option<bool>,
    /// Write the image as a `docker load`-able tar.
    #[arg(long)]
    tar_path: Option<PathBuf>,
    /// Write the image's manifest digest to this file.
    #[arg(long)]
    digest_file: Option<PathBuf>,
    /// Label KEY=VALUE (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Push to the destinations' registries over plain HTTP.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    insecure: Option<bool>,
    /// Not supported: kiln always verifies TLS (see the error it gives).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    skip_tls_verify: Option<bool>,
    /// Timestamps of files and the image set to 0 (SOURCE_DATE_EPOCH=0
    /// unless it is set).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    reproducible: Option<bool>,
    /// A path the build must leave alone, besides kiln's own (repeatable).
    #[arg(long = "ignore-path")]
    ignore_paths: Vec<PathBuf>,
    /// Accepted for kaniko's command lines; they change nothing here.
    #[arg(long, hide = true)]
    snapshot_mode: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    use_new_run: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    cleanup: Option<String>,
    #[arg(short = 'v', long, hide = true)]
    verbosity: Option<String>,
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "true")]
    force: Option<String>,
}

pub fn run(global: &Global, args: Args) -> anyhow::Result<ExitCode> {
    let (argv, insecure) = build_argv(&args)?;
    if args.reproducible == Some(true) && std::env::var_os("SOURCE_DATE_EPOCH").is_none() {
        // SAFETY: no other thread runs yet.
        std::env::set_var("SOURCE_DATE_EPOCH", "0");
    }
    eprintln!("kiln executor: kiln {}", shell_words(&argv[1..]));
    let build = super::build::Cli::try_parse_from(&argv).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut global = Global {
        root: global.root.clone(),
        insecure_registries: global.insecure_registries.clone(),
    };
    global.insecure_registries.extend(insecure);
    super::build::run(&global, build.args)
}

/// The `kiln build` command line for kaniko's flags, and the registries to
/// reach over plain HTTP.
pub fn build_argv(a: &Args) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    if a.skip_tls_verify == Some(true) {
        bail!("--skip-tls-verify is not supported: kiln always verifies TLS. Add the registry's CA certificate to the bundle in SSL_CERT_FILE, or use --insecure for a registry that speaks plain HTTP");
    }
    let context = match a.context.strip_prefix("dir://") {
        Some(dir) => dir.to_string(),
        None if a.context.contains("://") => bail!(
            "--context {}: only a directory (DIR or dir://DIR) is supported; fetch the sources first (git clone, …)",
            a.context
        ),
        None => a.context.clone(),
    };
    let dockerfile = if Path::new(&a.dockerfile).exists() {
        PathBuf::from(&a.dockerfile)
    } else {
        Path::new(&context).join(&a.dockerfile)
    };
    let no_push = a.no_push == Some(true);
    if a.destinations.is_empty() && !no_push {
        bail!("give --destination REF (repeatable), or --no-push");
    }
    let mut argv: Vec<String> = ["build", "--isolation", "chroot", "--progress", "plain"]
        .map(String::from)
        .to_vec();
    argv.extend(["-f".into(), dockerfile.display().to_string()]);
    let mut refs = Vec::new();
    for d in &a.destinations {
        let r: kiln_oci::Reference = d.parse().with_context(|| format!("--destination {d:?}"))?;
        argv.extend(["-t".into(), d.clone()]);
        refs.push(r);
    }
    let pairs = [
        ("--build-arg", &a.build_args),
        ("--label", &a.labels),
        ("--keep", &paths(&a.ignore_paths)),
    ];
    for (flag, values) in pairs {
        for v in values {
            argv.extend([flag.to_string(), v.clone()]);
        }
    }
    if let Some(t) = &a.target {
        argv.extend(["--target".into(), t.clone()]);
    }
    if a.cache == Some(true) {
        let repo = match (&a.cache_repo, refs.first()) {
            (Some(r), _) => r.clone(),
            (None, Some(d)) => format!("{}/{}/cache", d.registry(), d.repository()),
            (None, None) => bail!("--cache=true needs --cache-repo REPO (or a --destination)"),
        };
        let cache = cache_ref(&repo)?;
        argv.extend(["--cache-from".into(), format!("type=registry,ref={cache}")]);
        if !no_push {
            argv.extend([
                "--cache-to".into(),
                format!("type=registry,ref={cache},mode=max"),
            ]);
        }
    }
    argv.extend(["-o".into(), "type=image".into()]);
    if let Some(tar) = &a.tar_path {
        argv.extend(["-o".into(), format!("type=docker,dest={}", tar.display())]);
    }
    if let Some(f) = &a.digest_file {
        argv.extend(["--digest-file".into(), f.display().to_string()]);
    }
    if !no_push {
        argv.push("--push".into());
    }
    argv.push(context);
    let insecure = if a.insecure == Some(true) {
        refs.iter().map(|r| r.registry().to_string()).collect()
    } else {
        Vec::new()
    };
    Ok((argv, insecure))
}

/// kaniko's cache repo holds one tag per layer; kiln's registry cache is
/// one manifest, tagged `buildcache` unless the repo names a tag.
fn cache_ref(repo: &str) -> anyhow::Result<String> {
    let r: kiln_oci::Reference = repo
        .parse()
        .with_context(|| format!("--cache-repo {repo:?}"))?;
    Ok(
        if repo.rsplit('/').next().is_some_and(|l| l.contains(':')) {
            r.to_string()
        } else {
            format!("{}/{}:buildcache", r.registry(), r.repository())
        },
    )
}

fn paths(p: &[PathBuf]) -> Vec<String> {
    p.iter().map(|p| p.display().to_string()).collect()
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'') {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Kaniko {
        #[command(flatten)]
        args: Args,
    }

    /// The `kiln build` argv (after `build --isolation chroot --progress
    /// plain`) for kaniko's `flags`, and the insecure registries.
    fn map(flags: &[&str]) -> (Vec<String>, Vec<String>) {
        let mut argv = vec!["executor", "--context", "/ws"];
        argv.extend(flags);
        let k = Kaniko::try_parse_from(argv).expect("kaniko flags parse");
        let (build, insecure) = build_argv(&k.args).expect("maps");
        assert_eq!(
            build[..5],
            ["build", "--isolation", "chroot", "--progress", "plain"]
        );
        (build[5..].to_vec(), insecure)
    }

    fn has(argv: &[String], pair: &[&str]) -> bool {
        argv.windows(pair.len()).any(|w| w == pair)
    }

    fn fails(flags: &[&str]) -> String {
        let mut argv = vec!["executor", "--context", "/ws"];
        argv.extend(flags);
        let k = Kaniko::try_parse_from(argv).expect("kaniko flags parse");
        build_argv(&k.args).expect_err("refused").to_string()
    }

    #[test]
    fn context_and_dockerfile() {
        let (a, _) = map(&["--destination", "r/x"]);
        assert!(has(&a, &["-f", "/ws/Dockerfile"]), "{a:?}");
        assert_eq!(a.last().unwrap(), "/ws");
        let (a, _) = map(&["--dockerfile", "sub/D", "--no-push"]);
        assert!(has(&a, &["-f", "/ws/sub/D"]), "{a:?}");
        let k =
            Kaniko::try_parse_from(["executor", "--context", "dir:///src", "--no-push"]).unwrap();
        assert_eq!(build_argv(&k.args).unwrap().0.last().unwrap(), "/src");
        let k = Kaniko::try_parse_from(["executor", "-c", "git://x/y", "--no-push"]).unwrap();
        assert!(build_argv(&k.args)
            .unwrap_err()
            .to_string()
            .contains("only a directory"));
    }

    #[test]
    fn destinations_are_tags_pushed_unless_no_push() {
        let (a, _) = map(&["--destination", "reg:5000/a:1", "-d", "reg:5000/a:2"]);
        assert!(has(&a, &["-t", "reg:5000/a:1"]) && has(&a, &["-t", "reg:5000/a:2"]));
        assert!(a.contains(&"--push".to_string()));
        let (a, _) = map(&["-d", "reg:5000/a:1", "--no-push"]);
        assert!(!a.contains(&"--push".to_string()));
        let (a, _) = map(&["-d", "reg:5000/a:1", "--no-push=false"]);
        assert!(a.contains(&"--push".to_string()));
        assert!(fails(&[]).contains("--destination"));
        assert!(fails(&["-d", "UPPER CASE"]).contains("--destination"));
    }

    #[test]
    fn build_args_labels_target() {
        let (a, _) = map(&[
            "--no-push",
            "--build-arg",
            "A=1",
            "--build-arg",
            "B=2",
            "--label",
            "k=v",
            "--target",
            "t",
        ]);
        assert!(has(&a, &["--build-arg", "A=1"]) && has(&a, &["--build-arg", "B=2"]));
        assert!(has(&a, &["--label", "k=v"]));
        assert!(has(&a, &["--target", "t"]));
    }

    #[test]
    fn cache_maps_onto_the_registry_cache() {
        let (a, _) = map(&[
            "-d",
            "reg:5000/app:1",
            "--cache=true",
            "--cache-repo",
            "reg:5000/cache",
        ]);
        assert!(
            has(
                &a,
                &[
                    "--cache-from",
                    "type=registry,ref=reg:5000/cache:buildcache"
                ]
            ),
            "{a:?}"
        );
        assert!(has(
            &a,
            &[
                "--cache-to",
                "type=registry,ref=reg:5000/cache:buildcache,mode=max"
            ]
        ));
        let (a, _) = map(&["-d", "reg:5000/app:1", "--cache"]);
        assert!(
            has(
                &a,
                &[
                    "--cache-from",
                    "type=registry,ref=reg:5000/app/cache:buildcache"
                ]
            ),
            "{a:?}"
        );
        // Without pushing, the cache is read but not written.
        let (a, _) = map(&["-d", "reg/app", "--cache=true", "--no-push"]);
        assert!(a.iter().any(|x| x == "--cache-from") && !a.iter().any(|x| x == "--cache-to"));
        let (a, _) = map(&["-d", "reg/app", "--cache=false", "--cache-repo", "reg/c"]);
        assert!(!a.iter().any(|x| x.starts_with("--cache")));
    }

    #[test]
    fn outputs_tar_and_digest_file() {
        let (a, _) = map(&[
            "--no-push",
            "--tar-path",
            "/o/i.tar",
            "--digest-file",
            "/o/d",
        ]);
        assert!(has(&a, &["-o", "type=image"]));
        assert!(has(&a, &["-o", "type=docker,dest=/o/i.tar"]));
        assert!(has(&a, &["--digest-file", "/o/d"]));
    }

    #[test]
    fn insecure_skip_tls_and_reproducible() {
        let (_, insecure) = map(&["-d", "reg.example:5000/a", "--insecure"]);
        assert_eq!(insecure, ["reg.example:5000"]);
        let (_, insecure) = map(&["-d", "reg.example:5000/a"]);
        assert!(insecure.is_empty());
        assert!(fails(&["-d", "r/a", "--skip-tls-verify"]).contains("always verifies TLS"));
        let k = Kaniko::try_parse_from(["executor", "--reproducible", "--no-push"]).unwrap();
        assert_eq!(k.args.reproducible, Some(true));
    }

    #[test]
    fn ignore_paths_are_kept_and_kaniko_only_flags_accepted() {
        let (a, _) = map(&[
            "--no-push",
            "--ignore-path",
            "/var/run",
            "--snapshot-mode=redo",
            "--use-new-run",
            "--cleanup",
            "--verbosity=info",
        ]);
        assert!(has(&a, &["--keep", "/var/run"]));
    }

    #[test]
    fn the_argv_parses_as_kiln_build() {
        let (a, _) = map(&["-d", "r/a:1", "--tar-path", "/t", "--cache"]);
        let mut argv = vec!["build".to_string()];
        argv.extend(["--isolation", "chroot", "--progress", "plain"].map(String::from));
        argv.extend(a);
        crate::cmd::build::Cli::try_parse_from(argv).expect("kiln build accepts it");
    }
}
