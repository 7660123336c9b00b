//! Looking images up by name or id, and summarising them for `kiln images`.

use kiln_oci::media_type as mt;
use kiln_oci::oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use kiln_oci::{Digest, Platform, Reference};

use crate::error::{Error, Result};
use crate::names::{checked_digest, descriptor_digest, IndexEntry};
use crate::Store;

/// A single-platform image resolved from the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The name it was found by (or the first name of an image found by id).
    pub reference: Option<Reference>,
    /// Descriptor of the platform manifest (not of an index above it).
    pub manifest_descriptor: Descriptor,
    pub manifest_digest: Digest,
    pub manifest: ImageManifest,
    pub config_digest: Digest,
    pub config: ImageConfiguration,
    /// The index entry the name points at, when it is a multi-platform index.
    pub index_descriptor: Option<Descriptor>,
}

/// One line of `kiln images`.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    pub name: Option<Reference>,
    pub manifest_digest: Digest,
    /// Docker's image id: the digest of the config.
    pub config_digest: Option<Digest>,
    /// `created` from the config (RFC 3339).
    pub created: Option<String>,
    pub platform: Option<Platform>,
    /// Bytes of config and compressed layers (what a pull transfers).
    pub compressed_size: u64,
    /// Bytes of the uncompressed layers (Docker's SIZE).
    pub uncompressed_size: u64,
    /// Why the image could not be read, if it could not.
    pub problem: Option<String>,
}

impl Store {
    /// Finds an image for the host platform. `name` may be a reference
    /// (`alpine`, `localhost:5000/a:b`, `name@sha256:…`), a manifest or
    /// config digest, or a unique prefix of an image id, as Docker accepts.
    pub fn resolve(&self, name: &str) -> Result<Image> {
        self.resolve_for(name, &Platform::host())
    }

    pub fn resolve_for(&self, name: &str, platform: &Platform) -> Result<Image> {
        let entries = self.entries()?;
        // A full digest: a manifest blob, or an image id (config digest).
        if let Ok(d) = name.parse::<Digest>() {
            return self.resolve_digest(&entries, name, &d, platform);
        }
        let parsed = Reference::parse(name);
        if let Ok(r) = &parsed {
            if let Some(d) = r.digest() {
                let img = self.resolve_digest(&entries, name, d, platform)?;
                return Ok(Image {
                    reference: Some(r.clone()),
                    ..img
                });
            }
            if let Some(e) = entries.iter().find(|e| e.name.as_ref() == Some(r)) {
                return self.image_from_entry(e, platform);
            }
        }
        // An id prefix, as `docker inspect 3f57` takes.
        let prefix = name.strip_prefix("sha256:").unwrap_or(name);
        if !prefix.is_empty() && prefix.len() <= 64 && prefix.bytes().all(|b| b.is_ascii_hexdigit())
        {
            let prefix = prefix.to_ascii_lowercase();
            let mut found: Vec<Image> = Vec::new();
            for e in &entries {
                let Ok(img) = self.image_from_entry(e, platform) else {
                    continue;
                };
                let hit = img.config_digest.hex().starts_with(&prefix)
                    || img.manifest_digest.hex().starts_with(&prefix);
                if hit
                    && !found
                        .iter()
                        .any(|f| f.manifest_digest == img.manifest_digest)
                {
                    found.push(img);
                }
            }
            match found.len() {
                0 => {}
                1 => return Ok(found.remove(0)),
                n => {
                    return Err(Error::Ambiguous {
                        name: name.to_string(),
                        count: n,
                    })
                }
            }
        }
        match parsed {
            Err(e) if !name.bytes().all(|b| b.is_ascii_hexdigit()) => Err(e.into()),
            _ => Err(Error::ImageNotFound {
                name: name.to_string(),
            }),
        }
    }

    fn resolve_digest(
        &self,
        entries: &[IndexEntry],
        name: &str,
        digest: &Digest,
        platform: &Platform,
    ) -> Result<Image> {
        if let Some(e) = entries.iter().find(|e| e.digest() == Some(*digest)) {
            return self.image_from_entry(e, platform);
        }
        for e in entries {
            if let Ok(img) = self.image_from_entry(e, platform) {
                if img.manifest_digest == *digest || img.config_digest == *digest {
                    return Ok(img);
                }
            }
        }
        // A manifest that is stored but not named (e.g. a platform manifest).
        if self.has_blob(digest) {
            let data = self.read_blob(digest)?;
            if let Some(media_type) = sniff_media_type(&data) {
                let desc = Descriptor::new(media_type.as_str().into(), data.len() as u64, digest);
                return self.image_from_descriptor(None, &desc, platform);
            }
        }
        Err(Error::ImageNotFound {
            name: name.to_string(),
        })
    }

    fn image_from_entry(&self, e: &IndexEntry, platform: &Platform) -> Result<Image> {
        self.image_from_descriptor(e.name.clone(), &e.descriptor, platform)
    }

    /// Loads the manifest and config a descriptor points at, choosing the
    /// platform's manifest if it is an index.
    pub fn image_from_descriptor(
        &self,
        reference: Option<Reference>,
        desc: &Descriptor,
        platform: &Platform,
    ) -> Result<Image> {
        let digest = checked_digest(desc, "image descriptor")?;
        let media_type = desc.media_type().to_string();
        if mt::is_index(&media_type) {
            let index: ImageIndex = self.read_json(&digest, "image index")?;
            let child = select_platform(self, &index, platform).ok_or_else(|| {
                let what = reference
                    .as_ref()
                    .map_or_else(|| digest.to_string(), |r| r.to_string());
                Error::ImageNotFound {
                    name: format!("{what} for platform {platform}"),
                }
            })?;
            let mut img = self.image_from_descriptor(reference, &child, platform)?;
            img.index_descriptor = Some(desc.clone());
            return Ok(img);
        }
        if !mt::is_manifest(&media_type) {
            return Err(Error::UnsupportedMediaType {
                what: format!("image {digest}"),
                media_type,
            });
        }
        let manifest: ImageManifest = self.read_json(&digest, "image manifest")?;
        let config_digest = checked_digest(manifest.config(), "config descriptor")?;
        let config_type = manifest.config().media_type().to_string();
        if !mt::is_config(&config_type) {
            return Err(Error::UnsupportedMediaType {
                what: format!("config of image {digest}"),
                media_type: config_type,
            });
        }
        let config: ImageConfiguration = self.read_json(&config_digest, "image config")?;
        Ok(Image {
            reference,
            manifest_descriptor: desc.clone(),
            manifest_digest: digest,
            manifest,
            config_digest,
            config,
            index_descriptor: None,
        })
    }

    /// One summary per index entry; unreadable images are listed with the
    /// reason rather than failing the whole listing.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let host = Platform::host();
        let mut out = Vec::new();
        for e in self.entries()? {
            let manifest_digest = e.digest().unwrap_or_else(|| Digest::from_bytes([0; 32]));
            let mut s = ImageSummary {
                name: e.name.clone(),
                manifest_digest,
                config_digest: None,
                created: None,
                platform: None,
                compressed_size: 0,
                uncompressed_size: 0,
                problem: None,
            };
            match self.summarise(&e, &host, &mut s) {
                Ok(()) => {}
                Err(err) => s.problem = Some(err.to_string()),
            }
            out.push(s);
        }
        Ok(out)
    }

    fn summarise(&self, e: &IndexEntry, host: &Platform, s: &mut ImageSummary) -> Result<()> {
        let img = self.image_from_entry(e, host)?;
        s.config_digest = Some(img.config_digest);
        s.created = img.config.created().clone();
        s.platform = Some(Platform::new(
            &img.config.os().to_string(),
            &img.config.architecture().to_string(),
            img.config.variant().as_deref(),
        ));
        s.compressed_size = img.manifest.config().size()
            + img.manifest.layers().iter().map(|l| l.size()).sum::<u64>();
        for layer in img.manifest.layers() {
            s.uncompressed_size += self.layer_info(layer)?.uncompressed_size;
        }
        Ok(())
    }
}

/// The manifest of `index` for `platform` whose blob is present, preferring
/// an exact variant match.
fn select_platform(store: &Store, index: &ImageIndex, platform: &Platform) -> Option<Descriptor> {
    let mut candidates: Vec<(bool, &Descriptor)> = index
        .manifests()
        .iter()
        .filter(|d| mt::is_manifest(d.media_type().as_ref()))
        .filter(|d| descriptor_digest(d).is_some_and(|x| store.has_blob(&x)))
        .filter_map(|d| {
            let p = d.platform().as_ref().map(Platform::from_oci)?;
            platform
                .matches(&p)
                .then_some((p.variant == platform.variant, d))
        })
        .collect();
    candidates.sort_by_key(|(exact, _)| !exact);
    candidates.first().map(|(_, d)| (*d).clone())
}

/// The media type a manifest or index declares about itself.
fn sniff_media_type(data: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    if let Some(m) = v.get("mediaType").and_then(|m| m.as_str()) {
        return Some(m.to_string());
    }
    if v.get("manifests").is_some() {
        Some(mt::OCI_INDEX.to_string())
    } else if v.get("layers").is_some() && v.get("config").is_some() {
        Some(mt::OCI_MANIFEST.to_string())
    } else {
        None
    }
}
