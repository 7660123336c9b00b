//! Reading what a registry serves under a reference: an image manifest
//! (OCI or Docker schema 2) or an index (OCI index or Docker manifest list),
//! and choosing an index entry by platform.

use kiln_oci::media_type as mt;
use kiln_oci::oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use kiln_oci::{Digest, Platform};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Media types kiln accepts for manifests, in the `Accept` header.
pub const ACCEPTED: &[&str] = &[
    mt::OCI_INDEX,
    mt::DOCKER_MANIFEST_LIST,
    mt::OCI_MANIFEST,
    mt::DOCKER_MANIFEST,
];

pub enum Parsed {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
}

/// The media type of a manifest document: its `mediaType` field, else what
/// its shape says (OCI allows leaving the field out).
pub fn media_type_of(bytes: &[u8], reference: &str) -> Result<String> {
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| Error::BadManifest {
        reference: reference.to_string(),
        cause: format!("not JSON: {e}"),
    })?;
    if probe.schema_version != Some(2) {
        return Err(Error::UnsupportedMediaType {
            what: "manifest",
            media_type: match probe.schema_version {
                Some(1) => "application/vnd.docker.distribution.manifest.v1+json".into(),
                v => format!("schemaVersion {v:?}"),
            },
            reference: reference.to_string(),
        });
    }
    Ok(match probe.media_type {
        Some(m) => m,
        None if probe.manifests.is_some() => mt::OCI_INDEX.to_string(),
        None if probe.config.is_some() => mt::OCI_MANIFEST.to_string(),
        None => {
            return Err(Error::BadManifest {
                reference: reference.to_string(),
                cause: "neither an image manifest nor an index".into(),
            })
        }
    })
}

/// Parses a manifest or index and checks that kiln knows every media type in
/// it (config and layers of an image).
pub fn parse(bytes: &[u8], reference: &str) -> Result<Parsed> {
    let media_type = media_type_of(bytes, reference)?;
    let bad = |cause: String| Error::BadManifest {
        reference: reference.to_string(),
        cause,
    };
    if mt::is_index(&media_type) {
        let index: ImageIndex = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        return Ok(Parsed::Index(Box::new(index)));
    }
    if !mt::is_manifest(&media_type) {
        return Err(Error::UnsupportedMediaType {
            what: "manifest",
            media_type,
            reference: reference.to_string(),
        });
    }
    let manifest: ImageManifest = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let config_type = manifest.config().media_type().to_string();
    // A kiln build-cache manifest moves like an image (it is not run).
    if !mt::is_config(&config_type) && config_type != mt::KILN_CACHE_CONFIG {
        return Err(Error::UnsupportedMediaType {
            what: "config",
            media_type: config_type,
            reference: reference.to_string(),
        });
    }
    for layer in manifest.layers() {
        let t = layer.media_type().to_string();
        if mt::layer_compression(&t).is_none() {
            return Err(Error::UnsupportedMediaType {
                what: "layer",
                media_type: t,
                reference: reference.to_string(),
            });
        }
    }
    Ok(Parsed::Image(Box::new(manifest)))
}

/// The digest in a descriptor, as kiln's type.
pub fn descriptor_digest(d: &Descriptor, reference: &str) -> Result<Digest> {
    d.digest()
        .to_string()
        .parse()
        .map_err(|e: kiln_oci::DigestError| Error::BadManifest {
            reference: reference.to_string(),
            cause: e.to_string(),
        })
}

/// The index entry for `want`: an exact variant match first, then an entry
/// without variant, like containerd's matcher. Entries without a platform
/// (attestations) and non-image entries are skipped.
pub fn select<'a>(
    index: &'a ImageIndex,
    want: &Platform,
    reference: &str,
) -> Result<&'a Descriptor> {
    let candidates: Vec<(&Descriptor, Platform)> = index
        .manifests()
        .iter()
        .filter(|d| mt::is_manifest(d.media_type().as_ref()))
        .filter_map(|d| d.platform().as_ref().map(|p| (d, Platform::from_oci(p))))
        .collect();
    let exact = candidates.iter().find(|(_, p)| {
        p.os == want.os && p.architecture == want.architecture && p.variant == want.variant
    });
    let loose = || candidates.iter().find(|(_, p)| want.matches(p));
    if let Some((d, _)) = exact.or_else(loose) {
        return Ok(d);
    }
    let mut available: Vec<String> = candidates.iter().map(|(_, p)| p.to_string()).collect();
    available.dedup();
    Err(Error::NoMatchingPlatform {
        reference: reference.to_string(),
        platform: want.to_string(),
        available: if available.is_empty() {
            "none".into()
        } else {
            available.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn index() -> Vec<u8> {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": mt::DOCKER_MANIFEST_LIST,
            "manifests": [
                {"mediaType": mt::DOCKER_MANIFEST, "digest": d(1), "size": 10,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": mt::DOCKER_MANIFEST, "digest": d(2), "size": 10,
                 "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
                {"mediaType": mt::DOCKER_MANIFEST, "digest": d(3), "size": 10,
                 "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                {"mediaType": mt::DOCKER_MANIFEST, "digest": d(4), "size": 10,
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": mt::OCI_MANIFEST, "digest": d(5), "size": 10,
                 "platform": {"os": "unknown", "architecture": "unknown"}}
            ]
        })
        .to_string()
        .into_bytes()
    }

    fn pick(platform: &str) -> Result<String> {
        let Parsed::Index(i) = parse(&index(), "r/x").unwrap() else {
            panic!("not an index")
        };
        select(&i, &Platform::parse(platform).unwrap(), "r/x").map(|d| d.digest().to_string())
    }

    #[test]
    fn selects_by_platform() {
        assert_eq!(pick("linux/amd64").unwrap(), d(1));
        assert_eq!(pick("linux/arm/v7").unwrap(), d(3));
        assert_eq!(pick("linux/arm/v6").unwrap(), d(2));
        assert_eq!(pick("linux/arm64").unwrap(), d(4));
        let e = pick("linux/s390x").unwrap_err().to_string();
        assert!(
            e.contains("linux/s390x") && e.contains("linux/amd64"),
            "{e}"
        );
    }

    #[test]
    fn rejects_unknown_media_types() {
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": mt::OCI_MANIFEST,
            "config": {"mediaType": mt::OCI_CONFIG, "digest": d(1), "size": 2},
            "layers": [{"mediaType": "application/x-weird", "digest": d(2), "size": 2}]
        });
        let e = parse(m.to_string().as_bytes(), "r/x")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("application/x-weird") && e.contains("layer"),
            "{e}"
        );

        let m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/x-thing"});
        let e = parse(m.to_string().as_bytes(), "r/x")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("application/x-thing"), "{e}");

        let m = serde_json::json!({"schemaVersion": 1, "name": "x"});
        let e = parse(m.to_string().as_bytes(), "r/x")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("manifest.v1"), "{e}");
    }

    #[test]
    fn accepts_docker_and_oci_images_with_all_compressions() {
        for (mtype, ctype, layers) in [
            (
                mt::DOCKER_MANIFEST,
                mt::DOCKER_CONFIG,
                [mt::DOCKER_LAYER_GZIP, mt::DOCKER_LAYER],
            ),
            (
                mt::OCI_MANIFEST,
                mt::OCI_CONFIG,
                [mt::OCI_LAYER_ZSTD, mt::OCI_LAYER],
            ),
        ] {
            let m = serde_json::json!({
                "schemaVersion": 2, "mediaType": mtype,
                "config": {"mediaType": ctype, "digest": d(1), "size": 2},
                "layers": [{"mediaType": layers[0], "digest": d(2), "size": 2},
                           {"mediaType": layers[1], "digest": d(3), "size": 2}]
            });
            assert!(matches!(
                parse(m.to_string().as_bytes(), "r/x").unwrap(),
                Parsed::Image(_)
            ));
        }
    }
}
