//! Checks of what an archive claims, made before anything it holds is
//! published or named: descriptor sizes against the bytes present, and
//! every layer's diff_id against its decompressed content. An archive is
//! untrusted input, so decompression only hashes (no disk, constant
//! memory) and stops as soon as the layer outgrows what it could ever be
//! unpacked into (the free space of the store's file system).

use std::io::{self, Read};

use kiln_oci::{Compression, DiffId, Digest, HashingWriter};

use crate::error::{Error, Result};
use crate::meta::LayerInfo;
use crate::Store;
use kiln_oci::compression as compress;

/// Refuses a blob whose descriptor states another size than it has.
pub(super) fn check_size(what: &str, digest: &Digest, claimed: u64, actual: u64) -> Result<()> {
    if claimed == actual {
        return Ok(());
    }
    Err(Error::invalid(
        format!("archive {what} {digest}"),
        format!("its descriptor says {claimed} bytes but the blob has {actual}"),
    ))
}

/// Decompresses `blob` (as `compression` says), hashes it and compares the
/// result with `want`. Returns what the layer holds.
pub(super) fn verify_layer(
    store: &Store,
    blob: impl Read,
    compression: Compression,
    want: &DiffId,
    what: &str,
) -> Result<LayerInfo> {
    let limit = free_space(store);
    let plain = compress::decoder(blob, compression)
        .map_err(|e| Error::invalid(what, format!("cannot decompress it: {e}")))?;
    let mut hasher = HashingWriter::new(io::sink());
    // One byte past the limit is enough to know it is too big.
    let copied = io::copy(&mut plain.take(limit.saturating_add(1)), &mut hasher)
        .map_err(|e| Error::invalid(what, format!("cannot decompress it: {e}")))?;
    if copied > limit {
        return Err(Error::invalid(
            what,
            format!(
                "it decompresses to more than the {limit} bytes free on the store's file \
                 system, where it would have to be unpacked (a decompression bomb?); \
                 stopped there"
            ),
        ));
    }
    let (_, actual, size) = hasher.finish();
    if actual != *want.digest() {
        return Err(Error::invalid(
            what,
            format!("its content hashes to {actual} but the image config expects diff_id {want}"),
        ));
    }
    Ok(LayerInfo {
        diff_id: *want,
        uncompressed_size: size,
    })
}

/// Bytes an unprivileged writer may still use where the store lives; no
/// limit when that cannot be learnt.
fn free_space(store: &Store) -> u64 {
    match rustix::fs::statvfs(store.root()) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(_) => u64::MAX,
    }
}
