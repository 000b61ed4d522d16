//! Tests of the inbox, the outbox and the audit log, through the state interface (`&dyn State`;
//! `sled` names the backend where a test checks or corrupts its trees).

use serde_json::{Map, json};

use super::keys::{EventId, due_key, job_key, segment_key};
use super::*;
use crate::event::Event;
use crate::manifest::IntegrationId;
use crate::platforms::PlatformKind;

/// A test event.
pub(super) fn event(integration: &str, id: &str) -> Event {
    Event {
        platform: PlatformKind::Freshdesk,
        integration: IntegrationId::parse(integration).unwrap(),
        name: "ticket_created".to_owned(),
        id: id.to_owned(),
        time: None,
        received_at_ms: 0,
        actor: None,
        actors: Vec::new(),
        objects: Map::new(),
        changes: Map::new(),
        payload: json!({ "ticket": { "id": 1 } }),
    }
}

pub(super) fn rules(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn stored(outcome: IngestOutcome) -> Vec<u64> {
    match outcome {
        IngestOutcome::Stored { jobs } => jobs,
        IngestOutcome::Duplicate => panic!("unexpected duplicate"),
    }
}

/// Checks the structural invariants of the queue trees: every outbox job is stored under its
/// id and has exactly one `due` entry at its `ready_ms`; no `due` entry is dangling; no job is
/// both in the outbox and dead; `inbox_refs` counts exactly the jobs referencing each
/// delivery, and every referenced delivery exists and reads; every stored delivery is found
/// in the segment its record names (in that segment's `segment_ranges` range, or by a
/// `segment_moved` entry), every `segment_moved` entry names a stored delivery in that
/// segment, and what retention reads of each segment is exactly the deliveries in it.
pub(super) fn check_consistency(store: &Store) {
    let mut expected_due = std::collections::BTreeSet::new();
    let mut refs = std::collections::BTreeMap::<EventId, u64>::new();
    for item in store.t().unwrap().outbox.iter() {
        let (k, v) = item.unwrap();
        let job: Job = codec::decode(trees::OUTBOX, &k, &v).unwrap();
        assert_eq!(&k[..], job_key(job.id));
        assert_eq!(job.results.len(), job.step, "job {}", job.id);
        assert!(
            !store.t().unwrap().dead.contains_key(k).unwrap(),
            "job {} live and dead",
            job.id
        );
        expected_due.insert(due_key(job.ready_ms(), job.id).to_vec());
        *refs.entry(job.event_id).or_default() += 1;
    }
    for item in store.t().unwrap().dead.iter() {
        let (k, v) = item.unwrap();
        let dead: DeadJob = codec::decode(trees::DEAD, &k, &v).unwrap();
        assert_eq!(&k[..], job_key(dead.job.id));
        assert_eq!(dead.job.lease_until_ms, None);
        *refs.entry(dead.job.event_id).or_default() += 1;
    }
    let due: std::collections::BTreeSet<Vec<u8>> = store
        .t()
        .unwrap()
        .due
        .iter()
        .keys()
        .map(|k| k.unwrap().to_vec())
        .collect();
    assert_eq!(due, expected_due, "due index out of step with the outbox");
    let stored_refs: std::collections::BTreeMap<EventId, u64> = store
        .t()
        .unwrap()
        .inbox_refs
        .iter()
        .map(|item| {
            let (k, v) = item.unwrap();
            let n: u64 = codec::decode(trees::INBOX_REFS, &k, &v).unwrap();
            (EventId::parse(trees::INBOX_REFS, &k).unwrap(), n)
        })
        .collect();
    assert_eq!(stored_refs, refs, "inbox_refs out of step with the jobs");
    for at in refs.keys() {
        assert!(store.event(*at).unwrap().is_some(), "delivery {at} missing");
    }
    let t = store.t().unwrap();
    let mut ranges = std::collections::BTreeMap::<u64, (u64, u64)>::new();
    for item in t.segment_ranges.iter() {
        let (k, v) = item.unwrap();
        let segment = u64::from_be_bytes(k.as_ref().try_into().unwrap());
        let (first, last): (u64, u64) = codec::decode(trees::SEGMENT_RANGES, &k, &v).unwrap();
        assert!(first <= last, "segment {segment}: range {first}..={last}");
        ranges.insert(segment, (first, last));
    }
    let moved: std::collections::BTreeSet<Vec<u8>> = t
        .segment_moved
        .iter()
        .keys()
        .map(|k| k.unwrap().to_vec())
        .collect();
    let mut by_segment = std::collections::BTreeMap::<u64, Vec<EventId>>::new();
    let mut expected_moved = std::collections::BTreeSet::new();
    for item in t.events.iter() {
        let (k, v) = item.unwrap();
        let meta: EventMeta = codec::decode(trees::EVENTS, &k, &v).unwrap();
        assert_eq!(&k[..], meta.id.key());
        let segment = meta.payload.segment;
        let key = segment_key(segment, meta.id).to_vec();
        let in_range = ranges
            .get(&segment)
            .is_some_and(|(first, last)| (*first..=*last).contains(&meta.id.0));
        assert!(
            in_range || moved.contains(&key),
            "delivery {} in segment {segment} is in neither its range nor segment_moved",
            meta.id
        );
        if moved.contains(&key) {
            expected_moved.insert(key);
        }
        by_segment.entry(segment).or_default().push(meta.id);
    }
    assert_eq!(
        moved, expected_moved,
        "segment_moved names deliveries not in that segment"
    );
    drop(t);
    for info in store.segments.list().unwrap() {
        let found: Vec<EventId> = store
            .segment_events(info.id)
            .unwrap()
            .iter()
            .map(|m| m.id)
            .collect();
        let expected = by_segment.remove(&info.id).unwrap_or_default();
        assert_eq!(found, expected, "retention's view of segment {}", info.id);
    }
    assert!(
        by_segment.is_empty(),
        "deliveries in segments that are gone: {by_segment:?}"
    );
    super::history::check_index(store);
}

#[test]
fn ingest_stores_event_and_jobs_and_dedupes() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    assert_eq!(store.queue_depth(), 0);
    assert_eq!(store.oldest_due_ms().unwrap(), None);

    let ev = event("freshdesk-main", "42");
    let jobs = stored(
        store
            .ingest(&ev, &rules(&["notify", "tag"]), 1_000, 61_000)
            .unwrap(),
    );
    assert_eq!(jobs.len(), 2);
    assert_ne!(jobs[0], jobs[1]);
    assert_eq!(
        sled.event_by_key("freshdesk-main/42").unwrap(),
        Some(ev.clone())
    );
    assert_eq!(
        store.dedupe_until("freshdesk-main/42").unwrap(),
        Some(61_000)
    );
    assert_eq!(store.queue_depth(), 2);
    assert_eq!(store.oldest_due_ms().unwrap(), Some(1_000));
    let job = store.job(jobs[0]).unwrap().unwrap();
    assert_eq!(
        job,
        Job {
            id: jobs[0],
            event_key: "freshdesk-main/42".to_owned(),
            event_id: job.event_id,
            rule: "notify".to_owned(),
            step: 0,
            results: vec![],
            attempts: 0,
            due_ms: 1_000,
            lease_until_ms: None,
            last_error: None,
            created_ms: 1_000,
            in_flight: None,
        }
    );
    let meta = store.event_meta(job.event_id).unwrap().unwrap();
    assert_eq!(meta.dedupe_until_ms, 61_000);
    assert_eq!(meta.received_ms, 1_000);
    assert_eq!(meta.rules, ["notify", "tag"]);
    assert_eq!(meta.key, "freshdesk-main/42");
    assert_eq!(store.event(job.event_id).unwrap(), Some(ev.clone()));
    assert_eq!(store.job(jobs[1]).unwrap().unwrap().event_id, job.event_id);
    assert_eq!(store.job(jobs[1]).unwrap().unwrap().rule, "tag");
    check_consistency(&sled);

    // A redelivery inside the window writes nothing, even with other rules.
    let mut again = ev.clone();
    again.payload = json!("changed");
    for now in [1_001, 60_999] {
        assert_eq!(
            store
                .ingest(&again, &rules(&["other"]), now, 999_999)
                .unwrap(),
            IngestOutcome::Duplicate
        );
    }
    assert_eq!(store.queue_depth(), 2);
    assert_eq!(
        sled.event_by_key("freshdesk-main/42").unwrap(),
        Some(ev.clone())
    );
    assert_eq!(
        store.dedupe_until("freshdesk-main/42").unwrap(),
        Some(61_000)
    );

    // The same platform id on another integration is another event.
    let other = event("freshdesk-eu", "42");
    assert_eq!(
        stored(
            store
                .ingest(&other, &rules(&["notify"]), 1_000, 61_000)
                .unwrap()
        )
        .len(),
        1
    );
    assert_eq!(store.queue_depth(), 3);
    check_consistency(&sled);
}

#[test]
fn event_without_rules_is_stored_and_deduped() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let ev = event("slack-ops", "Ev1");
    assert_eq!(
        store.ingest(&ev, &[], 10, 20).unwrap(),
        IngestOutcome::Stored { jobs: vec![] }
    );
    assert_eq!(
        sled.event_by_key("slack-ops/Ev1").unwrap(),
        Some(ev.clone())
    );
    assert_eq!(store.queue_depth(), 0);
    assert_eq!(
        store.ingest(&ev, &[], 19, 30).unwrap(),
        IngestOutcome::Duplicate
    );
    check_consistency(&sled);
}

#[test]
fn dedupe_expiry_allows_redelivery() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let ev = event("freshdesk-main", "7");
    let first = stored(store.ingest(&ev, &rules(&["r"]), 100, 200).unwrap());
    // Expired exactly at its expiry time.
    let second = stored(store.ingest(&ev, &rules(&["r"]), 200, 300).unwrap());
    assert_ne!(first, second);
    assert_eq!(store.dedupe_until("freshdesk-main/7").unwrap(), Some(300));
    assert_eq!(store.queue_depth(), 2);
    check_consistency(&sled);
    assert!(store.ack(first[0]).unwrap());
    check_consistency(&sled);
    // Each delivery is kept on its own: the first one, done and past retention, goes; the
    // second stays while its job is pending.
    assert_eq!(
        store.purge_expired(250, &keep_for(100)).unwrap(),
        Purged {
            events: 1,
            ..Purged::default()
        }
    );
    assert!(sled.event_by_key("freshdesk-main/7").unwrap().is_some());
    check_consistency(&sled);
}

#[test]
fn a_renewed_lease_keeps_the_job_from_being_leased_again() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let a = stored(
        store
            .ingest(&event("i", "a"), &rules(&["r"]), 100, 10_000)
            .unwrap(),
    )[0];
    let b = stored(
        store
            .ingest(&event("i", "b"), &rules(&["r"]), 100, 10_000)
            .unwrap(),
    )[0];
    assert_eq!(store.lease_due(100, 100, 10).unwrap().len(), 2);
    assert!(store.renew_lease(a, 500).unwrap());
    // Never shortened.
    assert!(store.renew_lease(a, 150).unwrap());
    assert_eq!(store.job(a).unwrap().unwrap().lease_until_ms, Some(500));
    check_consistency(&sled);
    // b's lease ran out at 200; a's holds until 500.
    let leased = store.lease_due(300, 100, 10).unwrap();
    assert_eq!(leased.iter().map(|j| j.id).collect::<Vec<_>>(), [b]);
    // Settled jobs are not leased again by a renewal.
    store.retry(b, "failed", 1_000).unwrap();
    assert!(!store.renew_lease(b, 2_000).unwrap());
    assert_eq!(store.job(b).unwrap().unwrap().lease_until_ms, None);
    assert!(store.ack(a).unwrap());
    assert!(!store.renew_lease(a, 2_000).unwrap());
    check_consistency(&sled);
}

#[test]
fn lease_due_respects_due_time_limit_order_and_leases() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let a = stored(
        store
            .ingest(&event("i", "a"), &rules(&["r"]), 100, 10_000)
            .unwrap(),
    )[0];
    let b = stored(
        store
            .ingest(&event("i", "b"), &rules(&["r"]), 50, 10_000)
            .unwrap(),
    )[0];
    let c = stored(
        store
            .ingest(&event("i", "c"), &rules(&["r"]), 300, 10_000)
            .unwrap(),
    )[0];
    assert_eq!(store.oldest_due_ms().unwrap(), Some(50));

    assert!(store.lease_due(49, 100, 10).unwrap().is_empty());
    assert!(store.lease_due(200, 100, 0).unwrap().is_empty());
    // Oldest first, limited.
    let leased = store.lease_due(200, 100, 1).unwrap();
    assert_eq!(leased.iter().map(|j| j.id).collect::<Vec<_>>(), [b]);
    assert_eq!(leased[0].lease_until_ms, Some(300));
    assert_eq!(store.job(b).unwrap().unwrap().lease_until_ms, Some(300));
    // A leased job is not handed out again while its lease lasts.
    let leased = store.lease_due(200, 100, 10).unwrap();
    assert_eq!(leased.iter().map(|j| j.id).collect::<Vec<_>>(), [a]);
    assert!(store.lease_due(299, 100, 10).unwrap().is_empty());
    assert_eq!(store.oldest_due_ms().unwrap(), Some(300));
    check_consistency(&sled);
    // At 300, c is due and a's and b's leases have expired: all three, b and a first
    // (ready at 300 by lease) before c (id order among equals is creation order).
    let leased = store.lease_due(300, 0, 10).unwrap();
    assert_eq!(leased.iter().map(|j| j.id).collect::<Vec<_>>(), [a, b, c]);
    assert!(leased.iter().all(|j| j.lease_until_ms == Some(301)));
    assert_eq!(store.queue_depth(), 3);
    check_consistency(&sled);
}

#[test]
fn concurrent_leasers_never_share_a_job() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = std::sync::Arc::new(Store::open(tmp.path()).unwrap());
    let store: std::sync::Arc<dyn State> = sled.clone();
    let names: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
    for e in 0..4 {
        store
            .ingest(&event("i", &e.to_string()), &names, 0, 10)
            .unwrap();
    }
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let batch = store.lease_due(5, 1_000, 3).unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|j| j.id));
                }
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a job was leased twice");
    assert_eq!(all.len(), 200);
    check_consistency(&sled);
}

#[test]
fn complete_step_records_results_and_keeps_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let id = stored(
        store
            .ingest(&event("i", "1"), &rules(&["r"]), 0, 10)
            .unwrap(),
    )[0];
    store.lease_due(0, 100, 1).unwrap();
    let job = store.complete_step(id, 0, json!({ "ts": "1.2" })).unwrap();
    assert_eq!(job.step, 1);
    assert_eq!(job.results, vec![json!({ "ts": "1.2" })]);
    assert_eq!(job.lease_until_ms, Some(100));
    let err = store.complete_step(id, 0, json!(null)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::StepMismatch {
                current: 1,
                given: 0,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("job {id} is at step 1, not at step 0")
    );
    let job = store.complete_step(id, 1, json!(2)).unwrap();
    assert_eq!(job.results, vec![json!({ "ts": "1.2" }), json!(2)]);
    assert_eq!(store.job(id).unwrap(), Some(job));
    assert!(matches!(
        store.complete_step(999_999, 0, json!(null)),
        Err(Error::NoSuchJob { id: 999_999 })
    ));
    check_consistency(&sled);
}

#[test]
fn ack_removes_once() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let ids = stored(
        store
            .ingest(&event("i", "1"), &rules(&["a", "b"]), 0, 10)
            .unwrap(),
    );
    assert!(store.ack(ids[0]).unwrap());
    assert!(!store.ack(ids[0]).unwrap());
    assert_eq!(store.job(ids[0]).unwrap(), None);
    assert_eq!(store.queue_depth(), 1);
    check_consistency(&sled);
    // Acking a leased job removes its index entry too.
    store.lease_due(0, 50, 10).unwrap();
    assert!(store.ack(ids[1]).unwrap());
    assert_eq!(store.queue_depth(), 0);
    assert_eq!(store.oldest_due_ms().unwrap(), None);
    check_consistency(&sled);
}

/// SEC-12: a job that met a paused gate goes back without an attempt counted.
#[test]
fn postpone_reschedules_without_counting_an_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let id = stored(
        store
            .ingest(&event("i", "1"), &rules(&["r"]), 0, 10)
            .unwrap(),
    )[0];
    store.lease_due(0, 100, 1).unwrap();
    store.retry(id, "rate limited", 0).unwrap();
    store.lease_due(0, 100, 1).unwrap();
    let job = store.postpone(id, 700).unwrap();
    assert_eq!(job.attempts, 1);
    assert_eq!(job.lease_until_ms, None);
    assert_eq!(job.due_ms, 700);
    assert_eq!(job.last_error.as_deref(), Some("rate limited"));
    assert!(store.lease_due(699, 100, 10).unwrap().is_empty());
    assert_eq!(store.lease_due(700, 100, 10).unwrap().len(), 1);
    assert!(matches!(
        store.postpone(12_345_678, 0),
        Err(Error::NoSuchJob { .. })
    ));
    check_consistency(&sled);
}

#[test]
fn retry_reschedules_and_keeps_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let id = stored(
        store
            .ingest(&event("i", "1"), &rules(&["r"]), 0, 10)
            .unwrap(),
    )[0];
    store.lease_due(0, 100, 1).unwrap();
    store.complete_step(id, 0, json!("done")).unwrap();
    let job = store.retry(id, "slack: rate limited", 500).unwrap();
    assert_eq!(job.attempts, 1);
    assert_eq!(job.step, 1);
    assert_eq!(job.results, vec![json!("done")]);
    assert_eq!(job.lease_until_ms, None);
    assert_eq!(job.due_ms, 500);
    assert_eq!(job.last_error.as_deref(), Some("slack: rate limited"));
    assert_eq!(store.oldest_due_ms().unwrap(), Some(500));
    assert!(store.lease_due(499, 100, 10).unwrap().is_empty());
    assert_eq!(store.lease_due(500, 100, 10).unwrap().len(), 1);
    assert_eq!(store.retry(id, "again", 900).unwrap().attempts, 2);
    assert!(matches!(
        store.retry(12_345_678, "x", 0),
        Err(Error::NoSuchJob { .. })
    ));
    check_consistency(&sled);
}

#[test]
fn dead_letter_and_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let ids = stored(
        store
            .ingest(&event("i", "1"), &rules(&["a", "b"]), 0, 10)
            .unwrap(),
    );
    let id = ids[0];
    store.lease_due(0, 100, 10).unwrap();
    store.complete_step(id, 0, json!("first")).unwrap();
    store.retry(id, "e1", 5).unwrap();
    let dead = store
        .dead_letter(id, "notion: 400 validation_error", 7)
        .unwrap();
    assert_eq!(dead.dead_at_ms, 7);
    assert_eq!(dead.job.attempts, 2);
    assert_eq!(dead.job.lease_until_ms, None);
    assert_eq!(
        dead.job.last_error.as_deref(),
        Some("notion: 400 validation_error")
    );
    assert_eq!(store.job(id).unwrap(), None);
    assert_eq!(store.queue_depth(), 1);
    assert_eq!(store.dead_depth(), 1);
    assert_eq!(store.dead(10).unwrap(), vec![dead.clone()]);
    assert!(store.dead(0).unwrap().is_empty());
    assert_eq!(store.dead_job(id).unwrap(), Some(dead.clone()));
    assert!(!store.ack(id).unwrap(), "a dead job is not in the outbox");
    assert!(matches!(
        store.dead_letter(id, "again", 8),
        Err(Error::NoSuchJob { .. })
    ));
    check_consistency(&sled);
    // The event stays while the dead job references it.
    assert!(store.ack(ids[1]).unwrap());
    store.purge_expired(1_000, &keep_for(0)).unwrap();
    assert!(sled.event_by_key("i/1").unwrap().is_some());

    let job = store.replay(id, 2_000).unwrap();
    assert_eq!(job.id, id);
    assert_eq!(job.attempts, 0);
    assert_eq!(job.due_ms, 2_000);
    assert_eq!(job.step, 1);
    assert_eq!(job.results, vec![json!("first")]);
    assert_eq!(job.lease_until_ms, None);
    assert_eq!(store.job(id).unwrap(), Some(job));
    assert_eq!(store.dead_job(id).unwrap(), None);
    assert_eq!(store.dead_depth(), 0);
    let err = store.replay(id, 2_000).unwrap_err();
    assert!(matches!(err, Error::NoSuchDeadJob { .. }), "{err}");
    assert_eq!(err.to_string(), format!("no dead-lettered job {id}"));
    assert_eq!(store.lease_due(2_000, 10, 10).unwrap().len(), 1);
    check_consistency(&sled);
}

/// A retention that keeps deliveries for `ms` and sets no size limit.
pub(super) fn keep_for(ms: u64) -> Retention {
    Retention {
        event_retention_ms: ms,
        max_state_bytes: u64::MAX,
    }
}

#[test]
fn purge_removes_expired_dedupe_and_events_past_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let retention = keep_for(150);
    // No jobs: removed once past retention.
    store.ingest(&event("i", "none"), &[], 10, 100).unwrap();
    // A pending job: kept even past retention.
    let pending = stored(
        store
            .ingest(&event("i", "pending"), &rules(&["r"]), 10, 100)
            .unwrap(),
    );
    // An acknowledged job: kept until past retention (whatever its dedupe window).
    let done = stored(
        store
            .ingest(&event("i", "done"), &rules(&["r"]), 120, 300)
            .unwrap(),
    );
    assert!(store.ack(done[0]).unwrap());

    assert_eq!(
        store.purge_expired(99, &retention).unwrap(),
        Purged::default()
    );
    assert_eq!(
        store.purge_expired(160, &retention).unwrap(),
        Purged {
            dedupe: 2,
            events: 1,
            ..Purged::default()
        }
    );
    assert_eq!(sled.event_by_key("i/none").unwrap(), None);
    assert_eq!(store.dedupe_until("i/none").unwrap(), None);
    assert!(sled.event_by_key("i/pending").unwrap().is_some());
    assert_eq!(store.dedupe_until("i/pending").unwrap(), None);
    assert!(sled.event_by_key("i/done").unwrap().is_some());
    check_consistency(&sled);

    assert_eq!(
        store.purge_expired(300, &retention).unwrap(),
        Purged {
            dedupe: 1,
            events: 1,
            ..Purged::default()
        }
    );
    assert_eq!(sled.event_by_key("i/done").unwrap(), None);
    assert!(store.ack(pending[0]).unwrap());
    assert_eq!(
        store.purge_expired(300, &retention).unwrap(),
        Purged {
            events: 1,
            ..Purged::default()
        }
    );
    assert_eq!(sled.event_by_key("i/pending").unwrap(), None);
    assert!(
        sled.t().unwrap().events.is_empty()
            && sled.t().unwrap().segment_moved.is_empty()
            && sled.t().unwrap().dedupe.is_empty()
            && sled.t().unwrap().inbox_refs.is_empty()
    );
    assert_eq!(sled.retention_totals().unwrap().events, 3);
    // After a purge the event is new again.
    assert!(matches!(
        store.ingest(&event("i", "none"), &[], 400, 500).unwrap(),
        IngestOutcome::Stored { .. }
    ));
}

#[test]
fn release_leases_makes_jobs_due_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let ids = stored(
        store
            .ingest(&event("i", "1"), &rules(&["a", "b", "c"]), 0, 10)
            .unwrap(),
    );
    store.lease_due(0, 1_000, 2).unwrap();
    assert_eq!(store.release_leases().unwrap(), 2);
    assert_eq!(store.release_leases().unwrap(), 0);
    for id in &ids {
        assert_eq!(store.job(*id).unwrap().unwrap().lease_until_ms, None);
    }
    assert_eq!(store.oldest_due_ms().unwrap(), Some(0));
    assert_eq!(store.lease_due(1, 1_000, 10).unwrap().len(), 3);
    check_consistency(&sled);
}

#[test]
fn state_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, dead) = {
        let sled = Store::open(tmp.path()).unwrap();
        let store: &dyn State = &sled;
        let ids = stored(
            store
                .ingest(&event("i", "1"), &rules(&["a", "b", "c"]), 0, 10)
                .unwrap(),
        );
        store.lease_due(0, 100, 10).unwrap();
        store.complete_step(ids[0], 0, json!("r0")).unwrap();
        store.retry(ids[1], "boom", 50).unwrap();
        store.dead_letter(ids[2], "fatal", 60).unwrap();
        store
            .append_audit(&AuditRecord {
                at_ms: 1,
                kind: AuditKind::EventAccepted,
                resource_type: "event".to_owned(),
                resource_id: "i/1".to_owned(),
                detail: json!({}),
            })
            .unwrap();
        store.flush().unwrap();
        (ids[0], ids[1], ids[2])
    };
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    assert_eq!(store.queue_depth(), 2);
    let job = store.job(a).unwrap().unwrap();
    assert_eq!((job.step, job.lease_until_ms), (1, Some(100)));
    let job = store.job(b).unwrap().unwrap();
    assert_eq!(
        (job.attempts, job.due_ms, job.lease_until_ms),
        (1, 50, None)
    );
    assert_eq!(store.dead_job(dead).unwrap().unwrap().job.attempts, 1);
    assert!(sled.event_by_key("i/1").unwrap().is_some());
    assert_eq!(store.dedupe_until("i/1").unwrap(), Some(10));
    let filter = AuditFilter {
        limit: 10,
        ..AuditFilter::default()
    };
    assert_eq!(store.audit(&filter).unwrap().len(), 1);
    // New ids never collide with ids handed out before the reopen.
    let new = stored(
        store
            .ingest(&event("i", "2"), &rules(&["a"]), 0, 10)
            .unwrap(),
    );
    assert!(new[0] > dead, "{new:?} after {dead}");
    check_consistency(&sled);
}

#[test]
fn crash_recovery_leased_job_becomes_due_after_lease_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let id = {
        let sled = Store::open(tmp.path()).unwrap();
        let store: &dyn State = &sled;
        let id = stored(
            store
                .ingest(&event("i", "1"), &rules(&["r"]), 1_000, 9_000)
                .unwrap(),
        )[0];
        assert_eq!(store.lease_due(1_000, 30_000, 10).unwrap().len(), 1);
        store.complete_step(id, 0, json!("sent")).unwrap();
        store.flush().unwrap();
        id
        // Dropped without release_leases: a crash as far as the queue can tell.
    };
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    // Under the old lease, nobody may take it.
    assert!(store.lease_due(30_999, 30_000, 10).unwrap().is_empty());
    assert_eq!(store.oldest_due_ms().unwrap(), Some(31_000));
    // Once the lease has expired it is due again, resuming after the step it completed.
    let leased = store.lease_due(31_000, 30_000, 10).unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].id, id);
    assert_eq!(leased[0].step, 1);
    assert_eq!(leased[0].results, vec![json!("sent")]);
    assert_eq!(leased[0].lease_until_ms, Some(61_000));
    check_consistency(&sled);
}

#[tokio::test]
async fn flush_async_makes_writes_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let ids = stored(
        store
            .ingest(&event("i", "1"), &rules(&["r"]), 0, 10)
            .unwrap(),
    );
    let (a, b) = tokio::join!(store.flush_async(), store.flush_async());
    a.unwrap();
    b.unwrap();
    drop(sled);
    let sled = tokio::task::spawn_blocking({
        let dir = tmp.path().to_owned();
        move || Store::open(&dir)
    })
    .await
    .unwrap()
    .unwrap();
    let store: &dyn State = &sled;
    assert!(store.job(ids[0]).unwrap().is_some());
}

#[test]
fn corrupt_queue_values_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let id = stored(
        store
            .ingest(&event("i", "1"), &rules(&["r"]), 0, 10)
            .unwrap(),
    )[0];
    sled.t()
        .unwrap()
        .outbox
        .insert(job_key(id), &b"\x01{"[..])
        .unwrap();
    let err = store.job(id).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { tree: "outbox", .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("{:?}", id.to_string())),
        "{err}"
    );
    assert!(matches!(
        store.lease_due(0, 1, 1),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(store.ack(id), Err(Error::Corrupt { .. })));
    // A job stored under another id.
    let other = Job {
        id: id + 1,
        event_key: "i/1".to_owned(),
        event_id: EventId::default(),
        rule: "r".to_owned(),
        step: 0,
        results: vec![],
        attempts: 0,
        due_ms: 0,
        lease_until_ms: None,
        last_error: None,
        created_ms: 0,
        in_flight: None,
    };
    let bytes = codec::encode(trees::OUTBOX, "x", &other).unwrap();
    sled.t().unwrap().outbox.insert(job_key(id), bytes).unwrap();
    assert!(matches!(
        store.job(id),
        Err(Error::Corrupt { tree: "outbox", .. })
    ));
    // Sorts before every real entry.
    sled.t()
        .unwrap()
        .due
        .insert(&b"\x00"[..], &b""[..])
        .unwrap();
    assert!(matches!(
        store.oldest_due_ms(),
        Err(Error::Corrupt { tree: "due", .. })
    ));
    sled.t()
        .unwrap()
        .dedupe
        .insert(super::inbox::key_digest("i/2"), &b"\x09"[..])
        .unwrap();
    store.flush().unwrap();
    drop(sled);
    // The unreadable entry is reported when its key is ingested, and only then.
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    assert!(matches!(
        store.ingest(&event("i", "2"), &[], 0, 1),
        Err(Error::Corrupt {
            tree: trees::DEDUPE,
            ..
        })
    ));
    assert!(store.ingest(&event("i", "3"), &[], 0, 1).is_ok());
}

fn record(at_ms: u64, kind: AuditKind, rtype: &str, rid: &str) -> AuditRecord {
    AuditRecord {
        at_ms,
        kind,
        resource_type: rtype.to_owned(),
        resource_id: rid.to_owned(),
        detail: json!({ "n": at_ms }),
    }
}

#[test]
fn a_bounded_audit_scan_stops_after_so_many_records() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    store
        .append_audit(&record(
            10,
            AuditKind::IntegrationRecovered,
            "integration",
            "zd",
        ))
        .unwrap();
    for t in 20..30 {
        store
            .append_audit(&record(t, AuditKind::EventAccepted, "event", "zd/1"))
            .unwrap();
    }
    let filter = AuditFilter {
        resource_type: Some("integration".into()),
        resource_id: Some("zd".into()),
        since_ms: None,
        limit: 5,
    };
    // The ten newer records fill the bound: the older match is not reached, and it says so.
    let (found, stopped) = store.audit_bounded(&filter, 10).unwrap();
    assert!(found.is_empty() && stopped);
    let (found, stopped) = store.audit_bounded(&filter, 11).unwrap();
    assert_eq!((found.len(), stopped), (1, false));
    assert_eq!(store.audit(&filter).unwrap(), found);
}

#[test]
fn resource_filters_match_exactly_whatever_the_ids_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let ids = ["zd", "zd2", "z", "a\"b", "ü/\\x", ""];
    for (t, id) in ids.iter().enumerate() {
        let mut r = record(
            t as u64 + 1,
            AuditKind::IntegrationRecovered,
            "integration",
            id,
        );
        // A detail naming another resource does not make the record match it.
        r.detail = serde_json::json!({"resource_id": "zd", "resource_type": "job"});
        store.append_audit(&r).unwrap();
    }
    for id in ids {
        let found = store
            .audit(&AuditFilter {
                resource_type: Some("integration".into()),
                resource_id: Some(id.to_owned()),
                since_ms: None,
                limit: 10,
            })
            .unwrap();
        assert_eq!(found.len(), 1, "{id:?}");
        assert_eq!(found[0].resource_id, id);
    }
    let jobs = store
        .audit(&AuditFilter {
            resource_type: Some("job".into()),
            resource_id: None,
            since_ms: None,
            limit: 10,
        })
        .unwrap();
    assert!(jobs.is_empty(), "{jobs:?}");
}

#[test]
fn audit_is_newest_first_and_filtered() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let records = [
        record(200, AuditKind::EventAccepted, "event", "i/1"),
        record(
            100,
            AuditKind::RuleMatched { rule: "r".into() },
            "event",
            "i/1",
        ),
        record(200, AuditKind::ActionAttempted { step: 0 }, "job", "7"),
        record(300, AuditKind::ActionSucceeded { step: 0 }, "job", "7"),
        record(
            300,
            AuditKind::ActionFailed {
                step: 1,
                error: "e".into(),
            },
            "job",
            "8",
        ),
        record(
            400,
            AuditKind::ActionDeadLettered {
                step: 1,
                error: "e".into(),
            },
            "job",
            "8",
        ),
        record(500, AuditKind::JobReplayed, "job", "8"),
        record(
            50,
            AuditKind::EventRejected {
                reason: "bad signature".into(),
            },
            "integration",
            "i",
        ),
    ];
    for r in &records {
        store.append_audit(r).unwrap();
    }
    let all = store
        .audit(&AuditFilter {
            limit: 100,
            ..AuditFilter::default()
        })
        .unwrap();
    let order: Vec<&AuditRecord> = [6, 5, 4, 3, 2, 0, 1, 7]
        .iter()
        .map(|i| &records[*i])
        .collect();
    assert_eq!(all.iter().collect::<Vec<_>>(), order);

    let job8 = store
        .audit(&AuditFilter {
            resource_type: Some("job".into()),
            resource_id: Some("8".into()),
            since_ms: None,
            limit: 2,
        })
        .unwrap();
    assert_eq!(job8, vec![records[6].clone(), records[5].clone()]);
    let since = store
        .audit(&AuditFilter {
            resource_type: Some("job".into()),
            since_ms: Some(300),
            limit: 100,
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(
        since,
        vec![
            records[6].clone(),
            records[5].clone(),
            records[4].clone(),
            records[3].clone()
        ]
    );
    let by_id = store
        .audit(&AuditFilter {
            resource_id: Some("i/1".into()),
            limit: 100,
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(by_id, vec![records[0].clone(), records[1].clone()]);
    assert!(store.audit(&AuditFilter::default()).unwrap().is_empty());

    assert_eq!(store.purge_audit(200).unwrap(), 2);
    assert_eq!(
        store
            .audit(&AuditFilter {
                limit: 100,
                ..AuditFilter::default()
            })
            .unwrap()
            .len(),
        6
    );
}

#[test]
fn audit_is_bounded_by_count_oldest_first_and_removals_are_counted_for_good() {
    let tmp = tempfile::tempdir().unwrap();
    let all = |store: &Store| {
        store
            .audit(&AuditFilter {
                limit: 100_000,
                ..AuditFilter::default()
            })
            .unwrap()
    };
    {
        let store = Store::open(tmp.path()).unwrap();
        assert_eq!(store.audit_records_removed().unwrap(), 0);
        // More than one purge chunk, with records of the same millisecond at the boundary.
        for i in 0..2_500u64 {
            store
                .append_audit(&record(
                    1_000 + i / 2,
                    AuditKind::EventAccepted,
                    "event",
                    &i.to_string(),
                ))
                .unwrap();
        }
        assert_eq!(store.purge_audit_over(3_000).unwrap(), 0);
        assert_eq!(store.purge_audit_over(2_500).unwrap(), 0);
        assert_eq!(store.purge_audit_over(1_001).unwrap(), 1_499);
        let left = all(&store);
        assert_eq!(left.len(), 1_001);
        // The newest are kept: the oldest left is record 1499 (the second of its millisecond).
        assert_eq!(left.last().unwrap().resource_id, "1499");
        assert_eq!(left.first().unwrap().resource_id, "2499");
        assert_eq!(store.audit_records_removed().unwrap(), 1_499);
        // The age bound adds to the same count.
        assert_eq!(store.purge_audit(1_000 + 800).unwrap(), 101);
        assert_eq!(store.audit_records_removed().unwrap(), 1_600);
        store.flush().unwrap();
    }
    // The count is kept in the state.
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.audit_records_removed().unwrap(), 1_600);
    assert_eq!(store.purge_audit_over(0).unwrap(), 900);
    assert!(all(&store).is_empty());
    assert_eq!(store.audit_records_removed().unwrap(), 2_500);
    assert_eq!(store.purge_audit_over(0).unwrap(), 0);
}

/// The size check counts recent keys between whole walks, and its estimate stays exact
/// through appends and age purges: one record over the bound is found.
#[test]
fn the_audit_size_check_walks_the_log_only_when_it_must() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let at = |i: u64| 1_765_000_000_000 + i * 1_000;
    let append = |range: std::ops::Range<u64>| {
        for i in range {
            store
                .append_audit(&record(
                    at(i),
                    AuditKind::EventAccepted,
                    "event",
                    &i.to_string(),
                ))
                .unwrap();
        }
    };
    let walks = || store.tally().as_ref().map_or(0, |t| t.walks);
    let oldest = || {
        store
            .audit(&AuditFilter {
                limit: 1_000,
                ..AuditFilter::default()
            })
            .unwrap()
            .last()
            .map(|r| r.resource_id.clone())
    };
    assert_eq!(store.purge_audit_over(10).unwrap(), 0);
    assert_eq!(walks(), 0, "nothing to walk");
    append(0..100);
    assert_eq!(store.purge_audit_over(50).unwrap(), 50);
    assert_eq!((walks(), oldest().as_deref()), (1, Some("50")));
    append(100..110);
    assert_eq!(store.purge_audit_over(100).unwrap(), 0);
    append(110..150);
    assert_eq!(store.purge_audit_over(100).unwrap(), 0);
    assert_eq!(walks(), 1, "estimated, not walked");
    append(150..151);
    assert_eq!(store.purge_audit_over(100).unwrap(), 1);
    assert_eq!((walks(), oldest().as_deref()), (2, Some("51")));
    // The age bound removes recent records (a short retention): counted out once.
    assert_eq!(store.purge_audit(at(61)).unwrap(), 10);
    assert_eq!(store.purge_audit_over(89).unwrap(), 1);
    assert_eq!((walks(), oldest().as_deref()), (3, Some("62")));
    // An hour of records after the last walk: walked again.
    append(3_800..3_801);
    assert_eq!(store.purge_audit_over(1_000).unwrap(), 0);
    assert_eq!(walks(), 4);
    assert_eq!(store.audit_records_removed().unwrap(), 62);
}

#[test]
fn audit_kinds_serialize_with_snake_case_tags() {
    let r = record(
        1,
        AuditKind::EventRejected {
            reason: "bad signature".into(),
        },
        "integration",
        "i",
    );
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({
            "at_ms": 1,
            "kind": { "type": "event_rejected", "reason": "bad signature" },
            "resource_type": "integration",
            "resource_id": "i",
            "detail": { "n": 1 },
        })
    );
    for (kind, tag) in [
        (AuditKind::EventAccepted, "event_accepted"),
        (AuditKind::RuleMatched { rule: "r".into() }, "rule_matched"),
        (
            AuditKind::RuleShadowed { rule: "r".into() },
            "rule_shadowed",
        ),
        (AuditKind::ActionAttempted { step: 0 }, "action_attempted"),
        (AuditKind::ActionSucceeded { step: 0 }, "action_succeeded"),
        (
            AuditKind::ActionFailed {
                step: 0,
                error: "e".into(),
            },
            "action_failed",
        ),
        (
            AuditKind::ActionDeadLettered {
                step: 0,
                error: "e".into(),
            },
            "action_dead_lettered",
        ),
        (AuditKind::JobReplayed, "job_replayed"),
        (
            AuditKind::EventRedelivered {
                rules: vec!["r".into()],
            },
            "event_redelivered",
        ),
        (AuditKind::SyncRequested, "sync_requested"),
        (AuditKind::StateBackedUp { error: None }, "state_backed_up"),
        (AuditKind::ConsoleSignedIn, "console_signed_in"),
        (
            AuditKind::ConsoleSignInFailed {
                reason: "wrong_token".into(),
            },
            "console_sign_in_failed",
        ),
        (AuditKind::ConsoleSignedOut, "console_signed_out"),
    ] {
        let v = serde_json::to_value(&kind).unwrap();
        assert_eq!(v["type"], tag);
        assert_eq!(serde_json::from_value::<AuditKind>(v).unwrap(), kind);
    }
}

#[test]
fn ingest_audited_writes_records_in_the_same_transaction() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let ev = event("i", "1");
    let audit = [
        record(10, AuditKind::EventAccepted, "event", "i/1"),
        record(
            10,
            AuditKind::RuleMatched { rule: "r".into() },
            "event",
            "i/1",
        ),
    ];
    stored(
        store
            .ingest_audited(&ev, &rules(&["r"]), 10, 20, &audit)
            .unwrap(),
    );
    let filter = AuditFilter {
        limit: 10,
        ..AuditFilter::default()
    };
    // Same millisecond: newest (last written) first; each names the delivery it belongs to.
    let id = sled.events_page(None, 1).unwrap()[0].id;
    let stamped = super::inbox::stamped(&audit, id);
    assert_eq!(stamped[0].detail["event"], id.to_string());
    assert_eq!(
        store.audit(&filter).unwrap(),
        vec![stamped[1].clone(), stamped[0].clone()]
    );
    assert_eq!(
        store
            .ingest_audited(&ev, &rules(&["r"]), 11, 20, &audit)
            .unwrap(),
        IngestOutcome::Duplicate
    );
    assert_eq!(store.audit(&filter).unwrap().len(), 2);
}

#[test]
fn redeliver_jobs_adds_jobs_to_a_stored_delivery_in_one_transaction() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Store::open(tmp.path()).unwrap();
    let store: &dyn State = &sled;
    let first = stored(
        store
            .ingest(&event("i", "1"), &rules(&["a"]), 10, 20)
            .unwrap(),
    );
    let id = sled.events_page(None, 1).unwrap()[0].id;
    assert!(store.ack(first[0]).unwrap());
    let audit = [record(
        30,
        AuditKind::EventRedelivered {
            rules: rules(&["b"]),
        },
        "event",
        &id.to_string(),
    )];
    let jobs = store
        .redeliver_jobs(id, &rules(&["b"]), 30, &audit)
        .unwrap();
    assert_eq!(jobs.len(), 1);
    let (job, _) = (&jobs[0], check_consistency(&sled));
    assert_eq!(
        (job.rule.as_str(), job.event_id, job.step, job.due_ms),
        ("b", id, 0, 30)
    );
    assert_eq!(store.queue_depth(), 1);
    // The history lists both, the delivery both rules, the audit log the redelivery.
    let listed: Vec<(String, u64)> = store
        .event_jobs(id)
        .unwrap()
        .into_iter()
        .map(|j| (j.rule, j.job))
        .collect();
    assert_eq!(listed, vec![("a".into(), first[0]), ("b".into(), job.id)]);
    assert_eq!(
        store.event_meta(id).unwrap().unwrap().rules,
        rules(&["a", "b"])
    );
    let records = store
        .audit(&AuditFilter {
            limit: 10,
            ..AuditFilter::default()
        })
        .unwrap();
    assert_eq!(records[0].kind, audit[0].kind);
    assert_eq!(records[0].detail["event"], id.to_string());
    // While the job references it, retention keeps the delivery.
    let purge = Retention {
        event_retention_ms: 1,
        ..Retention::KEEP_ALL
    };
    store.purge_expired(10_000, &purge).unwrap();
    assert!(store.event(id).unwrap().is_some());
    // An unknown delivery: nothing written.
    let unknown = EventId(id.0 + 999);
    assert!(matches!(
        store.redeliver_jobs(unknown, &rules(&["b"]), 40, &audit),
        Err(Error::NoSuchEvent { id }) if id == unknown
    ));
    assert_eq!(store.queue_depth(), 1);
    check_consistency(&sled);
}
