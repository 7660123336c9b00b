//! WORKDIR: set the working directory and create it, as BuildKit does
//! (a layer only when the directory did not exist).

use kiln_dockerfile::Step;

use crate::cache::{inputs, Inputs};
use crate::error::BuildError;
use crate::progress::Step as StepProgress;
use crate::rootfs::WorkingRootfs;
use crate::state::{StageBuild, StageState};
use crate::step::{drive, Op};

struct Workdir<'a, 'b> {
    b: &'a StageBuild<'b>,
    step: &'a Step,
    path: String,
    user: String,
    inputs: Inputs,
}

impl Op for Workdir<'_, '_> {
    fn inputs(&self) -> &Inputs {
        &self.inputs
    }

    fn exec(&self, root: &WorkingRootfs, _: &StepProgress) -> Result<(), BuildError> {
        let rootfs = root.merged();
        let fail = |e: String| {
            self.b
                .step_error(self.step, format!("creating {}: {e}", self.path))
        };
        // BuildKit's mkdir runs `WithUser(USER)`: new directories belong to it.
        let (uid, gid) = if self.user.is_empty() {
            (0, 0)
        } else {
            kiln_fs::users::lookup_file_owner(rootfs, &self.user)
                .map_err(|e| fail(e.to_string()))?
        };
        kiln_fs::copy::mkdir_all(rootfs, &self.path, uid, gid, 0o755)
            .map_err(|e| fail(e.to_string()))
    }
}

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
    let user = state.config.config.user.clone();
    let op = Workdir {
        b,
        step,
        inputs: inputs::workdir(state.key, &path, &user),
        path,
        user,
    };
    let progress = b.steps.start(format!("{} {}", state.label, step.original));
    drive(b, state, step, progress, &op)
}
