//! `kiln import`: a one-layer image from a root filesystem tar or directory,
//! like `docker import`. The layer is stored gzip-compressed.

mod change;

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use kiln_oci::media_type as mt;
use kiln_oci::oci_spec::image::Descriptor;
use kiln_oci::{DiffId, Digest, HashingWriter, Platform, Reference};
use serde_json::{json, Map};

pub use change::apply_change;

use crate::error::{Error, Result};
use crate::meta::LayerInfo;
use crate::Store;
use kiln_oci::compression::{self as compress, CompressWriter, Compression};

/// What to put in the imported image besides its layer.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// `--change` lines, applied in order.
    pub changes: Vec<String>,
    /// Shown in the history comment (`Imported from <source>`).
    pub source: String,
    pub platform: Platform,
    /// Name to give the image; `None` keeps it unnamed.
    pub name: Option<Reference>,
}

#[derive(Debug, Clone)]
pub struct Imported {
    pub manifest: Descriptor,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub diff_id: DiffId,
}

/// Imports a (possibly compressed: gzip, bzip2, xz, zstd) tar stream. The tar is checked
/// entry by entry as it is copied, so a truncated or non-tar input fails.
pub fn import_tar<R: Read>(store: &Store, input: R, opts: &ImportOptions) -> Result<Imported> {
    // Changes are checked before any data is written.
    let config_obj = changes_config(&opts.changes)?;
    let plain = compress::decompress(input).map_err(|e| bad_input(&opts.source, e))?;
    let mut layer = LayerSink::new(store)?;
    {
        let tee = Tee {
            inner: plain,
            out: &mut layer.out,
            err: None,
        };
        let mut archive = tar::Archive::new(tee);
        let read = count_entries(&mut archive);
        let mut tee = archive.into_inner();
        // Keep the end-of-archive blocks too: the layer is the input as is.
        let read = read.and_then(|n| io::copy(&mut tee, &mut io::sink()).map(|_| n));
        // A failed write to the store shows up as a failed read of the
        // input: blame the store, not the archive.
        if let Some(e) = tee.err.take() {
            return Err(Error::Write(e));
        }
        let entries = read.map_err(|e| bad_input(&opts.source, e))?;
        if entries == 0 {
            return Err(Error::invalid(
                format!("import source {}", opts.source),
                "it is not a tar archive (no entries)",
            ));
        }
    }
    finish(store, layer, config_obj, opts)
}

/// Imports a directory tree (symlinks kept as links, owners and modes kept).
pub fn import_dir(store: &Store, dir: &Path, opts: &ImportOptions) -> Result<Imported> {
    let config_obj = changes_config(&opts.changes)?;
    let mut layer = LayerSink::new(store)?;
    {
        let mut tar = tar::Builder::new(&mut layer.out);
        tar.follow_symlinks(false);
        tar.mode(tar::HeaderMode::Complete);
        tar.append_dir_all(".", dir)
            .and_then(|_| tar.finish())
            .map_err(|e| match e.kind() {
                // EACCES here may be an unreadable input file: not the store.
                io::ErrorKind::PermissionDenied => {
                    Error::invalid(format!("import source {}", dir.display()), e)
                }
                k if crate::error::is_disk_error(k) => Error::Write(e),
                _ => Error::invalid(format!("import source {}", dir.display()), e),
            })?;
    }
    finish(store, layer, config_obj, opts)
}

fn count_entries<R: Read>(archive: &mut tar::Archive<R>) -> io::Result<usize> {
    let mut entries = 0usize;
    for entry in archive.entries()? {
        io::copy(&mut entry?, &mut io::sink())?;
        entries += 1;
    }
    Ok(entries)
}

fn bad_input(source: &str, e: io::Error) -> Error {
    if crate::error::is_disk_error(e.kind()) {
        return Error::Write(e);
    }
    Error::invalid(
        format!("import source {source}"),
        format!("not a readable tar archive: {e}"),
    )
}

fn changes_config(changes: &[String]) -> Result<Map<String, serde_json::Value>> {
    let mut config = Map::new();
    for c in changes {
        apply_change(&mut config, c)?;
    }
    Ok(config)
}

/// Uncompressed tar in → diff id hashed, gzip, blob.
struct LayerSink {
    out: HashingWriter<CompressWriter<crate::BlobWriter>>,
}

impl LayerSink {
    fn new(store: &Store) -> Result<LayerSink> {
        Ok(LayerSink {
            out: HashingWriter::new(
                CompressWriter::new(store.ingest(None)?, Compression::Gzip)
                    .map_err(Error::Write)?,
            ),
        })
    }
}

/// Copies what is read into `out`; remembers a write error for the caller.
struct Tee<'a, R, W> {
    inner: R,
    out: &'a mut W,
    err: Option<io::Error>,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            let msg = e.to_string();
            self.err = Some(e);
            return Err(io::Error::other(msg));
        }
        Ok(n)
    }
}

fn finish(
    store: &Store,
    layer: LayerSink,
    mut config_obj: Map<String, serde_json::Value>,
    opts: &ImportOptions,
) -> Result<Imported> {
    let (gz, diff, uncompressed) = layer.out.finish();
    let (_, _, blob) = gz.finish().map_err(Error::Write)?;
    let (layer_digest, layer_size) = blob.commit()?;
    let diff_id = DiffId(diff);
    store.record_layer_info(
        &layer_digest,
        &LayerInfo {
            diff_id,
            uncompressed_size: uncompressed,
        },
    )?;

    let now = rfc3339_now();
    if !config_obj.contains_key("Env") {
        config_obj.insert(
            "Env".into(),
            json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
        );
    }
    let mut config = json!({
        "architecture": opts.platform.architecture,
        "os": opts.platform.os,
        "created": now,
        "config": config_obj,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": now, "comment": format!("Imported from {}", opts.source)}],
    });
    if let Some(v) = &opts.platform.variant {
        config["variant"] = json!(v);
    }
    let config_desc = store.write_json(&config, mt::OCI_CONFIG)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": config_desc,
        "layers": [{"mediaType": mt::OCI_LAYER_GZIP, "digest": layer_digest.to_string(), "size": layer_size}],
    });
    let mut desc = store.write_json(&manifest, mt::OCI_MANIFEST)?;
    desc.set_platform(Some(opts.platform.to_oci()));
    match &opts.name {
        Some(name) => {
            store.tag(name, desc.clone())?;
        }
        None => store.add_unnamed(desc.clone())?,
    }
    Ok(Imported {
        manifest_digest: Digest::try_from(desc.digest())?,
        manifest: desc,
        config_digest: Digest::try_from(config_desc.digest())?,
        diff_id,
    })
}

/// Current UTC time as RFC 3339 with nanoseconds (honours SOURCE_DATE_EPOCH).
pub fn rfc3339_now() -> String {
    let (secs, nanos) = match std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        Some(s) => (s, 0),
        None => {
            let d = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            (d.as_secs(), d.subsec_nanos())
        }
    };
    let (y, mo, d, h, mi, s) = civil(secs);
    if nanos == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{nanos:09}Z")
    }
}

/// Unix seconds → (year, month, day, hour, minute, second), UTC.
pub fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}
