//! Migrations of the delivery layout: schema 1 → 2 (deliveries keyed by event key → keyed by
//! dedupe window end ‖ sequence), schema 3 → 4 (→ keyed by [`EventId`], payloads in the
//! segment files, dedupe keys by digest) and schema 4 → 5 (the per-delivery `event_segments`
//! entries → one id range per segment plus entries for the payloads out of id order). The
//! applied-resources step (2 → 3) is in `applied.rs`.
//!
//! Every step is safe to interrupt: it writes the new schema version last, and running it again
//! on what an interrupted run left finishes the job (3 → 4 records which old deliveries it has
//! moved in a tree of its own, in the same transactions as their new records, and rebuilds the
//! references and dedupe entries from scratch; 4 → 5 rebuilds its trees from scratch out of
//! `event_segments`, which it drops only after the version). Old trees are dropped only after
//! the version is written; an open at the current version drops any that an interruption left.
//!
//! Jobs are rewritten as JSON values, not through [`super::Job`], so that fields of older
//! layouts (`event_ref`) can be read and removed.

use std::collections::HashMap;

use serde_json::Value;
use sled::Transactional;

use super::inbox::{EventMeta, key_digest};
use super::keys::{EventId, due_key, segment_key, split_key};
use super::{Error, Store, codec, meta_keys, trees};
use crate::event::Event;

/// Old deliveries moved per transaction.
const MOVE_BATCH: usize = 512;

/// The trees that the steps up to schema 4 leave behind.
const V3_LEGACY: [&str; 5] = [
    trees::V1_EVENTS,
    trees::V1_EVENT_REFS,
    trees::V3_INBOX,
    trees::V3_DEDUPE,
    trees::V4_MOVED,
];

/// A job's or a dead job's JSON: the job itself.
fn job_of<'a>(
    tree: &'static str,
    value: &'a mut Value,
) -> Option<&'a mut serde_json::Map<String, Value>> {
    if tree == trees::DEAD {
        value.get_mut("job")?.as_object_mut()
    } else {
        value.as_object_mut()
    }
}

/// A schema 2/3 job's reference to its delivery, as the old inbox key.
fn old_ref(job: &serde_json::Map<String, Value>) -> Option<[u8; 16]> {
    let r = job.get("event_ref")?;
    let until = r.get("until_ms")?.as_u64()?;
    let seq = r.get("seq")?.as_u64()?;
    Some(due_key(until, seq))
}

impl Store {
    /// Rewrites every job of `tree` (outbox or dead) with `change`, which returns whether it
    /// changed the job.
    fn rewrite_jobs(
        &self,
        tree: &sled::Tree,
        name: &'static str,
        mut change: impl FnMut(&mut serde_json::Map<String, Value>) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        for item in tree.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let mut value: Value = codec::decode(name, &k, &v)?;
            let Some(job) = job_of(name, &mut value) else {
                return Err(Error::Corrupt {
                    tree: name,
                    key: format!("{k:02x?}"),
                    detail: "not a job".to_owned(),
                });
            };
            if change(job)? {
                let bytes = codec::encode(name, "job", &value)?;
                tree.insert(k, bytes).map_err(|e| self.storage(e))?;
            }
        }
        Ok(())
    }

    /// Schema 1 → 2: moves every delivery from `events` (keyed by event key) into the old
    /// `inbox` under its dedupe entry's expiry (0 when that entry is gone) ‖ a new sequence
    /// number, and points the jobs (live and dead) at it (`event_ref`); then writes version 2
    /// and drops the old trees. The references are rebuilt by the step to schema 4.
    pub(super) fn migrate_v1_inbox(&self) -> Result<(), Error> {
        let t = self.t()?;
        let storage = |e| self.storage(e);
        let events = t.db.open_tree(trees::V1_EVENTS).map_err(storage)?;
        let inbox = t.db.open_tree(trees::V3_INBOX).map_err(storage)?;
        let dedupe = t.db.open_tree(trees::V3_DEDUPE).map_err(storage)?;
        let mut moved: HashMap<String, (u64, u64)> = HashMap::new();
        for item in events.iter() {
            let (k, v) = item.map_err(storage)?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let until_ms = match dedupe.get(&k).map_err(storage)? {
                Some(bytes) => codec::decode(trees::V3_DEDUPE, &k, &bytes)?,
                None => 0u64,
            };
            let seq = self.next_id()?;
            inbox.insert(due_key(until_ms, seq), v).map_err(storage)?;
            moved.insert(key, (until_ms, seq));
        }
        // Jobs pointed at their delivery (a job whose delivery is gone gets a reference that
        // finds nothing, as its event key found nothing before).
        for (tree, name) in [(&t.outbox, trees::OUTBOX), (&t.dead, trees::DEAD)] {
            self.rewrite_jobs(tree, name, |job| {
                if job.contains_key("event_ref") {
                    return Ok(false);
                }
                let key = job.get("event_key").and_then(Value::as_str).unwrap_or("");
                let (until_ms, seq) = moved.get(key).copied().unwrap_or((0, 0));
                job.insert(
                    "event_ref".to_owned(),
                    serde_json::json!({"until_ms": until_ms, "seq": seq}),
                );
                Ok(true)
            })?;
        }
        self.flush()?;
        self.put(&t.meta, trees::META, meta_keys::SCHEMA_VERSION, &2u32)?;
        self.flush()?;
        drop(events);
        for name in [trees::V1_EVENTS, trees::V1_EVENT_REFS] {
            t.db.drop_tree(name).map_err(storage)?;
        }
        Ok(())
    }

    /// Schema 3 → 4: every stored delivery gets an [`EventId`] (in stored order), its payload
    /// goes to the segment files and its record to `event_index`; jobs (live and dead) are
    /// repointed from `event_ref` to `event_id`; the references are recounted from the jobs;
    /// the dedupe entries are rewritten by digest. Then version 4 is written and the old trees
    /// are dropped. Restartable (module doc).
    pub(super) fn migrate_v3_layout(&self) -> Result<(), Error> {
        let t = self.t()?;
        let storage = |e| self.storage(e);
        self.move_v3_deliveries()?;
        let old_inbox = t.db.open_tree(trees::V3_INBOX).map_err(storage)?;
        let old_dedupe = t.db.open_tree(trees::V3_DEDUPE).map_err(storage)?;
        let moved = t.db.open_tree(trees::V4_MOVED).map_err(storage)?;

        // 2. Jobs: `event_ref` → `event_id` (a job whose delivery was gone gets an id that
        // finds nothing, as its reference found nothing before).
        for (tree, name) in [(&t.outbox, trees::OUTBOX), (&t.dead, trees::DEAD)] {
            self.rewrite_jobs(tree, name, |job| {
                if !job.contains_key("event_ref") {
                    return Ok(false);
                }
                let id = match old_ref(job) {
                    Some(at) => match moved.get(at).map_err(storage)? {
                        Some(v) => EventId::parse(trees::V4_MOVED, &v)?,
                        None => EventId(0),
                    },
                    None => EventId(0),
                };
                job.remove("event_ref");
                job.insert("event_id".to_owned(), Value::String(id.to_string()));
                Ok(true)
            })?;
        }
        // 3. The references, counted from the jobs.
        t.inbox_refs.clear().map_err(storage)?;
        let mut counts: HashMap<EventId, u64> = HashMap::new();
        for job in self.all_jobs()? {
            if job.event_id != EventId(0) {
                *counts.entry(job.event_id).or_default() += 1;
            }
        }
        for (id, n) in counts {
            let bytes = codec::encode(trees::INBOX_REFS, &id.to_string(), &n)?;
            t.inbox_refs.insert(id.key(), bytes).map_err(storage)?;
        }

        // 4. The dedupe entries, by digest, with the latest delivery of their key.
        let mut latest: HashMap<String, EventId> = HashMap::new();
        for item in t.events.iter() {
            let (k, v) = item.map_err(storage)?;
            let meta: EventMeta = codec::decode(trees::EVENTS, &k, &v)?;
            latest.insert(meta.key, meta.id);
        }
        for item in old_dedupe.iter() {
            let (k, v) = item.map_err(storage)?;
            let until: u64 = codec::decode(trees::V3_DEDUPE, &k, &v)?;
            let key = String::from_utf8_lossy(&k);
            let id = latest.get(key.as_ref()).copied().unwrap_or_default();
            let bytes = codec::encode(trees::DEDUPE, &key, &(until, id.0))?;
            t.dedupe.insert(key_digest(&key), bytes).map_err(storage)?;
        }

        // 5. The version, last; then the old trees go (but `event_segments`, which the
        // step to schema 5 reads).
        self.flush()?;
        self.put(&t.meta, trees::META, meta_keys::SCHEMA_VERSION, &4u32)?;
        self.flush()?;
        drop((old_inbox, old_dedupe, moved));
        self.drop_trees(&V3_LEGACY)
    }

    /// Schema 4 → 5: schema 4's `event_segments` (one entry per delivery) becomes
    /// `segment_ranges` and `segment_moved`. Segments are read in order; a segment's ids above
    /// every id of the earlier segments' ranges make its range (its first to its last), the
    /// others (copies forward, enrichments, a little overlap) get a `segment_moved` entry
    /// each, so that an old copy does not stretch a range over everything since. Both trees
    /// are rebuilt from scratch, so a run interrupted before the version finishes on the next
    /// open; then version 5 is written and `event_segments` dropped.
    pub(super) fn migrate_v4_segments(&self) -> Result<(), Error> {
        let t = self.t()?;
        let storage = |e| self.storage(e);
        let old = t.db.open_tree(trees::V4_EVENT_SEGMENTS).map_err(storage)?;
        t.segment_ranges.clear().map_err(storage)?;
        t.segment_moved.clear().map_err(storage)?;
        let mut ranges_end = 0u64;
        let mut current: Option<(u64, Vec<EventId>)> = None;
        for item in old.iter().keys() {
            let k = item.map_err(storage)?;
            let (segment, id) = split_key(trees::V4_EVENT_SEGMENTS, &k)?;
            match &mut current {
                Some((s, ids)) if *s == segment => ids.push(EventId(id)),
                _ => {
                    if let Some((s, ids)) = current.take() {
                        self.write_v5_segment(s, &ids, &mut ranges_end)?;
                    }
                    current = Some((segment, vec![EventId(id)]));
                }
            }
        }
        if let Some((s, ids)) = current.take() {
            self.write_v5_segment(s, &ids, &mut ranges_end)?;
        }
        self.flush()?;
        self.put(&t.meta, trees::META, meta_keys::SCHEMA_VERSION, &5u32)?;
        self.flush()?;
        drop(old);
        self.drop_legacy_trees()
    }

    /// Writes schema 5's entries of `segment`, given its deliveries' `ids` (ascending) and the
    /// highest id of the ranges written so far (`ranges_end`, raised by this range).
    fn write_v5_segment(
        &self,
        segment: u64,
        ids: &[EventId],
        ranges_end: &mut u64,
    ) -> Result<(), Error> {
        let t = self.t()?;
        let mut batch = sled::Batch::default();
        let mut range: Option<(u64, u64)> = None;
        for id in ids {
            if id.0 > *ranges_end {
                range = Some(range.map_or((id.0, id.0), |(first, _)| (first, id.0)));
            } else {
                batch.insert(&segment_key(segment, *id)[..], &[][..]);
            }
        }
        t.segment_moved
            .apply_batch(batch)
            .map_err(|e| self.storage(e))?;
        if let Some((first, last)) = range {
            let bytes = super::payloads::encode_range(segment, first, last)?;
            t.segment_ranges
                .insert(segment.to_be_bytes(), bytes)
                .map_err(|e| self.storage(e))?;
            *ranges_end = last;
        }
        Ok(())
    }

    /// Schema 3 → 4, step 1: every old delivery not moved yet gets its id, payload and record,
    /// in stored order; then a flush. Restartable.
    pub(super) fn move_v3_deliveries(&self) -> Result<(), Error> {
        let t = self.t()?;
        let storage = |e| self.storage(e);
        let old_inbox = t.db.open_tree(trees::V3_INBOX).map_err(storage)?;
        let moved = t.db.open_tree(trees::V4_MOVED).map_err(storage)?;
        // Schema 4's index of the segments (turned into schema 5's by the next step).
        let segments = t.db.open_tree(trees::V4_EVENT_SEGMENTS).map_err(storage)?;

        // The rules of the jobs still referencing each delivery (finished jobs are gone).
        let mut rules: HashMap<[u8; 16], Vec<String>> = HashMap::new();
        for (tree, name) in [(&t.outbox, trees::OUTBOX), (&t.dead, trees::DEAD)] {
            for item in tree.iter() {
                let (k, v) = item.map_err(storage)?;
                let mut value: Value = codec::decode(name, &k, &v)?;
                if let Some(job) = job_of(name, &mut value)
                    && let Some(at) = old_ref(job)
                    && let Some(rule) = job.get("rule").and_then(Value::as_str)
                {
                    rules.entry(at).or_default().push(rule.to_owned());
                }
            }
        }

        // 1. The deliveries, in stored (sequence) order.
        let mut keys: Vec<(u64, sled::IVec)> = Vec::new();
        for item in old_inbox.iter().keys() {
            let k = item.map_err(storage)?;
            let (_, seq) = split_key(trees::V3_INBOX, &k)?;
            keys.push((seq, k));
        }
        keys.sort_by_key(|(seq, _)| *seq);
        for chunk in keys.chunks(MOVE_BATCH) {
            let mut batch: Vec<(sled::IVec, EventMeta, Vec<u8>)> = Vec::new();
            for (_, k) in chunk {
                if moved.contains_key(k).map_err(storage)? {
                    continue;
                }
                let Some(bytes) = old_inbox.get(k).map_err(storage)? else {
                    continue;
                };
                let (until_ms, _) = split_key(trees::V3_INBOX, k)?;
                let event: Event = codec::decode(trees::V3_INBOX, k, &bytes)?;
                let id = EventId(self.next_id()?);
                let payload = self.append_payload(id, &bytes, event.received_at_ms)?;
                let mut matched = rules.get(&k[..]).cloned().unwrap_or_default();
                matched.dedup();
                let meta = EventMeta {
                    id,
                    received_ms: event.received_at_ms,
                    key: event.key(),
                    integration: event.integration,
                    platform: event.platform,
                    name: event.name,
                    event_id: event.id,
                    revision: None,
                    rules: matched,
                    dedupe_until_ms: until_ms,
                    payload,
                    audit: Vec::new(),
                };
                let record = codec::encode(trees::EVENTS, &id.to_string(), &meta)?;
                batch.push((k.clone(), meta, record));
            }
            if batch.is_empty() {
                continue;
            }
            let result = (&t.events, &segments, &moved).transaction(|(events, segments, moved)| {
                for (old, meta, record) in &batch {
                    events.insert(&meta.id.key(), record.as_slice())?;
                    segments.insert(&segment_key(meta.payload.segment, meta.id), &[][..])?;
                    moved.insert(old, &meta.id.key())?;
                }
                Ok(())
            });
            self.tx_result(result)?;
        }
        // The payloads are on disk before anything points at them durably.
        self.flush()?;

        Ok(())
    }

    /// Every job, live and dead.
    fn all_jobs(&self) -> Result<Vec<super::Job>, Error> {
        let t = self.t()?;
        let mut out = Vec::new();
        for item in t.outbox.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            out.push(codec::decode(trees::OUTBOX, &k, &v)?);
        }
        for item in t.dead.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let dead: super::DeadJob = codec::decode(trees::DEAD, &k, &v)?;
            out.push(dead.job);
        }
        Ok(out)
    }

    /// Drops the trees of older layouts that an interrupted migration left (none, usually).
    pub(super) fn drop_legacy_trees(&self) -> Result<(), Error> {
        self.drop_trees(&V3_LEGACY)?;
        self.drop_trees(&[trees::V4_EVENT_SEGMENTS])
    }

    /// Drops those of these trees that exist.
    fn drop_trees(&self, legacy: &[&str]) -> Result<(), Error> {
        let t = self.t()?;
        let names = t.db.tree_names();
        for legacy in legacy {
            if names.iter().any(|n| n == legacy.as_bytes()) {
                t.db.drop_tree(legacy).map_err(|e| self.storage(e))?;
            }
        }
        Ok(())
    }
}
