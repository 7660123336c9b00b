//! What is in an image and what is wrong with it: per-layer sizes and the
//! instruction behind each layer, wasted bytes (each counted once), the
//! largest files and directories, CI budgets, and the lean-final guards
//! (missing ELF loader or libraries, bad ENTRYPOINT, unknown USER, TLS
//! without CA bundle, secrets in any layer).
//!
//! One entry point: [`analyze`] reads an image's layers from the store once
//! (through [`kiln_store::Store::open_blob`]) and returns an [`Analysis`];
//! [`check`] evaluates the guards on it ([`guard`] does both, keeping only
//! what the guards read), [`Budget::check`] the gates, and
//! the HTML report draws it. Archives and OCI layouts are first loaded into
//! a scratch store by [`open_input`].

mod budget;
mod elf;
mod error;
mod fs;
mod guards;
pub mod html;

mod input;
mod layer_memo;
mod layer_read;
mod locate;
mod remember;
mod report;
mod secrets;
mod walk;

pub use budget::{parse_ratio, parse_size, Budget, BudgetFailure};
pub use error::{Error, Result};
pub use guards::{check, guard, Finding, Severity};
pub use input::{open_input, Input};
pub use locate::{locate_missing, StageLayers};
pub use remember::remembered;
pub use report::{
    human_size, short_command, Analysis, DirSize, FileSize, LayerReport, StageSize, Totals,
    WasteEntry, WasteReason, STAGES_ANNOTATION,
};
pub use walk::analyze;
