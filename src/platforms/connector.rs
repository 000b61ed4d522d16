//! The live half of a platform: what `run` uses to act on it. Every call is a real HTTP call;
//! every failure is classified once, in the platform's client, into a [`PlatformError`] that
//! says whether and when to retry.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::probe::{Finding, ProbeTarget};
use super::{PlatformKind, freshdesk, google_sheets, notion, slack, trello, zendesk};
use crate::manifest::{Credential, Integration, IntegrationId};
use crate::policy::Policy;
use crate::secrets::{self, ResolveContext, Secret};

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

/// What a webhook sync did on the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationOutcome {
    /// The platform already delivered these events to this URL: nothing was changed.
    Unchanged,
    /// Nothing of ours existed (first registration): it was created.
    Created,
    /// The desired URL or events changed: the platform's configuration was updated.
    Updated,
    /// What we registered before was gone or edited on the platform (drift): it was put back.
    Repaired,
    /// A registration that expires on its own (Drive channels) was replaced before expiry.
    Renewed,
}

impl RegistrationOutcome {
    /// Lower-case name for logs, metrics and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationOutcome::Unchanged => "unchanged",
            RegistrationOutcome::Created => "created",
            RegistrationOutcome::Updated => "updated",
            RegistrationOutcome::Repaired => "repaired",
            RegistrationOutcome::Renewed => "renewed",
        }
    }
}

/// What supportopsd wants a platform to deliver for one integration.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    /// The integration. Everything registered for it carries [`WebhookTarget::marker`], and
    /// only what carries it is ever changed or deleted.
    pub integration: IntegrationId,
    /// Our endpoint for it: `{public_url}/api/webhooks/{platform}/{id}`.
    pub url: String,
    /// Catalogue event names (`[webhook] events`), sorted, without duplicates.
    pub events: Vec<String>,
    /// The inbound shared secret the manifest gives (`[webhook] secret`), if any. Freshdesk
    /// sends it back in [`crate::platforms::inbound::FRESHDESK_SECRET_HEADER`]; Zendesk uses
    /// it only for a webhook made by hand.
    pub secret: Option<Secret>,
    /// What the last sync recorded (`None` the first time, or when the state lost it).
    pub previous: Option<Registration>,
}

impl WebhookTarget {
    /// What a change to the platform counts as, given what the state recorded before:
    /// [`RegistrationOutcome::Created`] with nothing recorded, [`RegistrationOutcome::Repaired`]
    /// when the recorded URL and events are what is wanted (so the platform drifted), else
    /// [`RegistrationOutcome::Updated`].
    pub fn change_outcome(&self) -> RegistrationOutcome {
        match &self.previous {
            None => RegistrationOutcome::Created,
            Some(p) if p.url == self.url && p.events == self.events => {
                RegistrationOutcome::Repaired
            }
            Some(_) => RegistrationOutcome::Updated,
        }
    }

    /// The ownership marker of this integration's registrations on the platform
    /// (`supportopsd:<integration id>`): put in a webhook's name, an automation rule's name or
    /// description, a channel id prefix — wherever the platform keeps text of ours.
    pub fn marker(&self) -> String {
        marker(&self.integration)
    }
}

/// The ownership marker of an integration (see [`WebhookTarget::marker`]).
pub fn marker(integration: &IntegrationId) -> String {
    format!("supportopsd:{integration}")
}

/// What is registered on the platform for one integration, as the state records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The platform's ids of what we own (webhook ids, automation rule ids, trigger ids; for a
    /// Drive channel its id then its resource id).
    pub ids: Vec<String>,
    /// The URL it delivers to.
    pub url: String,
    /// The catalogue events it delivers.
    pub events: Vec<String>,
    /// When it stops on its own (Drive channels), in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// The inbound secret the platform assigned or supportopsd generated (Zendesk signing
    /// secret, generated Freshdesk shared secret, Drive channel token). The daemon seals it
    /// into the state and verifies deliveries with it.
    pub secret: Option<Secret>,
}

/// What a [`Connector::poll`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Polled {
    /// New events: the catalogue event name and its payload (the shape the platform's
    /// normalisation takes), oldest first.
    pub events: Vec<(String, Value)>,
    /// Where the next poll starts (`Value::Null` when there is nothing to remember).
    pub cursor: Value,
}

/// The result of [`Connector::sync_webhook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookSync {
    /// The platform now delivers the target's events to its URL.
    Registered {
        /// What was done.
        outcome: RegistrationOutcome,
        /// What is registered now (recorded in state, handed back as `previous` next time).
        registration: Registration,
    },
    /// supportopsd cannot register it through the API (the platform has none, or a credential
    /// that needs is missing): what the operator has to do, in words they can act on.
    Manual(String),
}

/// The longest a platform's `Retry-After` is honoured for: a larger value (a hostile or broken
/// endpoint answering `Retry-After: 18446744073709551615`) is read as this much, so that no
/// wait derived from it can overflow a clock or park a job for years.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A classified platform failure.
///
/// Two classes say *whether the platform may have acted*, which decides whether an action
/// that creates something may be sent again (see [`crate::platforms::Resend`]):
/// [`PlatformError::NotPerformed`] (the request never left: connection refused, DNS, TLS, a
/// connect timeout) and [`PlatformError::RateLimited`] (the platform refused it unprocessed)
/// are safe to send again whatever the action; [`PlatformError::Transient`] (a 5xx, a timeout
/// after sending, a connection reset mid-answer) may have been acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    /// Worth retrying, but the request may have reached the platform: 5xx, a timeout after
    /// the request was sent, an answer cut short.
    #[error("transient failure: {detail}")]
    Transient {
        /// What happened.
        detail: String,
        /// When the platform said to come back.
        retry_after: Option<Duration>,
    },
    /// Nothing was performed: the request never reached the platform (no connection: DNS,
    /// refused, TLS handshake, connect timeout), or what failed was only a read that comes
    /// before a create (see [`before_create`]). Worth retrying, even for an action that
    /// creates something.
    #[error("not performed: {detail}")]
    NotPerformed {
        /// What happened.
        detail: String,
    },
    /// An action that creates something may or may not have been performed (its request may
    /// have reached the platform, and the answer was a 5xx, a timeout or a cut connection; or
    /// supportopsd stopped while it was in flight). It is not sent again: sending it twice
    /// would create the thing twice. The job is dead-lettered with `check`, and the operator
    /// replays it if the platform does not have the thing.
    #[error(
        "outcome unknown: {detail}; the request may have reached the platform, so it is not sent again. Check on the platform: {check}. If it is not there, replay the job"
    )]
    OutcomeUnknown {
        /// What happened.
        detail: String,
        /// What to look for on the platform, in words an operator can act on.
        check: String,
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
    /// Its classification, a stable name for output and audit records: `transient`,
    /// `not_performed`, `outcome_unknown`, `rate_limited`, `unauthorized`, `not_found`,
    /// `rejected`, `invalid`.
    pub fn kind(&self) -> &'static str {
        match self {
            PlatformError::Transient { .. } => "transient",
            PlatformError::NotPerformed { .. } => "not_performed",
            PlatformError::OutcomeUnknown { .. } => "outcome_unknown",
            PlatformError::RateLimited { .. } => "rate_limited",
            PlatformError::Unauthorized { .. } => "unauthorized",
            PlatformError::NotFound { .. } => "not_found",
            PlatformError::Rejected { .. } => "rejected",
            PlatformError::Invalid(_) => "invalid",
        }
    }

    /// Whether a retry may succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            PlatformError::Transient { .. }
                | PlatformError::RateLimited { .. }
                | PlatformError::NotPerformed { .. }
        )
    }

    /// Whether the platform may have acted on the request ([`PlatformError::Transient`], and
    /// [`PlatformError::OutcomeUnknown`] itself): what makes re-sending a create unsafe.
    pub fn may_have_reached(&self) -> bool {
        matches!(
            self,
            PlatformError::Transient { .. } | PlatformError::OutcomeUnknown { .. }
        )
    }

    /// When the platform asked to be called again, at most [`MAX_RETRY_AFTER`] (whoever built
    /// the error).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PlatformError::Transient { retry_after, .. }
            | PlatformError::RateLimited { retry_after } => {
                retry_after.map(|d| d.min(MAX_RETRY_AFTER))
            }
            _ => None,
        }
    }

    /// Label for metrics: its classification ([`PlatformError::kind`]).
    pub fn metric_label(&self) -> &'static str {
        self.kind()
    }
}

/// What an action's result becomes given how the action may be re-sent
/// ([`crate::platforms::Descriptor::resend`]): a failure that may have reached the platform
/// ([`PlatformError::may_have_reached`]) of an action that would create its object again
/// ([`crate::platforms::Resend::Duplicates`]) becomes [`PlatformError::OutcomeUnknown`] with
/// the catalogue's `check`; anything else is returned unchanged. Every connector passes its
/// actions' results through this.
pub fn guard_resend(
    platform: PlatformKind,
    action: &str,
    result: Result<ActionOutput, PlatformError>,
) -> Result<ActionOutput, PlatformError> {
    match result {
        Err(e @ PlatformError::Transient { .. }) => match platform.descriptor().resend(action) {
            super::Resend::Duplicates { check } => Err(PlatformError::OutcomeUnknown {
                detail: format!("`{action}`: {e}"),
                check: check.to_owned(),
            }),
            _ => Err(e),
        },
        other => other,
    }
}

/// For the reads a create starts with (a header row, a database's data source, an upload
/// URL): their failure means the create itself was never sent, so a
/// [`PlatformError::Transient`] becomes [`PlatformError::NotPerformed`] (retried even for a
/// create). Other errors are returned unchanged.
pub fn before_create(e: PlatformError) -> PlatformError {
    match e {
        PlatformError::Transient { detail, .. } => PlatformError::NotPerformed {
            detail: format!("before the create was sent: {detail}"),
        },
        other => other,
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
    /// The built-in platform: it only emits supportopsd's own events, it performs no actions.
    #[error(
        "the built-in {0} platform performs no actions (it only emits supportopsd's own events)"
    )]
    NoActions(&'static str),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(String),
    /// The host policy refuses an endpoint or a secret reference of the integration (each
    /// reason names the policy key that would allow it).
    #[error("refused by the host policy: {}", .0.join("; "))]
    Policy(Vec<String>),
}

/// What a connector keeps between runs of the daemon, secrets unsealed: e.g. Slack's rotated app
/// configuration token pair and what its manifest sync last wrote.
#[derive(Debug, Clone, Default)]
pub struct Kept {
    /// Secret values by field (sealed in the state, bound to the integration and the field).
    pub secrets: std::collections::BTreeMap<String, Secret>,
    /// Everything else (nothing secret).
    pub data: Value,
}

/// Where a connector keeps [`Kept`] (the daemon's state; the runtime implements it). `store`
/// returns once the record is durable, so a rotated single-use credential is on disk before
/// it is used.
pub trait KeptStore: Send + Sync + std::fmt::Debug {
    /// What was kept for `integration`, if anything.
    fn load(&self, integration: &IntegrationId) -> Result<Option<Kept>, String>;
    /// Replaces what is kept for `integration`, atomically and durably.
    fn store(&self, integration: &IntegrationId, kept: &Kept) -> Result<(), String>;
    /// Why a record with secrets cannot be stored (no sealing key), checked before a secret
    /// that cannot be had twice (a single-use refresh token) is spent. `None`: it can.
    fn cannot_seal(&self) -> Option<String> {
        None
    }
}

/// The live half of a platform.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Hands the connector where it may keep things between runs (called once, right after the
    /// daemon builds it). Default: it keeps nothing.
    fn attach_store(&self, store: Arc<dyn KeptStore>) {
        let _ = store;
    }

    /// Who supportopsd also is on the platform besides [`Health::identity`], as the last
    /// [`Connector::check`] learned it: the loop guard treats an event whose actor is any of
    /// them as caused by supportopsd (Slack: the bot user id `U…` as well as the bot id `B…`,
    /// since `channel_created.creator` or `member_joined_channel.inviter` name the bot user).
    /// Default: none.
    fn other_identities(&self) -> Vec<String> {
        Vec::new()
    }

    /// What the operator still has to do for the registration the last
    /// [`Connector::sync_webhook`] made to work fully (Slack: reinstall the app after the
    /// manifest update changed its scopes), in words they can act on. Default: nothing.
    fn pending_action(&self) -> Option<String> {
        None
    }

    /// Checks the credentials and connection (a cheap authenticated call).
    async fn check(&self) -> Result<Health, PlatformError>;
    /// Performs one action.
    async fn execute(&self, call: &ActionCall) -> Result<ActionOutput, PlatformError>;

    /// Whether several due calls of `action` are better sent together through
    /// [`Connector::execute_many`] (the platform has a bulk endpoint for it). Default: no.
    fn batchable(&self, action: &str) -> bool {
        let _ = action;
        false
    }

    /// Performs several calls of one action at once where the platform has a bulk endpoint
    /// (Freshdesk `tickets/bulk_update`, Zendesk `tickets/update_many`, polling the job where
    /// the API answers with one); one result per call, in order. The default performs them
    /// one by one.
    async fn execute_many(&self, calls: &[ActionCall]) -> Vec<Result<ActionOutput, PlatformError>> {
        let mut out = Vec::with_capacity(calls.len());
        for call in calls {
            out.push(self.execute(call).await);
        }
        out
    }

    /// Fetches what a delivery of `event` does not carry: the fields its catalogue
    /// [`crate::platforms::Delivery`] lists as `enriched`, read from the platform with the
    /// ids in `objects` (the normalised event's objects). Returns objects to merge into the
    /// event's, key by key (`{"ticket": {"subject": …}, "comment": {"body": …}}`), normalised
    /// as the platform's events are. The executor calls it once per delivery, through the
    /// integration's gate, before the rules are matched; an error is retried and
    /// dead-lettered like an action's. The default fetches nothing.
    async fn enrich(
        &self,
        event: &str,
        objects: &Map<String, Value>,
    ) -> Result<Map<String, Value>, PlatformError> {
        let _ = (event, objects);
        Ok(Map::new())
    }

    /// How often the daemon should call [`Connector::poll`] (a platform whose push
    /// notifications say too little, such as Drive's "this file changed"). Default: never.
    fn poll_interval(&self) -> Option<Duration> {
        None
    }

    /// Looks for new events since `cursor` (what the previous poll returned; `None` the first
    /// time, when a poller only records where things stand). Default: nothing.
    async fn poll(&self, cursor: Option<&Value>) -> Result<Polled, PlatformError> {
        let _ = cursor;
        Ok(Polled::default())
    }

    /// Makes the platform deliver `target.events` to `target.url`, idempotently: creates what
    /// is missing, updates what differs, repairs what was deleted or edited behind our back,
    /// renews what expires, and leaves alone what already matches. Only what carries the
    /// target's marker is touched. The default: the platform has no API for it.
    async fn sync_webhook(&self, target: &WebhookTarget) -> Result<WebhookSync, PlatformError> {
        Ok(WebhookSync::Manual(format!(
            "register {} on the platform by hand for the events: {}",
            target.url,
            target.events.join(", ")
        )))
    }

    /// Deletes everything registered for `target.integration` that carries its marker (the
    /// integration or its `[webhook]` was removed from the manifests). Returns how many
    /// platform objects were deleted; objects already gone are not an error.
    async fn remove_webhook(&self, target: &WebhookTarget) -> Result<usize, PlatformError> {
        let _ = target;
        Ok(0)
    }

    /// Checks, read-only, the assumptions this connector makes about the platform that vendor
    /// documentation does not confirm (`supportopsd check-platform`): one finding per
    /// assumption. Each platform's probe lives in its `probe.rs` and sends every request
    /// through [`super::probe::read_only`]. An `Err` means the probe could not run at all (no
    /// connection, credentials refused). The default: the connection check, and a finding
    /// saying there is nothing more to probe.
    async fn probe(&self, target: &ProbeTarget) -> Result<Vec<Finding>, PlatformError> {
        let _ = target;
        let health = self.check().await?;
        Ok(vec![
            Finding::checked(
                "connection",
                "the credentials are accepted",
                "the connection check",
                "an authenticated answer",
                health.detail,
                true,
            ),
            Finding::unchecked(
                "probes",
                "platform-specific assumptions",
                "-",
                "-",
                "this connector has no read-only probes beyond the connection check",
            ),
        ])
    }
}

/// Builds the connector of an integration, resolving its credentials.
pub type ConnectFn =
    fn(&Integration, &ResolveContext<'_>) -> Result<Arc<dyn Connector>, ConnectError>;

/// Builds the live connector of an integration, resolving its credentials, once the host
/// policy allows everything it names ([`policy_refusals`]): this is the one way a connector
/// is built from a revision, so no credential goes to a host the policy does not allow.
pub fn connect(
    integration: &Integration,
    ctx: &ResolveContext<'_>,
    policy: &Policy,
) -> Result<Arc<dyn Connector>, ConnectError> {
    let refused = policy_refusals(integration, policy);
    if !refused.is_empty() {
        return Err(ConnectError::Policy(refused));
    }
    match integration.platform {
        PlatformKind::Freshdesk => freshdesk::connector::connect(integration, ctx),
        PlatformKind::Zendesk => zendesk::connector::connect(integration, ctx),
        PlatformKind::Slack => slack::connector::connect(integration, ctx),
        PlatformKind::Trello => trello::connector::connect(integration, ctx),
        PlatformKind::Notion => notion::connector::connect(integration, ctx),
        PlatformKind::GoogleSheets => google_sheets::connector::connect(integration, ctx),
        PlatformKind::Supportopsd => Err(ConnectError::NoActions("supportopsd")),
    }
}

/// What the host policy refuses of an integration, one sentence each (empty when it allows
/// everything): an `[endpoint] base_url` or a Freshdesk `domain` outside the platform's own
/// hosts that the policy does not list, `http://` off loopback, and secret references (in
/// `[credentials]` and `[webhook] secret`) to the daemon's own secrets or outside the
/// policy's `[secrets]` scope for the integration. Never contains a secret value.
pub fn policy_refusals(integration: &Integration, policy: &Policy) -> Vec<String> {
    let id = &integration.id;
    let own = integration.platform.descriptor().hosts;
    let mut out = Vec::new();
    for (what, url) in endpoints(integration) {
        if let Err(r) = policy.check_endpoint(integration.platform, own, what, &url) {
            // A custom Freshdesk domain is most likely the helpdesk's CNAME, where the API
            // does not answer: say that before the policy's advice (which fits a proxy).
            let hint = if what == FRESHDESK_DOMAIN {
                format!(" ({})", freshdesk::connector::CNAME_HINT)
            } else {
                String::new()
            };
            out.push(format!("integration `{id}`: {r}{hint}"));
        }
    }
    let webhook_secret = integration
        .webhook
        .as_ref()
        .and_then(|w| w.secret.as_ref())
        .map(|r| ("webhook_secret", r));
    let credentials = integration
        .credentials
        .iter()
        .filter_map(|(field, c)| match c {
            Credential::Secret(r) => Some((field.as_str(), r)),
            Credential::Plain(_) => None,
        });
    for (field, r) in credentials.chain(webhook_secret) {
        if let Err(refusal) = policy.check_reference(id, field, r) {
            out.push(format!("integration `{id}`: {refusal}"));
        }
    }
    out
}

/// Where a Freshdesk `domain` is written, as [`endpoints`] names it.
const FRESHDESK_DOMAIN: &str = "credential `domain`";

/// The endpoints an integration names instead of its platform's defaults: `[endpoint]
/// base_url`, and a Freshdesk `domain` (the API is `https://<domain>/api/v2`; `domain` is a
/// plain, non-secret field). Each as (where it is written, URL).
pub fn endpoints(integration: &Integration) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(url) = integration
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        out.push(("[endpoint] base_url", url.to_owned()));
    }
    if integration.platform == PlatformKind::Freshdesk
        && let Some(Credential::Plain(domain)) = integration.credentials.get("domain")
        && let Ok(host) = freshdesk::connector::normalize_domain(domain)
    {
        out.push((FRESHDESK_DOMAIN, format!("https://{host}/")));
    }
    out
}

/// The endpoints of an integration that only a host policy can allow (not the platform's own
/// hosts), as (where it is written, `host[:port]`): what `validate` and `plan`, which run
/// without the policy, tell the reviewer the daemon will check.
pub fn overrides(integration: &Integration) -> Vec<(&'static str, String)> {
    let own = integration.platform.descriptor().hosts;
    endpoints(integration)
        .into_iter()
        .filter(|(what, url)| {
            Policy::none()
                .check_endpoint(integration.platform, own, what, url)
                .is_err()
        })
        .filter_map(|(what, url)| {
            crate::policy::Endpoint::parse(&url)
                .ok()
                .map(|e| (what, e.authority()))
        })
        .collect()
}
