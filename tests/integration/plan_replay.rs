//! `supportopsd plan --base REV --replay CORPUS`: the behavioural plan in its three renderings,
//! its exit codes, the approximate conditions, the fidelity check and the rule tests as a corpus.

use serde_json::{Value, json};

use crate::support::TestRepo;

const SLACK: &str = r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = { env = "SLACK_BOT" }
signing_secret = { env = "SLACK_SIGNING" }
"#;

const ZENDESK: &str = r#"id = "zendesk-main"
platform = "zendesk"
[credentials]
subdomain = "acme"
email = "ops@acme.example"
api_token = { env = "ZD_TOKEN" }
"#;

/// Tightened in the desired revision: `high` no longer counts.
const URGENT: &str = r##"id = "urgent"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[trigger.conditions]
"ticket.priority" = { in = ["urgent", "high"] }
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#urgent"
message = "Urgent: {{ ticket.subject }}"
"##;

/// Loses its Slack action in the desired revision.
const REFUNDS: &str = r##"id = "refunds"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[trigger.conditions]
"ticket.subject" = { matches = "(?i)refund" }
[[actions]]
integration = "zendesk-main"
action = "add_tags"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
tags = ["refund"]
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#billing"
message = "Refund asked: {{ ticket.subject }}"
"##;

/// Its template changes in the desired revision.
const ANNOUNCE: &str = r##"id = "announce"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[trigger.conditions]
"ticket.status" = "new"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#queue"
message = "New: {{ ticket.subject }}"
"##;

/// Fails to render in the desired revision (`int` of a subject).
const COUNT: &str = r##"id = "count"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[trigger.conditions]
"ticket.status" = "new"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#stats"
message = "Ticket {{ ticket.id }}"
"##;

/// Reads a pseudonymised field: approximate.
const VIP: &str = r##"id = "vip"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[trigger.conditions]
"requester.email" = { matches = "@example\\.com$" }
[[actions]]
integration = "zendesk-main"
action = "add_tags"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
tags = ["vip"]
"##;

/// New in the desired revision.
const ESCALATE: &str = r##"id = "escalate-vip"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[trigger.conditions]
"ticket.tags" = { contains = "vip" }
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#vip"
message = "VIP ticket {{ ticket.id }}"
"##;

/// The base revision committed, then the desired one left in the working tree. Returns the
/// base commit.
fn two_revisions(repo: &TestRepo) -> String {
    repo.file("integrations/slack.toml", SLACK)
        .file("integrations/zendesk.toml", ZENDESK)
        .file("rules/urgent.toml", URGENT)
        .file("rules/refunds.toml", REFUNDS)
        .file("rules/announce.toml", ANNOUNCE)
        .file("rules/count.toml", COUNT)
        .file("rules/vip.toml", VIP);
    let base = repo.commit("base");
    let refunds_end = REFUNDS
        .find("[[actions]]\nintegration = \"slack-main\"")
        .unwrap();
    repo.file(
        "rules/urgent.toml",
        &URGENT.replace(r#"{ in = ["urgent", "high"] }"#, r#""urgent""#),
    )
    .file("rules/refunds.toml", &REFUNDS[..refunds_end])
    .file(
        "rules/announce.toml",
        &ANNOUNCE.replace("New: {{", "New ticket {{ ticket.id }}: {{"),
    )
    .file(
        "rules/count.toml",
        &COUNT.replace("{{ ticket.id }}", "{{ ticket.subject | int }}"),
    )
    .file("rules/escalate-vip.toml", ESCALATE);
    base
}

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/platforms/zendesk/fixtures/ticket_created_trigger.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A pseudonymised `ticket.created` delivery recorded with `revision`, the daemon having
/// matched `rules`.
fn event(n: u32, ticket: Value, email: &str, revision: &str, rules: &[&str]) -> Value {
    let mut payload = fixture();
    for (k, v) in ticket.as_object().unwrap() {
        payload["ticket"][k] = v.clone();
    }
    payload["ticket"]["id"] = json!((1000 + n).to_string());
    payload["requester"]["email"] = json!(email);
    payload["requester"]["name"] = json!("Name1 Name2");
    json!({
        "id": format!("evt_{n}"),
        "received_ms": 1_700_000_000_000u64 + u64::from(n),
        "integration": "zendesk-main",
        "platform": "zendesk",
        "event": "ticket.created",
        "revision": revision,
        "rules": rules,
        "payload": payload,
    })
}

fn write_corpus(path: &std::path::Path, scrub_text: bool, records: &[Value]) {
    let mut text = json!({
        "format": "supportopsd-events",
        "format_version": "1.0",
        "source": "daemon",
        "scrub_text": scrub_text,
    })
    .to_string();
    text.push('\n');
    for r in records {
        text.push_str(&r.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The corpus: each event exercises one difference (see the comments).
fn corpora(repo: &TestRepo, base: &str) {
    let records = [
        // Refund, urgent, a VIP: announce + count (changed, failing), refunds (loses its Slack
        // message), urgent (still), vip, and the new escalate-vip.
        event(
            1,
            json!({"subject": "Refund for double charge", "priority": "Urgent", "status": "New", "tags": "billing refund vip"}),
            "person1@example.com",
            base,
            &["announce", "count", "refunds", "urgent", "vip"],
        ),
        // High priority, not new: only urgent before, nothing now.
        event(
            2,
            json!({"subject": "Printer offline", "priority": "High", "status": "Open", "tags": ""}),
            "person2@acme.com",
            base,
            &["urgent"],
        ),
        // Normal and new: announce + count; the daemon recorded nothing (the fidelity check
        // reports it).
        event(
            3,
            json!({"subject": "Question about invoice", "priority": "Normal", "status": "New", "tags": ""}),
            "person3@acme.com",
            base,
            &[],
        ),
    ];
    let mut all: Vec<Value> = records.to_vec();
    // Not a `ticket.created` body; an integration neither revision has.
    all.push(json!({"id": "evt_4", "integration": "zendesk-main", "platform": "zendesk", "event": "ticket.created", "payload": {"nope": 1}}));
    let mut other = event(5, json!({"status": "Open"}), "person4@acme.com", base, &[]);
    other["integration"] = json!("zendesk-old");
    other["revision"] = Value::Null;
    all.push(other);
    write_corpus(&repo.path().join("events.jsonl"), false, &all);
    // Exported with --scrub-text: refunds' condition on the subject reads the stand-in.
    let scrubbed = event(
        6,
        json!({"subject": "[text removed]", "priority": "Low", "status": "Open", "tags": ""}),
        "person5@acme.com",
        "0000000000000000000000000000000000000000",
        &[],
    );
    write_corpus(&repo.path().join("scrubbed.jsonl"), true, &[scrubbed]);
}

/// The base commit, in full and as plans shorten it, replaced by `BASE` (it differs per run).
fn stable(out: &str, base: &str) -> String {
    out.replace(base, "BASE").replace(&base[..12], "BASE")
}

/// Issue 21: a tightened condition, a new rule, a removed action, a changed template and a
/// rule that fails to render each show up exactly as expected in all three formats; a
/// condition on a pseudonymised and one on a scrubbed field are approximate; the replay of the
/// base disagrees with the daemon's record exactly where the record was altered.
#[test]
fn the_behavioural_plan_shows_each_kind_of_difference_in_every_format() {
    let repo = TestRepo::new();
    let base = two_revisions(&repo);
    corpora(&repo, &base);
    let args = |format: &str| {
        vec![
            "plan".to_owned(),
            "--base".to_owned(),
            base.clone(),
            "--replay".to_owned(),
            "events.jsonl".to_owned(),
            "--replay".to_owned(),
            "scrubbed.jsonl".to_owned(),
            "--format".to_owned(),
            format.to_owned(),
        ]
    };
    let run = |format: &str| {
        let a = args(format);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        repo.run_with(&a, &[("ZD_TOKEN", "zd-secret-value-1")], None)
    };
    let json_out = run("json");
    // Rendering errors in the desired revision: exit 4, said on stderr.
    assert_eq!(json_out.code, 4, "{}", json_out.stderr);
    assert!(
        json_out.stderr.contains("fails to render 2 action(s)"),
        "{}",
        json_out.stderr
    );
    let v: Value = serde_json::from_str(&json_out.stdout).unwrap();
    assert_eq!(v["format_version"], "1.2");
    let b = &v["behaviour"];
    assert_eq!(b["events"], 6, "{b:#}");
    let rule = |id: &str| {
        b["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == id)
            .cloned()
            .unwrap_or(Value::Null)
    };
    // The tightened condition: 2 → 1, one Slack message fewer, on evt_2.
    let urgent = rule("urgent");
    assert_eq!(
        (
            urgent["matched_before"].as_u64(),
            urgent["matched_after"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(urgent["actions"][0]["removed"]["count"], 1);
    assert_eq!(
        urgent["actions"][0]["removed"]["examples"][0]["event"],
        "evt_2"
    );
    // The new rule.
    let new = rule("escalate-vip");
    assert_eq!(new["status"], "added");
    assert_eq!(new["actions"][0]["added"]["count"], 1);
    assert_eq!(
        new["actions"][0]["added"]["examples"][0]["after"]["message"],
        "VIP ticket 1001"
    );
    // The removed action: only the Slack one; the tags action is unchanged.
    let refunds = rule("refunds");
    let actions = refunds["actions"].as_array().unwrap();
    let by = |name: &str| actions.iter().find(|a| a["action"] == name).unwrap();
    assert_eq!(by("send_message")["removed"]["count"], 1);
    assert_eq!(by("add_tags")["changed"]["count"], 0);
    assert_eq!(by("add_tags")["removed"]["count"], 0);
    // The changed template: only the message, before → after.
    let announce = rule("announce");
    assert_eq!(announce["actions"][0]["changed"]["count"], 2);
    assert_eq!(
        announce["actions"][0]["changed"]["examples"][0],
        json!({"event": "evt_1", "before": {"message": "New: Refund for double charge"}, "after": {"message": "New ticket 1001: Refund for double charge"}})
    );
    // The rendering failure: an error, not a removed action.
    assert_eq!(b["errors"][0]["rule"], "count");
    assert_eq!(b["errors"][0]["count"], 2);
    assert_eq!(b["errors"][0]["events"], json!(["evt_1", "evt_3"]));
    assert_eq!(rule("count")["actions"][0]["removed"]["count"], 0);
    assert_eq!(b["already_failing"], json!([]));
    // An event that now triggers nothing.
    assert_eq!(b["silenced"]["count"], 1);
    assert_eq!(
        b["silenced"]["examples"][0],
        json!({"event": "evt_2", "rules_before": ["urgent"]})
    );
    // Approximate: the pseudonymised email, the scrubbed subject.
    let approx: Vec<(String, String, String)> = b["approximate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["rule"].as_str().unwrap().to_owned(),
                a["field"].as_str().unwrap().to_owned(),
                a["stand_in"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        approx.contains(&("vip".into(), "requester.email".into(), "email".into())),
        "{approx:?}"
    );
    assert!(
        approx.contains(&("refunds".into(), "ticket.subject".into(), "text".into())),
        "{approx:?}"
    );
    assert_eq!(b["corpora"][1]["scrub_text"], true);
    // The fidelity check: three events recorded with the base, one altered.
    assert_eq!(b["fidelity"]["compared"], 3);
    assert_eq!(b["fidelity"]["differ"]["count"], 1);
    assert_eq!(
        b["fidelity"]["differ"]["examples"][0],
        json!({"event": "evt_3", "recorded": [], "replayed": ["announce", "count"]})
    );
    // What does not replay.
    assert_eq!(b["not_normalised"]["examples"][0]["event"], "evt_4");
    assert_eq!(b["unknown"][0]["integration"], "zendesk-old");

    let text = run("text");
    let markdown = run("markdown");
    for out in [&json_out, &text, &markdown] {
        assert!(!out.stdout.contains("zd-secret-value-1"), "{}", out.stdout);
    }
    // The behavioural section comes after the configuration changes, the security block first.
    let md = &markdown.stdout;
    let security = md.find("Security-sensitive changes").unwrap();
    let config = md.find("<details><summary><code>~</code> rule").unwrap();
    let behaviour = md.find("#### Behaviour on 6 recorded events").unwrap();
    assert!(security < config && config < behaviour, "{md}");
    insta::assert_snapshot!("plan_replay_text", stable(&text.stdout, &base));
    insta::assert_snapshot!("plan_replay_markdown", stable(md, &base));
    insta::assert_snapshot!("plan_replay_json", stable(&json_out.stdout, &base));
}

/// Without rendering errors, behaviour changes are changes for --detailed-exitcode (2); the
/// same revision replays to no change (0).
#[test]
fn behaviour_changes_count_for_the_detailed_exit_code() {
    let repo = TestRepo::new();
    let base = two_revisions(&repo);
    // Without the failing template.
    repo.file("rules/count.toml", COUNT);
    corpora(&repo, &base);
    let out = repo.run(&[
        "plan",
        "--base",
        &base,
        "--replay",
        "events.jsonl",
        "--detailed-exitcode",
    ]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("rule urgent: matched 2 → 1"),
        "{}",
        out.stdout
    );
    repo.commit("desired");
    let same = repo.run(&[
        "plan",
        "--base",
        "HEAD",
        "--replay",
        "events.jsonl",
        "--detailed-exitcode",
    ]);
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);
    assert!(
        same.stdout
            .contains("0 rules behave differently (actions: +0 added, −0 removed, ~0 changed)"),
        "{}",
        same.stdout
    );
    // --replay needs --base; a file that is not a corpus is refused with what it is.
    let out = repo.run(&["plan", "--replay", "events.jsonl"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--base"), "{}", out.stderr);
    let out = repo.run(&["plan", "--base", "HEAD", "--replay", "rules/urgent.toml"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("not an event corpus"), "{}", out.stderr);
}

/// The rule tests' cases count as a corpus (`--replay tests/`).
#[test]
fn the_rule_tests_replay_as_a_corpus() {
    let repo = TestRepo::examples();
    repo.commit("examples");
    let out = repo.run(&[
        "plan", "--base", "HEAD", "--replay", "tests", "--format", "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let b = &v["behaviour"];
    assert_eq!(b["corpora"][0]["kind"], "tests");
    let cases = b["events"].as_u64().unwrap();
    assert!(cases > 5, "{b:#}");
    assert_eq!(b["summary"]["rules_changed"], 0, "{b:#}");
    assert!(
        b["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["matched_before"] == r["matched_after"])
    );
    // A folder outside the manifests is refused.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = repo.run(&[
        "plan",
        "--base",
        "HEAD",
        "--replay",
        elsewhere.path().to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("outside the manifests"),
        "{}",
        out.stderr
    );
}

/// A signed Slack `message` delivery with `text`.
async fn post_slack_message(
    client: &reqwest::Client,
    daemon: &crate::daemon_support::Daemon,
    n: u32,
    text: &str,
) {
    use crate::daemon_support::post_slack;
    let body = serde_json::to_vec(&json!({"team_id": "T0FAKE0001",
        "api_app_id": supportopsd::platforms::slack::fake::APP_ID,
        "type": "event_callback", "event_id": format!("Ev0REPLAY{n:02}"), "event_time": 1720612800,
        "event": {"type": "message", "user": "U0PERSON01", "channel": "C0SUPPORT1", "text": text,
                  "channel_type": "channel", "ts": format!("1720612800.{n:06}"), "team": "T0FAKE0001"}}))
    .unwrap();
    assert_eq!(post_slack(client, daemon, body).await, 200);
}

/// Issue 21: the corpus `events export` writes from a daemon with the fakes, after a mix of
/// deliveries (Zendesk tickets of several priorities, Slack messages asking for help or not,
/// Freshdesk tickets), replays with the daemon's revision to exactly what the daemon did: no
/// disagreement, each rule's matches the daemon's, each Slack message it sent one the replay
/// performs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_corpus_replays_to_what_the_daemon_did() {
    use crate::daemon_support::{
        BOT_TOKEN, Daemon, eventually, post_freshdesk, post_zendesk, repo,
    };
    use supportopsd::platforms::slack::fake::FakeSlack;
    const READ: &str = "read-token-for-replay-tests-0123456789";
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    // A rule with a condition, so that the deliveries do not all match the same rules.
    repo.file(
        "rules/zendesk-urgent.toml",
        r##"id = "zendesk-urgent"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[trigger.conditions]
"ticket.priority" = { in = ["urgent", "high"] }
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#urgent"
message = "Urgent {{ ticket.id }}: {{ ticket.subject }} from {{ requester.email }}"
"##,
    );
    let head = repo.commit("an urgent rule");
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &[],
        &[("SUPPORTOPSD_READ_TOKEN", READ)],
    )
    .await;
    let client = reqwest::Client::new();
    let priorities = ["Urgent", "Normal", "High", "Low", "Urgent"];
    for (i, priority) in priorities.iter().enumerate() {
        let id = 700 + i as u64;
        let mut body: Value =
            serde_json::from_slice(&crate::events_fixture::zendesk_body(id)).unwrap();
        body["ticket"]["priority"] = json!(priority);
        let status = post_zendesk(
            &client,
            &daemon,
            serde_json::to_vec(&body).unwrap(),
            &format!("inv-replay-{i}"),
        )
        .await;
        assert_eq!(status, 200);
    }
    for (n, text) in [
        (1, "help: the printer is on fire"),
        (2, "thanks, all good"),
        (3, "more help please"),
    ] {
        post_slack_message(&client, &daemon, n, text).await;
    }
    for ticket in [801, 802] {
        assert_eq!(
            post_freshdesk(&client, &daemon.url, ticket).await.unwrap(),
            200
        );
    }
    // 5 Zendesk tickets (3 of them urgent or high), 2 Slack messages asking for help (the
    // echo's answers are the daemon's own and not matched), 2 Freshdesk tickets.
    let expected_messages = 5 + 3 + 2 + 2;
    eventually(30, "every rule's Slack message", || {
        fake.requests_to("chat.postMessage").len() >= expected_messages
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("corpus.jsonl");
    let out = repo.run_with(
        &[
            "events",
            "export",
            "--out",
            file.to_str().unwrap(),
            "--url",
            &daemon.url,
        ],
        &[("SUPPORTOPSD_READ_TOKEN", READ)],
        None,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let records: Vec<supportopsd::event::corpus::Record> =
        supportopsd::event::corpus::Reader::new(std::fs::read(&file).unwrap().as_slice())
            .unwrap()
            .map(Result::unwrap)
            .collect();
    assert!(records.len() >= 10, "{records:?}");
    assert!(records.iter().all(|r| r.revision.as_deref() == Some(&head)));
    let out = repo.run(&[
        "plan",
        "--base",
        "HEAD",
        "--replay",
        file.to_str().unwrap(),
        "--format",
        "json",
        "--detailed-exitcode",
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let b = &v["behaviour"];
    assert_eq!(b["events"], records.len(), "{b:#}");
    assert_eq!(b["fidelity"]["revision"], head.as_str());
    assert_eq!(b["fidelity"]["compared"], records.len(), "{b:#}");
    assert_eq!(b["fidelity"]["differ"]["count"], 0, "{b:#}");
    assert_eq!(b["not_normalised"]["count"], 0, "{b:#}");
    assert_eq!(b["errors"], json!([]));
    // Each rule's matches are the daemon's, and so are the Slack messages sent.
    let mut recorded: std::collections::BTreeMap<String, u64> = Default::default();
    for r in &records {
        for rule in &r.rules {
            *recorded.entry(rule.clone()).or_default() += 1;
        }
    }
    let replayed: std::collections::BTreeMap<String, u64> = b["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().unwrap().to_owned(),
                r["matched_before"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(replayed, recorded);
    assert_eq!(recorded.get("zendesk-urgent"), Some(&3));
    let performed: u64 = b["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["actions"].as_array().unwrap().iter())
        .filter(|a| a["integration"] == "slack-main" && a["action"] == "send_message")
        .map(|a| a["before"].as_u64().unwrap())
        .sum();
    assert_eq!(performed, fake.requests_to("chat.postMessage").len() as u64);
    // The corpus is pseudonymised: the condition-free rules read no personal field, and no
    // condition here reads one either.
    assert_eq!(b["approximate"], json!([]));
}
