//! The state interface: the traits every caller outside `state` goes through ([`State`], the
//! union of [`Inbox`], [`Outbox`], [`History`], [`Revisions`], [`Holds`], [`Registrations`],
//! [`Captured`] and [`Audit`]), and what each method guarantees whatever the backend. [`Store`] (sled) is
//! the only implementation; a later PostgreSQL backend implements the same traits and no
//! caller changes.
//!
//! # What every backend guarantees
//!
//! - **Atomicity.** Each method is atomic: after it returns `Ok`, all of what it wrote is
//!   visible to every later call; after it returns `Err`, none of it is, unless its doc says
//!   otherwise (a few say which parts are separate writes). Methods whose doc says "in ONE
//!   transaction" write several kinds of record together and must stay one transaction in any
//!   backend: an ingest (delivery, dedupe entry, jobs, audit records), completing an
//!   enrichment, every job transition (outbox, readiness and dead letters together with the
//!   delivery's reference count), recording the applied set with the applied revision.
//! - **Isolation.** Each transaction behaves as if the transactions ran one after another (the
//!   sled backend retries conflicting transactions; a SQL backend needs `SERIALIZABLE`, or row
//!   locks where a method reads before it writes: [`Outbox::lease_due`] must never hand one
//!   job to two leasers, [`Outbox::ack`] must report `true` once). Methods that scan
//!   (`lease_due`, `release_leases`, `purge_expired`, `purge_audit`, the listings) are a
//!   sequence of such steps, not one: they may see writes made while they run.
//! - **Durability.** A method does not make its writes durable unless its doc says it flushes;
//!   [`State::flush`] and [`State::flush_async`] make every write that returned before them
//!   durable. A crash may lose any writes not yet flushed, each whole (never half of one
//!   method's write), and callers must not rely on more: they flush before they act on a
//!   write's durability (answering a webhook: the ingest journal; sending a request that must
//!   not be repeated: [`Outbox::begin_attempt`] then a flush). A backend whose commits are
//!   durable when they return (PostgreSQL with `synchronous_commit = on`) satisfies this with
//!   flushes that do nothing.
//! - **Delivery.** The outbox is at least once: a crash re-runs at most the jobs that were
//!   leased, from their last durable step. Job ids are unique for the life of the state and
//!   increase in the order they are allocated; audit records are ordered by their time
//!   (`at_ms`), ties in the order they were prepared.
//! - **Errors.** Every failure is a [`state::Error`](Error): the backend's own error is opaque
//!   ([`super::BackendError`]), bad stored bytes are [`Error::Corrupt`], never a panic.
//!
//! # Synchronous, and how an async backend fits
//!
//! The traits are synchronous, like sled, whose calls are in-memory except flushes. Callers run
//! the longer calls (leasing and job progress, applying ingests, journal replay, housekeeping)
//! on blocking threads (`spawn_blocking`, the ingest writer's threads) and make short calls
//! (counters, one-record reads and writes, audit appends) directly on the async runtime's
//! threads. A backend over an async client (PostgreSQL through `tokio-postgres`) runs each
//! query on its own connection tasks and waits for the answer, inside
//! `tokio::task::block_in_place` when the caller may be a runtime thread (the daemon's runtime
//! is multi-threaded); like the sled backend, it answers what the request path asks on every
//! delivery from memory it keeps up to date ([`Outbox::queue_depth`], and the dedupe decision
//! of [`Inbox::decide_ingests`], which a backend may reserve in memory and confirm when it
//! applies). Flushing is the one call the daemon awaits: [`State::flush_async`] returns a boxed
//! future, so a backend awaits its own I/O there without a blocking thread.
//!
//! # What stays backend-specific
//!
//! Opening a state ([`Store::open`], [`Store::open_existing`]: where it lives, its lock, its
//! schema and migrations), replaying the ingest journal into it (`journal::Journal::open`, or
//! `journal::Journal::open_deferred` which only decides the records and leaves writing them to
//! the daemon's applier; both take the concrete [`Store`] because they run before the state is
//! handed out), file modes,
//! and the write guard and retention hold a consistent snapshot uses. Callers that open a state
//! name [`Store`] for that call only, then hold `Arc<dyn State>` (the daemon's runtime) or
//! `&dyn State` (one-shot commands); `tests/layers.rs` lists the modules that may name it.
//!
//! The ingest journal (`journal.rs`) is not part of a backend: the daemon writes every delivery
//! to it before the state decides and applies it (its `fdatasync` is what an acknowledgement
//! waits for), whatever the backend; its replay on open ingests the records again with
//! [`Inbox::ingest_batch`], which the dedupe window makes idempotent.
//!
//! Every method here delegates to [`Store`]'s method of the same name, whose doc says how sled
//! does it.

use std::future::Future;
use std::pin::Pin as Pinned;

use super::journal::{IngestRecord, PreparedIngest};
use super::{
    AppliedResource, AuditFilter, AuditRecord, BackupError, BackupReport, ConnectorKept, DeadJob,
    Error, EventId, EventJob, EventMeta, HealthRecord, HistoryFilter, HistoryPage, Hold, HoldKind,
    IngestOutcome, Job, MinuteRollup, MinuteTotals, NotionVerification, Outcome, Pin, Purged,
    RegistrationRecord, Retention, RetentionTotals, StateBytes, Store, Taken,
};
use crate::event::Event;

/// When [`State::upkeep`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upkeep {
    /// While the daemon runs: only when enough was written since the last upkeep that the next
    /// start would notice (the calls waiting on it are then worth it).
    Running,
    /// At a clean stop: whenever anything was written since the last upkeep.
    Stop,
}

/// The future [`State::flush_async`] returns.
pub type Flushing<'a> = Pinned<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// The whole state: what the daemon's runtime holds (`Arc<dyn State>`), and what a one-shot
/// command gets once it opened a state (`&dyn State`).
pub trait State:
    Inbox
    + Outbox
    + History
    + Rollups
    + Revisions
    + Holds
    + Registrations
    + Captured
    + Audit
    + Send
    + Sync
    + std::fmt::Debug
{
    /// Makes every write that returned before this call durable, blocking the calling thread
    /// until it is. Idempotent; concurrent callers may share one flush.
    fn flush(&self) -> Result<(), Error>;

    /// [`State::flush`] without blocking a runtime thread: the future completes when every
    /// write that returned before the call is durable. Concurrent callers may share one flush
    /// (group commit).
    fn flush_async(&self) -> Flushing<'_>;

    /// Makes the backend's local files private again (0600 files, 0700 folders) whatever the
    /// umask they were created with; returns how many could not be (each logged). A backend
    /// with no local files returns 0. Housekeeping calls it periodically.
    fn secure_files(&self) -> usize;

    /// Backend upkeep that bounds the next start-up's work, after a flush and never while a call
    /// of this state is in progress on the same thread: [`Upkeep::Running`] from the daemon's
    /// journal checkpoint thread (at most once a minute), [`Upkeep::Stop`] at a clean stop once
    /// nothing else calls the state. The sled backend writes sled's snapshot
    /// ([`Store::refresh_snapshot`]: calls wait while it runs, a fraction of a second) when
    /// [`Store::snapshot_due`] says so, so that an open after any stop, a crash included, reads
    /// a bounded part of sled's log. Returns how long it took when it ran, `None` when nothing
    /// was due or calls in progress put it off.
    fn upkeep(&self, when: Upkeep) -> Result<Option<std::time::Duration>, Error>;

    /// Writes a consistent snapshot of the whole state to `out` (the format and its guarantees:
    /// docs/state-backup.md): every write that returned before the call is in it, none is in
    /// it half-way, and writes go on while the snapshot is streamed (they wait at most while
    /// the backend's records are read). `taken` says whether a daemon was running.
    fn backup(
        &self,
        out: &mut dyn std::io::Write,
        taken: Taken,
    ) -> Result<BackupReport, BackupError>;
}

/// Deliveries coming in: ingest with deduplication, enrichment, and expiry.
///
/// A delivery is identified for deduplication by its event key ([`Event::key`]: integration
/// and the platform's event id). An ingest whose key has a dedupe window open at its `now_ms`
/// is a [`IngestOutcome::Duplicate`] and writes nothing at all; any other ingest stores the
/// delivery, (re)opens the key's window until `dedupe_until_ms`, and creates one [`Job`] per
/// rule given, due at `now_ms`, at step 0, in the order of the rules. Replaying the same ingest
/// within its window is therefore idempotent (the ingest journal relies on it).
pub trait Inbox {
    /// Stores a delivery and its jobs in ONE transaction, or nothing for a duplicate (see the
    /// trait). Does not flush: a crash may lose it whole, never in part.
    fn ingest(
        &self,
        event: &Event,
        rules: &[String],
        now_ms: u64,
        dedupe_until_ms: u64,
    ) -> Result<IngestOutcome, Error> {
        self.ingest_audited(event, rules, now_ms, dedupe_until_ms, &[])
    }

    /// [`Inbox::ingest`], also appending `audit` in the same transaction: a duplicate writes
    /// no audit record either. Does not flush.
    fn ingest_audited(
        &self,
        event: &Event,
        rules: &[String],
        now_ms: u64,
        dedupe_until_ms: u64,
        audit: &[AuditRecord],
    ) -> Result<IngestOutcome, Error>;

    /// Many [`Inbox::ingest_audited`]s in ONE transaction, with exactly the outcomes ingesting
    /// them one after another would give (a key's second delivery in the batch is a duplicate
    /// while the first one's window is open). The outer error: nothing was written. An inner
    /// error: that record alone could not be encoded and was not written. Does not flush.
    fn ingest_batch(
        &self,
        records: &[&IngestRecord],
    ) -> Result<Vec<Result<IngestOutcome, Error>>, Error>;

    /// The first of the three steps of the daemon's ingest (prepare, decide, apply): encodes a
    /// record and allocates its job and audit ids, reading and writing nothing else, so it may
    /// run on any thread, in parallel with other calls. Ids allocated and not used are gaps,
    /// never reused. [`PreparedIngest`] holds the state's own encoding (the codec's versioned
    /// JSON, which the journal copies) and the ids: a backend inside `state` fills it with its
    /// own id allocator.
    fn prepare_ingest(&self, r: &IngestRecord) -> Result<PreparedIngest, Error>;

    /// The second step: decides which prepared ingests are new, in order, exactly as
    /// committing them one by one would, and reserves their dedupe windows; writes nothing
    /// durable. Every ingest decided [`IngestOutcome::Stored`] must then be applied with
    /// [`Inbox::apply_ingests`] (retried until it succeeds, or replayed from the journal by the
    /// next run): until then its key counts as a duplicate for later ingests. Called by one
    /// writer at a time. On an error nothing is reserved.
    fn decide_ingests(&self, prepared: &[&PreparedIngest]) -> Result<Vec<IngestOutcome>, Error>;

    /// The third step: writes ingests that [`Inbox::decide_ingests`] found new, in ONE
    /// transaction, and releases their reservations. On an error nothing was written and they
    /// stay reserved: apply them again. Does not flush.
    fn apply_ingests(&self, new: &[&PreparedIngest]) -> Result<(), Error>;

    /// When the dedupe window of an event key ends (expired or not), if one is stored.
    fn dedupe_until(&self, key: &str) -> Result<Option<u64>, Error>;

    /// Completes the enrichment job `id` ([`super::ENRICHMENT`]) in ONE transaction: the
    /// stored delivery becomes `event`, the enrichment job leaves the outbox, one job per rule
    /// in `rules` is created due at `now_ms` (or, for a rule in `held`, at the later time it
    /// gives: its action budget held it), `audit` is appended. Returns the new jobs' ids.
    /// [`Error::NoSuchJob`] (nothing written) if the job is no longer in the outbox, so a
    /// second completion creates no second set of jobs. Does not flush.
    fn complete_enrichment(
        &self,
        id: u64,
        event: &Event,
        rules: &[String],
        now_ms: u64,
        audit: &[AuditRecord],
        held: &std::collections::BTreeMap<String, u64>,
    ) -> Result<Vec<u64>, Error>;

    /// Creates one job per rule in `rules` for the already stored delivery `id` (a
    /// redelivery: the delivery evaluated again), due at `now_ms`, at step 0, with `audit`
    /// appended (each record's detail stamped `"event": "evt_<n>"`), in ONE transaction, by
    /// the same job-creation path as [`Inbox::ingest`] (the history lists the jobs); the
    /// delivery's rules ([`EventMeta::rules`]) gain those it did not list. The delivery then
    /// stays stored while the jobs reference it. [`Error::NoSuchEvent`], nothing written, when
    /// it is not (or no longer) stored. Returns the jobs created (one an executor already
    /// finished may be missing). Does not flush.
    fn redeliver_jobs(
        &self,
        id: EventId,
        rules: &[String],
        now_ms: u64,
        audit: &[AuditRecord],
    ) -> Result<Vec<Job>, Error>;

    /// Removes dedupe windows that ended at or before `now_ms`, then what `retention` no longer
    /// keeps: deliveries past `event_retention_ms` that no job (queued or dead-lettered)
    /// references, oldest first, and while the state is over `max_state_bytes` the oldest such
    /// deliveries whatever their age. Each removal re-checks its conditions atomically, so it
    /// may run while ingest and the executor run: it never removes a delivery a job still
    /// needs, nor a window an ingest just renewed. Payload storage is given back to the file
    /// system (sled: whole segment files, after a flush). A crash leaves some of the removals
    /// done. What was removed is added to [`History::retention_totals`].
    fn purge_expired(&self, now_ms: u64, retention: &Retention) -> Result<Purged, Error>;
}

/// The job queue: leases, progress, retries and dead letters.
///
/// A job is in exactly one of the outbox (queued or leased) and the dead letters until it is
/// acknowledged; every transition below is one transaction. A lease is a time stored in the
/// job: a job under an unexpired lease is never leased again (so never by two leasers), and a
/// job whose lease expired, e.g. after a crash, is leasable again, resuming at the step after
/// its last durable completed step. No transition flushes.
pub trait Outbox {
    /// One queued job (leased or not).
    fn job(&self, id: u64) -> Result<Option<Job>, Error>;

    /// How many jobs are queued (leased or not, dead letters excluded). Cheap: the request path
    /// asks on every delivery, so a backend keeps it in memory.
    fn queue_depth(&self) -> usize;

    /// How many jobs are dead-lettered (metrics and status: may cost a count).
    fn dead_depth(&self) -> usize;

    /// The earliest [`Job::ready_ms`] of the queue (its due time, or the end of its lease while
    /// leased): when the next job is or became leasable. `None` when the queue is empty.
    fn oldest_due_ms(&self) -> Result<Option<u64>, Error>;

    /// Leases up to `limit` jobs ready at `now_ms` (due, and under no unexpired lease), oldest
    /// ready first (ties by id), until `now_ms + lease_ms` (at least 1 ms). Each job's lease is
    /// atomic on its own, so concurrent leasers never get the same job; a failure part-way
    /// keeps the leases already taken (they expire).
    fn lease_due(&self, now_ms: u64, lease_ms: u64, limit: usize) -> Result<Vec<Job>, Error>;

    /// Extends a still-leased job's lease to `until_ms` (never shortens it). `Ok(false)`, and
    /// nothing written, when the job is no longer queued or no longer leased.
    fn renew_lease(&self, id: u64, until_ms: u64) -> Result<bool, Error>;

    /// Marks action `step` of job `id` as about to be sent ([`Job::in_flight`]), for an action
    /// that must not be sent twice; the caller flushes before sending, and a job found with it
    /// after a crash is not re-sent blindly. Every later transition clears it.
    /// [`Error::StepMismatch`] if `step` is not the job's next step; [`Error::NoSuchJob`].
    fn begin_attempt(&self, id: u64, step: usize) -> Result<Job, Error>;

    /// Records that action `step` succeeded with `result`: appends the result, advances to the
    /// next step, keeps the lease. [`Error::StepMismatch`] (nothing written) if `step` is not
    /// the job's next step, so a stale executor cannot record a step twice.
    fn complete_step(&self, id: u64, step: usize, result: serde_json::Value) -> Result<Job, Error>;

    /// Removes a finished job (and its reference to its delivery). `Ok(true)` exactly once per
    /// job; `Ok(false)` if it is not queued (acknowledged before, or dead-lettered).
    fn ack(&self, id: u64) -> Result<bool, Error>;

    /// Records a failed attempt: attempts + 1, `last_error`, lease cleared, due at `due_ms`;
    /// completed steps stay completed. [`Error::NoSuchJob`] if it is not queued.
    fn retry(&self, id: u64, error: &str, due_ms: u64) -> Result<Job, Error>;

    /// Puts a job back, due at `due_ms`, without counting an attempt (nothing was tried): lease
    /// cleared, everything else unchanged. [`Error::NoSuchJob`] if it is not queued.
    fn postpone(&self, id: u64, due_ms: u64) -> Result<Job, Error>;

    /// Records a final failed attempt and moves the job to the dead letters, stamped `now_ms`
    /// (its delivery stays referenced). [`Error::NoSuchJob`] if it is not queued.
    fn dead_letter(&self, id: u64, error: &str, now_ms: u64) -> Result<DeadJob, Error>;

    /// Up to `limit` dead-lettered jobs, by id (roughly oldest first).
    fn dead(&self, limit: usize) -> Result<Vec<DeadJob>, Error>;

    /// One dead-lettered job.
    fn dead_job(&self, id: u64) -> Result<Option<DeadJob>, Error>;

    /// Moves a dead-lettered job back to the queue under the same id: attempts 0, due at
    /// `now_ms`, not leased, completed steps kept (it resumes at the step that failed).
    /// [`Error::NoSuchDeadJob`] if it is not dead-lettered, so a second replay does nothing.
    fn replay(&self, id: u64, now_ms: u64) -> Result<Job, Error>;

    /// Up to `limit` queued jobs (leased or not), by id, with ids above `after` (from the
    /// first when `None`): paging with the last id of a page never repeats a job. A sequence
    /// of reads, not one transaction: it may see writes made while it runs.
    fn queued(&self, after: Option<u64>, limit: usize) -> Result<Vec<Job>, Error>;

    /// Makes queued job `id` due at `now_ms` if it is due later and under no unexpired lease,
    /// without counting an attempt or touching anything else (jobs a paused integration held
    /// back, when it is resumed). One transaction; `Ok(false)`, nothing changed, when the job
    /// is not queued, is leased (an executor has it), or is due already. Does not flush.
    fn wake(&self, id: u64, now_ms: u64) -> Result<bool, Error>;

    /// Clears every lease (a clean stop, once the executors stopped), so the jobs are due at
    /// once on the next start; returns how many. Each job is its own transaction: a crash
    /// part-way leaves the rest leased until their leases expire.
    fn release_leases(&self) -> Result<usize, Error>;
}

/// Reads of what was received: stored deliveries.
pub trait History {
    /// The stored delivery `id` (a job's [`Job::event_id`]), if it is still stored. A
    /// delivery that a queued or dead-lettered job references is always stored.
    fn event(&self, id: EventId) -> Result<Option<Event>, Error>;

    /// The record of stored delivery `id` (when and how it arrived, the revision in use, the
    /// rules it matched), without its payload.
    fn event_meta(&self, id: EventId) -> Result<Option<EventMeta>, Error>;

    /// Up to `limit` stored deliveries' records, newest first (ids descend: arrival order),
    /// from just before `before` (from the newest when `None`). Ids are stable, so paging
    /// with the last id of a page never repeats or skips a delivery still stored.
    fn events_page(&self, before: Option<EventId>, limit: usize) -> Result<Vec<EventMeta>, Error>;

    /// Up to `limit` stored deliveries' records in arrival order (oldest first, ids ascend),
    /// each received at or after `since_ms` and, when given, arrived on `integration`: from
    /// just after `after`, or (when `None`) from the first delivery received at or after
    /// `since_ms` (arrival order follows time, as [`History::history`]'s `since` assumes; each
    /// record's time is checked too). Paging with the last id of a page never repeats or skips
    /// a delivery still stored; a page shorter than `limit` was the last one when it was read
    /// (deliveries stored since have larger ids and come on a later page); deliveries removed
    /// by retention are simply absent. Reads records, not payloads; with `integration` it reads
    /// every record of the range (a scan of records, bounded by the state's retention).
    /// What `events export` pages through.
    fn events_by_arrival(
        &self,
        after: Option<EventId>,
        since_ms: u64,
        integration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventMeta>, Error>;

    /// Delivery `id`'s jobs, by job id, and where each stands: created with the delivery's
    /// jobs (ingest, enrichment, redelivery) and updated in the same transaction as every job
    /// transition (lease, progress, retry, postpone, acknowledgement → `done`, dead letter,
    /// replay), so it is never behind the outbox; an acknowledged job stays listed (`done`)
    /// for as long as its delivery is stored. Empty for an unknown delivery, one no rule
    /// matched, or one whose jobs finished before the index existed (a state upgraded from
    /// before it). Kept across restarts; retention removes it with the delivery.
    fn event_jobs(&self, id: EventId) -> Result<Vec<EventJob>, Error>;

    /// A page of stored deliveries passing `filter`, newest first, at most `limit`, from just
    /// before `before` (from the newest when `None`), each with its aggregate outcome and jobs;
    /// [`HistoryPage::next`] is where the next page starts. Answered from indexes kept in the
    /// writes' own transactions (never a scan of the deliveries; the common outcomes `done` and
    /// `no_rules` are checked on each delivery the other filters find): paging never repeats or
    /// skips a delivery still stored; a page may end early (with `next`) after a bounded number
    /// of reads when its filters intersect sparsely. A filter that cannot be answered
    /// ([`HistoryFilter::check`]) gives an empty page.
    fn history(
        &self,
        filter: &HistoryFilter,
        before: Option<EventId>,
        limit: usize,
    ) -> Result<HistoryPage, Error>;

    /// Delivery `id`'s aggregate outcome and jobs (`rules`: whether it matched rules, for a
    /// delivery without job records).
    fn event_outcome(&self, id: EventId, rules: bool) -> Result<(Outcome, Vec<EventJob>), Error>;

    /// The audit records that belong to delivery `id` (their detail names it: `"event"`),
    /// oldest first, from an index (not an audit scan); those removed by audit retention are
    /// missing.
    fn event_audit(&self, id: EventId) -> Result<Vec<AuditRecord>, Error>;

    /// The aggregated refusal records ([`super::AuditKind::EventRejected`], one per
    /// integration, reason and minute) of `since_ms ..= until_ms`, newest first, at most
    /// `limit`, of `integration` only when given.
    fn rejections(
        &self,
        since_ms: u64,
        until_ms: u64,
        integration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, Error>;

    /// The state's size on disk by kind (payloads, database, journal).
    fn state_bytes(&self) -> StateBytes;

    /// What retention removed since the state was created, and whether the size limit could
    /// not be met (and why).
    fn retention_totals(&self) -> Result<RetentionTotals, Error>;
}

/// Counts per minute, integration and outcome, kept for weeks so that rates and charts do not
/// reset when the daemon restarts.
pub trait Rollups {
    /// Adds `records` to what is stored for their minute and integration (never overwrites), in
    /// ONE transaction. Does not flush.
    fn add_rollups(&self, records: &[MinuteRollup]) -> Result<(), Error>;

    /// The records of the minutes from `since_ms` up to (not including) `until_ms`, oldest
    /// first.
    fn rollups(&self, since_ms: u64, until_ms: u64) -> Result<Vec<MinuteRollup>, Error> {
        self.rollups_of(since_ms, until_ms, None, usize::MAX)
    }

    /// Like [`Rollups::rollups`], only `integration`'s records when given, and at most `limit`
    /// of them (whole minutes first).
    fn rollups_of(
        &self,
        since_ms: u64,
        until_ms: u64,
        integration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MinuteRollup>, Error>;

    /// Removes the minutes before `before_ms` (retention); returns how many records. In
    /// chunks, each its own write: a crash part-way leaves some removed. Does not flush.
    fn purge_rollups(&self, before_ms: u64) -> Result<usize, Error>;

    /// Each minute's totals over every integration for the minutes that overlap
    /// `since_ms .. until_ms`, oldest first, read without looking at the per-integration
    /// records (one record per minute). [`Rollups::add_rollups`] adds to them in the same
    /// transaction as to the per-integration records, so a minute's totals are the sums of its
    /// records (for minutes written since the totals exist; earlier ones have none and are
    /// absent, as are minutes with nothing counted); retention removes them with their minute.
    fn rollup_totals(&self, since_ms: u64, until_ms: u64) -> Result<Vec<MinuteTotals>, Error>;
}

/// What the last apply recorded, and the pin.
pub trait Revisions {
    /// Every applied resource, sorted by key, keys unique.
    fn applied(&self) -> Result<Vec<AppliedResource>, Error>;

    /// One applied resource by key.
    fn get_applied(&self, key: &str) -> Result<Option<AppliedResource>, Error>;

    /// Records that the applied resources are now exactly `resources` at `revision`, in ONE
    /// transaction, and flushes before returning: after a crash, all of an apply is recorded or
    /// none of it. Returns whether the set changed. [`Error::InvalidBatch`] (nothing written)
    /// for an empty or repeated key.
    fn record_applied_set(
        &self,
        revision: &str,
        resources: &[AppliedResource],
    ) -> Result<bool, Error>;

    /// The git revision last applied, if any.
    fn applied_revision(&self) -> Result<Option<String>, Error>;

    /// Sets the applied revision alone (prefer [`Revisions::record_applied_set`]). Flushes.
    fn set_applied_revision(&self, revision: &str) -> Result<(), Error>;

    /// The pinned revision, if any.
    fn pin(&self) -> Result<Option<Pin>, Error>;

    /// Pins `commit`, with an audit record (`pinned`, `by`'s fields: who asked, never a
    /// secret). Two writes, the audit record then the pin, flushed together before returning:
    /// an error on the pin leaves the audit record, and a crash before the flush may keep
    /// either, both or neither.
    fn pin_revision(
        &self,
        commit: &str,
        reason: &str,
        at_ms: u64,
        by: serde_json::Value,
    ) -> Result<(), Error>;

    /// Releases the pin, with an audit record (`unpinned`), like [`Revisions::pin_revision`].
    fn unpin(&self, at_ms: u64, by: serde_json::Value) -> Result<(), Error>;

    /// Pins (`Some`) or unpins (`None`) without an audit record. Flushes before returning.
    fn set_pin(&self, pin: Option<&Pin>) -> Result<(), Error>;
}

/// Runtime holds: rules and integrations an operator paused (`supportopsd pause`), kept until
/// resumed, across restarts. A rule and an integration of the same id are different holds.
pub trait Holds {
    /// Every hold, rules first, each kind by id.
    fn holds(&self) -> Result<Vec<Hold>, Error>;

    /// Places `hold` and appends `audit` in ONE transaction, and returns once both are durable
    /// (flushed). Idempotent: when a hold of the same kind and id is in place, nothing is
    /// written (neither the hold nor the record) and it is returned, `Ok(Some(existing))`,
    /// with its first reason and time; `Ok(None)`: placed now.
    fn place_hold(&self, hold: &Hold, audit: &AuditRecord) -> Result<Option<Hold>, Error>;

    /// Releases the hold on `kind` `id` and appends `audit` in ONE transaction, and returns
    /// once both are durable (flushed): the hold released, or `None` when there was none
    /// (nothing written, the record neither).
    fn release_hold(
        &self,
        kind: HoldKind,
        id: &str,
        audit: &AuditRecord,
    ) -> Result<Option<Hold>, Error>;
}

/// Per-integration records kept across runs: webhook registrations, health, poll cursors.
/// Each write replaces or removes one integration's record, atomically; none flushes by
/// itself (a crash may lose the latest writes, each whole).
pub trait Registrations {
    /// Records a registration, replacing the integration's previous one. Its secret is sealed
    /// by the caller ([`super::REGISTRATION_SECRET_FIELD`]): nothing stored is in the clear.
    fn put_registration(&self, record: &RegistrationRecord) -> Result<(), Error>;

    /// One integration's registration.
    fn registration(&self, integration: &str) -> Result<Option<RegistrationRecord>, Error>;

    /// Every registration, by integration id.
    fn registrations(&self) -> Result<Vec<RegistrationRecord>, Error>;

    /// Forgets a registration (pruned). Idempotent.
    fn remove_registration(&self, integration: &str) -> Result<(), Error>;

    /// Records an integration's health, replacing the previous record.
    fn put_health(&self, record: &HealthRecord) -> Result<(), Error>;

    /// Every health record, by integration id.
    fn health_records(&self) -> Result<Vec<HealthRecord>, Error>;

    /// Forgets an integration's health (it left the manifests). Idempotent.
    fn remove_health(&self, integration: &str) -> Result<(), Error>;

    /// Where an integration's poller stands, replacing the previous cursor.
    fn put_poll_cursor(&self, integration: &str, cursor: &serde_json::Value) -> Result<(), Error>;

    /// An integration's poll cursor, if it has polled before.
    fn poll_cursor(&self, integration: &str) -> Result<Option<serde_json::Value>, Error>;
}

/// Secrets captured at run time, always stored sealed by the caller (AES-SIV, the integration
/// and field as associated data): Notion verification tokens, what connectors keep between
/// runs (Slack's rotated token pair). A backend stores and returns the sealed values as given
/// and never logs them.
pub trait Captured {
    /// Where an integration's Notion verification stands (a default record when nothing was
    /// done yet).
    fn notion_verification(&self, integration: &str) -> Result<NotionVerification, Error>;

    /// Replaces where an integration's Notion verification stands (and, in a separate write,
    /// drops the token an earlier version kept, which the record now holds). Does not flush.
    fn put_notion_verification(
        &self,
        integration: &str,
        v: &NotionVerification,
    ) -> Result<(), Error>;

    /// Forgets an integration's verification: window, tokens, confirmation, and that a signed
    /// delivery was seen. Does not flush; a crash part-way leaves some of it.
    fn reset_notion_verification(&self, integration: &str) -> Result<(), Error>;

    /// Records that a signed delivery of the integration was verified. Idempotent; does not
    /// flush.
    fn set_signed_delivery_seen(&self, integration: &str) -> Result<(), Error>;

    /// Whether a signed delivery of the integration was ever verified.
    fn signed_delivery_seen(&self, integration: &str) -> Result<bool, Error>;

    /// Every integration's confirmed token: (integration id, sealed value).
    fn confirmed_notion_tokens(&self) -> Result<Vec<(String, String)>, Error>;

    /// What the connector of `integration` kept, if anything.
    fn connector_kept(&self, integration: &str) -> Result<Option<ConnectorKept>, Error>;

    /// Replaces what the connector of `integration` keeps, atomically, and returns once it is
    /// durable (flushed): a rotated single-use token must survive a crash before it is used.
    fn put_connector_kept(&self, integration: &str, kept: &ConnectorKept) -> Result<(), Error>;
}

/// The audit log: typed records, ordered by time (ties in the order written), append-only
/// except for retention.
pub trait Audit {
    /// Appends one record. Does not flush.
    fn append_audit(&self, record: &AuditRecord) -> Result<(), Error>;

    /// Records passing `filter`, newest first, at most `filter.limit`.
    fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, Error>;

    /// Like [`Audit::audit`], looking at no more than the newest `max_scanned` records of the
    /// filter's time range (matching or not), so that its cost is bounded however large the
    /// log is; the second value says whether the scan stopped there before reaching the end of
    /// the range (older matching records may exist).
    fn audit_bounded(
        &self,
        filter: &AuditFilter,
        max_scanned: usize,
    ) -> Result<(Vec<AuditRecord>, bool), Error>;

    /// Removes records older than `before_ms` (retention); returns how many. Each removal is
    /// its own write: an error or a crash part-way leaves some removed. Does not flush.
    fn purge_audit(&self, before_ms: u64) -> Result<usize, Error>;

    /// Removes the oldest records beyond `max_records` (the size bound); returns how many.
    /// Each chunk removed is one write that also adds its count to
    /// [`Audit::audit_records_removed`]. Does not flush.
    fn purge_audit_over(&self, max_records: u64) -> Result<usize, Error>;

    /// How many audit records retention (age or size) ever removed from this state.
    fn audit_records_removed(&self) -> Result<u64, Error>;
}

// The sled backend: every method is `Store`'s inherent method of the same name (inherent
// methods take precedence in `Store::name` paths, so these calls do not recurse).

impl State for Store {
    fn flush(&self) -> Result<(), Error> {
        Store::flush(self)
    }

    fn flush_async(&self) -> Flushing<'_> {
        Box::pin(Store::flush_async(self))
    }

    fn secure_files(&self) -> usize {
        Store::secure_files(self)
    }

    fn upkeep(&self, when: Upkeep) -> Result<Option<std::time::Duration>, Error> {
        if !self.snapshot_due(when) {
            return Ok(None);
        }
        Ok(match self.refresh_snapshot()? {
            crate::state::Refreshed::Done(took) => Some(took),
            crate::state::Refreshed::Busy => None,
        })
    }

    fn backup(
        &self,
        out: &mut dyn std::io::Write,
        taken: Taken,
    ) -> Result<BackupReport, BackupError> {
        Store::backup(self, out, taken)
    }
}

impl Inbox for Store {
    fn ingest_audited(
        &self,
        event: &Event,
        rules: &[String],
        now_ms: u64,
        dedupe_until_ms: u64,
        audit: &[AuditRecord],
    ) -> Result<IngestOutcome, Error> {
        Store::ingest_audited(self, event, rules, now_ms, dedupe_until_ms, audit)
    }

    fn ingest_batch(
        &self,
        records: &[&IngestRecord],
    ) -> Result<Vec<Result<IngestOutcome, Error>>, Error> {
        Store::ingest_batch(self, records)
    }

    fn prepare_ingest(&self, r: &IngestRecord) -> Result<PreparedIngest, Error> {
        Store::prepare_ingest(self, r)
    }

    fn decide_ingests(&self, prepared: &[&PreparedIngest]) -> Result<Vec<IngestOutcome>, Error> {
        Store::decide_ingests(self, prepared)
    }

    fn apply_ingests(&self, new: &[&PreparedIngest]) -> Result<(), Error> {
        Store::apply_ingests(self, new)
    }

    fn dedupe_until(&self, key: &str) -> Result<Option<u64>, Error> {
        Store::dedupe_until(self, key)
    }

    fn complete_enrichment(
        &self,
        id: u64,
        event: &Event,
        rules: &[String],
        now_ms: u64,
        audit: &[AuditRecord],
        held: &std::collections::BTreeMap<String, u64>,
    ) -> Result<Vec<u64>, Error> {
        Store::complete_enrichment(self, id, event, rules, now_ms, audit, held)
    }

    fn redeliver_jobs(
        &self,
        id: EventId,
        rules: &[String],
        now_ms: u64,
        audit: &[AuditRecord],
    ) -> Result<Vec<Job>, Error> {
        Store::redeliver_jobs(self, id, rules, now_ms, audit)
    }

    fn purge_expired(&self, now_ms: u64, retention: &Retention) -> Result<Purged, Error> {
        Store::purge_expired(self, now_ms, retention)
    }
}

impl Outbox for Store {
    fn job(&self, id: u64) -> Result<Option<Job>, Error> {
        Store::job(self, id)
    }

    fn queue_depth(&self) -> usize {
        Store::queue_depth(self)
    }

    fn dead_depth(&self) -> usize {
        Store::dead_depth(self)
    }

    fn oldest_due_ms(&self) -> Result<Option<u64>, Error> {
        Store::oldest_due_ms(self)
    }

    fn lease_due(&self, now_ms: u64, lease_ms: u64, limit: usize) -> Result<Vec<Job>, Error> {
        Store::lease_due(self, now_ms, lease_ms, limit)
    }

    fn renew_lease(&self, id: u64, until_ms: u64) -> Result<bool, Error> {
        Store::renew_lease(self, id, until_ms)
    }

    fn begin_attempt(&self, id: u64, step: usize) -> Result<Job, Error> {
        Store::begin_attempt(self, id, step)
    }

    fn complete_step(&self, id: u64, step: usize, result: serde_json::Value) -> Result<Job, Error> {
        Store::complete_step(self, id, step, result)
    }

    fn ack(&self, id: u64) -> Result<bool, Error> {
        Store::ack(self, id)
    }

    fn retry(&self, id: u64, error: &str, due_ms: u64) -> Result<Job, Error> {
        Store::retry(self, id, error, due_ms)
    }

    fn postpone(&self, id: u64, due_ms: u64) -> Result<Job, Error> {
        Store::postpone(self, id, due_ms)
    }

    fn dead_letter(&self, id: u64, error: &str, now_ms: u64) -> Result<DeadJob, Error> {
        Store::dead_letter(self, id, error, now_ms)
    }

    fn dead(&self, limit: usize) -> Result<Vec<DeadJob>, Error> {
        Store::dead(self, limit)
    }

    fn dead_job(&self, id: u64) -> Result<Option<DeadJob>, Error> {
        Store::dead_job(self, id)
    }

    fn replay(&self, id: u64, now_ms: u64) -> Result<Job, Error> {
        Store::replay(self, id, now_ms)
    }

    fn queued(&self, after: Option<u64>, limit: usize) -> Result<Vec<Job>, Error> {
        Store::queued(self, after, limit)
    }

    fn wake(&self, id: u64, now_ms: u64) -> Result<bool, Error> {
        Store::wake(self, id, now_ms)
    }

    fn release_leases(&self) -> Result<usize, Error> {
        Store::release_leases(self)
    }
}

impl Holds for Store {
    fn holds(&self) -> Result<Vec<Hold>, Error> {
        Store::holds(self)
    }

    fn place_hold(&self, hold: &Hold, audit: &AuditRecord) -> Result<Option<Hold>, Error> {
        Store::place_hold(self, hold, audit)
    }

    fn release_hold(
        &self,
        kind: HoldKind,
        id: &str,
        audit: &AuditRecord,
    ) -> Result<Option<Hold>, Error> {
        Store::release_hold(self, kind, id, audit)
    }
}

impl History for Store {
    fn event(&self, id: EventId) -> Result<Option<Event>, Error> {
        Store::event(self, id)
    }

    fn event_meta(&self, id: EventId) -> Result<Option<EventMeta>, Error> {
        Store::event_meta(self, id)
    }

    fn events_page(&self, before: Option<EventId>, limit: usize) -> Result<Vec<EventMeta>, Error> {
        Store::events_page(self, before, limit)
    }

    fn events_by_arrival(
        &self,
        after: Option<EventId>,
        since_ms: u64,
        integration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventMeta>, Error> {
        Store::events_by_arrival(self, after, since_ms, integration, limit)
    }

    fn event_jobs(&self, id: EventId) -> Result<Vec<EventJob>, Error> {
        Store::event_jobs(self, id)
    }

    fn history(
        &self,
        filter: &HistoryFilter,
        before: Option<EventId>,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        Store::history(self, filter, before, limit)
    }

    fn event_outcome(&self, id: EventId, rules: bool) -> Result<(Outcome, Vec<EventJob>), Error> {
        Store::event_outcome(self, id, rules)
    }

    fn event_audit(&self, id: EventId) -> Result<Vec<AuditRecord>, Error> {
        Store::event_audit(self, id)
    }

    fn rejections(
        &self,
        since_ms: u64,
        until_ms: u64,
        integration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, Error> {
        Store::rejections(self, since_ms, until_ms, integration, limit)
    }

    fn state_bytes(&self) -> StateBytes {
        Store::state_bytes(self)
    }

    fn retention_totals(&self) -> Result<RetentionTotals, Error> {
        Store::retention_totals(self)
    }
}

impl Revisions for Store {
    fn applied(&self) -> Result<Vec<AppliedResource>, Error> {
        Store::applied(self)
    }

    fn get_applied(&self, key: &str) -> Result<Option<AppliedResource>, Error> {
        Store::get_applied(self, key)
    }

    fn record_applied_set(
        &self,
        revision: &str,
        resources: &[AppliedResource],
    ) -> Result<bool, Error> {
        Store::record_applied_set(self, revision, resources)
    }

    fn applied_revision(&self) -> Result<Option<String>, Error> {
        Store::applied_revision(self)
    }

    fn set_applied_revision(&self, revision: &str) -> Result<(), Error> {
        Store::set_applied_revision(self, revision)
    }

    fn pin(&self) -> Result<Option<Pin>, Error> {
        Store::pin(self)
    }

    fn pin_revision(
        &self,
        commit: &str,
        reason: &str,
        at_ms: u64,
        by: serde_json::Value,
    ) -> Result<(), Error> {
        Store::pin_revision(self, commit, reason, at_ms, by)
    }

    fn unpin(&self, at_ms: u64, by: serde_json::Value) -> Result<(), Error> {
        Store::unpin(self, at_ms, by)
    }

    fn set_pin(&self, pin: Option<&Pin>) -> Result<(), Error> {
        Store::set_pin(self, pin)
    }
}

impl Registrations for Store {
    fn put_registration(&self, record: &RegistrationRecord) -> Result<(), Error> {
        Store::put_registration(self, record)
    }

    fn registration(&self, integration: &str) -> Result<Option<RegistrationRecord>, Error> {
        Store::registration(self, integration)
    }

    fn registrations(&self) -> Result<Vec<RegistrationRecord>, Error> {
        Store::registrations(self)
    }

    fn remove_registration(&self, integration: &str) -> Result<(), Error> {
        Store::remove_registration(self, integration)
    }

    fn put_health(&self, record: &HealthRecord) -> Result<(), Error> {
        Store::put_health(self, record)
    }

    fn health_records(&self) -> Result<Vec<HealthRecord>, Error> {
        Store::health_records(self)
    }

    fn remove_health(&self, integration: &str) -> Result<(), Error> {
        Store::remove_health(self, integration)
    }

    fn put_poll_cursor(&self, integration: &str, cursor: &serde_json::Value) -> Result<(), Error> {
        Store::put_poll_cursor(self, integration, cursor)
    }

    fn poll_cursor(&self, integration: &str) -> Result<Option<serde_json::Value>, Error> {
        Store::poll_cursor(self, integration)
    }
}

impl Captured for Store {
    fn notion_verification(&self, integration: &str) -> Result<NotionVerification, Error> {
        Store::notion_verification(self, integration)
    }

    fn put_notion_verification(
        &self,
        integration: &str,
        v: &NotionVerification,
    ) -> Result<(), Error> {
        Store::put_notion_verification(self, integration, v)
    }

    fn reset_notion_verification(&self, integration: &str) -> Result<(), Error> {
        Store::reset_notion_verification(self, integration)
    }

    fn set_signed_delivery_seen(&self, integration: &str) -> Result<(), Error> {
        Store::set_signed_delivery_seen(self, integration)
    }

    fn signed_delivery_seen(&self, integration: &str) -> Result<bool, Error> {
        Store::signed_delivery_seen(self, integration)
    }

    fn confirmed_notion_tokens(&self) -> Result<Vec<(String, String)>, Error> {
        Store::confirmed_notion_tokens(self)
    }

    fn connector_kept(&self, integration: &str) -> Result<Option<ConnectorKept>, Error> {
        Store::connector_kept(self, integration)
    }

    fn put_connector_kept(&self, integration: &str, kept: &ConnectorKept) -> Result<(), Error> {
        Store::put_connector_kept(self, integration, kept)
    }
}

impl Audit for Store {
    fn append_audit(&self, record: &AuditRecord) -> Result<(), Error> {
        Store::append_audit(self, record)
    }

    fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, Error> {
        Store::audit(self, filter)
    }

    fn audit_bounded(
        &self,
        filter: &AuditFilter,
        max_scanned: usize,
    ) -> Result<(Vec<AuditRecord>, bool), Error> {
        Store::audit_bounded(self, filter, max_scanned)
    }

    fn purge_audit(&self, before_ms: u64) -> Result<usize, Error> {
        Store::purge_audit(self, before_ms)
    }

    fn purge_audit_over(&self, max_records: u64) -> Result<usize, Error> {
        Store::purge_audit_over(self, max_records)
    }

    fn audit_records_removed(&self) -> Result<u64, Error> {
        Store::audit_records_removed(self)
    }
}

impl Rollups for Store {
    fn add_rollups(&self, records: &[MinuteRollup]) -> Result<(), Error> {
        Store::add_rollups(self, records)
    }

    fn rollups_of(
        &self,
        since_ms: u64,
        until_ms: u64,
        integration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MinuteRollup>, Error> {
        Store::rollups_of(self, since_ms, until_ms, integration, limit)
    }

    fn purge_rollups(&self, before_ms: u64) -> Result<usize, Error> {
        Store::purge_rollups(self, before_ms)
    }

    fn rollup_totals(&self, since_ms: u64, until_ms: u64) -> Result<Vec<MinuteTotals>, Error> {
        Store::rollup_totals(self, since_ms, until_ms)
    }
}
