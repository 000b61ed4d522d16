//! supportopsd's own events (the built-in `supportopsd` platform) end to end: a Slack token the
//! fake Slack refuses, a refused commit and dead-lettered jobs become events that rules turn
//! into messages at the fake Slack; the loop guard keeps alert rules from alerting on
//! themselves; nobody may post these events from outside.

use std::time::Duration;

use supportopsd::platforms::slack::fake::{self, FakeSlack};

use crate::daemon_support::*;
use crate::support::TestRepo;

/// A bot token the fake Slack does not know (`invalid_auth`).
const EXPIRED_TOKEN: &str = "xoxb-expired-token-0123456789";

/// `#general` messages posted with the good token.
fn general(fake: &FakeSlack) -> Vec<String> {
    fake.requests_to("chat.postMessage")
        .iter()
        .map(|r| r.json())
        .filter(|j| j["channel"] == "#general")
        .filter_map(|j| j["text"].as_str().map(str::to_owned))
        .collect()
}

/// The daemon repository plus an `alerts` integration, a Slack integration whose token the fake
/// refuses, and `rules`.
fn alerts_repo(fake: &FakeSlack, rules: &[(&str, &str)]) -> (TestRepo, String) {
    let repo = repo(&fake.base_url());
    repo.file(
        "integrations/alerts.toml",
        "id = \"alerts\"\nplatform = \"supportopsd\"\nname = \"supportopsd's own events\"\n",
    )
    .file(
        "integrations/slack-broken.toml",
        &format!(
            "id = \"slack-broken\"\nplatform = \"slack\"\n[credentials]\nbot_token = {{ env = \"SLACK_BROKEN_TOKEN\" }}\nsigning_secret = {{ env = \"SLACK_SIGNING_SECRET\" }}\n[endpoint]\nbase_url = \"{}\"\n",
            fake.base_url()
        ),
    );
    for (path, text) in rules {
        repo.file(path, text);
    }
    let commit = repo.commit("alerts");
    (repo, commit)
}

async fn spawn(repo: &TestRepo, state: &tempfile::TempDir) -> Daemon {
    Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &[],
        &[("SLACK_BROKEN_TOKEN", EXPIRED_TOKEN)],
    )
    .await
}

const DEGRADED_TO_GENERAL: &str = r##"id = "degraded-to-general"
[trigger]
integration = "alerts"
event = "integration.degraded"
[trigger.conditions]
"integration.platform" = "slack"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#general"
message = "ALERT {{ integration.id }} is {{ integration.health }}: {{ integration.reason }}"
"##;

const REFUSED_TO_GENERAL: &str = r##"id = "refused-to-general"
[trigger]
integration = "alerts"
event = "revision.refused"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#general"
message = "REFUSED {{ revision.id }} (still running {{ revision.running }}): {{ revision.reason }}"
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_slack_token_and_a_refused_commit_become_slack_messages() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let (repo, good) = alerts_repo(
        &fake,
        &[
            ("rules/degraded-to-general.toml", DEGRADED_TO_GENERAL),
            ("rules/refused-to-general.toml", REFUSED_TO_GENERAL),
        ],
    );
    let state = tempfile::tempdir().unwrap();
    let daemon = spawn(&repo, &state).await;

    // The first connection check of `slack-broken` fails: the alert reaches Slack through
    // `slack-main`.
    eventually(30, "the degraded alert at Slack", || {
        general(&fake)
            .iter()
            .any(|t| t.starts_with("ALERT slack-broken"))
    })
    .await;
    let texts = general(&fake);
    let alert = texts
        .iter()
        .find(|t| t.starts_with("ALERT slack-broken"))
        .unwrap();
    assert!(alert.contains("is degraded"), "{alert}");
    assert!(alert.contains("credentials"), "{alert}");
    // The condition held back the other degraded integration (Zendesk, unreachable here).
    assert!(
        texts.iter().all(|t| !t.contains("zendesk-main")),
        "{texts:?}"
    );
    // No secret leaves in an alert, and the alert was sent with the good token.
    for r in fake.requests_to("chat.postMessage") {
        assert!(!r.json().to_string().contains(EXPIRED_TOKEN));
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {BOT_TOKEN}").as_str())
        );
    }

    // A broken commit is refused and announced; the previous revision keeps running.
    repo.file("rules/zendesk-to-slack.toml", "id = \"broken\n");
    let broken = repo.commit("broken");
    signal(daemon.pid(), "HUP");
    eventually(30, "the refused alert at Slack", || {
        general(&fake).iter().any(|t| t.starts_with("REFUSED"))
    })
    .await;
    let refused = general(&fake)
        .into_iter()
        .find(|t| t.starts_with("REFUSED"))
        .unwrap();
    assert!(refused.contains(&broken), "{refused}");
    assert!(
        refused.contains(&format!("still running {good}")),
        "{refused}"
    );
    assert!(refused.contains("validation error"), "{refused}");

    // The events were stored like webhook deliveries: audited as accepted, with the rules they
    // matched.
    let audit: serde_json::Value = daemon.get_json("/api/audit/logs?limit=500").await;
    let matched: Vec<String> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"]["type"] == "rule_matched")
        .filter_map(|r| r["resource_id"].as_str().map(str::to_owned))
        .collect();
    assert!(
        matched.iter().any(|r| r == "degraded-to-general"),
        "{matched:?}"
    );
    assert!(
        matched.iter().any(|r| r == "refused-to-general"),
        "{matched:?}"
    );
    daemon.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_may_post_supportopsd_events_from_outside() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let (repo, _) = alerts_repo(
        &fake,
        &[("rules/refused-to-general.toml", REFUSED_TO_GENERAL)],
    );
    let state = tempfile::tempdir().unwrap();
    let daemon = spawn(&repo, &state).await;
    let client = reqwest::Client::new();
    let body = serde_json::json!({"event": "revision.refused", "id": "forged",
        "revision": {"id": "x", "reason": "forged", "running": "y"}});
    for url in [
        format!("{}/api/webhooks/supportopsd/alerts", daemon.url),
        format!("{}/api/webhooks/supportopsd", daemon.url),
    ] {
        let r = client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 404, "{url}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(general(&fake).iter().all(|t| !t.contains("forged")));
    daemon.kill().await;
}

/// Alert rules that fail (they post through the broken Slack integration) must not alert on
/// their own dead letters, nor on each other's, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_alert_once_and_alert_rules_do_not_alert_on_themselves() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let to = |id: &str, event: &str, integration: &str, channel: &str, message: &str| {
        format!(
            "id = \"{id}\"\n[trigger]\nintegration = \"alerts\"\nevent = \"{event}\"\n[[actions]]\nintegration = \"{integration}\"\naction = \"send_message\"\n[actions.parameters]\nchannel = \"{channel}\"\nmessage = \"{message}\"\n"
        )
    };
    let degraded_to_broken = to(
        "degraded-to-broken",
        "integration.degraded",
        "slack-broken",
        "#general",
        "down: {{ integration.id }}",
    )
    .replace(
        "[[actions]]",
        "[trigger.conditions]\n\"integration.id\" = \"slack-broken\"\n[[actions]]",
    );
    let dead_to_broken = to(
        "dead-to-broken",
        "job.dead_lettered",
        "slack-broken",
        "#general",
        "dead: {{ job.rule }}",
    );
    let dead_to_general = to(
        "dead-to-general",
        "job.dead_lettered",
        "slack-main",
        "#general",
        "DEAD {{ job.rule }}: {{ job.error }}",
    );
    let (repo, _) = alerts_repo(
        &fake,
        &[
            ("rules/degraded-to-broken.toml", &degraded_to_broken),
            ("rules/dead-to-broken.toml", &dead_to_broken),
            ("rules/dead-to-general.toml", &dead_to_general),
        ],
    );
    let state = tempfile::tempdir().unwrap();
    let daemon = spawn(&repo, &state).await;

    // slack-broken degrades → `degraded-to-broken` fails (invalid_auth, not retried) → its dead
    // letter triggers `dead-to-broken` (which fails too) and `dead-to-general`; the dead letter
    // of `dead-to-broken` triggers only `dead-to-general`.
    eventually(30, "both dead letters announced", || {
        let t = general(&fake);
        t.iter().any(|t| t.starts_with("DEAD degraded-to-broken"))
            && t.iter().any(|t| t.starts_with("DEAD dead-to-broken"))
    })
    .await;
    let dead_count = || async {
        let v: serde_json::Value = daemon.get_json("/api/events/dead").await;
        v["dead"].as_array().map_or(0, Vec::len)
    };
    eventually_async(30, "two dead jobs", || async { dead_count().await == 2 }).await;
    // Without the guard the chain would go on (`dead-to-broken` failing on its own dead
    // letters); give it the time it would need to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(dead_count().await, 2);
    let texts = general(&fake);
    let announced: Vec<&String> = texts.iter().filter(|t| t.starts_with("DEAD")).collect();
    assert_eq!(announced.len(), 2, "{texts:?}");
    assert!(
        announced
            .iter()
            .all(|t| t.contains("invalid_auth") || t.contains("credentials")),
        "{announced:?}"
    );
    daemon.kill().await;
}

async fn eventually_async<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

const PUBLIC: &str = "https://ops.example.com";
const HOOK: &str = "https://ops.example.com/api/webhooks/slack/slack-main";

fn on(id: &str, event: &str, message: &str) -> String {
    format!(
        "id = \"{id}\"\n[trigger]\nintegration = \"alerts\"\nevent = \"{event}\"\n[[actions]]\nintegration = \"slack-main\"\naction = \"send_message\"\n[actions.parameters]\nchannel = \"#general\"\nmessage = \"{message}\"\n"
    )
}

/// A revision applied, a registration repaired behind our back, and an integration that
/// recovers after a restart with a good token: each becomes a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_repaired_and_recovered_become_slack_messages() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    fake.accept_app_config_token(APP_CONFIG_TOKEN);
    // slack-main registers its request URL through the manifest API (so drift can be repaired).
    let slack = format!(
        "id = \"slack-main\"\nplatform = \"slack\"\n[credentials]\nbot_token = {{ env = \"SLACK_BOT_TOKEN\" }}\nsigning_secret = {{ env = \"SLACK_SIGNING_SECRET\" }}\napp_config_token = {{ env = \"SLACK_APP_CONFIG_TOKEN\" }}\napp_id = \"{}\"\n[webhook]\nevents = [\"message\"]\n[endpoint]\nbase_url = \"{}\"\n[limits]\nrequests_per_minute = 6000\n[config]\n# Exported on every resync, so the drift is seen at once.\nmanifest_recheck_minutes = 0\n",
        fake::APP_ID,
        fake.base_url()
    );
    let applied = on(
        "applied-to-general",
        "revision.applied",
        "APPLIED {{ revision.id }} ({{ revision.rules }} rules)",
    );
    let repaired = on(
        "repaired-to-general",
        "registration.repaired",
        "REPAIRED {{ registration.integration }} at {{ registration.url }}: {{ registration.detail }}",
    );
    let recovered = on(
        "recovered-to-general",
        "integration.recovered",
        "RECOVERED {{ integration.id }} ({{ integration.health }})",
    );
    let (repo, commit) = alerts_repo(
        &fake,
        &[
            ("integrations/slack.toml", &slack),
            ("rules/applied-to-general.toml", &applied),
            ("rules/repaired-to-general.toml", &repaired),
            ("rules/recovered-to-general.toml", &recovered),
        ],
    );
    let state = tempfile::tempdir().unwrap();
    let args = ["--public-url", PUBLIC, "--resync-interval", "1s"];
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &args,
        &[("SLACK_BROKEN_TOKEN", EXPIRED_TOKEN)],
    )
    .await;
    eventually(30, "the applied alert", || {
        general(&fake)
            .iter()
            .any(|t| t == &format!("APPLIED {commit} (6 rules)"))
    })
    .await;
    let request_url = |fake: &FakeSlack| {
        fake.manifest()["settings"]["event_subscriptions"]["request_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    eventually(30, "registered", || request_url(&fake) == HOOK).await;

    // Someone edits the app's request URL by hand: the resync repairs it, and says so.
    let mut drifted = fake.manifest();
    drifted["settings"]["event_subscriptions"]["request_url"] =
        serde_json::Value::from("https://elsewhere.example.com/hook");
    fake.set_manifest(drifted);
    eventually(30, "the repaired alert", || {
        general(&fake)
            .iter()
            .any(|t| t.starts_with(&format!("REPAIRED slack-main at {HOOK}: ")))
    })
    .await;
    assert!(general(&fake).iter().all(|t| !t.starts_with("RECOVERED")));
    daemon.kill().await;

    // The token is fixed (here: a restart with a good one): slack-broken recovers.
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &["--public-url", PUBLIC],
        &[("SLACK_BROKEN_TOKEN", BOT_TOKEN)],
    )
    .await;
    eventually(30, "the recovered alert", || {
        general(&fake)
            .iter()
            .any(|t| t == "RECOVERED slack-broken (healthy)")
    })
    .await;
    daemon.kill().await;
}
