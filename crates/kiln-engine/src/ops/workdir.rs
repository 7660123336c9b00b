//! WORKDIR: set the working directory and create it, as BuildKit does
//! (a layer only when the directory did not exist).

use kiln_dockerfile::Step;

use crate::cache::KeyBuilder;
use crate::error::BuildError;
use crate::rootfs::WorkingRootfs;
use crate::stage::{StageBuild, StageState};

pub fn workdir(
    b: &StageBuild,
    state: &mut StageState,
    step: &Step,
    dir: &str,
) -> Result<(), BuildError> {
    // The frontend gives it absolute and cleaned.
    let path = dir.to_string();
    state.config.config.working_dir = path.clone();

    let key = KeyBuilder::new("workdir")
        .key("parent", &state.key)
        .str("path", &path)
        .str("user", &state.config.config.user)
        .finish();
    let progress = b.steps.start(format!("{} {}", state.label, step.original));
    let layer = match b.cache_hit(&key, &state.layers)? {
        Some(layer) => {
            progress.cached();
            layer
        }
        None => {
            let rootfs = WorkingRootfs::prepare(b.builder, &state.layers)?;
            mkdir_in_root(rootfs.merged(), &path).map_err(|e| {
                crate::ops::run::step_error(b, step, format!("creating {path}: {e}"))
            })?;
            let layer = b.commit(rootfs, &key)?;
            progress.done();
            layer
        }
    };
    state.push(step, key, layer);
    Ok(())
}

/// `mkdir -p` inside a root file system, resolving symlinks as if chrooted
/// there (a WORKDIR under a symlinked dir like `/var/run` is fine; one that
/// would leave the root is not).
fn mkdir_in_root(root: &std::path::Path, path: &str) -> Result<(), pathrs::error::Error> {
    use std::os::unix::fs::PermissionsExt;
    pathrs::Root::open(root)?.mkdir_all(path, &std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
