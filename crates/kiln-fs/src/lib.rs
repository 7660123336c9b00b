//! kiln-fs
