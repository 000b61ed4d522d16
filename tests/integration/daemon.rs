//! `supportopsd run` end to end: signed deliveries in, Slack messages out, at the fake Slack.

use std::time::Duration;

use supportopsd::platforms::slack::fake::{BOT_ID, Failure, FakeSlack};

use crate::daemon_support::*;

async fn posts(fake: &FakeSlack) -> Vec<serde_json::Value> {
    fake.requests_to("chat.postMessage")
        .iter()
        .map(|r| r.json())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_event_fires_its_rule_and_reaches_slack_once() {
    let (fake, _repo, _state, daemon, client) = setup(&[]).await;

    let body = zendesk_ticket(35437, "Refund for double charge");
    assert_eq!(
        post_zendesk(&client, &daemon, body.clone(), "inv-1").await,
        200
    );
    eventually(20, "the message at Slack", || {
        !fake.requests_to("chat.postMessage").is_empty()
    })
    .await;
    let sent = posts(&fake).await;
    assert_eq!(sent[0]["channel"], "#support");
    assert_eq!(sent[0]["text"], "New: Refund for double charge");
    assert_eq!(
        fake.requests_to("chat.postMessage")[0].header("authorization"),
        Some(format!("Bearer {BOT_TOKEN}").as_str())
    );

    // The same delivery again (Zendesk retries): answered 200, run once.
    assert_eq!(post_zendesk(&client, &daemon, body, "inv-1").await, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(posts(&fake).await.len(), 1);

    // The audit trail has the event, the rule and the action.
    let audit: serde_json::Value = daemon.get_json("/api/audit/logs?limit=50").await;
    let kinds: Vec<String> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"]["type"].as_str().unwrap_or("").to_owned())
        .collect();
    for k in [
        "event_accepted",
        "rule_matched",
        "action_attempted",
        "action_succeeded",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    let metrics = client
        .get(format!("{}/metrics", daemon.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("supportopsd_events_duplicate_total{platform=\"zendesk\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("outcome=\"succeeded\""), "{metrics}");
    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliveries_get_the_contract_codes_and_run_nothing() {
    let (fake, _repo, _state, daemon, client) = setup(&["--max-body", "4096"]).await;
    let url = format!("{}/api/webhooks/zendesk/zendesk-main", daemon.url);
    let body = zendesk_ticket(1, "Forged");
    let send = |ts: String, sig: String, ctype: &'static str, body: Vec<u8>| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let r = client
                .post(url)
                .header("content-type", ctype)
                .header("x-zendesk-webhook-signature-timestamp", ts)
                .header("x-zendesk-webhook-signature", sig)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Forged: signed with another secret. 401 and an empty body.
    let ts = rfc3339(0);
    let (code, text) = send(
        ts.clone(),
        zendesk_signature("wrong", &ts, &body),
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!((code, text.as_str()), (401, ""));
    // Stale: a correct signature over a timestamp ten minutes old.
    let old = rfc3339(-600);
    assert_eq!(
        send(
            old.clone(),
            zendesk_signature(ZD_SECRET, &old, &body),
            "application/json",
            body.clone()
        )
        .await
        .0,
        401
    );
    // Missing signature.
    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Oversized (over --max-body 4096).
    let big = vec![b' '; 10_000];
    assert_eq!(
        send(
            ts.clone(),
            zendesk_signature(ZD_SECRET, &ts, &big),
            "application/json",
            big
        )
        .await
        .0,
        413
    );
    // Wrong content type, correctly signed.
    assert_eq!(
        send(
            ts.clone(),
            zendesk_signature(ZD_SECRET, &ts, &body),
            "text/plain",
            body.clone()
        )
        .await
        .0,
        415
    );
    // Unparseable, correctly signed.
    let junk = b"{not json".to_vec();
    assert_eq!(
        send(
            ts.clone(),
            zendesk_signature(ZD_SECRET, &ts, &junk),
            "application/json",
            junk
        )
        .await
        .0,
        400
    );
    // Unknown integration and platform.
    let r = client
        .post(format!("{}/api/webhooks/zendesk/nope", daemon.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "an unknown id is answered like a bad signature (SEC-14)"
    );
    let r = client
        .post(format!("{}/api/webhooks/jira/x", daemon.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Trello-style HEAD validation of a callback answers 200.
    let r = client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);

    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        fake.requests_to("chat.postMessage").is_empty(),
        "nothing may run"
    );
    let metrics = client
        .get(format!("{}/metrics", daemon.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in [
        "bad_signature",
        "stale",
        "missing_signature",
        "too_large",
        "content_type",
        "malformed",
    ] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{reason}: {metrics}"
        );
    }
    // The audit log records rejections with their reason, never a secret.
    let audit = daemon
        .api(
            &client,
            reqwest::Method::GET,
            "/api/audit/logs?resource_type=integration",
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("bad_signature"), "{audit}");
    assert!(!audit.contains(ZD_SECRET));
    daemon.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_challenge_and_loop_guard() {
    let (fake, _repo, _state, daemon, client) = setup(&[]).await;
    let url = format!("{}/api/webhooks/slack/slack-main", daemon.url);
    let signed = |body: serde_json::Value| {
        let body = serde_json::to_vec(&body).unwrap();
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let sig = slack_signature(SLACK_SIGNING, &ts, &body);
        client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", sig)
            .body(body)
    };
    let r = signed(
        serde_json::json!({"type": "url_verification", "token": "t", "challenge": "abc123"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("abc123"));

    let message = |event_id: &str, extra: serde_json::Value| {
        let mut event = serde_json::json!({"type": "message", "channel": "C0SUPPORT1", "text": "I need help", "ts": "1720612800.000200", "channel_type": "channel", "event_ts": "1720612800.000200"});
        if let (Some(e), Some(x)) = (event.as_object_mut(), extra.as_object()) {
            e.extend(x.clone());
        }
        serde_json::json!({"token": "t", "team_id": "T0FAKE0001", "api_app_id": "A1", "type": "event_callback",
            "event_id": event_id, "event_time": 1720612800, "event": event})
    };
    // Our own bot's message does not trigger the rule (loop guard)…
    let r = signed(message(
        "Ev1",
        serde_json::json!({"bot_id": BOT_ID, "subtype": "bot_message"}),
    ))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    // …a person's does.
    let r = signed(message("Ev2", serde_json::json!({"user": "U0AGENT001"})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(20, "one echo", || {
        fake.requests_to("chat.postMessage").len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let sent = posts(&fake).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["text"], "Someone asked for help: I need help");
    daemon.kill().await;
}

/// Issue 16 item 11, as a user would: a channel our bot created, and a member our bot invited,
/// must not run a rule without `allow_self` — Slack names the bot *user* (`U…`) there, not the
/// bot id of its messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_loop_guard_knows_the_bot_user_as_well_as_the_bot_id() {
    use supportopsd::platforms::slack::fake::BOT_USER_ID;
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    repo.file(
        "integrations/slack.toml",
        &format!(
            r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = {{ env = "SLACK_BOT_TOKEN" }}
signing_secret = {{ env = "SLACK_SIGNING_SECRET" }}
[webhook]
events = ["message", "channel_created", "member_joined_channel"]
[endpoint]
base_url = "{}"
[limits]
requests_per_minute = 6000
"#,
            fake.base_url()
        ),
    );
    for event in ["channel_created", "member_joined_channel"] {
        let id = format!("slack-{}", event.replace('_', "-"));
        repo.file(
            &format!("rules/{id}.toml"),
            &format!(
                r##"id = "{id}"
[trigger]
integration = "slack-main"
event = "{event}"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#support"
message = "{event}"
"##
            ),
        );
    }
    repo.commit("rules on channel events");
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    // The loop guard knows who the bot is once the connection check ran.
    let mut healthy = false;
    for _ in 0..400 {
        let s = status(&daemon).await;
        healthy = s["integrations"].as_array().is_some_and(|a| {
            a.iter()
                .any(|i| i["id"] == "slack-main" && i["health"]["status"] == "healthy")
        });
        if healthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy, "the connection check did not run");
    let client = reqwest::Client::new();
    let deliver = |event_id: &str, event: serde_json::Value| {
        let body = serde_json::to_vec(&serde_json::json!({"token": "t", "team_id": "T0FAKE0001",
            "api_app_id": "A1", "type": "event_callback", "event_id": event_id,
            "event_time": 1720612800, "event": event}))
        .unwrap();
        post_slack(&client, &daemon, body)
    };
    let created = |creator: &str| {
        serde_json::json!({"type": "channel_created", "channel": {"id": "C0NEW00001",
            "name": "incident-1", "created": 1720612800, "creator": creator}})
    };
    // Ours: the bot user created the channel, and invited someone.
    assert_eq!(deliver("EvSelf1", created(BOT_USER_ID)).await, 200);
    let joined = serde_json::json!({"type": "member_joined_channel", "user": "U0AGENT001",
        "channel": "C0SUPPORT1", "channel_type": "C", "team": "T0FAKE0001", "inviter": BOT_USER_ID});
    assert_eq!(deliver("EvSelf2", joined).await, 200);
    // A person's channel runs the rule (the control).
    assert_eq!(deliver("EvPerson", created("U0AGENT002")).await, 200);
    eventually(20, "the person's channel rule", || {
        !fake.requests_to("chat.postMessage").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let sent = posts(&fake).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["text"], "channel_created");
    daemon.kill().await;
}

/// Issue 16 item 11: the loop guard checks every actor the catalogue names. A
/// `member_joined_channel` where our bot user is the member who joined, invited by a person,
/// is the bot's own doing as far as rules go: a rule without `allow_self` does not run on it,
/// and a rule with `allow_self = true` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_loop_guard_sees_our_bot_joining_when_a_person_invited_it() {
    use supportopsd::platforms::slack::fake::BOT_USER_ID;
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    repo.file(
        "integrations/slack.toml",
        &format!(
            r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = {{ env = "SLACK_BOT_TOKEN" }}
signing_secret = {{ env = "SLACK_SIGNING_SECRET" }}
[webhook]
events = ["member_joined_channel"]
[endpoint]
base_url = "{}"
[limits]
requests_per_minute = 6000
"#,
            fake.base_url()
        ),
    );
    for (id, allow_self) in [("join-plain", false), ("join-allow-self", true)] {
        repo.file(
            &format!("rules/{id}.toml"),
            &format!(
                r##"id = "{id}"
[trigger]
integration = "slack-main"
event = "member_joined_channel"
allow_self = {allow_self}
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#support"
message = "{id}"
"##
            ),
        );
    }
    repo.commit("rules on joins");
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    let mut healthy = false;
    for _ in 0..400 {
        let s = status(&daemon).await;
        healthy = s["integrations"].as_array().is_some_and(|a| {
            a.iter()
                .any(|i| i["id"] == "slack-main" && i["health"]["status"] == "healthy")
        });
        if healthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy, "the connection check did not run");
    let body = serde_json::to_vec(&serde_json::json!({"token": "t", "team_id": "T0FAKE0001",
        "api_app_id": "A1", "type": "event_callback", "event_id": "EvBotJoined",
        "event_time": 1720612800, "event": {"type": "member_joined_channel",
        "user": BOT_USER_ID, "channel": "C0SUPPORT1", "channel_type": "C",
        "team": "T0FAKE0001", "inviter": "U0PERSON01"}}))
    .unwrap();
    assert_eq!(
        post_slack(&reqwest::Client::new(), &daemon, body).await,
        200
    );
    eventually(20, "the allow_self rule", || {
        !fake.requests_to("chat.postMessage").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let sent = posts(&fake).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["text"], "join-allow-self");
    daemon.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_honoured_and_exhausted_jobs_can_be_replayed() {
    let (fake, _repo, _state, daemon, client) = setup(&["--retry-schedule", "1s,1s"]).await;

    // 429 with Retry-After: 2 → the retry waits at least that long.
    fake.fail_next(
        "chat.postMessage",
        Failure::RateLimited {
            retry_after_secs: 2,
        },
        1,
    );
    assert_eq!(
        post_zendesk(
            &client,
            &daemon,
            zendesk_ticket(1, "Rate limited"),
            "inv-r1"
        )
        .await,
        200
    );
    eventually(20, "the first attempt", || {
        fake.requests_to("chat.postMessage").len() == 1
    })
    .await;
    // The schedule alone would retry within a second; Retry-After: 2 holds it back.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        fake.requests_to("chat.postMessage").len(),
        1,
        "retried before Retry-After"
    );
    eventually(30, "the retried message", || {
        fake.requests_to("chat.postMessage")
            .iter()
            .filter(|r| r.json()["ok"].is_null())
            .count()
            >= 2
    })
    .await;
    let reqs = fake.requests_to("chat.postMessage");
    assert_eq!(reqs.len(), 2);

    // A server error after a message may have been posted: not sent again, dead-lettered at
    // once as "outcome unknown" (issue 16 item 9; the old code sent it three times).
    fake.fail_next("chat.postMessage", Failure::ServerError, 1);
    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_ticket(2, "Doomed"), "inv-d1").await,
        200
    );
    let mut dead = serde_json::Value::Null;
    for _ in 0..200 {
        dead = daemon.get_json("/api/events/dead").await;
        if dead["dead"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job = &dead["dead"][0]["job"];
    assert_eq!(job["rule"], "zendesk-to-slack");
    assert_eq!(job["attempts"], 1);
    assert!(
        job["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("outcome unknown") && e.contains("replay")),
        "{job}"
    );
    let id = job["id"].as_u64().unwrap();
    assert_eq!(fake.requests_to("chat.postMessage").len(), 3);

    // The CLI lists it through the daemon's API.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .args(["events", "dead", "--url", &daemon.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("zendesk-to-slack"));

    // Replay: it runs again (the fake now answers) and leaves the dead-letter tree.
    let replay = format!("/api/events/{id}/replay");
    let r = daemon
        .api(&client, reqwest::Method::POST, &replay)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    eventually(20, "the replayed message", || {
        fake.requests_to("chat.postMessage")
            .iter()
            .any(|r| r.json()["text"] == "New: Doomed")
            && fake.requests_to("chat.postMessage").len() == 4
    })
    .await;
    let dead: serde_json::Value = daemon.get_json("/api/events/dead").await;
    assert_eq!(dead["dead"].as_array().unwrap().len(), 0);
    let r = daemon
        .api(&client, reqwest::Method::POST, &replay)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    daemon.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_commit_is_refused_and_the_last_good_one_keeps_running() {
    let (fake, repo, _state, daemon, client) = setup(&[]).await;
    repo.file("rules/zendesk-to-slack.toml", "id = \"broken\n");
    repo.commit("broken");
    signal(daemon.pid(), "HUP");
    let mut status = serde_json::Value::Null;
    for _ in 0..100 {
        status = daemon.get_json("/api/status").await;
        if !status["refused"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        status["refused"]
            .as_str()
            .unwrap()
            .contains("validation error"),
        "{status}"
    );
    assert_eq!(
        post_zendesk(
            &client,
            &daemon,
            zendesk_ticket(9, "Still running"),
            "inv-s1"
        )
        .await,
        200
    );
    eventually(20, "the rule of the last good revision", || {
        fake.requests_to("chat.postMessage")
            .iter()
            .any(|r| r.json()["text"] == "New: Still running")
    })
    .await;
    // POST /api/sync answers once the revision is loaded: refused (409) while HEAD is broken…
    let r = daemon
        .api(&client, reqwest::Method::POST, "/api/sync")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    // …applied (200) once a fixed commit lands.
    repo.file(
        "rules/zendesk-to-slack.toml",
        "id = \"zendesk-to-slack\"\n[trigger]\nintegration = \"zendesk-main\"\nevent = \"ticket.created\"\n[[actions]]\nintegration = \"slack-main\"\naction = \"send_message\"\n[actions.parameters]\nchannel = \"#support\"\nmessage = \"Fixed: {{ ticket.subject }}\"\n",
    );
    let fixed = repo.commit("fixed");
    let r = daemon
        .api(&client, reqwest::Method::POST, "/api/sync")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["applied_revision"], fixed.as_str());
    assert!(v["refused"].is_null(), "{v}");
    // Writes to integrations and rules belong in a pull request.
    let r = client
        .post(format!("{}/api/rules", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.text().await.unwrap().contains("pull request"));
    daemon.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slack_request_url_is_registered_at_start_with_an_app_configuration_token() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    fake.accept_app_config_token(APP_CONFIG_TOKEN);
    let repo = repo(&fake.base_url());
    registering_slack(&repo, &fake, "\"message\", \"app_mention\"");
    repo.commit("slack registers its request URL");
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(
        repo.path(),
        state.path(),
        &["--public-url", "https://ops.example.com"],
    )
    .await;
    eventually(20, "the manifest update", || {
        !fake.requests_to("apps.manifest.update").is_empty()
    })
    .await;
    let subs = &fake.manifest()["settings"]["event_subscriptions"];
    assert_eq!(
        subs["request_url"],
        "https://ops.example.com/api/webhooks/slack/slack-main"
    );
    assert_eq!(
        subs["bot_events"],
        // Merged: the app's own `app_home_opened` stays.
        serde_json::json!([
            "app_home_opened",
            "app_mention",
            "message.channels",
            "message.groups",
            "message.im",
            "message.mpim"
        ])
    );
    // Everything else survived.
    assert_eq!(
        fake.manifest()["display_information"],
        supportopsd::platforms::slack::fake::initial_manifest()["display_information"]
    );
    let s = status(&daemon).await;
    let slack_problems: Vec<_> = s["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["integration"] == "slack-main")
        .collect();
    assert!(slack_problems.is_empty(), "{s}");
    let slack = s["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == "slack-main")
        .unwrap();
    assert_eq!(slack["sync"]["status"], "in_sync", "{s}");
    assert_eq!(slack["health"]["status"], "healthy", "{s}");
    assert_eq!(
        slack["registration"]["url"],
        "https://ops.example.com/api/webhooks/slack/slack-main"
    );
    assert!(
        !s["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["integration"] == "slack-main"),
        "{s}"
    );
    daemon.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_app_configuration_token_the_status_says_what_to_register() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(
        repo.path(),
        state.path(),
        &["--public-url", "https://ops.example.com/"],
    )
    .await;
    let slack_notes = |s: &serde_json::Value| -> Vec<serde_json::Value> {
        s["notes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["integration"] == "slack-main")
            .cloned()
            .collect()
    };
    let mut s = status(&daemon).await;
    for _ in 0..100 {
        if !slack_notes(&s).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        s = status(&daemon).await;
    }
    let notes = slack_notes(&s);
    assert_eq!(notes.len(), 1, "{s}");
    let note = notes[0]["note"].as_str().unwrap();
    assert!(
        note.starts_with(
            "register https://ops.example.com/api/webhooks/slack/slack-main as the Events API request URL in the Slack app settings"
        ),
        "{note}"
    );
    assert!(
        note.contains("message.channels, message.groups, message.im, message.mpim"),
        "{note}"
    );
    assert!(
        fake.requests()
            .iter()
            .all(|r| !r.api_method().starts_with("apps.manifest."))
    );
    daemon.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_from_the_daemon_and_from_the_state() {
    let (_fake, repo, state, daemon, _client) = setup(&[]).await;
    let head = git2::Repository::open(repo.path())
        .unwrap()
        .head()
        .unwrap()
        .target()
        .unwrap()
        .to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .args(["status", "--url", &daemon.url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("revision: {}", &head[..12])),
        "{text}"
    );
    assert!(text.contains("queue: 0 job(s), 0 dead letter(s)"), "{text}");
    daemon.terminate().await;
    // No daemon: the state on disk answers.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .arg("--state")
        .arg(state.path())
        .args(["status", "--url", "http://127.0.0.1:9", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["queue_depth"], 0);
}

/// A request whose head comes too slowly is answered 408 and closed; an idle keep-alive
/// connection is closed without an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_gets_408_and_an_idle_connection_closes_quietly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_fake, _repo, _state, daemon, _client) = setup(&["--read-timeout", "1s"]).await;
    let addr = daemon.url.trim_start_matches("http://").to_owned();
    let answer_of = |mut conn: tokio::net::TcpStream| async move {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer))
            .await
            .expect("the daemon closes the connection")
            .expect("a clean close");
        String::from_utf8_lossy(&answer).into_owned()
    };
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /api/webhooks/freshdesk/freshdesk-main HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let answer = answer_of(slow).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    let idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert_eq!(answer_of(idle).await, "");
    // The daemon serves on.
    let ready = reqwest::get(format!("{}/readyz", daemon.url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}
