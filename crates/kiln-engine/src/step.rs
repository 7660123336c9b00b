//! The one place a file-changing step meets the cache.
//!
//! Every such step (RUN, COPY/ADD, WORKDIR) is an [`Op`]: it states its
//! cache inputs as named, typed data before anything runs, and executes on
//! a writable root only on a miss (BuildKit's `CacheMap` + `Exec` split).
//! [`drive`] does the rest: lookup → hit, or prepare → exec → commit →
//! record.

use kiln_dockerfile::Step;

use crate::cache::{CacheKey, CacheRecord, Inputs, LayerRecord, StepInfo};
use crate::error::{BuildError, Context};
use crate::explain::{explain, Details, Explanation, Link};
use crate::layer::Layer;
use crate::progress::Step as StepProgress;
use crate::rootfs::WorkingRootfs;
use crate::session::Session;
use crate::state::{StageBuild, StageState};

/// A step that changes files.
pub trait Op {
    /// Everything the step's result depends on (see docs/cache.md).
    fn inputs(&self) -> &Inputs;
    /// Detail behind hashed inputs, kept in the record to explain a later
    /// miss (which files a COPY read). Called only on a miss.
    fn details(&self) -> Details {
        Details::new()
    }
    /// A key that finds the step's record before its inputs are all
    /// known (see `CacheRecord::fast_key`).
    fn fast_key(&self) -> Option<CacheKey> {
        None
    }
    /// Carries the step out in `root` (the mounted writable root).
    fn exec(&self, root: &WorkingRootfs, progress: &StepProgress) -> Result<(), BuildError>;
}

/// Runs `op` as `step` of the stage in `state`, or takes its result from
/// the cache; either way the stage gets the step's layer and key.
pub fn drive(
    b: &StageBuild,
    state: &mut StageState,
    step: &Step,
    progress: StepProgress,
    op: &dyn Op,
) -> Result<(), BuildError> {
    let inputs = op.inputs();
    let key = inputs.key();
    let label = b.label(step);
    if !b.request.no_cache {
        if let Some((layer, details)) = lookup(b.session, &key)? {
            if let Some(fast) = op.fast_key() {
                if let Err(e) = b.session.cache.put_alias(&fast, &key) {
                    tracing::warn!("recording a cache alias: {e}");
                }
            }
            let link = Link {
                inputs: inputs.clone(),
                label,
                details,
            };
            state.push(step, link, layer);
            progress.cached();
            return Ok(());
        }
    }
    let link = Link {
        inputs: inputs.clone(),
        label,
        details: op.details(),
    };
    let identities = state.identities(b.dockerfile_name, step);
    if let Some(why) = why_rebuilt(b, state, &link, &identities) {
        progress.rebuilt(&why.reason, &why.changes);
    }
    let started = std::time::Instant::now();
    let rootfs = WorkingRootfs::prepare(b.session, &state.layers)?;
    let prepared = started.elapsed();
    op.exec(&rootfs, &progress)?;
    let ran = started.elapsed();
    let layer = rootfs.commit(b.session, state.blobs_now)?;
    // Where a step's time goes, for profiles (KILN_LOG=debug).
    tracing::debug!(step = %link.label, ?prepared, ?ran, total = ?started.elapsed(), "step timing");
    // The blob is in the store before the record that names it.
    let record = CacheRecord {
        layer: layer.as_ref().map(layer_record),
        inputs: Some(inputs.clone()),
        step: Some(StepInfo {
            label: link.label.clone(),
            identities,
        }),
        details: link.details.clone(),
        fast_key: op.fast_key(),
    };
    b.session
        .cache
        .put(&key, &record)
        .context(|| "writing the build cache".to_string())?;
    state.push(step, link, layer);
    progress.done();
    Ok(())
}

fn why_rebuilt(
    b: &StageBuild,
    state: &StageState,
    link: &Link,
    identities: &[String],
) -> Option<Explanation> {
    if b.request.no_cache {
        return Some(Explanation {
            reason: "--no-cache".into(),
            changes: Vec::new(),
        });
    }
    let found = explain(b.session, &state.chain, link, identities);
    if found.is_none() && b.request.explain_cache {
        return Some(Explanation {
            reason: "no earlier build of this step is in the cache".into(),
            changes: Vec::new(),
        });
    }
    found
}

/// A hit through a fast key alone (a `COPY --from` whose source stage has
/// the key it had when the record was made): nothing of that stage is
/// mounted or hashed. `false` when there is none; the step then computes
/// its full inputs and goes through `drive`.
pub fn hit_by_fast_key(
    b: &StageBuild,
    state: &mut StageState,
    step: &Step,
    name: String,
    fast: &CacheKey,
) -> Result<bool, BuildError> {
    if b.request.no_cache {
        return Ok(false);
    }
    let Some(key) = b.session.alias(fast) else {
        return Ok(false);
    };
    let Some(inputs) = b.session.record(&key).and_then(|r| r.inputs) else {
        return Ok(false);
    };
    let Some((layer, details)) = lookup(b.session, &key)? else {
        return Ok(false);
    };
    let progress = b.steps.start(name);
    let link = Link {
        inputs,
        label: b.label(step),
        details,
    };
    state.push(step, link, layer);
    progress.cached();
    Ok(true)
}

/// A cache hit: the layer (or `None` for a step that changed nothing),
/// from this root's cache or else an imported remote one, which is then
/// adopted into this root's. A record whose blob is neither in the store
/// nor fetchable (or turned out wrong) is a miss. Nothing is extracted or
/// downloaded here: only a later step that needs the files.
pub fn lookup(
    session: &Session,
    key: &CacheKey,
) -> Result<Option<(Option<Layer>, Details)>, BuildError> {
    if let Some(record) = session.cache.get(key) {
        if let Some(hit) = usable(session, key, record)? {
            return Ok(Some(hit));
        }
    }
    let Some(record) = session.remote.record(key) else {
        return Ok(None);
    };
    let Some(hit) = usable(session, key, record.clone())? else {
        return Ok(None);
    };
    session.remote.adopt(key, &record);
    Ok(Some(hit))
}

fn usable(
    session: &Session,
    key: &CacheKey,
    record: CacheRecord,
) -> Result<Option<(Option<Layer>, Details)>, BuildError> {
    let Some(l) = record.layer else {
        return Ok(Some((None, record.details)));
    };
    let (Ok(digest), Ok(diff_id)) = (
        l.digest.parse::<kiln_oci::Digest>(),
        l.diff_id.parse::<kiln_oci::Digest>(),
    ) else {
        return Ok(None);
    };
    if session.remote.is_bad(&digest) {
        return Ok(None);
    }
    // Retained for this build's session, so a concurrent prune that
    // evicts the record keeps the blob while the build uses it.
    let local = session
        .store
        .retain(&digest)
        .context(|| format!("keeping cached layer {digest}"))?;
    if !local && !session.has_layer_blob(&digest) && !session.remote.has_blob(&digest) {
        return Ok(None);
    }
    session.cache.touch(key);
    let layer = Layer {
        digest,
        diff_id: kiln_oci::DiffId(diff_id),
        size: l.size,
        media_type: l.media_type,
    };
    Ok(Some((Some(layer), record.details)))
}

fn layer_record(l: &Layer) -> LayerRecord {
    LayerRecord {
        digest: l.digest.to_string(),
        diff_id: l.diff_id.digest().to_string(),
        size: l.size,
        media_type: l.media_type.clone(),
    }
}
