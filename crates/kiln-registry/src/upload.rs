//! One blob of a push, over kiln's own HTTP (`session.rs`, `transport.rs`):
//! a HEAD to skip what the registry has, a cross-repository mount where one
//! can help, else an upload: a POST to start it, then one PUT streaming the
//! blob from the store (monolithic: the fewest round trips), watched by the
//! low-speed limit while bytes go out and the idle timeout for the reply.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_oci::Digest;
use kiln_store::Store;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::progress::{Event, Progress};
use crate::pull::Blob;
use crate::retry::{retry, Context, Failure};
use crate::session::Session;
use crate::transport::{send, SpeedWatch};

/// Bytes read from a blob file per upload chunk.
const CHUNK: usize = 256 * 1024;

/// Where a push goes.
pub(crate) struct Target<'a> {
    pub session: &'a Session,
    pub repository: &'a str,
    /// `registry/repository[:tag]`, for messages.
    pub name: &'a str,
    /// Another repository of the same registry the blobs may be mounted from.
    pub mount_from: Option<&'a str>,
}

impl Target<'_> {
    /// The token scope of the push: this repository, and the mount source.
    pub fn scope(&self) -> String {
        let scope = format!("repository:{}:pull,push", self.repository);
        match self.mount_from {
            Some(from) => format!("{scope} repository:{from}:pull"),
            None => scope,
        }
    }

    /// `/v2/<repository>/<path>` on the registry.
    pub fn url(&self, path: &str) -> Result<Url, Failure> {
        let url = format!("{}/v2/{}/{path}", self.session.base, self.repository);
        Url::parse(&url).map_err(|e| {
            Failure::fatal(Error::Other(format!("cannot push to {url}: bad URL ({e})")))
        })
    }

    /// The context of a step on blob `digest`, for its errors.
    fn cx<'a>(&'a self, blob_name: &'a str, action: &'a str) -> Context<'a> {
        Context {
            registry: &self.session.registry,
            name: blob_name,
            action,
        }
    }
}

/// Pushes one blob unless the registry has it (or can mount it).
pub(crate) async fn push_blob(
    target: &Target<'_>,
    store: &Store,
    blob: &Blob,
    progress: &dyn Progress,
) -> Result<()> {
    let digest = blob.digest;
    let on_retry = |attempt, e: &Error| {
        progress.event(Event::Retrying {
            digest: Some(digest),
            attempt,
            cause: e.to_string(),
        })
    };
    if retry(|| exists(target, digest), on_retry).await? {
        progress.event(Event::Exists { digest });
        return Ok(());
    }
    // A registry that cannot mount may start an ordinary upload instead:
    // its first attempt goes there.
    let started = std::sync::Mutex::new(None);
    if let Some(from) = target.mount_from {
        match mount(target, from, digest).await {
            Mount::Done => {
                progress.event(Event::Mounted {
                    digest,
                    from: from.to_string(),
                });
                return Ok(());
            }
            Mount::Started(location) => *started.lock().unwrap() = Some(location),
            Mount::Failed => {}
        }
    }
    if !store.has_blob(&digest) {
        return Err(Error::Other(format!(
            "cannot push {}: blob {digest} is missing from the store at {} (run `kiln fsck`)",
            target.name,
            store.root().display()
        )));
    }
    let attempt = || async {
        let location = started.lock().unwrap().take();
        let location = match location {
            Some(l) => l,
            None => start(target, digest).await?,
        };
        put(target, store, blob, location, progress).await
    };
    retry(attempt, on_retry).await?;
    progress.event(Event::Done { digest });
    Ok(())
}

/// Whether the registry has blob `digest` (HEAD).
async fn exists(target: &Target<'_>, digest: Digest) -> Result<bool, Failure> {
    let session = target.session;
    let blob_name = format!("blob {digest} for {}", target.name);
    let what = format!("the answer whether the registry has {blob_name}");
    let url = target.url(&format!("blobs/{digest}"))?;
    let res = session
        .authorized(&target.scope(), |auth| {
            let req = session.request(Method::HEAD, &url, auth.as_deref());
            session.send(req, &url, &what)
        })
        .await?;
    match res.status() {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => {
            let cx = target.cx(&blob_name, "the check for");
            Err(session.reply_failure(res, &cx, &what).await)
        }
    }
}

enum Mount {
    Done,
    /// The registry started an ordinary upload here instead.
    Started(Url),
    Failed,
}

/// Asks the registry to mount blob `digest` from repository `from`. Any
/// failure only means the blob is uploaded.
async fn mount(target: &Target<'_>, from: &str, digest: Digest) -> Mount {
    let session = target.session;
    let what = format!("the reply to a mount of blob {digest} from {from}");
    let Ok(mut url) = target.url("blobs/uploads/") else {
        return Mount::Failed;
    };
    url.query_pairs_mut()
        .append_pair("mount", &digest.to_string())
        .append_pair("from", from);
    let sent = session
        .authorized(&target.scope(), |auth| {
            let req = session.request(Method::POST, &url, auth.as_deref());
            session.send(req.header(CONTENT_LENGTH, 0), &url, &what)
        })
        .await;
    let res = match sent {
        Ok(res) => res,
        Err(f) => {
            tracing::debug!(%digest, error = %f.error, "cross-repository mount failed");
            return Mount::Failed;
        }
    };
    match res.status() {
        StatusCode::CREATED => Mount::Done,
        StatusCode::ACCEPTED => match location(&res, &url) {
            Ok(l) => Mount::Started(l),
            Err(_) => Mount::Failed,
        },
        status => {
            tracing::debug!(%digest, %status, "cross-repository mount refused");
            Mount::Failed
        }
    }
}

/// Starts an upload of blob `digest` (POST); returns where to PUT it.
async fn start(target: &Target<'_>, digest: Digest) -> Result<Url, Failure> {
    let session = target.session;
    let blob_name = format!("blob {digest} for {}", target.name);
    let what = format!("the reply to the start of the upload of {blob_name}");
    let cx = target.cx(&blob_name, "the start of the upload of");
    let url = target.url("blobs/uploads/")?;
    let res = session
        .authorized(&target.scope(), |auth| {
            let req = session.request(Method::POST, &url, auth.as_deref());
            session.send(req.header(CONTENT_LENGTH, 0), &url, &what)
        })
        .await?;
    if !res.status().is_success() {
        return Err(session.reply_failure(res, &cx, &what).await);
    }
    location(&res, &url).map_err(|cause| {
        Failure::fatal(Error::Refused {
            registry: session.registry.clone(),
            action: format!("{} {blob_name}", cx.action),
            cause,
        })
    })
}

/// The upload URL a reply's `Location` names, resolved against the URL
/// asked (it may be relative, and may carry a query of its own).
fn location(res: &Response, asked: &Url) -> Result<Url, String> {
    let status = res.status();
    let value = res
        .headers()
        .get(LOCATION)
        .ok_or_else(|| format!("HTTP {status} without a Location"))?;
    let text = value
        .to_str()
        .map_err(|_| format!("HTTP {status} with a Location that is not text"))?;
    asked
        .join(text)
        .map_err(|e| format!("HTTP {status} with a bad Location ({e})"))
}

/// The URL that completes an upload at `location` with the blob `digest`.
fn with_digest(mut location: Url, digest: Digest) -> Url {
    location
        .query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    location
}

/// One PUT of the whole blob to `location`, streamed from the store.
async fn put(
    target: &Target<'_>,
    store: &Store,
    blob: &Blob,
    location: Url,
    progress: &dyn Progress,
) -> Result<(), Failure> {
    let (session, digest) = (target.session, blob.digest);
    let blob_name = format!("blob {digest} for {}", target.name);
    let what = format!("the upload of {blob_name}");
    let url = with_digest(location, digest);
    // The token the upload was started with: a body cannot be sent twice.
    let auth = session.authorization(&target.scope(), false).await?;
    let file = tokio::fs::File::from_std(store.open_blob(&digest)?);
    let sent = Arc::new(AtomicU64::new(0));
    let body = reqwest::Body::wrap_stream(file_stream(file, sent.clone()));
    let req = session
        .request(Method::PUT, &url, auth.as_deref())
        .header(CONTENT_LENGTH, blob.size)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(body);
    progress.event(Event::Started {
        digest,
        size: blob.size,
    });
    let host = crate::transport::host_port(&url);
    let registry = session.registry.as_str();
    let upload = send(req, &host, &session.api_host, registry, &what, None);
    let res = watch(
        upload,
        &sent,
        blob,
        &session.limits,
        &what,
        registry,
        progress,
    )
    .await?;
    if !res.status().is_success() {
        let cx = target.cx(&blob_name, "the upload of");
        return Err(session.reply_failure(res, &cx, &what).await);
    }
    progress.event(Event::Bytes {
        digest,
        done: blob.size,
        size: blob.size,
    });
    Ok(())
}

/// Drives `upload` to its reply, turning the count of bytes sent into
/// progress events, and gives up on a registry that takes the bytes too
/// slowly or does not answer once it has them all.
async fn watch(
    upload: impl std::future::Future<Output = Result<Response, Failure>>,
    sent: &AtomicU64,
    blob: &Blob,
    limits: &Limits,
    what: &str,
    registry: &str,
    progress: &dyn Progress,
) -> Result<Response, Failure> {
    tokio::pin!(upload);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut watch = UploadWatch::new(limits);
    loop {
        tokio::select! {
            r = &mut upload => return r,
            _ = tick.tick() => {
                let done = sent.load(Ordering::Relaxed);
                progress.event(Event::Bytes { digest: blob.digest, done, size: blob.size });
                if let Some(cause) = watch.check(done, blob.size) {
                    return Err(Failure::transient(Error::Stalled {
                        what: what.to_string(),
                        registry: registry.to_string(),
                        cause,
                    }));
                }
            }
        }
    }
}

/// Watches an upload: the low-speed limit while bytes go out, the idle
/// timeout for the reply once all are sent.
struct UploadWatch {
    speed: SpeedWatch,
    idle: Duration,
    all_sent_at: Option<Instant>,
}

impl UploadWatch {
    fn new(limits: &Limits) -> UploadWatch {
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
        let since = *self.all_sent_at.get_or_insert_with(Instant::now);
        (since.elapsed() > self.idle).then(|| {
            format!(
                "no reply for {:.1} s after the last byte (idle timeout; KILN_REGISTRY_IDLE_TIMEOUT)",
                self.idle.as_secs_f64()
            )
        })
    }
}

/// The file's content as a stream of chunks, counting bytes into `sent`:
/// the blob is never held in memory whole.
fn file_stream(
    file: tokio::fs::File,
    sent: Arc<AtomicU64>,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
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
                Err(e) => Some((Err(e), None)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_joins_any_location() {
        let digest = Digest::sha256(b"x");
        let hex = digest.to_string().trim_start_matches("sha256:").to_string();
        let asked = Url::parse("http://127.0.0.1:5000/v2/a/b/blobs/uploads/").unwrap();
        for (location, want) in [
            // docker distribution: absolute, with its own state in the query
            (
                "http://127.0.0.1:5000/v2/a/b/blobs/uploads/u1?_state=abc%3D%3D",
                format!("http://127.0.0.1:5000/v2/a/b/blobs/uploads/u1?_state=abc%3D%3D&digest=sha256%3A{hex}"),
            ),
            // relative to the host, with and without a query
            (
                "/v2/a/b/blobs/uploads/u2?_state=s",
                format!("http://127.0.0.1:5000/v2/a/b/blobs/uploads/u2?_state=s&digest=sha256%3A{hex}"),
            ),
            (
                "/v2/a/b/blobs/uploads/u3",
                format!("http://127.0.0.1:5000/v2/a/b/blobs/uploads/u3?digest=sha256%3A{hex}"),
            ),
            // relative to the path asked
            (
                "u4",
                format!("http://127.0.0.1:5000/v2/a/b/blobs/uploads/u4?digest=sha256%3A{hex}"),
            ),
            // another host (blob storage)
            (
                "https://storage.example/up/5?sig=x",
                format!("https://storage.example/up/5?sig=x&digest=sha256%3A{hex}"),
            ),
        ] {
            let joined = asked.join(location).unwrap();
            assert_eq!(with_digest(joined, digest).as_str(), want, "{location}");
        }
    }
}
