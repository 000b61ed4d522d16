//! supportopsd: support-operations integrations and rules as code.
//!
//! Layout (one line per module, highest layer first; each module's own docs say what it
//! guarantees, and `docs/ARCHITECTURE.md` the layer order that `tests/layers.rs` checks: a
//! module imports only from layers below its own):
//!
//! - [`cli`]: the command line; one file per command.
//! - [`daemon`]: `run`: wires the tasks below together; the HTTP server and the operator API.
//! - [`webhook`]: ingress: route → limits → verify → parse → dedupe + persist → 2xx.
//! - [`execute`]: the executor: leases, gates, retries, dead letters.
//! - [`reconcile`]: passes that load the newest revision, check connections and sync webhook
//!   registrations.
//! - [`runtime`]: the shared [`runtime::Runtime`] the tasks above hold: options, the active
//!   revision, the ingest writer, health, gates, counters.
//! - [`plan`]: `(desired, current) → Plan`, fingerprints, the security-sensitive changes. Pure.
//! - [`testing`]: `supportopsd test`: rule test cases run offline.
//! - [`state`]: the only module that touches sled: applied resources, inbox, outbox, dead
//!   letters, audit log, the ingest journal; callers go through its [`state::State`] interface.
//! - [`event`]: the normalised event every webhook becomes.
//! - [`platforms`]: the six platforms (and supportopsd's own): the static catalogue (events,
//!   actions, credentials, payload normalisation) and, above the manifest, inbound verification
//!   and parsing and the live connectors.
//! - [`manifest`]: manifest files (working tree or git revision) → validated
//!   [`manifest::ManifestSet`], with `file:line:col` diagnostics. Pure apart from reading files.
//! - [`policy`]: the host policy, read from outside the manifest repository: which hosts an
//!   endpoint override may name, which secrets each integration may reference; and
//!   what `validate` checks of them offline.
//! - [`secrets`]: secret references, the redacting [`secrets::Secret`], AES-256-SIV sealing.
//! - [`rules`]: field paths, the condition language and templates. Pure.
//! - [`telemetry`]: the daemon's metrics and systemd notifications.

pub mod cli;
pub mod daemon;
pub mod event;
pub mod execute;
pub mod manifest;
pub mod plan;
pub mod platforms;
pub mod policy;
pub mod reconcile;
pub mod rules;
pub mod runtime;
pub mod secrets;
pub mod state;
pub mod telemetry;
pub mod testing;
pub mod webhook;
