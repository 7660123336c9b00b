//! `kiln run` and `kiln cp`: use an image without building anything.
//!
//! kiln has no daemon, so a container lives exactly as long as the command:
//! its writable layer is always thrown away (`--rm` is implied).

use std::path::{Path, PathBuf};

use kiln_exec::{Mount, Network, RunSpec, Stdio};
use kiln_fs::context::SourceRoot;
use kiln_fs::copy::{copy_into, CopyOptions};
use kiln_oci::Platform;

use crate::base::BaseImages;
use crate::builder::Builder;
use crate::error::{BuildError, Context};
use crate::options::NetworkMode;
use crate::request::Runtime;
use crate::rootfs::{ReadonlyRootfs, WorkingRootfs};
use crate::session::SessionOptions;

/// A bind mount from `-v HOST:CONTAINER[:ro]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub container: String,
    pub readonly: bool,
}

impl Volume {
    pub fn parse(spec: &str) -> Result<Volume, crate::OptionError> {
        let bad = |why: &str| crate::OptionError::new("--volume", spec, why);
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, container, mode) = match parts.as_slice() {
            [h, c] => (*h, *c, None),
            [h, c, m] => (*h, *c, Some(*m)),
            _ => return Err(bad("expected HOST:CONTAINER[:ro|rw]")),
        };
        if !container.starts_with('/') {
            return Err(bad("the container path must be absolute"));
        }
        let readonly = match mode {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(m) => return Err(bad(&format!("unknown mode {m:?} (ro or rw)"))),
        };
        let host =
            std::fs::canonicalize(host).map_err(|e| bad(&format!("host path {host}: {e}")))?;
        Ok(Volume {
            host,
            container: container.to_string(),
            readonly,
        })
    }
}

#[derive(Clone, Debug)]
pub struct RunRequest {
    pub image: String,
    /// Replaces the image's CMD; empty keeps it.
    pub args: Vec<String>,
    pub entrypoint: Option<String>,
    pub volumes: Vec<Volume>,
    pub workdir: Option<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub network: NetworkMode,
    pub tty: bool,
    pub runtime: Runtime,
    pub insecure_registries: Vec<String>,
}

impl Builder {
    /// Runs a command in a container of `image`; returns its exit code.
    pub fn run_container(&self, req: &RunRequest) -> Result<i32, BuildError> {
        let session = self.session(SessionOptions {
            runtime: Some(req.runtime),
            insecure_registries: req.insecure_registries.clone(),
        })?;
        let bases = BaseImages::new(&session, false, Platform::host());
        let image = bases.get(&req.image)?;
        let config = &image.config.config;

        let mut argv = match &req.entrypoint {
            Some(e) if e.is_empty() => Vec::new(),
            Some(e) => vec![e.clone()],
            None => config.entrypoint.clone().unwrap_or_default(),
        };
        if req.args.is_empty() {
            argv.extend(config.cmd.clone().unwrap_or_default());
        } else {
            argv.extend(req.args.iter().cloned());
        }
        if argv.is_empty() {
            return Err(BuildError::other(
                format!("running {}", req.image),
                "the image has no CMD or ENTRYPOINT; give a command",
            ));
        }
        let mut env = config.env.clone().unwrap_or_default();
        for e in &req.env {
            let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            env.retain(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) != key);
            env.push(if e.contains('=') {
                e.clone()
            } else {
                format!("{e}={}", std::env::var(e).unwrap_or_default())
            });
        }
        let cwd = req
            .workdir
            .clone()
            .or_else(|| Some(config.working_dir.clone()).filter(|w| !w.is_empty()))
            .unwrap_or_else(|| "/".into());

        let rootfs = WorkingRootfs::prepare(&session, &image.layers)?;
        let user = req.user.clone().unwrap_or_else(|| config.user.clone());
        let ids =
            kiln_fs::users::lookup_user(rootfs.merged(), crate::ops::run::user_or_root(&user))
                .context(|| format!("resolving user {user:?}"))?;
        let mounts = req
            .volumes
            .iter()
            .map(|v| Mount::Bind {
                source: v.host.clone(),
                destination: v.container.clone(),
                readonly: v.readonly,
            })
            .collect();
        let spec = RunSpec {
            rootfs: rootfs.merged().to_path_buf(),
            args: argv,
            env,
            cwd,
            uid: ids.uid,
            gid: ids.gid,
            additional_gids: ids.additional_gids,
            mounts,
            network: if req.network == NetworkMode::None {
                Network::None
            } else {
                Network::Host
            },
            hostname: "kiln".into(),
            stdio: Stdio::Inherit { tty: req.tty },
            id: format!("kiln-run-{}", std::process::id()),
        };
        let status = session
            .executor()?
            .run(&spec, &mut |_, _| {})
            .context(|| format!("running a container of {}", req.image))?;
        Ok(status.code())
    }

    /// Copies `path` out of `image` to `dest` on the host, like `docker cp`:
    /// into `dest` when it is an existing directory, as `dest` otherwise.
    /// Devices, setuid/setgid bits and owners are kept only as far as `keep`
    /// allows; returns one note per entry that lost something.
    /// Extracts the layers of the stored image `image` into snapshots now,
    /// as `docker pull` does, so that the first build on it does not wait.
    pub fn unpack(&self, image: &str) -> Result<(), BuildError> {
        let session = self.session(SessionOptions {
            runtime: None,
            insecure_registries: Vec::new(),
        })?;
        let bases = BaseImages::new(&session, false, Platform::host());
        crate::rootfs::unpack(&session, &bases.get(image)?.layers)
    }

    pub fn copy_from_image(
        &self,
        image: &str,
        path: &str,
        dest: &Path,
        keep: kiln_fs::copy::HostPolicy,
    ) -> Result<Vec<String>, BuildError> {
        let session = self.session(SessionOptions {
            runtime: None,
            insecure_registries: Vec::new(),
        })?;
        let bases = BaseImages::new(&session, false, Platform::host());
        let image_ref = bases.get(image)?;
        let view = ReadonlyRootfs::mount(&session, &image_ref.layers)?;
        let root = SourceRoot::rootfs(view.path()).context(|| format!("opening {image}"))?;
        let name = Path::new(path.trim_end_matches('/'))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Like docker cp: into an existing directory under the source's name,
        // else as `dest` itself.
        let (target_root, target_name) = if dest.is_dir() {
            (dest.to_path_buf(), name)
        } else {
            let parent = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let file = dest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(name);
            (parent.to_path_buf(), file)
        };
        let found = root
            .resolve(path)
            .map_err(|e| BuildError::other(format!("finding {path} in {image}"), e))?;
        let is_dir = rustix::fs::FileType::from_raw_mode(found.stat.st_mode)
            == rustix::fs::FileType::Directory;
        let opts = CopyOptions {
            sources: vec![path.to_string()],
            dest: if is_dir {
                format!("/{target_name}/")
            } else {
                format!("/{target_name}")
            },
            workdir: "/".into(),
            host: Some(keep),
            ..Default::default()
        };
        let stats = copy_into(&root, &target_root, &opts)
            .context(|| format!("copying {image}:{path} to {}", dest.display()))?;
        Ok(stats.skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes() {
        let v = Volume::parse("/tmp:/src:ro").unwrap();
        assert!(v.readonly);
        assert_eq!(v.container, "/src");
        assert!(Volume::parse("/tmp:src").is_err());
        assert!(Volume::parse("/tmp:/src:rx").is_err());
        let e = Volume::parse("/nonexistent-kiln:/x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent-kiln"), "{e}");
    }
}
