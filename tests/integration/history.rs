//! Event history, traces and the job routes, end to end on loopback with the fake Slack:
//! deliveries that match, one that matches no rule of two, one dead-lettered; the listing's
//! filters and cursor pages (no duplicates, no gaps) and its 400s; a trace's rules, jobs,
//! attempts (rendered parameters, answer, duration, classification) and audit trail, with no
//! secret in it; `/api/jobs/dead` and `/api/jobs/{id}/replay` with their old aliases; and the
//! CLI (`events list | show | dead`) through the daemon and from `--state`.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use supportopsd::platforms::slack::fake::{Failure, FakeSlack};

use crate::daemon_support::*;

/// A rule on Zendesk's `ticket.created` whose condition the test tickets never meet.
const VIP_RULE: &str = r##"id = "zendesk-urgent"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[trigger.conditions]
"ticket.priority" = "urgent"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#urgent"
message = "Urgent: {{ ticket.subject }}"
"##;

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .args(args)
        .env_remove("SUPPORTOPSD_URL")
        .env_remove("SUPPORTOPSD_LISTEN")
        .env_remove("SUPPORTOPSD_ADMIN_TOKEN")
        .env_remove("SUPPORTOPSD_READ_TOKEN")
        .env_remove("SUPPORTOPSD_STATE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn get(client: &reqwest::Client, daemon: &Daemon, path: &str) -> (u16, Value) {
    let r = daemon
        .api(client, reqwest::Method::GET, path)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

fn ids(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every page of `query` at `limit`, following `next_cursor`.
async fn all_pages(
    client: &reqwest::Client,
    daemon: &Daemon,
    query: &str,
    limit: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let path = match &cursor {
            Some(c) => format!("/api/events?{query}&limit={limit}&cursor={c}"),
            None => format!("/api/events?{query}&limit={limit}"),
        };
        let (code, page) = get(client, daemon, &path).await;
        assert_eq!(code, 200, "{path}: {page}");
        let got = ids(&page);
        assert!(got.len() <= limit);
        out.extend(got);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
    panic!("paging did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_traces_and_job_routes() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    repo.file("rules/zendesk-urgent.toml", VIP_RULE);
    repo.commit("an urgent rule");
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &["--retry-schedule", "1s"]).await;
    let client = reqwest::Client::new();

    for n in 1..=5u64 {
        let body = zendesk_ticket(100 + n, &format!("Ticket {n}"));
        assert_eq!(
            post_zendesk(&client, &daemon, body, &format!("inv-{n}")).await,
            200
        );
    }
    eventually(30, "five messages", || {
        fake.requests_to("chat.postMessage").len() == 5
    })
    .await;
    // A server error after the message may have been posted: dead-lettered at once.
    fake.fail_next("chat.postMessage", Failure::ServerError, 1);
    let doomed = zendesk_ticket(199, "Doomed");
    assert_eq!(
        post_zendesk(&client, &daemon, doomed, "inv-doomed").await,
        200
    );
    for _ in 0..200 {
        let dead = get(&client, &daemon, "/api/jobs/dead").await.1;
        if dead["dead"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        post_freshdesk(&client, &daemon.url, 4242).await.unwrap(),
        200
    );
    let mut all = Value::Null;
    for _ in 0..300 {
        all = get(&client, &daemon, "/api/events").await.1;
        let settled = all["events"].as_array().is_some_and(|e| {
            e.len() == 7
                && e.iter()
                    .all(|e| matches!(e["outcome"].as_str(), Some("done" | "dead")))
        });
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = all["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 7, "{all}");
    // Newest first: the Freshdesk delivery, then the doomed one.
    assert_eq!(events[0]["integration"], "freshdesk-main");
    // Freshdesk sends no delivery id: the platform's id is the body's digest.
    assert!(
        events[0]["platform_event_id"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(events[1]["outcome"], "dead", "{all}");
    assert!(events[1]["received_at"].as_str().unwrap().ends_with('Z'));
    assert!(events[1]["received_ms"].as_u64().unwrap() > 0);
    assert_eq!(events[1]["rules"], serde_json::json!(["zendesk-to-slack"]));
    assert_eq!(events[1]["jobs"][0]["outcome"]["state"], "dead");
    let doomed_id = events[1]["id"].as_str().unwrap().to_owned();
    let done_id = events[2]["id"].as_str().unwrap().to_owned();
    assert!(all["next_cursor"].is_null());
    assert!(all["rejections"]["windows"].is_array());

    // Filters, each from its index, and combined.
    for (query, expected) in [
        ("integration=zendesk-main", 6),
        ("integration=freshdesk-main&event=ticket_created", 1),
        ("integration=zendesk-main&event=ticket.created", 6),
        ("rule=zendesk-to-slack", 6),
        ("rule=zendesk-urgent", 0),
        ("outcome=dead", 1),
        ("outcome=done", 6),
        (
            "outcome=done&integration=zendesk-main&rule=zendesk-to-slack",
            5,
        ),
        ("outcome=no_rules", 0),
        ("since=1&until=2", 0),
    ] {
        let (code, v) = get(&client, &daemon, &format!("/api/events?{query}")).await;
        assert_eq!(code, 200, "{query}: {v}");
        assert_eq!(ids(&v).len(), expected, "{query}: {v}");
    }
    let (_, dead) = get(&client, &daemon, "/api/events?outcome=dead").await;
    assert_eq!(ids(&dead), std::slice::from_ref(&doomed_id));

    // Cursor pages: the same deliveries as one page, in order, none twice.
    let whole = ids(&all);
    for limit in [1, 2, 3] {
        let paged = all_pages(&client, &daemon, "", limit).await;
        assert_eq!(paged, whole, "limit {limit}");
        assert_eq!(paged.iter().collect::<HashSet<_>>().len(), paged.len());
    }
    let zd = all_pages(&client, &daemon, "integration=zendesk-main", 4).await;
    assert_eq!(zd, whole[1..].to_vec());
    // An event name alone spans integrations (only Zendesk sends `ticket.created` here).
    let created = all_pages(&client, &daemon, "event=ticket.created", 4).await;
    assert!(!created.is_empty());
    assert_eq!(
        created,
        all_pages(
            &client,
            &daemon,
            "integration=zendesk-main&event=ticket.created",
            4
        )
        .await
    );

    // Bad parameters: 400 saying what is wrong.
    for (query, says) in [
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("outcome=fine", "outcome"),
        ("since=yesterday", "since"),
        ("cursor=evt_1", "cursor"),
        ("colour=red", "unknown parameter"),
    ] {
        let (code, v) = get(&client, &daemon, &format!("/api/events?{query}")).await;
        assert_eq!(code, 400, "{query}: {v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{query}: {v}");
    }
    assert_eq!(get(&client, &daemon, "/api/events/evt_x").await.0, 400);
    assert_eq!(
        get(&client, &daemon, "/api/events/evt_999999999").await.0,
        404
    );

    // The trace of a delivery that ran.
    let (code, trace) = get(&client, &daemon, &format!("/api/events/{done_id}")).await;
    assert_eq!(code, 200, "{trace}");
    let text = trace.to_string();
    for secret in [ZD_SECRET, BOT_TOKEN, SLACK_SIGNING, FD_SECRET] {
        assert!(!text.contains(secret), "a secret in the trace: {text}");
    }
    assert_eq!(trace["event"]["id"], done_id);
    assert_eq!(trace["view"]["ticket"]["subject"], "Ticket 5");
    let rules = trace["rules"]["rules"].as_array().unwrap();
    let rule = |id: &str| rules.iter().find(|r| r["rule"] == id).unwrap().clone();
    assert_eq!(rule("zendesk-to-slack")["result"], "matched");
    assert_eq!(rule("zendesk-to-slack")["ran"], true);
    assert_eq!(rule("zendesk-urgent")["result"], "no_match");
    assert_eq!(rule("zendesk-urgent")["ran"], false);
    // Why it did not match, from the evaluator that decided: the condition and the value seen.
    let failures = rule("zendesk-urgent")["explanation"]["failures"].to_string();
    assert!(
        failures.contains("ticket.priority") && failures.contains("urgent"),
        "{failures}"
    );
    assert_eq!(
        rule("zendesk-to-slack")["explanation"]["outcome"],
        "matched"
    );
    assert_eq!(
        rules.len(),
        2,
        "only the rules of its integration and event"
    );
    let job = &trace["jobs"][0];
    assert_eq!(job["outcome"]["state"], "done");
    let attempt = &job["attempts"][0];
    assert_eq!(attempt["result"], "succeeded", "{trace}");
    assert_eq!(attempt["action"], "send_message");
    assert_eq!(attempt["parameters"]["message"], "New: Ticket 5");
    assert_eq!(attempt["classification"], "ok");
    assert!(attempt["duration_ms"].is_u64());
    assert!(attempt["answer"].as_str().is_some_and(|a| !a.is_empty()));
    let kinds: Vec<&str> = trace["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "event_accepted",
            "rule_matched",
            "action_attempted",
            "action_succeeded"
        ]
    );
    let times: Vec<u64> = trace["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["at_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // The dead-lettered one: its attempt, classified.
    let (_, trace) = get(&client, &daemon, &format!("/api/events/{doomed_id}")).await;
    let job = &trace["jobs"][0];
    assert_eq!(job["outcome"]["state"], "dead", "{trace}");
    let attempt = &job["attempts"][0];
    assert_eq!(attempt["result"], "failed", "{trace}");
    assert_eq!(attempt["classification"], "outcome_unknown");
    assert_eq!(attempt["dead_lettered"], true);
    let job_id = job["job"].as_u64().unwrap();

    // The CLI, through the daemon.
    let (ok, out, err) = cli(&["events", "list", "--outcome", "dead", "--url", &daemon.url]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&doomed_id) && out.contains("DEAD-LETTERED"),
        "{out}"
    );
    let (ok, out, err) = cli(&["events", "list", "--limit", "2", "--url", &daemon.url]);
    assert!(ok, "{err}");
    assert!(out.contains("--cursor c"), "{out}");
    let (ok, out, err) = cli(&["events", "show", &done_id, "--url", &daemon.url]);
    assert!(ok, "{err}");
    for part in [
        "Rules on zendesk-main ticket.created",
        "MATCH",
        "no match",
        "send_message",
        "Audit (oldest first)",
        "New: Ticket 5",
    ] {
        assert!(out.contains(part), "{part} missing from {out}");
    }
    let (ok, _, err) = cli(&["events", "show", "evt_nope", "--url", &daemon.url]);
    assert!(!ok && err.contains("evt_"), "{err}");
    let (ok, out, err) = cli(&["events", "dead", "--url", &daemon.url]);
    assert!(ok && out.contains("zendesk-to-slack"), "{out}{err}");

    // Job routes and their aliases.
    let (code, jobs) = get(&client, &daemon, "/api/jobs/dead").await;
    assert_eq!(code, 200);
    assert_eq!(jobs["dead"][0]["job"]["id"], job_id);
    assert_eq!(get(&client, &daemon, "/api/events/dead").await.1, jobs);
    let post = |path: String| daemon.api(&client, reqwest::Method::POST, &path).send();
    assert_eq!(
        post("/api/jobs/abc/replay".into()).await.unwrap().status(),
        400
    );
    assert_eq!(
        post(format!("/api/jobs/{job_id}/replay"))
            .await
            .unwrap()
            .status(),
        202
    );
    eventually(20, "the replayed message", || {
        fake.requests_to("chat.postMessage")
            .iter()
            .any(|r| r.json()["text"] == "New: Doomed")
    })
    .await;
    assert_eq!(
        post(format!("/api/events/{job_id}/replay"))
            .await
            .unwrap()
            .status(),
        404,
        "replayed already (the old route is an alias)"
    );
    let mut outcome = Value::Null;
    for _ in 0..100 {
        outcome = get(&client, &daemon, &format!("/api/events/{doomed_id}"))
            .await
            .1["event"]["outcome"]
            .clone();
        if outcome == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(outcome, "done");
    let (_, trace) = get(&client, &daemon, &format!("/api/events/{doomed_id}")).await;
    let kinds: Vec<&str> = trace["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"]["type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"job_replayed"), "{kinds:?}");
    assert_eq!(trace["jobs"][0]["attempts"].as_array().unwrap().len(), 2);
    let status = daemon.terminate().await;
    assert!(status.success());

    // From the state, without a daemon (nothing answers at --url).
    let dir = state.path().to_str().unwrap();
    let (ok, out, err) = cli(&[
        "--state",
        dir,
        "events",
        "list",
        "--url",
        "http://127.0.0.1:9",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("evt_")).count(),
        7,
        "{out}"
    );
    let (ok, out, err) = cli(&[
        "--state",
        dir,
        "events",
        "show",
        &done_id,
        "--json",
        "--url",
        "http://127.0.0.1:9",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rules"]["evaluated"], false);
    assert_eq!(v["jobs"][0]["attempts"][0]["result"], "succeeded");
}
