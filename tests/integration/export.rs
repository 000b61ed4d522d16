//! `supportopsd events export` and `GET /api/events/export` against a daemon on loopback with
//! the fakes: the corpus through the API with the read-only token alone and from a stopped
//! daemon's `--state`, in arrival order with the revision and the rules the daemon matched,
//! personal data and credentials replaced, `--integration`, `--since` and `--scrub-text`, and
//! what a bad query or a missing token gets.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::daemon_support::{
    BOT_TOKEN, Daemon, SLACK_SIGNING, ZD_SECRET, eventually, post_slack, post_zendesk, repo,
};
use crate::events_fixture::zendesk_body;
use supportopsd::event::corpus::{Header, Reader, Record};
use supportopsd::platforms::slack::fake::FakeSlack;

const ADMIN: &str = "admin-token-for-export-tests-0123456789";
const READ: &str = "read-token-for-export-tests-0123456789";

/// Reads a corpus file: its header and records, and its whole text.
fn corpus(file: &Path) -> (Header, Vec<Record>, String) {
    let text = std::fs::read_to_string(file).unwrap();
    let reader = Reader::new(text.as_bytes()).unwrap();
    let header = reader.header().clone();
    let records = reader.map(Result::unwrap).collect();
    (header, records, text)
}

/// A signed Slack message naming a person (in the text and the profile), a phone number, and
/// carrying Slack's legacy verification token.
async fn post_slack_naming_a_person(client: &reqwest::Client, daemon: &Daemon) {
    let body = serde_json::to_vec(&json!({"token": "legacy-verification-token-42",
        "team_id": "T0FAKE0001", "api_app_id": supportopsd::platforms::slack::fake::APP_ID,
        "type": "event_callback", "event_id": "Ev0EXPORT01", "event_time": 1720612800,
        "event": {"type": "message", "user": "U0PERSON01", "channel": "C0SUPPORT1",
                  "text": "help: Priya Raman here, call +44 20 7946 0018 or priya.raman@example.com",
                  "user_profile": {"real_name": "Priya Raman", "display_name": "priya"},
                  "channel_type": "channel", "ts": "1720612800.000100", "team": "T0FAKE0001"}}))
    .unwrap();
    assert_eq!(post_slack(client, daemon, body).await, 200);
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The records of `integration`.
fn of<'a>(records: &'a [Record], integration: &str) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| r.integration == integration)
        .collect()
}

fn evt_number(r: &Record) -> u64 {
    r.id.trim_start_matches("evt_").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_through_the_api_with_the_read_token_and_from_the_stopped_state() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &[],
        &[
            ("SUPPORTOPSD_ADMIN_TOKEN", ADMIN),
            ("SUPPORTOPSD_READ_TOKEN", READ),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_body(501), "inv-1").await,
        200
    );
    post_slack_naming_a_person(&client, &daemon).await;
    eventually(20, "both rules ran", || {
        fake.requests_to("chat.postMessage").len() >= 2
    })
    .await;
    // A later delivery, after a whole second `--since` names.
    let since_ms = (now_ms() / 1000 + 1) * 1000;
    while now_ms() < since_ms + 20 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let since = supportopsd::platforms::supportopsd::events::rfc3339_ms(since_ms);
    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_body(502), "inv-2").await,
        200
    );
    eventually(20, "the third rule ran", || {
        fake.requests_to("chat.postMessage").len() >= 3
    })
    .await;

    // Through the API with the read-only token alone.
    let read = [("SUPPORTOPSD_READ_TOKEN", READ)];
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("corpus.jsonl");
    let f = file.to_str().unwrap();
    let out = repo.run_with(
        &["events", "export", "--out", f, "--url", &daemon.url],
        &read,
        None,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (header, records, text) = corpus(&file);
    assert_eq!(header.source.as_deref(), Some("daemon"));
    assert!(!header.scrub_text);
    assert!(
        header.since_ms.unwrap() <= now_ms() - 7 * 86_400_000 + 60_000,
        "{header:?}"
    );
    assert!(
        out.stderr
            .contains(&format!("Exported {} deliveries, ", records.len())),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("replaced"), "{}", out.stderr);
    // Arrival order, oldest first.
    let ids: Vec<u64> = records.iter().map(evt_number).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let zd = of(&records, "zendesk-main");
    let slack = of(&records, "slack-main");
    assert_eq!(zd.len(), 2, "{text}");
    assert_eq!(slack.len(), 1, "{text}");
    assert!(evt_number(zd[0]) < evt_number(slack[0]) && evt_number(slack[0]) < evt_number(zd[1]));
    // What the daemon matched, under which revision.
    for r in zd.iter().chain(&slack) {
        assert_eq!(r.revision.as_deref().map(str::len), Some(40), "{r:?}");
        assert!(!r.enrichment_pending);
    }
    assert_eq!(zd[0].rules, vec!["zendesk-to-slack".to_owned()]);
    assert_eq!(slack[0].rules, vec!["slack-echo".to_owned()]);
    assert_eq!(zd[0].event, "ticket.created");
    assert_eq!(zd[0].payload["ticket"]["id"], json!("501"));
    assert_eq!(zd[1].payload["ticket"]["id"], json!("502"));
    // Personal data replaced consistently within each delivery; text kept; no credential.
    assert_eq!(
        zd[0].payload["ticket"]["subject"],
        json!("Name1 Name2 cannot print")
    );
    assert_eq!(zd[0].payload["requester"]["name"], json!("Name1 Name2"));
    assert_eq!(
        zd[0].payload["requester"]["email"],
        json!("person1@example.com")
    );
    let said = slack[0].payload["event"]["text"].as_str().unwrap();
    // (Stand-ins are numbered per delivery: the display name `priya` came first in this one.)
    assert!(said.starts_with("help: Name2 Name3 here, call "), "{said}");
    assert_eq!(slack[0].payload["token"], json!("[redacted]"));
    let replaced = slack[0].replaced.unwrap();
    assert!(
        replaced.emails == 1 && replaced.phones >= 1 && replaced.credentials >= 1,
        "{replaced:?}"
    );
    for secret in [
        "Priya",
        "Raman",
        "priya.raman",
        "\"priya\"",
        "7946",
        "legacy-verification-token-42",
        ADMIN,
        READ,
        ZD_SECRET,
        SLACK_SIGNING,
        BOT_TOKEN,
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
        assert!(!out.stderr.contains(secret), "{secret} in {}", out.stderr);
    }

    // `--integration` and `--since` (an RFC 3339 time) bound it; `--scrub-text` replaces text.
    let narrow = out_dir.path().join("narrow.jsonl");
    let out = repo.run_with(
        &[
            "events",
            "export",
            "--integration",
            "zendesk-main",
            "--since",
            &since,
            "--scrub-text",
            "--out",
            narrow.to_str().unwrap(),
            "--url",
            &daemon.url,
        ],
        &read,
        None,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let (header, narrowed, _) = corpus(&narrow);
    assert_eq!(header.integration.as_deref(), Some("zendesk-main"));
    assert_eq!(header.since_ms, Some(since_ms));
    assert!(header.scrub_text);
    assert_eq!(narrowed.len(), 1, "{narrowed:?}");
    assert_eq!(narrowed[0].id, zd[1].id);
    assert_eq!(
        narrowed[0].payload["ticket"]["subject"],
        json!("[text removed]")
    );
    assert!(narrowed[0].replaced.unwrap().texts >= 1);
    assert!(
        out.stderr.contains("Exported 1 deliveries, "),
        "{}",
        out.stderr
    );
    let out = repo.run_with(
        &[
            "events",
            "export",
            "--since",
            "1h",
            "--scrub-text",
            "--integration",
            "slack-main",
            "--out",
            narrow.to_str().unwrap(),
            "--url",
            &daemon.url,
        ],
        &read,
        None,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let (_, scrubbed, _) = corpus(&narrow);
    assert_eq!(scrubbed.len(), 1);
    assert_eq!(
        scrubbed[0].payload["event"]["text"],
        json!("[text removed]")
    );

    // The route: streamed JSON Lines; a malformed or unknown parameter is a 400 naming it; no
    // token is a 401.
    let get = |query: &str, token: Option<&str>| {
        let mut req = client.get(format!("{}/api/events/export{query}", daemon.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let r = get("?since_ms=0", Some(READ)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let body = r.text().await.unwrap();
    assert_eq!(body.lines().count(), records.len() + 1, "{body}");
    for (query, names) in [
        ("?since_ms=7d", "since_ms"),
        ("?integration=Not%20an%20id", "integration"),
        ("?scrub_text=yes", "scrub_text"),
        ("?limit=10", "unknown parameter"),
    ] {
        let r = get(query, Some(READ)).await.unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains(names), "{query}: {v}");
    }
    assert_eq!(get("", None).await.unwrap().status(), 401);
    let refused = out_dir.path().join("refused.jsonl");
    let out = repo.run_with(
        &[
            "events",
            "export",
            "--out",
            refused.to_str().unwrap(),
            "--url",
            &daemon.url,
        ],
        &[],
        None,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("401"), "{}", out.stderr);
    assert!(!refused.exists());
    assert_eq!(
        std::fs::read_dir(out_dir.path()).unwrap().count(),
        2,
        "a temporary file was left behind"
    );

    // While the daemon holds the state, asking the state names the command to run instead.
    let held = out_dir.path().join("held.jsonl");
    let out = repo.run_with(
        &[
            "--state",
            state.path().to_str().unwrap(),
            "events",
            "export",
            "--out",
            held.to_str().unwrap(),
            "--url",
            "http://127.0.0.1:1",
        ],
        &[],
        None,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("supportopsd events export --out"),
        "{}",
        out.stderr
    );
    assert!(!held.exists());
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 2);

    // From the stopped daemon's state (nothing answers at --url): the same records.
    daemon.terminate().await;
    let offline = out_dir.path().join("offline.jsonl");
    let out = repo.run_with(
        &[
            "--state",
            state.path().to_str().unwrap(),
            "events",
            "export",
            "--out",
            offline.to_str().unwrap(),
            "--url",
            "http://127.0.0.1:1",
        ],
        &[],
        None,
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("from the state at"), "{}", out.stderr);
    let (header, from_state, _) = corpus(&offline);
    assert_eq!(header.source.as_deref(), Some("state"));
    assert_eq!(from_state, records);
    assert_eq!(
        std::fs::metadata(&offline).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
