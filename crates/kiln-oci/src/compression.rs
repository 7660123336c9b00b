//! Compression, in one place: the formats kiln reads (what Docker reads:
//! gzip, bzip2, xz, zstd or none, recognised by content), one sniffer, one
//! decompressing reader, and one compressor. Gzip is written in parallel
//! over fixed-size chunks, each an independent gzip member, so the bytes
//! never depend on the thread count; the compressed output is hashed in the
//! same pass.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::{Digest, HashingWriter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// Uncompressed bytes per gzip member. Large enough that the ratio is within
/// a fraction of a percent of one stream, small enough to spread over cores.
pub const GZIP_CHUNK: usize = 1 << 20;
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;
const ZSTD_JOB: u32 = 2 << 20;

/// Recognises a compression format from a stream's first bytes (six are
/// enough for every format).
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A reader of the plain bytes of a possibly compressed stream, the format
/// sniffed from its first bytes.
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    // A short read at the start is fine: fill_buf returns what is there.
    let kind = sniff(buf.fill_buf()?);
    decoder(buf, kind)
}

/// A reader of the plain bytes of a stream compressed as `kind` (from a
/// media type, say).
pub fn decoder<'a>(reader: impl Read + 'a, kind: Compression) -> io::Result<Box<dyn Read + 'a>> {
    let buf = BufReader::with_capacity(256 * 1024, reader);
    // Multi-member/multi-stream throughout: our own parallel gzip output is
    // a chain of members, and concatenated streams are valid input.
    Ok(match kind {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buf)),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
    })
}

/// Copies `reader` into `writer` compressed, returning the digest and size
/// of the compressed bytes.
pub fn compress(
    mut reader: impl Read,
    writer: impl Write,
    compression: Compression,
) -> io::Result<(Digest, u64)> {
    let mut w = CompressWriter::new(writer, compression)?;
    io::copy(&mut reader, &mut w)?;
    let (digest, size, _) = w.finish()?;
    Ok((digest, size))
}

/// A writer that compresses what it is given and hashes the output.
/// Call [`CompressWriter::finish`]; dropping it loses the tail.
pub struct CompressWriter<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    Plain(HashingWriter<W>),
    Gzip(ParGzip<HashingWriter<W>>),
    Zstd(zstd::stream::write::Encoder<'static, HashingWriter<W>>),
    Bzip2(bzip2::write::BzEncoder<HashingWriter<W>>),
    Xz(liblzma::write::XzEncoder<HashingWriter<W>>),
}

impl<W: Write> CompressWriter<W> {
    pub fn new(writer: W, compression: Compression) -> io::Result<Self> {
        let out = HashingWriter::new(writer);
        let inner = match compression {
            Compression::None => Inner::Plain(out),
            Compression::Gzip => Inner::Gzip(ParGzip::new(out, default_threads())),
            Compression::Zstd => Inner::Zstd(zstd_encoder(out, default_threads())?),
            Compression::Bzip2 => Inner::Bzip2(bzip2::write::BzEncoder::new(
                out,
                bzip2::Compression::default(),
            )),
            Compression::Xz => Inner::Xz(liblzma::write::XzEncoder::new(out, 6)),
        };
        Ok(CompressWriter { inner })
    }

    /// Flushes the tail; returns the digest and size of the compressed
    /// output, and the writer.
    pub fn finish(self) -> io::Result<(Digest, u64, W)> {
        let mut out = match self.inner {
            Inner::Plain(w) => w,
            Inner::Gzip(g) => g.finish()?,
            Inner::Zstd(z) => z.finish()?,
            Inner::Bzip2(b) => b.finish()?,
            Inner::Xz(x) => x.finish()?,
        };
        out.flush()?;
        let (out, digest, size) = out.finish();
        Ok((digest, size, out))
    }
}

impl<W: Write> Write for CompressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(w) => w.write(buf),
            Inner::Gzip(g) => g.write(buf),
            Inner::Zstd(z) => z.write(buf),
            Inner::Bzip2(b) => b.write(buf),
            Inner::Xz(x) => x.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(w) => w.flush(),
            // Members are cut at fixed input offsets only, so a flush must
            // not end one early; it flushes what is already compressed.
            Inner::Gzip(g) => g.out.flush(),
            Inner::Zstd(z) => z.flush(),
            Inner::Bzip2(b) => b.flush(),
            Inner::Xz(x) => x.flush(),
        }
    }
}

/// Streaming zstd with `workers` (at least one) threads: zstd's
/// multithreaded streaming output is the same for any number of workers ≥ 1
/// (tested below), so it never depends on the machine.
fn zstd_encoder<W: Write>(
    out: W,
    workers: usize,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
    enc.multithread(workers.max(1) as u32)?;
    // A fixed job size, so the frame layout is pinned too.
    enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB))?;
    Ok(enc)
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
}

/// Gzip compressor that cuts its input every [`GZIP_CHUNK`] bytes and
/// compresses a batch of chunks on several threads at once.
pub struct ParGzip<W: Write> {
    out: W,
    threads: usize,
    chunk: usize,
    pending: Vec<Vec<u8>>,
    members: u64,
}

impl<W: Write> ParGzip<W> {
    pub fn new(out: W, threads: usize) -> Self {
        Self::with_chunk(out, threads, GZIP_CHUNK)
    }

    /// Like `new` with another chunk size (the output depends on it).
    pub fn with_chunk(out: W, threads: usize, chunk: usize) -> Self {
        ParGzip {
            out,
            threads: threads.max(1),
            chunk: chunk.max(1),
            pending: vec![Vec::with_capacity(chunk)],
            members: 0,
        }
    }

    fn compress_batch(&mut self) -> io::Result<()> {
        let chunks: Vec<Vec<u8>> = std::mem::take(&mut self.pending)
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect();
        let outputs: Vec<io::Result<Vec<u8>>> = if chunks.len() == 1 {
            vec![gzip_member(&chunks[0])]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunks
                    .iter()
                    .map(|c| s.spawn(move || gzip_member(c)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(io::Error::other("gzip thread panicked")))
                    })
                    .collect()
            })
        };
        for o in outputs {
            self.out.write_all(&o?)?;
            self.members += 1;
        }
        // Reuse the first buffer's allocation for the next batch.
        let mut first = chunks.into_iter().next().unwrap_or_default();
        first.clear();
        self.pending = vec![first];
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        let has_data = self.pending.iter().any(|c| !c.is_empty());
        if has_data {
            self.compress_batch()?;
        }
        if self.members == 0 {
            // Empty input is still one valid (empty) gzip member.
            self.out.write_all(&gzip_member(&[])?)?;
        }
        Ok(self.out)
    }
}

impl<W: Write> Write for ParGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let cur = self.pending.last_mut().expect("always one open chunk");
        let take = (self.chunk - cur.len()).min(buf.len());
        cur.extend_from_slice(&buf[..take]);
        if cur.len() == self.chunk {
            if self.pending.len() == self.threads {
                self.compress_batch()?;
            } else {
                self.pending.push(Vec::with_capacity(self.chunk));
            }
        }
        Ok(take)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

fn gzip_member(data: &[u8]) -> io::Result<Vec<u8>> {
    // A fixed header (no name, mtime 0, OS "unknown" as flate2 writes it) so
    // identical input gives identical bytes.
    let mut enc = flate2::GzBuilder::new().write(
        Vec::with_capacity(data.len() / 3 + 64),
        flate2::Compression::new(GZIP_LEVEL),
    );
    enc.write_all(data)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| ((i * 7919) % 251) as u8 ^ (i / 1000) as u8)
            .collect()
    }

    fn roundtrip(data: &[u8], c: Compression) -> Vec<u8> {
        let mut out = Vec::new();
        let (digest, size) = compress(data, &mut out, c).unwrap();
        assert_eq!(size, out.len() as u64);
        assert_eq!(digest, Digest::sha256(&out));
        assert_eq!(
            sniff(&out),
            if data.is_empty() && c == Compression::None {
                Compression::None
            } else {
                c
            }
        );
        let mut back = Vec::new();
        decompress(&out[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        out
    }

    #[test]
    fn roundtrips_each_format() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Bzip2,
            Compression::Xz,
            Compression::Zstd,
        ] {
            for n in [0, 1, GZIP_CHUNK - 1, GZIP_CHUNK + 17] {
                roundtrip(&sample(n), c);
            }
        }
    }

    #[test]
    fn sniffs_by_content() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(sniff(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(sniff(&[0xfd, b'7', b'z', b'X', b'Z', 0]), Compression::Xz);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(sniff(b"ustar"), Compression::None);
        assert_eq!(sniff(b""), Compression::None);
    }

    #[test]
    fn zstd_bytes_do_not_depend_on_thread_count() {
        // Several of zstd's jobs.
        let data = sample(3 * ZSTD_JOB as usize + 1234);
        let run = |workers| {
            let mut enc = zstd_encoder(Vec::new(), workers).unwrap();
            for part in data.chunks(100_003) {
                enc.write_all(part).unwrap();
            }
            enc.finish().unwrap()
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(4));
    }

    #[test]
    fn gzip_bytes_do_not_depend_on_thread_count() {
        // Small chunks keep this quick in debug builds; the logic is the
        // same at any size.
        let chunk = 4096;
        let data = sample(20 * chunk + 123);
        let run = |threads| {
            let mut g = ParGzip::with_chunk(Vec::new(), threads, chunk);
            // Odd write sizes so chunk boundaries fall inside writes.
            for part in data.chunks(777) {
                g.write_all(part).unwrap();
            }
            g.finish().unwrap()
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(5));
        let mut back = Vec::new();
        decompress(&one[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }
}
