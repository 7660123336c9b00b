//! What each kind of step does to a stage.

pub mod cache_mount;
pub mod copy;
pub mod meta;
pub mod run;
pub mod workdir;
