//! supportopsd: support-operations integrations and rules as code.
//!
//! Layout (one line per module; each module's own docs say what it guarantees):
//!
//! - [`cli`]: the command line; one file per command, rendering of text/json/markdown.
//! - [`manifest`]: manifest files (working tree or git revision) → validated [`manifest::ManifestSet`],
//!   with `file:line:col` diagnostics. Pure apart from reading files.
//! - [`platforms`]: the static catalogue of the six platforms: events, actions, credential fields,
//!   payload normalisation.
//! - [`rules`]: field paths, the condition language and templates. Pure.
//! - [`plan`]: `(desired, current) → Plan`, fingerprints. Pure.
//! - [`state`]: the only module that touches sled: meta and applied resources.
//! - [`secrets`]: secret references, the redacting [`secrets::Secret`], AES-256-SIV sealing.
//! - [`testing`]: `supportopsd test`: rule test cases run offline.

pub mod cli;
pub mod daemon;
pub mod event;
pub mod execute;
pub mod manifest;
pub mod plan;
pub mod platforms;
pub mod rules;
pub mod secrets;
pub mod state;
pub mod telemetry;
pub mod testing;
pub mod webhook;
