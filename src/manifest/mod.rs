//! Manifests: files (working tree or git revision) → a validated [`ManifestSet`].
//!
//! Loading never touches the network, credentials or a clock. Every problem in every file is
//! collected as a [`Diagnostic`] before anything is returned, so one `validate` run lists them all.

pub mod describe;
pub mod diagnostic;
pub mod id;
pub mod model;
pub mod produce;
pub mod resolve;
pub mod schema;
pub mod select;
pub mod source;
mod spanned;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use id::{IntegrationId, RuleId};
pub use model::{
    Credential, Expectation, Integration, Limits, ManifestSet, Mode, Params, Rule, RuleAction,
    RuleLimits, TestCase, Trigger, Webhook,
};
pub use resolve::{Loaded, load};
pub use source::{FileKind, RawFile, Revision, Snapshot, Source};

/// Reads and validates the manifests of `source`.
pub fn load_source(source: &Source) -> Result<Loaded, source::Error> {
    Ok(load(&source.read()?))
}
