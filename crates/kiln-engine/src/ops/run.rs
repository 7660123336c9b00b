//! RUN: execute a command in a container on the stage's file system and
//! keep what it changed as a layer.

use std::path::{Path, PathBuf};

use kiln_dockerfile::{Command, MountFrom, RunMount, RunStep, Step};
use kiln_exec::{Mount, Network, RunSpec, Stdio};

use crate::cache::{inputs, CacheKey, Inputs};
use crate::error::{BuildError, Context};
use crate::options::NetworkMode;
use crate::progress::{Step as StepProgress, Stream};
use crate::rootfs::WorkingRootfs;
use crate::state::{StageBuild, StageState};
use crate::step::{drive, Op};

/// A RUN with its command, environment and mount sources resolved.
struct Run<'a, 'b> {
    b: &'a StageBuild<'b>,
    step: &'a Step,
    argv: Vec<String>,
    /// The process environment: config env, build args, proxy variables
    /// and secrets given as env (only the first two are in the key).
    env: Vec<String>,
    user: String,
    cwd: String,
    network: Network,
    mounts: &'a [RunMount],
    sources: Vec<MountSource<'b>>,
    inputs: Inputs,
}

pub fn run(
    b: &StageBuild,
    state: &mut StageState,
    step: &Step,
    run: &RunStep,
) -> Result<(), BuildError> {
    let host = kiln_oci::Platform::host();
    if !b.platform.matches(&host) {
        return Err(b.step_error(
            step,
            format!(
                "cannot run a {} container on this {host} machine (kiln has no emulation); build for --platform {host}",
                b.platform
            ),
        ));
    }
    let argv = match &run.cmd {
        Command::Exec(args) => args.clone(),
        Command::Shell(line) => {
            let mut a = run.shell.to_vec();
            a.push(line.clone());
            a
        }
    };
    let config = &state.config.config;
    let config_env = config.env.clone().unwrap_or_default();
    // The frontend leaves out ARGs an ENV shadows; one it gives with an
    // ENV's name was redeclared after it and replaces it (BuildKit).
    let build_args: Vec<String> = run
        .build_env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let network = match (run.network, b.request.network) {
        (Some(kiln_dockerfile::Network::None), _) | (None, NetworkMode::None) => Network::None,
        _ => Network::Host,
    };

    // Resolve what the mounts read first: their content is part of the key.
    let sources = run
        .mounts
        .iter()
        .map(|m| MountSource::resolve(b, m))
        .collect::<Result<Vec<_>, _>>()?;
    let keyed: Vec<(&RunMount, Option<CacheKey>)> = run
        .mounts
        .iter()
        .zip(&sources)
        .map(|(m, s)| (m, s.key()))
        .collect();
    let inputs = inputs::run(&inputs::Run {
        parent: state.key,
        argv: &argv,
        env: &config_env,
        build_args: &build_args,
        user: &config.user,
        workdir: &config.working_dir,
        network: if network == Network::None {
            "none"
        } else {
            "host"
        },
        mounts: &keyed,
    });

    let mut env = config_env;
    env.extend(build_args);
    // Proxy settings reach the process but never the key or the history.
    for (k, v) in &run.proxy_env {
        env.push(format!("{k}={v}"));
    }
    for (m, source) in run.mounts.iter().zip(&sources) {
        if let (RunMount::Secret { env: Some(var), .. }, MountSource::Secret { data: Some(d) }) =
            (m, source)
        {
            env.push(format!("{var}={}", String::from_utf8_lossy(d)));
        }
    }
    // WORKDIR keeps an absolute path as written (`/a/./x/../y/`); the
    // runtime gets it so, as runc does from BuildKit.
    let cwd = if config.working_dir.is_empty() {
        "/".to_string()
    } else {
        config.working_dir.clone()
    };
    let op = Run {
        b,
        step,
        argv,
        env,
        user: config.user.clone(),
        cwd,
        network,
        mounts: &run.mounts,
        sources,
        inputs,
    };
    let progress = b.steps.start(format!("{} {}", state.label, step.original));
    drive(b, state, step, progress, &op)
}

impl Op for Run<'_, '_> {
    fn inputs(&self) -> &Inputs {
        &self.inputs
    }

    fn exec(&self, root: &WorkingRootfs, progress: &StepProgress) -> Result<(), BuildError> {
        let rootfs = root.merged();
        let (b, step) = (self.b, self.step);
        let ids = kiln_fs::users::lookup_user(rootfs, user_or_root(&self.user))
            .map_err(|e| b.step_error(step, format!("resolving USER: {e}")))?;
        // The executor creates missing mount targets and removes them again
        // afterwards, so they leave nothing in the layer (as BuildKit 0.11+ does).
        let mut mounts = Vec::new();
        let mut holders = Vec::new();
        for (m, source) in self.mounts.iter().zip(&self.sources) {
            let Some(target) = mount_target(m) else {
                continue;
            };
            // An optional secret that was not given is simply not mounted.
            if matches!(source, MountSource::Secret { data: None }) {
                continue;
            }
            let target = absolute(&self.cwd, &target);
            let (mount, holder) = source.mount(b, m, &target, &holders)?;
            mounts.push(mount);
            holders.extend(holder);
        }
        let spec = RunSpec {
            rootfs: rootfs.to_path_buf(),
            args: self.argv.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            uid: ids.uid,
            gid: ids.gid,
            additional_gids: ids.additional_gids.clone(),
            mounts,
            network: self.network,
            hostname: "buildkitsandbox".into(),
            stdio: Stdio::Capture,
            id: container_id(&self.inputs.key()),
        };
        let status = b
            .session
            .executor()?
            .run(&spec, &mut |stream, data| {
                progress.log(
                    match stream {
                        kiln_exec::OutputStream::Stdout => Stream::Stdout,
                        kiln_exec::OutputStream::Stderr => Stream::Stderr,
                    },
                    data,
                )
            })
            .map_err(|e| match e {
                kiln_exec::Error::Cancelled { .. } => BuildError::Interrupted,
                e @ kiln_exec::Error::ExecutableNotFound { .. } => b.step_error(
                    step,
                    format!("{e} (exit code: {})", e.exit_code().unwrap_or(127)),
                ),
                e => b.step_error(step, format!("running the container: {e}")),
            })?;
        if !status.success() {
            return Err(BuildError::RunFailed {
                location: b.location(step),
                instruction: step.original.clone(),
                command: self.argv.join(" "),
                code: status.code(),
            });
        }
        Ok(())
    }
}

/// No USER means uid 0 — numeric, so it works without /etc/passwd
/// (`FROM scratch`), as with runc.
pub(crate) fn user_or_root(user: &str) -> &str {
    if user.is_empty() {
        "0"
    } else {
        user
    }
}

/// Unique among concurrent steps and kiln processes sharing a store.
fn container_id(key: &CacheKey) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("kiln-{}-{}-{n}", &key.hex()[..12], std::process::id())
}

pub fn absolute(cwd: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{}", cwd.trim_end_matches('/'), path)
    }
}

/// Where a `RUN --mount` gets its files.
enum MountSource<'a> {
    /// A directory on the host (context, a stage's or image's root, a cache dir).
    Dir {
        path: PathBuf,
        key: Option<CacheKey>,
        #[allow(dead_code)] // held, not read
        holder: Option<Box<Holder<'a>>>,
    },
    /// A cache mount: its directory (without instance suffix) and seed.
    Cache {
        base: PathBuf,
        id: String,
        seed: Option<PathBuf>,
        key: Option<CacheKey>,
        #[allow(dead_code)] // held, not read
        holder: Option<Box<Holder<'a>>>,
    },
    Tmpfs,
    Secret {
        data: Option<Vec<u8>>,
    },
}

/// What a mounted source needs kept until the container has exited.
pub enum Held {
    Temp(#[allow(dead_code)] tempfile::TempDir),
    Cache(#[allow(dead_code)] crate::ops::cache_mount::CacheDir),
}

/// Keeps what a mount source needs alive until the step ends.
enum Holder<'a> {
    View(#[allow(dead_code)] crate::rootfs::ReadonlyRootfs<'a>),
    Temp(#[allow(dead_code)] tempfile::TempDir),
}

impl<'a> MountSource<'a> {
    fn resolve(b: &StageBuild<'a>, m: &RunMount) -> Result<MountSource<'a>, BuildError> {
        Ok(match m {
            RunMount::Bind { from, source, .. } => {
                let (root, key, holder) = from_root(b, from, source)?;
                let path = join_inside(&root, source);
                MountSource::Dir { path, key, holder }
            }
            RunMount::Cache {
                id, from, source, ..
            } => {
                // A cache seeded `from` a stage or image is its own cache per
                // seed (BuildKit keys it `id:refID`).
                let (seed, key, holder) = match from {
                    Some(from) => {
                        let (root, key, holder) = from_root(b, from, source)?;
                        (Some(root), key, holder)
                    }
                    None => {
                        b.session.used_mounts.lock().unwrap().insert(id.clone());
                        (None, None, None)
                    }
                };
                let name = match &key {
                    Some(k) => format!("{id}:{}", k.hex()),
                    None => id.clone(),
                };
                // A cache mount's content never enters the cache key (BuildKit).
                MountSource::Cache {
                    base: b.session.paths.cache_mount(&name),
                    id: id.clone(),
                    seed,
                    key,
                    holder,
                }
            }
            RunMount::Tmpfs { .. } => MountSource::Tmpfs,
            RunMount::Secret { id, required, .. } => {
                let data = b
                    .secrets
                    .iter()
                    .find(|(s, _)| s == id)
                    .map(|(_, d)| d.clone());
                if data.is_none() && *required {
                    return Err(BuildError::other(
                        "RUN --mount=type=secret",
                        format!("secret {id} is required but was not given (use --secret id={id},src=FILE)"),
                    ));
                }
                MountSource::Secret { data }
            }
            RunMount::HeredocFile {
                content,
                mode,
                name,
                ..
            } => {
                let dir = tempfile::Builder::new()
                    .prefix("heredoc-")
                    .tempdir_in(b.session.paths.tmp())
                    .context(|| "creating a here-document file".to_string())?;
                write_secret(&dir.path().join(name), content.as_bytes(), *mode, 0, 0)
                    .context(|| "writing a here-document file".to_string())?;
                MountSource::Dir {
                    path: dir.path().to_path_buf(),
                    key: None,
                    holder: Some(Box::new(Holder::Temp(dir))),
                }
            }
            RunMount::Ssh { .. } => {
                return Err(BuildError::other(
                    "RUN --mount=type=ssh",
                    "SSH agent forwarding is not supported yet; use --mount=type=secret",
                ))
            }
        })
    }

    fn key(&self) -> Option<CacheKey> {
        match self {
            MountSource::Dir { key, .. } | MountSource::Cache { key, .. } => *key,
            _ => None,
        }
    }

    fn mount(
        &self,
        b: &StageBuild,
        m: &RunMount,
        target: &str,
        held: &[Held],
    ) -> Result<(Mount, Option<Held>), BuildError> {
        let bind = |source: PathBuf, readonly: bool| Mount::Bind {
            source,
            destination: target.into(),
            readonly,
        };
        Ok(match (self, m) {
            (MountSource::Dir { path, .. }, RunMount::Bind { rw: true, .. }) => {
                // Writes to a rw bind mount are thrown away: give the step
                // a private copy.
                let (dir, view) = crate::rootfs::scratch_view(b.session, path)?;
                (bind(view, false), Some(Held::Temp(dir)))
            }
            (MountSource::Dir { path, .. }, RunMount::Bind { .. }) => {
                (bind(path.clone(), true), None)
            }
            (
                MountSource::Cache { base, id, seed, .. },
                RunMount::Cache {
                    source,
                    sharing,
                    mode,
                    uid,
                    gid,
                    readonly,
                    ..
                },
            ) => {
                let source = kiln_fs::context::clean_rel(source);
                let new = crate::ops::cache_mount::NewCache {
                    seed: seed.as_deref().map(|root| (root, source.as_str())),
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                };
                // Mounts of one cache in one RUN share its instance (BuildKit's
                // per-exec cacheMounts); locking it twice would wait for itself.
                let same = held.iter().find_map(|h| match h {
                    Held::Cache(d) if d.base == *base => Some(d),
                    _ => None,
                });
                if let Some(dir) = same {
                    let path = crate::ops::cache_mount::path_in(dir, &new)?;
                    return Ok((bind(path, *readonly), None));
                }
                // A new cache mount without a seed starts from an imported one's files.
                if seed.is_none() && !base.exists() {
                    b.session.seed_cache_mount(id, base).unwrap_or_else(|e| {
                        b.steps.warn(format!(
                            "cache mount {id} from the imported cache: {e}; starting empty"
                        ));
                        false
                    });
                }
                let dir = crate::ops::cache_mount::acquire(base, *sharing, &new)?;
                (bind(dir.path.clone(), *readonly), Some(Held::Cache(dir)))
            }
            (MountSource::Dir { path, .. }, RunMount::HeredocFile { .. }) => {
                (bind(path.clone(), true), None)
            }
            (MountSource::Tmpfs, RunMount::Tmpfs { size, .. }) => (
                Mount::Tmpfs {
                    destination: target.into(),
                    size: *size,
                },
                None,
            ),
            (MountSource::Secret { data }, RunMount::Secret { mode, uid, gid, .. }) => {
                let dir = tempfile::Builder::new()
                    .prefix("secret-")
                    .tempdir_in(b.session.paths.tmp())
                    .context(|| "creating a secret file".to_string())?;
                let file = dir.path().join("secret");
                write_secret(
                    &file,
                    data.as_deref().unwrap_or_default(),
                    *mode,
                    *uid,
                    *gid,
                )
                .context(|| "writing a secret file".to_string())?;
                (bind(file, true), Some(Held::Temp(dir)))
            }
            _ => unreachable!("mount source matches its mount"),
        })
    }
}

/// Where a mount appears in the container; `None` for a secret only in env.
fn mount_target(m: &RunMount) -> Option<String> {
    match m {
        RunMount::Bind { target, .. }
        | RunMount::Cache { target, .. }
        | RunMount::Tmpfs { target, .. } => Some(target.clone()),
        RunMount::Secret {
            target, id, env, ..
        } => match (target, env) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(_)) => None,
            (None, None) => Some(format!("/run/secrets/{id}")),
        },
        RunMount::Ssh { target, .. } => Some(target.clone()),
        RunMount::HeredocFile { dir, .. } => Some(dir.clone()),
    }
}

fn write_secret(path: &Path, data: &[u8], mode: u32, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
}

/// The root a bind mount's `source` is relative to, with its cache key.
#[allow(clippy::type_complexity)]
fn from_root<'a>(
    b: &StageBuild<'a>,
    from: &MountFrom,
    source: &str,
) -> Result<(PathBuf, Option<CacheKey>, Option<Box<Holder<'a>>>), BuildError> {
    match from {
        MountFrom::Context => {
            let hash = b
                .context
                .checksum(&[source.to_string()], &Default::default())
                .context(|| format!("RUN --mount=type=bind,source={source}"))?;
            Ok((b.context.path().to_path_buf(), Some(CacheKey(hash.0)), None))
        }
        MountFrom::Stage(i) => {
            let out = b.wait_stage(*i)?;
            let view = crate::rootfs::ReadonlyRootfs::mount(b.session, &out.layers)?;
            Ok((
                view.path().to_path_buf(),
                Some(out.key),
                Some(Box::new(Holder::View(view))),
            ))
        }
        MountFrom::Image(name) => {
            let img = b.bases.get(name)?;
            let view = crate::rootfs::ReadonlyRootfs::mount(b.session, &img.layers)?;
            Ok((
                view.path().to_path_buf(),
                Some(img.key),
                Some(Box::new(Holder::View(view))),
            ))
        }
    }
}

/// `root` joined with a relative path; `..` cannot climb above `root`.
fn join_inside(root: &Path, rel: &str) -> PathBuf {
    let mut out = root.to_path_buf();
    let mut depth = 0usize;
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if depth > 0 {
                    out.pop();
                    depth -= 1;
                }
            }
            p => {
                out.push(p);
                depth += 1;
            }
        }
    }
    out
}
