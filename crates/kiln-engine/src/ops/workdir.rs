//! WORKDIR: set the working directory and create it, as BuildKit does
//! (a layer only when the directory did not exist).

use std::path::Path;

use kiln_dockerfile::Step;

use crate::cache::{inputs, Inputs};
use crate::error::BuildError;
use crate::progress::Step as StepProgress;
use crate::state::{StageBuild, StageState};
use crate::step::{drive, Op};

struct Workdir<'a, 'b> {
    b: &'a StageBuild<'b>,
    step: &'a Step,
    path: String,
    inputs: Inputs,
}

impl Op for Workdir<'_, '_> {
    fn inputs(&self) -> &Inputs {
        &self.inputs
    }

    fn exec(&self, rootfs: &Path, _: &StepProgress) -> Result<(), BuildError> {
        mkdir_in_root(rootfs, &self.path).map_err(|e| {
            self.b
                .step_error(self.step, format!("creating {}: {e}", self.path))
        })
    }
}

pub fn workdir(
    b: &StageBuild,
    state: &mut StageState,
    step: &Step,
    dir: &str,
) -> Result<(), BuildError> {
    // The frontend gives it absolute and cleaned.
    let path = dir.to_string();
    state.config.config.working_dir = path.clone();
    let op = Workdir {
        b,
        step,
        inputs: inputs::workdir(state.key, &path, &state.config.config.user),
        path,
    };
    let progress = b.steps.start(format!("{} {}", state.label, step.original));
    drive(b, state, step, progress, &op)
}

/// `mkdir -p` inside a root file system, resolving symlinks as if chrooted
/// there (a WORKDIR under a symlinked dir like `/var/run` is fine; one that
/// would leave the root is not).
fn mkdir_in_root(root: &Path, path: &str) -> Result<(), pathrs::error::Error> {
    use std::os::unix::fs::PermissionsExt;
    pathrs::Root::open(root)?.mkdir_all(path, &std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
