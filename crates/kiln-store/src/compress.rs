//! Compression for archives and imports. Kept local (flate2 single stream)
//! so the store does not depend on kiln-fs; layers built by the engine are
//! compressed by kiln-fs before they reach the store.

use std::io::{self, BufRead, BufReader, Read};

use flate2::bufread::MultiGzDecoder;
use kiln_oci::Compression;

/// Recognises gzip or zstd from the first bytes.
pub(crate) fn detect(prefix: &[u8]) -> Compression {
    if prefix.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// The plain bytes of a possibly compressed stream.
pub(crate) fn decompress<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(256 * 1024, reader);
    let kind = detect(buf.fill_buf()?);
    buffered_decoder(buf, kind)
}

/// The plain bytes of a stream compressed as a media type says.
pub(crate) fn decoder<'a>(
    reader: impl Read + 'a,
    kind: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    buffered_decoder(BufReader::with_capacity(256 * 1024, reader), kind)
}

fn buffered_decoder<'a>(
    buf: impl BufRead + 'a,
    kind: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match kind {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
    })
}

/// gzip at the default level, as Docker writes layers.
pub(crate) fn gzip<W: io::Write>(w: W) -> flate2::write::GzEncoder<W> {
    flate2::write::GzEncoder::new(w, flate2::Compression::new(6))
}
