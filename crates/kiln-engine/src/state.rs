//! What the stages of one build share, and the state of one stage while its
//! steps run. The ops read these; `stage.rs` drives them.

use std::sync::Arc;

use kiln_dockerfile::{Plan, Step};
use kiln_fs::context::BuildContext;
use kiln_oci::Platform;

use crate::base::BaseImages;
use crate::cache::CacheKey;
use crate::error::BuildError;
use crate::explain::Link;
use crate::image::{History, ImageConfig};
use crate::layer::Layer;
use crate::progress::Steps;
use crate::request::BuildRequest;
use crate::schedule::Board;
use crate::session::Session;

/// A finished stage: what the next stage, a `COPY --from` or the exporter needs.
#[derive(Clone, Debug)]
pub struct StageOutput {
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    /// Cache key of the stage's last step: identifies its file system.
    pub key: CacheKey,
    /// Its steps' inputs from the base on, to explain later misses.
    pub chain: Vec<Link>,
    /// How many of `layers` and of the history entries came from the base.
    pub base_layers: usize,
    pub base_history: usize,
}

/// What every stage of one build shares.
pub struct StageBuild<'a> {
    pub session: &'a Session,
    pub request: &'a BuildRequest,
    pub plan: &'a Plan,
    pub dockerfile_name: &'a str,
    pub context: &'a BuildContext,
    pub bases: &'a BaseImages<'a>,
    pub board: &'a Board<StageOutput>,
    pub steps: &'a Steps<'a>,
    pub secrets: &'a [(String, Vec<u8>)],
    pub platform: &'a Platform,
}

/// The evolving state of a stage while its steps run.
pub struct StageState {
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    pub key: CacheKey,
    /// `[name n/total]` prefix for progress lines.
    pub label: String,
    /// Whether a CMD of this stage was seen (ENTRYPOINT then keeps it).
    pub cmd_set: bool,
    /// The stage's name (`stage-N` when unnamed) and the current step's
    /// index in it: where the index finds the step's earlier records.
    pub stage_name: String,
    pub index: usize,
    /// Inputs of every step so far, the stage's base first.
    pub chain: Vec<Link>,
    /// The image leaves with this stage's layers (the target, unsquashed):
    /// each commit writes its blob in the same pass as its digest.
    pub blobs_now: bool,
}

/// The state of a stage before one of its steps (see `StageState::mark`).
pub struct Mark {
    config: ImageConfig,
    key: CacheKey,
    cmd_set: bool,
    /// How many layers the stage had.
    pub layers: usize,
    chain: usize,
}

impl StageState {
    /// Takes a file step's result: its layer (none when it changed nothing),
    /// its history entry and its inputs.
    pub fn push(&mut self, step: &Step, link: Link, layer: Option<Layer>) {
        add_history(&mut self.config, &step.created_by, layer.is_none());
        self.layers.extend(layer);
        self.key = link.inputs.key();
        self.chain.push(link);
    }

    /// A point to come back to: steps only append to the layers and the
    /// chain, so their lengths and the config are enough.
    pub fn mark(&self) -> Mark {
        Mark {
            config: self.config.clone(),
            key: self.key,
            cmd_set: self.cmd_set,
            layers: self.layers.len(),
            chain: self.chain.len(),
        }
    }

    /// Back to the state `mark` was taken in.
    pub fn rewind(&mut self, mark: &Mark) {
        self.config = mark.config.clone();
        self.key = mark.key;
        self.cmd_set = mark.cmd_set;
        self.layers.truncate(mark.layers);
        self.chain.truncate(mark.chain);
    }

    /// Names the cache index keeps the current step under: its stage and
    /// position, and its instruction text.
    pub fn identities(&self, dockerfile: &str, step: &Step) -> Vec<String> {
        vec![
            format!("pos {dockerfile}\0{}\0{}", self.stage_name, self.index),
            format!("text {}", step.original),
        ]
    }
}

impl StageBuild<'_> {
    /// Waits for a stage this one depends on; fails if the build failed
    /// meanwhile. A stage the target does not reach (named only by an
    /// ONBUILD trigger of a base image) is built here, by the first stage
    /// that needs it: nothing else schedules it.
    pub fn wait_stage(&self, index: usize) -> Result<Arc<StageOutput>, BuildError> {
        if !self.plan.reaches(index) && self.board.claim(index) {
            // An error fails this stage too, and so the build.
            let out = self.build_stage(index)?;
            self.board.publish(index, out);
        }
        self.board.wait(index).ok_or(BuildError::Interrupted)
    }

    pub fn location(&self, step: &Step) -> String {
        format!("{}:{}", self.dockerfile_name, step.span.line)
    }

    /// `COPY at Dockerfile:4`: how an explanation names a step.
    pub fn label(&self, step: &Step) -> String {
        let word = step.original.split_whitespace().next().unwrap_or("step");
        format!("{} at {}", word.to_uppercase(), self.location(step))
    }

    /// An error of `step`, named by its Dockerfile line and instruction.
    pub fn step_error(&self, step: &Step, message: String) -> BuildError {
        BuildError::Step {
            location: self.location(step),
            instruction: step.original.clone(),
            message,
            source: None,
        }
    }
}

/// Appends a history entry as BuildKit writes it.
pub fn add_history(config: &mut ImageConfig, created_by: &str, empty_layer: bool) {
    config.history.push(History {
        created: Some(crate::time::now_rfc3339()),
        created_by: Some(created_by.to_string()),
        comment: Some("buildkit.dockerfile.v0".into()),
        empty_layer,
    });
}
