//! `kiln build --squash`: the layers the target stage adds over its base
//! become one layer (the diff of the final filesystem against the base, so
//! whiteouts are resolved); base layers stay as they are, so they are still
//! shared. History keeps one entry per instruction; all but the one that
//! carries the squashed layer are marked `empty_layer`.

use crate::error::{BuildError, Context};
use crate::image::ImageConfig;
use crate::layer::Layer;
use crate::rootfs::ReadonlyRootfs;
use crate::session::Session;
use crate::state::StageOutput;

/// The layers and config of the squashed image (unchanged when the stage
/// adds at most one layer).
pub fn squash(
    builder: &Session,
    target: &StageOutput,
    config: &mut ImageConfig,
) -> Result<Vec<Layer>, BuildError> {
    let base = &target.layers[..target.base_layers];
    if target.layers.len() <= base.len() + 1 {
        return Ok(target.layers.clone());
    }
    let lower = ReadonlyRootfs::mount(builder, base)?;
    let upper = ReadonlyRootfs::mount(builder, &target.layers)?;
    let mut ingest = builder
        .store
        .ingest(None)
        .context(|| "starting the squashed layer blob".to_string())?;
    let info = kiln_fs::write_layer_from_compare(
        lower.path(),
        upper.path(),
        &mut ingest,
        &crate::rootfs::layer_options(),
    )
    .context(|| "writing the squashed layer".to_string())?;
    let (digest, size) = ingest
        .commit()
        .context(|| "committing the squashed layer".to_string())?;
    builder
        .store
        .record_layer_info(
            &digest,
            &kiln_store::LayerInfo {
                diff_id: info.diff_id,
                uncompressed_size: info.size,
            },
        )
        .context(|| "recording the squashed layer's diff_id".to_string())?;
    let mut layers = base.to_vec();
    layers.push(Layer {
        digest,
        diff_id: info.diff_id,
        size,
        media_type: kiln_oci::media_type::OCI_LAYER.to_string(),
    });
    squash_history(config, target.base_history);
    Ok(layers)
}

/// Marks every stage entry `empty_layer` except the last one that had a layer.
fn squash_history(config: &mut ImageConfig, base_history: usize) {
    let start = base_history.min(config.history.len());
    let own = &mut config.history[start..];
    let Some(last) = own.iter().rposition(|h| !h.empty_layer) else {
        return;
    };
    let squashed = own.iter().filter(|h| !h.empty_layer).count();
    for h in own.iter_mut() {
        h.empty_layer = true;
    }
    own[last].empty_layer = false;
    own[last].comment = Some(format!(
        "kiln --squash: {squashed} layers merged into this one"
    ));
}
