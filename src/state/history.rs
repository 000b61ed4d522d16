//! The history index: tree `history`, the secondary indexes that answer "what happened to
//! this delivery" and "which deliveries" without scanning the deliveries or the audit log.
//!
//! Layout (one tree, each kind of key behind a tag byte, every delivery id big-endian last so
//! that each key space is in arrival order and is read backwards for newest first):
//!
//! - `J` ‖ id → the delivery's jobs ([`EventJob`]s, by job id): written where jobs are created
//!   ([`tx_add_jobs`], the ONE job-creation helper: ingest, enrichment, redelivery) and updated
//!   by every job transition in the transition's own transaction ([`tx_update_job`]: lease,
//!   progress, retry, postpone, acknowledgement, dead letter, replay). Absent for a delivery
//!   that never had a job.
//! - `O` ‖ outcome ‖ id: the delivery's aggregate [`Outcome`] when it is a rare one
//!   ([`Outcome::indexed`]: pending, retrying, dead; one entry at most per delivery), moved by
//!   the same transactions when the aggregate changes. The common outcomes (done, no rules
//!   matched) have no entry: a listing checks them on each delivery it reads.
//! - `E` ‖ integration ‖ 0 ‖ event name ‖ 0 ‖ id, `R` ‖ rule ‖ 0 ‖ id: by integration and event
//!   name (an integration alone is the merge of its event names), by rule matched; written by
//!   the ingest's transaction (the rules again when an enrichment completes).
//! - `A` ‖ id ‖ audit key: the audit records that belong to the delivery written after its
//!   ingest (their detail carries `"event": "evt_<n>"`), written with the record; the ingest's
//!   own records are named by the delivery's record ([`EventMeta::audit`]).
//!
//! An ingest adds one index entry to its transaction (`E`) when no rule matched, and per job
//! the `R`, `J` and `O` entries: the index's cost on the request path is kept that small on
//! purpose (measured by `benches/ingest_compare.sh`).
//! - `X` ‖ audit key: the aggregated refusal records ([`super::AuditKind::EventRejected`]).
//!
//! Retention removes a delivery's `J`, `O`, `E`, `R` and `A` entries in the transaction
//! that removes the delivery. A state written before the index existed gets it built when it is
//! opened ([`Store::build_history_index`]), in batches that record how far they got in `meta`,
//! so that an interrupted build resumes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::audit::EncodedRecord;
use super::inbox::EventMeta;
use super::keys::EventId;
use super::outbox::{DeadJob, Job};
use super::{AuditRecord, Error, Store, abort, codec, meta_keys, trees};

/// Where one job of a delivery stands ([`super::History::event_jobs`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventJob {
    /// The job's id.
    pub job: u64,
    /// The rule it runs (or [`super::ENRICHMENT`]).
    pub rule: String,
    /// Where it stands.
    pub outcome: JobOutcome,
    /// How many of its actions succeeded.
    pub steps_done: usize,
    /// How many actions it has, when known (the state knows it once the job is done).
    pub steps: Option<usize>,
    /// When this record last changed, milliseconds since the Unix epoch.
    pub updated_ms: u64,
}

/// A job's state in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobOutcome {
    /// Waiting for its first attempt (or replayed), due at `due_ms`.
    Queued {
        /// When it is due.
        due_ms: u64,
    },
    /// Leased by an executor until `lease_until_ms` (a lease in the past expired: the job is
    /// leased again).
    Running {
        /// When the lease ends.
        lease_until_ms: u64,
    },
    /// An attempt failed; due again at `due_ms`.
    Retrying {
        /// When it is due again.
        due_ms: u64,
        /// Failed attempts so far.
        attempts: u32,
        /// The last error (redaction-safe).
        error: String,
    },
    /// Every action succeeded (acknowledged at `at_ms`).
    Done {
        /// When.
        at_ms: u64,
    },
    /// Failed for good and dead-lettered at `at_ms`.
    Dead {
        /// When.
        at_ms: u64,
        /// Why (redaction-safe).
        error: String,
    },
}

/// A delivery's aggregate outcome, from its jobs: `dead` if any job is dead-lettered, else
/// `retrying` if any is retrying, else `pending` if any is queued or running, else `done`;
/// `no_rules` when no rule matched (no job).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every job succeeded.
    Done,
    /// A job waits or runs.
    Pending,
    /// A job failed and will be retried.
    Retrying,
    /// A job was dead-lettered.
    Dead,
    /// No rule matched.
    NoRules,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 5] = [
        Outcome::Done,
        Outcome::Pending,
        Outcome::Retrying,
        Outcome::Dead,
        Outcome::NoRules,
    ];

    /// Its name in filters and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Pending => "pending",
            Outcome::Retrying => "retrying",
            Outcome::Dead => "dead",
            Outcome::NoRules => "no_rules",
        }
    }

    /// Whether the `O` index lists deliveries with this outcome: the rare ones (`pending`,
    /// `retrying`, `dead`). The common ones (`done`, `no_rules`: most deliveries) are answered
    /// by checking each delivery in order, which finds a page after reading little more than
    /// the page; not indexing them keeps an ingest to one index entry more.
    pub fn indexed(self) -> bool {
        matches!(self, Outcome::Pending | Outcome::Retrying | Outcome::Dead)
    }

    fn byte(self) -> u8 {
        match self {
            Outcome::Done => b'd',
            Outcome::Pending => b'p',
            Outcome::Retrying => b'r',
            Outcome::Dead => b'x',
            Outcome::NoRules => b'n',
        }
    }

    /// The aggregate of a delivery's jobs (`rules`: whether it matched rules, for a delivery
    /// whose jobs were finished before the index existed and are not listed).
    pub fn of(jobs: &[EventJob], rules: bool) -> Outcome {
        // A finished enrichment is not one of the rules' jobs.
        let jobs: Vec<&EventJob> = jobs
            .iter()
            .filter(|j| {
                !(j.rule == super::ENRICHMENT && matches!(j.outcome, JobOutcome::Done { .. }))
            })
            .collect();
        if jobs.is_empty() {
            return if rules {
                Outcome::Done
            } else {
                Outcome::NoRules
            };
        }
        let any = |f: fn(&JobOutcome) -> bool| jobs.iter().any(|j| f(&j.outcome));
        if any(|o| matches!(o, JobOutcome::Dead { .. })) {
            Outcome::Dead
        } else if any(|o| matches!(o, JobOutcome::Retrying { .. })) {
            Outcome::Retrying
        } else if any(|o| matches!(o, JobOutcome::Queued { .. } | JobOutcome::Running { .. })) {
            Outcome::Pending
        } else {
            Outcome::Done
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Outcome, String> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown outcome {:?} (expected one of done, pending, retrying, dead, no_rules)",
                    s.chars().take(32).collect::<String>()
                )
            })
    }
}

impl EventJob {
    /// The entry of a job in the outbox (queued, running or retrying).
    pub(super) fn of_live(job: &Job, at_ms: u64) -> EventJob {
        let outcome = match (job.lease_until_ms, job.attempts) {
            (Some(until), _) => JobOutcome::Running {
                lease_until_ms: until,
            },
            (None, 0) => JobOutcome::Queued { due_ms: job.due_ms },
            (None, attempts) => JobOutcome::Retrying {
                due_ms: job.due_ms,
                attempts,
                error: job.last_error.clone().unwrap_or_default(),
            },
        };
        EventJob {
            job: job.id,
            rule: job.rule.clone(),
            outcome,
            steps_done: job.step,
            steps: None,
            updated_ms: at_ms,
        }
    }

    /// The entry of a job acknowledged at `at_ms` (all its steps done).
    pub(super) fn of_done(job: &Job, at_ms: u64) -> EventJob {
        EventJob {
            job: job.id,
            rule: job.rule.clone(),
            outcome: JobOutcome::Done { at_ms },
            steps_done: job.step,
            steps: Some(job.step),
            updated_ms: at_ms,
        }
    }

    /// The entry of a dead-lettered job.
    pub(super) fn of_dead(dead: &DeadJob) -> EventJob {
        EventJob {
            job: dead.job.id,
            rule: dead.job.rule.clone(),
            outcome: JobOutcome::Dead {
                at_ms: dead.dead_at_ms,
                error: dead.job.last_error.clone().unwrap_or_default(),
            },
            steps_done: dead.job.step,
            steps: None,
            updated_ms: dead.dead_at_ms,
        }
    }

    /// Equal but for when it was written.
    fn same_as(&self, other: &EventJob) -> bool {
        self.job == other.job
            && self.outcome == other.outcome
            && self.steps_done == other.steps_done
            && self.steps == other.steps
    }
}

/// Now, for the transitions whose caller gives no time (acknowledgement, progress, retry).
pub(super) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Key tags.
const JOBS: u8 = b'J';
const OUTCOME: u8 = b'O';
const EVENT: u8 = b'E';
const RULE: u8 = b'R';
const AUDIT: u8 = b'A';
const REJECTION: u8 = b'X';

fn jobs_key(id: EventId) -> [u8; 9] {
    let mut k = [0; 9];
    k[0] = JOBS;
    k[1..].copy_from_slice(&id.key());
    k
}

fn outcome_prefix(o: Outcome) -> Vec<u8> {
    vec![OUTCOME, o.byte()]
}

fn with_id(mut prefix: Vec<u8>, id: EventId) -> Vec<u8> {
    prefix.extend_from_slice(&id.key());
    prefix
}

/// The `E` keys of an integration (all its event names).
fn integration_events_prefix(integration: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(integration.len() + 2);
    k.push(EVENT);
    k.extend_from_slice(integration.as_bytes());
    k.push(0);
    k
}

fn event_prefix(integration: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(integration.len() + name.len() + 3);
    k.push(EVENT);
    k.extend_from_slice(integration.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

fn rule_prefix(rule: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(rule.len() + 2);
    k.push(RULE);
    k.extend_from_slice(rule.as_bytes());
    k.push(0);
    k
}

fn audit_prefix(id: EventId) -> [u8; 9] {
    let mut k = [0; 9];
    k[0] = AUDIT;
    k[1..].copy_from_slice(&id.key());
    k
}

fn audit_index_key(id: EventId, audit_key: &[u8; 16]) -> [u8; 25] {
    let mut k = [0; 25];
    k[..9].copy_from_slice(&audit_prefix(id));
    k[9..].copy_from_slice(audit_key);
    k
}

fn rejection_key(audit_key: &[u8; 16]) -> [u8; 17] {
    let mut k = [0; 17];
    k[0] = REJECTION;
    k[1..].copy_from_slice(audit_key);
    k
}

/// The keys (with empty values) that index a delivery by integration and event name, and by
/// the rules it matched.
pub(super) fn meta_keys_of(meta: &EventMeta) -> Vec<Vec<u8>> {
    let mut keys = Vec::with_capacity(1 + meta.rules.len());
    keys.push(with_id(
        event_prefix(meta.integration.as_str(), &meta.name),
        meta.id,
    ));
    for rule in &meta.rules {
        keys.push(with_id(rule_prefix(rule), meta.id));
    }
    keys
}

/// The event an audit record belongs to (`"event": "evt_<n>"` in its detail), if any.
pub(super) fn audit_event(record: &AuditRecord) -> Option<EventId> {
    record.detail.get("event")?.as_str()?.parse().ok()
}

/// The history keys of encoded audit records: by event (`event` when given, else the record's
/// own `"event"`), and the refusals.
pub(super) fn audit_keys(
    records: &[AuditRecord],
    encoded: &[EncodedRecord],
    event: Option<EventId>,
) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    for (record, (key, _)) in records.iter().zip(encoded) {
        if let Some(id) = event.or_else(|| audit_event(record)) {
            keys.push(audit_index_key(id, key).to_vec());
        }
        if matches!(record.kind, super::AuditKind::EventRejected { .. }) {
            keys.push(rejection_key(key).to_vec());
        }
    }
    keys
}

/// The keys of an ingest's audit records as its delivery's record keeps them
/// ([`EventMeta::audit`]: time and sequence), and the refusal keys among them (none, in
/// practice): an ingest writes no `A` entry.
pub(super) fn ingest_audit_keys(
    records: &[AuditRecord],
    encoded: &[EncodedRecord],
) -> (Vec<(u64, u64)>, Vec<Vec<u8>>) {
    let mut own = Vec::with_capacity(encoded.len());
    let mut keys = Vec::new();
    for (record, (key, _)) in records.iter().zip(encoded) {
        if let Ok(at_seq) = super::keys::split_key(trees::AUDIT, key) {
            own.push(at_seq);
        }
        if matches!(record.kind, super::AuditKind::EventRejected { .. }) {
            keys.push(rejection_key(key).to_vec());
        }
    }
    (own, keys)
}

/// Jobs about to be created for one delivery ([`Store::new_jobs`]): their outbox records,
/// encoded, and their history entries.
#[derive(Debug, Clone, Default)]
pub(super) struct NewJobs {
    /// (job id, encoded [`Job`]).
    pub(super) jobs: Vec<(u64, Vec<u8>)>,
    /// Their entries, queued.
    pub(super) entries: Vec<EventJob>,
    /// When they were created (and are due, unless held: [`NewJobs::due`]).
    pub(super) now_ms: u64,
    /// When each is due, in the order of [`NewJobs::jobs`] (later than `now_ms` for a job
    /// held by its rule's action budget).
    pub(super) due: Vec<u64>,
}

impl NewJobs {
    /// Their ids.
    pub(super) fn ids(&self) -> Vec<u64> {
        self.jobs.iter().map(|(id, _)| *id).collect()
    }
}

impl Store {
    /// Allocates and encodes one job per rule in `rules` for delivery `event` (key `key`),
    /// created at `now_ms` and due then — or, for a rule in `held`, at the time it gives (its
    /// action budget held it) — at step 0: the only place jobs are made. Writes nothing;
    /// [`tx_add_jobs`] writes them.
    pub(super) fn new_jobs(
        &self,
        event: EventId,
        key: &str,
        rules: &[String],
        now_ms: u64,
        held: &BTreeMap<String, u64>,
    ) -> Result<NewJobs, Error> {
        let mut out = NewJobs {
            jobs: Vec::with_capacity(rules.len()),
            entries: Vec::with_capacity(rules.len()),
            now_ms,
            due: Vec::with_capacity(rules.len()),
        };
        for rule in rules {
            let due_ms = held.get(rule).copied().unwrap_or(now_ms).max(now_ms);
            let id = self.next_id()?;
            let job = Job {
                id,
                event_key: key.to_owned(),
                event_id: event,
                rule: rule.clone(),
                step: 0,
                results: Vec::new(),
                attempts: 0,
                due_ms,
                lease_until_ms: None,
                last_error: None,
                created_ms: now_ms,
                in_flight: None,
            };
            out.jobs
                .push((id, codec::encode(trees::OUTBOX, &id.to_string(), &job)?));
            out.due.push(due_ms);
            out.entries.push(EventJob::of_live(&job, now_ms));
        }
        Ok(out)
    }
}

/// The transactional trees [`tx_add_jobs`] writes.
pub(super) struct JobTrees<'a> {
    pub(super) outbox: &'a TransactionalTree,
    pub(super) due: &'a TransactionalTree,
    pub(super) refs: &'a TransactionalTree,
    pub(super) history: &'a TransactionalTree,
}

/// Writes jobs made by [`Store::new_jobs`] for delivery `event` inside a transaction: their
/// outbox records and `due` entries, the delivery's reference count, its history entries and
/// outcome. `fresh`: the delivery is being stored in this transaction (nothing to read: its
/// outcome is set, not moved).
pub(super) fn tx_add_jobs(
    t: &JobTrees<'_>,
    event: EventId,
    new: &NewJobs,
    fresh: bool,
    rules: bool,
) -> Result<(), ConflictableTransactionError<Error>> {
    for (i, (job, bytes)) in new.jobs.iter().enumerate() {
        t.outbox
            .insert(&super::keys::job_key(*job), bytes.as_slice())?;
        let due = new.due.get(i).copied().unwrap_or(new.now_ms);
        t.due.insert(&super::keys::due_key(due, *job), &[][..])?;
    }
    let at = event.key();
    let n = new.jobs.len() as u64;
    if fresh {
        if n > 0 {
            super::keys::write_u64(t.refs, trees::INBOX_REFS, &at, n)?;
        }
    } else if n > 0 {
        let held = super::keys::read_u64(t.refs, trees::INBOX_REFS, &at)?.unwrap_or(0);
        super::keys::write_u64(t.refs, trees::INBOX_REFS, &at, held.saturating_add(n))?;
    }
    if fresh && new.entries.is_empty() {
        // Stored with no job (no rule matched): nothing to write, its outcome (`no_rules`) has
        // no entry. Every operation counts here: each is a read and a write in the ingest's
        // transaction.
        return Ok(());
    }
    let (before, mut list) = if fresh {
        (Before::Fresh, Vec::new())
    } else {
        match tx_jobs(t.history, event)? {
            Some(r) => (Before::Known(r.outcome), r.jobs),
            None => (Before::Unknown, Vec::new()),
        }
    };
    list.extend(new.entries.iter().cloned());
    write_jobs(t.history, event, list, before, rules)
}

/// Replaces (or adds) job `entry` in delivery `event`'s history entries inside the job
/// transition's transaction, moving the delivery's outcome when it changes.
pub(super) fn tx_update_job(
    history: &TransactionalTree,
    event: EventId,
    entry: EventJob,
) -> Result<(), ConflictableTransactionError<Error>> {
    let (before, mut list) = match tx_jobs(history, event)? {
        Some(r) => (Before::Known(r.outcome), r.jobs),
        None => (Before::Unknown, Vec::new()),
    };
    match list.iter_mut().find(|j| j.job == entry.job) {
        Some(slot) if slot.same_as(&entry) => return Ok(()),
        Some(slot) => *slot = entry,
        None => list.push(entry),
    }
    write_jobs(history, event, list, before, true)
}

/// The `J` record: a delivery's jobs and the outcome its `O` entry holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobsRecord {
    outcome: Outcome,
    jobs: Vec<EventJob>,
}

/// Which `O` entry a delivery had before a write.
#[derive(Debug, Clone, Copy)]
enum Before {
    /// None: it is stored in this transaction.
    Fresh,
    /// This one.
    Known(Outcome),
    /// Not recorded (no `J` record): any.
    Unknown,
}

/// A delivery's `J` record, read inside a transaction.
fn tx_jobs(
    history: &TransactionalTree,
    event: EventId,
) -> Result<Option<JobsRecord>, ConflictableTransactionError<Error>> {
    let key = jobs_key(event);
    match history.get(key)? {
        Some(bytes) => codec::decode(trees::HISTORY, &key, &bytes)
            .map(Some)
            .map_err(abort),
        None => Ok(None),
    }
}

/// Writes a delivery's jobs and moves its `O` entry from `before`. `rules`: whether it
/// matched rules (see [`Outcome::of`]).
fn write_jobs(
    history: &TransactionalTree,
    event: EventId,
    jobs: Vec<EventJob>,
    before: Before,
    rules: bool,
) -> Result<(), ConflictableTransactionError<Error>> {
    let key = jobs_key(event);
    let outcome = Outcome::of(&jobs, rules);
    if jobs.is_empty() {
        history.remove(&key[..])?;
    } else {
        let record = JobsRecord { outcome, jobs };
        let bytes = codec::encode(trees::HISTORY, &event.to_string(), &record).map_err(abort)?;
        history.insert(&key[..], bytes)?;
    }
    match before {
        Before::Known(old) if old == outcome => return Ok(()),
        Before::Known(old) if old.indexed() => {
            history.remove(with_id(outcome_prefix(old), event))?;
        }
        Before::Known(_) | Before::Fresh => {}
        Before::Unknown => {
            for o in Outcome::ALL
                .into_iter()
                .filter(|o| o.indexed() && *o != outcome)
            {
                history.remove(with_id(outcome_prefix(o), event))?;
            }
        }
    }
    if outcome.indexed() {
        history.insert(with_id(outcome_prefix(outcome), event), &[][..])?;
    }
    Ok(())
}

/// Moves a delivery's rule entries from `old` to `new` (an enrichment completed).
pub(super) fn tx_reindex_rules(
    history: &TransactionalTree,
    event: EventId,
    old: &[String],
    new: &[String],
) -> Result<(), ConflictableTransactionError<Error>> {
    for rule in old {
        history.remove(with_id(rule_prefix(rule), event))?;
    }
    for rule in new {
        history.insert(with_id(rule_prefix(rule), event), &[][..])?;
    }
    Ok(())
}

/// Removes a delivery's entries (retention), `audit`: its `A` keys, read before the
/// transaction.
pub(super) fn tx_unindex_event(
    history: &TransactionalTree,
    meta: &EventMeta,
    audit: &[sled::IVec],
) -> Result<(), ConflictableTransactionError<Error>> {
    for k in meta_keys_of(meta) {
        history.remove(k)?;
    }
    for o in Outcome::ALL.into_iter().filter(|o| o.indexed()) {
        history.remove(with_id(outcome_prefix(o), meta.id))?;
    }
    history.remove(&jobs_key(meta.id)[..])?;
    for k in audit {
        history.remove(k)?;
    }
    Ok(())
}

/// Which deliveries [`Store::history`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Arrived on this integration.
    pub integration: Option<String>,
    /// With this event name (on every integration when `integration` is not given).
    pub event: Option<String>,
    /// Matched this rule.
    pub rule: Option<String>,
    /// With this aggregate outcome.
    pub outcome: Option<Outcome>,
    /// Received at or after this time, milliseconds since the Unix epoch.
    pub since_ms: Option<u64>,
    /// Received at or before this time.
    pub until_ms: Option<u64>,
}

/// Why a [`HistoryFilter`] cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFilter(pub String);

impl HistoryFilter {
    /// Checks the combination.
    pub fn check(&self) -> Result<(), BadFilter> {
        if let (Some(s), Some(u)) = (self.since_ms, self.until_ms)
            && s > u
        {
            return Err(BadFilter("since is after until".into()));
        }
        Ok(())
    }
}

/// One delivery of a history page.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryItem {
    /// Its record.
    pub meta: EventMeta,
    /// Its aggregate outcome.
    pub outcome: Outcome,
    /// Its jobs.
    pub jobs: Vec<EventJob>,
}

/// A page of history, newest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryPage {
    /// The deliveries.
    pub items: Vec<HistoryItem>,
    /// Where the next page starts (list from before this id), `None` at the end.
    pub next: Option<EventId>,
}

/// Index seeks one page may make before it returns what it found (with a cursor to go on):
/// bounds the time of a page whose filters intersect sparsely.
const SEEK_BUDGET: usize = 50_000;

/// One sorted stream of delivery ids: `prefix` ‖ id keys of a tree, asked for non-increasing
/// positions (one page's scan only goes down).
struct Stream<'a> {
    tree: &'a sled::Tree,
    /// Each prefix's ids (several: an integration's event names, or an event name's
    /// integrations, merged).
    prefixes: Vec<Vec<u8>>,
    /// What the last seek found for each prefix (`None`: not sought yet; `Some(None)`: nothing
    /// at or below the position asked). Since positions only go down, a found id at or below
    /// the next position is still the answer there, and a prefix with nothing stays empty: a
    /// prefix is sought again only once its id has been passed, so a page over many prefixes
    /// costs a seek per prefix and per id it lists, not per prefix and per id.
    heads: Vec<Option<Option<u64>>>,
}

impl<'a> Stream<'a> {
    fn new(tree: &'a sled::Tree, prefixes: Vec<Vec<u8>>) -> Self {
        let heads = vec![None; prefixes.len()];
        Stream {
            tree,
            prefixes,
            heads,
        }
    }

    /// The largest id in the stream at or below `at` (never more than the `at` of the call
    /// before), and the seeks it took.
    fn seek(&mut self, at: u64) -> Result<(Option<u64>, usize), sled::Error> {
        let mut best = None;
        let mut seeks = 0;
        for (prefix, head) in self.prefixes.iter().zip(self.heads.iter_mut()) {
            let id = match *head {
                Some(None) => None,
                Some(Some(h)) if h <= at => Some(h),
                _ => {
                    seeks += 1;
                    let mut hi = prefix.clone();
                    hi.extend_from_slice(&at.to_be_bytes());
                    let found = self.tree.range(prefix.clone()..=hi).next_back();
                    let id = match found.transpose()? {
                        Some((k, _)) => k
                            .get(prefix.len()..)
                            .and_then(|b| <[u8; 8]>::try_from(b).ok())
                            .map(u64::from_be_bytes),
                        None => None,
                    };
                    *head = Some(id);
                    id
                }
            };
            best = best.max(id);
        }
        Ok((best, seeks))
    }
}

impl Store {
    /// Delivery `id`'s jobs and where each stands (see [`super::History::event_jobs`]).
    pub fn event_jobs(&self, id: EventId) -> Result<Vec<EventJob>, Error> {
        Ok(self.jobs_record(id)?.map(|r| r.jobs).unwrap_or_default())
    }

    /// Delivery `id`'s `J` record.
    fn jobs_record(&self, id: EventId) -> Result<Option<JobsRecord>, Error> {
        let t = self.t()?;
        let key = jobs_key(id);
        match t.history.get(key).map_err(|e| self.storage(e))? {
            Some(bytes) => codec::decode(trees::HISTORY, &key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Delivery `id`'s jobs and outcome (`rules`: whether it matched rules).
    pub fn event_outcome(
        &self,
        id: EventId,
        rules: bool,
    ) -> Result<(Outcome, Vec<EventJob>), Error> {
        Ok(match self.jobs_record(id)? {
            Some(r) => (r.outcome, r.jobs),
            None => (Outcome::of(&[], rules), Vec::new()),
        })
    }

    /// Delivery `id`'s `A` keys (retention removes them with it).
    pub(super) fn event_audit_keys(&self, id: EventId) -> Result<Vec<sled::IVec>, Error> {
        let t = self.t()?;
        t.history
            .scan_prefix(audit_prefix(id))
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| self.storage(e))
    }

    /// The audit records that belong to delivery `id`, oldest first (by time, ties in the order
    /// written). Records removed by audit retention are skipped.
    pub fn event_audit(&self, id: EventId) -> Result<Vec<AuditRecord>, Error> {
        let t = self.t()?;
        // The ingest's own records are named by the delivery's record, later ones by `A` keys.
        let mut keys: Vec<Vec<u8>> = match self.event_meta(id)? {
            Some(meta) => meta
                .audit
                .iter()
                .map(|(at, seq)| super::keys::due_key(*at, *seq).to_vec())
                .collect(),
            None => Vec::new(),
        };
        for item in t.history.scan_prefix(audit_prefix(id)) {
            let (k, _) = item.map_err(|e| self.storage(e))?;
            if let Some(key) = k.get(9..) {
                keys.push(key.to_vec());
            }
        }
        // Audit keys are time ‖ sequence: in time order, ties in the order written.
        keys.sort();
        keys.dedup();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(v) = t.audit.get(&key).map_err(|e| self.storage(e))? {
                out.push(codec::decode(trees::AUDIT, &key, &v)?);
            }
        }
        Ok(out)
    }

    /// The aggregated refusal records of `[since_ms, until_ms]`, newest first, at most `limit`.
    pub fn rejections(
        &self,
        since_ms: u64,
        until_ms: u64,
        integration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, Error> {
        let t = self.t()?;
        let mut lo = vec![REJECTION];
        lo.extend_from_slice(&since_ms.to_be_bytes());
        let mut hi = vec![REJECTION];
        hi.extend_from_slice(&until_ms.to_be_bytes());
        hi.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut out = Vec::new();
        for item in t.history.range(lo..=hi).rev() {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item.map_err(|e| self.storage(e))?;
            let Some(key) = k.get(1..) else { continue };
            let Some(v) = t.audit.get(key).map_err(|e| self.storage(e))? else {
                continue;
            };
            let record: AuditRecord = codec::decode(trees::AUDIT, key, &v)?;
            if integration.is_none_or(|i| i == record.resource_id) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// The distinct components `c` of the `history` keys `base ‖ c ‖ 0 ‖ …`, in order (one
    /// seek each: the scan skips past every key of a component once it has found it).
    fn components(&self, base: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
        let t = self.t()?;
        let mut out = Vec::new();
        let mut from = base.to_vec();
        loop {
            let next = t
                .history
                .range(from.clone()..)
                .next()
                .transpose()
                .map_err(|e| self.storage(e))?;
            let Some((k, _)) = next else { break };
            let Some(rest) = k.strip_prefix(base) else {
                break;
            };
            let Some(end) = rest.iter().position(|b| *b == 0) else {
                break;
            };
            // Past every key of this component: `base ‖ c ‖ 1` sorts after `base ‖ c ‖ 0 ‖ …`.
            from = base.to_vec();
            from.extend_from_slice(&rest[..end]);
            from.push(1);
            out.push(rest[..end].to_vec());
        }
        Ok(out)
    }

    /// Every integration with deliveries in the `E` index.
    fn indexed_integrations(&self) -> Result<Vec<String>, Error> {
        Ok(self
            .components(&[EVENT])?
            .into_iter()
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .collect())
    }

    /// The `E` prefixes of every event name `integration` has deliveries of.
    fn event_prefixes(&self, integration: &str) -> Result<Vec<Vec<u8>>, Error> {
        let base = integration_events_prefix(integration);
        Ok(self
            .components(&base)?
            .into_iter()
            .map(|name| {
                let mut prefix = base.clone();
                prefix.extend_from_slice(&name);
                prefix.push(0);
                prefix
            })
            .collect())
    }

    /// The smallest delivery id received at or after `t` (arrival order follows time), or one
    /// past the largest when none is.
    fn first_id_at_or_after(&self, t: u64) -> Result<u64, Error> {
        let trees = self.t()?;
        let received_at = |id: u64| -> Result<Option<(u64, u64)>, Error> {
            match trees
                .events
                .range(id.to_be_bytes()..)
                .next()
                .transpose()
                .map_err(|e| self.storage(e))?
            {
                Some((k, v)) => {
                    let meta: EventMeta = codec::decode(trees::EVENTS, &k, &v)?;
                    Ok(Some((meta.id.0, meta.received_ms)))
                }
                None => Ok(None),
            }
        };
        // The smallest position whose first record (at or after it) is received at or after
        // `t`, or has none: monotone in the position, so a binary search over the id space.
        let holds = |x: u64| -> Result<Option<u64>, Error> {
            Ok(match received_at(x)? {
                None => Some(x),
                Some((id, ms)) if ms >= t => Some(id),
                Some(_) => None,
            })
        };
        let (mut lo, mut hi) = (0u64, u64::MAX);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if holds(mid)?.is_some() {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(holds(lo)?.unwrap_or(lo))
    }

    /// Up to `limit` stored deliveries' records, oldest first, received at or after
    /// `since_ms`, of `integration` when given, from just after `after` (else from
    /// [`Store::first_id_at_or_after`] `since_ms`): a forward range of the `events` tree, each
    /// record decoded and checked (see [`super::History::events_by_arrival`]).
    pub fn events_by_arrival(
        &self,
        after: Option<EventId>,
        since_ms: u64,
        integration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventMeta>, Error> {
        let t = self.t()?;
        let mut out = Vec::with_capacity(limit.min(1024));
        let start = match after {
            Some(a) => match a.0.checked_add(1) {
                Some(s) => s,
                None => return Ok(out),
            },
            None => self.first_id_at_or_after(since_ms)?,
        };
        if limit == 0 {
            return Ok(out);
        }
        for item in t.events.range(start.to_be_bytes()..) {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let meta: EventMeta = codec::decode(trees::EVENTS, &k, &v)?;
            if meta.received_ms < since_ms
                || integration.is_some_and(|i| meta.integration.as_str() != i)
            {
                continue;
            }
            out.push(meta);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// A page of stored deliveries passing `filter`, newest first, at most `limit`, listed from
    /// just before `before` (from the newest when `None`). Answered from the indexes: the
    /// filters given are each a sorted stream of ids (integration and event name together one; an
    /// event name alone merges that name's stream of every integration),
    /// intersected by seeking each stream to the others' candidates; the time bounds become id
    /// bounds (arrival order). A page stops early, with a cursor, after [`SEEK_BUDGET`] seeks.
    pub fn history(
        &self,
        filter: &HistoryFilter,
        before: Option<EventId>,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        let t = self.t()?;
        if filter.check().is_err() || limit == 0 {
            return Ok(HistoryPage::default());
        }
        let mut streams = Vec::new();
        let keys = |prefixes: Vec<Vec<u8>>| Stream::new(&t.history, prefixes);
        match (&filter.integration, &filter.event) {
            (Some(i), Some(e)) => streams.push(keys(vec![event_prefix(i, e)])),
            (None, Some(e)) => {
                let names: Vec<Vec<u8>> = self
                    .indexed_integrations()?
                    .iter()
                    .map(|i| event_prefix(i, e))
                    .collect();
                if names.is_empty() {
                    return Ok(HistoryPage::default());
                }
                streams.push(keys(names));
            }
            (Some(i), None) => {
                let names = self.event_prefixes(i)?;
                if names.is_empty() {
                    return Ok(HistoryPage::default());
                }
                streams.push(keys(names));
            }
            _ => {}
        }
        if let Some(r) = &filter.rule {
            streams.push(keys(vec![rule_prefix(r)]));
        }
        // A common outcome is checked on each delivery found, a rare one is an index.
        let mut check_outcome = None;
        match filter.outcome {
            Some(o) if o.indexed() => streams.push(keys(vec![outcome_prefix(o)])),
            other => check_outcome = other,
        }
        if streams.is_empty() {
            streams.push(Stream::new(&t.events, vec![Vec::new()]));
        }
        let mut upper = before.map_or(Some(u64::MAX), |b| b.0.checked_sub(1));
        if let Some(until) = filter.until_ms {
            let first_after = self.first_id_at_or_after(until.saturating_add(1))?;
            upper = upper.and_then(|u| first_after.checked_sub(1).map(|f| f.min(u)));
        }
        let lower = match filter.since_ms {
            Some(since) => self.first_id_at_or_after(since)?,
            None => 0,
        };
        let mut page = HistoryPage::default();
        let mut seeks = 0usize;
        let Some(mut candidate) = upper else {
            return Ok(page);
        };
        'scan: loop {
            if candidate < lower || page.items.len() >= limit {
                break;
            }
            if seeks >= SEEK_BUDGET {
                // Out of budget: the next page goes on from here.
                page.next = Some(EventId(candidate.saturating_add(1)));
                return Ok(page);
            }
            let mut c = candidate;
            let mut agreed = true;
            for s in &mut streams {
                let (found, took) = s.seek(c).map_err(|e| self.storage(e))?;
                seeks += took;
                match found {
                    None => break 'scan,
                    Some(x) if x < c => {
                        c = x;
                        agreed = false;
                    }
                    Some(_) => {}
                }
            }
            if c < lower {
                break;
            }
            if agreed {
                let id = EventId(c);
                if let Some(meta) = self.event_meta(id)?
                    && filter.since_ms.is_none_or(|s| meta.received_ms >= s)
                    && filter.until_ms.is_none_or(|u| meta.received_ms <= u)
                {
                    let (outcome, jobs) = self.event_outcome(id, !meta.rules.is_empty())?;
                    if check_outcome.is_none_or(|o| o == outcome) {
                        page.items.push(HistoryItem {
                            meta,
                            outcome,
                            jobs,
                        });
                    } else {
                        seeks += 1;
                    }
                }
                match c.checked_sub(1) {
                    Some(next) => candidate = next,
                    None => break,
                }
            } else {
                candidate = c;
            }
        }
        if page.items.len() >= limit {
            page.next = page.items.last().map(|i| i.meta.id);
        }
        Ok(page)
    }

    /// Forgets the history index (before a migration from a schema that had none), so that it
    /// is built again after it.
    pub(super) fn reset_history_index(&self) -> Result<(), Error> {
        let t = self.t()?;
        t.history.clear().map_err(|e| self.storage(e))?;
        t.meta
            .remove(meta_keys::HISTORY_INDEX)
            .map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// Builds the history index of a state written before it existed, in batches, recording
    /// after each how far it got (`meta/history_index`), so that an interrupted build resumes.
    /// Jobs still in the outbox or dead-lettered get their entries; jobs finished before are not
    /// listed (the delivery's outcome is `done`). Audit records written before are not indexed.
    pub(super) fn build_history_index(&self) -> Result<(), Error> {
        let t = self.t()?;
        const BATCH: usize = 1024;
        let from: Option<u64> = self.get(&t.meta, trees::META, meta_keys::HISTORY_INDEX)?;
        // Absent: never started.
        let mut from = from.unwrap_or(0);
        if from == u64::MAX {
            return Ok(());
        }
        if from == 0 && t.events.is_empty() {
            return self.put(&t.meta, trees::META, meta_keys::HISTORY_INDEX, &u64::MAX);
        }
        tracing::info!("Building the event history index (once, after an upgrade).");
        let mut live: std::collections::HashMap<EventId, Vec<EventJob>> =
            std::collections::HashMap::new();
        let now = wall_ms();
        for item in t.outbox.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let job: Job = codec::decode(trees::OUTBOX, &k, &v)?;
            live.entry(job.event_id)
                .or_default()
                .push(EventJob::of_live(&job, now));
        }
        for item in t.dead.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let dead: DeadJob = codec::decode(trees::DEAD, &k, &v)?;
            live.entry(dead.job.event_id)
                .or_default()
                .push(EventJob::of_dead(&dead));
        }
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            for item in t.events.range(from.to_be_bytes()..).take(BATCH) {
                let (k, v) = item.map_err(|e| self.storage(e))?;
                batch.push(codec::decode::<EventMeta>(trees::EVENTS, &k, &v)?);
            }
            let Some(last) = batch.last().map(|m| m.id.0) else {
                break;
            };
            let next = last.saturating_add(1);
            let mut writes: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for meta in &batch {
                for k in meta_keys_of(meta) {
                    writes.push((k, Vec::new()));
                }
                let mut jobs = live.remove(&meta.id).unwrap_or_default();
                jobs.sort_by_key(|j| j.job);
                // Outcome entries of an earlier, interrupted batch are rewritten the same.
                for o in Outcome::ALL.into_iter().filter(|o| o.indexed()) {
                    writes.push((with_id(outcome_prefix(o), meta.id), vec![0xff]));
                }
                let outcome = Outcome::of(&jobs, !meta.rules.is_empty());
                if outcome.indexed() {
                    writes.push((with_id(outcome_prefix(outcome), meta.id), Vec::new()));
                }
                if !jobs.is_empty() {
                    let record = JobsRecord { outcome, jobs };
                    writes.push((
                        jobs_key(meta.id).to_vec(),
                        codec::encode(trees::HISTORY, &meta.id.to_string(), &record)?,
                    ));
                }
            }
            let progress = codec::encode(trees::META, meta_keys::HISTORY_INDEX, &next)?;
            let result = (&t.history, &t.meta).transaction(|(history, meta)| {
                for (k, v) in &writes {
                    // `0xff`: remove (a stale outcome entry); the real one follows.
                    if v.as_slice() == [0xff] {
                        history.remove(k.as_slice())?;
                    } else {
                        history.insert(k.as_slice(), v.as_slice())?;
                    }
                }
                meta.insert(meta_keys::HISTORY_INDEX, progress.as_slice())?;
                Ok(())
            });
            self.tx_result(result)?;
            from = next;
        }
        self.put(&t.meta, trees::META, meta_keys::HISTORY_INDEX, &u64::MAX)?;
        self.flush()
    }
}

/// Checks the history index against the deliveries and the queue (for the state's tests):
/// every delivery has its integration, event-name and rule entries and exactly one outcome
/// entry, the one its `J` record says; every live or dead job is listed as it stands; no entry
/// names a delivery that is not stored.
#[cfg(test)]
pub(super) fn check_index(store: &Store) {
    use std::collections::{BTreeMap, BTreeSet};
    let mut expected: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut outcomes: BTreeMap<EventId, Outcome> = BTreeMap::new();
    for item in store.t().unwrap().events.iter() {
        let (k, v) = item.unwrap();
        let meta: EventMeta = codec::decode(trees::EVENTS, &k, &v).unwrap();
        for key in meta_keys_of(&meta) {
            expected.insert(key);
        }
        let (outcome, _) = store
            .event_outcome(meta.id, !meta.rules.is_empty())
            .unwrap();
        outcomes.insert(meta.id, outcome);
        if outcome.indexed() {
            expected.insert(with_id(outcome_prefix(outcome), meta.id));
        }
    }
    let mut found: BTreeSet<Vec<u8>> = BTreeSet::new();
    for item in store.t().unwrap().history.iter() {
        let (k, _) = item.unwrap();
        match k.first() {
            Some(&(EVENT | RULE | OUTCOME)) => {
                found.insert(k.to_vec());
            }
            Some(&JOBS) => {
                let id = EventId::parse(trees::HISTORY, &k[1..]).unwrap();
                assert!(outcomes.contains_key(&id), "jobs of {id}, not stored");
            }
            _ => {}
        }
    }
    assert_eq!(
        found, expected,
        "history index out of step with the deliveries"
    );
    for item in store.t().unwrap().outbox.iter() {
        let (k, v) = item.unwrap();
        let job: Job = codec::decode(trees::OUTBOX, &k, &v).unwrap();
        let entry = store
            .event_jobs(job.event_id)
            .unwrap()
            .into_iter()
            .find(|j| j.job == job.id)
            .unwrap_or_else(|| panic!("job {} not in its delivery's history", job.id));
        assert!(
            entry.same_as(&EventJob::of_live(&job, 0)),
            "{entry:?} vs {job:?}"
        );
    }
    for item in store.t().unwrap().dead.iter() {
        let (k, v) = item.unwrap();
        let dead: DeadJob = codec::decode(trees::DEAD, &k, &v).unwrap();
        let entry = store
            .event_jobs(dead.job.event_id)
            .unwrap()
            .into_iter()
            .find(|j| j.job == dead.job.id)
            .unwrap();
        assert!(entry.same_as(&EventJob::of_dead(&dead)), "{entry:?}");
    }
}
