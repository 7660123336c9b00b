//! Writing a combined docker-archive + OCI layout tar.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};

use kiln_oci::media_type as mt;
use kiln_oci::oci_spec::image::Descriptor;
use kiln_oci::{Digest, Reference};

use super::DockerManifestEntry;
use crate::error::{Error, Result};
use crate::image::Image;
use crate::names::{checked_digest, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::Store;

/// An image to save and the names to record for it (none: saved by id).
#[derive(Debug, Clone)]
pub struct SaveItem {
    pub image: Image,
    pub names: Vec<Reference>,
}

/// Saves the images with these names (each resolved for the host platform).
pub fn save<W: Write>(store: &Store, names: &[Reference], out: W) -> Result<()> {
    let items = names
        .iter()
        .map(|n| {
            Ok(SaveItem {
                image: store.resolve(&n.to_string())?,
                names: vec![n.clone()],
            })
        })
        .collect::<Result<Vec<_>>>()?;
    save_images(store, &items, out)
}

/// Writes `items` as one archive to `out`. Blobs shared by several images
/// are written once. Entries are in a fixed order with zero mtimes, so the
/// same images give the same bytes.
pub fn save_images<W: Write>(store: &Store, items: &[SaveItem], out: W) -> Result<()> {
    // Merge items that are the same image under different names.
    let mut merged: Vec<SaveItem> = Vec::new();
    for item in items {
        match merged
            .iter_mut()
            .find(|m| m.image.manifest_digest == item.image.manifest_digest)
        {
            Some(m) => {
                for n in &item.names {
                    if !m.names.contains(n) {
                        m.names.push(n.clone());
                    }
                }
            }
            None => merged.push(item.clone()),
        }
    }

    let mut tar = ArchiveWriter {
        tar: tar::Builder::new(out),
        written: HashSet::new(),
    };
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    tar.dir("blobs/")?;
    tar.dir("blobs/sha256/")?;

    let mut index_entries = Vec::new();
    let mut docker_manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for item in &merged {
        let img = &item.image;
        tar.blob(store, &img.manifest_digest)?;
        tar.blob(store, &img.config_digest)?;
        let mut layer_paths = Vec::new();
        for layer in img.manifest.layers() {
            let d = checked_digest(layer, "layer descriptor")?;
            tar.blob(store, &d)?;
            layer_paths.push(blob_name(&d));
        }

        let base = Descriptor::new(
            img.manifest_descriptor.media_type().clone(),
            img.manifest_descriptor.size(),
            img.manifest_digest,
        );
        if item.names.is_empty() {
            index_entries.push(base.clone());
        }
        let mut repo_tags = Vec::new();
        for name in &item.names {
            let mut d = base.clone();
            d.set_annotations(Some(
                [
                    (ANNOTATION_IMAGE_NAME.to_string(), name.to_string()),
                    (ANNOTATION_REF_NAME.to_string(), name.to_string()),
                ]
                .into_iter()
                .collect(),
            ));
            index_entries.push(d);
            // Docker only knows tags; a digest-only name has no RepoTag.
            if let Some(tag) = name.tag() {
                repo_tags.push(format!("{}:{tag}", name.familiar_name()));
                if let Some(top) = layer_paths.last() {
                    let top = top.trim_start_matches("blobs/sha256/").to_string();
                    repositories
                        .entry(name.familiar_name())
                        .or_default()
                        .insert(tag.to_string(), top);
                }
            }
        }
        docker_manifest.push(DockerManifestEntry {
            config: blob_name(&img.config_digest),
            repo_tags: Some(repo_tags),
            layers: layer_paths,
        });
    }

    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": index_entries,
    });
    tar.file("index.json", &to_json(&index)?)?;
    tar.file("manifest.json", &to_json(&docker_manifest)?)?;
    if !repositories.is_empty() {
        tar.file("repositories", &to_json(&repositories)?)?;
    }
    tar.tar
        .finish()
        .map_err(|e| Error::io("finishing archive", "", e))?;
    Ok(())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::invalid("archive metadata", e))
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

struct ArchiveWriter<W: Write> {
    tar: tar::Builder<W>,
    written: HashSet<Digest>,
}

impl<W: Write> ArchiveWriter<W> {
    fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(kind);
        h
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        let mut h = Self::header(0, 0o755, tar::EntryType::Directory);
        self.tar
            .append_data(&mut h, name, io::empty())
            .map_err(|e| Error::io("writing archive entry", name, e))
    }

    fn file(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let mut h = Self::header(data.len() as u64, 0o644, tar::EntryType::Regular);
        self.tar
            .append_data(&mut h, name, data)
            .map_err(|e| Error::io("writing archive entry", name, e))
    }

    /// Streams a blob from the store, checking its digest as it goes: a
    /// corrupt blob must not be passed on silently.
    fn blob(&mut self, store: &Store, digest: &Digest) -> Result<()> {
        if !self.written.insert(*digest) {
            return Ok(());
        }
        let size = store.blob_size(digest)?;
        let name = blob_name(digest);
        let mut h = Self::header(size, 0o644, tar::EntryType::Regular);
        let file = store.open_blob(digest)?;
        let mut reader = Verify {
            inner: file.take(size),
            hasher: Some(kiln_oci::Sha256Hasher::new()),
            expected: *digest,
            size,
        };
        self.tar
            .append_data(&mut h, &name, &mut reader)
            .map_err(|e| Error::io("writing archive entry", name, e))
    }
}

/// Fails the read at EOF if the content does not hash to `expected`.
struct Verify<R> {
    inner: R,
    hasher: Option<kiln_oci::Sha256Hasher>,
    expected: Digest,
    size: u64,
}

impl<R: Read> Read for Verify<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        if n == 0 && !buf.is_empty() {
            if let Some(h) = self.hasher.take() {
                let len = h.len();
                let actual = h.finish();
                if len != self.size || actual != self.expected {
                    return Err(io::Error::other(format!(
                        "blob {} is corrupt in the store (content hashes to {actual}); run `kiln fsck`",
                        self.expected
                    )));
                }
            }
        }
        Ok(n)
    }
}
