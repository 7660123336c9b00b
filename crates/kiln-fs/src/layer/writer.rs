//! The tar side of a layer: entries in the conventions BuildKit/containerd
//! use (relative names, dirs with a trailing `/`, numeric owners with empty
//! names, seconds-precision mtimes clamped to SOURCE_DATE_EPOCH, no
//! atime/ctime, PAX records only where ustar cannot hold a value), hardlinks
//! within the layer as link entries, and the diff_id hashed as it is written.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tar::{EntryType, Header};

use super::{LayerInfo, LayerOptions};
use crate::file_hashes::{FileHashes, FileKey, ROOTFS};
use kiln_oci::HashingWriter;

pub(crate) struct LayerWriter<W: Write> {
    tar: tar::Builder<HashingWriter<W>>,
    opts: LayerOptions,
    /// (dev, ino) of multiply linked files already written → their name.
    links: HashMap<(u64, u64), Vec<u8>>,
    pub entries: u64,
    /// Where the content hash of each file written is recorded, for files
    /// that stay as they are (a snapshot being committed).
    hashes: Option<Arc<FileHashes>>,
}

const USTAR_MAX_ID: u64 = 0o7_777_777;
const USTAR_MAX_SIZE: u64 = 0o77_777_777_777;

impl<W: Write> LayerWriter<W> {
    pub fn new(out: W, opts: &LayerOptions) -> Self {
        let mut tar = tar::Builder::new(HashingWriter::new(out));
        tar.mode(tar::HeaderMode::Complete);
        LayerWriter {
            tar,
            opts: opts.clone(),
            links: HashMap::new(),
            entries: 0,
            hashes: None,
        }
    }

    /// Records every regular file's BLAKE3 in `hashes` as it is written.
    pub fn recording_hashes(mut self, hashes: Option<Arc<FileHashes>>) -> Self {
        self.hashes = hashes;
        self
    }

    fn clamp(&self, mtime: i64) -> i64 {
        match self.opts.source_date_epoch {
            Some(epoch) if mtime > epoch => epoch,
            _ => mtime,
        }
    }

    /// Writes the file at `full` (already `lstat`ed as `md`) as `rel`.
    /// `xattrs` are those to record (overlay's own already removed).
    pub fn add(
        &mut self,
        rel: &Path,
        full: &Path,
        md: &Metadata,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<()> {
        refuse_whiteout_name(rel)?;
        let Some(shape) = self.shape(rel, full, md)? else {
            tracing::debug!(path = %full.display(), "socket not representable in a tar; skipped");
            return Ok(());
        };
        let (h, pax) = self.header(md, &shape, xattrs)?;
        if shape.ty == EntryType::Regular {
            self.append_file(h, pax, rel, full, md, shape.size)
        } else {
            self.append(h, pax, &mut io::empty(), 0)
        }
    }

    /// The entry a file becomes (`None` for a socket): a second name of a
    /// multiply linked file is a hard link to the first.
    fn shape(&mut self, rel: &Path, full: &Path, md: &Metadata) -> io::Result<Option<Shape>> {
        let ft = md.file_type();
        let mut name = rel.as_os_str().as_bytes().to_vec();
        let mut link: Option<Vec<u8>> = None;
        let mut size = 0u64;
        let (ty, dev) = if ft.is_dir() {
            name.push(b'/');
            (EntryType::Directory, None)
        } else if ft.is_symlink() {
            link = Some(std::fs::read_link(full)?.into_os_string().into_vec());
            (EntryType::Symlink, None)
        } else if ft.is_file() {
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = self.links.get(&key) {
                    link = Some(first.clone());
                } else {
                    self.links.insert(key, name.clone());
                }
            }
            if link.is_some() {
                (EntryType::Link, None)
            } else {
                size = md.size();
                (EntryType::Regular, None)
            }
        } else if ft.is_char_device() {
            (EntryType::Char, Some(md.rdev()))
        } else if ft.is_block_device() {
            (EntryType::Block, Some(md.rdev()))
        } else if ft.is_fifo() {
            (EntryType::Fifo, Some(0))
        } else {
            return Ok(None);
        };
        Ok(Some(Shape {
            ty,
            name,
            link,
            size,
            dev,
        }))
    }

    /// The ustar header, with PAX records for what does not fit in it.
    fn header(
        &self,
        md: &Metadata,
        shape: &Shape,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<(Header, Pax)> {
        let mut h = Header::new_ustar();
        h.set_entry_type(shape.ty);
        h.set_mode(md.mode() & 0o7777);
        let mut pax: Pax = Vec::new();
        set_id(&mut h, &mut pax, "uid", md.uid() as u64);
        set_id(&mut h, &mut pax, "gid", md.gid() as u64);
        let mtime = self.clamp(md.mtime());
        if (0..=USTAR_MAX_SIZE as i64).contains(&mtime) {
            h.set_mtime(mtime as u64);
        } else {
            h.set_mtime(0);
            pax.push(("mtime".into(), mtime.to_string().into_bytes()));
        }
        if shape.size > USTAR_MAX_SIZE {
            h.set_size(0);
            pax.push(("size".into(), shape.size.to_string().into_bytes()));
        } else {
            h.set_size(shape.size);
        }
        if let Some(rdev) = shape.dev {
            let (maj, min) = (
                rustix::fs::major(rdev as rustix::fs::Dev),
                rustix::fs::minor(rdev as rustix::fs::Dev),
            );
            h.set_device_major(maj)?;
            h.set_device_minor(min)?;
        }
        set_name(&mut h, &mut pax, &shape.name);
        if let Some(l) = &shape.link {
            set_link(&mut h, &mut pax, l);
        }
        for (k, v) in xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax.push((String::from_utf8_lossy(&key).into_owned(), v.clone()));
        }
        Ok((h, pax))
    }

    /// A regular file's header and content, its BLAKE3 recorded when asked.
    fn append_file(
        &mut self,
        h: Header,
        pax: Pax,
        rel: &Path,
        full: &Path,
        md: &Metadata,
        size: u64,
    ) -> io::Result<()> {
        let f = File::options()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(full)?;
        // Exactly `size` bytes: a file that changed length under us
        // would corrupt the stream otherwise.
        let r = HashingReader {
            inner: io::Read::take(f, size),
            hasher: self.hashes.as_ref().map(|_| blake3::Hasher::new()),
        };
        // The tar copies in 8 KiB pieces; reading the file in larger ones
        // saves a syscall per piece (80,000 for a 645 MB toolchain layer).
        let mut r = io::BufReader::with_capacity((size as usize).clamp(8 << 10, 256 << 10), r);
        self.append(h, pax, &mut r, size)?;
        let r = r.into_inner();
        if let (Some(hashes), Some(hasher)) = (&self.hashes, r.hasher) {
            let key = FileKey::from_metadata(ROOTFS, rel, md);
            hashes.put_frozen(key, *hasher.finalize().as_bytes());
        }
        Ok(())
    }

    /// `.wh.NAME` for a deleted `rel`.
    pub fn whiteout(&mut self, rel: &Path) -> io::Result<()> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let mut base = crate::apply::WHITEOUT_PREFIX.as_bytes().to_vec();
        base.extend_from_slice(rel.file_name().unwrap_or(OsStr::new("")).as_bytes());
        self.marker(&parent.join(OsStr::from_bytes(&base)))
    }

    /// `.wh..wh..opq` inside the opaque directory `rel`.
    pub fn opaque(&mut self, rel: &Path) -> io::Result<()> {
        self.marker(&rel.join(crate::apply::OPAQUE_WHITEOUT))
    }

    fn marker(&mut self, rel: &Path) -> io::Result<()> {
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(self.opts.source_date_epoch.unwrap_or(0).max(0) as u64);
        let mut pax = Vec::new();
        set_name(&mut h, &mut pax, rel.as_os_str().as_bytes());
        self.append(h, pax, &mut io::empty(), 0)
    }

    fn append(
        &mut self,
        mut h: Header,
        mut pax: Vec<(String, Vec<u8>)>,
        data: &mut dyn io::Read,
        size: u64,
    ) -> io::Result<()> {
        if !pax.is_empty() {
            pax.sort();
            self.tar
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
        }
        h.set_cksum();
        let mut counted = CountingReader { inner: data, n: 0 };
        self.tar.append(&h, &mut counted)?;
        if counted.n != size {
            return Err(io::Error::other(format!(
                "file changed size while being archived ({} of {size} bytes)",
                counted.n
            )));
        }
        self.entries += 1;
        Ok(())
    }

    pub fn finish(self) -> io::Result<(LayerInfo, W)> {
        let entries = self.entries;
        let (out, digest, size) = self.tar.into_inner()?.finish();
        Ok((
            LayerInfo {
                diff_id: kiln_oci::DiffId(digest),
                size,
                entries,
            },
            out,
        ))
    }
}

/// PAX extended header records: key, value.
type Pax = Vec<(String, Vec<u8>)>;

/// What a file becomes in the tar.
struct Shape {
    ty: EntryType,
    name: Vec<u8>,
    link: Option<Vec<u8>>,
    size: u64,
    dev: Option<u64>,
}

/// Hashes what passes through, when asked to.
struct HashingReader<R> {
    inner: R,
    hasher: Option<blake3::Hasher>,
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

struct CountingReader<'a> {
    inner: &'a mut dyn io::Read,
    n: u64,
}

impl io::Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

fn set_id(h: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, key: &str, id: u64) {
    let v = if id > USTAR_MAX_ID {
        pax.push((key.into(), id.to_string().into_bytes()));
        0
    } else {
        id
    };
    if key == "uid" {
        h.set_uid(v)
    } else {
        h.set_gid(v)
    }
}

/// Ustar name (split into prefix/name when that fits), else a PAX `path`
/// record, as Go's archive/tar does; non-ASCII names always go to PAX.
fn set_name(h: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, name: &[u8]) {
    let ustar = h.as_ustar_mut().expect("ustar header");
    if name.is_ascii() {
        if name.len() <= 100 {
            ustar.name[..name.len()].copy_from_slice(name);
            return;
        }
        // Split at a '/' so the prefix fits 155 bytes and the rest 100.
        let lo = name.len().saturating_sub(101);
        for i in (lo..name.len().min(156)).rev() {
            if name[i] == b'/' && i > 0 && name.len() - i - 1 <= 100 && name.len() - i > 1 {
                ustar.prefix[..i].copy_from_slice(&name[..i]);
                ustar.name[..name.len() - i - 1].copy_from_slice(&name[i + 1..]);
                return;
            }
        }
    }
    let n = name.len().min(100);
    ustar.name[..n].copy_from_slice(&name[..n]);
    pax.push(("path".into(), name.to_vec()));
}

fn set_link(h: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, link: &[u8]) {
    let ustar = h.as_ustar_mut().expect("ustar header");
    let n = link.len().min(100);
    ustar.linkname[..n].copy_from_slice(&link[..n]);
    if link.len() > 100 || !link.is_ascii() {
        pax.push(("linkpath".into(), link.to_vec()));
    }
}

/// Extended attributes of `path` (not followed) worth recording: all but
/// overlay's own bookkeeping, sorted by name.
pub(crate) fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if is_overlay_private(name) {
            continue;
        }
        let key = OsStr::from_bytes(name);
        let mut val = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(path, key, &mut val) {
                Ok(len) => break len,
                Err(rustix::io::Errno::RANGE) => val.resize(val.len() * 4, 0),
                Err(e) => return Err(e.into()),
            }
        };
        val.truncate(len);
        out.push((name.to_vec(), val));
    }
    out.sort();
    Ok(out)
}

pub(crate) fn is_overlay_private(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Value of one xattr, `None` when absent.
pub(crate) fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let mut val = vec![0u8; 64];
    match rustix::fs::lgetxattr(path, name, &mut val) {
        Ok(n) => {
            val.truncate(n);
            Ok(Some(val))
        }
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => Ok(None),
        Err(rustix::io::Errno::RANGE) => Ok(Some(Vec::new())),
        Err(e) => Err(e.into()),
    }
}

/// Directory entries sorted by name bytes (BuildKit's walk order).
pub(crate) fn sorted_children(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names.into_iter().map(PathBuf::from).collect())
}

/// A file whose name starts with `.wh.` reads as a deletion marker in every
/// OCI/Docker layer: stored as itself it would exist where the image was
/// built and delete a file everywhere else it is unpacked.
fn refuse_whiteout_name(rel: &Path) -> io::Result<()> {
    let name = rel.file_name().map_or(&b""[..], |n| n.as_bytes());
    if !name.starts_with(crate::apply::WHITEOUT_PREFIX.as_bytes()) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "/{}: a file named \".wh.*\" cannot be stored in an image layer \
             (layers use such names to mark deleted files); rename or remove it",
            kiln_oci::escape_path(rel)
        ),
    ))
}
