//! Backups of the state (issue 17 item 5): a backup taken through a running daemon while
//! deliveries arrive, restored elsewhere, runs every delivery acknowledged before it began and
//! recognises its webhook registrations; the file is private and holds no secret in clear;
//! damaged files, a non-empty target and a held state are refused with what to do instead.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use supportopsd::platforms::slack::fake::FakeSlack;
use supportopsd::platforms::trello::fake::{self as trello_fake, FakeTrello};
use supportopsd::secrets::SealKey;

use crate::daemon_support::*;

/// The daemon's public URL (Trello checks the callback under it, through the fake's proxy).
const PUBLIC: &str = "https://ops.example.com";
const TRELLO_KEY: &str = "backup-trello-key";
const TRELLO_TOKEN: &str = "ATTA-backup-trello-token";
const TRELLO_APP_SECRET: &str = "backup-trello-app-secret";
const TRELLO_ENV: &[(&str, &str)] = &[
    ("TRELLO_TOKEN", TRELLO_TOKEN),
    ("TRELLO_APP_SECRET", TRELLO_APP_SECRET),
];
/// Where nothing listens: the first daemon's Slack, so its jobs stay queued (retried).
const NOWHERE: &str = "http://127.0.0.1:9";

/// `supportopsd` with `args` and the admin token; (exit code, stdout, stderr).
async fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .args(args)
        .env_remove("SUPPORTOPSD_STATE")
        .env_remove("SUPPORTOPSD_URL")
        .env_remove("SUPPORTOPSD_LISTEN")
        .env_remove("SUPPORTOPSD_ADMIN_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY")
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The manifests: [`repo`]'s (Zendesk → Slack, Slack at `slack`) and a Trello integration whose
/// board webhook supportopsd creates.
fn backup_repo(slack: &str, trello: &FakeTrello) -> crate::support::TestRepo {
    let repo = repo(slack);
    repo.file(
        "integrations/trello.toml",
        &format!(
            r#"id = "trello-main"
platform = "trello"
[credentials]
api_key = "{TRELLO_KEY}"
token = {{ env = "TRELLO_TOKEN" }}
app_secret = {{ env = "TRELLO_APP_SECRET" }}
[config]
boards = ["{board}"]
default_list = "{list}"
[webhook]
events = ["createCard"]
[endpoint]
base_url = "{base_url}"
"#,
            board = trello_fake::BOARD_ID,
            list = trello_fake::LIST_INBOX,
            base_url = trello.base_url(),
        ),
    );
    repo.commit("trello");
    repo
}

/// [`post_zendesk`] to a daemon at `url`.
async fn post_zendesk_at(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    invocation: &str,
) -> u16 {
    let ts = rfc3339(0);
    let sig = zendesk_signature(ZD_SECRET, &ts, &body);
    client
        .post(format!("{url}/api/webhooks/zendesk/zendesk-main"))
        .header("content-type", "application/json")
        .header("x-zendesk-webhook-signature-timestamp", ts)
        .header("x-zendesk-webhook-signature", sig)
        .header("x-zendesk-webhook-invocation-id", invocation)
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

fn slack_texts(fake: &FakeSlack) -> Vec<String> {
    fake.requests_to("chat.postMessage")
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn trello_sync_reason(s: &serde_json::Value) -> String {
    s["integrations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["id"] == "trello-main")
        .and_then(|i| i["sync"]["reason"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restored_elsewhere_runs_every_acknowledged_delivery_once() {
    let tmp = tempfile::tempdir().unwrap();
    let key = SealKey::generate().unwrap();
    let key_path = tmp.path().join("supportopsd.key");
    std::fs::write(&key_path, format!("{}\n", &*key.to_base64())).unwrap();
    let trello = FakeTrello::start(TRELLO_KEY, TRELLO_TOKEN, TRELLO_APP_SECRET).await;
    let repo = backup_repo(NOWHERE, &trello);
    let key_arg = key_path.to_str().unwrap();
    // Slack is unreachable for the first daemon: every job stays in its outbox, retried.
    let retries = vec!["1s"; 200].join(",");
    let first_state = tmp.path().join("first");
    let first = Daemon::spawn_with_env(
        repo.path(),
        &first_state,
        &[
            "--resync-interval",
            "1s",
            "--retry-schedule",
            &retries,
            "--public-url",
            PUBLIC,
            "--key-file",
            key_arg,
        ],
        TRELLO_ENV,
    )
    .await;
    trello.proxy(PUBLIC, &first.url);
    let callback = format!("{PUBLIC}/api/webhooks/trello/trello-main");
    eventually(90, "the daemon's webhook at Trello", || {
        trello.webhooks().iter().any(|w| w.callback_url == callback)
    })
    .await;
    assert_eq!(trello.webhooks().len(), 1);
    trello.clear_requests();

    // Deliveries arrive all along: before the backup and while it runs.
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = first.url.clone();
    let loader = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let daemon_url = url.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let body = zendesk_ticket(n, &format!("ticket-{n}"));
                let code = post_zendesk_at(&client, &daemon_url, body, &format!("inv-{n}")).await;
                if code == 200 {
                    acked.lock().unwrap().push(n);
                }
            }
        })
    };
    eventually(30, "deliveries acknowledged", || {
        acked.lock().unwrap().len() >= 40
    })
    .await;
    let before: Vec<u64> = acked.lock().unwrap().clone();
    let file = tmp.path().join("backups/state.backup");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let (code, out, err) = cli(
        &[
            "state",
            "backup",
            "--to",
            file.to_str().unwrap(),
            "--url",
            &url,
        ],
        &[("SUPPORTOPSD_ADMIN_TOKEN", TEST_ADMIN_TOKEN)],
    )
    .await;
    let during = acked.lock().unwrap().len() - before.len();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    loader.await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Backed up the state of the daemon"), "{out}");
    assert!(during > 0 || !before.is_empty());
    // Private, created so; nothing left beside it.
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read_dir(file.parent().unwrap()).unwrap().count(),
        1
    );
    // No secret in clear: credentials, the admin token, the sealing key.
    let bytes = std::fs::read(&file).unwrap();
    for secret in [
        TRELLO_TOKEN,
        TRELLO_APP_SECRET,
        ZD_SECRET,
        BOT_TOKEN,
        TEST_ADMIN_TOKEN,
        &*key.to_base64(),
    ] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a secret is in the backup in clear"
        );
    }
    // The backup is audited, with how long writes waited.
    let mut audit = serde_json::Value::Null;
    for _ in 0..50 {
        audit = first.get_json("/api/audit/logs?resource_type=state").await;
        if audit["records"][0]["detail"]["quiesced_ms"].is_u64() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        audit["records"][0]["kind"]["type"], "state_backed_up",
        "{audit}"
    );
    assert!(
        audit["records"][0]["detail"]["quiesced_ms"].is_u64(),
        "{audit}"
    );
    first.kill().await;

    let (code, out, err) = cli(&["state", "verify", file.to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("good") && out.contains("registrations"),
        "{out}"
    );

    let second_state = tmp.path().join("second");
    let (code, out, err) = cli(
        &[
            "state",
            "restore",
            file.to_str().unwrap(),
            "--state",
            second_state.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("jobs queued"), "{out}");

    // The restored state, with Slack reachable now.
    let slack = FakeSlack::start(BOT_TOKEN, None).await;
    let text = std::fs::read_to_string(repo.path().join("integrations/slack.toml")).unwrap();
    repo.file(
        "integrations/slack.toml",
        &text.replace(NOWHERE, &slack.base_url()),
    );
    repo.commit("slack reachable");
    let second = Daemon::spawn_with_env(
        repo.path(),
        &second_state,
        &[
            "--resync-interval",
            "1s",
            "--public-url",
            PUBLIC,
            "--key-file",
            key_arg,
        ],
        TRELLO_ENV,
    )
    .await;
    trello.proxy(PUBLIC, &second.url);
    // Every delivery acknowledged before the backup runs, except one whose request was in
    // flight in the first daemon when the backup was taken: as after a crash, that request is
    // not sent again blindly (its job is checked or dead-lettered, "outcome unknown").
    let missing = || {
        let texts = slack_texts(&slack);
        before
            .iter()
            .filter(|n| !texts.contains(&format!("New: ticket-{n}")))
            .copied()
            .collect::<Vec<u64>>()
    };
    for _ in 0..300 {
        if missing().len() <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Trello's webhook is recognised: none created.
    let mut reason = String::new();
    for _ in 0..100 {
        reason = trello_sync_reason(&status(&second).await);
        if reason == "webhook registered as declared" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reason, "webhook registered as declared");
    // Everything else queued in the backup runs (some acknowledged during the backup are in
    // it), once.
    for _ in 0..300 {
        if status(&second).await["queue_depth"]
            .as_u64()
            .unwrap_or(u64::MAX)
            <= 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let texts = slack_texts(&slack);
    let mut seen = std::collections::HashSet::new();
    for t in &texts {
        assert!(seen.insert(t.clone()), "{t} ran twice: {texts:?}");
    }
    let all = acked.lock().unwrap().clone();
    for t in &texts {
        let n: u64 = t.trim_start_matches("New: ticket-").parse().unwrap();
        assert!(all.contains(&n), "{t} was never acknowledged");
    }
    assert_eq!(trello.webhooks().len(), 1);
    assert!(
        trello.requests_to("POST /webhooks").is_empty(),
        "{:?}",
        trello.requests()
    );
    second.terminate().await;
    // What did not run is a job whose request was in flight at the backup, kept for a check.
    let store = supportopsd::state::Store::open(&second_state).unwrap();
    let mut left: Vec<supportopsd::state::Job> = store.lease_due(u64::MAX / 4, 1, 10_000).unwrap();
    left.extend(store.dead(10_000).unwrap().into_iter().map(|d| d.job));
    let missing = missing();
    for job in &left {
        let event = store.event(job.event_id).unwrap().unwrap();
        let text = serde_json::to_string(&event).unwrap();
        let in_flight = job.in_flight.is_some()
            || job
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("in flight"));
        assert!(in_flight, "a job that did not run: {job:?}");
        assert!(
            missing
                .iter()
                .any(|n| text.contains(&format!("\"ticket-{n}\"")))
                || all
                    .iter()
                    .any(|n| text.contains(&format!("\"ticket-{n}\""))),
            "{text}"
        );
    }
    assert!(
        missing.len() <= left.len(),
        "not run and not kept: {missing:?} {left:?}"
    );
    eprintln!(
        "acknowledged before the backup: {}, during it: {during}, run after the restore: {}, kept in flight: {}",
        before.len(),
        texts.len(),
        left.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_refusals_say_what_to_do() {
    let (_fake, _repo, state, daemon, _client) = setup(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("b.backup");
    let file_arg = file.to_str().unwrap();
    let state_arg = state.path().to_str().unwrap();
    // A held state: what to run instead.
    let (code, _, err) = cli(
        &["state", "backup", "--to", file_arg, "--state", state_arg],
        &[],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("in use by another supportopsd process"),
        "{err}"
    );
    assert!(
        err.contains(&format!("supportopsd state backup --to {file_arg} --url")),
        "{err}"
    );
    assert!(!file.exists());
    // Through the daemon instead (tokenless loopback mode).
    let (code, out, err) = cli(
        &["state", "backup", "--to", file_arg, "--url", &daemon.url],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    daemon.terminate().await;
    // Offline once the daemon stopped.
    let offline = tmp.path().join("offline.backup");
    let (code, out, err) = cli(
        &[
            "state",
            "backup",
            "--to",
            offline.to_str().unwrap(),
            "--state",
            state_arg,
        ],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("writes waited"), "{out}");

    // Damaged files: verify says bad (exit 1), restore refuses and writes nothing.
    let bytes = std::fs::read(&file).unwrap();
    let damaged = tmp.path().join("damaged.backup");
    let target = tmp.path().join("restored");
    let mut flipped = bytes.clone();
    let middle = bytes.len() / 2;
    flipped[middle] ^= 1;
    for bad in [&bytes[..bytes.len() - 10], &flipped[..]] {
        std::fs::write(&damaged, bad).unwrap();
        let (code, _, err) = cli(&["state", "verify", damaged.to_str().unwrap()], &[]).await;
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("bad: not a valid supportopsd backup"), "{err}");
        let (code, _, err) = cli(
            &[
                "state",
                "restore",
                damaged.to_str().unwrap(),
                "--state",
                target.to_str().unwrap(),
            ],
            &[],
        )
        .await;
        assert_eq!(code, 1, "{err}");
        assert!(!target.exists());
    }
    // A non-empty target is refused.
    let (code, _, err) = cli(&["state", "restore", file_arg, "--state", state_arg], &[]).await;
    assert_eq!(code, 1);
    assert!(err.contains("is not an empty directory"), "{err}");
    // Nothing answers: say how to back up a stopped daemon's state.
    let (code, _, err) = cli(
        &[
            "state",
            "backup",
            "--to",
            file_arg,
            "--url",
            "http://127.0.0.1:9",
        ],
        &[],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("--state DIR"), "{err}");
}
