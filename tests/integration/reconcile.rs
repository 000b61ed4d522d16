//! The reconciler end to end, with `supportopsd run` as a child process and the fake Slack:
//! new commits are seen by the watcher, broken ones are refused while the previous rules keep
//! firing, drift is repaired on the resync, a restart changes nothing, pins hold the daemon,
//! `apply` runs one pass.

use std::time::Duration;

use serde_json::Value;
use supportopsd::platforms::slack::fake::FakeSlack;

use crate::daemon_support::{
    APP_CONFIG_TOKEN, BOT_TOKEN, Daemon, SLACK_ECHO_RULE, eventually, registering_slack, status,
};
use crate::support::TestRepo;

const PUBLIC: &str = "https://ops.example.com";
const HOOK: &str = "https://ops.example.com/api/webhooks/slack/slack-main";

/// Slack alone (no registration credentials) and a rule that answers messages asking for help.
fn repo(slack_base_url: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.file(
        "integrations/slack.toml",
        &format!(
            r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = {{ env = "SLACK_BOT_TOKEN" }}
signing_secret = {{ env = "SLACK_SIGNING_SECRET" }}
[webhook]
events = ["message"]
[endpoint]
base_url = "{slack_base_url}"
"#
        ),
    )
    .file("rules/slack-echo.toml", SLACK_ECHO_RULE);
    repo
}

/// Commits a second rule, a copy of the echo rule, and returns the commit.
fn commit_second_rule(repo: &TestRepo) -> String {
    repo.file(
        "rules/second.toml",
        &SLACK_ECHO_RULE.replace("\"slack-echo\"", "\"second\""),
    );
    repo.commit("second")
}

/// Polls the daemon's status until `f` holds (at most 20 s).
async fn status_until(daemon: &Daemon, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..400 {
        let s = status(daemon).await;
        if f(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "timed out waiting for: {what}; last status {}",
        status(daemon).await
    );
}

fn integration<'a>(s: &'a Value, id: &str) -> &'a Value {
    s["integrations"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["id"] == id))
        .unwrap_or(&Value::Null)
}

fn request_url(fake: &FakeSlack) -> Value {
    fake.manifest()["settings"]["event_subscriptions"]["request_url"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_commit_is_seen_by_the_watcher_and_a_broken_one_is_refused() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    fake.accept_app_config_token(APP_CONFIG_TOKEN);
    let repo = repo(&fake.base_url());
    let first = repo.commit("base");
    let state = tempfile::tempdir().unwrap();
    // Polling is off in effect (1 h): only the file watcher can notice commits.
    let daemon = Daemon::spawn(
        repo.path(),
        state.path(),
        &["--public-url", PUBLIC, "--poll-interval", "1h"],
    )
    .await;
    assert_eq!(status(&daemon).await["applied_revision"], first.as_str());

    // A commit that adds the manifest API credentials: registered without anyone asking.
    registering_slack(&repo, &fake, r#""message""#);
    let second = repo.commit("slack registers its request URL");
    let s = status_until(&daemon, "the second commit is applied", |s| {
        s["applied_revision"] == second.as_str()
    })
    .await;
    assert!(s["refused"].is_null(), "{s}");
    eventually(20, "the request URL is registered", || {
        request_url(&fake) == HOOK
    })
    .await;

    // A broken commit: refused whole, the second one keeps running.
    repo.file("rules/broken.toml", "id = \"broken\"\n[trigger\n");
    let third = repo.commit("broken");
    let s = status_until(&daemon, "the broken commit is refused", |s| {
        s["refused"].is_string()
    })
    .await;
    assert_eq!(s["applied_revision"], second.as_str(), "{s}");
    assert_eq!(s["refused_revision"], third.as_str(), "{s}");
    assert!(
        s["refused"].as_str().unwrap().contains("rules/broken.toml"),
        "{s}"
    );
    // The previous rules keep firing: a Slack message asking for help is still answered.
    let body = br#"{"type":"event_callback","team_id":"T0FAKE0001","api_app_id":"A0FAKEAPP1","event_id":"Ev0RECON1","event_time":1700000000,"event":{"type":"message","channel":"C0SUPPORT1","user":"U0HUMAN001","text":"help me","ts":"1700000000.000100"}}"#;
    let ts = chrono_free_now().to_string();
    let sig =
        crate::daemon_support::slack_signature(crate::daemon_support::SLACK_SIGNING, &ts, body);
    let r = reqwest::Client::new()
        .post(format!("{}/api/webhooks/slack/slack-main", daemon.url))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", sig)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(20, "the rule of the last good revision posts", || {
        fake.requests_to("chat.postMessage").iter().any(|r| {
            r.params()["text"]
                .as_str()
                .unwrap_or("")
                .contains("help me")
        })
    })
    .await;

    // Fixing it is applied again.
    repo.remove("rules/broken.toml");
    let fourth = repo.commit("fix");
    status_until(&daemon, "the fix is applied", |s| {
        s["applied_revision"] == fourth.as_str() && s["refused"].is_null()
    })
    .await;
    daemon.kill().await;
}

fn chrono_free_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_repaired_on_the_resync_and_a_restart_changes_nothing() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    fake.accept_app_config_token(APP_CONFIG_TOKEN);
    let repo = repo(&fake.base_url());
    registering_slack(&repo, &fake, r#""message", "app_mention""#);
    // The manifest is exported on every resync (by default once an hour: what was last
    // written is remembered).
    crate::daemon_support::slack_config(&repo, "manifest_recheck_minutes = 0");
    repo.commit("base");
    let state = tempfile::tempdir().unwrap();
    let args = ["--public-url", PUBLIC, "--resync-interval", "1s"];
    let daemon = Daemon::spawn(repo.path(), state.path(), &args).await;
    eventually(20, "registered", || request_url(&fake) == HOOK).await;

    // Someone edits the app's request URL by hand: the next resync puts it back.
    let mut drifted = fake.manifest();
    drifted["settings"]["event_subscriptions"]["request_url"] =
        Value::from("https://elsewhere.example.com/hook");
    fake.set_manifest(drifted);
    eventually(20, "the drift is repaired", || request_url(&fake) == HOOK).await;
    // The fake holds the repaired URL as soon as the update reaches it; the daemon audits the
    // repair and updates its status when the answer reaches it, a moment later.
    let mut outcomes = Vec::new();
    for _ in 0..200 {
        let audit: Value = daemon
            .get_json("/api/audit/logs?resource_type=integration&resource_id=slack-main")
            .await;
        outcomes = audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"]["type"] == "registration_synced")
            .filter_map(|r| r["kind"]["outcome"].as_str().map(str::to_owned))
            .collect();
        if outcomes.iter().any(|o| o == "repaired") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(outcomes.iter().any(|o| o == "created"), "{outcomes:?}");
    assert!(outcomes.iter().any(|o| o == "repaired"), "{outcomes:?}");
    status_until(&daemon, "in sync and healthy after the repair", |s| {
        integration(s, "slack-main")["sync"]["status"] == "in_sync"
            && integration(s, "slack-main")["health"]["status"] == "healthy"
    })
    .await;
    daemon.terminate().await;

    // A restart finds everything as declared: no update is sent.
    let updates = fake.requests_to("apps.manifest.update").len();
    let daemon = Daemon::spawn(repo.path(), state.path(), &["--public-url", PUBLIC]).await;
    let s = status_until(
        &daemon,
        "the registration is synced after the restart",
        |s| integration(s, "slack-main")["sync"]["status"] == "in_sync",
    )
    .await;
    assert_eq!(
        integration(&s, "slack-main")["sync"]["reason"],
        "webhook registered as declared",
        "{s}"
    );
    assert_eq!(fake.requests_to("apps.manifest.update").len(), updates);
    daemon.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_holds_the_daemon_until_unpinned() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let first = repo.commit("base");
    repo.file(
        "rules/another.toml",
        r##"id = "another"
[trigger]
integration = "slack-main"
event = "message"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#support"
message = "seen"
"##,
    );
    let second = repo.commit("another rule");
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &["--poll-interval", "1s"]).await;
    status_until(&daemon, "the newest commit", |s| {
        s["applied_revision"] == second.as_str()
    })
    .await;

    let out = repo.run(&[
        "pin",
        &first,
        "--reason",
        "incident 7",
        "--url",
        &daemon.url,
    ]);
    assert!(out.code == 0, "{}", out.stderr.clone());
    let s = status(&daemon).await;
    assert_eq!(s["applied_revision"], first.as_str(), "{s}");
    assert_eq!(s["pinned"]["revision"], first.as_str(), "{s}");
    assert_eq!(s["pinned"]["reason"], "incident 7", "{s}");
    // New commits wait while pinned.
    repo.file(
        "rules/third.toml",
        &repo
            .read("rules/another.toml")
            .replace("\"another\"", "\"third\""),
    );
    repo.commit("third");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status(&daemon).await["applied_revision"], first.as_str());

    let out = repo.run(&["unpin", "--url", &daemon.url]);
    assert!(out.code == 0, "{}", out.stderr.clone());
    let s = status(&daemon).await;
    assert!(s["pinned"].is_null(), "{s}");
    assert_ne!(s["applied_revision"], first.as_str(), "{s}");
    let audit: Value = daemon
        .get_json("/api/audit/logs?resource_type=revision")
        .await;
    let kinds: Vec<String> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"]["type"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(kinds.iter().any(|k| k == "pinned"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "unpinned"), "{kinds:?}");
    daemon.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_runs_one_pass_and_reports_each_change() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    fake.accept_app_config_token(APP_CONFIG_TOKEN);
    let repo = repo(&fake.base_url());
    registering_slack(&repo, &fake, r#""message""#);
    repo.commit("base");
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().to_str().unwrap().to_owned();
    let env = [
        ("SLACK_BOT_TOKEN", BOT_TOKEN),
        ("SLACK_SIGNING_SECRET", crate::daemon_support::SLACK_SIGNING),
        ("SLACK_APP_CONFIG_TOKEN", APP_CONFIG_TOKEN),
    ];
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = crate::daemon_support::loopback_policy(policy_dir.path());
    let policy = policy.to_str().unwrap();
    let args = [
        "--state",
        &state_arg,
        "apply",
        "--public-url",
        PUBLIC,
        "--policy",
        policy,
    ];
    let out = repo.run_with(&args, &env, None);
    let stdout = out.stdout.clone();
    assert_eq!(out.code, 0, "{stdout}{}", out.stderr.clone());
    assert!(stdout.contains("slack-main: created"), "{stdout}");
    assert_eq!(request_url(&fake), HOOK);
    // The applied state is recorded: a plan against it is empty, and a second apply changes
    // nothing on Slack.
    let plan = repo.run(&[
        "--state",
        &state_arg,
        "plan",
        "--rev",
        "HEAD",
        "--detailed-exitcode",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.stdout.clone());
    let out = repo.run_with(&args, &env, None);
    let stdout = out.stdout.clone();
    assert_eq!(out.code, 0, "{stdout}");
    assert!(stdout.contains("slack-main: unchanged"), "{stdout}");
    assert!(!stdout.contains(APP_CONFIG_TOKEN) && !stdout.contains(BOT_TOKEN));
    assert_eq!(fake.requests_to("apps.manifest.update").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_waits_for_the_pass_and_says_whether_the_revision_was_refused() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    repo.commit("base");
    let state = tempfile::tempdir().unwrap();
    // Neither the watcher nor the poll: only `sync` can load new commits.
    let daemon = Daemon::spawn(
        repo.path(),
        state.path(),
        &["--no-watch", "--poll-interval", "1h"],
    )
    .await;
    let second = commit_second_rule(&repo);
    let out = repo.run(&["sync", "--url", &daemon.url]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("Applied {}", &second[..12])),
        "{}",
        out.stdout
    );
    assert_eq!(status(&daemon).await["applied_revision"], second.as_str());

    repo.file("rules/broken.toml", "id = 1\n");
    repo.commit("broken");
    let out = repo.run(&["sync", "--url", &daemon.url]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("Refused"), "{}", out.stderr);
    assert_eq!(status(&daemon).await["applied_revision"], second.as_str());
    daemon.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_hosts_push_webhook_triggers_a_pass_only_when_signed() {
    use hmac::{Hmac, KeyInit, Mac};
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    repo.commit("base");
    let state = tempfile::tempdir().unwrap();
    // An admin token is set, so only the push secret can open /api/sync without it.
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &["--no-watch", "--poll-interval", "1h"],
        &[
            ("SUPPORTOPSD_ADMIN_TOKEN", "admin-token"),
            ("SUPPORTOPSD_SYNC_SECRET", "push-secret"),
        ],
    )
    .await;
    let second = commit_second_rule(&repo);
    let body = br#"{"ref":"refs/heads/main"}"#;
    let client = reqwest::Client::new();
    let post = |sig: Option<String>| {
        let mut req = client
            .post(format!("{}/api/sync", daemon.url))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(sig) = sig {
            req = req.header("x-hub-signature-256", sig);
        }
        req.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("sha256=00".into())).await.unwrap().status(), 401);
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"push-secret").unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let r = post(Some(format!("sha256={hex}"))).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["applied_revision"], second.as_str());
    // Signed by the git host, not by a token: exempt from the JSON content type.
    let r = client
        .post(format!("{}/api/sync", daemon.url))
        .header("x-gitlab-token", "push-secret")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    daemon.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_repository_is_cloned_into_the_state_and_fetched() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let origin = repo(&fake.base_url());
    let first = origin.commit("base");
    let branch = git2::Repository::open(origin.path())
        .unwrap()
        .head()
        .unwrap()
        .shorthand()
        .unwrap()
        .to_owned();
    let url = format!("file://{}", origin.path().display());
    let state = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(
        elsewhere.path(),
        state.path(),
        &[
            "--remote",
            &url,
            "--branch",
            &branch,
            "--poll-interval",
            "1s",
        ],
    )
    .await;
    assert_eq!(status(&daemon).await["applied_revision"], first.as_str());
    assert!(state.path().join("repo.git/HEAD").is_file());

    let second = commit_second_rule(&origin);
    status_until(&daemon, "the fetched commit is applied", |s| {
        s["applied_revision"] == second.as_str()
    })
    .await;
    daemon.kill().await;
}
