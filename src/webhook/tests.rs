//! Ingress tests that need a clock: how long deliveries are deduplicated per platform.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};

use super::store_event;
use crate::event::Event;
use crate::manifest::IntegrationId;
use crate::manifest::source::Source;
use crate::platforms::{self, Inbound, InboundRequest, PlatformKind};
use crate::runtime::{Active, Options, Runtime};
use crate::secrets::ResolveContext;

const INTEGRATION: &str = r#"id = "fd"
platform = "freshdesk"
[credentials]
domain = "acme.freshdesk.com"
api_key = { env = "WEBHOOK_TEST_UNSET_KEY" }
[webhook]
events = ["note_created"]
"#;

const RULE: &str = r#"id = "on-note"
[trigger]
integration = "fd"
event = "note_created"
[[actions]]
integration = "fd"
action = "add_note"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
body = "seen"
"#;

/// A runtime with one Freshdesk integration and one rule on `note_created`.
fn runtime() -> (
    std::sync::Arc<Runtime>,
    tempfile::TempDir,
    tempfile::TempDir,
) {
    runtime_with(&[("rules/on-note.toml", RULE)])
}

/// A runtime with one Freshdesk integration and `rules`.
fn runtime_with(
    rules: &[(&str, &str)],
) -> (
    std::sync::Arc<Runtime>,
    tempfile::TempDir,
    tempfile::TempDir,
) {
    let repo = tempfile::tempdir().unwrap();
    for (path, text) in [("integrations/fd.toml", INTEGRATION)]
        .iter()
        .chain(rules)
        .copied()
    {
        let path = repo.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let options = Options::new(
        "127.0.0.1:0".parse().unwrap(),
        "http://127.0.0.1:9".into(),
        repo.path().into(),
        state.path().into(),
    );
    let rt = crate::runtime::open(options, None).unwrap();
    let loaded = crate::manifest::load_source(&Source {
        repo: repo.path().into(),
        subdir: None,
        rev: None,
    })
    .unwrap();
    let set = loaded
        .set
        .unwrap_or_else(|| panic!("{}", loaded.diagnostics.render("")));
    let env = |_: &str| None;
    let ctx = ResolveContext::new(None, &env);
    let (active, _) = Active::build(
        set,
        None,
        "http://127.0.0.1:9",
        &ctx,
        &crate::policy::Policy::none(),
        &HashMap::new(),
    );
    rt.install_active(active);
    (rt, repo, state)
}

/// The event a Freshdesk delivery of `body` becomes, as the ingress builds it.
fn freshdesk_event(body: &str, now: u64) -> Event {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let req = InboundRequest {
        method: &Method::POST,
        headers: &headers,
        body: body.as_bytes(),
        now_unix: 0,
    };
    let Ok(Inbound::Event {
        event,
        normalized,
        payload,
    }) = platforms::parse(PlatformKind::Freshdesk, &req)
    else {
        panic!("not an event");
    };
    Event {
        platform: PlatformKind::Freshdesk,
        integration: IntegrationId::parse("fd").unwrap(),
        name: event.name.to_owned(),
        id: normalized.id.expect("id"),
        time: normalized.time,
        received_at_ms: now,
        actor: normalized.actors.first().cloned(),
        actors: normalized.actors,
        objects: normalized.objects,
        changes: normalized.changes,
        payload,
    }
}

/// Issue 16, item 2: Freshdesk sends no delivery id, so two identical note deliveries share
/// their id (the body digest). A retry of the same delivery inside Freshdesk's retry schedule
/// (5, 30, 60 minutes) is deduplicated; the same body more than the Freshdesk window later is
/// a new note and runs its rule (the daemon's 72-hour default used to drop it).
#[tokio::test]
async fn a_repeated_freshdesk_body_after_the_retry_window_runs_its_rule_again() {
    let (rt, _repo, _state) = runtime();
    let active = rt.active().expect("active");
    let body = include_str!("../platforms/freshdesk/fixtures/note_created.json");
    let t0: u64 = 1_800_000_000_000;
    let minute = 60_000;
    assert_eq!(rt.options.dedupe_ttl, Duration::from_secs(72 * 3600));

    let _ = store_event(&rt, &active, freshdesk_event(body, t0), t0).await;
    assert_eq!(rt.store.queue_depth(), 1, "the first note runs the rule");
    // Freshdesk's retries of that delivery: 5, 30 and 60 minutes after each failure.
    for at in [5, 35, 95] {
        let now = t0 + at * minute;
        let _ = store_event(&rt, &active, freshdesk_event(body, now), now).await;
        assert_eq!(
            rt.store.queue_depth(),
            1,
            "a retry {at} min later is a duplicate"
        );
    }
    // An identical note three hours later is another note.
    let later = t0 + 180 * minute;
    let _ = store_event(&rt, &active, freshdesk_event(body, later), later).await;
    assert_eq!(
        rt.store.queue_depth(),
        2,
        "the second identical note runs the rule"
    );
}

#[test]
fn the_daemon_ttl_caps_a_platform_window() {
    let day = Duration::from_secs(86_400);
    let fd = platforms::freshdesk::DEDUPE_WINDOW;
    assert_eq!(super::dedupe_ttl(PlatformKind::Freshdesk, day), fd);
    assert_eq!(
        super::dedupe_ttl(PlatformKind::Freshdesk, Duration::from_secs(600)),
        Duration::from_secs(600)
    );
    assert_eq!(super::dedupe_ttl(PlatformKind::Zendesk, day), day);
    // The window covers Freshdesk's retries (5 + 30 + 60 minutes after a failure).
    assert!(fd >= Duration::from_secs(95 * 60));
}

/// A note delivery about ticket `ticket` (a body of its own, so not a duplicate of another).
fn note(ticket: u32) -> String {
    include_str!("../platforms/freshdesk/fixtures/note_created.json")
        .replace("4021", &ticket.to_string())
}

/// Issue 22: a rule over its action budget has its further jobs held — stored, due at the first
/// later minute with room — and a duplicate delivery takes no room.
#[tokio::test]
async fn jobs_over_a_rule_s_budget_are_held_to_later_minutes_and_none_is_lost() {
    let budgeted = RULE.replace(
        "[trigger]",
        "[limits]\nmax_actions_per_minute = 1\n[trigger]",
    );
    let (rt, _repo, _state) = runtime_with(&[("rules/on-note.toml", &budgeted)]);
    let active = rt.active().expect("active");
    let minute = 60_000;
    let t0: u64 = 1_800_000_000_000 - 1_800_000_000_000 % minute + 1_000;
    for (i, ticket) in [1, 2, 3].into_iter().enumerate() {
        let now = t0 + i as u64;
        let reply = store_event(&rt, &active, freshdesk_event(&note(ticket), now), now).await;
        assert_eq!(reply.status(), 200);
    }
    // A redelivery of the second: a duplicate, nothing held for it.
    let reply = store_event(&rt, &active, freshdesk_event(&note(2), t0 + 5), t0 + 5).await;
    assert_eq!(reply.status(), 200);
    rt.settle().await.unwrap();
    assert_eq!(rt.store.queue_depth(), 3, "every job is stored");
    let throttled = rt.budgets.throttled(t0 + 10);
    assert_eq!(throttled["on-note"].held, 2, "{throttled:?}");
    assert_eq!(throttled["on-note"].held_until_ms, t0 - 1_000 + 2 * minute);
    // Every job is stored, one due a minute: now, at the next minute's start, at the one after
    // (each leased for an hour, so a lease taken does not end in between).
    let due = |at: u64| rt.store.lease_due(at, 3_600_000, 10).unwrap().len();
    assert_eq!(due(t0 + 10), 1);
    assert_eq!(due(t0 - 1_000 + minute - 1), 0);
    assert_eq!(due(t0 - 1_000 + minute), 1);
    assert_eq!(due(t0 - 1_000 + 2 * minute), 1);
    // The rule's audit record says until when its job was held.
    let audit = rt
        .store
        .audit(&crate::state::AuditFilter {
            resource_type: Some("rule".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let held: Vec<u64> = audit
        .iter()
        .filter_map(|r| {
            r.detail
                .get("held_until_ms")
                .and_then(serde_json::Value::as_u64)
        })
        .collect();
    assert_eq!(held.len(), 2, "{audit:?}");
}

/// Issue 22: a shadow rule creates no job; what it would do is an audit record of the delivery.
#[tokio::test]
async fn a_shadow_rule_creates_no_job_and_records_its_rendered_actions() {
    let shadow = RULE.replace("[trigger]", "mode = \"shadow\"\n[trigger]");
    let (rt, _repo, _state) = runtime_with(&[("rules/on-note.toml", &shadow)]);
    let active = rt.active().expect("active");
    let now: u64 = 1_800_000_000_000;
    let reply = store_event(&rt, &active, freshdesk_event(&note(77), now), now).await;
    assert_eq!(reply.status(), 200);
    rt.settle().await.unwrap();
    assert_eq!(rt.store.queue_depth(), 0, "no job");
    let audit = rt
        .store
        .audit(&crate::state::AuditFilter {
            resource_type: Some("rule".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        audit[0].kind,
        crate::state::AuditKind::RuleShadowed {
            rule: "on-note".into()
        }
    );
    assert_eq!(
        audit[0].detail["actions"],
        serde_json::json!([{"step": 0, "action": "add_note", "integration": "fd",
                            "parameters": {"ticket_id": 77, "body": "seen"}}])
    );
    // Counted once stored, under the trigger's integration; a duplicate counts nothing.
    let _ = store_event(&rt, &active, freshdesk_event(&note(77), now + 1), now + 1).await;
    let rollups = rt.stats.take_rollups();
    let shadowed: u64 = rollups
        .iter()
        .filter(|r| r.integration == "fd")
        .filter_map(|r| r.counts.shadow.get("on-note"))
        .flat_map(|a| a.values())
        .sum();
    assert_eq!(shadowed, 1);
}

/// Issue 22: the loop guard applies to shadow rules: a change supportopsd made records nothing.
#[tokio::test]
async fn the_loop_guard_applies_to_shadow_rules() {
    let shadow = RULE.replace("[trigger]", "mode = \"shadow\"\n[trigger]");
    let (rt, _repo, _state) = runtime_with(&[("rules/on-note.toml", &shadow)]);
    rt.set_identity(IntegrationId::parse("fd").unwrap(), vec!["42".into()]);
    let active = rt.active().expect("active");
    let now: u64 = 1_800_000_000_000;
    let by = |who: &str| {
        note(5).replace(
            "\"agent_name\"",
            &format!("\"performer_id\": \"{who}\", \"agent_name\""),
        )
    };
    let ours = freshdesk_event(&by("42"), now);
    assert!(rt.is_self(&ours));
    assert_eq!(store_event(&rt, &active, ours, now).await.status(), 200);
    let theirs = freshdesk_event(&by("7"), now + 1);
    assert!(!rt.is_self(&theirs));
    assert_eq!(
        store_event(&rt, &active, theirs, now + 1).await.status(),
        200
    );
    rt.settle().await.unwrap();
    let shadowed: Vec<_> = rt
        .store
        .audit(&crate::state::AuditFilter {
            resource_type: Some("rule".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r.kind, crate::state::AuditKind::RuleShadowed { .. }))
        .collect();
    assert_eq!(shadowed.len(), 1, "only the agent's change: {shadowed:?}");
}

/// Issue 22: a shadow rule whose template fails at render time records the actions before it
/// and the error, and still creates no job.
#[tokio::test]
async fn a_shadow_rule_s_render_error_is_recorded() {
    let failing = RULE.replace("[trigger]", "mode = \"shadow\"\n[trigger]")
        + "[[actions]]\nintegration = \"fd\"\naction = \"add_note\"\n[actions.parameters]\nticket_id = \"{{ ticket.id }}\"\nbody = \"{{ ticket.subject | int }}\"\n";
    let (rt, _repo, _state) = runtime_with(&[("rules/on-note.toml", &failing)]);
    let active = rt.active().expect("active");
    let now: u64 = 1_800_000_000_000;
    let reply = store_event(&rt, &active, freshdesk_event(&note(9), now), now).await;
    assert_eq!(reply.status(), 200);
    rt.settle().await.unwrap();
    assert_eq!(rt.store.queue_depth(), 0);
    let audit = rt
        .store
        .audit(&crate::state::AuditFilter {
            resource_type: Some("rule".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let d = &audit[0].detail;
    assert_eq!(d["actions"].as_array().map(Vec::len), Some(1), "{d}");
    assert_eq!(d["error"]["step"], 1, "{d}");
    assert!(
        d["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{d}"
    );
}
