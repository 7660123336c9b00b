//! kiln-oci
