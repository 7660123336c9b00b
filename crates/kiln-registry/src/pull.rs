//! Pull: resolve the reference (choosing the platform's manifest from an
//! index), stream every missing blob into the store's verifying ingest in
//! parallel, then store the manifest and name the image.
//!
//! The store is changed only by complete, verified blobs; the name is added
//! last, so a failed pull leaves no image behind (blobs it did finish are
//! unnamed and go with the next prune).

use std::io::Write;

use futures_util::{StreamExt, TryStreamExt};
use kiln_oci::oci_spec::image::{Descriptor, ImageManifest};
use kiln_oci::{Digest, Platform, Reference};
use kiln_store::Store;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::manifest::{self, Parsed};
use crate::progress::{BlobKind, Event, Progress};
use crate::retry::{retry, Context, Failure};
use crate::session::Session;
use crate::transport::{read_document, Body};

/// What a pull stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The name the image got in the store (the reference pulled).
    pub reference: Reference,
    /// Digest of the platform's image manifest (the one stored and named).
    pub manifest_digest: Digest,
    /// Media type of that manifest (OCI or Docker schema 2).
    pub media_type: String,
    /// Digest of the index or manifest list the reference pointed at, if it
    /// was one.
    pub index_digest: Option<Digest>,
    pub config_digest: Digest,
    pub layers: Vec<Digest>,
    /// Bytes downloaded (blobs the store already had are not counted).
    pub downloaded: u64,
}

impl Client {
    /// Pulls `reference` for `platform` into `store` and names it there as
    /// `reference` (a reference by digest is kept unnamed, as Docker does).
    pub async fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        platform: &Platform,
        progress: &dyn Progress,
    ) -> Result<PulledImage> {
        let registry = reference.registry();
        let repository = reference.repository();
        let name = reference.to_string();
        let session = self.session(registry, progress).await?;

        let (manifest_bytes, index_digest) =
            resolve_manifest(&session, reference, platform, &name, progress).await?;
        let manifest_digest = Digest::sha256(&manifest_bytes);
        let media_type = manifest::media_type_of(&manifest_bytes, &name)?;
        let image = match manifest::parse(&manifest_bytes, &name)? {
            Parsed::Image(m) => m,
            Parsed::Index(_) => {
                return Err(Error::BadManifest {
                    reference: name,
                    cause: "an index entry points at another index".into(),
                })
            }
        };
        progress.event(Event::Resolved {
            reference: name.clone(),
            manifest: manifest_digest,
        });

        let blobs = blob_list(&image, &name)?;
        if blobs[0].size > session.limits.max_document {
            return Err(Error::TooLarge {
                what: format!("the image config {} of {name}", blobs[0].digest),
                registry: registry.to_string(),
                limit: session.limits.max_document,
            });
        }
        for b in &blobs {
            progress.event(Event::Waiting {
                digest: b.digest,
                kind: b.kind,
                size: b.size,
            });
        }
        let cx = Context {
            registry,
            name: &name,
            action: "pull",
        };
        let downloaded: Vec<u64> = futures_util::stream::iter(blobs.iter())
            .map(|b| fetch_blob(&session, store, repository, b, &cx, progress))
            .buffer_unordered(self.concurrency())
            .try_collect()
            .await?;

        store_manifest(
            store,
            reference,
            &manifest_bytes,
            manifest_digest,
            &media_type,
        )?;
        progress.event(Event::Manifest {
            digest: manifest_digest,
        });
        Ok(PulledImage {
            reference: reference.clone(),
            manifest_digest,
            media_type,
            index_digest,
            config_digest: blobs[0].digest,
            layers: image
                .layers()
                .iter()
                .map(|l| manifest::descriptor_digest(l, &name))
                .collect::<Result<_>>()?,
            downloaded: downloaded.iter().sum(),
        })
    }
}

/// The manifest `reference` names, fetched and checked against its digest;
/// from an index, the child for `platform` (with the index's digest).
async fn resolve_manifest(
    session: &Session,
    reference: &Reference,
    platform: &Platform,
    name: &str,
    progress: &dyn Progress,
) -> Result<(Vec<u8>, Option<Digest>)> {
    let repository = reference.repository();
    let top = match reference.digest() {
        Some(d) => d.to_string(),
        None => reference.tag().unwrap_or("latest").to_string(),
    };
    let bytes = fetch_manifest(session, repository, &top, name, progress).await?;
    let top_digest = Digest::sha256(&bytes);
    if let Some(want) = reference.digest() {
        if *want != top_digest {
            return Err(Error::DigestMismatch {
                what: "manifest",
                name: name.to_string(),
                digest: *want,
                actual: top_digest.to_string(),
            });
        }
    }
    Ok(match manifest::parse(&bytes, name)? {
        Parsed::Image(_) => (bytes, None),
        Parsed::Index(index) => {
            let child = manifest::select(&index, platform, name)?;
            let child_digest = manifest::descriptor_digest(child, name)?;
            let child_name = format!("{}@{child_digest}", reference.name());
            let child_bytes = fetch_manifest(
                session,
                repository,
                &child_digest.to_string(),
                &child_name,
                progress,
            )
            .await?;
            let actual = Digest::sha256(&child_bytes);
            if actual != child_digest {
                return Err(Error::DigestMismatch {
                    what: "manifest",
                    name: child_name,
                    digest: child_digest,
                    actual: actual.to_string(),
                });
            }
            (child_bytes, Some(top_digest))
        }
    })
}

/// Stores the manifest and names it `reference` (unnamed when by digest).
fn store_manifest(
    store: &Store,
    reference: &Reference,
    manifest_bytes: &[u8],
    manifest_digest: Digest,
    media_type: &str,
) -> Result<()> {
    let stored = store.write_blob(manifest_bytes)?;
    debug_assert_eq!(stored, manifest_digest);
    let desc = Descriptor::new(
        media_type.into(),
        manifest_bytes.len() as u64,
        oci_digest(&manifest_digest),
    );
    if reference.digest().is_some() {
        store.add_unnamed(desc)?;
    } else {
        store.tag(reference, desc)?;
    }
    Ok(())
}

pub(crate) fn oci_digest(d: &Digest) -> kiln_oci::oci_spec::image::Digest {
    d.to_string()
        .parse()
        .expect("a kiln digest is a valid OCI digest")
}

/// One blob to move.
pub(crate) struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub kind: BlobKind,
}

/// Config first, then layers, each digest once (an image may repeat a layer).
pub(crate) fn blob_list(image: &ImageManifest, name: &str) -> Result<Vec<Blob>> {
    let mut out: Vec<Blob> = Vec::new();
    let config = image.config();
    out.push(Blob {
        digest: manifest::descriptor_digest(config, name)?,
        size: config.size(),
        kind: BlobKind::Config,
    });
    for l in image.layers() {
        let digest = manifest::descriptor_digest(l, name)?;
        if !out.iter().any(|b| b.digest == digest) {
            out.push(Blob {
                digest,
                size: l.size(),
                kind: BlobKind::Layer,
            });
        }
    }
    Ok(out)
}

pub(crate) async fn fetch_manifest(
    session: &Session,
    repository: &str,
    reference: &str,
    name: &str,
    progress: &dyn Progress,
) -> Result<Vec<u8>> {
    let cx = Context {
        registry: &session.registry,
        name,
        action: "pull",
    };
    let what = format!("the manifest of {name}");
    let accept = manifest::ACCEPTED.join(", ");
    let limit = session.limits.max_document;
    retry(
        || async {
            let path = format!("manifests/{reference}");
            let res = session
                .get(repository, &path, Some(&accept), &cx, &what)
                .await?;
            read_document(res, &session.limits, limit, &what, cx.registry).await
        },
        |attempt, e| {
            progress.event(Event::Retrying {
                digest: None,
                attempt,
                cause: e.to_string(),
            })
        },
    )
    .await
}

/// Downloads one blob unless the store has it; returns the bytes moved.
pub(crate) async fn fetch_blob(
    session: &Session,
    store: &Store,
    repository: &str,
    blob: &Blob,
    cx: &Context<'_>,
    progress: &dyn Progress,
) -> Result<u64> {
    let digest = blob.digest;
    if store.has_blob(&digest) {
        progress.event(Event::Exists { digest });
        return Ok(0);
    }
    let moved = retry(
        || download(session, store, repository, blob, cx, progress),
        |attempt, e| {
            progress.event(Event::Retrying {
                digest: Some(digest),
                attempt,
                cause: e.to_string(),
            })
        },
    )
    .await?;
    progress.event(Event::Done { digest });
    Ok(moved)
}

/// One attempt at a blob: streamed into the store's verifying ingest, never
/// more than its descriptor's size.
async fn download(
    session: &Session,
    store: &Store,
    repository: &str,
    blob: &Blob,
    cx: &Context<'_>,
    progress: &dyn Progress,
) -> Result<u64, Failure> {
    let digest = blob.digest;
    let mismatch = |actual: String| Error::DigestMismatch {
        what: "blob",
        name: cx.name.to_string(),
        digest,
        actual,
    };
    let what = format!("blob {digest} of {}", cx.name);
    let mut writer = store.ingest(Some(digest))?.expect_size(blob.size);
    let res = session
        .get(repository, &format!("blobs/{digest}"), None, cx, &what)
        .await
        .map_err(|f| match f.error {
            Error::ManifestUnknown { .. } => Failure::fatal(Error::BlobUnknown {
                name: cx.name.to_string(),
                digest,
            }),
            _ => f,
        })?;
    if let Some(len) = res.content_length().filter(|n| *n > blob.size) {
        return Err(Failure::fatal(mismatch(format!(
            "the registry announces {len} bytes, more than the {} its descriptor states",
            blob.size
        ))));
    }
    progress.event(Event::Started {
        digest,
        size: blob.size,
    });
    let mut body = Body::new(res, &session.limits, &what, cx.registry);
    while let Some(chunk) = body.chunk().await? {
        if writer.written() + chunk.len() as u64 > blob.size {
            return Err(Failure::fatal(mismatch(format!(
                "more than the {} bytes its descriptor states",
                blob.size
            ))));
        }
        writer
            .write_all(&chunk)
            .map_err(|e| Failure::fatal(kiln_store::Error::Write(e).into()))?;
        progress.event(Event::Bytes {
            digest,
            done: writer.written(),
            size: blob.size,
        });
    }
    let written = writer.written();
    if written < blob.size {
        // The body ended early without a transport error.
        return Err(Failure::transient(Error::Stalled {
            what,
            registry: cx.registry.to_string(),
            cause: format!("connection closed after {written} of {} bytes", blob.size),
        }));
    }
    let committed = tokio::task::spawn_blocking(move || writer.commit())
        .await
        .map_err(|e| Failure::fatal(Error::Other(format!("blob commit task failed: {e}"))))?;
    match committed {
        Ok((_, size)) => Ok(size),
        Err(kiln_store::Error::DigestMismatch { actual, .. }) => {
            Err(Failure::fatal(mismatch(actual.to_string())))
        }
        Err(kiln_store::Error::SizeMismatch { actual, .. }) => {
            Err(Failure::fatal(mismatch(format!("{actual} bytes"))))
        }
        Err(e) => Err(Failure::fatal(e.into())),
    }
}
