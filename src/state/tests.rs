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
            .put(&store.meta, trees::META, meta_keys::SCHEMA_VERSION, &7u32)
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
        store.applied.insert("set", garbage).unwrap();
        assert_corrupt_applied(&store.applied().unwrap_err(), "\"set\"");
        assert!(store.get_applied("a").is_err());
    }
    // A set out of order, or with a key twice.
    for keys in [["b", "a"], ["a", "a"]] {
        let set: Vec<AppliedResource> = keys.iter().map(|k| res(k, "1")).collect();
        let bytes = codec::encode(trees::APPLIED, "set", &set).unwrap();
        store.applied.insert("set", bytes).unwrap();
        assert!(matches!(store.get_applied("a"), Err(Error::Corrupt { .. })));
    }
    // An apply replaces a corrupt set (it only summarises what was applied).
    store.record_applied_set("rev2", &[res("c", "1")]).unwrap();
    assert_eq!(store.applied().unwrap(), vec![res("c", "1")]);

    store
        .meta
        .insert(meta_keys::APPLIED_REVISION, &b"\x01 42"[..])
        .unwrap();
    assert!(matches!(
        store.applied_revision(),
        Err(Error::Corrupt { tree: "meta", .. })
    ));
    store
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

/// A schema 1 state (deliveries keyed by event key) is migrated on open: every delivery moves
/// to the inbox with its reference count, live and dead jobs point at it, and the jobs run on.
#[test]
fn schema_1_deliveries_are_migrated() {
    use crate::state::tests_queue::event;
    let tmp = tempfile::tempdir().unwrap();
    let (live, dead) = {
        let store = Store::open(tmp.path()).unwrap();
        let ids = match store
            .ingest(&event("i", "1"), &["a".into(), "b".into()], 0, 500)
            .unwrap()
        {
            IngestOutcome::Stored { jobs } => jobs,
            IngestOutcome::Duplicate => unreachable!(),
        };
        store.ingest(&event("i", "2"), &[], 0, 500).unwrap();
        store.dead_letter(ids[1], "gone", 10).unwrap();
        // Rewrite it the way schema 1 stored it.
        let v1_events = store.db.open_tree(trees::V1_EVENTS).unwrap();
        let v1_refs = store.db.open_tree(trees::V1_EVENT_REFS).unwrap();
        for item in store.inbox.iter() {
            let (k, v) = item.unwrap();
            let e: crate::event::Event = codec::decode(trees::INBOX, &k, &v).unwrap();
            v1_events.insert(e.key(), v).unwrap();
        }
        v1_refs
            .insert(
                "i/1",
                codec::encode(trees::V1_EVENT_REFS, "i/1", &2u64).unwrap(),
            )
            .unwrap();
        store.inbox.clear().unwrap();
        store.inbox_refs.clear().unwrap();
        for (tree, name) in [(&store.outbox, trees::OUTBOX), (&store.dead, trees::DEAD)] {
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
        store
            .put(&store.meta, trees::META, meta_keys::SCHEMA_VERSION, &1u32)
            .unwrap();
        store.flush().unwrap();
        (ids[0], ids[1])
    };
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(
        !store
            .db
            .tree_names()
            .iter()
            .any(|n| n == trees::V1_EVENTS.as_bytes())
    );
    let job = store.job(live).unwrap().unwrap();
    assert_eq!(job.event_ref.until_ms, 500);
    assert_eq!(store.event(job.event_ref).unwrap(), Some(event("i", "1")));
    let dead_job = store.dead_job(dead).unwrap().unwrap().job;
    assert_eq!(dead_job.event_ref, job.event_ref);
    assert!(store.event_by_key("i/2").unwrap().is_some());
    crate::state::tests_queue::check_consistency(&store);
    // The references moved with the deliveries: acknowledging both jobs frees the event.
    assert!(store.ack(live).unwrap());
    store.replay(dead, 20).unwrap();
    assert!(store.ack(dead).unwrap());
    assert_eq!(store.purge_expired(500).unwrap().events, 2);
    assert!(store.inbox.is_empty() && store.inbox_refs.is_empty());
}

/// Rewrites `store` the way schema 2 stored applied resources: one record per key.
fn as_schema_2(store: &Store, records: &[(&str, AppliedResource)]) {
    for (key, r) in records {
        let bytes = codec::encode(trees::APPLIED, key, r).unwrap();
        store.applied.insert(key.as_bytes(), bytes).unwrap();
    }
    store
        .put(&store.meta, trees::META, meta_keys::SCHEMA_VERSION, &2u32)
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
    let keys: Vec<sled::IVec> = store.applied.iter().keys().map(Result::unwrap).collect();
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
    store.applied.insert("set", &b"\x01{not json"[..]).unwrap();
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
