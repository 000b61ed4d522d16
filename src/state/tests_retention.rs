//! Tests of event ids, history pages and retention (`payloads.rs`): segment files deleted whole
//! and the directory shrinking, copy-forward of referenced deliveries, the size limit, the
//! retention hold, and a property test that no delivery of an unfinished or dead-lettered job
//! is ever removed.

use proptest::prelude::*;
use serde_json::json;

use super::journal::IngestRecord;
use super::keys::segment_key;
use super::tests_queue::{check_consistency, event, keep_for, rules};
use super::*;

const HOUR: u64 = 3_600_000;

/// A delivery with a payload of about `size` bytes, received at `at`.
fn big(id: &str, size: usize, at: u64) -> crate::event::Event {
    let mut e = event("fd", id);
    e.payload = json!({ "body": "x".repeat(size) });
    e.received_at_ms = at;
    e
}

fn ingest(store: &Store, id: &str, rule: &[&str], at: u64) -> (EventId, Vec<u64>) {
    ingest_sized(store, id, 10_000, rule, at)
}

fn ingest_sized(
    store: &Store,
    id: &str,
    size: usize,
    rule: &[&str],
    at: u64,
) -> (EventId, Vec<u64>) {
    match store
        .ingest(&big(id, size, at), &rules(rule), at, at + 1_000)
        .unwrap()
    {
        IngestOutcome::Stored { jobs } => {
            let id = store.events_page(None, 1).unwrap()[0].id;
            (id, jobs)
        }
        IngestOutcome::Duplicate => panic!("duplicate"),
    }
}

fn events_dir_bytes(store: &Store) -> u64 {
    std::fs::read_dir(store.dir().join("events"))
        .map(|d| d.flatten().map(|e| e.metadata().unwrap().len()).sum())
        .unwrap_or(0)
}

fn segment_files(store: &Store) -> usize {
    std::fs::read_dir(store.dir().join("events"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn event_ids_increase_in_arrival_order_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let store = Store::open(tmp.path()).unwrap();
        for n in 0..5 {
            ids.push(ingest(&store, &format!("a{n}"), &[], n).0);
        }
    }
    let store = Store::open(tmp.path()).unwrap();
    let record = IngestRecord {
        event: event("fd", "b0"),
        rules: rules(&["r"]),
        now_ms: 10,
        dedupe_until_ms: 1_000,
        audit: Vec::new(),
        revision: Some("abc123".into()),
        held: Default::default(),
    };
    store.ingest_batch(&[&record]).unwrap();
    for n in 1..5 {
        ids.push(ingest(&store, &format!("b{n}"), &[], 10 + n).0);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // Pages, newest first, each starting before the last id of the previous one.
    let first = store.events_page(None, 4).unwrap();
    let second = store.events_page(Some(first[3].id), 4).unwrap();
    let third = store.events_page(Some(second[3].id), 4).unwrap();
    let paged: Vec<EventId> = [first, second, third.clone()]
        .iter()
        .flatten()
        .map(|m| m.id)
        .collect();
    assert_eq!(paged.len(), 10);
    let mut newest_first = paged.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(paged, newest_first);
    assert_eq!(third.last().unwrap().key, "fd/a0");
    // The revision in use is recorded; the ids read back as they print.
    let b0 = store
        .events_page(None, 10)
        .unwrap()
        .into_iter()
        .find(|m| m.key == "fd/b0")
        .unwrap();
    assert_eq!(b0.revision.as_deref(), Some("abc123"));
    assert_eq!(b0.rules, ["r"]);
    let job = store.lease_due(10, 1, 1).unwrap().remove(0);
    assert_eq!(job.event_id, b0.id);
    let shown = b0.id.to_string();
    assert!(shown.starts_with("evt_"));
    assert_eq!(shown.parse::<EventId>().unwrap(), b0.id);
    for bad in [
        "",
        "evt_",
        "evt_x",
        "12",
        "evt_-1",
        "evt_99999999999999999999999",
    ] {
        assert!(bad.parse::<EventId>().is_err(), "{bad}");
    }
    assert_eq!(
        serde_json::to_value(b0.id).unwrap(),
        json!(b0.id.to_string())
    );
    assert_eq!(
        serde_json::from_value::<EventId>(json!(42)).unwrap(),
        EventId(42)
    );
}

#[test]
fn retention_deletes_whole_segments_and_the_directory_shrinks() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    for n in 0..40 {
        ingest(&store, &format!("old{n}"), &[], n);
    }
    store.segments.seal().unwrap();
    for n in 0..10 {
        ingest(&store, &format!("new{n}"), &[], 3 * HOUR + n);
    }
    let before = events_dir_bytes(&store);
    assert!(before > 500_000, "{before}");
    assert_eq!(segment_files(&store), 2);

    let purged = store
        .purge_expired(3 * HOUR + 100, &keep_for(HOUR))
        .unwrap();
    assert_eq!((purged.events, purged.segments), (40, 1));
    assert!(purged.payload_bytes > 400_000, "{purged:?}");
    assert_eq!(segment_files(&store), 1);
    let after = events_dir_bytes(&store);
    assert!(after < before / 4, "{before} → {after}");
    assert_eq!(store.state_bytes().payloads, after);
    assert_eq!(store.events_stored(), 10);
    check_consistency(&store);

    // The counts survive a restart.
    drop(store);
    let store = Store::open(tmp.path()).unwrap();
    let totals = store.retention_totals().unwrap();
    assert_eq!(totals.events, 40);
    assert_eq!(totals.payload_bytes, purged.payload_bytes);
    assert_eq!(totals.limit_unmet, None);
}

#[test]
fn a_referenced_delivery_is_copied_forward_and_stays_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let (live, live_jobs) = ingest(&store, "live", &["r"], 0);
    let (dead, dead_jobs) = ingest(&store, "dead", &["r"], 1);
    let (done, done_jobs) = ingest(&store, "done", &["r"], 2);
    assert!(store.ack(done_jobs[0]).unwrap());
    store.dead_letter(dead_jobs[0], "gave up", 3).unwrap();
    store.segments.seal().unwrap();
    let first = store.segments.list().unwrap()[0].id;

    let purged = store.purge_expired(10 * HOUR, &keep_for(HOUR)).unwrap();
    assert_eq!(
        (purged.events, purged.copied, purged.segments),
        (1, 2, 1),
        "{purged:?}"
    );
    assert!(store.segments.list().unwrap().iter().all(|s| s.id != first));
    assert_eq!(store.event(done).unwrap(), None);
    assert_eq!(store.event(live).unwrap(), Some(big("live", 10_000, 0)));
    assert_eq!(store.event(dead).unwrap(), Some(big("dead", 10_000, 1)));
    check_consistency(&store);

    // Once their jobs are done they go, with their (new) segment.
    assert!(store.ack(live_jobs[0]).unwrap());
    store.replay(dead_jobs[0], 10 * HOUR).unwrap();
    assert!(store.ack(dead_jobs[0]).unwrap());
    store.segments.seal().unwrap();
    let purged = store.purge_expired(20 * HOUR, &keep_for(HOUR)).unwrap();
    assert_eq!((purged.events, purged.segments), (2, 1), "{purged:?}");
    assert_eq!(segment_files(&store), 0);
    assert_eq!(store.events_stored(), 0);
    check_consistency(&store);
}

#[test]
fn over_max_state_size_the_oldest_go_first_and_referenced_ones_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let mut batches = Vec::new();
    for b in 0..3u64 {
        let mut ids = Vec::new();
        for n in 0..20 {
            ids.push(ingest_sized(&store, &format!("s{b}e{n}"), 100_000, &[], b * 10 + n).0);
        }
        store.segments.seal().unwrap();
        batches.push(ids);
    }
    let (held, held_jobs) = ingest(&store, "held", &["r"], 100);
    store.segments.seal().unwrap();
    store.flush().unwrap();
    let sizes = store.state_bytes();
    let segment = store.segments.list().unwrap()[0].bytes;
    // Room for everything but about one segment (2 MB; sled's file may grow by less than half
    // of that meanwhile): the oldest goes, nothing else.
    assert!(segment > 2_000_000, "{segment}");
    let limit = sizes.total() - segment / 2;
    let purged = store
        .purge_expired(
            200,
            &Retention {
                event_retention_ms: u64::MAX,
                max_state_bytes: limit,
            },
        )
        .unwrap();
    assert_eq!((purged.events, purged.segments), (20, 1), "{purged:?}");
    assert!(
        batches[0]
            .iter()
            .all(|id| store.event_meta(*id).unwrap().is_none())
    );
    assert!(
        batches[1]
            .iter()
            .all(|id| store.event_meta(*id).unwrap().is_some())
    );
    assert_eq!(store.retention_totals().unwrap().limit_unmet, None);
    check_consistency(&store);

    // A limit nothing can meet: every unreferenced delivery goes, the referenced one stays,
    // and status says why.
    let purged = store
        .purge_expired(
            200,
            &Retention {
                event_retention_ms: u64::MAX,
                max_state_bytes: 1,
            },
        )
        .unwrap();
    assert_eq!(purged.events, 40, "{purged:?}");
    assert_eq!(store.events_stored(), 1);
    assert!(store.event(held).unwrap().is_some());
    let why = store.retention_totals().unwrap().limit_unmet.unwrap();
    assert!(why.contains("--max-state-size"), "{why}");
    assert!(why.contains("unfinished or dead-lettered"), "{why}");
    assert!(store.ack(held_jobs[0]).unwrap());
    check_consistency(&store);
}

#[test]
fn no_segment_file_is_deleted_while_retention_is_held() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    for n in 0..5 {
        ingest(&store, &format!("e{n}"), &[], n);
    }
    store.segments.seal().unwrap();
    let hold = store.hold_retention();
    let purged = store.purge_expired(10 * HOUR, &keep_for(HOUR)).unwrap();
    assert_eq!((purged.events, purged.segments), (5, 0));
    assert_eq!(segment_files(&store), 1);
    drop(hold);
    let purged = store.purge_expired(10 * HOUR, &keep_for(HOUR)).unwrap();
    assert_eq!((purged.events, purged.segments), (0, 1));
    assert_eq!(segment_files(&store), 0);
}

/// Ingest writes no entry per delivery for retention: one `segment_ranges` entry per segment
/// (its first and last id), nothing in `segment_moved`.
#[test]
fn ingest_writes_one_range_per_segment_not_an_entry_per_delivery() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let first: Vec<EventId> = (0..20)
        .map(|n| ingest_sized(&store, &format!("a{n}"), 100, &[], n).0)
        .collect();
    store.segments.seal().unwrap();
    let second: Vec<EventId> = (0..5)
        .map(|n| ingest_sized(&store, &format!("b{n}"), 100, &["r"], 100 + n).0)
        .collect();
    let t = store.t().unwrap();
    let ranges: Vec<(u64, (u64, u64))> = t
        .segment_ranges
        .iter()
        .map(|item| {
            let (k, v) = item.unwrap();
            let segment = u64::from_be_bytes(k.as_ref().try_into().unwrap());
            (
                segment,
                codec::decode(trees::SEGMENT_RANGES, &k, &v).unwrap(),
            )
        })
        .collect();
    let segments: Vec<u64> = store
        .segments
        .list()
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        ranges,
        [
            (segments[0], (first[0].0, first[19].0)),
            (segments[1], (second[0].0, second[4].0))
        ]
    );
    assert!(t.segment_moved.is_empty());
    assert!(
        !t.db
            .tree_names()
            .iter()
            .any(|n| n == trees::V4_EVENT_SEGMENTS.as_bytes())
    );
    drop(t);
    check_consistency(&store);
}

/// A payload written into a segment out of id order — an enrichment completing, a copy
/// forward — is found there by retention (its `segment_moved` entry): when that segment
/// expires while the delivery is still referenced, the payload is copied forward again, never
/// deleted with the file.
#[test]
fn an_enriched_or_copied_payload_is_found_in_its_new_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let (enriched, enrich_jobs) = ingest(&store, "enriched", &[ENRICHMENT], 0);
    let (copied, copied_jobs) = ingest(&store, "copied", &["r"], 1);
    ingest(&store, "other", &[], 2);
    store.segments.seal().unwrap();
    let first = store.segments.list().unwrap()[0].id;

    // Later deliveries open the second segment; the enrichment completes into it.
    ingest(&store, "later0", &[], HOUR);
    let mut event = big("enriched", 10_000, 0);
    event
        .objects
        .insert("comment".into(), json!({ "body": "more" }));
    let new_jobs = store
        .complete_enrichment(
            enrich_jobs[0],
            &event,
            &rules(&["r"]),
            HOUR + 1,
            &[],
            &Default::default(),
        )
        .unwrap();
    ingest(&store, "later1", &[], HOUR + 2);
    let second = store.event_meta(enriched).unwrap().unwrap().payload.segment;
    assert_ne!(second, first);
    let moved = |segment: u64, id: EventId| {
        store
            .t()
            .unwrap()
            .segment_moved
            .contains_key(segment_key(segment, id))
            .unwrap()
    };
    assert!(moved(second, enriched));
    check_consistency(&store);
    store.segments.seal().unwrap();

    // Both segments expire: the enriched delivery (its jobs unfinished) is found in the second
    // and copied forward with the first's referenced one; the rest goes.
    let purged = store.purge_expired(3 * HOUR, &keep_for(HOUR)).unwrap();
    assert_eq!(
        (purged.events, purged.copied, purged.segments),
        (3, 2, 2),
        "{purged:?}"
    );
    assert_eq!(store.event(enriched).unwrap(), Some(event.clone()));
    assert_eq!(store.event(copied).unwrap(), Some(big("copied", 10_000, 1)));
    let third = store.event_meta(copied).unwrap().unwrap().payload.segment;
    assert_eq!(
        store.event_meta(enriched).unwrap().unwrap().payload.segment,
        third
    );
    assert!(moved(third, enriched) && moved(third, copied));
    assert!(!moved(second, enriched));
    check_consistency(&store);

    // The copies' segment (no delivery ingested into it) expires in turn: found there, copied
    // again.
    store.segments.seal().unwrap();
    let purged = store.purge_expired(10 * HOUR, &keep_for(HOUR)).unwrap();
    assert_eq!(
        (purged.events, purged.copied, purged.segments),
        (0, 2, 1),
        "{purged:?}"
    );
    assert_eq!(store.event(enriched).unwrap(), Some(event));
    assert_eq!(store.event(copied).unwrap(), Some(big("copied", 10_000, 1)));
    check_consistency(&store);

    // Once their jobs are done they go, with the last segment.
    for job in copied_jobs.iter().chain(&new_jobs) {
        assert!(store.ack(*job).unwrap());
    }
    store.segments.seal().unwrap();
    let purged = store.purge_expired(20 * HOUR, &keep_for(HOUR)).unwrap();
    assert_eq!((purged.events, purged.segments), (2, 1), "{purged:?}");
    assert_eq!(segment_files(&store), 0);
    assert!(store.t().unwrap().segment_moved.is_empty());
    assert!(store.t().unwrap().segment_ranges.is_empty());
    check_consistency(&store);
}

/// Rewrites a schema 5 `store` as schema 4 kept it: one `event_segments` entry (segment ‖ id)
/// per stored delivery, no `segment_ranges` or `segment_moved` entry, version 4.
fn as_schema_4(store: &Store) {
    let t = store.t().unwrap();
    let old = t.db.open_tree(trees::V4_EVENT_SEGMENTS).unwrap();
    for item in t.events.iter() {
        let (k, v) = item.unwrap();
        let meta: EventMeta = codec::decode(trees::EVENTS, &k, &v).unwrap();
        old.insert(segment_key(meta.payload.segment, meta.id), &[][..])
            .unwrap();
    }
    t.segment_ranges.clear().unwrap();
    t.segment_moved.clear().unwrap();
    store
        .put(&t.meta, trees::META, meta_keys::SCHEMA_VERSION, &4u32)
        .unwrap();
    drop(t);
    store.flush().unwrap();
}

/// The deliveries of [`schema_4_state`].
struct Schema4 {
    /// Copied forward from the first segment into the third: `a0` (a live job), `a2` (a dead
    /// job).
    a0: (EventId, Vec<u64>),
    a2: (EventId, Vec<u64>),
    /// The second segment, no jobs.
    b: [EventId; 2],
    /// The third segment after the copies: `c0` (a live job), `c1` (none).
    c0: (EventId, Vec<u64>),
    c1: EventId,
    /// The second and third segments.
    segments: [u64; 2],
}

/// A schema 4 state under `dir` whose third segment holds copies of older deliveries (out of
/// id order) before its own.
fn schema_4_state(dir: &std::path::Path) -> Schema4 {
    let store = Store::open(dir).unwrap();
    let a0 = ingest(&store, "a0", &["r"], 0);
    ingest(&store, "a1", &[], 1);
    let a2 = ingest(&store, "a2", &["r"], 2);
    store.dead_letter(a2.1[0], "gave up", 3).unwrap();
    store.segments.seal().unwrap();
    let b = [
        ingest(&store, "b0", &[], 2 * HOUR).0,
        ingest(&store, "b1", &[], 2 * HOUR + 1).0,
    ];
    store.segments.seal().unwrap();
    // The first segment expires; a0 and a2 are copied into the third.
    let purged = store.purge_expired(2 * HOUR + 10, &keep_for(HOUR)).unwrap();
    assert_eq!((purged.events, purged.copied), (1, 2), "{purged:?}");
    let c0 = ingest(&store, "c0", &["r"], 2 * HOUR + 20);
    let c1 = ingest(&store, "c1", &[], 2 * HOUR + 21).0;
    let segment = |id: EventId| store.event_meta(id).unwrap().unwrap().payload.segment;
    let segments = [segment(b[0]), segment(c0.0)];
    assert_eq!(segment(a0.0), segments[1]);
    assert_eq!(segment(a2.0), segments[1]);
    check_consistency(&store);
    as_schema_4(&store);
    Schema4 {
        a0,
        a2,
        b,
        c0,
        c1,
        segments,
    }
}

/// Checks a state migrated from [`schema_4_state`]: version 5, `event_segments` gone, the
/// second and third segments' ranges are their own ingests, the copies have `segment_moved`
/// entries.
fn check_migrated_schema_4(store: &Store, s: &Schema4) {
    assert_eq!(store.schema_version().unwrap(), 5);
    let t = store.t().unwrap();
    assert!(
        !t.db
            .tree_names()
            .iter()
            .any(|n| n == trees::V4_EVENT_SEGMENTS.as_bytes())
    );
    let range = |segment: u64| -> (u64, u64) {
        let key = segment.to_be_bytes();
        let bytes = t.segment_ranges.get(key).unwrap().unwrap();
        codec::decode(trees::SEGMENT_RANGES, &key, &bytes).unwrap()
    };
    assert_eq!(range(s.segments[0]), (s.b[0].0, s.b[1].0));
    assert_eq!(range(s.segments[1]), (s.c0.0.0, s.c1.0));
    let moved: Vec<Vec<u8>> = t
        .segment_moved
        .iter()
        .keys()
        .map(|k| k.unwrap().to_vec())
        .collect();
    assert_eq!(
        moved,
        [
            segment_key(s.segments[1], s.a0.0).to_vec(),
            segment_key(s.segments[1], s.a2.0).to_vec()
        ]
    );
    drop(t);
    check_consistency(store);
}

/// A schema 4 state is migrated on open to schema 5, and retention then removes exactly the
/// unreferenced deliveries and keeps (copies forward) the referenced ones, copies included.
#[test]
fn a_schema_4_state_migrates_and_retention_keeps_exactly_the_referenced_deliveries() {
    let tmp = tempfile::tempdir().unwrap();
    let s = schema_4_state(tmp.path());
    let store = Store::open(tmp.path()).unwrap();
    check_migrated_schema_4(&store, &s);

    // Everything expires: b0, b1 and c1 go, a0 (live job), a2 (dead job) and c0 (live job)
    // are copied forward out of the third segment; both segments are deleted.
    let purged = store.purge_expired(10 * HOUR, &keep_for(HOUR)).unwrap();
    assert_eq!(
        (purged.events, purged.copied, purged.segments),
        (3, 3, 2),
        "{purged:?}"
    );
    for gone in [s.b[0], s.b[1], s.c1] {
        assert_eq!(store.event_meta(gone).unwrap(), None);
    }
    assert_eq!(store.event(s.a0.0).unwrap(), Some(big("a0", 10_000, 0)));
    assert_eq!(store.event(s.a2.0).unwrap(), Some(big("a2", 10_000, 2)));
    assert_eq!(
        store.event(s.c0.0).unwrap(),
        Some(big("c0", 10_000, 2 * HOUR + 20))
    );
    let listed: Vec<u64> = store
        .segments
        .list()
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert!(!listed.contains(&s.segments[0]) && !listed.contains(&s.segments[1]));
    check_consistency(&store);

    // Their jobs done, they go too.
    assert!(store.ack(s.a0.1[0]).unwrap());
    store.replay(s.a2.1[0], 10 * HOUR).unwrap();
    assert!(store.ack(s.a2.1[0]).unwrap());
    assert!(store.ack(s.c0.1[0]).unwrap());
    store.segments.seal().unwrap();
    let purged = store.purge_expired(20 * HOUR, &keep_for(HOUR)).unwrap();
    assert_eq!((purged.events, purged.segments), (3, 1), "{purged:?}");
    assert_eq!(store.events_stored(), 0);
    assert_eq!(segment_files(&store), 0);
    check_consistency(&store);
}

/// A migration to schema 5 interrupted before its version (part of the new entries written,
/// some wrong) rebuilds them on the next open; one interrupted after it (`event_segments`
/// still there) drops the old tree on the next open.
#[test]
fn an_interrupted_schema_4_migration_finishes_on_the_next_open() {
    let tmp = tempfile::tempdir().unwrap();
    let s = schema_4_state(tmp.path());
    {
        let store = Store::open_db_unmigrated(tmp.path());
        let t = store.t().unwrap();
        // A wrong entry a partial run could not have written, to show it is rebuilt.
        t.segment_moved
            .insert(segment_key(s.segments[0], s.c1), &[][..])
            .unwrap();
        let bytes = codec::encode(trees::SEGMENT_RANGES, "s", &(s.c1.0, s.c1.0)).unwrap();
        t.segment_ranges
            .insert(s.segments[1].to_be_bytes(), bytes)
            .unwrap();
        drop(t);
        store.flush().unwrap();
        assert_eq!(store.read_schema_version().unwrap(), Some(4));
    }
    let store = Store::open(tmp.path()).unwrap();
    check_migrated_schema_4(&store, &s);
    // Interrupted after the version: the old tree is still there.
    let old = store
        .t()
        .unwrap()
        .db
        .open_tree(trees::V4_EVENT_SEGMENTS)
        .unwrap();
    old.insert(segment_key(s.segments[0], s.b[0]), &[][..])
        .unwrap();
    drop(old);
    store.flush().unwrap();
    drop(store);
    let store = Store::open(tmp.path()).unwrap();
    check_migrated_schema_4(&store, &s);
}

#[derive(Debug, Clone)]
enum Op {
    /// A delivery with this many jobs.
    Ingest(usize),
    Ack(usize),
    DeadLetter(usize),
    Replay(usize),
    Seal,
    Advance(u64),
    /// Retention with this age limit (hours) and size limit (0: none; else bytes).
    Purge {
        hours: u64,
        max: u64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3).prop_map(Op::Ingest),
        2 => any::<usize>().prop_map(Op::Ack),
        1 => any::<usize>().prop_map(Op::DeadLetter),
        1 => any::<usize>().prop_map(Op::Replay),
        1 => Just(Op::Seal),
        2 => (0u64..3 * HOUR).prop_map(Op::Advance),
        2 => (0u64..4, prop_oneof![Just(0u64), 1u64..400_000]).prop_map(|(hours, max)| Op::Purge { hours, max }),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the retention settings, segment seals and restarts: a delivery referenced by
    /// a job in the outbox or the dead-letter tree always reads back, whole; the trees stay
    /// consistent.
    #[test]
    fn retention_never_removes_a_delivery_an_unfinished_or_dead_job_needs(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = Some(Store::open(tmp.path()).unwrap());
        let mut now = 0u64;
        // job id → (delivery, live / dead / done)
        let mut jobs: Vec<(u64, EventId, u8)> = Vec::new();
        let mut expected = std::collections::HashMap::new();
        for (n, op) in ops.iter().enumerate() {
            let s = store.as_ref().unwrap();
            match *op {
                Op::Ingest(k) => {
                    let names: Vec<&str> = ["a", "b", "c"][..k].to_vec();
                    let e = big(&format!("e{n}"), 3_000, now);
                    let IngestOutcome::Stored { jobs: ids } =
                        s.ingest(&e, &rules(&names), now, now + 1).unwrap()
                    else {
                        panic!("duplicate");
                    };
                    let id = s.events_page(None, 1).unwrap()[0].id;
                    expected.insert(id, e);
                    jobs.extend(ids.into_iter().map(|j| (j, id, 0)));
                }
                Op::Ack(p) if !jobs.is_empty() => {
                    let i = p % jobs.len();
                    if jobs[i].2 == 0 {
                        assert!(s.ack(jobs[i].0).unwrap());
                        jobs[i].2 = 2;
                    }
                }
                Op::DeadLetter(p) if !jobs.is_empty() => {
                    let i = p % jobs.len();
                    if jobs[i].2 == 0 {
                        s.dead_letter(jobs[i].0, "failed", now).unwrap();
                        jobs[i].2 = 1;
                    }
                }
                Op::Replay(p) if !jobs.is_empty() => {
                    let i = p % jobs.len();
                    if jobs[i].2 == 1 {
                        s.replay(jobs[i].0, now).unwrap();
                        jobs[i].2 = 0;
                    }
                }
                Op::Seal => {
                    s.segments.seal().unwrap();
                }
                Op::Advance(ms) => now += ms,
                Op::Purge { hours, max } => {
                    let retention = Retention {
                        event_retention_ms: hours * HOUR,
                        max_state_bytes: if max == 0 { u64::MAX } else { max },
                    };
                    s.purge_expired(now, &retention).unwrap();
                }
                Op::Reopen => {
                    s.flush().unwrap();
                    drop(store.take());
                    store = Some(Store::open(tmp.path()).unwrap());
                }
                _ => {}
            }
            let s = store.as_ref().unwrap();
            for (job, id, place) in &jobs {
                if *place < 2 {
                    let read = s.event(*id).unwrap();
                    prop_assert_eq!(read.as_ref(), expected.get(id), "job {} lost its delivery", job);
                }
            }
            check_consistency(s);
        }
    }
}
