//! kiln-registry
