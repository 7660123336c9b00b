//! Progress events of a build, rendered by the CLI.
//!
//! Lifecycle of a step (BuildKit calls it a vertex): `Started` → at most one
//! `Rebuilt` → any number of `Log` → exactly one of `Cached`, `Done` or `Failed`. Steps of independent
//! stages interleave.

use std::time::Duration;

pub type StepId = usize;

#[derive(Clone, Debug)]
pub enum Event {
    /// A step began (`name` like BuildKit's: `[build 2/5] RUN make`).
    Started {
        id: StepId,
        name: String,
    },
    /// Output of a running step.
    Log {
        id: StepId,
        stream: Stream,
        data: Vec<u8>,
    },
    /// The step's result came from the cache; nothing ran.
    Cached {
        id: StepId,
    },
    /// The step missed the cache although an earlier build ran it (or
    /// `--explain-cache` asked): why, before it runs.
    Rebuilt {
        id: StepId,
        /// One line: `file main.go changed (COPY at Dockerfile:4)`.
        reason: String,
        /// Every input that differs, `name: old → new`.
        changes: Vec<String>,
    },
    Done {
        id: StepId,
        elapsed: Duration,
    },
    Failed {
        id: StepId,
        elapsed: Duration,
    },
    /// A warning that belongs to no step (an unused --build-arg, a lint hint).
    Warning(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives events; called from several build threads at once.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event);
}

/// Discards everything (tests, `--progress quiet` callers that print nothing).
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: Event) {}
}

/// Hands out step ids and reports their lifecycle.
pub(crate) struct Steps<'a> {
    progress: &'a dyn Progress,
    next: std::sync::atomic::AtomicUsize,
}

impl<'a> Steps<'a> {
    pub fn new(progress: &'a dyn Progress) -> Self {
        Steps {
            progress,
            next: std::sync::atomic::AtomicUsize::new(1),
        }
    }

    pub fn start(&self, name: String) -> Step<'_> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.progress.event(Event::Started { id, name });
        Step {
            id,
            progress: self.progress,
            started: std::time::Instant::now(),
            finished: false,
        }
    }

    pub fn warn(&self, message: String) {
        self.progress.event(Event::Warning(message));
    }
}

/// One running step; reports `Failed` if dropped without finishing.
pub(crate) struct Step<'a> {
    pub id: StepId,
    progress: &'a dyn Progress,
    started: std::time::Instant,
    finished: bool,
}

impl Step<'_> {
    pub fn log(&self, stream: Stream, data: &[u8]) {
        self.progress.event(Event::Log {
            id: self.id,
            stream,
            data: data.to_vec(),
        });
    }

    pub fn rebuilt(&self, reason: &str, changes: &[String]) {
        self.progress.event(Event::Rebuilt {
            id: self.id,
            reason: reason.to_string(),
            changes: changes.to_vec(),
        });
    }

    pub fn cached(mut self) {
        self.finished = true;
        self.progress.event(Event::Cached { id: self.id });
    }

    pub fn done(mut self) {
        self.finished = true;
        self.progress.event(Event::Done {
            id: self.id,
            elapsed: self.started.elapsed(),
        });
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.progress.event(Event::Failed {
                id: self.id,
                elapsed: self.started.elapsed(),
            });
        }
    }
}
