//! The inbox: stored deliveries by arrival, their dedupe keys, and [`Store::ingest`], which
//! turns a verified event into stored jobs ([`Store::ingest_batch`]: many of them in one
//! transaction).
//!
//! Layout (schema 5):
//!
//! - `event_index`: [`EventId`] big-endian → [`EventMeta`], one small record per stored
//!   delivery (when it arrived, integration, platform, event name, the platform's event id and
//!   dedupe key, the revision in use, the rules matched, and where its payload is). Ids are
//!   allocated in arrival order, so the tree is in arrival order: new deliveries land at its
//!   end, retention reads its head, history pages read it backwards.
//! - the payload (the encoded [`Event`]) is stored ONCE, in the payload segment files
//!   (`segments.rs`, under `<state dir>/events/`), never in sled (sled does not give space back:
//!   docs/state-retention.md). Which deliveries a segment holds, so that retention knows when
//!   its file holds nothing live, costs nothing per delivery: `segment_ranges` (segment →
//!   first and last id appended by ingest, merged once per transaction) and `segment_moved`
//!   (segment ‖ id → empty) for the rare payloads written there later, out of id order (an
//!   enrichment completing, retention's copy-forward). See `payloads.rs`.
//! - `dedupe`: the first 16 bytes of the SHA-256 of the dedupe key ([`Event::key`]) → the end
//!   of its window and the id of the delivery that opened it; kept for the dedupe window only
//!   ([`Store::purge_expired`]), apart from the deliveries, so its size follows
//!   `--dedupe-ttl`, not history.
//! - `inbox_refs`: [`EventId`] → how many jobs (live or dead) reference the delivery.
//!
//! Guarantees: [`Store::ingest`] writes the delivery's record, its dedupe entry, one job per
//! matching rule (with its `due` index entry) and any audit records in ONE transaction, or
//! nothing when the event is a duplicate; its payload is appended to the open segment just
//! before that transaction (a failed transaction leaves bytes nobody references, reclaimed
//! with their segment). It does not flush: the caller batches flushes ([`Store::flush_async`]),
//! which sync the segments first, and answers the webhook only once the flush that follows the
//! ingest has completed. Retention (`payloads.rs`) never removes a delivery that a job in the
//! outbox or the dead-letter tree still references.
//!
//! Deduplication reads no tree for a new event once the store's in-memory [`DedupeIndex`] is
//! loaded (in the background after open, so that opening does not wait for it): the index is a
//! superset of the open windows of the `dedupe` tree, and only a hash that matches an open
//! window is confirmed in the tree. Until it is loaded, every decision reads the tree.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sled::Transactional;

use super::audit::EncodedRecord;
use super::history::{self, JobTrees, NewJobs, tx_add_jobs};
use super::journal::IngestRecord;
use super::keys::{EventId, due_key, job_key, read_u64, segment_key, write_u64};
use super::{AuditRecord, Error, Store, codec, trees};
use crate::event::Event;
use crate::manifest::IntegrationId;
use crate::platforms::PlatformKind;

/// Where a delivery's payload is in the segment files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadAt {
    /// The segment.
    pub segment: u64,
    /// The record's offset in the segment file.
    pub offset: u64,
    /// The payload's length.
    pub len: u32,
}

/// A stored delivery's record in the `event_index` tree: everything but its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMeta {
    /// Its id (arrival order).
    pub id: EventId,
    /// When it was received (stored), milliseconds since the Unix epoch.
    pub received_ms: u64,
    /// The integration it arrived on.
    pub integration: IntegrationId,
    /// The platform.
    pub platform: PlatformKind,
    /// The event name, as the catalogue names it.
    pub name: String,
    /// The platform's own event id ([`Event::id`]).
    pub event_id: String,
    /// The dedupe key ([`Event::key`]).
    pub key: String,
    /// The revision in use when it was stored (`None`: unknown, e.g. stored before schema 4).
    pub revision: Option<String>,
    /// The rules it matched (the enrichment job's marker until enrichment completes).
    pub rules: Vec<String>,
    /// When its dedupe window ends.
    pub dedupe_until_ms: u64,
    /// The audit records written with it (the ingest's: accepted, rules matched), as their
    /// keys (time, sequence), so that its trace finds them without an index entry each.
    /// (Before `payload`: the payload location is the encoding's last field, which the writer
    /// fills in without encoding the record again, `meta_with_payload`.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<(u64, u64)>,
    /// Where its payload is.
    pub payload: PayloadAt,
}

/// What an ingest needs of its event besides the event's encoding: the fields its record in
/// `event_index` copies ([`Store::prepare_encoded`]). Decodes from an encoded [`Event`]'s
/// first fields alone (the journal's replay reads them so, without the payload).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(super) struct EventHead {
    /// [`Event::platform`].
    pub platform: PlatformKind,
    /// [`Event::integration`].
    pub integration: IntegrationId,
    /// [`Event::name`].
    pub name: String,
    /// [`Event::id`].
    pub id: String,
}

/// The rest of what [`Store::prepare_encoded`] needs of an ingest (an [`IngestRecord`]'s
/// fields besides its event and audit records).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Encoded {
    /// The rules it triggered.
    pub rules: Vec<String>,
    /// When it was received.
    pub now_ms: u64,
    /// Until when it deduplicates.
    pub dedupe_until_ms: u64,
    /// The revision in use when it was received.
    pub revision: Option<String>,
    /// Rules whose job is held by their action budget, with when it is due.
    pub held: std::collections::BTreeMap<String, u64>,
}

/// The dedupe key's digest: the `dedupe` tree's key.
pub(super) type KeyDigest = [u8; 16];

/// The first 16 bytes of the SHA-256 of a dedupe key.
pub(super) fn key_digest(key: &str) -> KeyDigest {
    let full = Sha256::digest(key.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// How an [`EventMeta`] encoded with the default [`PayloadAt`] ends: its last field.
const META_TAIL: &[u8] = br#""payload":{"segment":0,"offset":0,"len":0}}"#;

/// An encoded [`EventMeta`] (default payload location) without its last field, for
/// [`meta_with_payload`]; empty if it does not end as expected (then the writer encodes the
/// whole record).
fn meta_head(encoded: &[u8]) -> Vec<u8> {
    encoded
        .strip_suffix(META_TAIL)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

/// The encoded [`EventMeta`] with its payload at `at`, from its [`meta_head`]; `None` when there
/// is no head. Gives the bytes `codec::encode` gives for the record (test
/// `meta_head_and_payload_encode_like_the_record`).
fn meta_with_payload(head: &[u8], at: PayloadAt) -> Option<Vec<u8>> {
    if head.is_empty() {
        return None;
    }
    let tail = format!(
        r#""payload":{{"segment":{},"offset":{},"len":{}}}}}"#,
        at.segment, at.offset, at.len
    );
    let mut out = Vec::with_capacity(head.len() + tail.len());
    out.extend_from_slice(head);
    out.extend_from_slice(tail.as_bytes());
    Some(out)
}

/// The in-memory hash of a digest.
fn digest_hash(d: &KeyDigest) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_le_bytes(first)
}

/// One ingest, encoded and with its ids, ready for the transaction ([`Store::prepare_ingest`],
/// then [`Store::decide_ingests`] and [`Store::apply_ingests`]). Preparing reads nothing from
/// the state, so it can run on any thread, in parallel, before the single writer commits.
pub struct Prepared {
    key: String,
    digest: KeyDigest,
    meta: EventMeta,
    /// `meta` encoded up to its payload location, which the writer appends
    /// ([`meta_with_payload`]): the encoding stays off the single writer thread.
    meta_head: Vec<u8>,
    now_ms: u64,
    event_bytes: Vec<u8>,
    dedupe_bytes: Vec<u8>,
    jobs: NewJobs,
    audit: Vec<EncodedRecord>,
    /// Its history index keys (integration, event name, rules, audit records), empty values.
    indexed: Vec<Vec<u8>>,
}

impl Prepared {
    /// Whether the ingest creates jobs (a rule matched).
    pub fn has_jobs(&self) -> bool {
        !self.jobs.jobs.is_empty()
    }

    /// The id the delivery gets if it is stored.
    pub fn event_id(&self) -> EventId {
        self.meta.id
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
            .field("id", &self.meta.id)
            .field("jobs", &self.jobs.jobs.len())
            .finish_non_exhaustive()
    }
}

/// The dedupe windows in memory: key hash → the latest window end of any key with that hash.
/// Once `loaded`, every open window of the `dedupe` tree is here (entries are added when an
/// ingest commits and dropped only once expired), so a key whose hash has no open window here
/// is new; a hash with an open window is confirmed in the tree (another key may share the
/// hash). Before it is loaded every key may be open.
///
/// Ingests decided new but not yet written ([`Store::decide_ingests`]) are held by exact key in
/// `unapplied` until [`Store::apply_ingests`] writes them.
#[derive(Debug, Default)]
pub(super) struct DedupeIndex {
    windows: std::collections::HashMap<u64, u64>,
    unapplied: std::collections::HashMap<String, u64>,
    loaded: bool,
}

impl DedupeIndex {
    /// Whether `digest` may have a window open after `now_ms` (`false`: certainly not).
    fn maybe_open(&self, digest: &KeyDigest, now_ms: u64) -> bool {
        !self.loaded
            || self
                .windows
                .get(&digest_hash(digest))
                .is_some_and(|until| *until > now_ms)
    }

    fn insert(&mut self, digest: &KeyDigest, until_ms: u64) {
        let until = self.windows.entry(digest_hash(digest)).or_insert(until_ms);
        *until = (*until).max(until_ms);
    }

    /// Drops the windows closed at `now_ms`.
    pub(super) fn expire(&mut self, now_ms: u64) {
        self.windows.retain(|_, until| *until > now_ms);
    }
}

/// Loads the `dedupe` tree into `index` (on a thread of its own after open); gives up when
/// `stop` is set (the store was dropped).
pub(super) fn load_dedupe_index(
    dedupe: &sled::Tree,
    index: &std::sync::Mutex<DedupeIndex>,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut windows: Vec<(KeyDigest, u64)> = Vec::new();
    for (n, item) in dedupe.iter().enumerate() {
        if n % 1024 == 0 && stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok((k, v)) = item else {
            // A storage error: stay unloaded (every decision reads the tree).
            return;
        };
        let Ok(digest) = KeyDigest::try_from(&k[..]) else {
            continue;
        };
        // An unreadable entry counts as open: an ingest of its key reads it and reports it.
        let until = codec::decode::<(u64, u64)>(trees::DEDUPE, &k, &v).map_or(u64::MAX, |v| v.0);
        windows.push((digest, until));
    }
    let mut index = index
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (digest, until) in windows {
        index.insert(&digest, until);
    }
    index.loaded = true;
}

/// `records` with `"event": "<id>"` in each object detail (an audit record of a delivery
/// names it, so that its trace finds it).
pub(super) fn stamped(records: &[AuditRecord], id: EventId) -> Vec<AuditRecord> {
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            match &mut r.detail {
                serde_json::Value::Object(m) => {
                    m.insert("event".into(), serde_json::Value::String(id.to_string()));
                }
                serde_json::Value::Null => {
                    r.detail = serde_json::json!({ "event": id.to_string() });
                }
                _ => {}
            }
            r
        })
        .collect()
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

impl Store {
    /// Stores a verified event and one job per rule in `rules` (step 0, due at `now_ms`), in one
    /// transaction, unless the event is a duplicate. Does not flush.
    ///
    /// The event is a duplicate if its dedupe key ([`Event::key`]) has a dedupe entry expiring
    /// after `now_ms`; then nothing is written. Otherwise the dedupe entry is (re)set to expire
    /// at `dedupe_until_ms` (which should be later than `now_ms`), and the event is stored under
    /// a new [`EventId`] even if no rule matched. A redelivery after the dedupe window is a new
    /// delivery (a new id, its own payload and jobs).
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
        let prepared = self.prepare(
            event,
            audit,
            Encoded {
                rules: rules.to_vec(),
                now_ms,
                dedupe_until_ms,
                revision: None,
                held: Default::default(),
            },
        )?;
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
            match self.prepare_ingest(r) {
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
        self.prepare(
            &r.event,
            &r.audit,
            Encoded {
                rules: r.rules.clone(),
                now_ms: r.now_ms,
                dedupe_until_ms: r.dedupe_until_ms,
                revision: r.revision.clone(),
                held: r.held.clone(),
            },
        )
    }

    /// The first half of an ingest's commit: decides which prepared ingests are new
    /// (exactly as committing them one by one would) and reserves their dedupe windows in
    /// memory, writing nothing. Every ingest decided [`IngestOutcome::Stored`] must then be
    /// written with [`Store::apply_ingests`] (retried until it succeeds, or replayed from the
    /// journal by the next run): until then its key counts as a duplicate for later ingests.
    pub fn decide_ingests(&self, prepared: &[&Prepared]) -> Result<Vec<IngestOutcome>, Error> {
        let mut index = self.dedupe_index();
        // This batch's own windows first: a later ingest of a key sees the earlier one's.
        let mut opened: std::collections::HashMap<&str, (u64, KeyDigest)> =
            std::collections::HashMap::new();
        let mut outcomes = Vec::with_capacity(prepared.len());
        for p in prepared {
            let open = |until: u64| until > p.now_ms;
            let key = p.key.as_str();
            let duplicate = match opened
                .get(key)
                .map(|(until, _)| until)
                .or_else(|| index.unapplied.get(key))
            {
                Some(until) => open(*until),
                // Only a hash with an open window is looked up in the tree (rare: redeliveries).
                None => {
                    index.maybe_open(&p.digest, p.now_ms)
                        && self
                            .dedupe_entry(&p.digest)?
                            .is_some_and(|(until, _)| open(until))
                }
            };
            outcomes.push(if duplicate {
                IngestOutcome::Duplicate
            } else {
                opened.insert(key, (p.meta.dedupe_until_ms, p.digest));
                IngestOutcome::Stored { jobs: p.jobs.ids() }
            });
        }
        // Reserved only once the whole batch is decided: an error above reserves nothing.
        for (key, (until, digest)) in opened {
            index.insert(&digest, until);
            index.unapplied.insert(key.to_owned(), until);
        }
        Ok(outcomes)
    }

    /// The second half of an ingest's commit: writes ingests that
    /// [`Store::decide_ingests`] found new: their payloads to the open segment, then everything
    /// else in ONE transaction. On an error nothing was written to sled (payloads appended are
    /// unreferenced) and the ingests stay reserved: apply them again.
    pub fn apply_ingests(&self, new: &[&Prepared]) -> Result<(), Error> {
        let t = self.t()?;
        let _writing = self.writing();
        if new.is_empty() {
            return Ok(());
        }
        // Held from the appends to the commit: retention deletes no segment meanwhile.
        let _payloads = self.payload_appending();
        // One write to the open segment for the whole transaction, not one per delivery.
        let payloads: Vec<(EventId, &[u8], u64)> = new
            .iter()
            .map(|p| (p.meta.id, p.event_bytes.as_slice(), p.now_ms))
            .collect();
        let locations = self.append_payloads(&payloads)?;
        if locations.len() != new.len() {
            return Err(super::storage_error(
                self.dir(),
                sled::Error::ReportableBug(format!(
                    "{} payloads appended, {} locations returned",
                    new.len(),
                    locations.len()
                )),
            ));
        }
        let mut records = Vec::with_capacity(new.len());
        for (p, at) in new.iter().zip(locations) {
            let record = match meta_with_payload(&p.meta_head, at) {
                Some(bytes) => bytes,
                None => {
                    let mut meta = p.meta.clone();
                    meta.payload = at;
                    codec::encode(trees::EVENTS, &meta.id.to_string(), &meta)?
                }
            };
            records.push((p.meta.id, at.segment, record));
        }
        // The ids appended to each segment (one, or two across a seal): one range entry each,
        // not one entry per delivery.
        let mut appended: Vec<(u64, u64, u64)> = Vec::new();
        for (id, segment, _) in &records {
            match appended.iter_mut().find(|(s, _, _)| s == segment) {
                Some((_, first, last)) => {
                    *first = (*first).min(id.0);
                    *last = (*last).max(id.0);
                }
                None => appended.push((*segment, id.0, id.0)),
            }
        }
        let result = (
            &t.events,
            &t.segment_ranges,
            &t.dedupe,
            &t.inbox_refs,
            &t.outbox,
            &t.due,
            &t.audit,
            &t.history,
        )
            .transaction(
                |(events, ranges, dedupe, refs, outbox, due, audit_tree, history)| {
                    for (segment, first, last) in &appended {
                        super::payloads::tx_extend_range(ranges, *segment, *first, *last)?;
                    }
                    let t = JobTrees {
                        outbox,
                        due,
                        refs,
                        history,
                    };
                    for (p, (id, _, record)) in new.iter().zip(&records) {
                        // A new delivery: its entries are new keys.
                        events.insert(&id.key(), record.as_slice())?;
                        dedupe.insert(&p.digest, p.dedupe_bytes.as_slice())?;
                        tx_add_jobs(&t, *id, &p.jobs, true, !p.meta.rules.is_empty())?;
                        for (k, v) in &p.audit {
                            audit_tree.insert(k, v.as_slice())?;
                        }
                        for k in &p.indexed {
                            history.insert(k.as_slice(), &[][..])?;
                        }
                    }
                    Ok(())
                },
            );
        self.tx_result(result)?;
        self.settle_unapplied(new);
        self.count_stored(new.len());
        let added: usize = new.iter().map(|p| p.jobs.jobs.len()).sum();
        self.depth.fetch_add(added, Ordering::Relaxed);
        Ok(())
    }

    /// Drops the in-memory reservations of `new` (written, or given up).
    fn settle_unapplied(&self, new: &[&Prepared]) {
        let mut index = self.dedupe_index();
        for p in new {
            if index.unapplied.get(p.key.as_str()) == Some(&p.meta.dedupe_until_ms) {
                index.unapplied.remove(p.key.as_str());
            }
        }
    }

    pub(super) fn dedupe_index(&self) -> std::sync::MutexGuard<'_, DedupeIndex> {
        self.dedupe_index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Encodes one ingest (outside any transaction) and allocates its ids: the delivery's
    /// first, then its jobs'.
    fn prepare(
        &self,
        event: &Event,
        audit: &[AuditRecord],
        ingest: Encoded,
    ) -> Result<Prepared, Error> {
        let key = event.key();
        let event_bytes = codec::encode(trees::EVENTS, &key, event)?;
        let head = EventHead {
            platform: event.platform,
            integration: event.integration.clone(),
            name: event.name.clone(),
            id: event.id.clone(),
        };
        self.prepare_encoded(head, key, event_bytes, ingest, audit)
    }

    /// [`Store::prepare`] of an event already encoded (`event_bytes`, what [`codec::encode`]
    /// gives for it, e.g. taken from a journal record without decoding the event), given the
    /// fields of it that the ingest needs (`head`) and its dedupe key. Allocates the ids: the
    /// delivery's first, then its jobs', then its audit records'.
    pub(super) fn prepare_encoded(
        &self,
        head: EventHead,
        key: String,
        event_bytes: Vec<u8>,
        ingest: Encoded,
        audit: &[AuditRecord],
    ) -> Result<Prepared, Error> {
        let Encoded {
            rules,
            now_ms,
            dedupe_until_ms,
            revision,
            held,
        } = ingest;
        let digest = key_digest(&key);
        let id = EventId(self.next_id()?);
        let dedupe_bytes = codec::encode(trees::DEDUPE, &key, &(dedupe_until_ms, id.0))?;
        let jobs = self.new_jobs(id, &key, &rules, now_ms, &held)?;
        let audit_records = stamped(audit, id);
        let audit = self.encode_audit(&audit_records)?;
        let (own_audit, mut indexed) = history::ingest_audit_keys(&audit_records, &audit);
        let meta = EventMeta {
            id,
            received_ms: now_ms,
            integration: head.integration,
            platform: head.platform,
            name: head.name,
            event_id: head.id,
            key: key.clone(),
            revision,
            rules,
            dedupe_until_ms,
            payload: PayloadAt::default(),
            audit: own_audit,
        };
        indexed.extend(history::meta_keys_of(&meta));
        let meta_head = meta_head(&codec::encode(trees::EVENTS, &id.to_string(), &meta)?);
        Ok(Prepared {
            key,
            digest,
            meta,
            meta_head,
            now_ms,
            event_bytes,
            dedupe_bytes,
            jobs,
            audit,
            indexed,
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

    /// The record of stored delivery `id` (everything but its payload), if it is still stored.
    pub fn event_meta(&self, id: EventId) -> Result<Option<EventMeta>, Error> {
        let t = self.t()?;
        match t.events.get(id.key()).map_err(|e| self.storage(e))? {
            Some(bytes) => {
                codec::decode(trees::EVENTS, id.to_string().as_bytes(), &bytes).map(Some)
            }
            None => Ok(None),
        }
    }

    /// The stored delivery `id` (a job's [`Job::event_id`]), if it is still stored.
    pub fn event(&self, id: EventId) -> Result<Option<Event>, Error> {
        let Some(meta) = self.event_meta(id)? else {
            return Ok(None);
        };
        match self.read_payload(&meta) {
            Ok(event) => Ok(Some(event)),
            // Retention may have moved it (copied forward, old segment deleted) or removed it
            // between the two reads: read its record again.
            Err(e) => match self.event_meta(id)? {
                None => Ok(None),
                Some(now) if now.payload != meta.payload => self.read_payload(&now).map(Some),
                Some(_) => Err(e),
            },
        }
    }

    /// The payload of a delivery, decoded.
    pub(super) fn read_payload(&self, meta: &EventMeta) -> Result<Event, Error> {
        let bytes = self.load_payload(meta.id, meta.payload)?;
        codec::decode(trees::EVENTS, meta.id.to_string().as_bytes(), &bytes)
    }

    /// Up to `limit` stored deliveries' records, newest first, from just before `before` (from
    /// the newest when `None`): a page of history; the next page starts before the last id of
    /// this one.
    pub fn events_page(
        &self,
        before: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<EventMeta>, Error> {
        let t = self.t()?;
        let range = match before {
            Some(b) => t.events.range(..b.key()),
            None => t.events.iter(),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in range.rev().take(limit) {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            out.push(codec::decode(trees::EVENTS, &k, &v)?);
        }
        Ok(out)
    }

    /// Whether the in-memory dedupe index has finished loading (it loads in the background
    /// after open; until then ingests read the `dedupe` tree).
    pub fn dedupe_index_loaded(&self) -> bool {
        self.dedupe_index().loaded
    }

    /// How many deliveries are stored (a scan: for tests and tools).
    /// 0 when the store is closed ([`Error::Closed`]).
    pub fn events_stored(&self) -> usize {
        self.t().map_or(0, |t| t.events.len())
    }

    /// The latest stored delivery with this event key, if any (a scan: for tests).
    #[cfg(test)]
    pub(crate) fn event_by_key(&self, key: &str) -> Result<Option<Event>, Error> {
        let t = self.t()?;
        for item in t.events.iter().rev() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let meta: EventMeta = codec::decode(trees::EVENTS, &k, &v)?;
            if meta.key == key {
                return self.read_payload(&meta).map(Some);
            }
        }
        Ok(None)
    }

    /// The dedupe entry of a digest: the end of its window and the delivery that opened it.
    pub(super) fn dedupe_entry(&self, digest: &KeyDigest) -> Result<Option<(u64, u64)>, Error> {
        let t = self.t()?;
        match t.dedupe.get(digest).map_err(|e| self.storage(e))? {
            Some(bytes) => codec::decode(trees::DEDUPE, &digest[..], &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The expiry of the dedupe entry for this event key, if any (expired or not).
    pub fn dedupe_until(&self, key: &str) -> Result<Option<u64>, Error> {
        Ok(self.dedupe_entry(&key_digest(key))?.map(|(until, _)| until))
    }

    /// Completes the enrichment job `id` ([`super::outbox::ENRICHMENT`]) in ONE transaction:
    /// the stored delivery's payload is replaced by `event` (the enriched one, appended to the
    /// open segment) and its record lists `rules`, the enrichment job is removed, one job per
    /// rule in `rules` is created due at `now_ms` (the rules matched on the enriched event; a
    /// rule in `held` at the later time it gives), and `audit` is appended. Returns the new jobs' ids. [`Error::NoSuchJob`] if job `id` is
    /// not in the outbox (completed before, or dead-lettered meanwhile): nothing is written to
    /// sled then. Does not flush.
    pub fn complete_enrichment(
        &self,
        id: u64,
        event: &Event,
        rules: &[String],
        now_ms: u64,
        audit: &[AuditRecord],
        held: &std::collections::BTreeMap<String, u64>,
    ) -> Result<Vec<u64>, Error> {
        let t = self.t()?;
        let _writing = self.writing();
        let key = event.key();
        let event_bytes = codec::encode(trees::EVENTS, &key, event)?;
        let Some(job) = self.job(id)? else {
            return Err(Error::NoSuchJob { id });
        };
        let ev = job.event_id;
        let new = self.new_jobs(ev, &job.event_key, rules, now_ms, held)?;
        let audit_records = stamped(audit, ev);
        let audit = self.encode_audit(&audit_records)?;
        let audit_index = history::audit_keys(&audit_records, &audit, Some(ev));
        let _payloads = self.payload_appending();
        let at = self.append_payload(ev, &event_bytes, now_ms)?;
        let result = (
            &t.events,
            &t.segment_moved,
            &t.inbox_refs,
            &t.outbox,
            &t.due,
            &t.audit,
            &t.history,
        )
            .transaction(|(events, moved, refs, outbox, due, audit_tree, history)| {
                let job = super::outbox::tx_get_job(outbox, id)?
                    .ok_or_else(|| super::abort(Error::NoSuchJob { id }))?;
                if job.event_id != ev {
                    return Err(super::abort(Error::NoSuchJob { id }));
                }
                let k = ev.key();
                let mut had_rules = false;
                if let Some(bytes) = events.get(k)? {
                    let mut meta: EventMeta =
                        codec::decode(trees::EVENTS, ev.to_string().as_bytes(), &bytes)
                            .map_err(super::abort)?;
                    // Out of id order in its new segment: an entry of its own there.
                    moved.remove(&segment_key(meta.payload.segment, ev)[..])?;
                    history::tx_reindex_rules(history, ev, &meta.rules, rules)?;
                    meta.payload = at;
                    meta.rules = rules.to_vec();
                    had_rules = !meta.rules.is_empty();
                    let bytes = codec::encode(trees::EVENTS, &ev.to_string(), &meta)
                        .map_err(super::abort)?;
                    events.insert(&k, bytes)?;
                    moved.insert(&segment_key(at.segment, ev), &[][..])?;
                }
                outbox.remove(&job_key(id))?;
                due.remove(&due_key(job.ready_ms(), id))?;
                // The enrichment job is done; its reference becomes the new jobs' references.
                history::tx_update_job(history, ev, history::EventJob::of_done(&job, now_ms))?;
                let held = read_u64(refs, trees::INBOX_REFS, &k)?.unwrap_or(1);
                if held <= 1 {
                    refs.remove(&k)?;
                } else {
                    write_u64(refs, trees::INBOX_REFS, &k, held - 1)?;
                }
                let t = JobTrees {
                    outbox,
                    due,
                    refs,
                    history,
                };
                tx_add_jobs(&t, ev, &new, false, had_rules)?;
                for (k, v) in &audit {
                    audit_tree.insert(k, v.as_slice())?;
                }
                for k in &audit_index {
                    history.insert(k.as_slice(), &[][..])?;
                }
                Ok(())
            });
        self.tx_result(result)?;
        // One job (the enrichment) left the outbox, `rules.len()` came in.
        self.depth.fetch_add(rules.len(), Ordering::Relaxed);
        self.depth.fetch_sub(1, Ordering::Relaxed);
        Ok(new.ids())
    }

    /// Creates one job per rule in `rules` for the already stored delivery `id`, due at
    /// `now_ms`, at step 0, and appends `audit` (stamped with the delivery), in ONE
    /// transaction, through the one job-creation path ingest and enrichment take (so the
    /// history sees them); the delivery's rules list gains the rules it did not list.
    /// [`Error::NoSuchEvent`] (nothing written) when the delivery is not (or no longer)
    /// stored. Returns the jobs created. Does not flush.
    pub fn redeliver_jobs(
        &self,
        id: EventId,
        rules: &[String],
        now_ms: u64,
        audit: &[AuditRecord],
    ) -> Result<Vec<super::Job>, Error> {
        let t = self.t()?;
        let _writing = self.writing();
        let Some(meta) = self.event_meta(id)? else {
            return Err(Error::NoSuchEvent { id });
        };
        let new = self.new_jobs(id, &meta.key, rules, now_ms, &Default::default())?;
        let audit_records = stamped(audit, id);
        let audit = self.encode_audit(&audit_records)?;
        let audit_index = history::audit_keys(&audit_records, &audit, Some(id));
        let result = (
            &t.events,
            &t.inbox_refs,
            &t.outbox,
            &t.due,
            &t.audit,
            &t.history,
        )
            .transaction(|(events, refs, outbox, due, audit_tree, history)| {
                let k = id.key();
                // Read in the transaction: retention removing the delivery meanwhile conflicts.
                let Some(bytes) = events.get(k)? else {
                    return Err(super::abort(Error::NoSuchEvent { id }));
                };
                let mut meta: EventMeta =
                    codec::decode(trees::EVENTS, id.to_string().as_bytes(), &bytes)
                        .map_err(super::abort)?;
                let mut listed = meta.rules.clone();
                for r in rules {
                    if !listed.contains(r) {
                        listed.push(r.clone());
                    }
                }
                if listed != meta.rules {
                    history::tx_reindex_rules(history, id, &meta.rules, &listed)?;
                    meta.rules = listed;
                    let bytes = codec::encode(trees::EVENTS, &id.to_string(), &meta)
                        .map_err(super::abort)?;
                    events.insert(&k, bytes)?;
                }
                let t = JobTrees {
                    outbox,
                    due,
                    refs,
                    history,
                };
                tx_add_jobs(&t, id, &new, false, !meta.rules.is_empty())?;
                for (k, v) in &audit {
                    audit_tree.insert(k, v.as_slice())?;
                }
                for k in &audit_index {
                    history.insert(k.as_slice(), &[][..])?;
                }
                Ok(())
            });
        self.tx_result(result)?;
        self.depth.fetch_add(rules.len(), Ordering::Relaxed);
        let mut jobs = Vec::with_capacity(rules.len());
        for job in new.ids() {
            // Already leased and finished by an executor, in a race: it was created all the same.
            if let Some(j) = self.job(job)? {
                jobs.push(j);
            }
        }
        Ok(jobs)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::state::AuditKind;
    use crate::state::tests_queue::{check_consistency, event, rules};

    /// The writer's record of a delivery (head encoded in prepare, payload location appended)
    /// is byte for byte what encoding the whole record gives, and decodes to it.
    #[test]
    fn meta_head_and_payload_encode_like_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut r = record("m\"1", &["a", "b\\c"], 5, 9);
        r.revision = Some("rev\"x".into());
        let p = store.prepare_ingest(&r).unwrap();
        assert!(!p.meta_head.is_empty(), "the head is found");
        let at = PayloadAt {
            segment: u64::MAX,
            offset: 12_345,
            len: u32::MAX,
        };
        let mut meta = p.meta.clone();
        meta.payload = at;
        let whole = codec::encode(trees::EVENTS, "k", &meta).unwrap();
        assert_eq!(meta_with_payload(&p.meta_head, at).unwrap(), whole);
        let back: EventMeta = codec::decode(trees::EVENTS, b"k", &whole).unwrap();
        assert_eq!(back, meta);
        assert_eq!(meta_with_payload(&[], at), None);
        assert!(meta_head(b"\x01{}").is_empty());
    }

    fn record(id: &str, rule_names: &[&str], now_ms: u64, until_ms: u64) -> IngestRecord {
        IngestRecord {
            event: event("fd", id),
            rules: rules(rule_names),
            now_ms,
            dedupe_until_ms: until_ms,
            revision: None,
            held: Default::default(),
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
        store.t().unwrap().audit.len()
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
        assert!(store.event(first.event_id()).unwrap().is_some());
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
            .complete_enrichment(
                enrich,
                &enriched,
                &rules(&["r1", "r2"]),
                500,
                &audit,
                &[("r2".to_owned(), 60_000)].into(),
            )
            .unwrap();
        assert_eq!(new.len(), 2);
        assert!(store.job(enrich).unwrap().is_none());
        assert_eq!(store.queue_depth(), 2);
        let first = store.job(new[0]).unwrap().unwrap();
        assert_eq!((first.rule.as_str(), first.due_ms), ("r1", 500));
        assert_eq!(first.event_id, job.event_id);
        // r2's job was held by its action budget: due later, and only then leased.
        let second = store.job(new[1]).unwrap().unwrap();
        assert_eq!((second.rule.as_str(), second.due_ms), ("r2", 60_000));
        assert_eq!(store.oldest_due_ms().unwrap(), Some(500));
        assert_eq!(store.event(job.event_id).unwrap(), Some(enriched.clone()));
        assert_eq!(audit_count(&store), 1);
        check_consistency(&store);

        // Twice: nothing more is written.
        assert!(matches!(
            store.complete_enrichment(
                enrich,
                &enriched,
                &rules(&["r3"]),
                600,
                &[],
                &Default::default()
            ),
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
                .complete_enrichment(
                    jobs[0],
                    &event("zd", "e2"),
                    &[],
                    700,
                    &[],
                    &Default::default()
                )
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
