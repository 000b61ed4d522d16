//! Running `supportopsd run` as a child process, and signing deliveries the platforms' way.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use supportopsd::platforms::slack::fake::FakeSlack;

use crate::support::TestRepo;

pub(crate) const ZD_SECRET: &str = "zendesk-webhook-secret";
pub(crate) const FD_SECRET: &str = "freshdesk-shared-secret";
pub(crate) const SLACK_SIGNING: &str = "slack-signing-secret";
pub(crate) const BOT_TOKEN: &str = "xoxb-test-bot-token";
/// The Slack app configuration token, in `$SLACK_APP_CONFIG_TOKEN`.
pub(crate) const APP_CONFIG_TOKEN: &str = "xoxe.xoxp-test-app-config-token";

/// The admin token the harness gives a daemon whose `--public-url` is not loopback (`run`
/// refuses to start without one there, SEC-05).
pub(crate) const TEST_ADMIN_TOKEN: &str = "test-admin-token-for-a-public-url";

/// A running daemon.
pub(crate) struct Daemon {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
    /// Its admin token (`None`: the tokenless loopback mode).
    pub(crate) token: Option<String>,
    /// The folder of the host policy written for it (when the test gave none).
    _policy: Option<tempfile::TempDir>,
    /// Its log (stderr), gathered until it exits, when started by [`Daemon::start_logged`].
    log: Option<tokio::task::JoinHandle<String>>,
}

/// The host policy of the tests (the fakes' own: every loopback port may be named by an
/// endpoint override).
pub(crate) use supportopsd::platforms::fakekit::LOOPBACK_POLICY;

/// Writes [`LOOPBACK_POLICY`] into `dir` and returns its path (for `--policy`).
pub(crate) fn loopback_policy(dir: &Path) -> std::path::PathBuf {
    write_policy(dir, LOOPBACK_POLICY)
}

/// Writes a host policy into `dir` and returns its path (for `--policy`).
pub(crate) fn write_policy(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).expect("write the policy");
    path
}

/// A Zendesk integration whose webhook is made by hand (deliveries signed with
/// `$ZD_WEBHOOK_SECRET`) and whose API is never reached.
pub(crate) const ZENDESK_BY_HAND: &str = r#"id = "zendesk-main"
platform = "zendesk"
[credentials]
subdomain = "acme"
email = "ops@acme.example"
api_token = { env = "ZD_TOKEN" }
[webhook]
events = ["ticket.created"]
secret = { env = "ZD_WEBHOOK_SECRET" }
# Nothing listens here: the platform is never reached by these tests.
[endpoint]
base_url = "http://127.0.0.1:9"
"#;

/// The manifests of a small support setup: Zendesk and Freshdesk in, Slack out.
pub(crate) fn repo(slack_base_url: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.file("integrations/zendesk.toml", ZENDESK_BY_HAND)
        .file(
            "integrations/freshdesk.toml",
            r#"id = "freshdesk-main"
platform = "freshdesk"
[credentials]
domain = "acme.freshdesk.com"
api_key = { env = "FD_KEY" }
[webhook]
events = ["ticket_created"]
secret = { env = "FD_WEBHOOK_SECRET" }
# Nothing listens here: the platform is never reached by these tests.
[endpoint]
base_url = "http://127.0.0.1:9"
"#,
        )
        .file(
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
[limits]
requests_per_minute = 6000
"#
            ),
        )
        .file(
            "rules/zendesk-to-slack.toml",
            r##"id = "zendesk-to-slack"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#support"
message = "New: {{ ticket.subject }}"
"##,
        )
        .file(
            "rules/freshdesk-to-slack.toml",
            r##"id = "freshdesk-to-slack"
[trigger]
integration = "freshdesk-main"
event = "ticket_created"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#support"
message = "Freshdesk {{ ticket.id }}: {{ ticket.subject }}"
"##,
        )
        .file("rules/slack-echo.toml", SLACK_ECHO_RULE);
    repo.commit("initial");
    repo
}

/// The Slack integration with the manifest API's credentials, so the daemon registers.
pub(crate) fn registering_slack(repo: &TestRepo, fake: &FakeSlack, events: &str) {
    repo.file(
        "integrations/slack.toml",
        &format!(
            r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = {{ env = "SLACK_BOT_TOKEN" }}
signing_secret = {{ env = "SLACK_SIGNING_SECRET" }}
app_config_token = {{ env = "SLACK_APP_CONFIG_TOKEN" }}
app_id = "{}"
[webhook]
events = [{events}]
[endpoint]
base_url = "{}"
"#,
            supportopsd::platforms::slack::fake::APP_ID,
            fake.base_url()
        ),
    );
}

/// Appends a `[config]` table with `lines` to the integration [`registering_slack`] wrote.
pub(crate) fn slack_config(repo: &TestRepo, lines: &str) {
    let path = repo.path().join("integrations/slack.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    repo.file(
        "integrations/slack.toml",
        &format!("{text}[config]\n{lines}\n"),
    );
}

/// A rule answering Slack messages that ask for help (in the standard repository and others).
pub(crate) const SLACK_ECHO_RULE: &str = r##"id = "slack-echo"
[trigger]
integration = "slack-main"
event = "message"
[trigger.conditions]
"message.text" = { contains = "help" }
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "{{ message.channel }}"
message = "Someone asked for help: {{ message.text }}"
"##;

impl Daemon {
    /// Starts `supportopsd run` on a free port with the test secrets in its environment.
    pub(crate) async fn spawn(repo: &Path, state: &Path, extra: &[&str]) -> Daemon {
        Daemon::spawn_with_env(repo, state, extra, &[]).await
    }

    /// [`Daemon::spawn`] with more environment variables. The admin token is the one `env`
    /// sets (an empty one: none), else [`TEST_ADMIN_TOKEN`] when `extra` has a `--public-url`
    /// off loopback, else none (the tokenless loopback mode).
    pub(crate) async fn spawn_with_env(
        repo: &Path,
        state: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let daemon = Daemon::start(repo, state, extra, env).await;
        daemon.wait_ready().await;
        daemon
    }

    /// [`Daemon::spawn`] started by `sh -c 'umask UMASK; exec supportopsd …'`, under the
    /// tests' loopback policy.
    pub(crate) async fn spawn_under_umask(
        umask: &str,
        repo: &Path,
        state: &Path,
        extra: &[&str],
    ) -> Daemon {
        let daemon = Daemon::launch(Some(umask), repo, state, extra, &[], true).await;
        daemon.wait_ready().await;
        daemon
    }

    /// Starts `supportopsd run` like [`Daemon::spawn_with_env`] and returns once it listens,
    /// ready or not (a daemon whose first revision is refused serves, unready). Unless `extra`
    /// names a `--policy`, the daemon runs under [`LOOPBACK_POLICY`].
    pub(crate) async fn start(
        repo: &Path,
        state: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::launch(None, repo, state, extra, env, !extra.contains(&"--policy")).await
    }

    /// [`Daemon::start`] with its log (stderr) gathered instead of shown:
    /// [`Daemon::terminate_with_log`] returns it. `SUPPORTOPSD_LOG` in `env` sets its level.
    pub(crate) async fn start_logged(
        repo: &Path,
        state: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let daemon = Daemon::launch_with(
            None,
            repo,
            state,
            extra,
            env,
            !extra.contains(&"--policy"),
            true,
        )
        .await;
        daemon.wait_ready().await;
        daemon
    }

    /// [`Daemon::start`] without `--policy`: the daemon looks for its policy where it would in
    /// production (`$CREDENTIALS_DIRECTORY/policy.toml`, then `/etc/supportopsd/policy.toml`).
    pub(crate) async fn start_without_policy(
        repo: &Path,
        state: &Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::launch(None, repo, state, &[], env, false).await
    }

    async fn launch(
        umask: Option<&str>,
        repo: &Path,
        state: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        test_policy: bool,
    ) -> Daemon {
        Daemon::launch_with(umask, repo, state, extra, env, test_policy, false).await
    }

    async fn launch_with(
        umask: Option<&str>,
        repo: &Path,
        state: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        test_policy: bool,
        logged: bool,
    ) -> Daemon {
        let policy_dir = test_policy.then(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            loopback_policy(dir.path());
            dir
        });
        let public_off_loopback = extra
            .windows(2)
            .any(|w| w[0] == "--public-url" && !w[1].starts_with("http://127.0.0.1"));
        let token = match env.iter().find(|(k, _)| *k == "SUPPORTOPSD_ADMIN_TOKEN") {
            Some((_, t)) => (!t.is_empty()).then(|| (*t).to_owned()),
            None => public_off_loopback.then(|| TEST_ADMIN_TOKEN.to_owned()),
        };
        let bin = env!("CARGO_BIN_EXE_supportopsd");
        let mut cmd = match umask {
            Some(umask) => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c")
                    .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
                    .arg(bin);
                cmd
            }
            None => Command::new(bin),
        };
        cmd.current_dir(repo)
            .args(["--repo", ".", "--state"])
            .arg(state)
            .arg("run")
            .args(
                (!extra.contains(&"--listen"))
                    .then_some(["--listen", "127.0.0.1:0"])
                    .into_iter()
                    .flatten(),
            )
            .args(extra)
            .args(policy_dir.iter().flat_map(|d| {
                [
                    std::ffi::OsString::from("--policy"),
                    d.path().join("policy.toml").into_os_string(),
                ]
            }))
            .env_remove("SUPPORTOPSD_KEY_FILE")
            .env_remove("SUPPORTOPSD_POLICY")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("SUPPORTOPSD_ADMIN_TOKEN")
            .env_remove("SUPPORTOPSD_READ_TOKEN")
            .envs(token.as_deref().map(|t| ("SUPPORTOPSD_ADMIN_TOKEN", t)))
            .env("SUPPORTOPSD_LOG", "error")
            .env("ZD_TOKEN", "zd-api-token")
            .env("ZD_WEBHOOK_SECRET", ZD_SECRET)
            .env("FD_KEY", "fd-api-key")
            .env("FD_WEBHOOK_SECRET", FD_SECRET)
            .env("SLACK_BOT_TOKEN", BOT_TOKEN)
            .env("SLACK_SIGNING_SECRET", SLACK_SIGNING)
            .env("SLACK_APP_CONFIG_TOKEN", APP_CONFIG_TOKEN)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if logged {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn supportopsd run");
        let log = child.stderr.take().map(|stderr| {
            tokio::spawn(async move {
                let mut text = String::new();
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    text.push_str(&line);
                    text.push('\n');
                }
                text
            })
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the daemon announced its address in time")
            .expect("read stdout")
            .expect("a line");
        let addr = line
            .strip_prefix("supportopsd listening on ")
            .expect("the address line")
            .to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Daemon {
            child,
            url: format!("http://{addr}"),
            token,
            _policy: policy_dir,
            log,
        }
    }

    /// Waits until `/readyz` answers 200 (a revision is applied).
    pub(crate) async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/readyz", self.url)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the daemon did not become ready");
    }

    /// A request to the operator API at `path`, as the operator's tools send it: the admin
    /// token when the daemon has one, and `Content-Type: application/json` on a change.
    pub(crate) fn api(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let changes = method != reqwest::Method::GET;
        let mut req = client.request(method, format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if changes {
            req = req.header("content-type", "application/json");
        }
        req
    }

    /// `GET` of an operator API route, as JSON.
    pub(crate) async fn get_json(&self, path: &str) -> serde_json::Value {
        self.api(&reqwest::Client::new(), reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// SIGKILL, no goodbye.
    pub(crate) async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM and wait for a clean exit.
    pub(crate) async fn terminate(mut self) -> std::process::ExitStatus {
        signal(self.pid(), "TERM");
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exited in time")
            .expect("wait")
    }
}

impl Daemon {
    /// SIGTERM, wait for a clean exit, and its log (see [`Daemon::start_logged`]).
    pub(crate) async fn terminate_with_log(mut self) -> (std::process::ExitStatus, String) {
        let log = self.log.take().expect("started by Daemon::start_logged");
        let status = self.terminate().await;
        let log = tokio::time::timeout(Duration::from_secs(10), log)
            .await
            .expect("the log ended with the daemon")
            .expect("the log reader");
        (status, log)
    }
}

/// Sends a signal with kill(1).
pub(crate) fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Now as RFC 3339 (UTC), shifted by `offset_secs`.
pub(crate) fn rfc3339(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset_secs;
    let days = now.div_euclid(86_400);
    let secs = now.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Zendesk's signature: base64(HMAC-SHA256(secret, timestamp + body)).
pub(crate) fn zendesk_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    supportopsd::platforms::zendesk::fake::sign(secret, timestamp, body)
}

/// Slack's signature: `v0=` + hex(HMAC-SHA256(secret, "v0:ts:body")).
pub(crate) fn slack_signature(secret: &str, ts: &str, body: &[u8]) -> String {
    supportopsd::platforms::slack::fake::sign(secret, ts, body)
}

/// A Zendesk trigger delivery of `ticket.created`.
pub(crate) fn zendesk_ticket(id: u64, subject: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "supportopsd_event": "ticket.created",
        "ticket": {"id": id.to_string(), "subject": subject, "status": "New", "priority": "Normal",
                   "type": "Question", "tags": "billing", "via": "Mail",
                   "url": format!("acme.zendesk.com/agent/tickets/{id}"), "external_id": "",
                   "brand_id": "", "group_id": "", "organization_id": "",
                   "created_at": "2099-07-11T08:15:00Z", "updated_at": "2099-07-11T08:15:00Z"},
        "requester": {"id": "6596848315901", "name": "Priya", "email": "priya@example.com"},
        "assignee": {"id": "", "name": "", "email": ""},
        "current_user": {"id": "6596848315901"},
        "comment": {"id": "", "body": "", "public": "", "author_id": ""}
    }))
    .unwrap()
}

/// Posts a signed Zendesk delivery; returns the status.
pub(crate) async fn post_zendesk(
    client: &reqwest::Client,
    daemon: &Daemon,
    body: Vec<u8>,
    invocation: &str,
) -> u16 {
    let ts = rfc3339(0);
    let sig = zendesk_signature(ZD_SECRET, &ts, &body);
    client
        .post(format!("{}/api/webhooks/zendesk/zendesk-main", daemon.url))
        .header("content-type", "application/json")
        .header("x-zendesk-webhook-signature-timestamp", ts)
        .header("x-zendesk-webhook-signature", sig)
        .header("x-zendesk-webhook-invocation-id", invocation)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Posts a signed Slack Events API delivery to `slack-main`, stamped now; returns the status.
pub(crate) async fn post_slack(client: &reqwest::Client, daemon: &Daemon, body: Vec<u8>) -> u16 {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let sig = slack_signature(SLACK_SIGNING, &ts, &body);
    client
        .post(format!("{}/api/webhooks/slack/slack-main", daemon.url))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A Freshdesk delivery (shared-secret header) of `ticket_created`.
pub(crate) async fn post_freshdesk(
    client: &reqwest::Client,
    url: &str,
    ticket: u64,
) -> Result<u16, reqwest::Error> {
    let body = serde_json::json!({"freshdesk_webhook": {
        "supportopsd_event": "ticket_created", "triggered_event": "{ticket_action:created}",
        "ticket_id": ticket.to_string(), "ticket_subject": format!("Ticket number {ticket}"),
        "ticket_url": format!("https://acme.freshdesk.com/helpdesk/tickets/{ticket}"),
        "ticket_status": "Open", "ticket_priority": "Urgent", "ticket_source": "Email",
        "ticket_type": "Incident", "ticket_tags": "", "requester_name": "R", "requester_email": "r@example.com",
        "agent_name": "", "agent_email": ""}});
    let r = client
        .post(format!("{url}/api/webhooks/freshdesk/freshdesk-main"))
        .header("content-type", "application/json")
        .header("x-supportopsd-token", FD_SECRET)
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await?;
    Ok(r.status().as_u16())
}

/// `GET /api/status` of a daemon.
pub(crate) async fn status(daemon: &Daemon) -> serde_json::Value {
    daemon.get_json("/api/status").await
}

/// Waits until `f` holds, or fails after `secs`.
pub(crate) async fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A fake Slack, the manifests of [`repo`] committed, and a daemon running them with `extra`
/// arguments: what most daemon tests start from. Keep every part bound until the test ends (the
/// temporary folders are deleted when dropped).
pub(crate) async fn setup(
    extra: &[&str],
) -> (
    FakeSlack,
    TestRepo,
    tempfile::TempDir,
    Daemon,
    reqwest::Client,
) {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), extra).await;
    (fake, repo, state, daemon, reqwest::Client::new())
}
