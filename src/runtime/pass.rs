//! How the reconciler is asked for a pass and what it answers: the protocol between the
//! reconciler and those who trigger it (the file watcher, the poll, SIGHUP, `POST /api/sync`,
//! `pin`/`unpin`), kept here so that both sides import it from below.

use serde::Serialize;
use tokio::sync::oneshot;

/// Why a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The daemon started.
    Startup,
    /// The watcher saw the git directory change.
    Git,
    /// The poll timer.
    Poll,
    /// SIGHUP.
    Signal,
    /// `POST /api/sync`, `supportopsd pin`/`unpin`.
    Api,
    /// The periodic resync (drift, renewals, connection checks).
    Resync,
}

impl Cause {
    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Startup => "startup",
            Cause::Git => "git",
            Cause::Poll => "poll",
            Cause::Signal => "signal",
            Cause::Api => "api",
            Cause::Resync => "resync",
        }
    }
}

/// A request for a pass, with where to send its report.
#[derive(Debug)]
pub struct Request {
    /// Why.
    pub cause: Cause,
    /// Who waits for the report (the API's synchronous sync).
    pub reply: Option<oneshot::Sender<PassReport>>,
}

/// What one resource's reconcile did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceResult {
    /// The integration.
    pub integration: String,
    /// `created`, `updated`, `repaired`, `renewed`, `unchanged`, `removed`, `manual`, `failed`.
    pub outcome: String,
    /// Details in words (never a secret).
    pub detail: String,
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassReport {
    /// The revision in use after the pass.
    pub revision: Option<String>,
    /// Why the newest revision was refused, if it was.
    pub refused: Option<String>,
    /// Whether a new revision was put in use.
    pub loaded: bool,
    /// Registration results.
    pub results: Vec<ResourceResult>,
}

impl PassReport {
    /// Whether something failed (a refused revision or a failed registration).
    pub fn failed(&self) -> bool {
        self.refused.is_some() || self.results.iter().any(|r| r.outcome == "failed")
    }
}
