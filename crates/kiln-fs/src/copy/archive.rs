//! ADD's local archive extraction: a source file that is a tar (plain or
//! gzip, bzip2, xz, zstd — recognised by content, never by name, like
//! Docker) is extracted into the destination directory; anything else is
//! copied as a file. Remote URLs are never extracted (url.rs).

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::fs::{Mode, OFlags};

use super::chmod::Chmod;
use super::dest::{DestRoot, NewDir};
use super::tree::{Owner, TreeWriter};
use super::{CopyError, CopyOptions, CopyStats};
use crate::context::{walk, Matched, SourceRoot};

use kiln_oci::compression::decompress;

/// Whether a 512-byte block is a valid tar header (checksum over the block
/// with the checksum field read as spaces, as Go's archive/tar checks).
pub fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 || block.iter().all(|b| *b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let Ok(want) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let unsigned: u32 = block[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum();
    let signed: i64 = block[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as i8 as i64
            }
        })
        .sum();
    want == unsigned || want as i64 == signed
}

/// Whether the file behind `fd` (an `O_PATH` handle is fine) is a possibly
/// compressed tar. A corrupt compressed stream counts as "not an archive",
/// so ADD copies it as a file, like Docker.
pub fn is_archive_fd(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let f = rustix::fs::openat(
        rustix::fs::CWD,
        p.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut r = match decompress(std::fs::File::from(f)) {
        Ok(r) => r,
        Err(_) => return Ok(false),
    };
    let mut block = vec![0u8; 512];
    let mut n = 0;
    while n < 512 {
        match r.read(&mut block[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return Ok(false),
        }
    }
    Ok(n == 512 && is_tar_header(&block))
}

/// Extracts archive `m` into directory `into` (relative to the rootfs):
/// first into a scratch directory with the layer extractor (which refuses
/// entries that climb out), then merged with the same rules as COPY so that
/// `--chown`/`--chmod` apply and the rootfs's own symlinks are respected.
pub(super) fn unpack_into(
    m: &Matched,
    root: &DestRoot,
    into: &str,
    new_dir: NewDir,
    owner: Owner,
    chmod: Option<&Chmod>,
    opts: &CopyOptions,
) -> Result<CopyStats, CopyError> {
    let err = |source: io::Error| CopyError::Archive {
        path: m.path.clone(),
        source,
    };
    let tmp_parent = opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("kiln-add-")
        .tempdir_in(&tmp_parent)
        .map_err(err)?;
    let p = format!("/proc/self/fd/{}", m.fd.as_raw_fd());
    let f = std::fs::File::open(&p).map_err(err)?;
    crate::apply_layer(tmp.path(), decompress(f).map_err(err)?)
        .map_err(|e| err(io::Error::other(e)))?;

    let scratch = SourceRoot::rootfs(tmp.path()).map_err(err)?;
    let top = scratch.resolve("")?;
    let dir = root
        .mkdir_all(into, new_dir)
        .map_err(|source| CopyError::Dest {
            dest: format!("/{into}"),
            rootfs: root.path().to_path_buf(),
            source,
        })?;
    let shown = format!("/{into}");
    let mut stats = CopyStats::default();
    let mut w = TreeWriter {
        layer_links: None,
        top_dir: dir.as_fd(),
        top_name: std::ffi::OsStr::new(""),
        contents_into: Some(dir.as_fd()),
        owner,
        chmod,
        shown: &shown,
        stats: &mut stats,
        stack: Vec::new(),
        links: Default::default(),
        host: opts.host,
        writers: None,
        dir_times: Vec::new(),
        batch: None,
    };
    walk::walk(&scratch, &top, None, &mut w)?;
    w.finish()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_oci::compression::{sniff, Compression};

    #[test]
    fn sniffs_by_content() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(sniff(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(
            sniff(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Compression::Xz
        );
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(sniff(b"hello"), Compression::None);
    }

    #[test]
    fn tar_header_checksum() {
        let mut h = tar::Header::new_gnu();
        h.set_path("a.txt").unwrap();
        h.set_size(0);
        h.set_cksum();
        assert!(is_tar_header(h.as_bytes()));
        let mut bad = h.as_bytes().to_vec();
        bad[0] = b'b';
        assert!(!is_tar_header(&bad));
        assert!(!is_tar_header(&[0u8; 512]));
    }
}
