//! Tests of the state store.

use serde_json::json;

use super::*;

fn res(key: &str, fp: &str) -> AppliedResource {
    AppliedResource {
        key: key.to_owned(),
        fingerprint: fp.to_owned(),
        summary: json!({ "name": key }),
    }
}

#[test]
fn empty_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let store = Store::open(&dir).unwrap();
    assert!(dir.is_dir());
    assert_eq!(store.dir(), dir);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.applied_revision().unwrap(), None);
    assert!(store.applied().unwrap().is_empty());
    assert_eq!(store.get_applied("x").unwrap(), None);
    assert!(format!("{store:?}").contains("Store"));
}

#[test]
fn record_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = Store::open(tmp.path()).unwrap();
        store
            .record_applied_set("rev1", &[res("b", "fb"), res("a", "fa"), res("é", "fe")])
            .unwrap();
    }
    let store = Store::open_existing(tmp.path()).unwrap().unwrap();
    assert_eq!(store.applied_revision().unwrap().as_deref(), Some("rev1"));
    let keys: Vec<String> = store
        .applied()
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, ["a", "b", "é"]);
    assert_eq!(store.get_applied("b").unwrap(), Some(res("b", "fb")));

    store.set_applied_revision("rev2").unwrap();
    assert_eq!(store.applied_revision().unwrap().as_deref(), Some("rev2"));
}

#[test]
fn a_new_set_replaces_the_old() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store
        .record_applied_set("rev1", &[res("a", "1"), res("b", "1")])
        .unwrap();
    store.record_applied_set("rev2", &[res("a", "2")]).unwrap();
    assert_eq!(store.applied().unwrap(), vec![res("a", "2")]);
    assert_eq!(store.applied_revision().unwrap().as_deref(), Some("rev2"));
}

#[test]
fn invalid_batch_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store.record_applied_set("rev1", &[res("a", "1")]).unwrap();
    for bad in [vec![res("b", "1"), res("b", "2")], vec![res("", "1")]] {
        let err = store.record_applied_set("rev2", &bad).unwrap_err();
        assert!(matches!(err, Error::InvalidBatch { .. }), "{err}");
    }
    assert_eq!(store.applied().unwrap(), vec![res("a", "1")]);
    assert_eq!(store.applied_revision().unwrap().as_deref(), Some("rev1"));
}

#[test]
fn newer_schema_refused() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = Store::open(tmp.path()).unwrap();
        store
            .put(
                &store.t().unwrap().meta,
                trees::META,
                meta_keys::SCHEMA_VERSION,
                &7u32,
            )
            .unwrap();
        store.flush().unwrap();
    }
    for result in [
        Store::open(tmp.path()).map(Some),
        Store::open_existing(tmp.path()),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                Error::NewerSchema {
                    found: 7,
                    supported: SCHEMA_VERSION,
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&tmp.path().display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!(
                "written by schema version 7, this build understands up to {SCHEMA_VERSION}: \
                 upgrade supportopsd"
            )),
            "{msg}"
        );
    }
}

#[test]
fn corrupt_values_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store.record_applied_set("rev1", &[res("a", "1")]).unwrap();
    for garbage in [
        &b""[..],
        b"\x07{}",
        b"\x01{not json",
        b"\x01{\"key\":\"a\"}",
    ] {
        store.t().unwrap().applied.insert("set", garbage).unwrap();
        assert_corrupt_applied(&store.applied().unwrap_err(), "\"set\"");
        assert!(store.get_applied("a").is_err());
    }
    // A set out of order, or with a key twice.
    for keys in [["b", "a"], ["a", "a"]] {
        let set: Vec<AppliedResource> = keys.iter().map(|k| res(k, "1")).collect();
        let bytes = codec::encode(trees::APPLIED, "set", &set).unwrap();
        store.t().unwrap().applied.insert("set", bytes).unwrap();
        assert!(matches!(store.get_applied("a"), Err(Error::Corrupt { .. })));
    }
    // An apply replaces a corrupt set (it only summarises what was applied).
    store.record_applied_set("rev2", &[res("c", "1")]).unwrap();
    assert_eq!(store.applied().unwrap(), vec![res("c", "1")]);

    store
        .t()
        .unwrap()
        .meta
        .insert(meta_keys::APPLIED_REVISION, &b"\x01 42"[..])
        .unwrap();
    assert!(matches!(
        store.applied_revision(),
        Err(Error::Corrupt { tree: "meta", .. })
    ));
    store
        .t()
        .unwrap()
        .meta
        .insert(meta_keys::SCHEMA_VERSION, &b"garbage"[..])
        .unwrap();
    store.flush().unwrap();
    drop(store);
    assert!(matches!(
        Store::open(tmp.path()),
        Err(Error::Corrupt { tree: "meta", .. })
    ));
}

#[test]
fn open_existing_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no").join("state");
    assert!(Store::open_existing(&missing).unwrap().is_none());
    assert!(!tmp.path().join("no").exists());
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(Store::open_existing(&empty).unwrap().is_none());
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
}

#[test]
fn double_open_is_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = Store::open(tmp.path()).unwrap();
    for result in [
        Store::open(tmp.path()).map(Some),
        Store::open_existing(tmp.path()),
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("in use by another supportopsd process")
        );
    }
}

/// Rewrites a schema 4 `store` the way schema 3 stored deliveries: `inbox` keyed by dedupe
/// window end ‖ sequence (the event id), the dedupe window by event key, jobs pointing at
/// their delivery with `event_ref`, references keyed like `inbox`. The caller drops the store
/// and deletes `events/` (schema 3 had no segment files).
fn as_schema_3(store: &Store) {
    use super::keys::due_key;
    let inbox = store.t().unwrap().db.open_tree(trees::V3_INBOX).unwrap();
    let dedupe = store.t().unwrap().db.open_tree(trees::V3_DEDUPE).unwrap();
    let mut old_key = std::collections::HashMap::new();
    for item in store.t().unwrap().events.iter() {
        let (k, v) = item.unwrap();
        let meta: EventMeta = codec::decode(trees::EVENTS, &k, &v).unwrap();
        let key = due_key(meta.dedupe_until_ms, meta.id.0);
        let payload = store.load_payload(meta.id, meta.payload).unwrap();
        inbox.insert(key, payload).unwrap();
        let until = store.dedupe_until(&meta.key).unwrap().unwrap();
        dedupe
            .insert(
                meta.key.as_bytes(),
                codec::encode(trees::V3_DEDUPE, "k", &until).unwrap(),
            )
            .unwrap();
        old_key.insert(meta.id, (meta.dedupe_until_ms, meta.id.0));
    }
    for (tree, name) in [
        (&store.t().unwrap().outbox, trees::OUTBOX),
        (&store.t().unwrap().dead, trees::DEAD),
    ] {
        for item in tree.iter() {
            let (k, v) = item.unwrap();
            let mut value: serde_json::Value = codec::decode(name, &k, &v).unwrap();
            let job = if name == trees::DEAD {
                &mut value["job"]
            } else {
                &mut value
            };
            let id: EventId = serde_json::from_value(job["event_id"].clone()).unwrap();
            let (until_ms, seq) = old_key[&id];
            let job = job.as_object_mut().unwrap();
            job.remove("event_id");
            job.insert(
                "event_ref".into(),
                json!({"until_ms": until_ms, "seq": seq}),
            );
            tree.insert(k, codec::encode(name, "job", &value).unwrap())
                .unwrap();
        }
    }
    let refs: Vec<(EventId, sled::IVec)> = store
        .t()
        .unwrap()
        .inbox_refs
        .iter()
        .map(|item| {
            let (k, v) = item.unwrap();
            (EventId::parse(trees::INBOX_REFS, &k).unwrap(), v)
        })
        .collect();
    store.t().unwrap().inbox_refs.clear().unwrap();
    for (id, v) in refs {
        let (until, seq) = old_key[&id];
        store
            .t()
            .unwrap()
            .inbox_refs
            .insert(due_key(until, seq), v)
            .unwrap();
    }
    for tree in [
        &store.t().unwrap().events,
        &store.t().unwrap().segment_ranges,
        &store.t().unwrap().segment_moved,
        &store.t().unwrap().dedupe,
    ] {
        tree.clear().unwrap();
    }
    store
        .put(
            &store.t().unwrap().meta,
            trees::META,
            meta_keys::SCHEMA_VERSION,
            &3u32,
        )
        .unwrap();
    store.flush().unwrap();
}

/// Three deliveries in a schema 3 state under `dir`: `i/1` with a live job `a` and a dead job
/// `b`, `i/2` with no job (both until 500), `i/3` with a live job (until 900). Returns the
/// live job of `i/1`, the dead job and the job of `i/3`.
fn schema_3_state(dir: &std::path::Path) -> (u64, u64, u64) {
    use crate::state::tests_queue::event;
    let ids = {
        let store = Store::open(dir).unwrap();
        let mut first = event("i", "1");
        first.received_at_ms = 7;
        let IngestOutcome::Stored { jobs } = store
            .ingest(&first, &["a".into(), "b".into()], 10, 500)
            .unwrap()
        else {
            unreachable!()
        };
        store.ingest(&event("i", "2"), &[], 20, 500).unwrap();
        let IngestOutcome::Stored { jobs: third } = store
            .ingest(&event("i", "3"), &["c".into()], 30, 900)
            .unwrap()
        else {
            unreachable!()
        };
        store.dead_letter(jobs[1], "gone", 40).unwrap();
        as_schema_3(&store);
        (jobs[0], jobs[1], third[0])
    };
    std::fs::remove_dir_all(dir.join("events")).unwrap();
    ids
}

/// Checks a state migrated from [`schema_3_state`].
fn check_migrated_schema_3(store: &Store, (live, dead, third): (u64, u64, u64)) {
    use crate::state::tests_queue::event;
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let names = store.t().unwrap().db.tree_names();
    for legacy in [
        trees::V3_INBOX,
        trees::V3_DEDUPE,
        trees::V4_MOVED,
        trees::V4_EVENT_SEGMENTS,
    ] {
        assert!(!names.iter().any(|n| n == legacy.as_bytes()), "{legacy}");
    }
    assert_eq!(store.events_stored(), 3, "each delivery moved once");
    // Ids in stored order; the received time is the event's own.
    let page = store.events_page(None, 10).unwrap();
    let keys: Vec<&str> = page.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(keys, ["i/3", "i/2", "i/1"]);
    assert!(page[0].id > page[1].id && page[1].id > page[2].id);
    assert_eq!(page[2].received_ms, 7);
    assert_eq!(page[2].revision, None);
    assert_eq!(page[2].dedupe_until_ms, 500);
    assert_eq!(page[2].rules, ["a", "b"]);
    let job = store.job(live).unwrap().unwrap();
    let mut first = event("i", "1");
    first.received_at_ms = 7;
    assert_eq!(job.event_id, page[2].id);
    assert_eq!(store.event(job.event_id).unwrap(), Some(first));
    assert_eq!(
        store.dead_job(dead).unwrap().unwrap().job.event_id,
        job.event_id
    );
    assert_eq!(store.job(third).unwrap().unwrap().event_id, page[0].id);
    // The dedupe windows moved: still duplicates before their end.
    assert_eq!(store.dedupe_until("i/3").unwrap(), Some(900));
    assert_eq!(
        store.ingest(&event("i", "3"), &[], 800, 1_800).unwrap(),
        IngestOutcome::Duplicate
    );
    crate::state::tests_queue::check_consistency(store);
}

/// A schema 3 state is migrated on open: every delivery gets an id in stored order, its
/// payload moves to the segments, jobs (live and dead) point at it by id, references and
/// dedupe windows follow; then the jobs run on and retention works on it.
#[test]
fn schema_3_deliveries_are_migrated() {
    let tmp = tempfile::tempdir().unwrap();
    let jobs = schema_3_state(tmp.path());
    let store = Store::open(tmp.path()).unwrap();
    check_migrated_schema_3(&store, jobs);
    // The references moved with the deliveries: acknowledging both jobs of i/1 frees it.
    let retention = crate::state::tests_queue::keep_for(0);
    let before = store.purge_expired(1_000, &retention).unwrap();
    assert_eq!(before.events, 1, "only i/2 is unreferenced");
    assert!(store.ack(jobs.0).unwrap());
    store.replay(jobs.1, 20).unwrap();
    assert!(store.ack(jobs.1).unwrap());
    assert_eq!(store.purge_expired(1_000, &retention).unwrap().events, 1);
    assert_eq!(store.events_stored(), 1);
    crate::state::tests_queue::check_consistency(&store);
}

/// A migration interrupted after it moved the deliveries (the version still says 3) finishes
/// on the next open, moving nothing twice.
#[test]
fn an_interrupted_schema_3_migration_finishes_on_the_next_open() {
    let tmp = tempfile::tempdir().unwrap();
    let jobs = schema_3_state(tmp.path());
    {
        let store = Store::open_db_unmigrated(tmp.path());
        store.move_v3_deliveries().unwrap();
        assert_eq!(store.events_stored(), 3);
        assert_eq!(store.read_schema_version().unwrap(), Some(3));
    }
    let store = Store::open(tmp.path()).unwrap();
    check_migrated_schema_3(&store, jobs);
    drop(store);
    // And opening again changes nothing.
    let store = Store::open(tmp.path()).unwrap();
    check_migrated_schema_3(&store, jobs);
}

/// A schema 1 state (deliveries keyed by event key) is migrated on open through schemas 2 and
/// 3: every delivery gets an id, live and dead jobs point at it, and the jobs run on.
#[test]
fn schema_1_deliveries_are_migrated() {
    let tmp = tempfile::tempdir().unwrap();
    let jobs = schema_3_state(tmp.path());
    {
        // Schema 3 → 1: deliveries keyed by event key, jobs without a reference.
        let store = Store::open_db_unmigrated(tmp.path());
        let inbox = store.t().unwrap().db.open_tree(trees::V3_INBOX).unwrap();
        let v1_events = store.t().unwrap().db.open_tree(trees::V1_EVENTS).unwrap();
        for item in inbox.iter() {
            let (k, v) = item.unwrap();
            let e: crate::event::Event = codec::decode(trees::V3_INBOX, &k, &v).unwrap();
            v1_events.insert(e.key(), v).unwrap();
        }
        inbox.clear().unwrap();
        store.t().unwrap().inbox_refs.clear().unwrap();
        for (tree, name) in [
            (&store.t().unwrap().outbox, trees::OUTBOX),
            (&store.t().unwrap().dead, trees::DEAD),
        ] {
            for item in tree.iter() {
                let (k, v) = item.unwrap();
                let mut value: serde_json::Value = codec::decode(name, &k, &v).unwrap();
                let job = if name == trees::DEAD {
                    &mut value["job"]
                } else {
                    &mut value
                };
                job.as_object_mut().unwrap().remove("event_ref");
                tree.insert(k, codec::encode(name, "job", &value).unwrap())
                    .unwrap();
            }
        }
        // Schema 1 kept the applied resources one per key (migrated by step 2 → 3).
        store
            .put(
                &store.t().unwrap().meta,
                trees::META,
                meta_keys::SCHEMA_VERSION,
                &1u32,
            )
            .unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(tmp.path()).unwrap();
    assert!(
        !store
            .t()
            .unwrap()
            .db
            .tree_names()
            .iter()
            .any(|n| n == trees::V1_EVENTS.as_bytes())
    );
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.events_stored(), 3);
    let job = store.job(jobs.0).unwrap().unwrap();
    let meta = store.event_meta(job.event_id).unwrap().unwrap();
    assert_eq!((meta.key.as_str(), meta.dedupe_until_ms), ("i/1", 500));
    assert_eq!(
        store.dead_job(jobs.1).unwrap().unwrap().job.event_id,
        job.event_id
    );
    crate::state::tests_queue::check_consistency(&store);
    assert!(store.ack(jobs.0).unwrap());
    store.replay(jobs.1, 20).unwrap();
    assert!(store.ack(jobs.1).unwrap());
    assert!(store.ack(jobs.2).unwrap());
    let retention = crate::state::tests_queue::keep_for(0);
    assert_eq!(store.purge_expired(1_000, &retention).unwrap().events, 3);
    assert!(store.t().unwrap().events.is_empty() && store.t().unwrap().inbox_refs.is_empty());
}

/// Rewrites `store` the way schema 2 stored applied resources: one record per key.
fn as_schema_2(store: &Store, records: &[(&str, AppliedResource)]) {
    for (key, r) in records {
        let bytes = codec::encode(trees::APPLIED, key, r).unwrap();
        store
            .t()
            .unwrap()
            .applied
            .insert(key.as_bytes(), bytes)
            .unwrap();
    }
    store
        .put(
            &store.t().unwrap().meta,
            trees::META,
            meta_keys::SCHEMA_VERSION,
            &2u32,
        )
        .unwrap();
    store.flush().unwrap();
}

/// A schema 2 state (one record per applied resource) is migrated on open to the one set
/// record, with nothing lost; an apply then builds on it.
#[test]
fn schema_2_applied_resources_are_migrated() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = Store::open(tmp.path()).unwrap();
        store.set_applied_revision("rev1").unwrap();
        as_schema_2(
            &store,
            &[
                ("b", res("b", "fb")),
                ("a", res("a", "fa")),
                ("é", res("é", "fe")),
            ],
        );
    }
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        store.applied().unwrap(),
        vec![res("a", "fa"), res("b", "fb"), res("é", "fe")]
    );
    let keys: Vec<sled::IVec> = store
        .t()
        .unwrap()
        .applied
        .iter()
        .keys()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        keys,
        [sled::IVec::from("set")],
        "only the set record is left"
    );
    assert_eq!(store.applied_revision().unwrap().as_deref(), Some("rev1"));
    store
        .record_applied_set("rev2", &[res("a", "fa"), res("c", "fc"), res("é", "fe")])
        .unwrap();
    assert_eq!(
        store.applied().unwrap(),
        vec![res("a", "fa"), res("c", "fc"), res("é", "fe")]
    );
}

/// A schema 2 record that does not repeat its key is refused at migration: the state is not
/// opened.
#[test]
fn a_corrupt_schema_2_record_stops_the_migration() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = Store::open(tmp.path()).unwrap();
        as_schema_2(&store, &[("a", res("b", "1"))]);
    }
    assert_corrupt_applied(&Store::open(tmp.path()).unwrap_err(), "record is for key");
}

/// The whole set at once: written when it changes, otherwise only the revision; the stored
/// set is then exactly the given resources, sorted.
#[test]
fn record_applied_set_writes_only_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    assert!(
        store
            .record_applied_set("rev1", &[res("b", "1"), res("a", "1")])
            .unwrap()
    );
    assert_eq!(store.applied().unwrap(), vec![res("a", "1"), res("b", "1")]);
    assert!(
        !store
            .record_applied_set("rev2", &[res("a", "1"), res("b", "1")])
            .unwrap(),
        "the same set in another order is unchanged"
    );
    assert_eq!(store.applied_revision().unwrap().as_deref(), Some("rev2"));
    assert!(store.record_applied_set("rev3", &[res("a", "2")]).unwrap());
    assert_eq!(store.applied().unwrap(), vec![res("a", "2")]);
    for bad in [vec![res("", "1")], vec![res("c", "1"), res("c", "2")]] {
        let err = store.record_applied_set("rev4", &bad).unwrap_err();
        assert!(matches!(err, Error::InvalidBatch { .. }), "{err}");
    }
    assert_eq!(store.applied_revision().unwrap().as_deref(), Some("rev3"));
    // A corrupt set is replaced.
    store
        .t()
        .unwrap()
        .applied
        .insert("set", &b"\x01{not json"[..])
        .unwrap();
    assert!(store.record_applied_set("rev5", &[res("d", "1")]).unwrap());
    assert_eq!(store.applied().unwrap(), vec![res("d", "1")]);
}

/// `err` says that the `applied` tree is corrupt, and mentions `detail`.
fn assert_corrupt_applied(err: &Error, detail: &str) {
    assert!(
        matches!(
            err,
            Error::Corrupt {
                tree: "applied",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(detail), "{err}");
}

/// sled frees what it retires through crossbeam-epoch, queued on the calling thread until a bag
/// of 64 fills; a state call hands the thread's queue over ([`release_garbage`]), so a free
/// queued on a thread runs soon after that thread's next calls, however few frees follow it.
#[test]
fn a_free_queued_on_a_thread_runs_after_its_next_state_calls() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let freed = Arc::new(AtomicBool::new(false));
    let flag = freed.clone();
    std::thread::scope(|s| {
        s.spawn(|| {
            // One free in this thread's otherwise empty bag: without the hand-over it would
            // wait there for 63 more.
            crossbeam_epoch::pin().defer(move || flag.store(true, Ordering::SeqCst));
            for _ in 0..50 {
                store.applied_revision().unwrap();
                if freed.load(Ordering::SeqCst) {
                    return;
                }
                #[allow(clippy::disallowed_methods)] // a plain thread, not a runtime's
                std::thread::sleep(RELEASE_EVERY + std::time::Duration::from_millis(10));
            }
        });
    });
    assert!(
        freed.load(Ordering::SeqCst),
        "the free still waits after 50 state calls over 5 s"
    );
}
