//! The emergency brakes on the real daemon with the fake Slack: `pause`/`resume` of a rule and
//! of an integration under a stream of deliveries (every delivery stored, nothing sent while
//! paused, everything the paused integration held back sent on resume, the holds kept across a
//! restart), `--drop-queued`, who may pause, the audit records, and `status`/`plan` showing
//! the holds.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use supportopsd::platforms::slack::fake::FakeSlack;

use crate::daemon_support::{
    BOT_TOKEN, Daemon, FD_SECRET, ZD_SECRET, eventually, post_freshdesk, post_zendesk, repo,
    status, zendesk_ticket,
};

const ADMIN: &str = "holds-admin-token-0123456789";
const READ: &str = "holds-read-token-0123456789";

fn tokens() -> [(&'static str, &'static str); 2] {
    [
        ("SUPPORTOPSD_ADMIN_TOKEN", ADMIN),
        ("SUPPORTOPSD_READ_TOKEN", READ),
    ]
}

/// Runs the CLI with the admin token and no other daemon address from the environment.
fn cli(repo: &Path, state: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .current_dir(repo)
        .arg("--repo")
        .arg(repo)
        .arg("--state")
        .arg(state)
        .args(args)
        .env_remove("SUPPORTOPSD_URL")
        .env_remove("SUPPORTOPSD_LISTEN")
        .env_remove("SUPPORTOPSD_READ_TOKEN")
        .env("SUPPORTOPSD_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("run supportopsd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A change through the operator API with the admin token: (status, body).
async fn post(daemon: &Daemon, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", daemon.url))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// The messages the fake Slack received.
fn sent(fake: &FakeSlack) -> Vec<String> {
    fake.requests_to("chat.postMessage")
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The stored deliveries of an integration (newest first).
async fn deliveries(daemon: &Daemon, integration: &str) -> Vec<Value> {
    daemon
        .get_json(&format!("/api/events?integration={integration}&limit=1000"))
        .await["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn start(repo: &Path, state: &Path) -> Daemon {
    Daemon::spawn_with_env(repo, state, &[], &tokens()).await
}

/// The audit records of one resource.
async fn audit_of(daemon: &Daemon, kind: &str, id: &str) -> Vec<Value> {
    daemon
        .get_json(&format!(
            "/api/audit/logs?resource_type={kind}&resource_id={id}"
        ))
        .await["records"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn paused_rules_and_integrations_hold_under_a_stream_across_a_restart_and_run_on_resume() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut daemon = start(repo.path(), state.path()).await;

    // The rule through the API, the integration through the CLI.
    let (code, v) = post(
        &daemon,
        "/api/rules/zendesk-to-slack/pause",
        json!({"reason": "posting in a loop, incident 42"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["already_paused"], false);
    assert_eq!(v["paused"]["kind"], "rule");
    let (code, out, err) = cli(
        repo.path(),
        state.path(),
        &[
            "pause",
            "--integration",
            "slack-main",
            "--reason",
            "Slack maintenance",
            "--url",
            &daemon.url,
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Paused the integration `slack-main`"), "{out}");

    // A stream of deliveries on both rules' triggers.
    for n in 0..8u64 {
        let body = zendesk_ticket(100 + n, &format!("zendesk {n}"));
        assert_eq!(
            post_zendesk(&client, &daemon, body, &format!("inv-{n}")).await,
            200
        );
        assert_eq!(
            post_freshdesk(&client, &daemon.url, 200 + n).await.unwrap(),
            200
        );
    }
    // Every delivery is stored; the freshdesk rule's jobs wait; the paused rule has none.
    let zd = deliveries(&daemon, "zendesk-main").await;
    let fd = deliveries(&daemon, "freshdesk-main").await;
    assert_eq!((zd.len(), fd.len()), (8, 8));
    assert!(zd.iter().all(|d| d["jobs"] == json!([])), "{zd:?}");
    // Time for the executor to try (its poll is 500 ms): nothing is sent, nothing retried.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(sent(&fake).is_empty(), "{:?}", sent(&fake));
    let s = status(&daemon).await;
    assert_eq!(s["queue_depth"], 8, "{s}");
    assert_eq!(s["dead_letters"], 0, "{s}");
    for d in deliveries(&daemon, "freshdesk-main").await {
        let state = &d["jobs"][0]["outcome"]["state"];
        assert!(state == "queued" || state == "running", "{d}");
    }
    // The trace says why the zendesk rule did not run.
    let id = zd[0]["id"].as_str().unwrap().to_owned();
    let trace = daemon.get_json(&format!("/api/events/{id}")).await;
    let rule = trace["rules"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "zendesk-to-slack")
        .cloned()
        .unwrap_or_else(|| panic!("{trace}"));
    assert_eq!(rule["result"], "paused", "{rule}");
    assert_eq!(rule["matched"], false);
    assert_eq!(
        rule["note"],
        "paused (posting in a loop, incident 42): no job was created"
    );
    // So does `events show`.
    let (code, out, err) = cli(
        repo.path(),
        state.path(),
        &["events", "show", &id, "--url", &daemon.url],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("zendesk-to-slack             PAUSED"), "{out}");
    assert!(
        out.contains("paused (posting in a loop, incident 42): no job was created"),
        "{out}"
    );
    // Status lists both holds, rules first.
    let holds = s["holds"].as_array().unwrap();
    assert_eq!(holds.len(), 2, "{s}");
    assert_eq!(
        (&holds[0]["kind"], &holds[0]["id"]),
        (&json!("rule"), &json!("zendesk-to-slack"))
    );
    assert_eq!(holds[1]["reason"], "Slack maintenance");

    // A restart keeps the holds, and they still hold.
    daemon.terminate().await;
    daemon = start(repo.path(), state.path()).await;
    assert_eq!(status(&daemon).await["holds"].as_array().unwrap().len(), 2);
    for n in 8..10u64 {
        assert_eq!(
            post_freshdesk(&client, &daemon.url, 200 + n).await.unwrap(),
            200
        );
    }
    let body = zendesk_ticket(108, "zendesk after the restart");
    assert_eq!(post_zendesk(&client, &daemon, body, "inv-8").await, 200);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(sent(&fake).is_empty(), "{:?}", sent(&fake));
    assert_eq!(status(&daemon).await["queue_depth"], 10);

    // Resuming the integration runs everything it held back, once each.
    let (code, v) = post(&daemon, "/api/integrations/slack-main/resume", json!({})).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["was_paused"], true);
    assert_eq!(v["dropped"], 0);
    eventually(15, "the ten held messages sent", || sent(&fake).len() >= 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut texts = sent(&fake);
    texts.sort();
    let mut want: Vec<String> = (200..210)
        .map(|t| format!("Freshdesk {t}: Ticket number {t}"))
        .collect();
    want.sort();
    assert_eq!(texts, want);
    let s = status(&daemon).await;
    assert_eq!(
        (&s["queue_depth"], &s["dead_letters"]),
        (&json!(0), &json!(0))
    );

    // The rule is still paused; resumed, it matches new deliveries only.
    let (code, out, err) = cli(
        repo.path(),
        state.path(),
        &["resume", "--rule", "zendesk-to-slack", "--url", &daemon.url],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("Deliveries that arrived while it was paused are not run"),
        "{out}"
    );
    let body = zendesk_ticket(300, "after the resume");
    assert_eq!(post_zendesk(&client, &daemon, body, "inv-300").await, 200);
    eventually(10, "the new zendesk message", || sent(&fake).len() == 11).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let texts = sent(&fake);
    assert_eq!(texts.len(), 11, "{texts:?}");
    assert!(
        texts.contains(&"New: after the resume".to_owned()),
        "{texts:?}"
    );
    assert!(
        status(&daemon).await["holds"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Audited: who and why, and nothing secret.
    let rule_audit = audit_of(&daemon, "rule", "zendesk-to-slack").await;
    let paused = rule_audit
        .iter()
        .find(|r| r["kind"]["type"] == "paused")
        .unwrap_or_else(|| panic!("{rule_audit:?}"));
    assert_eq!(paused["detail"]["reason"], "posting in a loop, incident 42");
    assert_eq!(paused["detail"]["token"], "admin");
    assert!(rule_audit.iter().any(|r| r["kind"]["type"] == "resumed"));
    let skipped = rule_audit
        .iter()
        .filter(|r| r["kind"]["type"] == "rule_paused_skipped")
        .count();
    assert_eq!(skipped, 9, "{rule_audit:?}");
    let integration_audit = audit_of(&daemon, "integration", "slack-main").await;
    let resumed = integration_audit
        .iter()
        .find(|r| r["kind"]["type"] == "resumed")
        .unwrap_or_else(|| panic!("{integration_audit:?}"));
    assert_eq!(resumed["kind"]["dropped"], 0);
    let all = serde_json::to_string(&[rule_audit, integration_audit]).unwrap();
    for secret in [ADMIN, READ, BOT_TOKEN, FD_SECRET, ZD_SECRET] {
        assert!(!all.contains(secret), "{secret} in the audit log");
    }
    daemon.terminate().await;
}

#[tokio::test]
async fn drop_queued_dead_letters_and_counts_and_only_the_admin_token_pauses() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let daemon = start(repo.path(), state.path()).await;
    let path = "/api/integrations/slack-main/pause";

    // The read-only token may list, not pause.
    let r = client
        .post(format!("{}{path}", daemon.url))
        .bearer_auth(READ)
        .json(&json!({"reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = client
        .get(format!("{}/api/holds", daemon.url))
        .bearer_auth(READ)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["holds"], json!([]));
    // A reason is required and bounded; an unknown id is a 404 that suggests the right one.
    assert_eq!(post(&daemon, path, json!({})).await.0, 400);
    assert_eq!(post(&daemon, path, json!({"reason": "  "})).await.0, 400);
    let long = "x".repeat(501);
    assert_eq!(post(&daemon, path, json!({"reason": long})).await.0, 400);
    let (code, v) = post(
        &daemon,
        "/api/rules/freshdesk-to-slak/pause",
        json!({"reason": "typo"}),
    )
    .await;
    assert_eq!(code, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("did you mean `freshdesk-to-slack`?"),
        "{v}"
    );
    // Pausing twice: the first hold stays, nothing new is written.
    let (code, v) = post(&daemon, path, json!({"reason": "flood"})).await;
    assert_eq!((code, &v["already_paused"]), (200, &json!(false)), "{v}");
    let (code, v) = post(&daemon, path, json!({"reason": "again"})).await;
    assert_eq!((code, &v["already_paused"]), (200, &json!(true)), "{v}");
    assert_eq!(v["paused"]["reason"], "flood");
    let paused_records = audit_of(&daemon, "integration", "slack-main")
        .await
        .iter()
        .filter(|r| r["kind"]["type"] == "paused")
        .count();
    assert_eq!(paused_records, 1);

    for n in 0..5u64 {
        assert_eq!(
            post_freshdesk(&client, &daemon.url, 400 + n).await.unwrap(),
            200
        );
    }
    // status and plan show the hold.
    let (code, out, err) = cli(repo.path(), state.path(), &["status", "--url", &daemon.url]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("paused integration slack-main since"), "{out}");
    assert!(out.contains(": flood — by "), "{out}");
    let (code, out, err) = cli(
        repo.path(),
        state.path(),
        &[
            "plan",
            "--base",
            "HEAD",
            "--url",
            &daemon.url,
            "--format",
            "json",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["format_version"], "1.2");
    assert_eq!(plan["holds"][0]["id"], "slack-main");
    assert_eq!(plan["holds"][0]["reason"], "flood");
    assert_eq!(plan["holds_from"], format!("daemon at {}", daemon.url));

    // The console shows it to the read-only token: overview, integration and rule pages.
    let (http, cookie) = console(&daemon).await;
    for (path, want) in [
        ("/ui/", "id=\"holds\""),
        ("/ui/integrations/slack-main", "id=\"paused\""),
    ] {
        let html = ui(&http, &cookie, &daemon, path).await;
        assert!(html.contains(want), "{path}: {html}");
        assert!(html.contains("flood"), "{path}");
        assert!(
            html.contains("supportopsd resume --integration slack-main"),
            "{path}"
        );
        assert!(!html.contains(ADMIN) && !html.contains(BOT_TOKEN), "{path}");
    }
    let html = ui(&http, &cookie, &daemon, "/ui/rules/freshdesk-to-slack").await;
    assert!(
        !html.contains("id=\"paused\""),
        "only the integration is paused"
    );

    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(status(&daemon).await["queue_depth"], 5);
    let (code, v) = post(
        &daemon,
        "/api/integrations/slack-main/resume",
        json!({"drop_queued": true}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!((&v["dropped"], &v["woken"]), (&json!(5), &json!(0)), "{v}");
    let s = status(&daemon).await;
    assert_eq!(
        (&s["queue_depth"], &s["dead_letters"]),
        (&json!(0), &json!(5)),
        "{s}"
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(sent(&fake).is_empty(), "{:?}", sent(&fake));
    let resumed = audit_of(&daemon, "integration", "slack-main")
        .await
        .into_iter()
        .find(|r| r["kind"]["type"] == "resumed")
        .unwrap();
    assert_eq!(resumed["kind"]["dropped"], 5);
    // Resuming again: not paused, nothing changes (the CLI exits 1).
    let (code, out, _) = cli(
        repo.path(),
        state.path(),
        &[
            "resume",
            "--integration",
            "slack-main",
            "--url",
            &daemon.url,
        ],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("was not paused"), "{out}");

    // Where nothing answers while the daemon holds the state: what to run instead.
    let (code, _, err) = cli(
        repo.path(),
        state.path(),
        &[
            "pause",
            "--rule",
            "freshdesk-to-slack",
            "--reason",
            "x",
            "--url",
            "http://127.0.0.1:9",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("in use by another supportopsd process"),
        "{err}"
    );
    assert!(
        err.contains(
            "`supportopsd pause --rule freshdesk-to-slack --reason '…' --url http://127.0.0.1:8080`"
        ),
        "{err}"
    );

    // Paused without a daemon: written into the state, which plan reads and the daemon holds.
    daemon.terminate().await;
    let (code, out, err) = cli(
        repo.path(),
        state.path(),
        &[
            "pause",
            "--rule",
            "freshdesk-to-slack",
            "--reason",
            "offline brake",
            "--url",
            "http://127.0.0.1:9",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("in the state"), "{out}");
    let (code, out, err) = cli(repo.path(), state.path(), &["plan"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Runtime holds (1, from the state)"), "{out}");
    assert!(
        out.contains("rule freshdesk-to-slack — matches nothing"),
        "{out}"
    );
    let daemon = start(repo.path(), state.path()).await;
    assert_eq!(
        post_freshdesk(&client, &daemon.url, 500).await.unwrap(),
        200
    );
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(status(&daemon).await["queue_depth"], 0);
    assert!(sent(&fake).is_empty());
    let (http, cookie) = console(&daemon).await;
    let html = ui(&http, &cookie, &daemon, "/ui/rules/freshdesk-to-slack").await;
    assert!(html.contains("id=\"paused\""), "{html}");
    assert!(html.contains("offline brake"), "{html}");
    let html = ui(&http, &cookie, &daemon, "/ui/rules").await;
    assert!(html.contains("badge warn\">paused"), "{html}");
    daemon.terminate().await;
}

/// A console session with the read-only token: the client and the cookie.
async fn console(daemon: &Daemon) -> (reqwest::Client, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(format!("{}/ui/login", daemon.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={READ}&next=%2Fui%2F"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (http, cookie)
}

/// A console page's HTML.
async fn ui(http: &reqwest::Client, cookie: &str, daemon: &Daemon, path: &str) -> String {
    http.get(format!("{}{path}", daemon.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
