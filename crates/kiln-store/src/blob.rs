//! Adding blobs: write to a temp file in `ROOT/ingest`, fsync, verify the
//! digest, rename into `ROOT/blobs/sha256/`. Nothing half-written is ever
//! visible under `blobs/`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use kiln_oci::oci_spec::image::Descriptor;
use kiln_oci::{Digest, HashingWriter};
use rustix::fs::{flock, FlockOperation};
use tempfile::NamedTempFile;

use crate::error::{Error, IoContext, Result};
use crate::fsio::sync_dir;
use crate::store::Store;

/// An in-progress blob. Write the content, then [`BlobWriter::commit`].
/// Dropping it uncommitted removes the temp file.
pub struct BlobWriter {
    store: Store,
    expected: Option<Digest>,
    expected_size: Option<u64>,
    path: PathBuf,
    out: HashingWriter<BufWriter<NamedTempFile>>,
    /// Bytes already handed to the kernel's writeback (see `write`).
    flushing: u64,
}

/// Writeback of a big blob is started every this many bytes, so the
/// fsync at commit finds most of it on disk already instead of writing
/// it all while the build waits (a 200 MB layer: ~1 s on a slow disk).
const WRITEBACK_EVERY: u64 = 8 << 20;

impl Store {
    /// Starts writing a blob. With `expected`, commit fails unless the
    /// content has that digest.
    pub fn ingest(&self, expected: Option<Digest>) -> Result<BlobWriter> {
        let dir = self.ingest_dir();
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-blob-")
            .tempfile_in(&dir)
            .ctx("creating temporary blob file in", &dir)?;
        // The lock tells prune this temp file belongs to a live writer.
        flock(tmp.as_file(), FlockOperation::LockExclusive)
            .map_err(|e| Error::io("locking", tmp.path(), e.into()))?;
        Ok(BlobWriter {
            store: self.clone(),
            expected,
            expected_size: None,
            path: tmp.path().to_path_buf(),
            out: HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp)),
            flushing: 0,
        })
    }

    /// Stores `data` and returns its digest.
    pub fn write_blob(&self, data: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256(data);
        {
            // Already there: just keep it alive for this session.
            let _lock = self.lock(false)?;
            if self.has_blob(&digest) {
                self.hold(&digest)?;
                return Ok(digest);
            }
        }
        let mut w = self.ingest(Some(digest))?;
        w.write_all(data).map_err(Error::Write)?;
        Ok(w.commit()?.0)
    }

    /// Serialises `value` as JSON, stores it and returns its descriptor
    /// (for manifests, configs and indexes).
    pub fn write_json<T: serde::Serialize>(
        &self,
        value: &T,
        media_type: &str,
    ) -> Result<Descriptor> {
        let data = serde_json::to_vec(value)
            .map_err(|e| Error::invalid(format!("{media_type} document"), e))?;
        let digest = self.write_blob(&data)?;
        Ok(Descriptor::new(
            media_type.into(),
            data.len() as u64,
            digest,
        ))
    }

    /// Copies everything from `reader` into a new blob.
    pub fn write_blob_from(
        &self,
        reader: &mut dyn Read,
        expected: Option<Digest>,
    ) -> Result<(Digest, u64)> {
        let mut w = self.ingest(expected)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Invalid {
                        what: "blob source".into(),
                        reason: format!("read failed: {e}"),
                    })
                }
            };
            w.write_all(&buf[..n]).map_err(Error::Write)?;
        }
        w.commit()
    }

    /// Adopts a finished file (e.g. a layer tar written by kiln-fs) as a
    /// blob: its digest is checked, then it is renamed into place when it
    /// is on the store's file system and copied otherwise. The source file
    /// is gone afterwards either way.
    pub fn ingest_file(&self, path: &Path, expected: Option<Digest>) -> Result<(Digest, u64)> {
        let mut f = File::open(path).ctx("opening file to ingest", path)?;
        let mut hasher = HashingWriter::new(io::sink());
        io::copy(&mut f, &mut hasher).ctx("reading file to ingest", path)?;
        let (_, digest, size) = hasher.finish();
        check_expected(expected, digest, size)?;
        f.sync_all().ctx("syncing", path)?;
        drop(f);

        let _lock = self.lock(false)?;
        self.hold(&digest)?;
        let dest = self.blob_path(&digest);
        if dest.is_file() {
            fs::remove_file(path).ctx("removing ingested file", path)?;
            return Ok((digest, size));
        }
        match fs::rename(path, &dest) {
            Ok(()) => {
                sync_dir(dest.parent().expect("blob path has a parent"))?;
                Ok((digest, size))
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
                drop(_lock);
                let mut src = File::open(path).ctx("opening file to ingest", path)?;
                let r = self.write_blob_from(&mut src, Some(digest))?;
                fs::remove_file(path).ctx("removing ingested file", path)?;
                Ok(r)
            }
            Err(e) => Err(Error::io("moving file into the store", path, e)),
        }
    }
}

fn check_expected(expected: Option<Digest>, actual: Digest, size: u64) -> Result<()> {
    match expected {
        Some(e) if e != actual => Err(Error::DigestMismatch {
            expected: e,
            actual,
            size,
        }),
        _ => Ok(()),
    }
}

impl BlobWriter {
    /// Also require this many bytes on commit (a descriptor's size).
    pub fn expect_size(mut self, size: u64) -> Self {
        self.expected_size = Some(size);
        self
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.out.len()
    }

    /// Path of the temp file being written (for messages).
    pub fn temp_path(&self) -> &Path {
        &self.path
    }

    /// Verifies the content and moves it into the store. Returns its digest
    /// and size. On any error the temp file is removed.
    pub fn commit(self) -> Result<(Digest, u64)> {
        self.finish()?.publish()
    }

    /// Verifies and fsyncs the content but keeps it out of `blobs/` until
    /// [`PreparedBlob::publish`], so a multi-blob operation (load) can check
    /// everything before anything becomes visible.
    pub fn finish(self) -> Result<PreparedBlob> {
        let BlobWriter {
            store,
            expected,
            expected_size,
            path,
            out,
            ..
        } = self;
        let (buf, digest, size) = out.finish();
        let tmp = buf
            .into_inner()
            .map_err(|e| Error::io("writing", &path, e.into_error()))?;
        tmp.as_file().sync_all().ctx("syncing", &path)?;
        check_expected(expected, digest, size)?;
        if let Some(want) = expected_size {
            if want != size {
                return Err(Error::SizeMismatch {
                    digest,
                    expected: want,
                    actual: size,
                });
            }
        }
        Ok(PreparedBlob {
            store,
            tmp,
            digest,
            size,
        })
    }
}

/// A verified blob still in `ROOT/ingest`; dropped unpublished, it is removed.
pub struct PreparedBlob {
    store: Store,
    tmp: NamedTempFile,
    digest: Digest,
    size: u64,
}

impl PreparedBlob {
    pub fn digest(&self) -> Digest {
        self.digest
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reopens the verified content for reading.
    pub fn reopen(&self) -> Result<File> {
        self.tmp.reopen().ctx("reopening", self.tmp.path())
    }

    /// Moves the blob into `blobs/` (a no-op if it is already there).
    pub fn publish(self) -> Result<(Digest, u64)> {
        let PreparedBlob {
            store,
            tmp,
            digest,
            size,
        } = self;
        let _lock = store.lock(false)?;
        store.hold(&digest)?;
        let dest = store.blob_path(&digest);
        if dest.is_file() {
            // Same content is already there; the temp file is dropped.
            return Ok((digest, size));
        }
        tmp.persist(&dest)
            .map_err(|e| Error::io("moving blob into the store", &dest, e.error))?;
        sync_dir(dest.parent().expect("blob path has a parent"))?;
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf).map_err(|e| annotate(e, &self.path))?;
        let file = self.out.get_ref().get_ref().as_file();
        let on_file = self.out.len() - self.out.get_ref().buffer().len() as u64;
        if on_file - self.flushing >= WRITEBACK_EVERY {
            start_writeback(file, self.flushing, on_file - self.flushing);
            self.flushing = on_file;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush().map_err(|e| annotate(e, &self.path))
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` to disk, not
/// waiting for it (rustix has no `sync_file_range`). Only a head start for
/// the fsync that follows, so a failure is ignored: the fsync reports it.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads the fd and integer arguments.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as _,
            len as _,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// io::Error has no path; put it in the message (ENOSPC must name the file).
fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("writing {}: {e}", path.display()))
}
