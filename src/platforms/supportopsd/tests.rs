//! Catalogue, normalisation, ingress refusal, validation and loop-guard tests for the built-in
//! `supportopsd` platform.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::DESCRIPTOR;
use super::events::{self, origin_rules, originated_from, payload};
use crate::event::Event;
use crate::manifest::source::{Contents, FileKind, RawFile};
use crate::manifest::{self, ManifestSet, Snapshot};
use crate::platforms::testkit::{self, Fixture, fixtures};
use crate::platforms::{self, ConnectError, InboundRequest, PlatformKind, WebhookSecret};
use crate::runtime::active::Active;
use crate::secrets::ResolveContext;

const FIXTURES: &[Fixture] = fixtures![named:
    "integration.degraded",
    "integration.recovered",
    "revision.applied",
    "revision.refused",
    "registration.repaired",
    "job.dead_lettered",
    "rule.throttled",
];

#[test]
fn every_fixture_normalises_with_every_catalogued_field() {
    for (label, spec, n) in testkit::assert_every_fixture_complete(&DESCRIPTOR, FIXTURES) {
        assert!(n.id.is_some(), "{label}: no id");
        assert!(n.time.is_some(), "{label}: no time");
        assert_eq!(n.actor(), Some("supportopsd"), "{label}");
        assert!(n.objects.contains_key(spec.primary), "{label}");
    }
}

#[test]
fn every_event_has_a_fixture_and_the_catalogue_is_sound() {
    testkit::assert_every_deliverable_event_has_a_fixture(&DESCRIPTOR, FIXTURES);
    testkit::assert_catalogue_sound(&DESCRIPTOR);
    let names: Vec<&str> = DESCRIPTOR.events.iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "integration.degraded",
            "integration.recovered",
            "revision.applied",
            "revision.refused",
            "registration.repaired",
            "job.dead_lettered",
            "rule.throttled",
        ]
    );
}

#[test]
fn no_credentials_no_config_no_actions_no_webhook_secret() {
    assert!(DESCRIPTOR.credentials.is_empty());
    assert!(DESCRIPTOR.config.is_empty());
    assert!(DESCRIPTOR.actions.is_empty());
    assert_eq!(DESCRIPTOR.webhook_secret, WebhookSecret::NotUsed);
    assert_eq!(
        PlatformKind::parse("supportopsd"),
        Some(PlatformKind::Supportopsd)
    );
    assert!(PlatformKind::Supportopsd.is_builtin());
    assert!(PlatformKind::ALL.iter().filter(|k| k.is_builtin()).count() == 1);
}

#[test]
fn the_payload_the_daemon_builds_normalises() {
    let p = payload(
        events::INTEGRATION_DEGRADED,
        "occ-1",
        "2026-11-28T23:00:00Z",
        json!({"integration": {"id": "slack-main", "platform": "slack", "health": "degraded",
                "reason": "credentials refused", "since": "2026-11-28T23:00:00Z", "failures": 2}}),
        &["a".to_owned()],
    );
    let spec = DESCRIPTOR.event(events::INTEGRATION_DEGRADED).unwrap();
    let n = (DESCRIPTOR.normalize)(spec, &p).unwrap();
    assert_eq!(n.id.as_deref(), Some("occ-1"));
    assert_eq!(n.time.as_deref(), Some("2026-11-28T23:00:00Z"));
    assert_eq!(n.objects["integration"]["id"], "slack-main");
    assert_eq!(n.objects["integration"]["failures"], 2);
    assert!(!n.objects.contains_key("origin"));
    assert_eq!(origin_rules(&p), ["a"]);
    testkit::assert_context_complete(spec, "built", &n);
}

#[test]
fn payloads_that_do_not_fit_are_refused_with_reasons() {
    let fixture = testkit::fixture_json(FIXTURES, "integration.degraded.json");
    let spec = DESCRIPTOR.event(events::INTEGRATION_DEGRADED).unwrap();
    let error = |v: &Value| (DESCRIPTOR.normalize)(spec, v).unwrap_err().to_string();
    // Another event's payload.
    let other = testkit::fixture_json(FIXTURES, "revision.applied.json");
    assert!(
        error(&other).contains("is a `revision.applied` event"),
        "{}",
        error(&other)
    );
    // No subject.
    let mut v = fixture.clone();
    v.as_object_mut().unwrap().remove("integration");
    assert!(error(&v).contains("expected an object at `integration`"));
    // A catalogued field of the wrong type.
    let mut v = fixture.clone();
    v["integration"]["failures"] = json!("many");
    assert!(error(&v).contains("`integration.failures` has the wrong type"));
    // A broken origin.
    let mut v = fixture.clone();
    v["origin"] = json!({"rules": [1]});
    assert!(error(&v).contains("origin"));
    testkit::assert_refused(
        &DESCRIPTOR,
        events::INTEGRATION_DEGRADED,
        &[
            json!(null),
            json!([]),
            json!("x"),
            json!({}),
            json!({"event": 1}),
        ],
    );
}

#[test]
fn junk_never_panics() {
    testkit::normalize_mutated_fixtures(&DESCRIPTOR, FIXTURES);
    testkit::assert_inbound_never_panics(PlatformKind::Supportopsd, &["x-supportopsd"], &[]);
}

#[test]
fn nobody_may_deliver_from_outside() {
    let body = testkit::fixture_json(FIXTURES, "integration.degraded.json").to_string();
    let headers = testkit::headers(&[("content-type", "application/json")]);
    let req = InboundRequest {
        method: &http::Method::POST,
        headers: &headers,
        body: body.as_bytes(),
        now_unix: 1_764_370_800,
    };
    let keys = testkit::keys(Some("whatever"));
    assert!(platforms::verify(PlatformKind::Supportopsd, &req, &keys).is_err());
    assert!(platforms::parse(PlatformKind::Supportopsd, &req).is_err());
}

#[test]
fn origin_rules_are_read_leniently() {
    assert!(origin_rules(&json!({})).is_empty());
    assert!(origin_rules(&json!({"origin": {"rules": "x"}})).is_empty());
    let p = json!({"origin": {"rules": ["a", 2, "b"]}});
    assert_eq!(origin_rules(&p), ["a", "b"]);
    assert!(originated_from(&p, "b"));
    assert!(!originated_from(&p, "c"));
}

#[test]
fn rfc3339_of_milliseconds() {
    assert_eq!(events::rfc3339_ms(0), "1970-01-01T00:00:00Z");
    assert_eq!(
        events::rfc3339_ms(1_764_370_800_999),
        "2025-11-28T23:00:00Z"
    );
    assert_eq!(events::rfc3339_ms(u64::MAX), "1970-01-01T00:00:00Z");
}

// === validation ===

fn file(path: &str, text: &str) -> RawFile {
    let kind = if path.starts_with("integrations/") {
        FileKind::Integration
    } else if path.starts_with("rules/") {
        FileKind::Rule
    } else {
        FileKind::Test
    };
    RawFile {
        path: path.to_owned(),
        kind,
        contents: Contents::Bytes(text.as_bytes().to_vec()),
    }
}

const ALERTS: &str =
    "id = \"alerts\"\nplatform = \"supportopsd\"\nname = \"supportopsd's own events\"\n";
const SLACK: &str = "id = \"slack-main\"\nplatform = \"slack\"\n[credentials]\nbot_token = { env = \"T\" }\nsigning_secret = { env = \"S\" }\n";
const ALERT_RULE: &str = r##"id = "degraded-to-slack"
[trigger]
integration = "alerts"
event = "integration.degraded"
[trigger.conditions]
"integration.platform" = "zendesk"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#ops"
message = "{{ integration.id }} is {{ integration.health }} since {{ integration.since }}: {{ integration.reason }}"
"##;

fn load(files: &[(&str, &str)]) -> (Option<ManifestSet>, String) {
    let files = files.iter().map(|(p, t)| file(p, t)).collect();
    let loaded = manifest::load(&Snapshot::in_memory(files));
    let rendered = loaded.diagnostics.render("");
    (loaded.set, rendered)
}

#[test]
fn an_alerts_integration_needs_no_credentials_and_rules_trigger_on_it() {
    let (set, diagnostics) = load(&[
        ("integrations/alerts.toml", ALERTS),
        ("integrations/slack.toml", SLACK),
        ("rules/degraded-to-slack.toml", ALERT_RULE),
    ]);
    let set = set.unwrap_or_else(|| panic!("{diagnostics}"));
    assert!(!diagnostics.contains("error"), "{diagnostics}");
    let rule = &set.rules["degraded-to-slack"];
    assert_eq!(rule.trigger.event.name, "integration.degraded");
    // The `platform` shorthand works too.
    let by_platform = ALERT_RULE.replace("integration = \"alerts\"", "platform = \"supportopsd\"");
    let (set, diagnostics) = load(&[
        ("integrations/alerts.toml", ALERTS),
        ("integrations/slack.toml", SLACK),
        ("rules/degraded-to-slack.toml", &by_platform),
    ]);
    assert!(set.is_some(), "{diagnostics}");
}

#[test]
fn webhook_endpoint_limits_and_credentials_are_refused_on_it() {
    for (extra, expected) in [
        (
            "[webhook]\nevents = [\"integration.degraded\"]\n",
            "takes no `[webhook]`",
        ),
        (
            "[endpoint]\nbase_url = \"http://127.0.0.1:9\"\n",
            "takes no `[endpoint]`",
        ),
        ("[limits]\nrequests_per_minute = 5\n", "takes no `[limits]`"),
        ("[credentials]\ntoken = { env = \"X\" }\n", "token"),
    ] {
        let text = format!("{ALERTS}{extra}");
        let (set, diagnostics) = load(&[("integrations/alerts.toml", &text)]);
        assert!(set.is_none(), "{extra} accepted");
        assert!(diagnostics.contains(expected), "{extra}: {diagnostics}");
    }
}

#[test]
fn actions_on_it_and_unknown_events_and_fields_are_refused() {
    let acting = ALERT_RULE.replace("integration = \"slack-main\"", "integration = \"alerts\"");
    let (set, diagnostics) = load(&[
        ("integrations/alerts.toml", ALERTS),
        ("integrations/slack.toml", SLACK),
        ("rules/r.toml", &acting),
    ]);
    assert!(set.is_none());
    assert!(diagnostics.contains("performs no actions"), "{diagnostics}");

    let unknown = ALERT_RULE.replace("integration.degraded", "integration.degradd");
    let (set, diagnostics) = load(&[
        ("integrations/alerts.toml", ALERTS),
        ("integrations/slack.toml", SLACK),
        ("rules/r.toml", &unknown),
    ]);
    assert!(set.is_none());
    assert!(
        diagnostics.contains("did you mean `integration.degraded`"),
        "{diagnostics}"
    );

    let bad_field = ALERT_RULE.replace("{{ integration.reason }}", "{{ job.rule }}");
    let (set, diagnostics) = load(&[
        ("integrations/alerts.toml", ALERTS),
        ("integrations/slack.toml", SLACK),
        ("rules/r.toml", &bad_field),
    ]);
    assert!(
        set.is_none(),
        "a job field on an integration event was accepted"
    );
    assert!(diagnostics.contains("job"), "{diagnostics}");
}

#[test]
fn connect_says_there_are_no_actions_and_health_is_builtin() {
    let (set, d) = load(&[("integrations/alerts.toml", ALERTS)]);
    let set = set.unwrap_or_else(|| panic!("{d}"));
    let env = |_: &str| None;
    let ctx = ResolveContext::new(None, &env);
    let e = platforms::connect(
        &set.integrations["alerts"],
        &ctx,
        &crate::policy::Policy::none(),
    )
    .unwrap_err();
    assert!(matches!(e, ConnectError::NoActions("supportopsd")));
    assert!(e.to_string().contains("performs no actions"));
    let (status, reason) = crate::runtime::health::of_connect_error(&e);
    assert_eq!(status, crate::runtime::health::HealthStatus::Healthy);
    assert!(reason.contains("built in"));
}

// === the loop guard ===

const DEAD_RULE: &str = r##"id = "dead-to-slack"
[trigger]
integration = "alerts"
event = "job.dead_lettered"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#ops"
message = "Job {{ job.id }} of {{ job.rule }} failed: {{ job.error }}"
"##;

fn dead_event(origin: &[String]) -> Event {
    let spec = DESCRIPTOR.event(events::JOB_DEAD_LETTERED).unwrap();
    let p = payload(
        events::JOB_DEAD_LETTERED,
        "occ",
        "2026-11-28T23:00:00Z",
        json!({"job": {"id": 7, "rule": "dead-to-slack", "error": "x", "step": 0, "attempts": 3, "event": "alerts/occ0"}}),
        origin,
    );
    let n = (DESCRIPTOR.normalize)(spec, &p).unwrap();
    Event {
        platform: PlatformKind::Supportopsd,
        integration: manifest::IntegrationId::parse("alerts").unwrap(),
        name: spec.name.to_owned(),
        id: "occ".into(),
        time: n.time,
        received_at_ms: 0,
        actor: n.actors.first().cloned(),
        actors: n.actors,
        objects: n.objects,
        changes: n.changes,
        payload: p,
    }
}

#[test]
fn an_alert_rule_is_not_triggered_by_what_it_caused() {
    let other = DEAD_RULE.replace("dead-to-slack", "dead-to-slack-too");
    let (set, d) = load(&[
        ("integrations/alerts.toml", ALERTS),
        ("integrations/slack.toml", SLACK),
        ("rules/dead.toml", DEAD_RULE),
        ("rules/dead2.toml", &other),
    ]);
    let set = set.unwrap_or_else(|| panic!("{d}"));
    let env = |_: &str| None;
    let ctx = ResolveContext::new(None, &env);
    let (active, _) = Active::build(
        set,
        None,
        "http://127.0.0.1:1",
        &ctx,
        &crate::policy::Policy::none(),
        &HashMap::new(),
    );
    let ids = |e: &Event| -> Vec<String> {
        let mut v: Vec<String> = active
            .matching(e, &e.context(), false)
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        v.sort();
        v
    };
    // A dead letter of an ordinary job triggers every rule on it.
    assert_eq!(
        ids(&dead_event(&[])),
        ["dead-to-slack", "dead-to-slack-too"]
    );
    // One caused by `dead-to-slack`'s own job does not trigger it again…
    assert_eq!(
        ids(&dead_event(&["dead-to-slack".into()])),
        ["dead-to-slack-too"]
    );
    // …and the chain through the second rule stops there too.
    assert!(
        ids(&dead_event(&[
            "dead-to-slack".into(),
            "dead-to-slack-too".into()
        ]))
        .is_empty()
    );
}

#[test]
fn the_test_command_applies_the_same_guard() {
    let case = |origin: &str| {
        format!(
            "[[case]]\nname = \"dead\"\nintegration = \"alerts\"\nevent = \"job.dead_lettered\"\npayload = {{ event = \"job.dead_lettered\", id = \"x\", job = {{ id = 1, rule = \"r\", error = \"boom\" }}, origin = {{ rules = [{origin}] }} }}\n"
        )
    };
    for (origin, expect_none) in [("", false), ("\"dead-to-slack\"", true)] {
        let mut text = case(origin);
        if expect_none {
            text.push_str("expect_none = true\n");
        } else {
            text.push_str("[[case.expect]]\nrule = \"dead-to-slack\"\naction = \"send_message\"\nparameters = { channel = \"#ops\", message = \"Job 1 of r failed: boom\" }\n");
        }
        let (set, d) = load(&[
            ("integrations/alerts.toml", ALERTS),
            ("integrations/slack.toml", SLACK),
            ("rules/dead.toml", DEAD_RULE),
            ("tests/alerts.toml", &text),
        ]);
        let set = set.unwrap_or_else(|| panic!("{d}"));
        let report = crate::testing::run(&set);
        assert!(
            report.cases.iter().all(|c| c.passed),
            "{origin}: {report:?}"
        );
        assert_eq!(report.cases.len(), 1);
    }
}
