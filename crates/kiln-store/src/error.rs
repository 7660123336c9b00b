//! Errors of the content store. Each names the file, blob or image involved.

use std::io;
use std::path::PathBuf;

use kiln_oci::{Digest, DigestError, ReferenceError};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation failed; `action` says what kiln was doing.
    /// A full or read-only disk says so (EACCES may be an input's).
    #[error("{action} {}{}", kiln_oci::escape_path(path), full_hint(source.kind()))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing a blob's temp file failed (the io error names the file).
    #[error("storing blob{}", disk_hint(.0.kind()))]
    Write(#[source] io::Error),
    #[error(
        "blob content does not match its digest: expected {expected}, got {actual} ({size} bytes)"
    )]
    DigestMismatch {
        expected: Digest,
        actual: Digest,
        size: u64,
    },
    #[error("blob {digest} in the store is corrupt: {} hashes to {actual}; run `kiln fsck`", path.display())]
    Corrupt {
        digest: Digest,
        actual: Digest,
        path: PathBuf,
    },
    #[error("blob {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is not in the store at {}", root.display())]
    BlobNotFound { digest: Digest, root: PathBuf },
    #[error("image {name:?} not found in the store")]
    ImageNotFound { name: String },
    #[error("image name {name:?} is ambiguous: it matches {count} images")]
    Ambiguous { name: String, count: usize },
    /// `what` and `reason` often quote an archive or image (entry names,
    /// tar parse errors): they are printed escaped.
    #[error(
        "{} is not valid: {}",
        kiln_oci::escape(what),
        kiln_oci::escape(reason)
    )]
    Invalid { what: String, reason: String },
    #[error("{what} has unsupported media type {media_type:?}")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl ToString) -> Error {
        Error::Invalid {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// The kind of the underlying I/O error, if this is one.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } | Error::Write(source) => Some(source.kind()),
            _ => None,
        }
    }
}

/// Whether an I/O error is the fault of the disk kiln writes to (full,
/// over quota, read-only, not writable), never of the data being read.
pub fn is_disk_error(kind: io::ErrorKind) -> bool {
    use io::ErrorKind::*;
    matches!(
        kind,
        StorageFull | QuotaExceeded | ReadOnlyFilesystem | PermissionDenied
    )
}

fn full_hint(kind: io::ErrorKind) -> &'static str {
    match kind {
        io::ErrorKind::PermissionDenied => "",
        k => disk_hint(k),
    }
}

fn disk_hint(kind: io::ErrorKind) -> &'static str {
    match kind {
        io::ErrorKind::StorageFull => {
            ": the disk is full (free space on it, or use --root on a larger disk)"
        }
        io::ErrorKind::QuotaExceeded => ": the disk quota is exhausted",
        io::ErrorKind::ReadOnlyFilesystem => ": the store is on a read-only file system",
        io::ErrorKind::PermissionDenied => ": the store is not writable by this user",
        _ => "",
    }
}

/// Attaches "what was being done, to which path" to I/O results.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_is_printed_escaped() {
        let e = Error::invalid("archive entry a\u{1b}]0;t\u{7}", "bad \u{1b}[2J field");
        assert_eq!(
            e.to_string(),
            "archive entry a\\u{1b}]0;t\\u{7} is not valid: bad \\u{1b}[2J field"
        );
    }
}
