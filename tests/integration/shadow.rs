//! Shadow rules and action budgets (issue 22) on the real daemon with the fake Freshdesk:
//!
//! 1. a `mode = "shadow"` rule records what it would have done — the audit log and the trace
//!    (rendered parameters, redacted), the metric, `status` (API and CLI), the rule's API —
//!    and the fake receives nothing; the counts survive a restart;
//! 2. a rule that loops through Freshdesk (its action updates the ticket, Freshdesk's
//!    automation delivers the update back and the rule runs again) stops at its
//!    `[limits] max_actions_per_minute`, its further jobs held (queued for a later minute, not
//!    dropped), `rule.throttled` emitted once;
//! 3. offline: `test` asserts shadow actions, `plan` shows a mode change.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use supportopsd::platforms::freshdesk::fake::{By, FakeFreshdesk, Happening};

use crate::daemon_support::*;
use crate::support::TestRepo;

fn freshdesk(base: &str, events: &str) -> String {
    format!(
        r#"id = "freshdesk-main"
platform = "freshdesk"
[credentials]
domain = "acme.freshdesk.com"
api_key = {{ env = "FD_KEY" }}
[webhook]
events = [{events}]
secret = {{ env = "FD_WEBHOOK_SECRET" }}
[endpoint]
base_url = "{base}"
[limits]
requests_per_minute = 6000
"#
    )
}

const SHADOW_TRIAGE: &str = r##"id = "shadow-triage"
mode = "shadow"
[trigger]
integration = "freshdesk-main"
event = "ticket_created"
[[actions]]
integration = "freshdesk-main"
action = "add_note"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
body = "<p>Would triage: {{ ticket.subject }}</p>"
[[actions]]
integration = "freshdesk-main"
action = "update_ticket"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
subject = "noted as {{ actions[0].result.id }}"
custom_fields = { cf_api_key = "hunter2-{{ ticket.id }}" }
"##;

/// Waits until the daemon's automation rules are at the fake.
async fn registered(fake: &FakeFreshdesk) {
    eventually(20, "the daemon's automation rules at Freshdesk", || {
        fake.rules().iter().any(|(_, r)| {
            r["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("supportopsd:freshdesk-main"))
        })
    })
    .await;
}

async fn eventually_json(
    daemon: &Daemon,
    path: &str,
    what: &str,
    mut ok: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = daemon.get_json(path).await;
        if ok(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn status_cli(repo: &TestRepo, daemon: &Daemon) -> String {
    let out = repo.run(&["status", "--url", &daemon.url]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_rule_records_what_it_would_do_and_the_platform_receives_nothing() {
    let fake = FakeFreshdesk::start("fd-api-key").await;
    let repo = TestRepo::new();
    repo.file(
        "integrations/freshdesk.toml",
        &freshdesk(&fake.base_url(), "\"ticket_created\""),
    )
    .file("rules/shadow-triage.toml", SHADOW_TRIAGE);
    repo.commit("a shadow rule");
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    registered(&fake).await;
    fake.clear_requests();

    assert_eq!(
        fake.fire(Happening::Created { ticket: 101 }).await,
        vec![200]
    );
    let status = eventually_json(&daemon, "/api/status", "the shadow counts", |v| {
        v["shadow_rules"][0]["last_hour"]["total"] == 2
    })
    .await;
    assert_eq!(status["shadow_rules"][0]["rule"], "shadow-triage");
    assert_eq!(
        status["shadow_rules"][0]["last_24h"]["by_action"],
        json!({"add_note": 1, "update_ticket": 1})
    );
    assert_eq!(status["queue_depth"], 0, "no job: {status:#}");
    assert_eq!(
        status["rates"]["last_hour"]["shadow_actions"],
        json!({"shadow-triage": {"add_note": 1, "update_ticket": 1}})
    );

    // The trace: no job, the rule's mode, what it would have done with placeholders for the
    // earlier action's result, and a credential-named parameter redacted.
    let list = daemon
        .get_json("/api/events?integration=freshdesk-main")
        .await;
    let id = list["events"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list["events"][0]["jobs"], json!([]));
    let trace = daemon.get_json(&format!("/api/events/{id}")).await;
    assert_eq!(trace["jobs"], json!([]));
    let rule = &trace["rules"]["rules"][0];
    assert_eq!(
        (&rule["rule"], &rule["mode"], &rule["matched"], &rule["ran"]),
        (
            &json!("shadow-triage"),
            &json!("shadow"),
            &json!(true),
            &json!(false)
        )
    );
    let shadow = &trace["shadow"][0];
    assert_eq!(shadow["rule"], "shadow-triage");
    assert_eq!(
        shadow["actions"][0],
        json!({"step": 0, "action": "add_note", "integration": "freshdesk-main",
               "parameters": {"ticket_id": 101, "body": "<p>Would triage: Seeded ticket 101</p>"}})
    );
    assert_eq!(
        shadow["actions"][1]["parameters"]["subject"],
        "noted as <actions[0].result.id>"
    );
    assert_eq!(
        shadow["actions"][1]["parameters"]["custom_fields"]["cf_api_key"],
        "[redacted]"
    );
    assert!(
        trace["audit"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"]["type"] == "rule_shadowed"),
        "{trace:#}"
    );
    let shown = repo.run(&["events", "show", &id, "--url", &daemon.url]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(
        shown.stdout.contains("(shadow: recorded, not run)")
            && shown
                .stdout
                .contains("Shadow rules (what they would have done; nothing ran):")
            && shown
                .stdout
                .contains("action 0 `add_note` on freshdesk-main"),
        "{}",
        shown.stdout
    );
    assert!(!shown.stdout.contains("hunter2"), "{}", shown.stdout);
    // The audit log itself holds the redacted parameters only.
    let audit = daemon.get_json("/api/audit/logs?resource_type=rule").await;
    let text = audit.to_string();
    assert!(text.contains("rule_shadowed"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "a credential-named value reached the audit log"
    );

    // The metric, the rule's API, the CLI.
    let metrics = reqwest::get(format!("{}/metrics", daemon.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "supportopsd_shadow_actions_total{rule=\"shadow-triage\",action=\"add_note\"} 1"
        ),
        "{metrics}"
    );
    let r = daemon.get_json("/api/rules/shadow-triage").await;
    assert_eq!(r["mode"], "shadow");
    assert_eq!(r["shadow_actions"]["last_7d"]["total"], 2);
    let out = status_cli(&repo, &daemon);
    assert!(
        out.contains("rule shadow-triage (shadow, nothing run): would have performed 2 action(s) in the last hour"),
        "{out}"
    );

    // The console's rule page (signed in without a token: the tokenless loopback mode).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed = http
        .post(format!("{}/ui/login", daemon.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("local=1&next=%2Fui%2F")
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    let cookie = signed.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = http
        .get(format!("{}/ui/rules/shadow-triage", daemon.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Would have performed (24 h)")
            && html.contains("1 × <code>add_note</code>, 1 × <code>update_ticket</code>"),
        "{html}"
    );

    // Nothing reached Freshdesk: no note, no update, no other change. (The reconciler may
    // read the registration it made, a GET at any moment: reads change nothing.)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(calls.is_empty(), "the platform was changed: {calls:?}");
    assert!(fake.notes().is_empty());

    // The counts come from the per-minute rollups: they survive a restart.
    assert!(daemon.terminate().await.success());
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    let status = daemon.get_json("/api/status").await;
    assert_eq!(
        status["shadow_rules"][0]["last_hour"]["total"], 2,
        "{status:#}"
    );
    assert!(daemon.terminate().await.success());
}

const LOOP: &str = r##"id = "escalate-loop"
[limits]
max_actions_per_minute = 3
[trigger]
integration = "freshdesk-main"
event = "ticket_updated"
# Also on changes supportopsd made: the loop guard is opted out (as a rule author may), so only
# the action budget stops the loop.
allow_self = true
[[actions]]
integration = "freshdesk-main"
action = "update_ticket"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
priority = "{{ ['low', 'medium', 'high', 'urgent'][ticket.priority % 4] }}"
"##;

/// The rule's `update_ticket` calls the fake received.
fn updates(fake: &FakeFreshdesk) -> usize {
    fake.requests_to(&Method::PUT, "/api/v2/tickets/").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_looping_through_freshdesk_stops_at_its_budget_and_says_so_once() {
    let fake = FakeFreshdesk::start("fd-api-key").await;
    // Freshdesk runs its ticket-update rules on the changes its API makes.
    fake.deliver_updates();
    let repo = TestRepo::new();
    repo.file(
        "integrations/freshdesk.toml",
        &freshdesk(&fake.base_url(), "\"ticket_updated\""),
    )
    .file(
        "integrations/alerts.toml",
        "id = \"alerts\"\nplatform = \"supportopsd\"\n",
    )
    .file("rules/escalate-loop.toml", LOOP);
    repo.commit("a rule that re-triggers itself");
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    registered(&fake).await;

    // The budget is per minute: start early enough in one that the loop runs into it there.
    let second = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60
    };
    if second() > 40 {
        tokio::time::sleep(Duration::from_secs(61 - second())).await;
    }
    let minute = supportopsd::runtime::now_ms() / 60_000;

    // An agent raises the priority; the rule changes it, Freshdesk delivers that change, and so
    // on: three updates, then the fourth job is held.
    fake.fire(Happening::Priority {
        ticket: 101,
        to: 2,
        by: By::Agent,
    })
    .await;
    let status = eventually_json(&daemon, "/api/status", "the rule throttled", |v| {
        v["throttled_rules"][0]["rule"] == "escalate-loop"
    })
    .await;
    let throttled = &status["throttled_rules"][0];
    assert_eq!(throttled["max_actions_per_minute"], 3);
    assert_eq!(throttled["held_until_ms"], (minute + 1) * 60_000);
    assert_eq!(updates(&fake), 3, "three updates, then held");

    // More changes by agents in the same minute: their jobs are held too, none is dropped.
    for to in [3, 4, 1] {
        fake.fire(Happening::Priority {
            ticket: 102,
            to,
            by: By::Agent,
        })
        .await;
    }
    // Held jobs wait in the outbox.
    let status = eventually_json(&daemon, "/api/status", "four jobs held", |v| {
        v["throttled_rules"][0]["held"] == 4 && v["queue_depth"] == 4
    })
    .await;
    let next = (minute + 1) * 60_000;
    assert!(
        status["throttled_rules"][0]["held_until_ms"]
            .as_u64()
            .unwrap()
            >= next
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        supportopsd::runtime::now_ms() / 60_000,
        minute,
        "the test outlived its minute; its timing assumption does not hold"
    );
    assert_eq!(updates(&fake), 3, "nothing more ran in this minute");

    // `rule.throttled` once for the episode, naming the rule.
    let emitted = eventually_json(
        &daemon,
        "/api/events?integration=alerts&event=rule.throttled",
        "rule.throttled",
        |v| v["events"].as_array().is_some_and(|e| !e.is_empty()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let emitted_again = daemon
        .get_json("/api/events?integration=alerts&event=rule.throttled")
        .await;
    assert_eq!(
        emitted_again["events"].as_array().unwrap().len(),
        1,
        "{emitted_again:#}"
    );
    let id = emitted["events"][0]["id"].as_str().unwrap().to_owned();
    let trace = daemon.get_json(&format!("/api/events/{id}")).await;
    assert_eq!(trace["view"]["rule"]["id"], "escalate-loop", "{trace:#}");
    assert_eq!(trace["view"]["rule"]["limit"], 3);

    let out = status_cli(&repo, &daemon);
    assert!(
        out.contains("rule escalate-loop throttled: over its budget of 3 action(s) a minute"),
        "{out}"
    );
    assert!(out.contains("4 job(s) held"), "{out}");
    let metrics = reqwest::get(format!("{}/metrics", daemon.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("supportopsd_jobs_held_total{rule=\"escalate-loop\"} 4"),
        "{metrics}"
    );
    assert!(daemon.terminate().await.success());
}

const SLACK: &str = r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = { env = "SLACK_BOT" }
signing_secret = { env = "SLACK_SIGNING" }
"#;

const ALERTS: &str = "id = \"alerts\"\nplatform = \"supportopsd\"\n";

const SHADOW_TO_SLACK: &str = r##"id = "degraded-to-slack"
mode = "shadow"
[trigger]
integration = "alerts"
event = "integration.degraded"
[trigger.conditions]
"integration.health" = "degraded"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#ops"
message = "{{ integration.id }} is {{ integration.health }}"
"##;

const CASE: &str = r##"[[case]]
name = "a degraded integration"
integration = "alerts"
event = "integration.degraded"
payload = { event = "integration.degraded", id = "x1", integration = { id = "zendesk-main", health = "degraded" } }
[[case.expect]]
rule = "degraded-to-slack"
action = "send_message"
shadow = true
parameters = { channel = "#ops", message = "zendesk-main is degraded" }
"##;

#[test]
fn test_cases_assert_shadow_actions_like_real_ones() {
    let repo = TestRepo::new();
    repo.file("integrations/slack.toml", SLACK)
        .file("integrations/alerts.toml", ALERTS)
        .file("rules/vip.toml", SHADOW_TO_SLACK)
        .file("tests/vip.toml", CASE);
    let out = repo.run(&["test"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // Without `shadow = true` the case fails and the diff says why.
    repo.file("tests/vip.toml", &CASE.replace("shadow = true\n", ""));
    let out = repo.run(&["test"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("\"shadow\": true"), "{}", out.stdout);
    // Once the rule is active, the expectation that it is a shadow action fails.
    repo.file(
        "rules/vip.toml",
        &SHADOW_TO_SLACK.replace("mode = \"shadow\"\n", ""),
    )
    .file("tests/vip.toml", CASE);
    let out = repo.run(&["test"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("-    \"shadow\": true"),
        "{}",
        out.stdout
    );
}

#[test]
fn plan_shows_a_mode_change_and_switching_on_is_a_new_destination() {
    let repo = TestRepo::new();
    repo.file("integrations/slack.toml", SLACK)
        .file("integrations/alerts.toml", ALERTS)
        .file("rules/vip.toml", SHADOW_TO_SLACK);
    let base = repo.commit("in shadow");
    repo.file(
        "rules/vip.toml",
        &SHADOW_TO_SLACK.replace("mode = \"shadow\"\n", ""),
    );
    repo.commit("switch it on");
    let out = repo.run(&["plan", "--base", &base, "--rev", "HEAD", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let change = &v["changes"][0];
    assert_eq!(
        change["resource"],
        json!({"kind": "rule", "id": "degraded-to-slack"})
    );
    assert_eq!(
        change["fields"],
        json!([{"path": "mode", "before": "shadow", "after": "active", "sensitive": false}])
    );
    // A shadow rule sent nothing; switched on, it sends supportopsd's events to Slack.
    let sensitive = v["security_sensitive"].to_string();
    assert!(sensitive.contains("new_destination"), "{sensitive}");
    let text = repo.run(&["plan", "--base", &base, "--rev", "HEAD"]);
    assert!(
        text.stdout.contains("~ mode: \"shadow\" → \"active\""),
        "{}",
        text.stdout
    );
    // Putting it (back) in shadow takes no destination.
    let back = repo.run(&["plan", "--base", "HEAD", "--rev", &base, "--format", "json"]);
    let v: Value = serde_json::from_str(&back.stdout).unwrap();
    assert!(
        !v["security_sensitive"]
            .to_string()
            .contains("new_destination"),
        "{}",
        back.stdout
    );
}
