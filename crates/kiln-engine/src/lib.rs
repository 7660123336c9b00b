//! kiln's build engine: turns a planned Dockerfile into layers and an image.
//!
//! `Builder::open(root)` once, then `build(&BuildRequest, &dyn Progress)`
//! any number of times; `run_container` and `copy_from_image` serve
//! `kiln run` and `kiln cp`.

mod base;
mod builder;
pub mod cache;
mod cache_export;
mod compress;
pub mod container;
mod context;
pub mod disk;
pub mod error;
mod explain;
mod export;
pub mod image;
pub mod isolation;
mod layer;
mod ops;
pub mod options;
pub mod progress;
mod remote;
mod request;
mod rootfs;
pub mod schedule;
mod session;
mod sizes;
mod squash;
mod stage;
mod state;
mod step;
mod time;

/// Stops a running build (for a Ctrl-C handler): running containers are
/// killed and the build unwinds, unmounting what it mounted.
pub fn interrupt() {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
    kiln_exec::cancel_all();
}

pub(crate) static INTERRUPTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

pub use builder::Builder;
pub use error::{BuildError, OptionError};
pub use isolation::{Chroot, Isolation};
pub use options::LayerCompression;
pub use request::{BuildRequest, Built, DockerfileSource, Runtime};
