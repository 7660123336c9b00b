//! WORKDIR: set the working directory and create it, as BuildKit does
//! (a layer only when the directory did not exist).

use kiln_dockerfile::Step;

use crate::cache::KeyBuilder;
use crate::error::{BuildError, Context};
use crate::rootfs::{cached_layer, record, WorkingRootfs};
use crate::stage::{add_history, StageBuild, StageState};

pub fn workdir(
    b: &StageBuild,
    state: &mut StageState,
    step: &Step,
    dir: &str,
) -> Result<(), BuildError> {
    let previous = &state.config.config.working_dir;
    let path = if dir.starts_with('/') {
        clean(dir)
    } else {
        clean(&format!(
            "{}/{dir}",
            if previous.is_empty() { "/" } else { previous }
        ))
    };
    state.config.config.working_dir = path.clone();

    let key = KeyBuilder::new("workdir")
        .key("parent", &state.key)
        .str("path", &path)
        .str("user", &state.config.config.user)
        .finish();
    let progress = b.steps.start(format!("{} {}", state.label, step.original));
    let hit = if b.request.no_cache {
        None
    } else {
        cached_layer(b.builder, &key, &state.layers)?
    };
    let layer = match hit {
        Some(layer) => {
            progress.cached();
            layer
        }
        None => {
            let rootfs = WorkingRootfs::prepare(b.builder, &state.layers)?;
            mkdir_in_root(rootfs.merged(), &path).map_err(|e| {
                crate::ops::run::step_error(b, step, format!("creating {path}: {e}"))
            })?;
            let layer = rootfs.commit(b.builder)?;
            b.builder
                .cache
                .put(&key, &record(layer.as_ref()))
                .context(|| "writing the build cache".to_string())?;
            progress.done();
            layer
        }
    };
    add_history(&mut state.config, &step.created_by, layer.is_none());
    state.layers.extend(layer);
    state.key = key;
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

/// Lexical cleaning like Go's path.Clean for an absolute path.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn clean() {
        assert_eq!(super::clean("/a/./b/../c/"), "/a/c");
        assert_eq!(super::clean("/../x"), "/x");
        assert_eq!(super::clean("/"), "/");
    }
}
