//! The shared runtime of a running daemon: what the webhook ingress, the executor, the
//! reconciler and the operator API all hold (an `Arc<Runtime>`, the way kube-runtime hands a
//! `Context` to `reconcile` or mini-redis a `Db` to each connection). It owns the active
//! revision ([`Active`]: rules, connectors, gates, verification keys) and how it is loaded and
//! swapped, the state handle and its ingest writer, per-integration health and sync, learned
//! registration keys, counters, and the channels to the reconciler ([`pass`]) and to
//! supportopsd's own events ([`alerts`]).
//!
//! It sits below its users: `webhook`, `execute`, `reconcile` and `daemon` import it, and it
//! imports none of them. `daemon` only wires the tasks together.

pub mod active;
pub mod alerts;
pub mod budget;
pub mod decide;
pub mod explain;
pub mod export;
pub mod gate;
pub mod health;
pub mod history;
pub mod holds;
pub mod kept;
pub mod notion;
pub mod pass;
pub mod rejections;
pub mod remote;
pub mod retry;
pub mod shadow;
pub mod stats;
mod writer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc, oneshot};

use crate::manifest::{self, IntegrationId, Source};
use crate::platforms::{Registration, VerifyKeys};
use crate::policy::Policy;
use crate::secrets::{self, SealKey, Secret};
use crate::state::IngestOutcome;
use crate::state::journal::{IngestRecord, Journal};
use crate::state::{
    AuditKind, AuditRecord, HealthRecord, REGISTRATION_SECRET_FIELD, RegistrationRecord,
};
use crate::state::{State, Store};
use crate::telemetry::Metrics;
pub use active::{Active, Problem};
use health::{HealthStatus, SyncStatus};
use retry::RetryPolicy;

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The URL the platforms reach us at (registered with them; part of Trello's signature).
    pub public_url: String,
    /// The manifest repository.
    pub repo: PathBuf,
    /// Sub-folder of the repository holding the manifests.
    pub subdir: Option<PathBuf>,
    /// The revision to load (`HEAD` in production).
    pub rev: String,
    /// The state directory.
    pub state: PathBuf,
    /// Largest webhook body accepted (413 beyond).
    pub max_body: usize,
    /// Time allowed to send the request headers, and then the whole body (408 beyond); also how
    /// long a write may make no progress before the connection is closed.
    pub read_timeout: Duration,
    /// Connections served at once (further ones wait in the kernel's backlog).
    pub max_connections: usize,
    /// Outbox depth past which ingress answers 503 with `Retry-After`.
    pub max_queue: usize,
    /// How long a platform event id is remembered for deduplication.
    pub dedupe_ttl: Duration,
    /// The action budget of a rule without `[limits] max_actions_per_minute`
    /// (`runtime::budget`).
    pub max_actions_per_minute: u32,
    /// Retries of failed actions.
    pub retry: RetryPolicy,
    /// How long the executor holds a job before it counts as abandoned (crash recovery).
    pub lease: Duration,
    /// Jobs run at once across all integrations.
    pub workers: usize,
    /// The operator API's admin token (every route); `None` is the tokenless loopback mode
    /// (`daemon::auth` says what it refuses), which `supportopsd run` allows only when both
    /// the listen address and the public URL are loopback.
    pub admin_token: Option<Secret>,
    /// The operator API's read-only token: every `GET` route, nothing that changes anything.
    pub read_token: Option<Secret>,
    /// The shared secret of a git host's push webhook on `POST /api/sync` (GitHub/Gitea
    /// `X-Hub-Signature-256`, GitLab `X-Gitlab-Token`); `None` accepts only the admin token.
    pub sync_secret: Option<Secret>,
    /// How long audit records are kept.
    pub audit_retention: Duration,
    /// How many audit records are kept at most (the oldest go first).
    pub audit_max_records: u64,
    /// How long per-minute rollups are kept.
    pub rollup_retention: Duration,
    /// How long stored deliveries (their payloads) are kept, unless a job still needs them.
    pub event_retention: Duration,
    /// The size (payloads, database, journal) retention keeps the state under, oldest
    /// deliveries first.
    pub max_state_size: u64,
    /// How often the repository is polled for a new commit (the file watcher's fallback).
    pub poll_interval: Duration,
    /// How often a full pass re-checks live state (drift, renewals, connections).
    pub resync_interval: Duration,
    /// Whether to watch the repository's git directory for new commits.
    pub watch: bool,
    /// A remote repository to clone into the state and fetch before each pass (then `repo` is
    /// the clone and `rev` its branch).
    pub remote: Option<remote::Remote>,
    /// The host policy every revision is checked against before it loads (where credentials
    /// may go, which secrets each integration may name). [`Policy::none`] by default.
    pub policy: Arc<Policy>,
    /// Who may read `GET /metrics` (its labels name integrations, rules and the revision).
    pub metrics_auth: MetricsAuth,
}

/// Who may read `GET /metrics` (SEC-14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum MetricsAuth {
    /// Anyone who reaches the listener (the default: scrapers keep working on upgrade).
    #[default]
    Open,
    /// Whoever may read the operator API: the read or admin token (or loopback without a
    /// token, in the tokenless loopback mode).
    Token,
}

impl Options {
    /// Defaults for everything but the paths and addresses.
    pub fn new(listen: SocketAddr, public_url: String, repo: PathBuf, state: PathBuf) -> Options {
        Options {
            listen,
            public_url,
            repo,
            subdir: None,
            rev: "HEAD".into(),
            state,
            max_body: 1024 * 1024,
            read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_queue: 100_000,
            dedupe_ttl: Duration::from_secs(72 * 3600),
            max_actions_per_minute: budget::DEFAULT_MAX_ACTIONS_PER_MINUTE,
            retry: RetryPolicy::default(),
            lease: Duration::from_secs(120),
            workers: 32,
            admin_token: None,
            read_token: None,
            sync_secret: None,
            audit_retention: Duration::from_secs(30 * 86_400),
            audit_max_records: 1_000_000,
            rollup_retention: Duration::from_secs(35 * 86_400),
            event_retention: Duration::from_secs(3 * 86_400),
            max_state_size: 20_000_000_000,
            poll_interval: DEFAULT_POLL,
            resync_interval: DEFAULT_RESYNC,
            watch: true,
            remote: None,
            policy: Arc::new(Policy::none()),
            metrics_auth: MetricsAuth::Open,
        }
    }
}

/// What the last configuration load did.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    /// The commit in use.
    pub applied: Option<String>,
    /// Why the newest load was refused, if it was (the previous revision keeps running).
    pub refused: Option<String>,
    /// The commit that was refused (not loaded again until the branch moves).
    pub refused_commit: Option<String>,
    /// When the last revision was applied, milliseconds since the Unix epoch.
    pub applied_ms: Option<u64>,
    /// Problems of individual integrations in the active revision (a Slack request URL that
    /// could not be registered included).
    pub problems: Vec<Problem>,
    /// What an operator has to do by hand for the active revision (informational; e.g. a
    /// Slack request URL to enter in the app settings when no app configuration token is set).
    pub notes: Vec<Problem>,
    /// Webhook registrations that failed in the last pass.
    pub registration_problems: Vec<Problem>,
}

/// Shared state of a running daemon.
#[derive(Debug)]
pub struct Runtime {
    /// The state, through its interface (the sled [`Store`] behind it is named only by
    /// [`open`]).
    pub store: Arc<dyn State>,
    /// Metrics.
    pub metrics: Metrics,
    /// Per-integration counters (`GET /api/integrations/{id}/stats`).
    pub stats: stats::Stats,
    /// Refused webhook deliveries, aggregated per integration, reason and minute (SEC-08).
    pub rejections: rejections::Rejections,
    /// Each rule's action budget: the actions its jobs were scheduled for, per minute.
    pub budgets: budget::Budgets,
    /// Options.
    pub options: Options,
    /// The sealing key, when one was found.
    pub key: Option<SealKey>,
    active: RwLock<Option<Arc<Active>>>,
    /// Woken when jobs are enqueued.
    pub work: Arc<Notify>,
    /// Who supportopsd is on each platform (bot ids, user ids), for the loop guard.
    identities: RwLock<HashMap<IntegrationId, Vec<String>>>,
    status: Mutex<ReloadStatus>,
    /// Inbound secrets and channel ids learned at registration, by integration.
    learned: RwLock<HashMap<IntegrationId, VerifyKeys>>,
    /// Integrations a signed delivery was seen for (mirrored in the state; Notion's progress).
    signed_seen: Mutex<std::collections::HashSet<IntegrationId>>,
    /// Serialises changes to Notion verification records ([`notion`]).
    notion_lock: Mutex<()>,
    /// Health per integration (mirrored in the state).
    health: Mutex<std::collections::BTreeMap<String, HealthRecord>>,
    /// Where reconcile passes are requested.
    triggers: mpsc::Sender<pass::Request>,
    trigger_rx: Mutex<Option<mpsc::Receiver<pass::Request>>>,
    writer: writer::Writer,
    commits: mpsc::Sender<oneshot::Sender<Result<(), String>>>,
    /// supportopsd's own events waiting to be stored ([`alerts`]).
    alerts: mpsc::Sender<alerts::Emission>,
    alerts_rx: Mutex<Option<mpsc::Receiver<alerts::Emission>>>,
    alert_seq: std::sync::atomic::AtomicU64,
    /// Paused rules and integrations (mirrored from the state: [`holds`]).
    holds: holds::Holds,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Runtime {
    /// The active revision, if one has loaded.
    pub fn active(&self) -> Option<Arc<Active>> {
        self.active
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts `active` in use without loading it from the repository (unit tests).
    #[cfg(test)]
    pub(crate) fn install_active(&self, active: Active) {
        *self
            .active
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(active));
    }

    /// What the last load did.
    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether supportopsd itself caused `event` (the loop guard): any of the actors its
    /// catalogue entry names is one of supportopsd's identities on the event's integration
    /// (for Notion's aggregated authors: every one is), see [`crate::event::Event::self_caused`].
    pub fn is_self(&self, event: &crate::event::Event) -> bool {
        self.identities
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&event.integration)
            .is_some_and(|ids| event.self_caused(ids))
    }

    /// Records who supportopsd is on an integration.
    pub fn set_identity(&self, integration: IntegrationId, ids: Vec<String>) {
        self.identities
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(integration, ids);
    }

    /// Stores an accepted delivery and returns once it is durable: the single ingest writer
    /// writes it to sled, journals it, and `fdatasync`s the journal once for every delivery it
    /// took in the same batch (group commit).
    ///
    /// The expensive half of the work — encoding the event, its jobs, its audit records and its
    /// journal record, allocating ids, freeing the parsed payload — happens here, on the
    /// caller's thread and in parallel with other deliveries; the writer only commits.
    pub async fn ingest(&self, record: IngestRecord) -> Result<IngestOutcome, String> {
        let prepared = self
            .store
            .prepare_ingest(&record)
            .map_err(|e| e.to_string())?;
        let framed = Journal::encode_prepared(&self.options.state, &record, &prepared)
            .map_err(|e| e.to_string())?;
        drop(record);
        self.writer.ingest(prepared, framed).await
    }

    /// A clean stop of ingest: writes every delivery taken to the state, flushes it and retires
    /// the ingest journal, so the next start replays nothing; later deliveries are refused.
    pub async fn close_ingest(&self) -> Result<(), String> {
        self.writer.close().await
    }

    /// Waits until every delivery answered so far is in the state (the ingest writer may hold
    /// answered deliveries for a few milliseconds under load): for reads that must see them.
    pub async fn settle(&self) -> Result<(), String> {
        self.writer.settle().await
    }

    /// Waits until everything written to the state so far is durable (a sled flush).
    /// Concurrent callers share one flush (group commit).
    pub async fn commit(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.commits
            .send(tx)
            .await
            .map_err(|_| "the committer has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the committer has stopped".to_owned())?
    }

    /// The revision to run: the pin, else `--rev`.
    pub fn target_rev(&self) -> String {
        match self.store.pin() {
            Ok(Some(pin)) => pin.revision,
            _ => self.options.rev.clone(),
        }
    }

    /// Loads the revision to run when it is not the one in use (or `force`), and swaps it in.
    /// `Ok(true)` when a new revision is now in use; `Err` when it was refused (the previous
    /// one keeps running). A commit refused once is not validated again until the branch
    /// moves.
    pub async fn load_revision(&self) -> Result<bool, String> {
        if let Some(remote) = &self.options.remote
            && let Err(e) = remote.sync().await
        {
            // What was fetched before keeps running; the next pass fetches again.
            tracing::warn!(error = %e, "Fetching the manifest repository failed.");
        }
        let rev = self.target_rev();
        let repo = self.options.repo.clone();
        let resolved = tokio::task::spawn_blocking(move || {
            manifest::source::resolve_commit(&repo, &rev).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?;
        let commit = match resolved {
            Ok(c) => c,
            Err(why) => {
                self.refuse(None, &why);
                return Err(why);
            }
        };
        let status = self.status();
        if self.active().is_some() && status.applied.as_deref() == Some(commit.as_str()) {
            return Ok(false);
        }
        if status.refused_commit.as_deref() == Some(commit.as_str()) {
            return Err(status.refused.unwrap_or_default());
        }
        self.reload_at(&commit).map(|()| true)
    }

    /// Loads the revision to run again, even when it is the one in use (a Notion token was
    /// captured, the keys must be rebuilt).
    pub fn reload(&self) -> Result<(), String> {
        match manifest::source::resolve_commit(&self.options.repo, &self.target_rev()) {
            Ok(commit) => self.reload_at(&commit),
            Err(e) => {
                let why = e.to_string();
                self.refuse(None, &why);
                Err(why)
            }
        }
    }

    fn refuse(&self, commit: Option<&str>, why: &str) {
        tracing::error!(reason = %why, "Revision refused; the previous one keeps running.");
        let (repeated, running) = {
            let mut status = self
                .status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // The same refusal again (a repository that cannot be read, at every poll) is
            // announced once.
            let repeated = status.refused.as_deref() == Some(why)
                && status.refused_commit.as_deref() == commit;
            status.refused = Some(why.to_owned());
            status.refused_commit = commit.map(str::to_owned);
            (repeated, status.applied.clone())
        };
        self.metrics.reload(false);
        self.audit(
            AuditKind::RevisionRefused {
                reason: why.to_owned(),
            },
            commit.unwrap_or("unknown"),
            serde_json::json!({}),
        );
        if !repeated {
            self.emit_internal(
                crate::platforms::supportopsd::events::REVISION_REFUSED,
                serde_json::json!({"revision": {"id": commit, "reason": why, "running": running}}),
            );
        }
    }

    /// Loads the revision `commit` (a full commit id) and swaps it in, or refuses it whole.
    fn reload_at(&self, commit: &str) -> Result<(), String> {
        let (active, problems) = match self.load(commit) {
            Ok(loaded) => loaded,
            Err(why) => {
                self.refuse(Some(commit), &why);
                return Err(why);
            }
        };
        for p in &problems {
            tracing::warn!(integration = %p.integration, problem = %p.message, "Integration is not fully usable.");
        }
        let applied = active.commit.clone();
        if let Some(commit) = &applied {
            self.record_applied(commit, &active.set);
            self.metrics.set_applied_revision(commit);
        }
        let mut previous = None;
        let known: std::collections::HashSet<String> = active
            .set
            .integrations
            .keys()
            .map(ToString::to_string)
            .collect();
        {
            let mut health = self
                .health
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            health.retain(|id, _| {
                let keep = known.contains(id);
                if !keep {
                    let _ = self.store.remove_health(id);
                }
                keep
            });
        }
        self.stats.retain(|id| known.contains(id));
        {
            let mut status = self
                .status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let changed = status.applied != applied;
            previous.clone_from(&status.applied);
            status.applied = applied.clone();
            status.refused = None;
            status.refused_commit = None;
            status.problems = problems;
            status.notes = Vec::new();
            if changed || status.applied_ms.is_none() {
                status.applied_ms = Some(now_ms());
            }
        }
        let counts = (active.set.integrations.len(), active.set.rules.len());
        *self
            .active
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(active));
        self.metrics.reload(true);
        self.audit(
            AuditKind::RevisionApplied,
            applied.as_deref().unwrap_or("working tree"),
            serde_json::json!({}),
        );
        if previous != applied {
            self.emit_internal(
                crate::platforms::supportopsd::events::REVISION_APPLIED,
                serde_json::json!({"revision": {"id": applied, "previous": previous, "integrations": counts.0, "rules": counts.1}}),
            );
        }
        tracing::info!(
            revision = applied.as_deref().unwrap_or("working tree"),
            "Revision applied."
        );
        Ok(())
    }

    /// Records the resources of `set` as applied at `commit`, and forgets those it no longer
    /// declares. A set the state already holds unchanged is not written again (a restart on the
    /// same revision writes only the revision).
    fn record_applied(&self, commit: &str, set: &manifest::ManifestSet) {
        let resources = crate::plan::to_state(crate::plan::desired(set));
        if let Err(e) = self.store.record_applied_set(commit, &resources) {
            tracing::warn!(error = %e, "Could not record the applied revision in the state.");
        }
    }

    /// The validated manifests of the daemon's repository at `commit` (blocking: reads git),
    /// without building anything from them — what an explanation of a delivery stored under
    /// that revision evaluates. `Err` says why they are not available (the commit is gone, or
    /// its manifests do not validate).
    pub fn manifest_at(&self, commit: &str) -> Result<manifest::ManifestSet, String> {
        let o = &self.options;
        let source = Source {
            repo: o.repo.clone(),
            subdir: o.subdir.clone(),
            rev: Some(commit.to_owned()),
        };
        let loaded = manifest::load_source(&source).map_err(|e| e.to_string())?;
        loaded.set.ok_or_else(|| {
            format!(
                "its manifests have {} validation error(s)",
                loaded.diagnostics.error_count()
            )
        })
    }

    fn load(&self, rev: &str) -> Result<(Active, Vec<Problem>), String> {
        let o = &self.options;
        let source = Source {
            repo: o.repo.clone(),
            subdir: o.subdir.clone(),
            rev: Some(rev.to_owned()),
        };
        let loaded = manifest::load_source(&source).map_err(|e| e.to_string())?;
        let Some(set) = loaded.set else {
            let n = loaded.diagnostics.error_count();
            let first = loaded
                .diagnostics
                .render("")
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            return Err(format!("{n} validation error(s); first: {first}"));
        };
        let refused = active::policy_refusals(&set, &o.policy);
        if let Some(first) = refused.first() {
            // The whole list goes to the log; the reason (status, audit, the
            // `revision.refused` event) names the first and how many more.
            for r in &refused {
                tracing::warn!(refusal = %r, "Refused by the host policy.");
            }
            let more = match refused.len() {
                1 => String::new(),
                n => format!(" (and {} more: see the log)", n - 1),
            };
            return Err(format!("refused by the host policy: {first}{more}"));
        }
        let commit = match &set.revision {
            manifest::Revision::Commit { id, .. } => Some(id.clone()),
            manifest::Revision::WorkTree => None,
        };
        let env = secrets::process_env;
        let ctx = secrets::ResolveContext::new(self.key.as_ref(), &env);
        let captured = self.confirmed_notion_tokens();
        let (active, problems) =
            Active::build(set, commit, &o.public_url, &ctx, &o.policy, &captured);
        // Where connectors keep what they learn between runs (Slack's rotated token pair).
        let kept: Arc<dyn crate::platforms::KeptStore> =
            Arc::new(kept::StateKept::new(self.store.clone(), self.key.clone()));
        for (_, connector) in active.connectors() {
            connector.attach_store(kept.clone());
        }
        Ok((active, problems))
    }

    /// The keys that verify deliveries to `id`: the revision's, completed with what
    /// registration learned (a Zendesk signing secret read from the API, a generated Freshdesk
    /// secret, a Drive channel's id and token). Borrowed when registration learned nothing the
    /// revision lacks (the common case: no copy per delivery).
    pub fn verify_keys<'a>(
        &self,
        active: &'a Active,
        id: &IntegrationId,
    ) -> Option<std::borrow::Cow<'a, VerifyKeys>> {
        let keys = active.keys(id)?;
        let learned = self
            .learned
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(learned) = learned.get(id).filter(|l| {
            (keys.secret.is_none() && l.secret.is_some())
                || (keys.channel_id.is_none() && l.channel_id.is_some())
        }) else {
            return Some(std::borrow::Cow::Borrowed(keys));
        };
        let mut keys = keys.clone();
        if keys.secret.is_none() {
            keys.secret.clone_from(&learned.secret);
        }
        if keys.channel_id.is_none() {
            keys.channel_id.clone_from(&learned.channel_id);
        }
        Some(std::borrow::Cow::Owned(keys))
    }

    /// A registration record of the state as the connector sees it (secret unsealed).
    pub fn unseal_registration(&self, record: &RegistrationRecord) -> Registration {
        unseal_registration(self.key.as_ref(), record)
    }

    /// Records a registration in the state (its secret sealed) and learns its keys.
    pub fn record_registration(
        &self,
        id: &IntegrationId,
        platform: &str,
        revision: Option<String>,
        registration: &Registration,
    ) -> Result<(), String> {
        let sealed_secret = match (&registration.secret, &self.key) {
            (Some(secret), Some(key)) => Some(
                secrets::seal(key, id, REGISTRATION_SECRET_FIELD, secret.expose())
                    .map_err(|e| e.to_string())?,
            ),
            (Some(_), None) => {
                tracing::warn!(integration = %id, "No sealing key: the registration's secret is kept in memory only and is lost at restart.");
                None
            }
            (None, _) => None,
        };
        self.learn(id, platform, registration);
        self.store
            .put_registration(&RegistrationRecord {
                integration: id.to_string(),
                platform: platform.to_owned(),
                revision,
                ids: registration.ids.clone(),
                url: registration.url.clone(),
                events: registration.events.clone(),
                expires_at_ms: registration.expires_at_ms,
                sealed_secret,
                synced_ms: now_ms(),
            })
            .map_err(|e| e.to_string())
    }

    /// Makes a registration's secret (and Drive channel id) verify deliveries.
    fn learn(&self, id: &IntegrationId, platform: &str, registration: &Registration) {
        let channel_id = (platform == "google_sheets")
            .then(|| registration.ids.first().cloned())
            .flatten();
        self.learned
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                id.clone(),
                VerifyKeys {
                    secret: registration.secret.clone(),
                    callback_url: None,
                    channel_id,
                },
            );
    }

    /// Learns the keys of every registration recorded in the state (at start).
    fn learn_recorded(&self) {
        for record in self.store.registrations().unwrap_or_default() {
            if let Ok(id) = IntegrationId::parse(&record.integration) {
                let registration = self.unseal_registration(&record);
                self.learn(&id, &record.platform, &registration);
            }
        }
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for record in self.store.health_records().unwrap_or_default() {
            health.insert(record.integration.clone(), record);
        }
    }

    /// Appends an audit record about an integration or revision (logged when it cannot be
    /// written).
    pub fn audit(&self, kind: AuditKind, resource_id: &str, detail: serde_json::Value) {
        let resource_type = match kind {
            AuditKind::RevisionApplied
            | AuditKind::RevisionRefused { .. }
            | AuditKind::Pinned
            | AuditKind::Unpinned => "revision",
            _ => "integration",
        };
        let mut record = audit_record(kind, resource_id, detail);
        record.resource_type = resource_type.to_owned();
        if let Err(e) = self.store.append_audit(&record) {
            tracing::warn!(error = %e, "Could not write an audit record.");
        }
    }

    /// Whether an integration's connection check is due: healthy ones every resync, failing
    /// ones after their backoff.
    pub fn check_due(&self, id: &str, now: u64) -> bool {
        let health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(h) = health.get(id) else { return true };
        let wait = if h.consecutive_failures == 0 {
            self.options.resync_interval
        } else {
            health::backoff(h.consecutive_failures, self.options.resync_interval)
        };
        let wait = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        h.checked_ms.saturating_add(wait) <= now
    }

    fn with_health(&self, id: &str, update: impl FnOnce(&mut HealthRecord)) {
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = now_ms();
        let record = health.entry(id.to_owned()).or_insert_with(|| HealthRecord {
            integration: id.to_owned(),
            sync: SyncStatus::Unknown.as_str().to_owned(),
            sync_reason: "not synced yet".to_owned(),
            health: HealthStatus::Unknown.as_str().to_owned(),
            health_reason: "not checked yet".to_owned(),
            since_ms: now,
            checked_ms: 0,
            consecutive_failures: 0,
        });
        update(record);
        if let Err(e) = self.store.put_health(record) {
            tracing::warn!(error = %e, "Could not record an integration's health.");
        }
    }

    /// Records a connection check (audits degradation and recovery).
    pub fn record_health(&self, id: &str, status: HealthStatus, reason: &str, now: u64) {
        let mut transition = None;
        let mut since_failures = (now, 0);
        self.with_health(id, |h| {
            let was_healthy = h.health == HealthStatus::Healthy.as_str();
            let was_degraded = h.health == HealthStatus::Degraded.as_str()
                || h.health == HealthStatus::Missing.as_str();
            if h.health != status.as_str() {
                h.since_ms = now;
            }
            h.health = status.as_str().to_owned();
            h.health_reason = reason.to_owned();
            h.checked_ms = now;
            if status == HealthStatus::Healthy {
                h.consecutive_failures = 0;
                if was_degraded {
                    transition = Some(AuditKind::IntegrationRecovered);
                }
            } else {
                h.consecutive_failures = h.consecutive_failures.saturating_add(1);
                if was_healthy || (h.consecutive_failures == 1 && !was_degraded) {
                    transition = Some(AuditKind::IntegrationDegraded {
                        reason: reason.to_owned(),
                    });
                }
            }
            since_failures = (h.since_ms, h.consecutive_failures);
        });
        self.metrics
            .set_integration_healthy(id, status == HealthStatus::Healthy);
        if let Some(kind) = transition {
            let event = if matches!(kind, AuditKind::IntegrationRecovered) {
                tracing::info!(integration = %id, "Integration recovered.");
                crate::platforms::supportopsd::events::INTEGRATION_RECOVERED
            } else {
                tracing::warn!(integration = %id, reason = %reason, "Integration degraded.");
                crate::platforms::supportopsd::events::INTEGRATION_DEGRADED
            };
            let (since, failures) = since_failures;
            self.emit_health(event, id, status.as_str(), reason, since, failures);
            self.audit(kind, id, serde_json::json!({}));
        }
    }

    /// Records a registration's sync status.
    pub fn record_sync(&self, id: &str, status: SyncStatus, reason: &str) {
        self.with_health(id, |h| {
            h.sync = status.as_str().to_owned();
            h.sync_reason = reason.to_owned();
        });
    }

    /// Health per integration of the active revision, for `status`.
    pub fn health_records(&self) -> Vec<HealthRecord> {
        let health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match self.active() {
            Some(active) => active
                .set
                .integrations
                .keys()
                .map(|id| {
                    health.get(id.as_str()).cloned().unwrap_or(HealthRecord {
                        integration: id.to_string(),
                        sync: SyncStatus::Unknown.as_str().to_owned(),
                        sync_reason: "not synced yet".to_owned(),
                        health: HealthStatus::Unknown.as_str().to_owned(),
                        health_reason: "not checked yet".to_owned(),
                        since_ms: 0,
                        checked_ms: 0,
                        consecutive_failures: 0,
                    })
                })
                .collect(),
            None => health.values().cloned().collect(),
        }
    }

    /// Replaces what the last registration pass left to do by hand, and what failed.
    pub fn record_registration_pass(&self, notes: Vec<Problem>, problems: Vec<Problem>) {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        status.notes = notes;
        status.registration_problems = problems;
    }

    /// Records that a delivery for `id` was verified with its confirmed token (Notion: the
    /// subscription works).
    pub fn note_signed_delivery(&self, id: &IntegrationId) {
        // Once per integration and run from memory; the state answers for earlier runs.
        let first = self
            .signed_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone());
        if !first
            || self
                .store
                .signed_delivery_seen(id.as_str())
                .unwrap_or(false)
        {
            return;
        }
        if let Err(e) = self.store.set_signed_delivery_seen(id.as_str()) {
            tracing::warn!(error = %e, "Could not record a verified delivery.");
        }
        if let Some(t) = self
            .store
            .notion_verification(id.as_str())
            .ok()
            .and_then(|v| v.confirmed_token().cloned())
        {
            self.record_sync(
                id.as_str(),
                SyncStatus::InSync,
                &format!(
                    "verified: the operator confirmed token {} ({}); signed events arrive from the subscription",
                    t.id, t.fingerprint
                ),
            );
        }
    }

    /// Asks for a reconcile pass and waits for its report.
    pub async fn request_pass(&self, cause: pass::Cause) -> Option<pass::PassReport> {
        let (tx, rx) = oneshot::channel();
        self.triggers
            .send(pass::Request {
                cause,
                reply: Some(tx),
            })
            .await
            .ok()?;
        rx.await.ok()
    }

    /// Asks for a reconcile pass without waiting (SIGHUP).
    pub fn trigger_pass(&self, cause: pass::Cause) {
        let _ = self.triggers.try_send(pass::Request { cause, reply: None });
    }
}

/// Runs the group committer: every waiter queued while a flush is in progress is answered by
/// the next single flush.
async fn committer(
    store: Arc<dyn State>,
    mut rx: mpsc::Receiver<oneshot::Sender<Result<(), String>>>,
) {
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let result = store.flush_async().await.map_err(|e| e.to_string());
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

impl Runtime {
    /// One line for `systemctl status`: the revision in use, and a refusal if there was one.
    pub fn status_line(&self) -> String {
        let s = self.status();
        let revision = s
            .applied
            .as_deref()
            .map_or("no revision", |r| &r[..r.len().min(12)]);
        match &s.refused {
            Some(why) => format!("serving {revision}; newest revision refused: {why}"),
            None => format!("serving {revision}"),
        }
    }

    /// Writes the audit records of refusal windows that are over at `now_ms` (all of them when
    /// `all`: at shutdown and before the audit log is read), and logs how many refusals each
    /// counted beyond the one already logged.
    pub fn flush_rejections(&self, now_ms: u64, all: bool) {
        for (record, suppressed) in self.rejections.take_closed(now_ms, all) {
            if suppressed > 0
                && let AuditKind::EventRejected { reason } = &record.kind
            {
                tracing::info!(integration = %record.resource_id, reason = %reason, suppressed, "More webhook deliveries refused (counted, not logged one by one).");
            }
            if let Err(e) = self.store.append_audit(&record) {
                tracing::warn!(error = %e, "Audit record not written.");
            }
        }
    }

    /// Writes the rollup counts not yet written to the state, where they are added to what it
    /// holds (`runtime::stats`); what cannot be written is kept for the next try. Does not
    /// flush. Returns whether anything was written.
    pub fn write_rollups(&self) -> bool {
        let taken = self.stats.take_rollups();
        if taken.is_empty() {
            return false;
        }
        match self.store.add_rollups(&taken) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "Per-minute counts not written; kept for the next try.");
                self.stats.restore(taken);
                false
            }
        }
    }

    /// Writes an audit record; a failure is logged, never fatal.
    pub fn record_audit(
        &self,
        at_ms: u64,
        kind: AuditKind,
        resource_type: &str,
        resource_id: &str,
        detail: serde_json::Value,
    ) {
        let record = AuditRecord {
            at_ms,
            kind,
            resource_type: resource_type.to_owned(),
            resource_id: resource_id.to_owned(),
            detail,
        };
        if let Err(e) = self.store.append_audit(&record) {
            tracing::warn!(error = %e, "Audit record not written.");
        }
    }

    /// The receiving end of pass requests, once (for the reconciler `daemon::run` starts).
    pub fn take_pass_requests(&self) -> Option<mpsc::Receiver<pass::Request>> {
        self.trigger_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Where pass requests go (for the file watcher).
    pub fn pass_requests(&self) -> mpsc::Sender<pass::Request> {
        self.triggers.clone()
    }

    /// The receiving end of supportopsd's own events, once (for `daemon::alerts::run`).
    pub fn take_emissions(&self) -> Option<mpsc::Receiver<alerts::Emission>> {
        self.alerts_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// A registration as the connector sees it, its secret unsealed (left out, with a warning, when
/// it cannot be: the connector then treats it as unknown and replaces it).
pub fn unseal_registration(key: Option<&SealKey>, record: &RegistrationRecord) -> Registration {
    let secret = match (
        &record.sealed_secret,
        key,
        IntegrationId::parse(&record.integration),
    ) {
        (Some(sealed), Some(key), Ok(id)) => {
            match secrets::unseal(key, &id, REGISTRATION_SECRET_FIELD, sealed) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(integration = %record.integration, error = %e, "Cannot unseal a registration secret.");
                    None
                }
            }
        }
        _ => None,
    };
    Registration {
        ids: record.ids.clone(),
        url: record.url.clone(),
        events: record.events.clone(),
        expires_at_ms: record.expires_at_ms,
        secret,
    }
}

/// An audit record about an integration, now.
pub fn audit_record(kind: AuditKind, resource_id: &str, detail: serde_json::Value) -> AuditRecord {
    AuditRecord {
        at_ms: now_ms(),
        kind,
        resource_type: "integration".to_owned(),
        resource_id: resource_id.to_owned(),
        detail,
    }
}

/// The resync interval's default.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(300);
/// The poll interval's default.
pub const DEFAULT_POLL: Duration = Duration::from_secs(30);

/// Opens the state and builds a runtime (without loading a revision yet). Deliveries journaled
/// but not yet in sled when the last run stopped are restored first.
pub fn open(options: Options, key: Option<SealKey>) -> Result<Arc<Runtime>, crate::state::Error> {
    // Opening and the journal's replay are the backend's own; everything after goes through
    // the interface.
    let store = Store::open(&options.state)?;
    // Journaled deliveries not yet in sled are decided now and written by the writer's
    // applier while the daemon serves.
    let (journal, replay) = Journal::open_deferred(&store)?;
    if !replay.new.is_empty() {
        tracing::info!(
            restored = replay.new.len(),
            "Deliveries restored from the ingest journal; writing them to the state in the background."
        );
    }
    let store: Arc<dyn State> = Arc::new(store);
    let (commits, rx) = mpsc::channel(4096);
    tokio::spawn(committer(store.clone(), rx));
    let work = Arc::new(Notify::new());
    let writer =
        writer::Writer::spawn(store.clone(), journal, replay, work.clone()).map_err(|source| {
            crate::state::Error::Journal {
                path: options.state.clone(),
                source,
            }
        })?;
    let (triggers, trigger_rx) = mpsc::channel(64);
    let (alerts, alerts_rx) = mpsc::channel(alerts::QUEUE);
    let rt = Arc::new(Runtime {
        store,
        metrics: Metrics::new(),
        stats: stats::Stats::default(),
        rejections: rejections::Rejections::default(),
        budgets: budget::Budgets::default(),
        options,
        key,
        active: RwLock::new(None),
        work,
        identities: RwLock::new(HashMap::new()),
        status: Mutex::new(ReloadStatus::default()),
        learned: RwLock::new(HashMap::new()),
        signed_seen: Mutex::new(std::collections::HashSet::new()),
        notion_lock: Mutex::new(()),
        health: Mutex::new(std::collections::BTreeMap::new()),
        triggers,
        trigger_rx: Mutex::new(Some(trigger_rx)),
        writer,
        commits,
        alerts,
        alerts_rx: Mutex::new(Some(alerts_rx)),
        alert_seq: std::sync::atomic::AtomicU64::new(0),
        holds: holds::Holds::default(),
    });
    rt.learn_recorded();
    rt.load_holds()?;
    Ok(rt)
}
