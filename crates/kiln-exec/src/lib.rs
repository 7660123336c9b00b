//! Runs build steps in containers.

pub mod helper;
