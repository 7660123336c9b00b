//! Push: upload the blobs of a stored image that the registry lacks (HEAD
//! first, a cross-repository mount when the image came from another
//! repository of the same registry), in parallel, then the manifest's exact
//! stored bytes so its digest is unchanged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use http::HeaderValue;
use kiln_oci::{Digest, Reference};
use kiln_store::Store;
use tokio::io::AsyncReadExt;

use crate::client::{oci_digest_reference, oci_reference, Client, Session};
use crate::error::{Error, Result};
use crate::manifest::{self, Parsed};
use crate::progress::{Event, Progress};
use crate::pull::{blob_list, Blob};
use crate::retry::{classify, retry, Context, Failure};

/// Bytes read from a blob file per upload chunk.
const CHUNK: usize = 256 * 1024;

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
        let manifest_digest = image.manifest_digest;
        let raw = store.read_blob(&manifest_digest)?;
        let local_name = local.to_string();
        let media_type = manifest::media_type_of(&raw, &local_name)?;
        let parsed = match manifest::parse(&raw, &local_name)? {
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

        let registry = remote.registry();
        let repository = remote.repository();
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
        let target = oci_reference(registry, repository, "latest")?;
        // Same registry, other repository: the blobs may already be there.
        let mount_from = (local.registry() == registry && local.repository() != repository)
            .then(|| oci_reference(registry, local.repository(), "latest"))
            .transpose()?;
        let cx = Context {
            registry,
            name: &name,
            action: "push",
        };
        futures_util::stream::iter(blobs.iter())
            .map(|b| {
                push_blob(
                    &session,
                    store,
                    &target,
                    mount_from.as_ref(),
                    b,
                    &cx,
                    progress,
                )
            })
            .buffer_unordered(self.concurrency())
            .try_collect::<Vec<()>>()
            .await?;

        let manifest_ref = match remote.digest() {
            Some(d) => oci_digest_reference(registry, repository, d),
            None => oci_reference(registry, repository, remote.tag().unwrap_or("latest"))?,
        };
        retry(
            || async {
                session
                    .oci
                    .push_manifest_raw(&manifest_ref, raw.clone(), content_type.clone())
                    .await
                    .map_err(|e| classify(e, &cx))
            },
            |attempt, e| {
                progress.event(Event::Retrying {
                    digest: Some(manifest_digest),
                    attempt,
                    cause: e.to_string(),
                })
            },
        )
        .await?;
        progress.event(Event::Manifest {
            digest: manifest_digest,
        });
        Ok(manifest_digest)
    }
}

async fn push_blob(
    session: &Session,
    store: &Store,
    target: &oci_client::Reference,
    mount_from: Option<&oci_client::Reference>,
    blob: &Blob,
    cx: &Context<'_>,
    progress: &dyn Progress,
) -> Result<()> {
    let digest = blob.digest;
    let digest_text = digest.to_string();
    let on_retry = |attempt, e: &Error| {
        progress.event(Event::Retrying {
            digest: Some(digest),
            attempt,
            cause: e.to_string(),
        })
    };
    let exists = retry(
        || async {
            session
                .oci
                .blob_exists(target, &digest_text)
                .await
                .map_err(|e| classify(e, cx))
        },
        on_retry,
    )
    .await?;
    if exists {
        progress.event(Event::Exists { digest });
        return Ok(());
    }
    if let Some(source) = mount_from {
        // A registry that cannot mount answers 202 and starts an ordinary
        // upload instead; oci-client reports that as an error, and the blob
        // is then uploaded below.
        match session.oci.mount_blob(target, source, &digest_text).await {
            Ok(()) => {
                progress.event(Event::Mounted {
                    digest,
                    from: source.repository().to_string(),
                });
                return Ok(());
            }
            Err(e) => tracing::debug!(%digest, error = %e, "cross-repository mount failed"),
        }
    }
    if !store.has_blob(&digest) {
        return Err(Error::Other(format!(
            "cannot push {}: blob {digest} is missing from the store at {} (run `kiln fsck`)",
            cx.name,
            store.root().display()
        )));
    }
    retry(
        || async {
            let file = store.open_blob(&digest)?;
            let sent = Arc::new(AtomicU64::new(0));
            let body = file_stream(tokio::fs::File::from_std(file), sent.clone());
            progress.event(Event::Started {
                digest,
                size: blob.size,
            });
            let upload = session
                .oci
                .push_blob_stream(target, body, &digest_text, Some(blob.size));
            tokio::pin!(upload);
            // The body stream must be 'static, so it only counts bytes; this
            // loop turns the count into progress events while it runs.
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let result = loop {
                tokio::select! {
                    r = &mut upload => break r,
                    _ = tick.tick() => progress.event(Event::Bytes {
                        digest,
                        done: sent.load(Ordering::Relaxed),
                        size: blob.size,
                    }),
                }
            };
            result.map_err(|e| classify(e, cx))?;
            progress.event(Event::Bytes {
                digest,
                done: blob.size,
                size: blob.size,
            });
            Ok::<(), Failure>(())
        },
        on_retry,
    )
    .await?;
    progress.event(Event::Done { digest });
    Ok(())
}

/// The file's content as a stream of chunks, counting bytes into `sent`.
fn file_stream(
    file: tokio::fs::File,
    sent: Arc<AtomicU64>,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(file), move |state| {
        let sent = sent.clone();
        async move {
            let mut file = state?;
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    sent.fetch_add(n as u64, Ordering::Relaxed);
                    Some((Ok(bytes::Bytes::from(buf)), Some(file)))
                }
                Err(e) => Some((Err(e.into()), None)),
            }
        }
    })
}
