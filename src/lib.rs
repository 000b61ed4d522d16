//! supportopsd: support-operations integrations and rules as code.
//!
//! Layout (one line per module; each module's own docs say what it guarantees):
//!
//! - [`cli`]: the command line; one file per command.
//! - [`manifest`]: manifest files (working tree or git revision) → validated [`manifest::ManifestSet`],
//!   with `file:line:col` diagnostics. Pure apart from reading files.
//! - [`platforms`]: the six platforms: the static catalogue (events, actions, credentials, payload
//!   normalisation), inbound verification and parsing, and the live connectors.
//! - [`rules`]: field paths, the condition language and templates. Pure.
//! - [`plan`]: `(desired, current) → Plan`, fingerprints. Pure.
//! - [`state`]: the only module that touches sled: applied resources, inbox, outbox, dead
//!   letters, audit log.
//! - [`secrets`]: secret references, the redacting [`secrets::Secret`], AES-256-SIV sealing.
//! - [`testing`]: `supportopsd test`: rule test cases run offline.
//! - [`event`]: the normalised event every webhook becomes.
//! - [`webhook`]: ingress: route → limits → verify → parse → dedupe + persist → 2xx.
//! - [`execute`]: the executor: leases, gates, retries, dead letters.
//! - [`daemon`]: `run`: the active revision, the HTTP server, reloads, shutdown.
//! - [`telemetry`]: the daemon's metrics.

pub mod cli;
pub mod daemon;
pub mod event;
pub mod execute;
pub mod manifest;
pub mod plan;
pub mod platforms;
pub mod reconcile;
pub mod rules;
pub mod secrets;
pub mod state;
pub mod telemetry;
pub mod testing;
pub mod webhook;
