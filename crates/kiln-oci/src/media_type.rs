//! Media types of the OCI image spec and Docker's image manifest schema 2.

use crate::Compression;

pub const OCI_LAYOUT_HEADER: &str = "application/vnd.oci.layout.header.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The config of a kiln build-cache manifest (its records).
pub const KILN_CACHE_CONFIG: &str = "application/vnd.kiln.cache.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_LAYER_NONDIST: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const OCI_LAYER_NONDIST_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const OCI_LAYER_NONDIST_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Whether `media_type` is a single-image manifest (OCI or Docker).
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Whether `media_type` is a multi-platform index (OCI or Docker list).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether `media_type` is an image config (OCI or Docker).
pub fn is_config(media_type: &str) -> bool {
    media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
}

/// The compression of a layer media type, or `None` when it is not a layer
/// type kiln knows.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    match media_type {
        OCI_LAYER | OCI_LAYER_NONDIST | DOCKER_LAYER => Some(Compression::None),
        OCI_LAYER_GZIP | OCI_LAYER_NONDIST_GZIP | DOCKER_LAYER_GZIP | DOCKER_FOREIGN_LAYER_GZIP => {
            Some(Compression::Gzip)
        }
        OCI_LAYER_ZSTD | OCI_LAYER_NONDIST_ZSTD | DOCKER_LAYER_ZSTD => Some(Compression::Zstd),
        _ => None,
    }
}

/// The OCI layer media type for a compression; bzip2 and xz have none
/// (Docker reads such layers but never names them).
pub fn oci_layer(compression: Compression) -> Option<&'static str> {
    match compression {
        Compression::None => Some(OCI_LAYER),
        Compression::Gzip => Some(OCI_LAYER_GZIP),
        Compression::Zstd => Some(OCI_LAYER_ZSTD),
        Compression::Bzip2 | Compression::Xz => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_media_types() {
        assert!(is_manifest(DOCKER_MANIFEST) && is_manifest(OCI_MANIFEST));
        assert!(!is_manifest(OCI_INDEX));
        assert!(is_index(DOCKER_MANIFEST_LIST) && is_config(DOCKER_CONFIG));
        assert_eq!(
            layer_compression(DOCKER_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert_eq!(layer_compression(OCI_LAYER_ZSTD), Some(Compression::Zstd));
        assert_eq!(layer_compression(OCI_LAYER), Some(Compression::None));
        assert_eq!(layer_compression("text/plain"), None);
        assert_eq!(oci_layer(Compression::Gzip), Some(OCI_LAYER_GZIP));
        assert_eq!(oci_layer(Compression::Xz), None);
    }
}
