//! The re-executed single-threaded helper process that starts containers.

/// If this process was started as the container helper, do its job and exit;
/// otherwise return at once.
pub fn run_if_helper() {}
