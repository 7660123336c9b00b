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
use crate::transport::SpeedWatch;

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
        let raw = raw.to_vec();
        let manifest_digest = Digest::sha256(&raw);
        let local_name = local.map_or_else(|| remote.to_string(), |l| l.to_string());
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
        let mount_from = local
            .filter(|l| l.registry() == registry && l.repository() != repository)
            .map(|l| oci_reference(registry, l.repository(), "latest"))
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
                let what = format!("the reply to the manifest upload for {name}");
                let put =
                    session
                        .oci
                        .push_manifest_raw(&manifest_ref, raw.clone(), content_type.clone());
                within(&session, &what, registry, put)
                    .await?
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
            let what = format!("the answer whether the registry has blob {digest}");
            let head = session.oci.blob_exists(target, &digest_text);
            within(session, &what, cx.registry, head)
                .await?
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
        let what = format!("the reply to a mount of blob {digest}");
        let mount = session.oci.mount_blob(target, source, &digest_text);
        match within(session, &what, cx.registry, mount).await {
            Ok(Ok(())) => {
                progress.event(Event::Mounted {
                    digest,
                    from: source.repository().to_string(),
                });
                return Ok(());
            }
            Ok(Err(e)) => tracing::debug!(%digest, error = %e, "cross-repository mount failed"),
            Err(f) => tracing::debug!(%digest, error = %f.error, "cross-repository mount failed"),
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
            // loop turns the count into progress events while it runs, and
            // gives up on a registry that takes the bytes too slowly.
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut watch = UploadWatch::new(&session.limits);
            let result = loop {
                tokio::select! {
                    r = &mut upload => break r,
                    _ = tick.tick() => {
                        let done = sent.load(Ordering::Relaxed);
                        progress.event(Event::Bytes { digest, done, size: blob.size });
                        if let Some(cause) = watch.check(done, blob.size) {
                            return Err(Failure::transient(Error::Stalled {
                                what: format!("the upload of blob {digest} for {}", cx.name),
                                registry: cx.registry.to_string(),
                                cause,
                            }));
                        }
                    }
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

/// Bounds a request that moves little data: no reply within the idle
/// timeout is a transient failure.
async fn within<T>(
    session: &Session,
    what: &str,
    registry: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, Failure> {
    let idle = session.limits.idle_timeout;
    tokio::time::timeout(idle, fut).await.map_err(|_| {
        Failure::transient(Error::Stalled {
            what: what.to_string(),
            registry: registry.to_string(),
            cause: format!(
                "no reply for {:.1} s (idle timeout; KILN_REGISTRY_IDLE_TIMEOUT)",
                idle.as_secs_f64()
            ),
        })
    })
}

/// Watches an upload: the low-speed limit while bytes go out, the idle
/// timeout for the reply once all are sent.
struct UploadWatch {
    speed: SpeedWatch,
    idle: Duration,
    all_sent_at: Option<std::time::Instant>,
}

impl UploadWatch {
    fn new(limits: &crate::Limits) -> UploadWatch {
        UploadWatch {
            speed: SpeedWatch::new(limits),
            idle: limits.idle_timeout,
            all_sent_at: None,
        }
    }

    fn check(&mut self, sent: u64, size: u64) -> Option<String> {
        if sent < size {
            return self.speed.check(sent);
        }
        let since = *self.all_sent_at.get_or_insert_with(std::time::Instant::now);
        (since.elapsed() > self.idle).then(|| {
            format!(
                "no reply for {:.1} s after the last byte (idle timeout; KILN_REGISTRY_IDLE_TIMEOUT)",
                self.idle.as_secs_f64()
            )
        })
    }
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
