//! Lint checks: BuildKit's build checks and kiln's lean-image hints.
