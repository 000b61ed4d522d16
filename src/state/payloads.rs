//! Payload storage and retention: deliveries' payloads in the segment files (`segments.rs`,
//! `<state dir>/events/`), and [`Store::purge_expired`], which removes what `--event-retention`
//! and `--max-state-size` no longer keep and gives the space back to the file system.
//!
//! Why segment files: sled does not give space back. Removing 90 % of sled's data leaves its
//! file at its high-water mark, after a flush and after a reopen (measured:
//! docs/state-retention.md), so payloads in sled would keep the disk at about 1.9 × the
//! largest live data the state ever held. Payloads are therefore appended to time-segmented
//! files and a whole file is deleted once no stored delivery is in it; sled keeps only the small
//! records (index, dedupe digests, jobs, audit).
//!
//! Retention, oldest first (by arrival):
//!
//! - a delivery received more than `--event-retention` ago is removed (its `event_index`
//!   record), unless a job in the outbox or the dead-letter tree references it
//!   (`inbox_refs`, checked in the same transaction as the removal);
//! - a sealed segment whose deliveries are all past retention has those still referenced
//!   copied forward into the open segment (their record repointed), and is then deleted;
//! - a sealed segment with no delivery left is deleted whole;
//! - while the state (payloads + database + journal) is over `--max-state-size`, the oldest
//!   sealed segments are emptied the same way whatever their age (unreferenced deliveries
//!   removed, referenced ones copied forward) and deleted; when the limit still cannot be met
//!   (referenced deliveries, or sled's own files, take the room) [`RetentionTotals::limit_unmet`]
//!   says so;
//! - no segment file is deleted while a [`super::RetentionHold`] lives (a backup copying
//!   files), and sled is flushed (segments synced first) before any file is deleted, so sled
//!   never durably points into a deleted file.
//!
//! Which deliveries a segment holds (schema 5) costs nothing per delivery on the ingest path,
//! where every sled insert is paid by the one applier thread (docs/ingest-performance.md,
//! session 6): ids are allocated in arrival order and ingest appends in that order, so a
//! segment's deliveries are, but for a few, the range of ids appended to it. Ingest merges
//! that range into the segment's `segment_ranges` entry once per transaction; retention scans
//! `event_index` over the range and keeps the records that name the segment (ids are allocated
//! on the request threads, so neighbouring ranges may overlap a little; the check on the record
//! sorts that out). The few payloads written into a segment out of id order — an enrichment
//! completing ([`Store::complete_enrichment`]) and the copy-forward below — get an explicit
//! `segment_moved` entry (segment ‖ id), removed when the delivery is removed or moved again.
//! A segment's range entry and `segment_moved` entries go just before its file. Chosen over
//! reading the segment files' records (which carry their ids) at retention time: the check
//! that keeps a segment whose newest delivery is within retention runs on every segment at
//! every pass, and reading the files for it would read every payload byte each time.
//!
//! What a crash may leave: payload bytes appended but never referenced (an ingest whose
//! transaction did not commit or was not flushed, the old copy of a delivery copied forward or
//! enriched); they are reclaimed when their segment is deleted. The segments are synced before
//! every sled flush ([`Store::flush`], [`Store::flush_async`]), so a flushed record never points
//! at payload bytes that are not on disk.
//!
//! What retention removed is counted in `meta` ([`RetentionTotals`]), so the counts survive a
//! restart.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::inbox::{EventMeta, PayloadAt};
use super::keys::{EventId, read_u64, segment_key};
use super::segments::Location;
use super::{Error, Store, abort, codec, meta_keys, trees};

/// How long deliveries are kept and how big the state may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Deliveries received longer ago than this (milliseconds) are removed, unless a job still
    /// references them (`--event-retention`).
    pub event_retention_ms: u64,
    /// The state's size (payloads, database and journal) retention keeps under, by dropping
    /// the oldest deliveries first (`--max-state-size`).
    pub max_state_bytes: u64,
}

impl Retention {
    /// Keeps everything (no age limit, no size limit).
    pub const KEEP_ALL: Retention = Retention {
        event_retention_ms: u64::MAX,
        max_state_bytes: u64::MAX,
    };
}

/// What one [`Store::purge_expired`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Expired dedupe entries removed.
    pub dedupe: usize,
    /// Deliveries removed.
    pub events: usize,
    /// Segment files deleted.
    pub segments: usize,
    /// Bytes those files held.
    pub payload_bytes: u64,
    /// Deliveries still referenced by a job, copied forward out of a segment being deleted.
    pub copied: usize,
}

/// What retention removed since the state was created, and whether the size limit is met.
/// Kept in `meta`, so it survives restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionTotals {
    /// Deliveries removed.
    pub events: u64,
    /// Payload bytes given back (segment files deleted).
    pub payload_bytes: u64,
    /// Why the last pass could not bring the state under `--max-state-size`, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_unmet: Option<String>,
}

/// The state's size on disk by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StateBytes {
    /// The payload segment files (`events/`).
    pub payloads: u64,
    /// sled's files (`conf`, `db`, `snap.*`, `blobs/`).
    pub database: u64,
    /// The ingest journal files.
    pub journal: u64,
}

impl StateBytes {
    /// Everything.
    pub fn total(&self) -> u64 {
        self.payloads
            .saturating_add(self.database)
            .saturating_add(self.journal)
    }
}

/// Deliveries removed per transaction.
const REMOVE_BATCH: usize = 256;

/// Extends `segment`'s range of ids appended by ingest (`segment_ranges`) to cover
/// `first..=last`, in a transaction: one read and one write, however many deliveries.
pub(super) fn tx_extend_range(
    ranges: &TransactionalTree,
    segment: u64,
    first: u64,
    last: u64,
) -> Result<(), ConflictableTransactionError<Error>> {
    let key = segment.to_be_bytes();
    let (first, last) = match ranges.get(key)? {
        Some(bytes) => {
            let (was_first, was_last) = decode_range(segment, &bytes).map_err(abort)?;
            (was_first.min(first), was_last.max(last))
        }
        None => (first, last),
    };
    ranges.insert(&key, encode_range(segment, first, last).map_err(abort)?)?;
    Ok(())
}

/// A `segment_ranges` value: the first and last id ingest appended to `segment`.
pub(super) fn encode_range(segment: u64, first: u64, last: u64) -> Result<Vec<u8>, Error> {
    codec::encode(trees::SEGMENT_RANGES, &segment.to_string(), &(first, last))
}

/// Reads a `segment_ranges` value ([`encode_range`]).
fn decode_range(segment: u64, bytes: &[u8]) -> Result<(u64, u64), Error> {
    codec::decode(trees::SEGMENT_RANGES, &segment.to_be_bytes(), bytes)
}

/// Sums the sizes of the files under `path` (recursively); 0 for what cannot be read.
fn tree_bytes(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| tree_bytes(&e.path()))
        .fold(0u64, u64::saturating_add)
}

impl Store {
    /// Held while payloads are appended and until the records pointing at them commit:
    /// retention deletes no segment file meanwhile (it takes this exclusively to delete).
    pub(super) fn payload_appending(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.payloads
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends delivery `id`'s payload to the open segment.
    pub(super) fn append_payload(
        &self,
        id: EventId,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<PayloadAt, Error> {
        let at = self.segments.append(id.0, bytes, now_ms)?;
        Ok(PayloadAt {
            segment: at.segment,
            offset: at.offset,
            len: at.len,
        })
    }

    /// Appends deliveries' payloads (id, encoded event, received at) to the open segment, in
    /// order, with one write per segment ([`super::segments::Segments::append_many`]): one
    /// location per payload.
    pub(super) fn append_payloads(
        &self,
        items: &[(EventId, &[u8], u64)],
    ) -> Result<Vec<PayloadAt>, Error> {
        let items: Vec<(u64, &[u8], u64)> = items
            .iter()
            .map(|(id, bytes, now_ms)| (id.0, *bytes, *now_ms))
            .collect();
        Ok(self
            .segments
            .append_many(&items)?
            .into_iter()
            .map(|at| PayloadAt {
                segment: at.segment,
                offset: at.offset,
                len: at.len,
            })
            .collect())
    }

    /// Reads delivery `id`'s payload (checked against its CRC and id).
    pub(super) fn load_payload(&self, id: EventId, at: PayloadAt) -> Result<Vec<u8>, Error> {
        let location = Location {
            segment: at.segment,
            offset: at.offset,
            len: at.len,
        };
        self.segments.read(location, id.0)
    }

    /// Makes every payload appended so far durable (before sled is flushed).
    pub(super) fn sync_payloads(&self) -> Result<(), Error> {
        self.segments.sync()
    }

    /// The state's size on disk by kind (reads the directory: for status and metrics).
    pub fn state_bytes(&self) -> StateBytes {
        let mut out = StateBytes {
            payloads: self.segments.bytes().unwrap_or(0),
            ..StateBytes::default()
        };
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("ingest-")
                && (name.ends_with(".journal") || name.ends_with(".spare"))
            {
                out.journal = out.journal.saturating_add(tree_bytes(&entry.path()));
            } else if name == "conf" || name == "db" || name == "blobs" || name.starts_with("snap.")
            {
                out.database = out.database.saturating_add(tree_bytes(&entry.path()));
            }
        }
        out
    }

    /// What retention removed since the state was created (and whether the size limit is met).
    pub fn retention_totals(&self) -> Result<RetentionTotals, Error> {
        let t = self.t()?;
        Ok(self
            .get(&t.meta, trees::META, meta_keys::RETENTION)?
            .unwrap_or_default())
    }

    /// Removes dedupe entries that expired at or before `now_ms`, then what `retention` no
    /// longer keeps (module doc): deliveries past `event_retention_ms` that no job references,
    /// segment files with nothing live, and while over `max_state_bytes` the oldest segments.
    /// Never a delivery referenced by a job in the outbox or the dead-letter tree. Safe to run
    /// while the daemon ingests and executes: each removal re-checks its conditions atomically.
    /// Flushes before deleting files.
    pub fn purge_expired(&self, now_ms: u64, retention: &Retention) -> Result<Purged, Error> {
        let t = self.t()?;
        let _writing = self.writing();
        let mut purged = Purged::default();
        // Segments a quarter of the retention long at most, so that the last one's whole-file
        // granularity stays a small part of what is kept.
        self.segments
            .set_max_age_ms(retention.event_retention_ms / 4);
        self.purge_dedupe(now_ms, &mut purged)?;
        // Received at or before `cutoff`: past retention (nothing is, before the first period).
        let cutoff = now_ms.checked_sub(retention.event_retention_ms);
        self.remove_expired(cutoff, &mut purged)?;
        let unmet = if self.retention_held() {
            None
        } else {
            self.retire_segments(now_ms, cutoff, retention.max_state_bytes, &mut purged)?
        };
        let mut totals = self.retention_totals()?;
        totals.events = totals.events.saturating_add(purged.events as u64);
        totals.payload_bytes = totals.payload_bytes.saturating_add(purged.payload_bytes);
        totals.limit_unmet = unmet;
        self.put(&t.meta, trees::META, meta_keys::RETENTION, &totals)?;
        Ok(purged)
    }

    /// Removes the dedupe entries expired at `now_ms`, in the tree and in memory.
    fn purge_dedupe(&self, now_ms: u64, purged: &mut Purged) -> Result<(), Error> {
        let t = self.t()?;
        for item in t.dedupe.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let (until, _): (u64, u64) = codec::decode(trees::DEDUPE, &k, &v)?;
            if until <= now_ms {
                // A compare-and-swap, so that an entry an ingest has just renewed survives.
                let swapped = t
                    .dedupe
                    .compare_and_swap(&k, Some(&v), None as Option<&[u8]>)
                    .map_err(|e| self.storage(e))?;
                if swapped.is_ok() {
                    purged.dedupe += 1;
                }
            }
        }
        self.dedupe_index().expire(now_ms);
        Ok(())
    }

    /// Removes unreferenced deliveries received at or before `cutoff`, oldest first, stopping
    /// at the first one received after it (ids follow arrival).
    fn remove_expired(&self, cutoff: Option<u64>, purged: &mut Purged) -> Result<(), Error> {
        let t = self.t()?;
        let Some(cutoff) = cutoff else {
            return Ok(());
        };
        let mut batch: Vec<(EventId, u64)> = Vec::with_capacity(REMOVE_BATCH);
        for item in t.events.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let meta: EventMeta = codec::decode(trees::EVENTS, &k, &v)?;
            if meta.received_ms > cutoff {
                break;
            }
            if t.inbox_refs.contains_key(&k).map_err(|e| self.storage(e))? {
                continue;
            }
            batch.push((meta.id, meta.payload.segment));
            if batch.len() >= REMOVE_BATCH {
                purged.events += self.remove_unreferenced(&batch)?;
                batch.clear();
            }
        }
        purged.events += self.remove_unreferenced(&batch)?;
        Ok(())
    }

    /// Removes these deliveries (id, segment) unless a job references them; returns how many
    /// were removed.
    fn remove_unreferenced(&self, batch: &[(EventId, u64)]) -> Result<usize, Error> {
        let t = self.t()?;
        if batch.is_empty() {
            return Ok(0);
        }
        // Their audit index entries, read first (a transaction cannot scan); a delivery that no
        // job references gets no new audit record.
        let mut audit_keys = Vec::with_capacity(batch.len());
        for (id, _) in batch {
            audit_keys.push(self.event_audit_keys(*id)?);
        }
        let result = (&t.events, &t.segment_moved, &t.inbox_refs, &t.history).transaction(
            |(events, moved, refs, history)| {
                let mut removed = 0;
                for ((id, segment), audit) in batch.iter().zip(&audit_keys) {
                    let k = id.key();
                    if read_u64(refs, trees::INBOX_REFS, &k)?.is_some_and(|n| n > 0) {
                        continue;
                    }
                    if let Some(old) = events.remove(&k)? {
                        moved.remove(&segment_key(*segment, *id)[..])?;
                        let meta: EventMeta =
                            codec::decode(trees::EVENTS, id.to_string().as_bytes(), &old)
                                .map_err(super::abort)?;
                        super::history::tx_unindex_event(history, &meta, audit)?;
                        removed += 1;
                    }
                }
                Ok(removed)
            },
        );
        self.tx_result(result)
    }

    /// The range of ids ingest appended to `segment` (`segment_ranges`), if any.
    fn segment_range(&self, segment: u64) -> Result<Option<(EventId, EventId)>, Error> {
        let t = self.t()?;
        match t
            .segment_ranges
            .get(segment.to_be_bytes())
            .map_err(|e| self.storage(e))?
        {
            Some(bytes) => {
                let (first, last) = decode_range(segment, &bytes)?;
                Ok(Some((EventId(first), EventId(last))))
            }
            None => Ok(None),
        }
    }

    /// The records in `event_index` from `first` to `last` that name `segment`, in id order;
    /// newest first if `rev`. Stops after `limit`.
    fn range_events(
        &self,
        segment: u64,
        (first, last): (EventId, EventId),
        rev: bool,
        limit: usize,
    ) -> Result<Vec<EventMeta>, Error> {
        let t = self.t()?;
        let range = t.events.range(first.key()..=last.key());
        let items: Box<dyn Iterator<Item = _>> = if rev {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let mut out = Vec::new();
        for item in items {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let meta: EventMeta = codec::decode(trees::EVENTS, &k, &v)?;
            if meta.payload.segment == segment {
                out.push(meta);
            }
        }
        Ok(out)
    }

    /// The ids of `segment`'s `segment_moved` entries, ascending.
    fn moved_ids(&self, segment: u64) -> Result<Vec<EventId>, Error> {
        let t = self.t()?;
        let mut out = Vec::new();
        for item in t.segment_moved.scan_prefix(segment.to_be_bytes()) {
            let (k, _) = item.map_err(|e| self.storage(e))?;
            out.push(EventId::parse(
                trees::SEGMENT_MOVED,
                k.get(8..).unwrap_or_default(),
            )?);
        }
        Ok(out)
    }

    /// The deliveries in `segment`, in id order: those of its range whose record names it, and
    /// those moved into it.
    pub(super) fn segment_events(&self, segment: u64) -> Result<Vec<EventMeta>, Error> {
        let mut out = std::collections::BTreeMap::new();
        if let Some(range) = self.segment_range(segment)? {
            for meta in self.range_events(segment, range, false, usize::MAX)? {
                out.insert(meta.id, meta);
            }
        }
        for id in self.moved_ids(segment)? {
            if let Some(meta) = self.event_meta(id)?
                && meta.payload.segment == segment
            {
                out.insert(id, meta);
            }
        }
        Ok(out.into_values().collect())
    }

    /// The record of the delivery with the highest id in `segment` (the newest, but for copies
    /// and enrichments of older ones); `None` when it holds no stored delivery.
    fn segment_newest(&self, segment: u64) -> Result<Option<EventMeta>, Error> {
        let mut newest = match self.segment_range(segment)? {
            Some(range) => self.range_events(segment, range, true, 1)?.pop(),
            None => None,
        };
        for id in self.moved_ids(segment)?.into_iter().rev() {
            if newest.as_ref().is_some_and(|n| n.id >= id) {
                break;
            }
            if let Some(meta) = self.event_meta(id)?
                && meta.payload.segment == segment
            {
                newest = Some(meta);
                break;
            }
        }
        Ok(newest)
    }

    /// Removes `segment`'s range and `segment_moved` entries (before its file goes: a crash in
    /// between leaves a file that the next pass finds empty and deletes).
    fn forget_segment(&self, segment: u64) -> Result<(), Error> {
        let t = self.t()?;
        let mut batch = sled::Batch::default();
        for item in t.segment_moved.scan_prefix(segment.to_be_bytes()).keys() {
            batch.remove(item.map_err(|e| self.storage(e))?);
        }
        t.segment_moved
            .apply_batch(batch)
            .map_err(|e| self.storage(e))?;
        t.segment_ranges
            .remove(segment.to_be_bytes())
            .map_err(|e| self.storage(e))?;
        Ok(())
    }

    /// Empties and deletes sealed segments: those with nothing live, those whose deliveries are
    /// all past `cutoff`, and while the state is over `max_bytes` the oldest ones. Returns why
    /// the size limit cannot be met, if it cannot.
    fn retire_segments(
        &self,
        now_ms: u64,
        cutoff: Option<u64>,
        max_bytes: u64,
        purged: &mut Purged,
    ) -> Result<Option<String>, Error> {
        let t = self.t()?;
        let sizes = self.state_bytes();
        let mut total = sizes.total();
        // An open segment past its age is sealed now rather than at the next append, so that an
        // idle daemon's last segment can go too.
        let stale =
            self.segments.list()?.iter().any(|s| {
                s.open && s.started_ms.saturating_add(self.segments.max_age_ms()) <= now_ms
            });
        if stale {
            self.segments.seal()?;
        }
        let listed = self.segments.list()?;
        let mut emptied = Vec::new();
        for info in listed.iter().filter(|s| !s.open) {
            // Cheap first: a segment whose newest delivery is within retention is kept whole
            // (unless over the size), without reading the rest of it.
            if total <= max_bytes
                && let Some(newest) = self.segment_newest(info.id)?
                && cutoff.is_none_or(|c| newest.received_ms > c)
            {
                continue;
            }
            let live = self.segment_events(info.id)?;
            let expired = live
                .iter()
                .all(|m| cutoff.is_some_and(|c| m.received_ms <= c));
            let mut referenced = Vec::new();
            let mut unreferenced = Vec::new();
            for meta in &live {
                let held = t
                    .inbox_refs
                    .contains_key(meta.id.key())
                    .map_err(|e| self.storage(e))?;
                if held {
                    referenced.push(meta);
                } else {
                    unreferenced.push((meta.id, meta.payload.segment));
                }
            }
            // Over the size limit, a segment of referenced deliveries only gains nothing.
            let over = total > max_bytes && !unreferenced.is_empty();
            if !(expired || over) {
                continue;
            }
            let mut stay = false;
            for meta in referenced {
                if self.copy_forward(meta, now_ms)? {
                    purged.copied += 1;
                    total = total.saturating_add(u64::from(meta.payload.len));
                } else {
                    stay = true;
                }
            }
            let removed = self.remove_unreferenced(&unreferenced)?;
            purged.events += removed;
            if stay || removed < unreferenced.len() {
                continue;
            }
            emptied.push(info.id);
            total = total.saturating_sub(info.bytes);
        }
        if !emptied.is_empty() {
            // sled must not durably point into a file about to be deleted.
            self.flush()?;
            let _exclusive = self
                .payloads
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for segment in emptied {
                if self.segment_newest(segment)?.is_some() {
                    continue;
                }
                self.forget_segment(segment)?;
                let freed = self.segments.remove(segment)?;
                purged.segments += 1;
                purged.payload_bytes = purged.payload_bytes.saturating_add(freed);
            }
        }
        let now = self.state_bytes();
        if now.total() <= max_bytes {
            return Ok(None);
        }
        Ok(Some(format!(
            "the state is {} bytes, over --max-state-size ({max_bytes} bytes): payloads {} bytes \
             (the open segment and deliveries of unfinished or dead-lettered jobs, which are kept), \
             database {} bytes, journal {} bytes",
            now.total(),
            now.payloads,
            now.database,
            now.journal
        )))
    }

    /// Copies a referenced delivery's payload into the open segment and repoints its record,
    /// unless the record changed meanwhile. `Ok(false)` when it was not moved.
    fn copy_forward(&self, meta: &EventMeta, now_ms: u64) -> Result<bool, Error> {
        let t = self.t()?;
        let bytes = self.load_payload(meta.id, meta.payload)?;
        let _appending = self.payload_appending();
        let at = self.append_payload(meta.id, &bytes, now_ms)?;
        let old = meta.payload;
        let id = meta.id;
        let result = (&t.events, &t.segment_moved).transaction(|(events, moved)| {
            let Some(current) = events.get(id.key())? else {
                return Ok(false);
            };
            let mut current: EventMeta =
                codec::decode(trees::EVENTS, id.to_string().as_bytes(), &current)
                    .map_err(super::abort)?;
            if current.payload != old {
                return Ok(false);
            }
            current.payload = at;
            let encoded =
                codec::encode(trees::EVENTS, &id.to_string(), &current).map_err(super::abort)?;
            events.insert(&id.key(), encoded)?;
            // Out of id order in the open segment: an entry of its own there.
            moved.remove(&segment_key(old.segment, id)[..])?;
            moved.insert(&segment_key(at.segment, id), &[][..])?;
            Ok(true)
        });
        self.tx_result(result)
    }
}
