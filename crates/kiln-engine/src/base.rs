//! Base images (`FROM image`, `COPY --from=image`, `RUN --mount=from=image`):
//! found in the store, or pulled when missing (or always with `--pull`),
//! each resolved once per build however many stages use it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use kiln_oci::{DiffId, Platform, Reference};

use crate::cache::{inputs, CacheKey, Inputs};
use crate::error::{BuildError, Context};
use crate::image::ImageConfig;
use crate::layer::Layer;
use crate::session::Session;

pub struct BaseImage {
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    /// Identifies the image's file system (its manifest digest).
    pub key: CacheKey,
    /// What the key is made of.
    pub inputs: Inputs,
}

type Slot = Arc<OnceLock<Result<Arc<BaseImage>, String>>>;

pub struct BaseImages<'a> {
    session: &'a Session,
    /// `--pull`: fetch even what the store has.
    always_pull: bool,
    platform: Platform,
    resolved: Mutex<HashMap<String, Slot>>,
}

impl<'a> BaseImages<'a> {
    pub fn new(session: &'a Session, always_pull: bool, platform: Platform) -> Self {
        BaseImages {
            session,
            always_pull,
            platform,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, name: &str) -> Result<Arc<BaseImage>, BuildError> {
        let slot = self
            .resolved
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default()
            .clone();
        slot.get_or_init(|| self.resolve(name).map(Arc::new).map_err(|e| e.to_string()))
            .clone()
            .map_err(|e| BuildError::other(format!("resolving base image {name}"), e))
    }

    fn resolve(&self, name: &str) -> Result<BaseImage, BuildError> {
        let reference = Reference::parse(name).context(|| format!("base image name {name:?}"))?;
        let store = &self.session.store;
        let local = if self.always_pull {
            None
        } else {
            store.resolve(&reference.to_string()).ok()
        };
        let image = match local {
            Some(image) => image,
            None => {
                self.pull(&reference)?;
                store
                    .resolve(&reference.to_string())
                    .context(|| format!("reading the pulled image {reference}"))?
            }
        };
        let raw = store
            .read_blob(&image.config_digest)
            .context(|| format!("reading the config of {reference}"))?;
        let config: ImageConfig = serde_json::from_slice(&raw)
            .context(|| format!("parsing the config of {reference}"))?;
        let descriptors = image.manifest.layers();
        if descriptors.len() != config.rootfs.diff_ids.len() {
            return Err(BuildError::other(
                format!("reading {reference}"),
                format!(
                    "its manifest has {} layers but its config lists {} diff_ids",
                    descriptors.len(),
                    config.rootfs.diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (d, diff_id) in descriptors.iter().zip(&config.rootfs.diff_ids) {
            layers.push(Layer {
                digest: d
                    .digest()
                    .to_string()
                    .parse()
                    .context(|| format!("layer digest of {reference}"))?,
                diff_id: DiffId(
                    diff_id
                        .parse()
                        .context(|| format!("diff_id of {reference}"))?,
                ),
                size: d.size(),
                media_type: d.media_type().to_string(),
            });
        }
        let inputs = inputs::image(&image.manifest_digest.to_string());
        Ok(BaseImage {
            config,
            layers,
            key: inputs.key(),
            inputs,
        })
    }

    fn pull(&self, reference: &Reference) -> Result<(), BuildError> {
        self.session
            .block_on(self.session.registry().pull(
                &self.session.store,
                reference,
                &self.platform,
                &kiln_registry::NoProgress,
            ))
            .map(|_| ())
            .map_err(|e| {
                BuildError::other(
                    format!("pulling {reference}"),
                    format!("{e} (is the name right? images already in the store: `kiln images`)"),
                )
            })
    }
}
