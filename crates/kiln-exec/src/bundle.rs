//! The OCI bundle of one run: `STATE/bundles/<id>/` with `config.json`, the
//! generated `resolv.conf` and `hosts`, and the helper's `result.json`; plus
//! the mountpoints created in the rootfs for it.

use std::fs;
use std::path::{Path, PathBuf};

use crate::prepare::{Created, Kind, Preparer};
use crate::spec::{self, SpecPaths, BASE_MOUNTPOINTS};
use crate::{host, Error, Mount, Result, RunSpec};

pub(crate) const CONFIG: &str = "config.json";
pub(crate) const RESULT: &str = "result.json";

pub(crate) struct Bundle {
    pub dir: PathBuf,
    created: Option<Created>,
    removed: bool,
}

impl Drop for Bundle {
    /// A run that unwinds (a panicking output callback) still cleans up.
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.remove();
        }
    }
}

pub(crate) fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId { id: id.to_string() })
    }
}

fn invalid(run: &RunSpec, reason: impl Into<String>) -> Error {
    Error::InvalidSpec {
        id: run.id.clone(),
        reason: reason.into(),
    }
}

fn check(run: &RunSpec) -> Result<()> {
    validate_id(&run.id)?;
    if run.args.is_empty() || run.args[0].is_empty() {
        return Err(invalid(run, "no command to run"));
    }
    if let Some(bad) = run
        .env
        .iter()
        .find(|e| !e.contains('=') || e.starts_with('='))
    {
        return Err(invalid(
            run,
            format!("environment entry {bad:?} is not KEY=value"),
        ));
    }
    if run.args.iter().chain(&run.env).any(|s| s.contains('\0')) {
        return Err(invalid(
            run,
            "a command argument or environment entry contains a NUL byte",
        ));
    }
    if !run.cwd.starts_with('/') {
        return Err(invalid(
            run,
            format!("working directory {:?} is not absolute", run.cwd),
        ));
    }
    if !run.rootfs.is_dir() {
        return Err(invalid(
            run,
            format!(
                "root filesystem {} is not a directory",
                run.rootfs.display()
            ),
        ));
    }
    for m in &run.mounts {
        let dest = match m {
            Mount::Bind { destination, .. } | Mount::Tmpfs { destination, .. } => destination,
        };
        if !dest.starts_with('/') {
            return Err(invalid(
                run,
                format!("mount destination {dest:?} is not absolute"),
            ));
        }
    }
    Ok(())
}

impl Bundle {
    /// Prepares the rootfs and writes the bundle for `run` under
    /// `bundles_dir`. On error everything done so far is undone.
    pub(crate) fn create(bundles_dir: &Path, run: &RunSpec) -> Result<Bundle> {
        check(run)?;
        fs::create_dir_all(bundles_dir)
            .map_err(|e| Error::io("creating bundles directory", bundles_dir, e))?;
        let dir = bundles_dir.join(&run.id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists {
                    id: run.id.clone(),
                    path: dir,
                })
            }
            Err(e) => return Err(Error::io("creating bundle directory", &dir, e)),
        }
        let mut bundle = Bundle {
            dir,
            created: None,
            removed: false,
        };
        match bundle.fill(run) {
            Ok(()) => Ok(bundle),
            Err(e) => {
                // Best effort: the original error is what the caller needs.
                let _ = bundle.remove();
                Err(e)
            }
        }
    }

    fn fill(&mut self, run: &RunSpec) -> Result<()> {
        let mut prep = Preparer::new(&run.rootfs);
        let result = self.write_files(run, &mut prep);
        // Record what was created even when a later step failed, so that
        // `remove` undoes it.
        self.created = Some(prep.finish());
        result
    }

    fn write_files(&self, run: &RunSpec, prep: &mut Preparer<'_>) -> Result<()> {
        for dir in BASE_MOUNTPOINTS {
            prep.ensure(dir, Kind::Dir, true)?;
        }
        let resolv_dest = prep.ensure("/etc/resolv.conf", Kind::File, true)?;
        let hosts_dest = prep.ensure("/etc/hosts", Kind::File, true)?;
        let mut dests = Vec::new();
        for m in &run.mounts {
            let (dest, kind) = match m {
                Mount::Bind {
                    source,
                    destination,
                    ..
                } => {
                    let meta = fs::metadata(source)
                        .map_err(|e| Error::io("inspecting bind mount source", source, e))?;
                    (
                        destination,
                        if meta.is_dir() { Kind::Dir } else { Kind::File },
                    )
                }
                Mount::Tmpfs { destination, .. } => (destination, Kind::Dir),
            };
            dests.push(prep.ensure(dest, kind, true)?);
        }
        // Created after the mountpoints, so a cwd that is a mount target is
        // removed with them; otherwise it stays, as with Docker.
        prep.ensure(&run.cwd, Kind::Dir, false)?;

        let resolv = self.dir.join("resolv.conf");
        let hosts = self.dir.join("hosts");
        write(&resolv, host::resolv_conf(run.network)?.as_bytes())?;
        write(&hosts, host::hosts(&run.hostname).as_bytes())?;
        let home = home_dir(&run.rootfs, run.uid);
        let spec = spec::generate(
            run,
            &SpecPaths {
                resolv_conf: &resolv,
                hosts: &hosts,
                mount_destinations: &dests,
                resolv_conf_destination: &resolv_dest,
                hosts_destination: &hosts_dest,
                home: &home,
                cgroup: &cgroup_path(&self.dir, &run.id),
            },
        )?;
        let json = serde_json::to_vec_pretty(&spec)
            .map_err(|e| Error::Spec(format!("container {}: serializing: {e}", run.id)))?;
        write(&self.dir.join(CONFIG), &json)
    }

    /// Undoes the rootfs changes and removes the bundle directory. Returns a
    /// description of what could not be cleaned up.
    pub(crate) fn remove(&mut self) -> std::result::Result<(), String> {
        self.removed = true;
        let mut problems = self.created.take().map(Created::undo).unwrap_or_default();
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(format!("removing {}: {e}", self.dir.display()));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// `/kiln/<id>-<hash of the bundle path>`: the bundle path is unique on the
/// machine while the container exists.
fn cgroup_path(bundle: &Path, id: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    // FNV-1a: stable, and enough to tell state directories apart.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bundle.as_os_str().as_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("/kiln/{id}-{:08x}", h as u32)
}

/// Writes a bundle file readable by any user of the container (resolv.conf
/// and hosts are bind-mounted), whatever kiln's umask.
fn write(path: &Path, data: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, data).map_err(|e| Error::io("writing", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io("setting mode of", path, e))
}

/// The home directory of `uid` in the rootfs's `/etc/passwd`, or `/` (what
/// runc uses when there is none).
pub(crate) fn home_dir(rootfs: &Path, uid: u32) -> String {
    let passwd = rootfs.join("etc/passwd");
    // Only a regular file: a symlink would be resolved on the host.
    let regular = fs::symlink_metadata(&passwd).is_ok_and(|m| m.is_file());
    let text = if regular {
        fs::read_to_string(&passwd).unwrap_or_default()
    } else {
        String::new()
    };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
        })
        .find(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(validate_id("step-1_a.b+c").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn home_comes_from_passwd() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(home_dir(root.path(), 0), "/root");
        assert_eq!(home_dir(root.path(), 1000), "/home/u");
        assert_eq!(home_dir(root.path(), 5), "/");
    }
}
