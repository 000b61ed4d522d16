//! The outbox: trees `outbox` (job id → [`Job`]), `due` (readiness index) and `dead`
//! (job id → [`DeadJob`]), and the job lifecycle.
//!
//! A job runs the actions of one rule for one event, one step (action) at a time. Lifecycle:
//! [`Store::ingest`] creates it due at once; [`Store::lease_due`] hands it to an executor for a
//! while; [`Store::complete_step`] records each succeeded action (so a retry never redoes it);
//! then [`Store::ack`] removes it, or on failure [`Store::retry`] reschedules it or
//! [`Store::dead_letter`] parks it in `dead`, from where [`Store::replay`] puts it back.
//!
//! Guarantees:
//!
//! - Every transition is one transaction over the trees it touches; a job is always in exactly
//!   one of `outbox` (with exactly one `due` entry) or `dead`, until it is acknowledged.
//! - Delivery is at least once: a lease is a time (`lease_until_ms`) stored in the job, so after a
//!   crash an unacknowledged job becomes leasable again when its lease expires; only leased jobs
//!   can be re-run. Two leasers never get the same job while its lease is unexpired.
//! - The `due` index is keyed by `ready_ms ‖ id` (both big-endian), where `ready_ms` is the job's
//!   `due_ms`, or the end of its lease while leased ([`Job::ready_ms`]): leasing scans only
//!   entries at or before now, and leased jobs are not scanned again until their lease expires.
//! - Nothing here flushes; durability comes from the caller's [`Store::flush_async`] (or sled's
//!   periodic flush). Progress not yet flushed at a crash is redone, never lost silently.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::history::{EventJob, tx_update_job, wall_ms};
use super::keys::{EventId, due_key, job_key, read_u64, split_key, write_u64};
use super::{Error, Store, abort, codec, trees};

/// The `rule` of a job that enriches its delivery instead of running a rule's actions (never a
/// rule id: rule ids are lower-case letters, digits and dashes). Created by ingest for a
/// delivery whose rules need fields the platform did not send; completed by
/// [`Store::complete_enrichment`], which matches the rules on the enriched event. Retried,
/// dead-lettered and replayed like any job.
pub const ENRICHMENT: &str = "(enrichment)";

/// A pending job: the actions of rule `rule` for event `event_key`, from action `step` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique id (from the database's id generator, never reused).
    pub id: u64,
    /// The event's dedupe key ([`crate::event::Event::key`]), to name it.
    pub event_key: String,
    /// The delivery it runs for ([`Store::event`]).
    #[serde(default)]
    pub event_id: EventId,
    /// The rule's name.
    pub rule: String,
    /// The index of the next action to run.
    pub step: usize,
    /// The results of the actions already done (`results.len() == step`), so that retries
    /// never redo a succeeded action and later actions can use earlier results.
    pub results: Vec<serde_json::Value>,
    /// Failed attempts so far (since creation or the last replay).
    pub attempts: u32,
    /// When the job is due, milliseconds since the Unix epoch.
    pub due_ms: u64,
    /// While leased by an executor, when the lease ends; an expired lease is no lease.
    pub lease_until_ms: Option<u64>,
    /// The error of the last failed attempt (redaction-safe: never a secret).
    pub last_error: Option<String>,
    /// When the job was created, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The step whose request is being sent and whose outcome is not recorded yet, for the
    /// actions that must not be sent twice ([`Store::begin_attempt`]). Found set when the job
    /// is leased again, it means supportopsd stopped (a crash, a kill) while that request was
    /// in flight: whether the platform acted is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<usize>,
}

impl Job {
    /// When the job can next be leased: `due_ms`, or while it is leased the end of its lease
    /// (whichever is later).
    pub fn ready_ms(&self) -> u64 {
        match self.lease_until_ms {
            Some(until) => until.max(self.due_ms),
            None => self.due_ms,
        }
    }
}

/// A dead-lettered job, kept until replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadJob {
    /// The job as it was when it failed for good (`last_error` says why; never leased).
    pub job: Job,
    /// When it was dead-lettered, milliseconds since the Unix epoch.
    pub dead_at_ms: u64,
}

/// Splits a `due` key into `(ready_ms, id)`.
fn parse_due_key(key: &[u8]) -> Result<(u64, u64), Error> {
    split_key(trees::DUE, key)
}

/// Splits an `outbox` or `dead` key into the job id.
fn parse_job_key(tree: &'static str, key: &[u8]) -> Result<u64, Error> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| Error::Corrupt {
            tree,
            key: format!("{key:02x?}"),
            detail: "job key is not 8 bytes".to_owned(),
        })
}

/// Decodes a job and checks that it is stored under its own id.
fn decode_job(key: &[u8], value: &[u8]) -> Result<Job, Error> {
    let id = parse_job_key(trees::OUTBOX, key)?;
    let job: Job = codec::decode(trees::OUTBOX, id.to_string().as_bytes(), value)?;
    if job.id != id {
        return Err(Error::Corrupt {
            tree: trees::OUTBOX,
            key: id.to_string(),
            detail: format!("record is for job {}", job.id),
        });
    }
    Ok(job)
}

/// Decodes a dead job and checks that it is stored under its own id.
fn decode_dead(key: &[u8], value: &[u8]) -> Result<DeadJob, Error> {
    let id = parse_job_key(trees::DEAD, key)?;
    let dead: DeadJob = codec::decode(trees::DEAD, id.to_string().as_bytes(), value)?;
    if dead.job.id != id {
        return Err(Error::Corrupt {
            tree: trees::DEAD,
            key: id.to_string(),
            detail: format!("record is for job {}", dead.job.id),
        });
    }
    Ok(dead)
}

/// Reads a job inside a transaction.
pub(super) fn tx_get_job(
    outbox: &TransactionalTree,
    id: u64,
) -> Result<Option<Job>, ConflictableTransactionError<Error>> {
    let key = job_key(id);
    match outbox.get(key)? {
        Some(bytes) => decode_job(&key, &bytes).map(Some).map_err(abort),
        None => Ok(None),
    }
}

/// Writes a job inside a transaction (the caller maintains the `due` index).
fn tx_put_job(
    outbox: &TransactionalTree,
    job: &Job,
) -> Result<(), ConflictableTransactionError<Error>> {
    let bytes = codec::encode(trees::OUTBOX, &job.id.to_string(), job).map_err(abort)?;
    outbox.insert(&job_key(job.id), bytes)?;
    Ok(())
}

impl Store {
    /// One job in the outbox.
    pub fn job(&self, id: u64) -> Result<Option<Job>, Error> {
        let t = self.t()?;
        let key = job_key(id);
        match t.outbox.get(key).map_err(|e| self.storage(e))? {
            Some(bytes) => decode_job(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// How many jobs are in the outbox (leased or not; dead-lettered jobs excluded).
    /// Counts by scanning: meant for metrics and status, not for every request.
    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// How many jobs are dead-lettered. Counts by scanning. 0 when the store is closed
    /// ([`Error::Closed`], which every other call then returns).
    pub fn dead_depth(&self) -> usize {
        self.t().map_or(0, |t| t.dead.len())
    }

    /// The earliest [`Job::ready_ms`] in the outbox: when the next job is (or became) leasable.
    /// `None` when the outbox is empty. An executor sleeps until then; `now - oldest_due_ms`,
    /// when positive, is the queue's lag.
    pub fn oldest_due_ms(&self) -> Result<Option<u64>, Error> {
        let t = self.t()?;
        match t.due.first().map_err(|e| self.storage(e))? {
            Some((k, _)) => parse_due_key(&k).map(|(ready, _)| Some(ready)),
            None => Ok(None),
        }
    }

    /// Leases up to `limit` jobs that are due at `now_ms` and not under an unexpired lease (an
    /// expired lease, e.g. of an executor that crashed, counts as none), oldest first, until
    /// `now_ms + lease_ms` (a lease of 0 counts as 1 ms). Each lease is its own transaction, so
    /// concurrent leasers never get the same job. Does not flush.
    pub fn lease_due(&self, now_ms: u64, lease_ms: u64, limit: usize) -> Result<Vec<Job>, Error> {
        let t = self.t()?;
        let _writing = self.writing();
        let lease_until = now_ms.saturating_add(lease_ms.max(1));
        let mut leased = Vec::new();
        if limit == 0 {
            return Ok(leased);
        }
        // Leased jobs move to `lease_until > now_ms`, past the end of this range, so the scan
        // never meets a job twice.
        for item in t.due.range(..=due_key(now_ms, u64::MAX)) {
            let (k, _) = item.map_err(|e| self.storage(e))?;
            let (ready, id) = parse_due_key(&k)?;
            let result = (&t.outbox, &t.due, &t.history).transaction(|(outbox, due, history)| {
                let Some(mut job) = tx_get_job(outbox, id)? else {
                    // An index entry without its job (not written by this module): drop it.
                    due.remove(&*k)?;
                    return Ok(None);
                };
                if job.ready_ms() != ready || ready > now_ms {
                    // Changed since the scan read the index: no longer this entry.
                    return Ok(None);
                }
                job.lease_until_ms = Some(lease_until);
                due.remove(&*k)?;
                due.insert(&due_key(job.ready_ms(), id), &[][..])?;
                tx_put_job(outbox, &job)?;
                tx_update_job(history, job.event_id, EventJob::of_live(&job, now_ms))?;
                Ok(Some(job))
            });
            if let Some(job) = self.tx_result(result)? {
                leased.push(job);
                if leased.len() >= limit {
                    break;
                }
            }
        }
        Ok(leased)
    }

    /// Changes a job in one transaction, keeping its `due` entry in step with
    /// [`Job::ready_ms`] and its history entry with where it stands. [`Error::NoSuchJob`] if
    /// it is not in the outbox.
    fn modify_job(
        &self,
        id: u64,
        change: impl Fn(&mut Job) -> Result<(), Error>,
    ) -> Result<Job, Error> {
        let t = self.t()?;
        let at_ms = wall_ms();
        let result = (&t.outbox, &t.due, &t.history).transaction(|(outbox, due, history)| {
            let mut job = tx_get_job(outbox, id)?.ok_or_else(|| abort(Error::NoSuchJob { id }))?;
            let before = job.ready_ms();
            change(&mut job).map_err(abort)?;
            tx_put_job(outbox, &job)?;
            let after = job.ready_ms();
            if after != before {
                due.remove(&due_key(before, id))?;
                due.insert(&due_key(after, id), &[][..])?;
            }
            tx_update_job(history, job.event_id, EventJob::of_live(&job, at_ms))?;
            Ok(job)
        });
        self.tx_result(result)
    }

    /// Extends the lease of a job that is still leased, to `until_ms` unless it already ends
    /// later: work that outlasts a lease (a bulk call polling its job) keeps its jobs from
    /// being leased again meanwhile. `Ok(false)` when the job is no longer in the outbox or no
    /// longer leased (settled meanwhile); nothing is written then. Does not flush.
    pub fn renew_lease(&self, id: u64, until_ms: u64) -> Result<bool, Error> {
        let _writing = self.writing();
        let renewed = self.modify_job(id, |job| match job.lease_until_ms {
            Some(until) if until < until_ms => {
                job.lease_until_ms = Some(until_ms);
                Ok(())
            }
            _ => Ok(()),
        });
        match renewed {
            Ok(job) => Ok(job.lease_until_ms.is_some()),
            Err(Error::NoSuchJob { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records that the request of action `step` of job `id` is about to be sent
    /// ([`Job::in_flight`]), for an action that must not be sent twice; every later transition
    /// of the job (progress, retry, dead letter, replay) clears it. [`Error::StepMismatch`] if
    /// `step` is not the job's next step. Does not flush: the caller makes it durable before
    /// sending.
    pub fn begin_attempt(&self, id: u64, step: usize) -> Result<Job, Error> {
        let _writing = self.writing();
        self.modify_job(id, |job| {
            if job.step != step {
                return Err(Error::StepMismatch {
                    id,
                    current: job.step,
                    given: step,
                });
            }
            job.in_flight = Some(step);
            Ok(())
        })
    }

    /// Records that action `step` of job `id` succeeded with `result`: appends the result and
    /// advances the job to the next step, keeping its lease. [`Error::StepMismatch`] if `step`
    /// is not the job's next step (nothing is written). Does not flush.
    pub fn complete_step(
        &self,
        id: u64,
        step: usize,
        result: serde_json::Value,
    ) -> Result<Job, Error> {
        let _writing = self.writing();
        self.modify_job(id, |job| {
            if job.step != step {
                return Err(Error::StepMismatch {
                    id,
                    current: job.step,
                    given: step,
                });
            }
            job.results.push(result.clone());
            job.step += 1;
            job.in_flight = None;
            Ok(())
        })
    }

    /// Removes a finished job (and its index entry). `Ok(false)` if the job is not in the
    /// outbox (acknowledged before, or dead-lettered): a second ack is detectable. Does not
    /// flush.
    pub fn ack(&self, id: u64) -> Result<bool, Error> {
        let t = self.t()?;
        let _writing = self.writing();
        let at_ms = wall_ms();
        let result = (&t.outbox, &t.due, &t.inbox_refs, &t.history).transaction(
            |(outbox, due, refs, history)| {
                let Some(job) = tx_get_job(outbox, id)? else {
                    return Ok(false);
                };
                tx_update_job(history, job.event_id, EventJob::of_done(&job, at_ms))?;
                outbox.remove(&job_key(id))?;
                due.remove(&due_key(job.ready_ms(), id))?;
                let at = job.event_id.key();
                match read_u64(refs, trees::INBOX_REFS, &at)? {
                    Some(n) if n > 1 => write_u64(refs, trees::INBOX_REFS, &at, n - 1)?,
                    _ => {
                        refs.remove(&at)?;
                    }
                }
                Ok(true)
            },
        );
        let acked = self.tx_result(result)?;
        if acked {
            self.depth.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(acked)
    }

    /// Records a failed attempt and reschedules the job: attempts + 1, `last_error` set, lease
    /// cleared, due at `due_ms`. Steps already completed stay completed. Does not flush.
    pub fn retry(&self, id: u64, error: &str, due_ms: u64) -> Result<Job, Error> {
        let _writing = self.writing();
        self.modify_job(id, |job| {
            job.attempts = job.attempts.saturating_add(1);
            job.last_error = Some(error.to_owned());
            job.lease_until_ms = None;
            job.due_ms = due_ms;
            job.in_flight = None;
            Ok(())
        })
    }

    /// Puts a leased job back, due at `due_ms`, without counting an attempt: nothing was tried
    /// (the integration's gate is paused by a platform's `Retry-After`). Lease cleared; attempts,
    /// progress and `last_error` unchanged. Does not flush.
    pub fn postpone(&self, id: u64, due_ms: u64) -> Result<Job, Error> {
        let _writing = self.writing();
        self.modify_job(id, |job| {
            job.lease_until_ms = None;
            job.due_ms = due_ms;
            Ok(())
        })
    }

    /// Records a final failed attempt and moves the job to the dead-letter tree: attempts + 1,
    /// `last_error` set, lease cleared, stamped `now_ms`. [`Error::NoSuchJob`] if it is not in
    /// the outbox. Does not flush.
    pub fn dead_letter(&self, id: u64, error: &str, now_ms: u64) -> Result<DeadJob, Error> {
        let t = self.t()?;
        let _writing = self.writing();
        let result =
            (&t.outbox, &t.due, &t.dead, &t.history).transaction(|(outbox, due, dead, history)| {
                let mut job =
                    tx_get_job(outbox, id)?.ok_or_else(|| abort(Error::NoSuchJob { id }))?;
                outbox.remove(&job_key(id))?;
                due.remove(&due_key(job.ready_ms(), id))?;
                job.attempts = job.attempts.saturating_add(1);
                job.last_error = Some(error.to_owned());
                job.lease_until_ms = None;
                job.in_flight = None;
                let record = DeadJob {
                    job,
                    dead_at_ms: now_ms,
                };
                let bytes = codec::encode(trees::DEAD, &id.to_string(), &record).map_err(abort)?;
                dead.insert(&job_key(id), bytes)?;
                tx_update_job(history, record.job.event_id, EventJob::of_dead(&record))?;
                Ok(record)
            });
        let record = self.tx_result(result)?;
        self.depth.fetch_sub(1, Ordering::Relaxed);
        Ok(record)
    }

    /// Up to `limit` dead-lettered jobs, by id (roughly oldest first).
    pub fn dead(&self, limit: usize) -> Result<Vec<DeadJob>, Error> {
        let t = self.t()?;
        let mut out = Vec::new();
        for item in t.dead.iter().take(limit) {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            out.push(decode_dead(&k, &v)?);
        }
        Ok(out)
    }

    /// One dead-lettered job.
    pub fn dead_job(&self, id: u64) -> Result<Option<DeadJob>, Error> {
        let t = self.t()?;
        let key = job_key(id);
        match t.dead.get(key).map_err(|e| self.storage(e))? {
            Some(bytes) => decode_dead(&key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Moves a dead-lettered job back to the outbox under the same id: attempts 0, due at
    /// `now_ms`, not leased; its completed steps and results (and `last_error`, for reference)
    /// are kept, so it resumes at the action that failed. [`Error::NoSuchDeadJob`] if it is not
    /// dead-lettered. Does not flush.
    pub fn replay(&self, id: u64, now_ms: u64) -> Result<Job, Error> {
        let t = self.t()?;
        let _writing = self.writing();
        let result =
            (&t.dead, &t.outbox, &t.due, &t.history).transaction(|(dead, outbox, due, history)| {
                let key = job_key(id);
                let bytes = dead
                    .get(key)?
                    .ok_or_else(|| abort(Error::NoSuchDeadJob { id }))?;
                let mut job = decode_dead(&key, &bytes).map_err(abort)?.job;
                dead.remove(&key)?;
                job.attempts = 0;
                job.due_ms = now_ms;
                job.lease_until_ms = None;
                // The operator checked the platform and asks for the action again.
                job.in_flight = None;
                tx_put_job(outbox, &job)?;
                due.insert(&due_key(job.ready_ms(), id), &[][..])?;
                tx_update_job(history, job.event_id, EventJob::of_live(&job, now_ms))?;
                Ok(job)
            });
        let job = self.tx_result(result)?;
        self.depth.fetch_add(1, Ordering::Relaxed);
        Ok(job)
    }

    /// Up to `limit` queued jobs (leased or not) with ids above `after` (from the first when
    /// `None`), by id. Each page is a scan: it may see writes made while it runs.
    pub fn queued(&self, after: Option<u64>, limit: usize) -> Result<Vec<Job>, Error> {
        let t = self.t()?;
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        if limit == 0 || after == Some(u64::MAX) {
            return Ok(out);
        }
        for item in t.outbox.range(job_key(start)..).take(limit) {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            out.push(decode_job(&k, &v)?);
        }
        Ok(out)
    }

    /// Makes a queued job that is not under an unexpired lease due at `now_ms` when it is due
    /// later, without counting an attempt (a job held back by a paused integration, resumed).
    /// `Ok(false)`, nothing written, when it is not queued, leased, or due already. Does not
    /// flush.
    pub fn wake(&self, id: u64, now_ms: u64) -> Result<bool, Error> {
        let _writing = self.writing();
        let Some(job) = self.job(id)? else {
            return Ok(false);
        };
        let leased = job.lease_until_ms.is_some_and(|until| until > now_ms);
        if leased || job.due_ms <= now_ms {
            return Ok(false);
        }
        // Decided again inside the transaction: the executor may have leased it meanwhile.
        let woken = self.modify_job(id, |job| {
            if job.lease_until_ms.is_none_or(|until| until <= now_ms) && job.due_ms > now_ms {
                job.lease_until_ms = None;
                job.due_ms = now_ms;
            }
            Ok(())
        });
        match woken {
            Ok(job) => Ok(job.due_ms == now_ms && job.lease_until_ms.is_none()),
            Err(Error::NoSuchJob { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Clears every lease, so that the jobs are due at once on the next start (for a graceful
    /// shutdown, after the executors have stopped). Returns how many leases were cleared.
    /// Does not flush.
    pub fn release_leases(&self) -> Result<usize, Error> {
        let t = self.t()?;
        let _writing = self.writing();
        let mut released = 0;
        for item in t.outbox.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let job = decode_job(&k, &v)?;
            if job.lease_until_ms.is_none() {
                continue;
            }
            let cleared = self.modify_job(job.id, |job| {
                job.lease_until_ms = None;
                Ok(())
            });
            match cleared {
                Ok(_) => released += 1,
                // Acknowledged or dead-lettered meanwhile.
                Err(Error::NoSuchJob { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(released)
    }
}
