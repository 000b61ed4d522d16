//! Manifests: files (working tree or git revision) → a validated [`ManifestSet`].
//!
//! Loading never touches the network, credentials or a clock. Every problem in every file is
//! collected as a [`Diagnostic`] before anything is returned, so one `validate` run lists them all.

pub mod diagnostic;
pub mod id;
pub mod schema;
pub mod source;
mod spanned;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use id::{IntegrationId, RuleId};
pub use source::{FileKind, RawFile, Revision, Snapshot, Source};
