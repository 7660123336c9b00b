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
    // Absolute, as written (BuildKit's `NormalizeWorkdir` cleans only
    // relative ones); the directory made is the cleaned path.
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
            let fail =
                |e: String| crate::ops::run::step_error(b, step, format!("creating {path}: {e}"));
            let user = &state.config.config.user;
            // BuildKit's mkdir runs `WithUser(USER)`: new directories belong to it.
            let (uid, gid) = if user.is_empty() {
                (0, 0)
            } else {
                kiln_fs::users::lookup_file_owner(rootfs.merged(), user)
                    .map_err(|e| fail(e.to_string()))?
            };
            kiln_fs::copy::mkdir_all(rootfs.merged(), &path, uid, gid, 0o755)
                .map_err(|e| fail(e.to_string()))?;
            let layer = b.commit(rootfs, &key)?;
            progress.done();
            layer
        }
    };
    state.push(step, key, layer);
    Ok(())
}
