//! The daemon: wires the webhook server, the executor and configuration reloads under one
//! cancellation token. `run` serves until SIGTERM; SIGHUP reloads the repository's HEAD.

pub mod config;
pub mod server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::execute::retry::RetryPolicy;
use crate::manifest::{self, IntegrationId, Source};
use crate::platforms::{WebhookSync, WebhookTarget};
use crate::secrets::{self, SealKey, Secret};
use crate::state::IngestOutcome;
use crate::state::Store;
use crate::state::journal::{IngestRecord, Journal};
use crate::telemetry::Metrics;
pub use config::{Active, Problem};

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
    /// Time allowed to send the request headers, and then the body (408 beyond).
    pub read_timeout: Duration,
    /// Connections served at once (further ones wait in the kernel's backlog).
    pub max_connections: usize,
    /// Outbox depth past which ingress answers 503 with `Retry-After`.
    pub max_queue: usize,
    /// How long a platform event id is remembered for deduplication.
    pub dedupe_ttl: Duration,
    /// Retries of failed actions.
    pub retry: RetryPolicy,
    /// How long the executor holds a job before it counts as abandoned (crash recovery).
    pub lease: Duration,
    /// Jobs run at once across all integrations.
    pub workers: usize,
    /// The bearer token of the operator API; `None` serves the API on loopback only.
    pub admin_token: Option<Secret>,
    /// How long audit records are kept.
    pub audit_retention: Duration,
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
            retry: RetryPolicy::default(),
            lease: Duration::from_secs(120),
            workers: 32,
            admin_token: None,
            audit_retention: Duration::from_secs(30 * 86_400),
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
    /// Problems of individual integrations in the active revision (a Slack request URL that
    /// could not be registered included).
    pub problems: Vec<Problem>,
    /// What an operator has to do by hand for the active revision (informational; e.g. a
    /// Slack request URL to enter in the app settings when no app configuration token is set).
    pub notes: Vec<Problem>,
}

/// Shared state of a running daemon.
#[derive(Debug)]
pub struct Runtime {
    /// The state store.
    pub store: Arc<Store>,
    /// Metrics.
    pub metrics: Metrics,
    /// Options.
    pub options: Options,
    /// The sealing key, when one was found.
    pub key: Option<SealKey>,
    active: RwLock<Option<Arc<Active>>>,
    /// Woken when jobs are enqueued.
    pub work: Notify,
    /// Who supportopsd is on each platform (bot ids, user ids), for the loop guard.
    identities: RwLock<HashMap<IntegrationId, Vec<String>>>,
    status: Mutex<ReloadStatus>,
    ingests: std::sync::mpsc::SyncSender<IngestRequest>,
    commits: mpsc::Sender<oneshot::Sender<Result<(), String>>>,
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

    /// What the last load did.
    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether `actor` is supportopsd itself on `integration`.
    pub fn is_self(&self, integration: &IntegrationId, actor: Option<&str>) -> bool {
        let Some(actor) = actor else { return false };
        self.identities
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(integration)
            .is_some_and(|ids| ids.iter().any(|i| i == actor))
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
    pub async fn ingest(&self, record: IngestRecord) -> Result<IngestOutcome, String> {
        let (tx, rx) = oneshot::channel();
        match self.ingests.try_send((Box::new(record), tx)) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(request)) => {
                // The writer is behind: wait for room off the async threads.
                let sender = self.ingests.clone();
                tokio::task::spawn_blocking(move || sender.send(request).map_err(|_| ()))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|()| "the ingest writer has stopped".to_owned())?;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                return Err("the ingest writer has stopped".to_owned());
            }
        }
        rx.await
            .map_err(|_| "the ingest writer has stopped".to_owned())?
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

    /// Loads the configured revision and swaps it in; a revision that does not validate is
    /// refused whole and the previous one keeps running.
    pub fn reload(&self) -> Result<(), String> {
        let result = self.load();
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok((active, problems)) => {
                for p in &problems {
                    tracing::warn!(integration = %p.integration, problem = %p.message, "Integration is not fully usable.");
                }
                status.applied = active.commit.clone();
                status.refused = None;
                status.problems = problems;
                status.notes = Vec::new();
                *self
                    .active
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(active));
                self.metrics.reload(true);
                tracing::info!(
                    revision = status.applied.as_deref().unwrap_or("working tree"),
                    "Revision applied."
                );
                Ok(())
            }
            Err(why) => {
                tracing::error!(reason = %why, "Revision refused; the previous one keeps running.");
                status.refused = Some(why.clone());
                self.metrics.reload(false);
                Err(why)
            }
        }
    }

    /// Adds the outcome of a webhook registration run to the status, unless another revision
    /// was applied meanwhile (its own run reports instead).
    fn record_registration(
        &self,
        commit: Option<&str>,
        problems: Vec<Problem>,
        notes: Vec<Problem>,
    ) {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if status.applied.as_deref() == commit {
            status.problems.extend(problems);
            status.notes.extend(notes);
        }
    }

    fn load(&self) -> Result<(Active, Vec<Problem>), String> {
        let o = &self.options;
        let source = Source {
            repo: o.repo.clone(),
            subdir: o.subdir.clone(),
            rev: Some(o.rev.clone()),
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
        let commit = match &set.revision {
            manifest::Revision::Commit { id, .. } => Some(id.clone()),
            manifest::Revision::WorkTree => None,
        };
        let env = secrets::process_env;
        let ctx = secrets::ResolveContext::new(self.key.as_ref(), &env);
        let captured = self.captured_tokens();
        Ok(Active::build(set, commit, &o.public_url, &ctx, &captured))
    }

    /// Verification tokens the daemon captured (Notion), unsealed.
    fn captured_tokens(&self) -> HashMap<IntegrationId, Secret> {
        let mut out = HashMap::new();
        let Some(key) = &self.key else { return out };
        if let Ok(tokens) = self.store.captured_tokens() {
            for (id, sealed) in tokens {
                if let Ok(id) = IntegrationId::parse(&id)
                    && let Ok(secret) = secrets::unseal(key, &id, "verification_token", &sealed)
                {
                    out.insert(id, secret);
                }
            }
        }
        out
    }
}

/// Runs the group committer: every waiter queued while a flush is in progress is answered by
/// the next single flush.
async fn committer(store: Arc<Store>, mut rx: mpsc::Receiver<oneshot::Sender<Result<(), String>>>) {
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

/// One accepted delivery and where to say it is durable.
type IngestRequest = (
    Box<IngestRecord>,
    oneshot::Sender<Result<IngestOutcome, String>>,
);

/// Most deliveries the writer takes into one batch (one journal sync).
const INGEST_BATCH: usize = 1024;
/// How often the journal is folded into sled.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// Journal size that forces a checkpoint.
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

/// The single ingest writer (a plain thread: everything it does blocks). One writer means no
/// contention between sled transactions and one journal sync per batch of deliveries.
fn ingest_writer(
    store: Arc<Store>,
    journal: Journal,
    rx: std::sync::mpsc::Receiver<IngestRequest>,
) {
    let mut last_checkpoint = tokio::time::Instant::now();
    let mut batch: Vec<IngestRequest> = Vec::with_capacity(INGEST_BATCH);
    loop {
        match rx.recv_timeout(CHECKPOINT_EVERY) {
            Ok(first) => batch.push(first),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        while batch.len() < INGEST_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let outcomes: Vec<Result<IngestOutcome, String>> = batch
                .iter()
                .map(|(r, _)| {
                    let outcome = store
                        .ingest_audited(&r.event, &r.rules, r.now_ms, r.dedupe_until_ms, &r.audit)
                        .map_err(|e| e.to_string())?;
                    if let IngestOutcome::Stored { .. } = outcome {
                        journal.append(r).map_err(|e| e.to_string())?;
                    }
                    Ok(outcome)
                })
                .collect();
            let synced = journal.sync().map_err(|e| e.to_string());
            for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                let _ = reply.send(synced.clone().and(outcome));
            }
        }
        if last_checkpoint.elapsed() >= CHECKPOINT_EVERY || journal.written() > CHECKPOINT_BYTES {
            last_checkpoint = tokio::time::Instant::now();
            // sled was written before the journal: once sled is flushed, the rotated file holds
            // nothing sled does not.
            let result = journal
                .rotate()
                .and_then(|old| store.flush().and_then(|()| journal.retire(&old)));
            if let Err(e) = result {
                tracing::warn!(error = %e, "Journal checkpoint failed; the journal keeps growing until one succeeds.");
            }
        }
    }
    if let Err(e) = journal.sync().and_then(|()| store.flush()) {
        tracing::warn!(error = %e, "Final journal sync failed.");
    }
}

/// Opens the state and builds a runtime (without loading a revision yet). Deliveries journaled
/// but not yet in sled when the last run stopped are restored first.
pub fn runtime(
    options: Options,
    key: Option<SealKey>,
) -> Result<Arc<Runtime>, crate::state::Error> {
    let store = Arc::new(Store::open(&options.state)?);
    let (journal, restored) = Journal::open(&store)?;
    if restored > 0 {
        tracing::info!(restored, "Deliveries restored from the ingest journal.");
    }
    let (commits, rx) = mpsc::channel(4096);
    tokio::spawn(committer(store.clone(), rx));
    let (ingests, irx) = std::sync::mpsc::sync_channel(8 * INGEST_BATCH);
    let writer_store = store.clone();
    std::thread::Builder::new()
        .name("ingest-writer".into())
        .spawn(move || ingest_writer(writer_store, journal, irx))
        .map_err(|source| crate::state::Error::Journal {
            path: options.state.clone(),
            source,
        })?;
    Ok(Arc::new(Runtime {
        store,
        metrics: Metrics::new(),
        options,
        key,
        active: RwLock::new(None),
        work: Notify::new(),
        identities: RwLock::new(HashMap::new()),
        status: Mutex::new(ReloadStatus::default()),
        ingests,
        commits,
    }))
}

/// Runs the daemon until `shutdown` fires: loads the revision, checks connections, serves
/// webhooks and the API, runs the executor; SIGHUP (`reload`) loads the revision again.
pub async fn run(
    rt: Arc<Runtime>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
    mut reload: mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    if let Err(why) = rt.reload() {
        tracing::error!(reason = %why, "No valid revision to start with; serving health endpoints only until one loads.");
    }
    check_connections(&rt).await;
    let tracker = tokio_util::task::TaskTracker::new();
    {
        // Slack checks a new request URL with a challenge while the update is in flight, so
        // registration runs beside the server rather than before it.
        let rt = rt.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = register_webhooks(&rt) => {}
            }
        });
    }
    tracker.spawn(crate::execute::run(rt.clone(), shutdown.child_token()));
    tracker.spawn(housekeeping(rt.clone(), shutdown.child_token()));
    let reloader = {
        let rt = rt.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    msg = reload.recv() => {
                        if msg.is_none() { break; }
                        let applied = rt.reload().is_ok();
                        crate::telemetry::systemd::status(&status_line(&rt));
                        if applied {
                            check_connections(&rt).await;
                            tokio::select! {
                                () = shutdown.cancelled() => break,
                                () = register_webhooks(&rt) => {}
                            }
                        }
                    }
                }
            }
        })
    };
    crate::telemetry::systemd::ready(&status_line(&rt));
    crate::telemetry::systemd::spawn_watchdog(shutdown.child_token());
    server::serve(rt.clone(), listener, shutdown.clone()).await;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    drop(reloader);
    if let Err(e) = rt.store.release_leases() {
        tracing::warn!(error = %e, "Could not release job leases; they expire on their own.");
    }
    rt.store.flush().map_err(anyhow::Error::from)?;
    Ok(())
}

/// One line for `systemctl status`: the revision in use, and a refusal if there was one.
pub(crate) fn status_line(rt: &Runtime) -> String {
    let s = rt.status();
    let revision = s
        .applied
        .as_deref()
        .map_or("no revision", |r| &r[..r.len().min(12)]);
    match &s.refused {
        Some(why) => format!("serving {revision}; newest revision refused: {why}"),
        None => format!("serving {revision}"),
    }
}

/// What follows a reload that applied a revision: connection checks, then webhook
/// registration.
pub(crate) async fn after_reload(rt: &Runtime) {
    check_connections(rt).await;
    register_webhooks(rt).await;
}

/// Checks every connector once and records supportopsd's identity on each platform.
async fn check_connections(rt: &Runtime) {
    let Some(active) = rt.active() else { return };
    for (id, connector) in active.connectors() {
        match connector.check().await {
            Ok(health) => {
                if let Some(identity) = health.identity {
                    rt.set_identity(id.clone(), vec![identity]);
                }
                tracing::info!(integration = %id, detail = %health.detail, "Connection checked.");
            }
            Err(e) => tracing::warn!(integration = %id, error = %e, "Connection check failed."),
        }
    }
}

/// Registers the webhook URL of every Slack integration with `[webhook]` events: through the
/// manifest API when it has `app_config_token` and `app_id` (a failure becomes a problem in
/// the status), else a note telling the operator what to enter in the Slack app settings.
/// Logged and recorded in the reload status.
async fn register_webhooks(rt: &Runtime) {
    let Some(active) = rt.active() else { return };
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    for i in active.set.integrations.values() {
        if i.platform != crate::platforms::PlatformKind::Slack {
            continue;
        }
        let Some(events) = i
            .webhook
            .as_ref()
            .map(|w| &w.events)
            .filter(|e| !e.is_empty())
        else {
            continue;
        };
        let target = WebhookTarget {
            integration: i.id.clone(),
            url: config::webhook_url(&rt.options.public_url, i.platform, &i.id),
            events: events.clone(),
            secret: None,
            previous: None,
        };
        let result = match active.connector(&i.id) {
            Ok(c) => c.sync_webhook(&target).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match result {
            Ok(WebhookSync::Registered { outcome, .. }) => {
                tracing::info!(integration = %i.id, url = %target.url, outcome = outcome.as_str(), "Slack request URL and events registered.");
            }
            Ok(WebhookSync::Manual(what)) => {
                tracing::info!(integration = %i.id, note = %what, "Slack request URL to register by hand.");
                notes.push(Problem {
                    integration: i.id.clone(),
                    message: what,
                });
            }
            Err(e) => {
                tracing::warn!(integration = %i.id, error = %e, "Slack request URL not registered.");
                problems.push(Problem {
                    integration: i.id.clone(),
                    message: format!("Slack request URL not registered: {e}"),
                });
            }
        }
    }
    rt.record_registration(active.commit.as_deref(), problems, notes);
}

/// Periodic upkeep: expired dedupe entries and orphaned events.
async fn housekeeping(rt: Arc<Runtime>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(300)) => {}
        }
        let store = rt.store.clone();
        let retention = u64::try_from(rt.options.audit_retention.as_millis()).unwrap_or(u64::MAX);
        let result = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            store.purge_expired(now)?;
            store.purge_audit(now.saturating_sub(retention))
        })
        .await;
        if let Ok(Err(e)) = result {
            tracing::warn!(error = %e, "Housekeeping failed; it runs again in five minutes.");
        }
    }
}
