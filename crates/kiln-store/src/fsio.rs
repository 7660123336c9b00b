//! Crash-safe file writing shared by the store's files: a temp file in the
//! target directory, then rename, then the directory synced.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Writes `data` to a new temp file in `dir` and fsyncs it. The file is
/// removed when the returned handle drops unless persisted.
pub(crate) fn write_temp(dir: &Path, data: &[u8]) -> Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .ctx("creating temporary file in", dir)?;
    let path = tmp.path().to_path_buf();
    tmp.write_all(data).ctx("writing", &path)?;
    tmp.as_file().sync_all().ctx("syncing", &path)?;
    Ok(tmp)
}

/// fsync a directory so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("syncing directory", dir)
}
