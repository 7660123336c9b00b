//! kiln's build engine: turns a planned Dockerfile into layers and an image.
//!
//! `Builder::open(root)` once, then `build(&BuildRequest, &dyn Progress)`
//! any number of times; `run_container` and `copy_from_image` serve
//! `kiln run` and `kiln cp`.

mod base;
mod builder;
pub mod cache;
pub mod container;
mod context;
pub mod error;
mod export;
pub mod image;
mod layer;
mod ops;
pub mod options;
pub mod progress;
mod rootfs;
pub mod schedule;
mod stage;
mod time;

pub use builder::{BuildRequest, Builder, Built, Compression, DockerfileSource, Runtime};
pub use error::{BuildError, OptionError};
