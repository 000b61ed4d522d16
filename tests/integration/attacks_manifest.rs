//! Attacks through the manifest repository (boundary 1 of issue 15, "the repository proposes;
//! the host decides"): a merged pull request that points an integration's credentials at the
//! attacker's host (SEC-01), names the daemon's own secrets (SEC-02) or reaches an internal
//! address (SEC-10). Each runs the real daemon on loopback with a capture server posing as the
//! attacker's host, and checks that nothing reaches it, that the revision is refused with the
//! policy key to set, and that the previous revision keeps running.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use supportopsd::platforms::slack::fake::FakeSlack;

use crate::daemon_support::{
    BOT_TOKEN, Daemon, LOOPBACK_POLICY, eventually, post_zendesk, repo, status, write_policy,
    zendesk_ticket,
};
use crate::support::TestRepo;

const ADMIN_TOKEN: &str = "admin-token-s3cret";

/// A TCP listener on loopback posing as the attacker's host: it records every byte any client
/// sends and answers each request with a Slack-like `{"ok":true}`.
struct Capture {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    connections: Arc<Mutex<usize>>,
}

impl Capture {
    async fn start() -> Capture {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (r, c) = (received.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                *c.lock().unwrap() += 1;
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 8192];
                    let mut answered = false;
                    while let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await
                    {
                        if n == 0 {
                            break;
                        }
                        r.lock().unwrap().extend_from_slice(&buf[..n]);
                        if !answered {
                            answered = true;
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}")
                                .await;
                        }
                    }
                });
            }
        });
        Capture {
            addr,
            received,
            connections,
        }
    }

    /// A base URL at the capture server.
    fn url(&self) -> String {
        format!("http://{}/api/", self.addr)
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Fails if anything connected or arrived.
    fn assert_nothing(&self) {
        let received = self.received.lock().unwrap().clone();
        assert!(
            received.is_empty() && *self.connections.lock().unwrap() == 0,
            "the attacker's host received: {}",
            String::from_utf8_lossy(&received)
        );
    }
}

/// The Slack integration of [`repo`] with another `base_url` and `bot_token`.
fn slack(base_url: &str, bot_token: &str) -> String {
    format!(
        r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = {bot_token}
signing_secret = {{ env = "SLACK_SIGNING_SECRET" }}
[webhook]
events = ["message"]
[endpoint]
base_url = "{base_url}"
[limits]
requests_per_minute = 6000
"#
    )
}

/// A host policy that lets the integrations of [`repo`] reach the fake Slack and the address
/// nothing listens at, and nothing else.
fn strict_policy(fake: &FakeSlack) -> String {
    let port = fake
        .base_url()
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    format!("[endpoints]\nallow = [\"127.0.0.1:{port}\", \"127.0.0.1:9\"]\n")
}

/// `POST /api/sync`: the status and the answer.
async fn sync(daemon: &Daemon) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/sync", daemon.url))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap())
}

fn head(repo: &TestRepo) -> String {
    git2::Repository::open(repo.path())
        .unwrap()
        .head()
        .unwrap()
        .target()
        .unwrap()
        .to_string()
}

/// Commits `attack`, asks for a pass and checks the revision is refused with `reason_parts`
/// in the reason, the previous revision still applied and still running its rules (a Zendesk
/// delivery still reaches the real Slack), and nothing at the capture server.
async fn assert_refused_and_running(
    daemon: &Daemon,
    repo: &TestRepo,
    fake: &FakeSlack,
    capture: &Capture,
    reason_parts: &[&str],
) {
    let previous = head(repo);
    let attack = repo.commit("attack");
    let (code, answer) = sync(daemon).await;
    // The pass is over (connection checks and registrations included): anything that was to
    // go to the attacker has gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    capture.assert_nothing();
    assert_eq!(code, 409, "{answer}");
    let why = answer["refused"].as_str().unwrap_or_default().to_owned();
    for part in reason_parts {
        assert!(why.contains(part), "{part:?} not in: {why}");
    }
    let s = status(daemon).await;
    assert_eq!(s["applied_revision"], previous.as_str(), "{s}");
    assert_eq!(s["refused_revision"], attack.as_str(), "{s}");
    assert_eq!(s["refused"].as_str(), Some(why.as_str()));
    let client = reqwest::Client::new();
    assert_eq!(
        post_zendesk(&client, daemon, zendesk_ticket(77, "Still here"), "inv-77").await,
        200
    );
    eventually(20, "the previous revision's rule", || {
        fake.requests_to("chat.postMessage")
            .iter()
            .any(|r| r.json()["text"] == "New: Still here")
    })
    .await;
    // Give anything that would go to the attacker time to get there.
    tokio::time::sleep(Duration::from_millis(500)).await;
    capture.assert_nothing();
}

/// SEC-01: `[endpoint] base_url` moved to the attacker's host by a merged change. The host
/// policy does not list it: the revision is refused, the status says which key would allow
/// it, the previous revision keeps running, and the bot token never leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_01_a_base_url_to_the_attackers_host_is_refused() {
    let capture = Capture::start().await;
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), &strict_policy(&fake));
    let state = tempfile::tempdir().unwrap();
    let policy_arg = policy.to_str().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &["--policy", policy_arg]).await;
    repo.file(
        "integrations/slack.toml",
        &slack(&capture.url(), r#"{ env = "SLACK_BOT_TOKEN" }"#),
    );
    let host = format!("127.0.0.1:{}", capture.port());
    assert_refused_and_running(
        &daemon,
        &repo,
        &fake,
        &capture,
        &[
            "refused by the host policy",
            "integration `slack-main`",
            "[endpoint] base_url",
            &format!("\"{host}\""),
            "`[endpoints] allow`",
            policy_arg,
        ],
    )
    .await;
    daemon.kill().await;
}

/// SEC-01: a Freshdesk `domain` moved off `*.freshdesk.com` to a host the policy does not list
/// (the API key would go to `https://<domain>/api/v2`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_01_a_freshdesk_domain_off_freshdesk_com_is_refused() {
    let capture = Capture::start().await;
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), &strict_policy(&fake));
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(
        repo.path(),
        state.path(),
        &["--policy", policy.to_str().unwrap()],
    )
    .await;
    repo.file(
        "integrations/freshdesk.toml",
        r#"id = "freshdesk-main"
platform = "freshdesk"
[credentials]
domain = "helpdesk.attacker.invalid"
api_key = { env = "FD_KEY" }
[webhook]
events = ["ticket_created"]
secret = { env = "FD_WEBHOOK_SECRET" }
"#,
    );
    assert_refused_and_running(
        &daemon,
        &repo,
        &fake,
        &capture,
        &[
            "integration `freshdesk-main`",
            "credential `domain`",
            "\"helpdesk.attacker.invalid\"",
            "`[endpoints] freshdesk`",
        ],
    )
    .await;
    daemon.kill().await;
}

/// SEC-01: plain `http://` to a host that is not loopback (here `0.0.0.0`, which Linux
/// connects to this machine, so the capture server would see the token in clear) is refused
/// even when the policy lists the host: no policy allows credentials in clear text off
/// loopback. `validate` refuses it too, offline, at its line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_01_a_plain_http_override_off_loopback_is_refused_even_when_listed() {
    let capture = Capture::start().await;
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let dir = tempfile::tempdir().unwrap();
    // An operator's mistake: 0.0.0.0 listed.
    let policy = write_policy(
        dir.path(),
        "[endpoints]\nallow = [\"127.0.0.1:*\", \"0.0.0.0:*\"]\n",
    );
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(
        repo.path(),
        state.path(),
        &["--policy", policy.to_str().unwrap()],
    )
    .await;
    let url = format!("http://0.0.0.0:{}/api/", capture.port());
    repo.file(
        "integrations/slack.toml",
        &slack(&url, r#"{ env = "SLACK_BOT_TOKEN" }"#),
    );
    assert_refused_and_running(
        &daemon,
        &repo,
        &fake,
        &capture,
        &["only for a loopback host"],
    )
    .await;
    daemon.kill().await;
    // `validate` refuses it too, offline, at its line.
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("integrations/slack.toml:9:")
            && out
                .stdout
                .contains("plain http:// is allowed only for a loopback host"),
        "{}",
        out.stdout
    );
}

/// SEC-02: `{ file = "supportopsd.key" }` names the sealing key, and the policy lets the
/// integration reach the capture server (so only the reserved-name check stands between the
/// key and the attacker). `validate` refuses it at its line; the daemon refuses the revision;
/// the key never leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_02_a_reference_to_the_sealing_key_file_is_refused() {
    let capture = Capture::start().await;
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let creds = tempfile::tempdir().unwrap();
    let key = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/example-sealing.key"),
    )
    .unwrap();
    std::fs::write(creds.path().join("supportopsd.key"), &key).unwrap();
    // The host policy as a credential (the default place): loopback on any port.
    write_policy(creds.path(), LOOPBACK_POLICY);
    let state = tempfile::tempdir().unwrap();
    let creds_dir = creds.path().to_str().unwrap();
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &["--policy", &format!("{creds_dir}/policy.toml")],
        &[("CREDENTIALS_DIRECTORY", creds_dir)],
    )
    .await;
    repo.file(
        "integrations/slack.toml",
        &slack(&capture.url(), r#"{ file = "supportopsd.key" }"#),
    );
    assert_refused_and_running(
        &daemon,
        &repo,
        &fake,
        &capture,
        &["file:supportopsd.key is one of the daemon's own secrets"],
    )
    .await;
    daemon.kill().await;
    // `validate` refuses it too, offline, at its line.
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("integrations/slack.toml:4:")
            && out
                .stdout
                .contains("file:supportopsd.key is one of the daemon's own secrets"),
        "{}",
        out.stdout
    );
}

/// SEC-02: `{ env = "SUPPORTOPSD_ADMIN_TOKEN" }` names the operator API's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_02_a_reference_to_the_admin_token_is_refused() {
    let capture = Capture::start().await;
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    // The default test policy: every loopback port, the capture server's included.
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &[],
        &[("SUPPORTOPSD_ADMIN_TOKEN", ADMIN_TOKEN)],
    )
    .await;
    repo.file(
        "integrations/slack.toml",
        &slack(&capture.url(), r#"{ env = "SUPPORTOPSD_ADMIN_TOKEN" }"#),
    );
    let previous = head(&repo);
    let attack = repo.commit("attack");
    let r = reqwest::Client::new()
        .post(format!("{}/api/sync", daemon.url))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let code = r.status();
    tokio::time::sleep(Duration::from_millis(300)).await;
    capture.assert_nothing();
    assert_eq!(code, 409);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["refused"]
            .as_str()
            .unwrap()
            .contains("env:SUPPORTOPSD_ADMIN_TOKEN is one of the daemon's own secrets"),
        "{v}"
    );
    assert!(!v.to_string().contains(ADMIN_TOKEN), "{v}");
    let s: Value = reqwest::Client::new()
        .get(format!("{}/api/status", daemon.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["applied_revision"], previous.as_str(), "{s}");
    assert_eq!(s["refused_revision"], attack.as_str(), "{s}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    capture.assert_nothing();
    daemon.kill().await;
    // `validate` refuses it too, offline, at its line.
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("integrations/slack.toml:4:")
            && out
                .stdout
                .contains("env:SUPPORTOPSD_ADMIN_TOKEN is one of the daemon's own secrets"),
        "{}",
        out.stdout
    );
}

/// SEC-02 (scoping): with a `[secrets]` table, an integration may name only its own
/// references; a change that makes Slack use Freshdesk's API key is refused and names the
/// entry to extend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_02_a_reference_outside_the_integrations_scope_is_refused() {
    let capture = Capture::start().await;
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(
        dir.path(),
        r#"[endpoints]
allow = ["127.0.0.1:*"]

[secrets]
"slack-*" = { env = ["SLACK_*"] }
"zendesk-*" = { env = ["ZD_*"] }
"freshdesk-*" = { env = ["FD_*"] }
"#,
    );
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(
        repo.path(),
        state.path(),
        &["--policy", policy.to_str().unwrap()],
    )
    .await;
    repo.file(
        "integrations/slack.toml",
        &slack(&capture.url(), r#"{ env = "FD_KEY" }"#),
    );
    // Offline, nothing is wrong with it: the scope is the host's to decide.
    assert_eq!(repo.run(&["validate"]).code, 0);
    assert_refused_and_running(
        &daemon,
        &repo,
        &fake,
        &capture,
        &[
            "integration `slack-main`",
            "`bot_token` (env:FD_KEY)",
            "adds \"FD_KEY\" to `env` of `[secrets] \"slack-*\"`",
        ],
    )
    .await;
    daemon.kill().await;
}

/// SEC-10: an override to a loopback or private address the policy does not list (a way to
/// reach internal services and read their answers back through the health reason) is refused;
/// the reason says it is an internal address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_10_an_internal_address_not_in_the_policy_is_refused() {
    let capture = Capture::start().await;
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), &strict_policy(&fake));
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(
        repo.path(),
        state.path(),
        &["--policy", policy.to_str().unwrap()],
    )
    .await;
    // The "internal service" on loopback, under another spelling of 127.0.0.1.
    let url = format!("http://0x7f.0.0.1:{}/internal/", capture.port());
    repo.file(
        "integrations/slack.toml",
        &slack(&url, r#"{ env = "SLACK_BOT_TOKEN" }"#),
    );
    assert_refused_and_running(
        &daemon,
        &repo,
        &fake,
        &capture,
        &[&format!(
            "host 127.0.0.1:{} (an internal address) is not in the host policy",
            capture.port()
        )],
    )
    .await;
    daemon.kill().await;
}

/// Boundary 1 at a start with no revision yet, and no policy anywhere: an override outside the
/// platform's hosts is not honoured; the daemon serves but is not ready, and the status says
/// which key to write where.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_policy_no_override_is_honoured_and_the_status_says_what_to_set() {
    // (On a machine with an /etc/supportopsd/policy.toml this test cannot say "no policy".)
    assert!(!std::path::Path::new("/etc/supportopsd/policy.toml").exists());
    let capture = Capture::start().await;
    let repo = repo(&capture.url());
    let state = tempfile::tempdir().unwrap();
    // $CREDENTIALS_DIRECTORY without a policy.toml, and no --policy.
    let empty = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_without_policy(
        repo.path(),
        state.path(),
        &[("CREDENTIALS_DIRECTORY", empty.path().to_str().unwrap())],
    )
    .await;
    let mut s = Value::Null;
    for _ in 0..200 {
        s = status(&daemon).await;
        if s["refused"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let why = s["refused"].as_str().unwrap_or_else(|| panic!("{s}"));
    assert!(
        why.contains("no host policy is loaded")
            && why.contains("`[endpoints] allow = [\"127.0.0.1:9\"]`")
            && why.contains("/etc/supportopsd/policy.toml")
            && why.contains("(and 2 more: see the log)"),
        "{why}"
    );
    assert!(s["applied_revision"].is_null(), "{s}");
    let ready = reqwest::get(format!("{}/readyz", daemon.url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .args(["status", "--url", &daemon.url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[endpoints] allow"), "{text}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    capture.assert_nothing();
    daemon.kill().await;
}

/// The policy is read from `$CREDENTIALS_DIRECTORY/policy.toml` when no `--policy` is given
/// (systemd `LoadCredential=policy.toml:…`), and a policy file that is named but missing, or
/// found but does not parse, stops the daemon at start with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_comes_from_the_credentials_and_a_broken_one_stops_the_start() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let creds = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let creds_dir = creds.path().to_str().unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
            .current_dir(repo.path())
            .args(["--repo", ".", "--state"])
            .arg(state.path())
            .args(["run", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("SUPPORTOPSD_POLICY")
            .env("SUPPORTOPSD_LOG", "error")
            .env("CREDENTIALS_DIRECTORY", creds_dir)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // A broken credential: the daemon does not start.
    write_policy(creds.path(), "[endpoints]\nallow = \"127.0.0.1:*\"\n");
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("invalid host policy {creds_dir}/policy.toml")),
        "{stderr}"
    );
    // A --policy that is not there: the same.
    let out = run(&["--policy", "/nonexistent/policy.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot read the host policy /nonexistent/policy.toml"),
        "{stderr}"
    );
    // A good credential: the revision, with the fake on loopback, is applied.
    write_policy(creds.path(), &strict_policy(&fake));
    let daemon = Daemon::start_without_policy(
        repo.path(),
        state.path(),
        &[("CREDENTIALS_DIRECTORY", creds_dir)],
    )
    .await;
    daemon.wait_ready().await;
    daemon.kill().await;
}

/// SEC-01 through `apply`: one pass under the same policy, refused the same way, nothing sent.
#[test]
fn sec_01_apply_refuses_what_the_policy_refuses() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let capture = rt.block_on(Capture::start());
    let fake = rt.block_on(FakeSlack::start(BOT_TOKEN, None));
    let repo = repo(&capture.url());
    let dir = tempfile::tempdir().unwrap();
    let policy = write_policy(dir.path(), &strict_policy(&fake));
    let state = tempfile::tempdir().unwrap();
    let out = repo.run_with(
        &[
            "--state",
            state.path().to_str().unwrap(),
            "apply",
            "--public-url",
            "https://ops.example.com",
            "--policy",
            policy.to_str().unwrap(),
        ],
        &[
            ("SLACK_BOT_TOKEN", BOT_TOKEN),
            ("SLACK_SIGNING_SECRET", "s"),
        ],
        None,
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("Revision refused: refused by the host policy: integration `slack-main`"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(BOT_TOKEN) && !out.stderr.contains(BOT_TOKEN));
    capture.assert_nothing();
}

/// `validate` and `plan` run without the policy: they say which overrides the daemon's policy
/// will decide on, and refuse what no policy can allow.
#[test]
fn validate_and_plan_say_what_the_daemon_checks() {
    let repo = repo("http://127.0.0.1:18080/api/");
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let note = out
        .stdout
        .lines()
        .find(|l| l.starts_with("note: "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        note.contains("host policy")
            && note.contains("slack-main [endpoint] base_url → 127.0.0.1:18080")
            && note.contains("zendesk-main [endpoint] base_url → 127.0.0.1:9"),
        "{note}"
    );
    let out = repo.run(&["plan", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("slack-main [endpoint] base_url → 127.0.0.1:18080"),
        "{}",
        out.stderr
    );
    serde_json::from_str::<Value>(&out.stdout).expect("the plan stays JSON");
    // What no policy can allow is refused offline, each at its line: the daemon's own secret
    // in `[webhook] secret`, credentials in a URL.
    let bad = TestRepo::new();
    bad.file(
        "integrations/zendesk.toml",
        r#"id = "zendesk-main"
platform = "zendesk"
[credentials]
subdomain = "acme"
email = "ops@acme.example"
api_token = { env = "ZD_TOKEN" }
[webhook]
events = ["ticket.created"]
secret = { file = "sync.secret" }
[endpoint]
base_url = "https://user:hunter2@zendesk.attacker.invalid"
"#,
    );
    let out = bad.run(&["validate"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("integrations/zendesk.toml:9:")
            && out
                .stdout
                .contains("`webhook_secret`: file:sync.secret is one of the daemon's own secrets"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("integrations/zendesk.toml:11:")
            && out
                .stdout
                .contains("must not carry a user name or password")
            && !out.stdout.contains("hunter2"),
        "{}",
        out.stdout
    );
    // No override, no note.
    let plain = TestRepo::examples();
    let out = plain.run(&["validate"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(!out.stdout.contains("note:"), "{}", out.stdout);
}
