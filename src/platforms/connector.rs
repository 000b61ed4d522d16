//! The live half of a platform: what `run` uses to act on it. Every call is a real HTTP call;
//! every failure is classified once, in the platform's client, into a [`PlatformError`] that
//! says whether and when to retry.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::manifest::Integration;
use crate::secrets::{self, ResolveContext};

/// One action to perform.
#[derive(Debug, Clone)]
pub struct ActionCall {
    /// The action name (`send_message`).
    pub action: String,
    /// Rendered parameters.
    pub parameters: Value,
    /// Stable across retries of the same job step; sent where the platform supports it
    /// (Zendesk `Idempotency-Key`).
    pub idempotency_key: String,
}

/// What an action produced: later actions read it as `actions[N].result`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionOutput {
    /// The result fields (the action's catalogued `result` fields, at least).
    pub result: Value,
}

/// The outcome of a connection check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Who we are on the platform (bot user id, agent id), for the loop guard.
    pub identity: Option<String>,
    /// One line for `status`.
    pub detail: String,
}

/// What registering a webhook with the platform did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationOutcome {
    /// The platform already had this URL and these events: nothing was changed.
    Unchanged,
    /// The platform's configuration was updated to this URL and these events.
    Updated,
}

/// A classified platform failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// Worth retrying: 5xx, timeouts, connection failures.
    #[error("transient failure: {detail}")]
    Transient {
        /// What happened.
        detail: String,
        /// When the platform said to come back.
        retry_after: Option<Duration>,
    },
    /// 429 (or the platform's equivalent, e.g. Slack `ratelimited`).
    #[error("rate limited")]
    RateLimited {
        /// When the platform said to come back.
        retry_after: Option<Duration>,
    },
    /// Credentials refused (401/403, Slack `invalid_auth`…): retrying will not help.
    #[error("unauthorized: {detail}")]
    Unauthorized {
        /// What the platform said.
        detail: String,
    },
    /// The target does not exist (404, Slack `channel_not_found`).
    #[error("not found: {detail}")]
    NotFound {
        /// What the platform said.
        detail: String,
    },
    /// The platform refused the request as invalid (other 4xx, Slack `ok:false`).
    #[error("rejected ({status}): {detail}")]
    Rejected {
        /// HTTP status (200 for Slack's `ok:false`).
        status: u16,
        /// What the platform said (error code and message; never a credential).
        detail: String,
    },
    /// supportopsd cannot build the request (missing parameter, bad value, unknown action).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl PlatformError {
    /// Whether a retry may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            PlatformError::Transient { .. } | PlatformError::RateLimited { .. }
        )
    }

    /// When the platform asked to be called again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PlatformError::Transient { retry_after, .. }
            | PlatformError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// Label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            PlatformError::Transient { .. } => "transient",
            PlatformError::RateLimited { .. } => "rate_limited",
            PlatformError::Unauthorized { .. } => "unauthorized",
            PlatformError::NotFound { .. } => "not_found",
            PlatformError::Rejected { .. } => "rejected",
            PlatformError::Invalid(_) => "invalid",
        }
    }
}

/// Why a connector could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A credential could not be resolved (named, never shown).
    #[error("credential `{field}`: {source}")]
    Credential {
        /// The credential field.
        field: String,
        /// Why.
        #[source]
        source: secrets::Error,
    },
    /// A required credential is missing.
    #[error("credential `{0}` is missing")]
    Missing(String),
    /// This release has no live connector for the platform yet.
    #[error("the {0} connector is not available in this release")]
    NotAvailable(&'static str),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
}

/// The live half of a platform.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Checks the credentials and connection (a cheap authenticated call).
    async fn check(&self) -> Result<Health, PlatformError>;
    /// Performs one action.
    async fn execute(&self, call: &ActionCall) -> Result<ActionOutput, PlatformError>;

    /// Makes the platform deliver `events` (catalogue names) to `url`, idempotently.
    /// `Ok(None)` means this connector cannot register webhooks itself (not supported, or not
    /// configured to, e.g. Slack without an app configuration token): the default.
    async fn sync_webhook(
        &self,
        url: &str,
        events: &[String],
    ) -> Result<Option<RegistrationOutcome>, PlatformError> {
        let _ = (url, events);
        Ok(None)
    }
}

/// Builds the connector of an integration, resolving its credentials.
pub type ConnectFn =
    fn(&Integration, &ResolveContext<'_>) -> Result<Arc<dyn Connector>, ConnectError>;
