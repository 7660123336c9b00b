//! Progress of pulls and pushes, reported as events through [`Progress`].
//!
//! Lifecycle of one blob: `Waiting` → (`Exists` | `Mounted` | `Started` →
//! `Bytes`* → (`Retrying` → `Bytes`*)* → `Done`). A failed transfer ends with
//! the operation's error instead. Events of different blobs interleave, since
//! layers move in parallel. The manifest comes last: `Manifest`.

use kiln_oci::Digest;

/// What a blob is to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    Layer,
    Config,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The reference resolved to this manifest (after platform selection).
    Resolved { reference: String, manifest: Digest },
    /// The blob is part of the transfer and has not started yet.
    Waiting {
        digest: Digest,
        kind: BlobKind,
        size: u64,
    },
    /// Nothing to move: the destination already has the blob.
    Exists { digest: Digest },
    /// Pushed by a cross-repository mount from `from` (no bytes moved).
    Mounted { digest: Digest, from: String },
    /// Bytes began to move.
    Started { digest: Digest, size: u64 },
    /// `done` of `size` bytes have moved (cumulative, restarts at 0 on retry).
    Bytes {
        digest: Digest,
        done: u64,
        size: u64,
    },
    /// The connection dropped or the registry failed; trying again.
    Retrying {
        digest: Option<Digest>,
        attempt: u32,
        cause: String,
    },
    /// Moved and verified.
    Done { digest: Digest },
    /// The manifest was stored (pull) or uploaded (push).
    Manifest { digest: Digest },
}

/// Receives events from a pull or push. Called from the transfer tasks, so
/// it must be cheap and must not block for long.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event);
}

/// Ignores every event.
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: Event) {}
}

impl<F: Fn(Event) + Send + Sync> Progress for F {
    fn event(&self, event: Event) {
        self(event)
    }
}
