//! The size of every stage of a build ("build 830MB → final 4.6MB"),
//! printed at the end of `kiln build` and kept in the manifest annotation
//! [`kiln_analyze::STAGES_ANNOTATION`] for `kiln analyze`.

use kiln_analyze::{StageLayers, StageSize};
use kiln_dockerfile::Plan;
use kiln_oci::oci_spec::image::Descriptor;

use crate::error::{BuildError, Context};
use crate::layer::Layer;
use crate::schedule::Board;
use crate::session::Session;
use crate::state::StageOutput;

pub fn stage_sizes(
    builder: &Session,
    plan: &Plan,
    board: &Board<StageOutput>,
) -> Result<Vec<StageSize>, BuildError> {
    let mut out = Vec::new();
    for stage in &plan.stages {
        let Some(built) = board.wait(stage.index) else {
            continue;
        };
        // A layer found in a remote cache is fetched only when something
        // needs it: a stage with one not fetched has no size to report.
        if !built
            .layers
            .iter()
            .all(|l| builder.has_layer_blob(&l.digest))
        {
            continue;
        }
        let mut size = 0;
        for l in &built.layers {
            size += uncompressed_size(builder, l)?;
        }
        out.push(StageSize {
            index: stage.index,
            name: stage_name(stage),
            size,
            layers: built.layers.len(),
            is_final: stage.index == plan.target,
        });
    }
    Ok(out)
}

/// The layers of every stage but the target, by name.
pub fn stage_layers(plan: &Plan, board: &Board<StageOutput>) -> Vec<StageLayers> {
    plan.stages
        .iter()
        .filter(|s| s.index != plan.target)
        .filter_map(|s| {
            let built = board.wait(s.index)?;
            Some(StageLayers {
                name: stage_name(s),
                layers: built
                    .layers
                    .iter()
                    .map(|l| Descriptor::new(l.media_type.as_str().into(), l.size, l.digest))
                    .collect(),
            })
        })
        .collect()
}

fn stage_name(s: &kiln_dockerfile::PlannedStage) -> String {
    s.name
        .clone()
        .unwrap_or_else(|| format!("stage-{}", s.index))
}

fn uncompressed_size(builder: &Session, l: &Layer) -> Result<u64, BuildError> {
    if l.media_type == kiln_oci::media_type::OCI_LAYER {
        return Ok(l.size);
    }
    let desc = Descriptor::new(l.media_type.as_str().into(), l.size, l.digest);
    Ok(builder
        .store
        .layer_info(&desc)
        .context(|| format!("reading layer {}", l.digest))?
        .uncompressed_size)
}
