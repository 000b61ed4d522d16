//! Real deliveries as rule tests (`events fixture`), `GET /api/events/{id}/payload`, and a
//! delivery evaluated again (`events redeliver`), against a daemon on loopback with the fakes.

use std::path::Path;

use serde_json::{Value, json};

use crate::daemon_support::{Daemon, eventually, post_slack, post_zendesk, setup};

/// Runs `supportopsd --repo REPO ARGS…` without any daemon address or token from the test's
/// own environment.
pub(crate) fn cli(repo: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .current_dir(repo)
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("SUPPORTOPSD_URL")
        .env_remove("SUPPORTOPSD_LISTEN")
        .env_remove("SUPPORTOPSD_ADMIN_TOKEN")
        .env_remove("SUPPORTOPSD_READ_TOKEN")
        .env_remove("SUPPORTOPSD_STATE")
        .env_remove("STATE_DIRECTORY")
        .env("SUPPORTOPSD_LOG", "error")
        .output()
        .expect("run supportopsd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A Zendesk `ticket.created` delivery naming a person, by email and in the subject.
pub(crate) fn zendesk_body(id: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "supportopsd_event": "ticket.created",
        "ticket": {"id": id.to_string(), "subject": "Priya Raman cannot print", "status": "New",
                   "priority": "Normal", "type": "Question", "tags": "billing", "via": "Mail",
                   "url": format!("acme.zendesk.com/agent/tickets/{id}"), "external_id": "",
                   "brand_id": "", "group_id": "", "organization_id": "",
                   "created_at": "2099-07-11T08:15:00Z", "updated_at": "2099-07-11T08:15:00Z"},
        "requester": {"id": "6596848315901", "name": "Priya Raman", "email": "priya.raman@example.com"},
        "assignee": {"id": "", "name": "", "email": ""},
        "current_user": {"id": "6596848315901"},
        "comment": {"id": "", "body": "", "public": "", "author_id": ""}
    }))
    .unwrap()
}

/// The stored deliveries of a stopped daemon's state, newest first: `(evt_<n>, integration)`
/// (the history listing is another route).
pub(crate) fn stored_events(state: &Path) -> Vec<(String, String)> {
    let store = supportopsd::state::Store::open_existing(state)
        .unwrap()
        .unwrap();
    store
        .events_page(None, 100)
        .unwrap()
        .into_iter()
        .map(|m| (m.id.to_string(), m.integration.to_string()))
        .collect()
}

/// The event id of the newest stored delivery of `integration`.
pub(crate) fn event_of(stored: &[(String, String)], integration: &str) -> String {
    stored
        .iter()
        .find(|(_, i)| i == integration)
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| panic!("no stored {integration} event in {stored:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_delivery_becomes_a_pseudonymised_case_that_passes() {
    let (fake, repo, state, daemon, client) = setup(&[]).await;
    daemon.wait_ready().await;
    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_body(501), "inv-1").await,
        200
    );
    // A Slack message carrying Slack's legacy verification token and a phone number.
    let body = serde_json::to_vec(&json!({"token": "legacy-verification-token-42",
        "team_id": "T0FAKE0001", "api_app_id": supportopsd::platforms::slack::fake::APP_ID,
        "type": "event_callback", "event_id": "Ev0FIXTURE1", "event_time": 1720612800,
        "event": {"type": "message", "user": "U0PERSON01", "channel": "C0SUPPORT1",
                  "text": "help: Priya Raman here, call +44 20 7946 0018",
                  "user_profile": {"real_name": "Priya Raman", "display_name": "priya"},
                  "channel_type": "channel", "ts": "1720612800.000100", "team": "T0FAKE0001"}}))
    .unwrap();
    assert_eq!(post_slack(&client, &daemon, body).await, 200);
    eventually(20, "both rules ran", || {
        fake.requests_to("chat.postMessage").len() >= 2
    })
    .await;

    // Which ids they got (the listing is another route): read from the state, then the daemon
    // runs again on it.
    daemon.terminate().await;
    let stored = stored_events(state.path());
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    daemon.wait_ready().await;

    // The route: a malformed id is a 400, the stored ones answer with their payload and what
    // the daemon did, never with a credential.
    let r = client
        .get(format!("{}/api/events/nope/payload", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (zd, slack) = (
        event_of(&stored, "zendesk-main"),
        event_of(&stored, "slack-main"),
    );
    let payload = |id: &str| {
        let url = format!("{}/api/events/{id}/payload", daemon.url);
        let client = client.clone();
        async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let (zd_body, slack_body) = (payload(&zd).await, payload(&slack).await);
    let r = client
        .get(format!("{}/api/events/evt_1/payload", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(zd_body["rules"], json!(["zendesk-to-slack"]));
    assert_eq!(zd_body["event"], "ticket.created");
    assert!(zd_body["revision"].is_string());
    assert_eq!(zd_body["payload"]["requester"]["name"], "Priya Raman");
    assert_eq!(slack_body["rules"], json!(["slack-echo"]));
    assert!(
        !slack_body
            .to_string()
            .contains("legacy-verification-token-42"),
        "{slack_body}"
    );

    // Written through the daemon into the repository's tests folder: the cases pass.
    let tests = repo.path().join("tests");
    let (ok, out) = cli(
        repo.path(),
        &[
            "events",
            "fixture",
            &zd,
            &slack,
            "--to",
            tests.to_str().unwrap(),
            "--url",
            &daemon.url,
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("expects zendesk-to-slack → send_message"),
        "{out}"
    );
    assert!(out.contains("expects slack-echo → send_message"), "{out}");
    assert!(!out.contains("FAIL") && !out.contains("note:"), "{out}");
    let (ok, out) = cli(repo.path(), &["test"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!(
            "ok    tests/events.toml: {zd} (zendesk-main ticket.created"
        )),
        "{out}"
    );
    assert!(out.contains("0 failed"), "{out}");
    let written: Vec<String> = std::fs::read_dir(tests.join("fixtures"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(written.len(), 2);
    let all = written.join("\n") + &std::fs::read_to_string(tests.join("events.toml")).unwrap();
    for personal in [
        "Priya",
        "Raman",
        "priya.raman@example.com",
        "7946",
        "legacy-verification-token-42",
        "\"priya\"",
    ] {
        assert!(!all.contains(personal), "{personal} in {all}");
    }
    // Text is kept (the rule matches on it), with the name in it replaced (stand-ins are
    // numbered per file: the Slack user's display name `priya` came first there).
    assert!(all.contains("Name1 Name2 cannot print"), "{all}");
    assert!(
        all.contains("help: Name2 Name3 here, call +1-555-0101"),
        "{all}"
    );

    // The repository decides differently now (a condition no longer holds): said, and the
    // case asserts what the repository does.
    let rule = repo.path().join("rules/zendesk-to-slack.toml");
    let text = std::fs::read_to_string(&rule).unwrap();
    std::fs::write(
        &rule,
        text.replace(
            "event = \"ticket.created\"\n",
            "event = \"ticket.created\"\n[trigger.conditions]\n\"ticket.priority\" = \"urgent\"\n",
        ),
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let (ok, out) = cli(
        repo.path(),
        &[
            "events",
            "fixture",
            &zd,
            "--to",
            elsewhere.path().to_str().unwrap(),
            "--url",
            &daemon.url,
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("expects no actions"), "{out}");
    assert!(
        out.contains("note: the daemon matched `zendesk-to-slack`")
            && out.contains("match no rule"),
        "{out}"
    );
    let via_api = std::fs::read_to_string(
        elsewhere
            .path()
            .join(format!("fixtures/zendesk-main-{zd}.json")),
    )
    .unwrap();

    // Without a daemon: from the state, the same fixture.
    daemon.terminate().await;
    let offline = tempfile::tempdir().unwrap();
    let (ok, out) = cli(
        repo.path(),
        &[
            "--state",
            state.path().to_str().unwrap(),
            "events",
            "fixture",
            &zd,
            "--to",
            offline.path().to_str().unwrap(),
            "--url",
            "http://127.0.0.1:9",
        ],
    );
    assert!(ok, "{out}");
    let from_state = std::fs::read_to_string(
        offline
            .path()
            .join(format!("fixtures/zendesk-main-{zd}.json")),
    )
    .unwrap();
    assert_eq!(from_state, via_api);

    // From a saved raw delivery, without a daemon or a state: the same payload, pseudonymised
    // the same way.
    let raw_dir = tempfile::tempdir().unwrap();
    let raw = raw_dir.path().join("delivery.json");
    std::fs::write(&raw, zendesk_body(501)).unwrap();
    let (ok, out) = cli(
        repo.path(),
        &[
            "events",
            "fixture",
            "--raw",
            raw.to_str().unwrap(),
            "--integration",
            "zendesk-main",
            "--event",
            "ticket.created",
            "--to",
            raw_dir.path().to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let from_raw =
        std::fs::read_to_string(raw_dir.path().join("fixtures/zendesk-main-delivery.json"))
            .unwrap();
    assert_eq!(from_raw, via_api);
    // Writing the same delivery twice is refused, and nothing is appended.
    let (ok, out) = cli(
        repo.path(),
        &[
            "events",
            "fixture",
            "--raw",
            raw.to_str().unwrap(),
            "--integration",
            "zendesk-main",
            "--event",
            "ticket.created",
            "--to",
            raw_dir.path().to_str().unwrap(),
        ],
    );
    assert!(!ok && out.contains("exists already"), "{out}");
    let cases = std::fs::read_to_string(raw_dir.path().join("events.toml")).unwrap();
    assert_eq!(cases.matches("[[case]]").count(), 1, "{cases}");
    // Bad input: a clear error.
    let (ok, out) = cli(
        repo.path(),
        &[
            "events",
            "fixture",
            "--raw",
            raw.to_str().unwrap(),
            "--integration",
            "zendesk-main",
            "--event",
            "ticket.exploded",
            "--to",
            raw_dir.path().to_str().unwrap(),
        ],
    );
    assert!(!ok && out.contains("no event `ticket.exploded`"), "{out}");
    let (ok, out) = cli(repo.path(), &["events", "fixture", "evt_x", "--to", "t"]);
    assert!(!ok && out.contains("not an event id"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_all_dead_requeues_one_integrations_dead_letters_and_each_rule_run_logs_a_line() {
    use supportopsd::platforms::slack::fake::{Failure, FakeSlack};
    let fake = FakeSlack::start(crate::daemon_support::BOT_TOKEN, None).await;
    let repo = crate::daemon_support::repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_logged(
        repo.path(),
        state.path(),
        &[],
        &[("SUPPORTOPSD_LOG", "info")],
    )
    .await;
    let client = reqwest::Client::new();
    // Slack refuses the channel twice: both Zendesk deliveries' jobs are dead-lettered.
    fake.fail_next(
        "chat.postMessage",
        Failure::Error("channel_not_found".into()),
        2,
    );
    for (n, inv) in [(601, "inv-a"), (602, "inv-b")] {
        assert_eq!(
            post_zendesk(&client, &daemon, zendesk_body(n), inv).await,
            200
        );
    }
    let dead = || async {
        daemon.get_json("/api/events/dead").await["dead"]
            .as_array()
            .map_or(0, Vec::len)
    };
    for _ in 0..200 {
        if dead().await == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(dead().await, 2);
    // Times in RFC 3339 beside epoch milliseconds.
    let listed = daemon.get_json("/api/events/dead").await;
    for d in listed["dead"].as_array().unwrap() {
        let ms = d["dead_at_ms"].as_u64().unwrap();
        assert_eq!(
            d["dead_at"],
            supportopsd::platforms::supportopsd::events::rfc3339_ms(ms),
            "{d}"
        );
        assert!(
            d["job"]["created_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{d}"
        );
    }
    let status = daemon.get_json("/api/status").await;
    assert!(
        status["applied_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("20")),
        "{status}"
    );
    let (ok, out) = cli(repo.path(), &["status", "--json", "--url", &daemon.url]);
    assert!(ok && out.contains("\"applied_at\": \"20"), "{out}");
    let (ok, out) = cli(repo.path(), &["events", "dead", "--url", &daemon.url]);
    assert!(ok, "{out}");
    let today = supportopsd::platforms::supportopsd::events::rfc3339_ms(
        listed["dead"][0]["dead_at_ms"].as_u64().unwrap(),
    );
    assert!(out.contains(&today[..10]), "{out}");

    // Another integration's: nothing to replay.
    let (ok, out) = cli(
        repo.path(),
        &[
            "events",
            "replay",
            "--all-dead",
            "--integration",
            "freshdesk-main",
            "--url",
            &daemon.url,
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("0 dead-lettered job(s) of freshdesk-main re-queued"),
        "{out}"
    );
    assert_eq!(dead().await, 2);
    // A bad body is refused.
    let r = client
        .post(format!("{}/api/jobs/replay-dead", daemon.url))
        .header("content-type", "application/json")
        .body(r#"{"integration": "Not An Id!"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Zendesk's: both re-queued and run (Slack accepts now).
    let (ok, out) = cli(
        repo.path(),
        &[
            "events",
            "replay",
            "--all-dead",
            "--integration",
            "zendesk-main",
            "--url",
            &daemon.url,
        ],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("2 dead-lettered job(s) of zendesk-main re-queued"),
        "{out}"
    );
    assert_eq!(
        out.matches("rule zendesk-to-slack\tevent evt_").count(),
        2,
        "{out}"
    );
    eventually(20, "both replayed jobs ran", || {
        fake.requests_to("chat.postMessage").len() >= 4
    })
    .await;
    assert_eq!(dead().await, 0);
    let audit = daemon
        .get_json("/api/audit/logs?resource_type=job&limit=100")
        .await;
    let replayed: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"]["type"] == "job_replayed")
        .collect();
    assert_eq!(replayed.len(), 2, "{audit}");
    assert!(
        replayed
            .iter()
            .all(|r| r["at"].as_str().is_some_and(|t| t.ends_with('Z'))),
        "{audit}"
    );
    assert!(
        replayed.iter().all(|r| r["detail"]["all_dead"] == true
            && r["detail"]["event"]
                .as_str()
                .is_some_and(|e| e.starts_with("evt_"))),
        "{audit}"
    );

    // One INFO line per rule run, at the default level: event, rule, actions, outcome; never
    // a rendered parameter.
    let (_, log) = daemon.terminate_with_log().await;
    let runs: Vec<&str> = log.lines().filter(|l| l.contains("Rule ran.")).collect();
    assert_eq!(runs.len(), 4, "{log}");
    for line in &runs {
        assert!(line.contains("INFO"), "{line}");
        assert!(
            line.contains("event=evt_") && line.contains("zendesk-to-slack"),
            "{line}"
        );
        assert!(line.contains("send_message"), "{line}");
        assert!(!line.contains("Priya") && !line.contains("New:"), "{line}");
    }
    assert_eq!(
        runs.iter()
            .filter(|l| l.contains("outcome=\"dead_lettered\""))
            .count(),
        2,
        "{log}"
    );
    assert_eq!(
        runs.iter()
            .filter(|l| l.contains("outcome=\"done\""))
            .count(),
        2,
        "{log}"
    );
}

/// A rule on Zendesk's `ticket.created` whose condition is wrong (`printer` where subjects say
/// `print`) until `fixed`.
fn print_rule(fixed: bool) -> String {
    format!(
        r##"id = "zendesk-print"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[trigger.conditions]
"ticket.subject" = {{ contains = "{}" }}
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#print"
message = "Print problem: ticket {{{{ ticket.id }}}}"
"##,
        if fixed { "print" } else { "printer" }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliver_after_a_fix_runs_the_corrected_rule_once_and_force_reruns_one_that_ran() {
    use supportopsd::platforms::slack::fake::FakeSlack;
    let fake = FakeSlack::start(crate::daemon_support::BOT_TOKEN, None).await;
    fake.add_channel("print");
    let repo = crate::daemon_support::repo(&fake.base_url());
    repo.file("rules/zendesk-print.toml", &print_rule(false));
    repo.commit("a print rule, wrong");
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    daemon.wait_ready().await;
    let client = reqwest::Client::new();
    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_body(701), "inv-701").await,
        200
    );
    let posted = |channel: &str| {
        fake.requests_to("chat.postMessage")
            .iter()
            .filter(|r| r.params()["channel"] == channel)
            .count()
    };
    eventually(20, "the matching rule ran", || posted("#support") == 1).await;
    assert_eq!(posted("#print"), 0);
    // The delivery's public id, from its audit record.
    let audit = daemon
        .get_json("/api/audit/logs?resource_type=event&limit=10")
        .await;
    let id = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r["detail"]["event"].as_str())
        .unwrap_or_else(|| panic!("no event id in {audit}"))
        .to_owned();

    // Nothing new under the same revision: the one matching rule already ran.
    let (ok, out) = cli(
        repo.path(),
        &["events", "redeliver", &id, "--url", &daemon.url],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("skipped  zendesk-to-slack\tjob ") && out.contains("ran it (done)"),
        "{out}"
    );
    assert!(out.contains("nothing redelivered"), "{out}");

    // The fix, applied now.
    repo.file("rules/zendesk-print.toml", &print_rule(true));
    repo.commit("the print rule matches print");
    let r = client
        .post(format!("{}/api/sync", daemon.url))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // The corrected rule runs once; the one that ran is skipped.
    let (ok, out) = cli(
        repo.path(),
        &["events", "redeliver", &id, "--url", &daemon.url],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("matches zendesk-print, zendesk-to-slack")
            || out.contains("matches zendesk-to-slack, zendesk-print"),
        "{out}"
    );
    assert!(out.contains("run      zendesk-print\tjob "), "{out}");
    assert!(out.contains("skipped  zendesk-to-slack"), "{out}");
    eventually(20, "the corrected rule ran", || posted("#print") == 1).await;
    // Again: both ran now.
    let (ok, out) = cli(
        repo.path(),
        &["events", "redeliver", &id, "--url", &daemon.url],
    );
    assert!(ok && out.contains("nothing redelivered"), "{out}");
    assert!(out.contains("skipped  zendesk-print"), "{out}");

    // Re-running a rule that ran needs --rule and --force.
    let (ok, out) = cli(
        repo.path(),
        &[
            "events",
            "redeliver",
            &id,
            "--rule",
            "zendesk-to-slack",
            "--url",
            &daemon.url,
        ],
    );
    assert!(
        !ok && out.contains("already ran") && out.contains("force"),
        "{out}"
    );
    let (ok, out) = cli(
        repo.path(),
        &["events", "redeliver", &id, "--force", "--url", &daemon.url],
    );
    assert!(!ok && out.contains("--rule"), "{out}");
    let (ok, out) = cli(
        repo.path(),
        &[
            "events",
            "redeliver",
            &id,
            "--rule",
            "zendesk-to-slack",
            "--force",
            "--url",
            &daemon.url,
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("run      zendesk-to-slack\tjob "), "{out}");
    eventually(20, "the forced re-run", || posted("#support") == 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!((posted("#support"), posted("#print")), (2, 1));

    // A rule that does not match, an unknown one, a bad or unknown id: clear answers.
    let (ok, out) = cli(
        repo.path(),
        &[
            "events",
            "redeliver",
            &id,
            "--rule",
            "slack-echo",
            "--url",
            &daemon.url,
        ],
    );
    assert!(!ok && out.contains("does not match"), "{out}");
    let (ok, out) = cli(
        repo.path(),
        &[
            "events",
            "redeliver",
            &id,
            "--rule",
            "nope",
            "--url",
            &daemon.url,
        ],
    );
    assert!(!ok && out.contains("no rule `nope`"), "{out}");
    let (ok, out) = cli(
        repo.path(),
        &["events", "redeliver", "evt_999999999", "--url", &daemon.url],
    );
    assert!(!ok && out.contains("no stored event"), "{out}");
    let (ok, out) = cli(
        repo.path(),
        &["events", "redeliver", "17", "--url", &daemon.url],
    );
    assert!(!ok && out.contains("not an event id"), "{out}");

    // Audited: two redeliveries, with the rules, the revision and the caller.
    let audit = daemon
        .get_json("/api/audit/logs?resource_type=event&limit=100")
        .await;
    let redelivered: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"]["type"] == "event_redelivered")
        .collect();
    assert_eq!(redelivered.len(), 2, "{audit}");
    assert_eq!(redelivered[0]["kind"]["rules"], json!(["zendesk-to-slack"]));
    assert_eq!(redelivered[0]["detail"]["forced"], true);
    assert_eq!(redelivered[1]["kind"]["rules"], json!(["zendesk-print"]));
    assert_eq!(redelivered[1]["detail"]["event"], id);
    assert!(redelivered[1]["detail"]["revision"].is_string());
    daemon.kill().await;
}
