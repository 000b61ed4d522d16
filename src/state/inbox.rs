//! The inbox: trees `inbox` ([`EventRef`] → [`Event`], one entry per stored delivery),
//! `dedupe` (event key → expiry) and `inbox_refs` ([`EventRef`] → how many jobs reference the
//! delivery), and [`Store::ingest`], which turns a verified event into stored jobs
//! ([`Store::ingest_batch`]: many of them in one transaction).
//!
//! Guarantees: [`Store::ingest`] writes the event, its dedupe entry, one job per matching rule
//! (with its `due` index entry) and any audit records in ONE transaction, or nothing when the
//! event is a duplicate. It does not flush: the caller batches flushes ([`Store::flush_async`])
//! and answers the webhook only once the flush that follows the ingest has completed.
//! [`Store::purge_expired`] never removes a delivery that a job in the outbox or the dead-letter
//! tree still references, nor one whose dedupe window is still open.
//!
//! Deduplication reads no tree for a new event: the store keeps the dedupe windows in memory
//! by key hash ([`DedupeIndex`], loaded at open, a superset of the open windows of the
//! `dedupe` tree), and only a hash that matches an open window is confirmed in the tree.
//!
//! Layout: a delivery's key begins with the end of its dedupe window, so new deliveries land at
//! the end of the `inbox` tree (sled keeps appending to one hot leaf instead of rewriting leaves
//! all over the tree, which is what made keying by event key slow under load) and purging reads
//! only the expired head of the tree.

use sled::Transactional;

use super::audit::EncodedRecord;
use super::journal::IngestRecord;
use super::keys::{EventRef, due_key, job_key, read_u64, write_u64};
use super::outbox::{DeadJob, Job};
use super::{AuditRecord, Error, Store, codec, trees};
use crate::event::Event;

/// One ingest, encoded and with its ids, ready for the transaction ([`Store::prepare_ingest`],
/// then [`Store::decide_ingests`] and [`Store::apply_ingests`]). Preparing reads nothing from
/// the state, so it can run on any thread, in parallel, before the single writer commits.
pub struct Prepared {
    key: String,
    at: EventRef,
    now_ms: u64,
    event_bytes: Vec<u8>,
    dedupe_bytes: Vec<u8>,
    jobs: Vec<(u64, Vec<u8>)>,
    audit: Vec<EncodedRecord>,
}

impl Prepared {
    /// Whether the ingest creates jobs (a rule matched).
    pub fn has_jobs(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// The event and the audit records as encoded for sled ([`codec::json_payload`] gives
    /// their JSON).
    pub(super) fn encoded(&self) -> (&[u8], impl Iterator<Item = &[u8]>) {
        (
            &self.event_bytes,
            self.audit.iter().map(|(_, v)| v.as_slice()),
        )
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("key", &self.key)
            .field("at", &self.at)
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

/// The dedupe windows in memory: key hash → the latest window end of any key with that hash.
/// Every open window of the `dedupe` tree is here (entries are added when an ingest commits
/// and dropped only once expired), so a key whose hash has no open window here is new; a hash
/// with an open window is confirmed in the tree (another key may share the hash).
///
/// Ingests decided new but not yet written ([`Store::decide_ingests`]) are held by exact key in
/// `unapplied` until [`Store::apply_ingests`] writes them.
#[derive(Debug, Default)]
pub(super) struct DedupeIndex {
    windows: std::collections::HashMap<u64, u64>,
    hasher: std::hash::RandomState,
    unapplied: std::collections::HashMap<String, u64>,
}

impl DedupeIndex {
    fn hash(&self, key: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, key)
    }

    /// Whether `key` may have a window open after `now_ms` (`false`: certainly not).
    fn maybe_open(&self, key: &str, now_ms: u64) -> bool {
        self.windows
            .get(&self.hash(key))
            .is_some_and(|until| *until > now_ms)
    }

    fn insert(&mut self, key: &str, until_ms: u64) {
        let until = self.windows.entry(self.hash(key)).or_insert(until_ms);
        *until = (*until).max(until_ms);
    }
}

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
        let prepared = self.prepare(event, rules, now_ms, dedupe_until_ms, audit)?;
        let mut outcomes = self.commit_prepared(std::slice::from_ref(&prepared))?;
        outcomes.pop().ok_or_else(|| self.missing_outcome())
    }

    /// Many [`Store::ingest_audited`]s in ONE transaction, in order: the result is exactly what
    /// ingesting the records one after another would give (a second delivery of an event key
    /// in the same batch is a [`IngestOutcome::Duplicate`] while the first one's dedupe window
    /// is open), but the per-transaction cost is paid once per batch. Does not flush.
    ///
    /// The outer error means nothing of the batch was written (a storage failure). An inner
    /// error concerns that record alone (it could not be encoded): it was not written, the
    /// others were.
    pub fn ingest_batch(
        &self,
        records: &[&IngestRecord],
    ) -> Result<Vec<Result<IngestOutcome, Error>>, Error> {
        let mut prepared = Vec::with_capacity(records.len());
        let mut slots: Vec<Result<(), Error>> = Vec::with_capacity(records.len());
        for r in records {
            match self.prepare(&r.event, &r.rules, r.now_ms, r.dedupe_until_ms, &r.audit) {
                Ok(p) => {
                    prepared.push(p);
                    slots.push(Ok(()));
                }
                Err(e) => slots.push(Err(e)),
            }
        }
        let mut outcomes = self.commit_prepared(&prepared)?.into_iter();
        Ok(slots
            .into_iter()
            .map(|slot| slot.and_then(|()| outcomes.next().ok_or_else(|| self.missing_outcome())))
            .collect())
    }

    /// The error for a transaction that returned fewer outcomes than ingests (cannot happen).
    fn missing_outcome(&self) -> Error {
        super::storage_error(
            self.dir(),
            sled::Error::ReportableBug("an ingest transaction returned too few outcomes".into()),
        )
    }

    /// Encodes a record and allocates its ids, without touching the state: the expensive half
    /// of an ingest, done off the writer thread. Decide it with [`Store::decide_ingests`] and
    /// write it with [`Store::apply_ingests`].
    pub fn prepare_ingest(&self, r: &IngestRecord) -> Result<Prepared, Error> {
        self.prepare(&r.event, &r.rules, r.now_ms, r.dedupe_until_ms, &r.audit)
    }

    /// The first half of an ingest's commit: decides which prepared ingests are new
    /// (exactly as committing them one by one would) and reserves their dedupe windows in
    /// memory, writing nothing. Every ingest decided [`IngestOutcome::Stored`] must then be
    /// written with [`Store::apply_ingests`] (retried until it succeeds, or replayed from the
    /// journal by the next run): until then its key counts as a duplicate for later ingests.
    pub fn decide_ingests(&self, prepared: &[&Prepared]) -> Result<Vec<IngestOutcome>, Error> {
        let mut index = self.dedupe_index();
        // This batch's own windows first: a later ingest of a key sees the earlier one's.
        let mut opened: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        let mut outcomes = Vec::with_capacity(prepared.len());
        for p in prepared {
            let open = |until: u64| until > p.now_ms;
            let key = p.key.as_str();
            let duplicate = match opened.get(key).or_else(|| index.unapplied.get(key)) {
                Some(until) => open(*until),
                // Only a hash with an open window is looked up in the tree (rare: redeliveries).
                None => {
                    index.maybe_open(key, p.now_ms) && self.dedupe_until(key)?.is_some_and(open)
                }
            };
            outcomes.push(if duplicate {
                IngestOutcome::Duplicate
            } else {
                opened.insert(key, p.at.until_ms);
                IngestOutcome::Stored {
                    jobs: p.jobs.iter().map(|(id, _)| *id).collect(),
                }
            });
        }
        // Reserved only once the whole batch is decided: an error above reserves nothing.
        for (key, until) in opened {
            index.insert(key, until);
            index.unapplied.insert(key.to_owned(), until);
        }
        Ok(outcomes)
    }

    /// The second half of an ingest's commit: writes ingests that
    /// [`Store::decide_ingests`] found new, in ONE transaction. On an error nothing was
    /// written and the ingests stay reserved: apply them again.
    pub fn apply_ingests(&self, new: &[&Prepared]) -> Result<(), Error> {
        let _writing = self.writing();
        if new.is_empty() {
            return Ok(());
        }
        let result = (
            &self.inbox,
            &self.dedupe,
            &self.inbox_refs,
            &self.outbox,
            &self.due,
            &self.audit,
        )
            .transaction(|(inbox, dedupe, refs, outbox, due, audit_tree)| {
                for p in new {
                    // A new delivery: its entries are new keys.
                    let at = p.at.key();
                    inbox.insert(&at, p.event_bytes.as_slice())?;
                    dedupe.insert(p.key.as_bytes(), p.dedupe_bytes.as_slice())?;
                    if !p.jobs.is_empty() {
                        write_u64(refs, trees::INBOX_REFS, &at, p.jobs.len() as u64)?;
                    }
                    for (id, bytes) in &p.jobs {
                        outbox.insert(&job_key(*id), bytes.as_slice())?;
                        due.insert(&due_key(p.now_ms, *id), &[][..])?;
                    }
                    for (k, v) in &p.audit {
                        audit_tree.insert(k, v.as_slice())?;
                    }
                }
                Ok(())
            });
        self.tx_result(result)?;
        self.settle_unapplied(new);
        let added: usize = new.iter().map(|p| p.jobs.len()).sum();
        self.depth
            .fetch_add(added, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Drops the in-memory reservations of `new` (written, or given up).
    fn settle_unapplied(&self, new: &[&Prepared]) {
        let mut index = self.dedupe_index();
        for p in new {
            if index.unapplied.get(p.key.as_str()) == Some(&p.at.until_ms) {
                index.unapplied.remove(p.key.as_str());
            }
        }
    }

    fn dedupe_index(&self) -> std::sync::MutexGuard<'_, DedupeIndex> {
        self.dedupe_index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Encodes one ingest (outside any transaction) and allocates its job and audit ids.
    fn prepare(
        &self,
        event: &Event,
        rules: &[String],
        now_ms: u64,
        dedupe_until_ms: u64,
        audit: &[AuditRecord],
    ) -> Result<Prepared, Error> {
        let key = event.key();
        let at = EventRef {
            until_ms: dedupe_until_ms,
            seq: self.next_id()?,
        };
        let event_bytes = codec::encode(trees::INBOX, &key, event)?;
        let dedupe_bytes = codec::encode(trees::DEDUPE, &key, &dedupe_until_ms)?;
        let mut jobs = Vec::with_capacity(rules.len());
        for rule in rules {
            let id = self.next_id()?;
            let job = Job {
                id,
                event_key: key.clone(),
                event_ref: at,
                rule: rule.clone(),
                step: 0,
                results: Vec::new(),
                attempts: 0,
                due_ms: now_ms,
                lease_until_ms: None,
                last_error: None,
                created_ms: now_ms,
                in_flight: None,
            };
            let bytes = codec::encode(trees::OUTBOX, &id.to_string(), &job)?;
            jobs.push((id, bytes));
        }
        let audit = self.encode_audit(audit)?;
        Ok(Prepared {
            key,
            at,
            now_ms,
            event_bytes,
            dedupe_bytes,
            jobs,
            audit,
        })
    }

    /// Decides and writes prepared ingests in one transaction, in order; one outcome per
    /// ingest. On an error nothing was written and nothing stays reserved.
    pub(super) fn commit_prepared(
        &self,
        prepared: &[Prepared],
    ) -> Result<Vec<IngestOutcome>, Error> {
        let prepared: Vec<&Prepared> = prepared.iter().collect();
        let outcomes = self.decide_ingests(&prepared)?;
        let new: Vec<&Prepared> = prepared
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| matches!(o, IngestOutcome::Stored { .. }))
            .map(|(p, _)| *p)
            .collect();
        if let Err(e) = self.apply_ingests(&new) {
            self.settle_unapplied(&new);
            return Err(e);
        }
        Ok(outcomes)
    }

    /// The stored delivery `at` (a job's [`Job::event_ref`]), if it is still stored.
    pub fn event(&self, at: EventRef) -> Result<Option<Event>, Error> {
        match self.inbox.get(at.key()).map_err(|e| self.storage(e))? {
            Some(bytes) => codec::decode(trees::INBOX, at.to_string().as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The latest stored delivery with this event key, if any (a scan: for tests).
    #[cfg(test)]
    pub(crate) fn event_by_key(&self, key: &str) -> Result<Option<Event>, Error> {
        let mut latest: Option<(u64, Event)> = None;
        for item in self.inbox.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let at = EventRef::parse(&k)?;
            let event: Event = codec::decode(trees::INBOX, &k, &v)?;
            if event.key() == key && latest.as_ref().is_none_or(|(seq, _)| *seq < at.seq) {
                latest = Some((at.seq, event));
            }
        }
        Ok(latest.map(|(_, e)| e))
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
        let _writing = self.writing();
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
        self.dedupe_index()
            .windows
            .retain(|_, until| *until > now_ms);
        // Deliveries are ordered by the end of their dedupe window: only the head is expired.
        for item in self.inbox.iter().keys() {
            let k = item.map_err(|e| self.storage(e))?;
            if EventRef::parse(&k)?.until_ms > now_ms {
                break;
            }
            let result = (&self.inbox, &self.inbox_refs).transaction(|(inbox, refs)| {
                if read_u64(refs, trees::INBOX_REFS, &k)?.is_some_and(|n| n > 0) {
                    return Ok(false);
                }
                Ok(inbox.remove(&*k)?.is_some())
            });
            if self.tx_result(result)? {
                purged.events += 1;
            }
        }
        Ok(purged)
    }

    /// Completes the enrichment job `id` ([`super::outbox::ENRICHMENT`]) in ONE transaction:
    /// the stored delivery is replaced by `event` (the enriched one), the enrichment job is
    /// removed, one job per rule in `rules` is created due at `now_ms` (the rules matched on the
    /// enriched event), and `audit` is appended. Returns the new jobs' ids.
    /// [`Error::NoSuchJob`] if job `id` is not in the outbox (completed before, or
    /// dead-lettered meanwhile): nothing is written then. Does not flush.
    pub fn complete_enrichment(
        &self,
        id: u64,
        event: &Event,
        rules: &[String],
        now_ms: u64,
        audit: &[AuditRecord],
    ) -> Result<Vec<u64>, Error> {
        let _writing = self.writing();
        let key = event.key();
        let event_bytes = codec::encode(trees::INBOX, &key, event)?;
        let mut ids = Vec::with_capacity(rules.len());
        for _ in rules {
            ids.push(self.next_id()?);
        }
        let audit = self.encode_audit(audit)?;
        let result = (
            &self.inbox,
            &self.inbox_refs,
            &self.outbox,
            &self.due,
            &self.audit,
        )
            .transaction(|(inbox, refs, outbox, due, audit_tree)| {
                let job = super::outbox::tx_get_job(outbox, id)?
                    .ok_or_else(|| super::abort(Error::NoSuchJob { id }))?;
                let at = job.event_ref.key();
                inbox.insert(&at, event_bytes.as_slice())?;
                outbox.remove(&job_key(id))?;
                due.remove(&due_key(job.ready_ms(), id))?;
                for (new_id, rule) in ids.iter().zip(rules) {
                    let new = Job {
                        id: *new_id,
                        event_key: job.event_key.clone(),
                        event_ref: job.event_ref,
                        rule: rule.clone(),
                        step: 0,
                        results: Vec::new(),
                        attempts: 0,
                        due_ms: now_ms,
                        lease_until_ms: None,
                        last_error: None,
                        created_ms: now_ms,
                        in_flight: None,
                    };
                    let bytes = codec::encode(trees::OUTBOX, &new_id.to_string(), &new)
                        .map_err(super::abort)?;
                    outbox.insert(&job_key(*new_id), bytes)?;
                    due.insert(&due_key(now_ms, *new_id), &[][..])?;
                }
                // The enrichment job's reference becomes the new jobs' references.
                let held = read_u64(refs, trees::INBOX_REFS, &at)?.unwrap_or(1);
                let now_held = held.saturating_sub(1).saturating_add(rules.len() as u64);
                if now_held == 0 {
                    refs.remove(&at)?;
                } else {
                    write_u64(refs, trees::INBOX_REFS, &at, now_held)?;
                }
                for (k, v) in &audit {
                    audit_tree.insert(k, v.as_slice())?;
                }
                Ok(())
            });
        self.tx_result(result)?;
        // One job (the enrichment) left the outbox, `rules.len()` came in.
        self.depth
            .fetch_add(rules.len(), std::sync::atomic::Ordering::Relaxed);
        self.depth
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        Ok(ids)
    }

    /// Fills the in-memory [`DedupeIndex`] from the `dedupe` tree (at open).
    pub(super) fn load_dedupe_index(&self) -> Result<(), Error> {
        let mut index = DedupeIndex::default();
        for item in self.dedupe.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            // An unreadable entry counts as open: an ingest of its key reads it and reports it.
            let until = codec::decode(trees::DEDUPE, &k, &v).unwrap_or(u64::MAX);
            index.insert(&String::from_utf8_lossy(&k), until);
        }
        *self.dedupe_index() = index;
        Ok(())
    }

    /// The jobs of `tree` (live or dead) whose event moved, pointed at their new place, encoded:
    /// for [`Store::migrate_v1_inbox`].
    fn repointed<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        name: &'static str,
        moved: &std::collections::HashMap<String, EventRef>,
        job_of: impl Fn(&mut T) -> &mut Job,
    ) -> Result<Vec<(sled::IVec, Vec<u8>)>, Error> {
        let mut out = Vec::new();
        for item in tree.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let mut value: T = codec::decode(name, &k, &v)?;
            let job = job_of(&mut value);
            if let Some(at) = moved.get(&job.event_key) {
                job.event_ref = *at;
                let id = job.id.to_string();
                out.push((k, codec::encode(name, &id, &value)?));
            }
        }
        Ok(out)
    }

    /// Schema 1 → 2: moves every delivery from `events` (keyed by event key) into `inbox`
    /// under a new [`EventRef`] (its dedupe entry's expiry, or 0 when that entry is gone),
    /// moves its reference count, and points the jobs (live and dead) at it, in one
    /// transaction that also writes the new schema version; then drops the old trees.
    pub(super) fn migrate_v1_inbox(&self) -> Result<(), Error> {
        let storage = |e| self.storage(e);
        let events = self.db.open_tree(trees::V1_EVENTS).map_err(storage)?;
        let refs = self.db.open_tree(trees::V1_EVENT_REFS).map_err(storage)?;
        let mut moved = std::collections::HashMap::new();
        for item in events.iter().keys() {
            let k = item.map_err(storage)?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let until_ms = self.dedupe_until(&key)?.unwrap_or(0);
            let seq = self.next_id()?;
            moved.insert(key, EventRef { until_ms, seq });
        }
        // Jobs pointed at their delivery (a job whose delivery is gone keeps the default
        // reference, which finds nothing, as its event key found nothing before).
        let live = self.repointed(&self.outbox, trees::OUTBOX, &moved, |job: &mut Job| job)?;
        let dead = self.repointed(&self.dead, trees::DEAD, &moved, |d: &mut DeadJob| {
            &mut d.job
        })?;
        let version = codec::encode(trees::META, super::meta_keys::SCHEMA_VERSION, &2u32)?;
        let result = (
            &events,
            &refs,
            &self.inbox,
            &self.inbox_refs,
            &self.outbox,
            &self.dead,
            &self.meta,
        )
            .transaction(
                |(events, refs, inbox, inbox_refs, outbox, dead_tree, meta)| {
                    for (key, at) in &moved {
                        if let Some(event) = events.remove(key.as_bytes())? {
                            inbox.insert(&at.key(), event)?;
                        }
                        if let Some(n) = refs.remove(key.as_bytes())? {
                            inbox_refs.insert(&at.key(), n)?;
                        }
                    }
                    for (k, v) in &live {
                        outbox.insert(k, v.as_slice())?;
                    }
                    for (k, v) in &dead {
                        dead_tree.insert(k, v.as_slice())?;
                    }
                    meta.insert(super::meta_keys::SCHEMA_VERSION, version.as_slice())?;
                    Ok(())
                },
            );
        self.tx_result(result)?;
        drop((events, refs));
        for name in [trees::V1_EVENTS, trees::V1_EVENT_REFS] {
            self.db.drop_tree(name).map_err(storage)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::state::AuditKind;
    use crate::state::tests_queue::{check_consistency, event, rules};

    fn record(id: &str, rule_names: &[&str], now_ms: u64, until_ms: u64) -> IngestRecord {
        IngestRecord {
            event: event("fd", id),
            rules: rules(rule_names),
            now_ms,
            dedupe_until_ms: until_ms,
            audit: vec![AuditRecord {
                at_ms: now_ms,
                kind: AuditKind::EventAccepted,
                resource_type: "event".into(),
                resource_id: format!("fd/{id}"),
                detail: json!({}),
            }],
        }
    }

    fn jobs_of(outcome: &IngestOutcome) -> Option<usize> {
        match outcome {
            IngestOutcome::Stored { jobs } => Some(jobs.len()),
            IngestOutcome::Duplicate => None,
        }
    }

    fn audit_count(store: &Store) -> usize {
        store.audit.len()
    }

    /// An ingest decided new is a duplicate for later ingests before it is written, and after;
    /// writing it writes everything `ingest_batch` would, and the depth counts its jobs.
    #[test]
    fn a_decided_ingest_dedupes_before_and_after_it_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = store
            .prepare_ingest(&record("a", &["r"], 100, 10_000))
            .unwrap();
        let outcomes = store.decide_ingests(&[&first]).unwrap();
        assert_eq!(outcomes.iter().map(jobs_of).collect::<Vec<_>>(), [Some(1)]);
        assert_eq!(audit_count(&store), 0, "deciding writes nothing");
        assert_eq!(store.queue_depth(), 0);

        let again = store
            .prepare_ingest(&record("a", &["r"], 200, 10_200))
            .unwrap();
        let other = store
            .prepare_ingest(&record("b", &["r"], 200, 10_200))
            .unwrap();
        let outcomes = store.decide_ingests(&[&again, &other]).unwrap();
        assert_eq!(
            outcomes.iter().map(jobs_of).collect::<Vec<_>>(),
            [None, Some(1)]
        );

        store.apply_ingests(&[&first, &other]).unwrap();
        assert_eq!(store.queue_depth(), 2);
        assert_eq!(audit_count(&store), 2);
        assert_eq!(store.dedupe_until("fd/a").unwrap(), Some(10_000));
        assert!(store.event(first.at).unwrap().is_some());
        check_consistency(&store);

        // Written: the tree answers now, exactly as before.
        let later = store
            .prepare_ingest(&record("a", &["r"], 300, 10_300))
            .unwrap();
        let outcomes = store.decide_ingests(&[&later]).unwrap();
        assert_eq!(outcomes, [IngestOutcome::Duplicate]);
        // After the window, the same key is new again.
        let after = store
            .prepare_ingest(&record("a", &["r"], 10_001, 20_000))
            .unwrap();
        assert_eq!(
            store
                .decide_ingests(&[&after])
                .unwrap()
                .iter()
                .map(jobs_of)
                .collect::<Vec<_>>(),
            [Some(1)]
        );
    }

    #[test]
    fn a_second_delivery_in_the_same_batch_is_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let records = [
            record("a", &["r1"], 100, 1_000),
            record("b", &["r1", "r2"], 100, 1_000),
            record("a", &["r1", "r2", "r3"], 101, 1_000),
            record("c", &[], 102, 1_000),
            record("b", &["r1"], 103, 1_000),
        ];
        let refs: Vec<&IngestRecord> = records.iter().collect();
        let outcomes: Vec<Option<usize>> = store
            .ingest_batch(&refs)
            .unwrap()
            .into_iter()
            .map(|o| jobs_of(&o.unwrap()))
            .collect();
        assert_eq!(outcomes, [Some(1), Some(2), None, Some(0), None]);
        assert_eq!(store.queue_depth(), 3);
        // Nothing of a duplicate is written, not even its audit record.
        assert_eq!(audit_count(&store), 3);
        assert_eq!(store.dedupe_until("fd/a").unwrap(), Some(1_000));
        check_consistency(&store);
        // And across batches: all three are duplicates now.
        let again = [
            record("a", &["r1"], 200, 2_000),
            record("b", &["r1"], 200, 2_000),
            record("c", &["r1"], 200, 2_000),
        ];
        let refs: Vec<&IngestRecord> = again.iter().collect();
        let outcomes = store.ingest_batch(&refs).unwrap();
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Ok(IngestOutcome::Duplicate)))
        );
        assert_eq!(store.queue_depth(), 3);
        assert_eq!(audit_count(&store), 3);
    }

    #[test]
    fn a_redelivery_after_the_window_in_the_same_batch_is_stored_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let records = [
            record("a", &["r1"], 100, 200),
            record("a", &["r2"], 150, 300),
            record("a", &["r3", "r4"], 200, 400),
        ];
        let refs: Vec<&IngestRecord> = records.iter().collect();
        let outcomes: Vec<Option<usize>> = store
            .ingest_batch(&refs)
            .unwrap()
            .into_iter()
            .map(|o| jobs_of(&o.unwrap()))
            .collect();
        assert_eq!(outcomes, [Some(1), None, Some(2)]);
        assert_eq!(store.dedupe_until("fd/a").unwrap(), Some(400));
        assert_eq!(store.queue_depth(), 3);
        // The event's reference count covers the jobs of both stored deliveries.
        check_consistency(&store);
    }

    /// A batch gives exactly what ingesting its records one by one gives, on random sequences
    /// with repeated keys and windows that open and close inside a batch.
    #[test]
    fn a_batch_is_equivalent_to_ingesting_one_by_one() {
        for seed in 1..=20u64 {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut next = |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            let mut now = 0;
            let records: Vec<IngestRecord> = (0..60)
                .map(|_| {
                    now += next(30);
                    let id = next(8).to_string();
                    let names: Vec<String> = (0..next(3)).map(|r| format!("r{r}")).collect();
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    record(&id, &names, now, now + 1 + next(100))
                })
                .collect();
            let one = tempfile::tempdir().unwrap();
            let one = Store::open(one.path()).unwrap();
            let sequential: Vec<Option<usize>> = records
                .iter()
                .map(|r| {
                    jobs_of(
                        &one.ingest_audited(
                            &r.event,
                            &r.rules,
                            r.now_ms,
                            r.dedupe_until_ms,
                            &r.audit,
                        )
                        .unwrap(),
                    )
                })
                .collect();
            let many = tempfile::tempdir().unwrap();
            let many = Store::open(many.path()).unwrap();
            let mut batched = Vec::new();
            for chunk in records.chunks(1 + usize::try_from(next(25)).unwrap()) {
                let refs: Vec<&IngestRecord> = chunk.iter().collect();
                for o in many.ingest_batch(&refs).unwrap() {
                    batched.push(jobs_of(&o.unwrap()));
                }
            }
            assert_eq!(sequential, batched, "seed {seed}");
            assert!(batched.iter().any(Option::is_none), "seed {seed}");
            assert_eq!(one.queue_depth(), many.queue_depth(), "seed {seed}");
            assert_eq!(audit_count(&one), audit_count(&many), "seed {seed}");
            for id in 0..8 {
                let key = format!("fd/{id}");
                assert_eq!(
                    one.dedupe_until(&key).unwrap(),
                    many.dedupe_until(&key).unwrap()
                );
            }
            check_consistency(&many);
        }
    }

    /// A delivery stored with an enrichment job: completing it replaces the stored event,
    /// swaps the enrichment job for one job per matched rule (the references follow), and
    /// happens once; a dead-lettered enrichment is replayed like any job.
    #[test]
    fn completing_an_enrichment_stores_the_enriched_event_and_the_rules_jobs() {
        use crate::state::ENRICHMENT;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let plain = event("zd", "e1");
        let IngestOutcome::Stored { jobs } = store
            .ingest(&plain, &rules(&[ENRICHMENT]), 100, 10_000)
            .unwrap()
        else {
            panic!("stored");
        };
        let enrich = jobs[0];
        let job = store.job(enrich).unwrap().unwrap();
        assert_eq!(job.rule, ENRICHMENT);
        assert_eq!(store.queue_depth(), 1);

        // The platform was down: retried, then dead-lettered, then replayed.
        store.retry(enrich, "zendesk is down", 200).unwrap();
        store.dead_letter(enrich, "gave up", 300).unwrap();
        assert_eq!(store.queue_depth(), 0);
        check_consistency(&store);
        store.replay(enrich, 400).unwrap();
        assert_eq!(store.queue_depth(), 1);

        let mut enriched = plain.clone();
        enriched
            .objects
            .insert("comment".into(), json!({"body": "say \"hi\"\nbye"}));
        let audit = [AuditRecord {
            at_ms: 500,
            kind: AuditKind::RuleMatched { rule: "r1".into() },
            resource_type: "rule".into(),
            resource_id: "r1".into(),
            detail: json!({}),
        }];
        let new = store
            .complete_enrichment(enrich, &enriched, &rules(&["r1", "r2"]), 500, &audit)
            .unwrap();
        assert_eq!(new.len(), 2);
        assert!(store.job(enrich).unwrap().is_none());
        assert_eq!(store.queue_depth(), 2);
        let first = store.job(new[0]).unwrap().unwrap();
        assert_eq!((first.rule.as_str(), first.due_ms), ("r1", 500));
        assert_eq!(first.event_ref, job.event_ref);
        assert_eq!(store.event(job.event_ref).unwrap(), Some(enriched.clone()));
        assert_eq!(audit_count(&store), 1);
        check_consistency(&store);

        // Twice: nothing more is written.
        assert!(matches!(
            store.complete_enrichment(enrich, &enriched, &rules(&["r3"]), 600, &[]),
            Err(Error::NoSuchJob { .. })
        ));
        assert_eq!(store.queue_depth(), 2);
        // No rule matched the enriched event: the delivery is kept, no job references it.
        let IngestOutcome::Stored { jobs } = store
            .ingest(&event("zd", "e2"), &rules(&[ENRICHMENT]), 100, 10_000)
            .unwrap()
        else {
            panic!("stored");
        };
        assert!(
            store
                .complete_enrichment(jobs[0], &event("zd", "e2"), &[], 700, &[])
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.queue_depth(), 2);
        check_consistency(&store);
    }

    #[test]
    fn an_empty_batch_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.ingest_batch(&[]).unwrap().is_empty());
        assert_eq!(store.queue_depth(), 0);
    }
}
