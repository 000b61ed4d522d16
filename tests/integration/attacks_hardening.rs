//! Adversarial tests of boundaries 6 and 7 of issue 15 ("a manifest can't hang the daemon",
//! "smaller holes, all closed"), each against the real daemon on loopback and named for the
//! finding of the security review it reproduces: SEC-09 (a hostile template), SEC-11 (a replayed
//! Zendesk trigger delivery with a new invocation id), SEC-12 (an absurd `Retry-After`), SEC-13
//! (the state's file modes under umask 022). SEC-17 (the git remote) is covered by the unit
//! tests of `runtime::remote`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use supportopsd::platforms::slack::fake::{Failure, FakeSlack};
use supportopsd::state::Store;

use crate::daemon_support::{
    BOT_TOKEN, Daemon, ZD_SECRET, eventually, post_freshdesk, post_zendesk, repo, rfc3339, setup,
    zendesk_signature, zendesk_ticket,
};
use crate::support::TestRepo;

/// The review's template with its inner bound in a variable, so that `validate` cannot see it
/// and only the render limits stop it: 2·10⁹ iterations.
const HOSTILE: &str = "{% set n = 20000 %}{% for i in range(100000) %}{% for j in range(n) %}x{% endfor %}{% endfor %}";

/// The review's template exactly as written.
const REVIEWED: &str =
    "{% for i in range(100000) %}{% for j in range(20000) %}x{% endfor %}{% endfor %}";

fn heavy_rule(template: &str) -> String {
    format!(
        "id = \"heavy-template\"\n[trigger]\nintegration = \"zendesk-main\"\nevent = \"ticket.created\"\n\
         [[actions]]\nintegration = \"slack-main\"\naction = \"send_message\"\n\
         [actions.parameters]\nchannel = \"#support\"\nmessage = {}\n",
        serde_json::to_string(template).unwrap()
    )
}

async fn dead(client: &reqwest::Client, daemon: &Daemon) -> Vec<serde_json::Value> {
    let body: serde_json::Value = client
        .get(format!("{}/api/events/dead", daemon.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["dead"].as_array().cloned().unwrap_or_default()
}

async fn audit_kinds(client: &reqwest::Client, daemon: &Daemon) -> Vec<String> {
    let audit: serde_json::Value = client
        .get(format!("{}/api/audit/logs?limit=500", daemon.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"]["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// SEC-09: a rule whose template would render for hours. Four matching deliveries (more than
/// the runtime has worker threads on a small machine) are each dead-lettered with the fuel limit
/// as the reason, nothing reaches Slack, and `/healthz` answers within 2 s throughout. Before
/// the fix the jobs never settled, ingress stopped answering and the daemon had to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_09_a_hostile_template_is_dead_lettered_while_healthz_answers() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    repo.file("rules/heavy.toml", &heavy_rule(HOSTILE));
    repo.commit("a hostile template");
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    for n in 1..=4 {
        let status = post_zendesk(
            &client,
            &daemon,
            zendesk_ticket(n, "Hostile"),
            &format!("{n}"),
        )
        .await;
        assert_eq!(status, 200);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let health = client
            .get(format!("{}/healthz", daemon.url))
            .send()
            .await
            .expect("/healthz answered within 2 s while templates render");
        assert_eq!(health.status(), 200);
        let dead = dead(&client, &daemon).await;
        let heavy: Vec<_> = dead
            .into_iter()
            .filter(|d| d["job"]["rule"] == "heavy-template")
            .collect();
        if heavy.len() == 4 {
            break heavy;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hostile jobs were not stopped: {heavy:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for d in &dead {
        let error = d["job"]["last_error"].as_str().unwrap();
        assert_eq!(
            error,
            "action 0 (`send_message`): rendering stopped: the template does more work than one render may (its fuel of 250000 ran out)"
        );
        // Dead-lettered at the first attempt, not retried.
        assert_eq!(d["job"]["attempts"], 1);
    }
    // The other rule on the same event ran; the hostile one sent nothing.
    eventually(20, "the other rule's messages", || {
        fake.requests_to("chat.postMessage").len() == 4
    })
    .await;
    for r in fake.requests_to("chat.postMessage") {
        assert!(!r.json()["text"].as_str().unwrap().contains("xxx"));
    }
    daemon.kill().await;
}

/// SEC-09: the review's template exactly as written is refused before it can run: `validate`
/// names the loops (so a daemon refuses the revision like any invalid one).
#[test]
fn sec_09_validate_reports_the_reviewed_template() {
    let repo = TestRepo::new();
    repo.file(
        "integrations/zendesk.toml",
        crate::daemon_support::ZENDESK_BY_HAND,
    )
    .file(
        "integrations/slack.toml",
        "id = \"slack-main\"\nplatform = \"slack\"\n[credentials]\nbot_token = { env = \"SLACK_BOT_TOKEN\" }\nsigning_secret = { env = \"SLACK_SIGNING_SECRET\" }\n",
    )
    .file("rules/heavy.toml", &heavy_rule(REVIEWED));
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains(
            "nested `range` loops run 2000000000 times, more than one render may do (its fuel is 250000)"
        ) || out.stderr.contains("nested `range` loops run 2000000000 times"),
        "{out:?}"
    );
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("rules/heavy.toml"),
        "{out:?}"
    );
}

/// SEC-11: one captured, genuinely signed Zendesk trigger delivery replayed with new
/// `x-zendesk-webhook-invocation-id` headers (and re-signed with a fresh timestamp, which the
/// attacker cannot do without the secret — here it shows that Zendesk's own retries stay one
/// event too) is stored once: one `event_accepted`, one Slack message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_11_a_replayed_trigger_delivery_with_new_invocation_ids_is_stored_once() {
    let (fake, _repo, _state, daemon, client) = setup(&[]).await;
    let body = zendesk_ticket(4242, "Charge me twice");
    // The captured delivery: signature and timestamp as Zendesk sent them.
    let ts = rfc3339(0);
    let sig = zendesk_signature(ZD_SECRET, &ts, &body);
    for invocation in ["inv-1", "inv-1", "inv-2", "inv-3", "8350205582"] {
        let status = client
            .post(format!("{}/api/webhooks/zendesk/zendesk-main", daemon.url))
            .header("content-type", "application/json")
            .header("x-zendesk-webhook-signature-timestamp", &ts)
            .header("x-zendesk-webhook-signature", &sig)
            .header("x-zendesk-webhook-invocation-id", invocation)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{invocation}");
    }
    // A retry, signed again later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        post_zendesk(&client, &daemon, body.clone(), "inv-4").await,
        200
    );
    eventually(20, "the message at Slack", || {
        !fake.requests_to("chat.postMessage").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.requests_to("chat.postMessage").len(), 1);
    let kinds = audit_kinds(&client, &daemon).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "event_accepted").count(),
        1,
        "{kinds:?}"
    );
    // A different body is a different event.
    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_ticket(4243, "Other"), "inv-1").await,
        200
    );
    eventually(20, "the second message at Slack", || {
        fake.requests_to("chat.postMessage").len() == 2
    })
    .await;
    daemon.kill().await;
}

/// SEC-12: Slack answers 429 with `Retry-After: 18446744073709551615`. Nothing panics: the job
/// is retried within the one-hour clamp, a second job for the paused integration is put back
/// without being sent or holding the only worker (`--workers 1`), so a job for another
/// integration still runs at once, `execute` on the paused integration is answered 429 at once,
/// and `/healthz` answers. Before the fix the handler panicked
/// on `Instant + Duration` overflow and the job was re-leased to panic again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_12_an_absurd_retry_after_is_clamped_and_parks_no_worker() {
    let limited = FakeSlack::start(BOT_TOKEN, None).await;
    let other = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&limited.base_url());
    repo.file(
        "integrations/slack-other.toml",
        &format!(
            "id = \"slack-other\"\nplatform = \"slack\"\n[credentials]\nbot_token = {{ env = \"SLACK_BOT_TOKEN\" }}\nsigning_secret = {{ env = \"SLACK_SIGNING_SECRET\" }}\n\
             [endpoint]\nbase_url = \"{}\"\n",
            other.base_url()
        ),
    )
    .file(
        "rules/freshdesk-to-slack.toml",
        "id = \"freshdesk-to-slack\"\n[trigger]\nintegration = \"freshdesk-main\"\nevent = \"ticket_created\"\n\
         [[actions]]\nintegration = \"slack-other\"\naction = \"send_message\"\n\
         [actions.parameters]\nchannel = \"#other\"\nmessage = \"Freshdesk {{ ticket.id }}\"\n",
    );
    repo.commit("a second Slack");
    limited.fail_next(
        "chat.postMessage",
        Failure::RateLimited {
            retry_after_secs: u64::MAX,
        },
        10,
    );
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &["--workers", "1"]).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started_ms = now_ms();

    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_ticket(1, "Limited"), "1").await,
        200
    );
    eventually(20, "the rate-limited attempt", || {
        limited.requests_to("chat.postMessage").len() == 1
    })
    .await;
    let kinds_ready = async {
        for _ in 0..200 {
            if audit_kinds(&client, &daemon)
                .await
                .iter()
                .any(|k| k == "action_failed")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the 429 was not recorded");
    };
    kinds_ready.await;
    // The integration is paused for (at most) an hour: this job waits in the queue, untried.
    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_ticket(2, "Waits"), "2").await,
        200
    );
    // The only worker is free for another integration.
    assert_eq!(post_freshdesk(&client, &daemon.url, 3).await.unwrap(), 200);
    eventually(20, "the other integration's message", || {
        other.requests_to("chat.postMessage").len() == 1
    })
    .await;
    assert_eq!(
        client
            .get(format!("{}/healthz", daemon.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // The operator's `execute` is answered at once while the pause lasts, and sends nothing.
    let r = client
        .post(format!(
            "{}/api/integrations/slack-main/execute",
            daemon.url
        ))
        .header("content-type", "application/json")
        .body(r##"{"action": "send_message", "parameters": {"channel": "#x", "message": "hi"}}"##)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3000..=3600).contains(&wait), "Retry-After: {wait}");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "rate_limited");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        limited.requests_to("chat.postMessage").len(),
        1,
        "nothing more sent"
    );
    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
    let stopped_ms = now_ms();

    // Both Slack jobs wait for the end of the clamped hour, neither for years.
    let store = Store::open(state.path()).unwrap();
    let hour = 3_600_000;
    let jobs = store
        .lease_due(stopped_ms + 3 * hour, 1, 100)
        .unwrap()
        .into_iter()
        .filter(|j| j.rule == "zendesk-to-slack")
        .collect::<Vec<_>>();
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for job in &jobs {
        assert!(
            job.due_ms >= started_ms + hour - 60_000 && job.due_ms <= stopped_ms + hour,
            "job {} due at {} (started {started_ms}, stopped {stopped_ms})",
            job.id,
            job.due_ms
        );
    }
    let attempts: Vec<u32> = jobs.iter().map(|j| j.attempts).collect();
    assert!(
        attempts.contains(&1) && attempts.contains(&0),
        "{attempts:?}"
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Every file and folder under `dir` with its mode, except the repository clone.
fn modes(dir: &Path, out: &mut Vec<(String, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        out.push((
            entry.path().display().to_string(),
            meta.permissions().mode() & 0o777,
        ));
        if meta.is_dir() && entry.file_name() != "repo.git" {
            modes(&entry.path(), out);
        }
    }
}

/// SEC-13: started under umask 022 (outside the systemd unit, which sets `UMask=0077`), the
/// daemon still creates its state directory 0700 and every file in it — sled's database, the
/// ingest journal — 0600, so other local users cannot read event payloads or the audit log.
/// Before the fix: `drwxr-xr-x state`, `-rw-r--r-- db`, `-rw-r--r-- ingest-*.journal`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_13_state_is_private_under_umask_022() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let parent = tempfile::tempdir().unwrap();
    let state = parent.path().join("state");
    let daemon = Daemon::spawn_under_umask("022", repo.path(), &state, &[]).await;
    let client = reqwest::Client::new();
    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_ticket(7, "Private"), "7").await,
        200
    );
    eventually(20, "the message at Slack", || {
        !fake.requests_to("chat.postMessage").is_empty()
    })
    .await;
    let dir_mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "the state directory");
    let mut found = Vec::new();
    modes(&state, &mut found);
    let names: Vec<&str> = found
        .iter()
        .filter_map(|(p, _)| Path::new(p).file_name()?.to_str())
        .collect();
    assert!(names.contains(&"db"), "{found:?}");
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("ingest-") && n.ends_with(".journal")),
        "{found:?}"
    );
    for (path, mode) in &found {
        assert_eq!(mode & 0o077, 0, "{path} is {mode:04o}");
    }
    // Control: the umask did apply to the process (a file it did not make private).
    let control = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 022; touch \"$0\"")
        .arg(parent.path().join("control"))
        .status()
        .unwrap();
    assert!(control.success());
    assert_eq!(
        std::fs::metadata(parent.path().join("control"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
}
