//! Image names: descriptors in `index.json` annotated the way containerd and
//! skopeo write them. Every update is a read-modify-write under the
//! exclusive store lock, written to a temp file, fsynced and renamed.

use std::fs;

use kiln_oci::media_type as mt;
use kiln_oci::oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use kiln_oci::{Digest, Platform, Reference};

use crate::error::{Error, IoContext, Result};
use crate::fsio::{sync_dir, write_temp};
use crate::store::Store;

/// containerd's annotation for the full image name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation skopeo and umoci select by (`oci:ROOT:NAME`). kiln
/// stores the full normalised reference here too, so names of different
/// repositories with the same tag stay distinct.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One entry of `index.json`.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// `None` for an image kept without a name (loaded from an archive that
    /// named none).
    pub name: Option<Reference>,
    pub descriptor: Descriptor,
}

impl IndexEntry {
    /// The target's digest (`None` if index.json names a non-sha256 one).
    pub fn digest(&self) -> Option<Digest> {
        descriptor_digest(&self.descriptor)
    }
}

/// The name an index descriptor carries, if any: containerd's annotation,
/// or a full reference in `org.opencontainers.image.ref.name` (a bare tag
/// there names no repository, so it is not a name).
pub fn name_of(desc: &Descriptor) -> Option<Reference> {
    let ann = desc.annotations().as_ref()?;
    if let Some(r) = ann
        .get(ANNOTATION_IMAGE_NAME)
        .and_then(|n| Reference::parse(n).ok())
    {
        return Some(r);
    }
    ann.get(ANNOTATION_REF_NAME)
        .filter(|n| n.contains('/'))
        .and_then(|n| Reference::parse(n).ok())
}

/// The digest of a descriptor, as kiln's type. oci-spec accepts other
/// algorithms; the store does not hold them.
pub fn descriptor_digest(desc: &Descriptor) -> Option<Digest> {
    Digest::try_from(desc.digest()).ok()
}

pub(crate) fn checked_digest(desc: &Descriptor, what: &str) -> Result<Digest> {
    Digest::try_from(desc.digest()).map_err(|e| Error::invalid(what.to_string(), e))
}

impl Store {
    /// The current `index.json`.
    pub fn read_index(&self) -> Result<ImageIndex> {
        let p = self.index_path();
        let data = fs::read(&p).ctx("reading", &p)?;
        serde_json::from_slice(&data).map_err(|e| Error::invalid(p.display().to_string(), e))
    }

    /// All index entries, in index order.
    pub fn entries(&self) -> Result<Vec<IndexEntry>> {
        Ok(self
            .read_index()?
            .manifests()
            .iter()
            .map(|d| IndexEntry {
                name: name_of(d),
                descriptor: d.clone(),
            })
            .collect())
    }

    /// Read-modify-write of index.json under the exclusive lock; the index
    /// is only written when `f` succeeds.
    pub(crate) fn update_index<T>(
        &self,
        f: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>,
    ) -> Result<T> {
        let _lock = self.lock(true)?;
        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        let out = f(&mut manifests)?;
        index.set_manifests(manifests);
        let json = serde_json::to_vec(&index).map_err(|e| Error::invalid("index.json", e))?;
        let tmp = write_temp(&self.ingest_dir(), &json)?;
        let dest = self.index_path();
        tmp.persist(&dest)
            .map_err(|e| Error::io("replacing", &dest, e.error))?;
        sync_dir(self.root())?;
        Ok(out)
    }

    /// Names the image or index `target` as `reference` (replacing what the
    /// name pointed at before, which is returned). Fails, leaving the index
    /// unchanged, if the target or any blob it needs is missing.
    pub fn tag(&self, reference: &Reference, target: Descriptor) -> Result<Option<Descriptor>> {
        if reference.digest().is_some() {
            return Err(Error::invalid(
                format!("image name {reference}"),
                "a name with a digest cannot be assigned; use NAME:TAG",
            ));
        }
        let desc = with_name(target, reference);
        self.update_index(|manifests| {
            // Checked under the lock: prune cannot remove them meanwhile.
            self.check_closure(&desc)?;
            let old = manifests
                .iter()
                .position(|d| name_of(d).as_ref() == Some(reference))
                .map(|i| manifests.remove(i));
            let digest = descriptor_digest(&desc);
            manifests.retain(|d| !(name_of(d).is_none() && descriptor_digest(d) == digest));
            manifests.push(desc);
            Ok(old)
        })
    }

    /// [`Store::tag`] for a manifest the caller just wrote: builds the
    /// descriptor (with its platform, as containerd records it).
    pub fn tag_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        digest: &Digest,
        size: u64,
        platform: &Platform,
    ) -> Result<Option<Descriptor>> {
        let mut desc = Descriptor::new(media_type.into(), size, digest);
        desc.set_platform(Some(platform.to_oci()));
        self.tag(reference, desc)
    }

    /// Gives several images their names (and keeps `unnamed` ones) in one
    /// index update: all or nothing.
    pub fn name_images(
        &self,
        named: Vec<(Reference, Descriptor)>,
        unnamed: Vec<Descriptor>,
    ) -> Result<()> {
        for (r, _) in &named {
            if r.digest().is_some() {
                return Err(Error::invalid(
                    format!("image name {r}"),
                    "a name with a digest cannot be assigned; use NAME:TAG",
                ));
            }
        }
        self.update_index(|manifests| {
            for (reference, target) in named {
                self.check_closure(&target)?;
                let desc = with_name(target, &reference);
                manifests.retain(|d| name_of(d).as_ref() != Some(&reference));
                let digest = descriptor_digest(&desc);
                manifests.retain(|d| !(name_of(d).is_none() && descriptor_digest(d) == digest));
                manifests.push(desc);
            }
            for target in unnamed {
                self.check_closure(&target)?;
                let digest = descriptor_digest(&target);
                if !manifests.iter().any(|d| descriptor_digest(d) == digest) {
                    manifests.push(without_name(target));
                }
            }
            Ok(())
        })
    }

    /// Keeps an image in the index without a name (like Docker's
    /// `<none>:<none>`), unless an entry for the same digest exists.
    pub fn add_unnamed(&self, target: Descriptor) -> Result<()> {
        let desc = without_name(target);
        self.update_index(|manifests| {
            self.check_closure(&desc)?;
            let digest = descriptor_digest(&desc);
            if !manifests.iter().any(|d| descriptor_digest(d) == digest) {
                manifests.push(desc);
            }
            Ok(())
        })
    }

    /// Removes a name; returns the descriptor it pointed at.
    pub fn untag(&self, reference: &Reference) -> Result<Descriptor> {
        self.update_index(|manifests| {
            let i = manifests
                .iter()
                .position(|d| name_of(d).as_ref() == Some(reference))
                .ok_or_else(|| Error::ImageNotFound {
                    name: reference.to_string(),
                })?;
            Ok(manifests.remove(i))
        })
    }

    /// Removes the unnamed entries for `digest`; returns how many.
    pub fn remove_unnamed(&self, digest: &Digest) -> Result<usize> {
        self.update_index(|manifests| {
            let before = manifests.len();
            manifests.retain(|d| !(name_of(d).is_none() && descriptor_digest(d) == Some(*digest)));
            Ok(before - manifests.len())
        })
    }

    /// Checks that every blob `desc` needs is present: an image manifest
    /// with its config and layers, or an index with at least one child
    /// manifest (a pull may fetch only the host's platform).
    pub(crate) fn check_closure(&self, desc: &Descriptor) -> Result<()> {
        let digest = checked_digest(desc, "image descriptor")?;
        let media_type = desc.media_type().to_string();
        if mt::is_index(&media_type) {
            let index: ImageIndex = self.read_json(&digest, "image index")?;
            let mut present = 0;
            for child in index.manifests() {
                let d = checked_digest(child, "index entry")?;
                if self.has_blob(&d) && mt::is_manifest(child.media_type().as_ref()) {
                    self.check_closure(child)?;
                    present += 1;
                }
            }
            if present == 0 {
                return Err(Error::invalid(
                    format!("image index {digest}"),
                    "none of its platform manifests is in the store",
                ));
            }
            return Ok(());
        }
        if !mt::is_manifest(&media_type) {
            return Err(Error::UnsupportedMediaType {
                what: format!("image {digest}"),
                media_type,
            });
        }
        let manifest: ImageManifest = self.read_json(&digest, "image manifest")?;
        let config = checked_digest(manifest.config(), "config descriptor")?;
        if !self.has_blob(&config) {
            return Err(self.not_found(&config));
        }
        for layer in manifest.layers() {
            let d = checked_digest(layer, "layer descriptor")?;
            if !self.has_blob(&d) {
                return Err(self.not_found(&d));
            }
        }
        Ok(())
    }

    /// Reads a blob and parses it as JSON.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        digest: &Digest,
        what: &str,
    ) -> Result<T> {
        let data = self.read_blob(digest)?;
        serde_json::from_slice(&data).map_err(|e| Error::invalid(format!("{what} {digest}"), e))
    }
}

fn with_name(mut desc: Descriptor, reference: &Reference) -> Descriptor {
    let mut ann = desc.annotations().clone().unwrap_or_default();
    ann.insert(ANNOTATION_IMAGE_NAME.to_string(), reference.to_string());
    ann.insert(ANNOTATION_REF_NAME.to_string(), reference.to_string());
    desc.set_annotations(Some(ann));
    desc
}

fn without_name(mut desc: Descriptor) -> Descriptor {
    if let Some(mut ann) = desc.annotations().clone() {
        ann.remove(ANNOTATION_IMAGE_NAME);
        ann.remove(ANNOTATION_REF_NAME);
        desc.set_annotations(if ann.is_empty() { None } else { Some(ann) });
    }
    desc
}
