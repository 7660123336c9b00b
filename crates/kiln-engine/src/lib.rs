//! kiln's build engine: turns a planned Dockerfile into layers and an image.

pub mod cache;
pub mod error;
pub mod image;
pub mod options;
pub mod progress;
pub mod schedule;

pub use error::OptionError;
