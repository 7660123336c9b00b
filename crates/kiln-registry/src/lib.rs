//! OCI distribution client: pull images from registries into the store and
//! push stored images to registries, with the credentials of Docker's
//! `config.json`, `kiln login`/`logout`, platform selection from indexes,
//! parallel transfers with progress events and retries of dropped
//! connections.
//!
//! Lifecycle: make one [`Client`] with [`ClientOptions`], then call
//! [`Client::pull`] / [`Client::push`] as often as needed (from a tokio
//! runtime); sessions and auth tokens per registry are kept inside.

mod blob;
mod client;
pub mod config;
pub mod endpoint;
mod error;
mod limits;
mod manifest;
mod progress;
mod pull;
mod push;
mod retry;
mod session;
mod transport;
mod upload;

pub use client::{Client, ClientOptions};
pub use error::{Error, Result};
pub use limits::{Limits, DEFAULT_MAX_DOCUMENT};
pub use progress::{BlobKind, Event, NoProgress, Progress};
pub use pull::PulledImage;

/// reqwest is built without a default TLS crypto provider; install ring's
/// (no C toolchain needed, unlike aws-lc) once per process.
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another part of the process installed one first: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Runs a registry future to completion on a fresh multi-threaded tokio
/// runtime, for callers (the CLI) that are not async themselves.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("creating the tokio runtime")
        .block_on(future)
}
