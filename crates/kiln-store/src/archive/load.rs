//! Reading docker-archive and OCI archives into the store. Every file is
//! staged as a verified temp blob first; nothing is published or named
//! until the whole archive has been read and checked, so a corrupt or
//! truncated archive leaves the store as it was.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use kiln_oci::media_type as mt;
use kiln_oci::oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use kiln_oci::{Compression, DiffId, Digest, Reference};

use kiln_oci::compression::{self as compress, CompressWriter};

use super::{verify, DockerManifestEntry};
use crate::blob::PreparedBlob;
use crate::error::{Error, Result};
use crate::meta::LayerInfo;
use crate::names::{checked_digest, name_of};
use crate::Store;

/// Files at most this big that look like metadata are also kept in memory.
const MAX_META: u64 = 4 << 20;

#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub names: Vec<Reference>,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
}

#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub images: Vec<LoadedImage>,
}

/// Everything read from the archive, not yet visible in the store.
struct Staged {
    blobs: HashMap<String, PreparedBlob>,
    meta: HashMap<String, Vec<u8>>,
    links: HashMap<String, String>,
}

/// Loads every image in a (possibly compressed: gzip, bzip2, xz, zstd) archive.
pub fn load<R: Read>(store: &Store, input: R) -> Result<LoadReport> {
    let reader = compress::decompress(input)
        .map_err(|e| Error::invalid("archive", format!("cannot read it: {e}")))?;
    let staged = stage(store, reader)?;
    let mut out = Output::default();
    if staged.meta.contains_key("index.json") {
        load_oci(store, &staged, &mut out)?;
    }
    if let Some(raw) = staged.meta.get("manifest.json") {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(raw).map_err(|e| Error::invalid("archive manifest.json", e))?;
        for entry in &entries {
            load_docker_entry(store, &staged, entry, &mut out)?;
        }
    } else if !staged.meta.contains_key("index.json") {
        return Err(Error::invalid(
            "archive",
            "it has neither manifest.json nor index.json (not a docker or OCI image archive)",
        ));
    }
    out.publish(store, staged)
}

fn stage<R: Read>(store: &Store, reader: R) -> Result<Staged> {
    let bad = |e: io::Error| Error::invalid("archive", format!("truncated or corrupt tar: {e}"));
    let mut archive = tar::Archive::new(reader);
    let mut staged = Staged {
        blobs: HashMap::new(),
        meta: HashMap::new(),
        links: HashMap::new(),
    };
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = normalize(&entry.path().map_err(bad)?)?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            // Docker's classic save links layers shared by several images.
            let target = entry.link_name().map_err(bad)?.ok_or_else(|| {
                Error::invalid(format!("archive entry {path}"), "link without target")
            })?;
            let base = if kind.is_symlink() {
                Path::new(&path)
                    .parent()
                    .unwrap_or(Path::new(""))
                    .join(target)
            } else {
                target.into_owned()
            };
            staged.links.insert(path, normalize(&base)?);
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.header().size().map_err(bad)?;
        let expected = blob_digest_from_path(&path);
        let name = path.rsplit('/').next().unwrap_or("");
        let is_meta = name.ends_with(".json")
            || matches!(name, "repositories" | "oci-layout" | "json" | "VERSION")
            || (expected.is_some() && size <= MAX_META);
        // Layers: OCI blobs, classic `<id>/layer.tar`, or anything too big
        // to be metadata.
        let is_blob = expected.is_some() || name.ends_with(".tar") || size > MAX_META;
        let what = || format!("archive entry {path}");
        if is_meta && size <= MAX_META && !is_blob {
            let mut data = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut data).map_err(bad)?;
            staged.meta.insert(path, data);
            continue;
        }
        if !is_blob {
            continue;
        }
        let mut w = store.ingest(expected)?;
        let mut keep = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf).map_err(bad)?;
            if n == 0 {
                break;
            }
            if is_meta && (keep.len() as u64) < MAX_META {
                keep.extend_from_slice(&buf[..n]);
            }
            w.write_all(&buf[..n]).map_err(Error::Write)?;
        }
        let prepared = w.finish().map_err(|e| match e {
            Error::DigestMismatch { actual, .. } => Error::invalid(
                what(),
                format!("content hashes to {actual}: the archive is corrupt"),
            ),
            e => e,
        })?;
        if is_meta && keep.len() as u64 == size {
            staged.meta.insert(path.clone(), keep);
        }
        staged.blobs.insert(path, prepared);
    }
    Ok(staged)
}

/// `./a/../b` → `b`; refuses paths that leave the archive.
fn normalize(p: &Path) -> Result<String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir if out.pop() => {}
            _ => {
                return Err(Error::invalid(
                    format!("archive entry {}", p.display()),
                    "path leaves the archive",
                ))
            }
        }
    }
    Ok(out.to_string_lossy().into_owned())
}

fn blob_digest_from_path(path: &str) -> Option<Digest> {
    Digest::from_hex(path.strip_prefix("blobs/sha256/")?).ok()
}

/// Staged blobs referenced by loaded images, and the names to give them.
#[derive(Default)]
struct Output {
    /// Paths of staged blobs to publish.
    used: Vec<String>,
    /// Blobs made during the load (compressed layers, manifests, configs).
    made: Vec<PreparedBlob>,
    layer_infos: Vec<(Digest, LayerInfo)>,
    images: Vec<(LoadedImage, Descriptor)>,
}

impl Output {
    fn add(
        &mut self,
        names: Vec<Reference>,
        desc: Descriptor,
        config_digest: Digest,
    ) -> Result<()> {
        let manifest_digest = checked_digest(&desc, "manifest descriptor")?;
        if let Some((img, _)) = self
            .images
            .iter_mut()
            .find(|(i, _)| i.manifest_digest == manifest_digest)
        {
            for n in names {
                if !img.names.contains(&n) {
                    img.names.push(n);
                }
            }
            return Ok(());
        }
        self.images.push((
            LoadedImage {
                names,
                manifest_digest,
                config_digest,
            },
            desc,
        ));
        Ok(())
    }

    fn publish(self, store: &Store, mut staged: Staged) -> Result<LoadReport> {
        for path in &self.used {
            if let Some(b) = staged.blobs.remove(path) {
                b.publish()?;
            }
        }
        for b in self.made {
            b.publish()?;
        }
        for (d, info) in &self.layer_infos {
            store.record_layer_info(d, info)?;
        }
        let mut named = Vec::new();
        let mut unnamed = Vec::new();
        for (img, desc) in &self.images {
            if img.names.is_empty() {
                unnamed.push(desc.clone());
            }
            for n in &img.names {
                named.push((n.clone(), desc.clone()));
            }
        }
        store.name_images(named, unnamed)?;
        Ok(LoadReport {
            images: self.images.into_iter().map(|(i, _)| i).collect(),
        })
    }
}

impl Staged {
    fn resolve_link<'a>(&'a self, path: &'a str) -> &'a str {
        let mut p = path;
        for _ in 0..16 {
            match self.links.get(p) {
                Some(t) => p = t,
                None => break,
            }
        }
        p
    }

    fn json<T: serde::de::DeserializeOwned>(&self, path: &str, what: &str) -> Result<T> {
        let path = self.resolve_link(path);
        let data = self.meta.get(path).ok_or_else(|| {
            Error::invalid(
                format!("archive {what}"),
                format!("{path} is missing from the archive"),
            )
        })?;
        serde_json::from_slice(data)
            .map_err(|e| Error::invalid(format!("archive {what} {path}"), e))
    }

    fn has_blob(&self, store: &Store, d: &Digest) -> bool {
        self.blobs
            .contains_key(&format!("blobs/sha256/{}", d.hex()))
            || store.has_blob(d)
    }
}

fn load_oci(store: &Store, staged: &Staged, out: &mut Output) -> Result<()> {
    let index: ImageIndex = staged.json("index.json", "index")?;
    for desc in index.manifests() {
        let media_type = desc.media_type().to_string();
        let digest = checked_digest(desc, "archive index.json entry")?;
        let names: Vec<Reference> = name_of(desc).into_iter().collect();
        if mt::is_index(&media_type) {
            let child_index: ImageIndex = oci_blob(store, staged, out, &digest, "image index")?;
            sized(store, staged, desc, &digest, "image index")?;
            let mut any = None;
            for child in child_index.manifests() {
                let cd = checked_digest(child, "index entry")?;
                if staged.has_blob(store, &cd) {
                    any = Some(oci_manifest(store, staged, out, &cd)?);
                    sized(store, staged, child, &cd, "image manifest")?;
                }
            }
            let config = any.ok_or_else(|| {
                Error::invalid(
                    format!("archive image index {digest}"),
                    "none of its manifests is in the archive",
                )
            })?;
            out.add(names, desc.clone(), config)?;
        } else if mt::is_manifest(&media_type) {
            let config = oci_manifest(store, staged, out, &digest)?;
            sized(store, staged, desc, &digest, "image manifest")?;
            let mut d = Descriptor::new(desc.media_type().clone(), desc.size(), digest);
            d.set_platform(desc.platform().clone());
            out.add(names, d, config)?;
        } else {
            return Err(Error::UnsupportedMediaType {
                what: format!("archive index.json entry {digest}"),
                media_type,
            });
        }
    }
    Ok(())
}

/// Checks a manifest and everything it needs is in the archive or store,
/// with the sizes its descriptors state and the diff_ids its config lists;
/// returns its config digest.
fn oci_manifest(
    store: &Store,
    staged: &Staged,
    out: &mut Output,
    digest: &Digest,
) -> Result<Digest> {
    let m: ImageManifest = oci_blob(store, staged, out, digest, "image manifest")?;
    let config = checked_digest(m.config(), "config descriptor")?;
    let ct = m.config().media_type().to_string();
    if !mt::is_config(&ct) {
        return Err(Error::UnsupportedMediaType {
            what: format!("config of manifest {digest}"),
            media_type: ct,
        });
    }
    let image: ImageConfiguration = oci_blob(store, staged, out, &config, "image config")?;
    sized(store, staged, m.config(), &config, "image config")?;
    let diff_ids = image.rootfs().diff_ids();
    if diff_ids.len() != m.layers().len() {
        return Err(Error::invalid(
            format!("archive image manifest {digest}"),
            format!(
                "it lists {} layers but its config has {} diff_ids",
                m.layers().len(),
                diff_ids.len()
            ),
        ));
    }
    for (layer, want) in m.layers().iter().zip(diff_ids) {
        let lt = layer.media_type().to_string();
        let ld = checked_digest(layer, "layer descriptor")?;
        let Some(compression) = mt::layer_compression(&lt) else {
            return Err(Error::UnsupportedMediaType {
                what: format!("layer {ld} of manifest {digest}"),
                media_type: lt,
            });
        };
        let what = format!("layer of manifest {digest}");
        let path = require_blob(store, staged, out, &ld, &what)?;
        sized(store, staged, layer, &ld, &what)?;
        let want: DiffId = want
            .parse()
            .map_err(|e| Error::invalid(format!("archive image config {config}"), e))?;
        let what = format!("archive layer {ld} of manifest {digest}");
        let info = match staged.blobs.get(&path) {
            Some(b) => verify::verify_layer(store, b.reopen()?, compression, &want, &what)?,
            None => store.layer_info(layer)?,
        };
        if info.diff_id != want {
            return Err(Error::invalid(
                what,
                format!(
                    "its content hashes to {} but the image config expects diff_id {want}",
                    info.diff_id
                ),
            ));
        }
        out.layer_infos.push((ld, info));
    }
    Ok(config)
}

/// Refuses a descriptor whose size is not the size of the blob it names.
fn sized(
    store: &Store,
    staged: &Staged,
    desc: &Descriptor,
    digest: &Digest,
    what: &str,
) -> Result<()> {
    let path = format!("blobs/sha256/{}", digest.hex());
    let actual = match staged.blobs.get(&path) {
        Some(b) => b.size(),
        None => std::fs::metadata(store.blob_path(digest))
            .map_err(|e| Error::io("reading the size of", store.blob_path(digest), e))?
            .len(),
    };
    verify::check_size(what, digest, desc.size(), actual)
}

fn oci_blob<T: serde::de::DeserializeOwned>(
    store: &Store,
    staged: &Staged,
    out: &mut Output,
    digest: &Digest,
    what: &str,
) -> Result<T> {
    let path = require_blob(store, staged, out, digest, what)?;
    match staged.meta.get(&path) {
        Some(data) => serde_json::from_slice(data)
            .map_err(|e| Error::invalid(format!("archive {what} {digest}"), e)),
        None => store.read_json(digest, what),
    }
}

fn require_blob(
    store: &Store,
    staged: &Staged,
    out: &mut Output,
    digest: &Digest,
    what: &str,
) -> Result<String> {
    let path = format!("blobs/sha256/{}", digest.hex());
    if staged.blobs.contains_key(&path) {
        if !out.used.contains(&path) {
            out.used.push(path.clone());
        }
    } else if !store.retain(digest)? {
        return Err(Error::invalid(
            format!("archive {what} {digest}"),
            format!("{path} is missing from the archive"),
        ));
    }
    Ok(path)
}

/// One image of a docker-archive `manifest.json`, when the archive has no
/// OCI index describing it: build an OCI manifest (skopeo's `oci:` transport
/// only finds OCI media types in index.json), storing
/// uncompressed layers gzip-compressed.
fn load_docker_entry(
    store: &Store,
    staged: &Staged,
    entry: &DockerManifestEntry,
    out: &mut Output,
) -> Result<()> {
    let mut names = Vec::new();
    for t in entry.repo_tags.iter().flatten() {
        names.push(Reference::parse(t)?);
    }
    let config_path = staged.resolve_link(&entry.config).to_string();
    let config_bytes = staged.meta.get(&config_path).ok_or_else(|| {
        Error::invalid(
            "archive manifest.json",
            format!("config {} is missing from the archive", entry.config),
        )
    })?;
    let config_digest = Digest::sha256(config_bytes);
    // An OCI index in the same archive (Docker 25+, kiln) already described it.
    if let Some((img, _)) = out
        .images
        .iter_mut()
        .find(|(i, _)| i.config_digest == config_digest)
    {
        for n in names {
            if !img.names.contains(&n) {
                img.names.push(n);
            }
        }
        return Ok(());
    }
    let config: ImageConfiguration = serde_json::from_slice(config_bytes)
        .map_err(|e| Error::invalid(format!("archive image config {}", entry.config), e))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != entry.layers.len() {
        return Err(Error::invalid(
            format!("archive image {}", entry.config),
            format!(
                "{} layers listed but its config has {} diff_ids",
                entry.layers.len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (path, want) in entry.layers.iter().zip(diff_ids) {
        let real = staged.resolve_link(path);
        let blob = staged.blobs.get(real).ok_or_else(|| {
            Error::invalid(
                "archive manifest.json",
                format!("layer {path} is missing from the archive"),
            )
        })?;
        let want: DiffId = want
            .parse()
            .map_err(|e| Error::invalid(format!("archive image config {}", entry.config), e))?;
        layers.push(docker_layer(store, blob, real, want, out)?);
    }
    let config_blob = {
        let mut w = store.ingest(Some(config_digest))?;
        w.write_all(config_bytes).map_err(Error::Write)?;
        w.finish()?
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_MANIFEST,
        "config": {"mediaType": mt::OCI_CONFIG, "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": layers,
    });
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| Error::invalid("manifest", e))?;
    let mut w = store.ingest(None)?;
    w.write_all(&manifest_bytes).map_err(Error::Write)?;
    let manifest_blob = w.finish()?;
    let desc = Descriptor::new(
        mt::OCI_MANIFEST.into(),
        manifest_blob.size(),
        manifest_blob.digest(),
    );
    out.made.push(config_blob);
    out.made.push(manifest_blob);
    out.add(names, desc, config_digest)
}

/// Verifies a docker-archive layer against its diff id and returns its
/// manifest descriptor; plain, bzip2 and xz layers are stored as gzip.
fn docker_layer(
    store: &Store,
    blob: &PreparedBlob,
    path: &str,
    want: DiffId,
    out: &mut Output,
) -> Result<Descriptor> {
    let what = format!("archive layer {path}");
    let mut head = [0u8; 6];
    let n = blob
        .reopen()?
        .read(&mut head)
        .map_err(|e| Error::invalid(&what, e))?;
    let kind = compress::sniff(&head[..n]);
    let info = verify::verify_layer(store, blob.reopen()?, kind, &want, &what)?;
    // Docker reads plain, bzip2 and xz layers too; they have no OCI media
    // type, so they are stored as gzip.
    let (media_type, digest, size) = if !matches!(kind, Compression::Gzip | Compression::Zstd) {
        let mut gz =
            CompressWriter::new(store.ingest(None)?, Compression::Gzip).map_err(Error::Write)?;
        // Both ends are in the store (the layer is staged and verified
        // already): a failure here is the store's disk, not the archive.
        let mut plain = compress::decoder(blob.reopen()?, kind).map_err(Error::Write)?;
        io::copy(&mut plain, &mut gz).map_err(|e| match e.kind() {
            k if crate::error::is_disk_error(k) => Error::Write(e),
            _ => Error::io("compressing staged layer in", store.root(), e),
        })?;
        let (_, _, blob) = gz.finish().map_err(Error::Write)?;
        let prepared = blob.finish()?;
        let r = (mt::OCI_LAYER_GZIP, prepared.digest(), prepared.size());
        out.made.push(prepared);
        r
    } else {
        if !out.used.iter().any(|p| p == path) {
            out.used.push(path.to_string());
        }
        let mt = if kind == Compression::Gzip {
            mt::OCI_LAYER_GZIP
        } else {
            mt::OCI_LAYER_ZSTD
        };
        (mt, blob.digest(), blob.size())
    };
    out.layer_infos.push((digest, info));
    Ok(Descriptor::new(media_type.into(), size, digest))
}
