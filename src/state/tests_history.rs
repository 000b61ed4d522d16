//! Tests of the history index (`history.rs`): each delivery's jobs through every transition,
//! the listing's filters and pages against a plain filter of every delivery, audit records by
//! delivery, retention, and the build of the index for a state written without it.

use serde_json::json;

use super::history::check_index;
use super::tests_queue::{check_consistency, event, rules};
use super::*;
use crate::event::Event;

fn stored(o: IngestOutcome) -> Vec<u64> {
    match o {
        IngestOutcome::Stored { jobs } => jobs,
        IngestOutcome::Duplicate => panic!("duplicate"),
    }
}

fn outcome_of(store: &Store, id: EventId) -> Outcome {
    let meta = store.event_meta(id).unwrap().unwrap();
    store.event_outcome(id, !meta.rules.is_empty()).unwrap().0
}

fn states(store: &Store, id: EventId) -> Vec<(u64, String, JobOutcome, usize)> {
    store
        .event_jobs(id)
        .unwrap()
        .into_iter()
        .map(|j| (j.job, j.rule, j.outcome, j.steps_done))
        .collect()
}

fn last_id(store: &Store) -> EventId {
    store.events_page(None, 1).unwrap()[0].id
}

#[test]
fn event_jobs_follow_every_transition_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ev, a, b) = {
        let store = Store::open(dir.path()).unwrap();
        let jobs = stored(
            store
                .ingest(&event("fd", "1"), &rules(&["r1", "r2"]), 100, 10_000)
                .unwrap(),
        );
        let (a, b) = (jobs[0], jobs[1]);
        let ev = last_id(&store);
        assert_eq!(
            states(&store, ev),
            [
                (a, "r1".into(), JobOutcome::Queued { due_ms: 100 }, 0),
                (b, "r2".into(), JobOutcome::Queued { due_ms: 100 }, 0)
            ]
        );
        assert_eq!(outcome_of(&store, ev), Outcome::Pending);
        check_consistency(&store);

        let leased = store.lease_due(200, 1_000, 1).unwrap();
        assert_eq!(leased[0].id, a);
        store.complete_step(a, 0, json!({"ok": 1})).unwrap();
        assert_eq!(
            states(&store, ev)[0],
            (
                a,
                "r1".into(),
                JobOutcome::Running {
                    lease_until_ms: 1_200
                },
                1
            )
        );
        store.retry(a, "timed out", 5_000).unwrap();
        assert_eq!(
            states(&store, ev)[0].2,
            JobOutcome::Retrying {
                due_ms: 5_000,
                attempts: 1,
                error: "timed out".into()
            }
        );
        assert_eq!(outcome_of(&store, ev), Outcome::Retrying);
        store.postpone(a, 6_000).unwrap();
        assert!(matches!(
            states(&store, ev)[0].2,
            JobOutcome::Retrying { due_ms: 6_000, .. }
        ));
        check_consistency(&store);
        store.dead_letter(a, "gave up", 7_000).unwrap();
        assert_eq!(
            states(&store, ev)[0].2,
            JobOutcome::Dead {
                at_ms: 7_000,
                error: "gave up".into()
            }
        );
        assert_eq!(outcome_of(&store, ev), Outcome::Dead);
        check_consistency(&store);
        store.flush().unwrap();
        (ev, a, b)
    };
    // Kept across a restart.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(outcome_of(&store, ev), Outcome::Dead);
    store.replay(a, 8_000).unwrap();
    assert_eq!(
        states(&store, ev)[0].2,
        JobOutcome::Queued { due_ms: 8_000 }
    );
    assert_eq!(outcome_of(&store, ev), Outcome::Pending);
    assert!(store.ack(a).unwrap());
    assert!(store.ack(b).unwrap());
    let jobs = store.event_jobs(ev).unwrap();
    assert!(
        jobs.iter()
            .all(|j| matches!(j.outcome, JobOutcome::Done { .. })),
        "{jobs:?}"
    );
    assert_eq!((jobs[0].steps_done, jobs[0].steps), (1, Some(1)));
    assert_eq!(outcome_of(&store, ev), Outcome::Done);
    check_consistency(&store);

    // Retention removes the delivery and every index entry with it.
    let rules_only = HistoryFilter {
        rule: Some("r1".into()),
        ..HistoryFilter::default()
    };
    assert_eq!(store.history(&rules_only, None, 10).unwrap().items.len(), 1);
    let retention = Retention {
        event_retention_ms: 1,
        max_state_bytes: u64::MAX,
    };
    store.purge_expired(1_000_000, &retention).unwrap();
    assert!(store.event_meta(ev).unwrap().is_none());
    assert!(store.event_jobs(ev).unwrap().is_empty());
    assert!(store.event_audit(ev).unwrap().is_empty());
    assert!(
        store
            .history(&rules_only, None, 10)
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        store.t().unwrap().history.len(),
        0,
        "every entry went with the delivery"
    );
    check_consistency(&store);
}

#[test]
fn a_delivery_no_rule_matched_is_no_rules_and_an_enrichment_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.ingest(&event("fd", "none"), &[], 100, 1_000).unwrap();
    let none = last_id(&store);
    assert_eq!(outcome_of(&store, none), Outcome::NoRules);
    assert!(store.event_jobs(none).unwrap().is_empty());

    let enrich = stored(
        store
            .ingest(&event("zd", "e"), &rules(&[ENRICHMENT]), 100, 1_000)
            .unwrap(),
    )[0];
    let ev = last_id(&store);
    let by_rule = |r: &str| {
        store
            .history(
                &HistoryFilter {
                    rule: Some(r.into()),
                    ..HistoryFilter::default()
                },
                None,
                10,
            )
            .unwrap()
            .items
            .len()
    };
    assert_eq!(by_rule(ENRICHMENT), 1);
    let new = store
        .complete_enrichment(
            enrich,
            &event("zd", "e"),
            &rules(&["r9"]),
            200,
            &[],
            &Default::default(),
        )
        .unwrap();
    assert_eq!((by_rule(ENRICHMENT), by_rule("r9")), (0, 1));
    let jobs = states(&store, ev);
    assert_eq!(jobs.len(), 2);
    assert!(matches!(jobs[0].2, JobOutcome::Done { at_ms: 200 }));
    assert_eq!(
        (jobs[1].0, jobs[1].2.clone()),
        (new[0], JobOutcome::Queued { due_ms: 200 })
    );
    assert_eq!(outcome_of(&store, ev), Outcome::Pending);
    check_consistency(&store);

    // An enrichment after which no rule matches: no_rules.
    let enrich = stored(
        store
            .ingest(&event("zd", "f"), &rules(&[ENRICHMENT]), 100, 1_000)
            .unwrap(),
    )[0];
    let ev = last_id(&store);
    store
        .complete_enrichment(
            enrich,
            &event("zd", "f"),
            &[],
            300,
            &[],
            &Default::default(),
        )
        .unwrap();
    assert_eq!(outcome_of(&store, ev), Outcome::NoRules);
    check_consistency(&store);
}

#[test]
fn audit_records_of_a_delivery_are_found_by_it_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let accepted = AuditRecord {
        at_ms: 100,
        kind: AuditKind::EventAccepted,
        resource_type: "event".into(),
        resource_id: "fd/1".into(),
        detail: json!({"integration": "fd"}),
    };
    let job = stored(
        store
            .ingest_audited(&event("fd", "1"), &rules(&["r"]), 100, 1_000, &[accepted])
            .unwrap(),
    )[0];
    let ev = last_id(&store);
    store
        .ingest(&event("fd", "2"), &rules(&["r"]), 150, 1_000)
        .unwrap();
    let attempt = |at_ms, kind| AuditRecord {
        at_ms,
        kind,
        resource_type: "job".into(),
        resource_id: job.to_string(),
        detail: json!({"event": ev.to_string(), "duration_ms": 12}),
    };
    store
        .append_audit(&attempt(300, AuditKind::ActionSucceeded { step: 0 }))
        .unwrap();
    store
        .append_audit(&attempt(200, AuditKind::ActionAttempted { step: 0 }))
        .unwrap();
    // Another delivery's record and a record of no delivery are not its.
    store
        .append_audit(&AuditRecord {
            detail: json!({"event": "evt_999999"}),
            ..attempt(250, AuditKind::JobReplayed)
        })
        .unwrap();
    let kinds: Vec<(u64, AuditKind)> = store
        .event_audit(ev)
        .unwrap()
        .into_iter()
        .map(|r| (r.at_ms, r.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            (100, AuditKind::EventAccepted),
            (200, AuditKind::ActionAttempted { step: 0 }),
            (300, AuditKind::ActionSucceeded { step: 0 })
        ]
    );
    // The ingest's records were stamped with the delivery's id.
    assert_eq!(
        store.event_audit(ev).unwrap()[0].detail["event"],
        ev.to_string()
    );

    // Refusals, aggregated, by time.
    for (at, integration) in [(1_000, "fd"), (61_000, "zd"), (121_000, "fd")] {
        store
            .append_audit(&AuditRecord {
                at_ms: at,
                kind: AuditKind::EventRejected {
                    reason: "bad signature".into(),
                },
                resource_type: "integration".into(),
                resource_id: integration.into(),
                detail: json!({"count": 3}),
            })
            .unwrap();
    }
    let at = |v: Vec<AuditRecord>| v.iter().map(|r| r.at_ms).collect::<Vec<_>>();
    assert_eq!(
        at(store.rejections(0, u64::MAX, None, 10).unwrap()),
        [121_000, 61_000, 1_000]
    );
    assert_eq!(
        at(store.rejections(0, 100_000, None, 10).unwrap()),
        [61_000, 1_000]
    );
    assert_eq!(
        at(store.rejections(0, u64::MAX, Some("fd"), 10).unwrap()),
        [121_000, 1_000]
    );
    assert_eq!(
        at(store.rejections(0, u64::MAX, None, 1).unwrap()),
        [121_000]
    );
    check_consistency(&store);
}

/// A mix of deliveries on two integrations, two event names, rules and outcomes.
fn populate(store: &Store, n: u64) -> Vec<(EventId, Event, Vec<String>)> {
    let mut out = Vec::new();
    for i in 0..n {
        let integration = if i % 3 == 0 { "zd" } else { "fd" };
        let mut e = event(integration, &i.to_string());
        if i % 4 == 0 {
            e.name = "ticket_updated".into();
        }
        let rs: Vec<String> = match i % 5 {
            0 => vec![],
            1 | 2 => vec!["r1".into()],
            3 => vec!["r2".into()],
            _ => vec!["r1".into(), "r2".into()],
        };
        let jobs = stored(store.ingest(&e, &rs, 1_000 + i * 10, u64::MAX).unwrap());
        let id = last_id(store);
        for (k, job) in jobs.iter().enumerate() {
            match (i + k as u64) % 7 {
                0 => {
                    store.dead_letter(*job, "boom", 5_000).unwrap();
                }
                1 => {
                    store.retry(*job, "slow", 9_000).unwrap();
                }
                2 | 3 => {}
                _ => {
                    store.ack(*job).unwrap();
                }
            }
        }
        out.push((id, e, rs));
    }
    out
}

/// Every page of `filter` at `limit`, followed by cursor, concatenated.
fn all_pages(store: &Store, filter: &HistoryFilter, limit: usize) -> Vec<EventId> {
    let mut out = Vec::new();
    let mut before = None;
    for _ in 0..10_000 {
        let page = store.history(filter, before, limit).unwrap();
        assert!(page.items.len() <= limit);
        out.extend(page.items.iter().map(|i| i.meta.id));
        match page.next {
            Some(next) => before = Some(next),
            None => return out,
        }
    }
    panic!("paging did not end");
}

#[test]
fn the_listing_answers_each_filter_and_pages_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let all = populate(&store, 120);
    check_consistency(&store);
    let outcome = |id: EventId| outcome_of(&store, id);
    let filters = [
        HistoryFilter::default(),
        HistoryFilter {
            integration: Some("zd".into()),
            ..HistoryFilter::default()
        },
        HistoryFilter {
            integration: Some("fd".into()),
            event: Some("ticket_updated".into()),
            ..HistoryFilter::default()
        },
        HistoryFilter {
            rule: Some("r2".into()),
            ..HistoryFilter::default()
        },
        HistoryFilter {
            outcome: Some(Outcome::Dead),
            ..HistoryFilter::default()
        },
        HistoryFilter {
            outcome: Some(Outcome::NoRules),
            integration: Some("fd".into()),
            ..HistoryFilter::default()
        },
        HistoryFilter {
            rule: Some("r1".into()),
            outcome: Some(Outcome::Retrying),
            integration: Some("fd".into()),
            event: Some("ticket_created".into()),
            ..HistoryFilter::default()
        },
        HistoryFilter {
            since_ms: Some(1_305),
            until_ms: Some(1_800),
            rule: Some("r1".into()),
            ..HistoryFilter::default()
        },
        HistoryFilter {
            since_ms: Some(1_000_000),
            ..HistoryFilter::default()
        },
        HistoryFilter {
            integration: Some("nobody".into()),
            ..HistoryFilter::default()
        },
        // An event name alone: that name on every integration.
        HistoryFilter {
            event: Some("ticket_created".into()),
            ..HistoryFilter::default()
        },
        HistoryFilter {
            event: Some("ticket_updated".into()),
            outcome: Some(Outcome::Dead),
            ..HistoryFilter::default()
        },
        HistoryFilter {
            event: Some("no_such_event".into()),
            ..HistoryFilter::default()
        },
    ];
    for filter in &filters {
        let mut expected: Vec<EventId> = all
            .iter()
            .filter(|(id, e, rs)| {
                let received = store.event_meta(*id).unwrap().unwrap().received_ms;
                filter
                    .integration
                    .as_ref()
                    .is_none_or(|i| e.integration.as_str() == i)
                    && filter.event.as_ref().is_none_or(|n| e.name == *n)
                    && filter.rule.as_ref().is_none_or(|r| rs.contains(r))
                    && filter.outcome.is_none_or(|o| outcome(*id) == o)
                    && filter.since_ms.is_none_or(|s| received >= s)
                    && filter.until_ms.is_none_or(|u| received <= u)
            })
            .map(|(id, _, _)| *id)
            .collect();
        expected.reverse();
        for limit in [1, 7, 50, 1_000] {
            assert_eq!(
                all_pages(&store, filter, limit),
                expected,
                "{filter:?} limit {limit}"
            );
        }
        let first = store.history(filter, None, 5).unwrap();
        for item in &first.items {
            assert_eq!(item.outcome, outcome(item.meta.id));
            assert_eq!(item.jobs, store.event_jobs(item.meta.id).unwrap());
        }
    }
    // Some filters must select something, or the test proves little.
    assert!(all_pages(&store, &filters[6], 10).len() > 1);
    assert!(all_pages(&store, &filters[4], 10).len() > 3);
    let created = all_pages(&store, &filters[10], 10);
    let on = |i: &str| {
        created
            .iter()
            .any(|id| store.event_meta(*id).unwrap().unwrap().integration.as_str() == i)
    };
    assert!(
        on("fd") && on("zd"),
        "an event name alone spans integrations"
    );
}

/// Every page of [`Store::events_by_arrival`] at `limit`, followed by the last id.
fn all_by_arrival(
    store: &Store,
    since_ms: u64,
    integration: Option<&str>,
    limit: usize,
) -> Vec<EventId> {
    let mut out = Vec::new();
    let mut after = None;
    for _ in 0..10_000 {
        let page = store
            .events_by_arrival(after, since_ms, integration, limit)
            .unwrap();
        assert!(page.len() <= limit);
        out.extend(page.iter().map(|m| m.id));
        if page.len() < limit {
            return out;
        }
        after = page.last().map(|m| m.id);
    }
    panic!("paging did not end");
}

#[test]
fn deliveries_by_arrival_page_oldest_first_bounded_by_time_and_integration() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let all = populate(&store, 60);
    for (since, integration) in [
        (0, None),
        (1_305, None),
        (0, Some("zd")),
        (1_200, Some("fd")),
        (1_000_000, None),
        (0, Some("nobody")),
    ] {
        let expected: Vec<EventId> = all
            .iter()
            .filter(|(id, e, _)| {
                store.event_meta(*id).unwrap().unwrap().received_ms >= since
                    && integration.is_none_or(|i| e.integration.as_str() == i)
            })
            .map(|(id, _, _)| *id)
            .collect();
        assert!(expected.windows(2).all(|w| w[0] < w[1]));
        for limit in [1, 7, 1_000] {
            assert_eq!(
                all_by_arrival(&store, since, integration, limit),
                expected,
                "since {since} {integration:?} limit {limit}"
            );
        }
    }
    assert_eq!(all_by_arrival(&store, 1_305, Some("zd"), 4).len(), 9);
    // A record whose time steps back (a clock adjusted) is still checked by its own time.
    let late = event("fd", "late");
    stored(store.ingest(&late, &[], 500, u64::MAX).unwrap());
    let late_id = last_id(&store);
    assert!(!all_by_arrival(&store, 1_000, None, 100).contains(&late_id));
    assert_eq!(all_by_arrival(&store, 0, None, 100).last(), Some(&late_id));
    assert!(
        store
            .events_by_arrival(Some(EventId(u64::MAX)), 0, None, 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .events_by_arrival(None, 0, None, 0)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_state_without_the_index_gets_it_built_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let before: Vec<(EventId, Outcome)> = {
        let store = Store::open(dir.path()).unwrap();
        let all = populate(&store, 40);
        let outcomes: Vec<(EventId, Outcome)> = all
            .iter()
            .map(|(id, _, _)| (*id, outcome_of(&store, *id)))
            .collect();
        // As a schema-4 state written before the index: no tree, no progress.
        store.t().unwrap().history.clear().unwrap();
        store
            .t()
            .unwrap()
            .meta
            .remove(meta_keys::HISTORY_INDEX)
            .unwrap();
        store.flush().unwrap();
        outcomes
    };
    let store = Store::open(dir.path()).unwrap();
    check_consistency(&store);
    for (id, was) in &before {
        // Acknowledged jobs are not known any more: their delivery is done.
        let now = outcome_of(&store, *id);
        assert_eq!(now, *was, "{id}");
    }
    let dead = store
        .history(
            &HistoryFilter {
                outcome: Some(Outcome::Dead),
                ..HistoryFilter::default()
            },
            None,
            100,
        )
        .unwrap();
    assert!(!dead.items.is_empty());
    assert!(dead.items.iter().all(|i| {
        i.jobs
            .iter()
            .any(|j| matches!(j.outcome, JobOutcome::Dead { .. }))
    }));
    drop(store);

    // An interrupted build resumes where it stopped: its progress is an id, the rest follows.
    let store = Store::open(dir.path()).unwrap();
    let middle = before[before.len() / 2].0;
    store.t().unwrap().history.clear().unwrap();
    store
        .put(
            &store.t().unwrap().meta,
            trees::META,
            meta_keys::HISTORY_INDEX,
            &0u64,
        )
        .unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    check_index(&store);
    store
        .put(
            &store.t().unwrap().meta,
            trees::META,
            meta_keys::HISTORY_INDEX,
            &middle.0,
        )
        .unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    check_index(&store);
    let progress: Option<u64> = store
        .get(
            &store.t().unwrap().meta,
            trees::META,
            meta_keys::HISTORY_INDEX,
        )
        .unwrap();
    assert_eq!(progress, Some(u64::MAX));
}
