//! Manifests.
pub mod id;
