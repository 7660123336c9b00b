//! Push: upload the blobs of a stored image that the registry lacks (HEAD
//! first, a cross-repository mount when the image came from another
//! repository of the same registry), in parallel (`upload.rs`), then the
//! manifest's exact stored bytes so its digest is unchanged. Everything goes
//! through kiln's own bounded HTTP (`session.rs`, `transport.rs`).

use futures_util::{StreamExt, TryStreamExt};
use kiln_oci::{Digest, Reference};
use kiln_store::Store;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::Method;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::manifest::{self, Parsed};
use crate::progress::{Event, Progress};
use crate::pull::blob_list;
use crate::retry::{retry, Context, Failure};
use crate::upload::{push_blob, Target};

impl Client {
    /// Pushes the stored image `local` to `remote` and returns the manifest
    /// digest, which is the digest the image has in the store.
    pub async fn push(
        &self,
        store: &Store,
        local: &Reference,
        remote: &Reference,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let image = store.resolve(&local.to_string())?;
        let raw = store.read_blob(&image.manifest_digest)?;
        self.push_manifest(store, &raw, Some(local), remote, progress)
            .await
    }

    /// Pushes the manifest `raw` (an image manifest whose config and layer
    /// blobs are in the store) to `remote`, uploading the blobs the
    /// registry lacks first. `local` (the name it has in the store) allows a
    /// cross-repository mount and names it in errors.
    pub async fn push_manifest(
        &self,
        store: &Store,
        raw: &[u8],
        local: Option<&Reference>,
        remote: &Reference,
        progress: &dyn Progress,
    ) -> Result<Digest> {
        let manifest_digest = Digest::sha256(raw);
        let local_name = local.map_or_else(|| remote.to_string(), |l| l.to_string());
        let media_type = manifest::media_type_of(raw, &local_name)?;
        let parsed = match manifest::parse(raw, &local_name)? {
            Parsed::Image(m) => m,
            Parsed::Index(_) => {
                return Err(Error::UnsupportedMediaType {
                    what: "image to push",
                    media_type,
                    reference: local_name,
                })
            }
        };
        let content_type = HeaderValue::from_str(&media_type).map_err(|_| Error::BadManifest {
            reference: local_name.clone(),
            cause: format!("media type {media_type:?} is not a valid header value"),
        })?;
        let (registry, repository) = (remote.registry(), remote.repository());
        let name = remote.to_string();
        let session = self.session(registry, progress).await?;
        progress.event(Event::Resolved {
            reference: name.clone(),
            manifest: manifest_digest,
        });
        let blobs = blob_list(&parsed, &local_name)?;
        for b in &blobs {
            progress.event(Event::Waiting {
                digest: b.digest,
                kind: b.kind,
                size: b.size,
            });
        }
        let target = Target {
            session: &session,
            repository,
            name: &name,
            // Same registry, other repository: the blobs may already be there.
            mount_from: local
                .filter(|l| l.registry() == registry && l.repository() != repository)
                .map(|l| l.repository()),
        };
        futures_util::stream::iter(blobs.iter())
            .map(|b| push_blob(&target, store, b, progress))
            .buffer_unordered(self.concurrency())
            .try_collect::<Vec<()>>()
            .await?;
        let reference = match remote.digest() {
            Some(d) => d.to_string(),
            None => remote.tag().unwrap_or("latest").to_string(),
        };
        let on_retry = |attempt, e: &Error| {
            progress.event(Event::Retrying {
                digest: Some(manifest_digest),
                attempt,
                cause: e.to_string(),
            })
        };
        let put = || put_manifest(&target, &reference, raw, &content_type);
        retry(put, on_retry).await?;
        progress.event(Event::Manifest {
            digest: manifest_digest,
        });
        Ok(manifest_digest)
    }
}

/// PUTs the manifest `raw` as `reference` (a tag or its digest).
async fn put_manifest(
    target: &Target<'_>,
    reference: &str,
    raw: &[u8],
    media_type: &HeaderValue,
) -> Result<(), Failure> {
    let session = target.session;
    let what = format!("the reply to the manifest upload of {}", target.name);
    let url = target.url(&format!("manifests/{reference}"))?;
    let res = session
        .authorized(&target.scope(), |auth| {
            let req = session
                .request(Method::PUT, &url, auth.as_deref())
                .header(CONTENT_TYPE, media_type.clone())
                .body(raw.to_vec());
            session.send(req, &url, &what)
        })
        .await?;
    if res.status().is_success() {
        return Ok(());
    }
    let cx = Context {
        registry: &session.registry,
        name: target.name,
        action: "the manifest upload of",
    };
    Err(session.reply_failure(res, &cx, &what).await)
}
