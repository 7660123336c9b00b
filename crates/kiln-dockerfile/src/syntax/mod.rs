//! The bottom layer of the frontend: text → logical lines and words. It knows
//! nothing of what an instruction means, only how BuildKit's parser cuts a
//! Dockerfile up: directives, continuations, here-documents, flags, JSON and
//! shell words.

pub(crate) mod flags;
pub(crate) mod heredoc;
pub(crate) mod line;
pub(crate) mod lines;
pub mod shell;
pub(crate) mod words;
