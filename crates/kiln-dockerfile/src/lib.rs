//! kiln-dockerfile
