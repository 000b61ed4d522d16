//! The inbox: trees `events` (event key → [`Event`]), `dedupe` (event key → expiry) and
//! `event_refs` (event key → how many jobs reference it), and [`Store::ingest`], which turns a
//! verified event into stored jobs.
//!
//! Guarantees: [`Store::ingest`] writes the event, its dedupe entry, one job per matching rule
//! (with its `due` index entry) and any audit records in ONE transaction, or nothing when the
//! event is a duplicate. It does not flush: the caller batches flushes ([`Store::flush_async`])
//! and answers the webhook only once the flush that follows the ingest has completed.
//! [`Store::purge_expired`] never removes an event that a job in the outbox or the dead-letter
//! tree still references, nor one whose dedupe window is still open.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::outbox::{Job, due_key, job_key};
use super::{AuditRecord, Error, Store, abort, codec, trees};
use crate::event::Event;

/// What [`Store::ingest`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// The event's dedupe key was seen before and its dedupe window is still open: nothing
    /// was written.
    Duplicate,
    /// The event was stored with one job per matching rule (none if no rule matched), in the
    /// order of the rules given.
    Stored {
        /// The ids of the new jobs.
        jobs: Vec<u64>,
    },
}

/// What [`Store::purge_expired`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Expired dedupe entries removed.
    pub dedupe: usize,
    /// Events removed (no job references them and their dedupe window is closed).
    pub events: usize,
}

impl Store {
    /// Stores a verified event and one job per rule in `rules` (step 0, due at `now_ms`), in one
    /// transaction, unless the event is a duplicate. Does not flush.
    ///
    /// The event is a duplicate if its dedupe key ([`Event::key`]) has a dedupe entry expiring
    /// after `now_ms`; then nothing is written. Otherwise the dedupe entry is (re)set to expire
    /// at `dedupe_until_ms` (which should be later than `now_ms`), and the event is stored even
    /// if no rule matched. A redelivery after the dedupe window replaces the stored event (same
    /// key, same platform event) and adds new jobs; jobs of the earlier delivery still pending
    /// read the replacement.
    pub fn ingest(
        &self,
        event: &Event,
        rules: &[String],
        now_ms: u64,
        dedupe_until_ms: u64,
    ) -> Result<IngestOutcome, Error> {
        self.ingest_audited(event, rules, now_ms, dedupe_until_ms, &[])
    }

    /// [`Store::ingest`], also appending `audit` records in the same transaction (e.g. "event
    /// accepted" and one "rule matched" per rule). Nothing, not even the audit records, is
    /// written for a duplicate.
    pub fn ingest_audited(
        &self,
        event: &Event,
        rules: &[String],
        now_ms: u64,
        dedupe_until_ms: u64,
        audit: &[AuditRecord],
    ) -> Result<IngestOutcome, Error> {
        let key = event.key();
        let event_bytes = codec::encode(trees::EVENTS, &key, event)?;
        let dedupe_bytes = codec::encode(trees::DEDUPE, &key, &dedupe_until_ms)?;
        let mut jobs = Vec::with_capacity(rules.len());
        for rule in rules {
            let id = self.next_id()?;
            let job = Job {
                id,
                event_key: key.clone(),
                rule: rule.clone(),
                step: 0,
                results: Vec::new(),
                attempts: 0,
                due_ms: now_ms,
                lease_until_ms: None,
                last_error: None,
                created_ms: now_ms,
            };
            let bytes = codec::encode(trees::OUTBOX, &id.to_string(), &job)?;
            jobs.push((id, bytes));
        }
        let audit = self.encode_audit(audit)?;
        let added = jobs.len() as u64;

        let result = (
            &self.events,
            &self.dedupe,
            &self.event_refs,
            &self.outbox,
            &self.due,
            &self.audit,
        )
            .transaction(|(events, dedupe, refs, outbox, due, audit_tree)| {
                if read_u64(dedupe, trees::DEDUPE, &key)?.is_some_and(|until| until > now_ms) {
                    return Ok(IngestOutcome::Duplicate);
                }
                events.insert(key.as_bytes(), event_bytes.as_slice())?;
                dedupe.insert(key.as_bytes(), dedupe_bytes.as_slice())?;
                if added > 0 {
                    let before = read_u64(refs, trees::EVENT_REFS, &key)?.unwrap_or(0);
                    write_u64(refs, trees::EVENT_REFS, &key, before.saturating_add(added))?;
                }
                for (id, bytes) in &jobs {
                    outbox.insert(&job_key(*id), bytes.as_slice())?;
                    due.insert(&due_key(now_ms, *id), &[][..])?;
                }
                for (k, v) in &audit {
                    audit_tree.insert(k, v.as_slice())?;
                }
                Ok(IngestOutcome::Stored {
                    jobs: jobs.iter().map(|(id, _)| *id).collect(),
                })
            });
        let outcome = self.tx_result(result)?;
        if let IngestOutcome::Stored { jobs } = &outcome {
            self.depth
                .fetch_add(jobs.len(), std::sync::atomic::Ordering::Relaxed);
        }
        Ok(outcome)
    }

    /// The stored event with this dedupe key, if any.
    pub fn event(&self, key: &str) -> Result<Option<Event>, Error> {
        self.get(&self.events, trees::EVENTS, key)
    }

    /// The expiry of the dedupe entry for this event key, if any (expired or not).
    pub fn dedupe_until(&self, key: &str) -> Result<Option<u64>, Error> {
        self.get(&self.dedupe, trees::DEDUPE, key)
    }

    /// Removes dedupe entries that expired at or before `now_ms`, then events that no job (in
    /// the outbox or dead-lettered) references and whose dedupe window is closed. Safe to run
    /// while the daemon ingests and executes: each removal re-checks its conditions atomically.
    /// Does not flush.
    pub fn purge_expired(&self, now_ms: u64) -> Result<Purged, Error> {
        let mut purged = Purged::default();
        for item in self.dedupe.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let until: u64 = codec::decode(trees::DEDUPE, &k, &v)?;
            if until <= now_ms {
                // A compare-and-swap, so that an entry an ingest has just renewed survives.
                let swapped = self
                    .dedupe
                    .compare_and_swap(&k, Some(&v), None as Option<&[u8]>)
                    .map_err(|e| self.storage(e))?;
                if swapped.is_ok() {
                    purged.dedupe += 1;
                }
            }
        }
        for item in self.events.iter().keys() {
            let k = item.map_err(|e| self.storage(e))?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let result = (&self.events, &self.dedupe, &self.event_refs).transaction(
                |(events, dedupe, refs)| {
                    if read_u64(refs, trees::EVENT_REFS, &key)?.is_some_and(|n| n > 0) {
                        return Ok(false);
                    }
                    if read_u64(dedupe, trees::DEDUPE, &key)?.is_some_and(|until| until > now_ms) {
                        return Ok(false);
                    }
                    Ok(events.remove(&*k)?.is_some())
                },
            );
            if self.tx_result(result)? {
                purged.events += 1;
            }
        }
        Ok(purged)
    }
}

/// Reads a `u64` value inside a transaction.
pub(super) fn read_u64(
    tree: &TransactionalTree,
    tree_name: &'static str,
    key: &str,
) -> Result<Option<u64>, ConflictableTransactionError<Error>> {
    match tree.get(key.as_bytes())? {
        Some(bytes) => codec::decode(tree_name, key.as_bytes(), &bytes)
            .map(Some)
            .map_err(abort),
        None => Ok(None),
    }
}

/// Writes a `u64` value inside a transaction.
pub(super) fn write_u64(
    tree: &TransactionalTree,
    tree_name: &'static str,
    key: &str,
    value: u64,
) -> Result<(), ConflictableTransactionError<Error>> {
    let bytes = codec::encode(tree_name, key, &value).map_err(abort)?;
    tree.insert(key.as_bytes(), bytes)?;
    Ok(())
}
