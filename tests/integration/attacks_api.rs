//! Attacks on the operator API (boundary 3 of the security model: the API trusts a token, not
//! an address), each against the real daemon on loopback and named for the finding of the
//! security review it reproduces: SEC-05 (a public daemon without a token; DNS rebinding and a
//! reverse proxy against the tokenless loopback mode; cross-site `text/plain` posts; the
//! read-only token), SEC-06 (pinning an unmerged commit) and SEC-16 (who did it). SEC-18 is a
//! unit test of `secrets::constant_time_eq`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use supportopsd::platforms::slack::fake::{Failure, FakeSlack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::daemon_support::*;

const ADMIN: &str = "attack-test-admin-token-7f3a9c";
const READ: &str = "attack-test-read-token-2b8e41";
const PUSH_SECRET: &str = "attack-test-push-secret-91d0";

/// What an attacker's web page asks the operator's daemon to do.
fn slack_message(text: &str) -> Value {
    json!({"action": "send_message", "parameters": {"channel": "#support", "message": text}})
}

/// Runs `supportopsd run` with `args` and `env` and expects it to refuse to start: exit 1
/// without ever listening. Returns what it said on stderr.
async fn refuses_to_start(repo: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let state = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .current_dir(repo)
        .args(["--repo", ".", "--state"])
        .arg(state.path())
        .arg("run")
        .args(args)
        .env_remove("SUPPORTOPSD_KEY_FILE")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("SUPPORTOPSD_ADMIN_TOKEN")
        .env_remove("SUPPORTOPSD_READ_TOKEN")
        .env_remove("SUPPORTOPSD_PUBLIC_URL")
        .env_remove("SUPPORTOPSD_LISTEN")
        .env("SUPPORTOPSD_LOG", "error")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let Ok(status) = tokio::time::timeout(Duration::from_secs(20), child.wait()).await else {
        let _ = child.start_kill();
        panic!("`run {args:?}` started instead of refusing");
    };
    let status = status.unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        !stdout.contains("listening"),
        "it listened before refusing: {stdout}"
    );
    stderr
}

/// Sends `head` (request line and headers, without the blank line) and `body` on a connection of
/// its own, exactly as written (a browser after DNS rebinding, a proxy); the status and body.
async fn raw(daemon: &Daemon, head: &str, body: &str) -> (u16, String) {
    let addr = daemon.url.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{head}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut answer))
        .await
        .expect("the daemon answers and closes")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// The Slack messages the fake received.
fn sent(fake: &FakeSlack) -> usize {
    fake.requests_to("chat.postMessage").len()
}

/// SEC-05: with a public URL (or a listen address) off loopback and no admin token, `run`
/// refuses to start and says which token to set; the shipped environment example does not
/// start until its placeholder token is replaced, and then does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_05_a_daemon_reachable_from_beyond_loopback_needs_an_admin_token() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    for args in [
        &[
            "--listen",
            "127.0.0.1:0",
            "--public-url",
            "https://ops.example.com",
        ][..],
        &["--listen", "0.0.0.0:0"][..],
    ] {
        let said = refuses_to_start(repo.path(), args, &[("SUPPORTOPSD_READ_TOKEN", READ)]).await;
        assert!(
            said.contains("without an admin token")
                && said.contains("SUPPORTOPSD_ADMIN_TOKEN")
                && said.contains("admin.token"),
            "{args:?}: {said}"
        );
    }

    // The shipped environment file, as an operator installs it.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/supportopsd.env.example"),
    )
    .unwrap();
    let shipped: Vec<(String, String)> = example
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let value = |name: &str| {
        shipped
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("the example sets {name}"))
    };
    let public = value("SUPPORTOPSD_PUBLIC_URL");
    assert!(!public.starts_with("http://127.0.0.1"), "{public}");
    let placeholder = value("SUPPORTOPSD_ADMIN_TOKEN");
    let env = [
        ("SUPPORTOPSD_PUBLIC_URL", public.as_str()),
        ("SUPPORTOPSD_ADMIN_TOKEN", placeholder.as_str()),
    ];
    let said = refuses_to_start(repo.path(), &["--listen", "127.0.0.1:0"], &env).await;
    assert!(
        said.contains("placeholder") && said.contains("SUPPORTOPSD_ADMIN_TOKEN"),
        "{said}"
    );
    assert!(!said.contains(&placeholder), "the token was echoed: {said}");
    let said = refuses_to_start(
        repo.path(),
        &["--listen", "127.0.0.1:0"],
        &[("SUPPORTOPSD_PUBLIC_URL", public.as_str())],
    )
    .await;
    assert!(said.contains("SUPPORTOPSD_ADMIN_TOKEN"), "{said}");
    // With a generated token in place of the placeholder, it serves — and only to that token.
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &[],
        &[
            ("SUPPORTOPSD_PUBLIC_URL", public.as_str()),
            ("SUPPORTOPSD_ADMIN_TOKEN", ADMIN),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let anonymous = client
        .get(format!("{}/api/status", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(status(&daemon).await["applied_revision"].is_string());
    daemon.kill().await;
}

/// SEC-05: in the tokenless loopback mode, a request addressed to another host (a web page
/// after DNS rebinding) is answered 421 and one relayed by a reverse proxy (`Forwarded`,
/// `X-Forwarded-For`) 403, although both arrive from 127.0.0.1 — and nothing they ask for
/// runs. The same request addressed to a loopback host, straight from a local client, is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_05_tokenless_mode_refuses_dns_rebinding_and_proxied_requests() {
    let (fake, _repo, _state, daemon, _client) = setup(&[]).await;
    let port = daemon.url.rsplit(':').next().unwrap().to_owned();
    let execute = serde_json::to_string(&slack_message("rebound")).unwrap();

    let (code, body) = raw(
        &daemon,
        &format!("GET /api/status HTTP/1.1\r\nhost: rebind.attacker.example:{port}"),
        "",
    )
    .await;
    assert_eq!(code, 421, "{body}");
    assert!(body.contains("DNS-rebinding"), "{body}");
    assert!(!body.contains("applied_revision"), "{body}");
    let (code, body) = raw(
        &daemon,
        &format!(
            "POST /api/integrations/slack-main/execute HTTP/1.1\r\nhost: rebind.attacker.example:{port}\r\ncontent-type: application/json"
        ),
        &execute,
    )
    .await;
    assert_eq!(code, 421, "{body}");

    for proxy in [
        "x-forwarded-for: 203.0.113.9",
        "forwarded: for=203.0.113.9;proto=https;host=ops.example.com",
    ] {
        let (code, body) = raw(
            &daemon,
            &format!("GET /api/status HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{proxy}"),
            "",
        )
        .await;
        assert_eq!(code, 403, "{proxy}: {body}");
        assert!(body.contains("SUPPORTOPSD_ADMIN_TOKEN"), "{body}");
        let (code, _) = raw(
            &daemon,
            &format!(
                "POST /api/integrations/slack-main/execute HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{proxy}\r\ncontent-type: application/json"
            ),
            &execute,
        )
        .await;
        assert_eq!(code, 403, "{proxy}");
        let (code, _) = raw(
            &daemon,
            &format!(
                "POST /api/sync HTTP/1.1\r\nhost: localhost:{port}\r\n{proxy}\r\ncontent-type: application/json"
            ),
            "{}",
        )
        .await;
        assert_eq!(code, 403, "{proxy}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sent(&fake), 0, "a refused request reached Slack");

    // A local client addressing a loopback host is served.
    let (code, body) = raw(
        &daemon,
        &format!("GET /api/status HTTP/1.1\r\nhost: 127.0.0.1:{port}"),
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = raw(
        &daemon,
        &format!("GET /api/status HTTP/1.1\r\nhost: localhost:{port}"),
        "",
    )
    .await;
    assert_eq!(code, 200);
    daemon.kill().await;
}

/// SEC-05 (CSRF): a web page in the operator's browser can post `text/plain` or a form to the
/// daemon without asking first; every change must say `application/json`, so such a post to
/// `execute` (or `sync`, `pin`, `replay`) is answered 415 and nothing reaches the platform.
/// Sent as JSON, the same call runs — and is audited as tokenless loopback (SEC-16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_05_a_cross_site_text_plain_post_executes_nothing() {
    let (fake, repo, _state, daemon, client) = setup(&[]).await;
    let head = git2::Repository::open(repo.path())
        .unwrap()
        .head()
        .unwrap()
        .target()
        .unwrap()
        .to_string();
    let execute = serde_json::to_vec(&slack_message("csrf")).unwrap();
    for (path, body) in [
        ("/api/integrations/slack-main/execute", execute.clone()),
        ("/api/sync", b"{}".to_vec()),
        (
            "/api/pin",
            serde_json::to_vec(&json!({"revision": head})).unwrap(),
        ),
        ("/api/events/1/replay", Vec::new()),
    ] {
        for content_type in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            None,
        ] {
            let mut req = client
                .post(format!("{}{path}", daemon.url))
                .header("origin", "https://evil.example")
                .body(body.clone());
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 415, "{path} as {content_type:?}");
            let text = r.text().await.unwrap();
            assert!(text.contains("application/json"), "{text}");
        }
    }
    let r = client
        .delete(format!("{}/api/pin", daemon.url))
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sent(&fake), 0, "a text/plain post reached Slack");
    assert!(status(&daemon).await["pinned"].is_null());

    // The operator's own JSON call goes through, and the audit says how it came in.
    let r = daemon
        .api(
            &client,
            reqwest::Method::POST,
            "/api/integrations/slack-main/execute",
        )
        .body(execute)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(sent(&fake), 1);
    let audit = daemon
        .get_json("/api/audit/logs?resource_type=integration&resource_id=slack-main")
        .await;
    let executed: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"]["type"] == "action_executed")
        .collect();
    assert_eq!(executed.len(), 1, "{audit}");
    assert_eq!(executed[0]["detail"]["token"], "loopback_without_token");
    assert!(
        executed[0]["detail"]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{audit}"
    );
    daemon.kill().await;
}

/// SEC-05: the read-only token reads every `GET` route (and the read commands of the CLI work
/// with it alone) but gets 403 on everything that changes something: `execute`, `test`,
/// `pin`, `unpin`, `replay`, `sync`. Nothing runs, nothing is pinned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_05_the_read_token_reads_everything_and_changes_nothing() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let head = git2::Repository::open(repo.path())
        .unwrap()
        .head()
        .unwrap()
        .target()
        .unwrap()
        .to_string();
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
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = client
            .request(method, format!("{}{path}", daemon.url))
            .bearer_auth(READ);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
    };
    for path in [
        "/api/status",
        "/api/integrations",
        "/api/integrations/slack-main",
        "/api/integrations/slack-main/health",
        "/api/integrations/slack-main/stats",
        "/api/rules",
        "/api/rules/zendesk-to-slack",
        "/api/events/dead",
        "/api/audit/logs",
        "/api/rollups",
        "/api/events/export",
    ] {
        let r = call(reqwest::Method::GET, path, None).await.unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
    }
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/api/integrations/slack-main/execute",
            Some(slack_message("read token")),
        ),
        (
            reqwest::Method::POST,
            "/api/integrations/slack-main/test",
            Some(json!({})),
        ),
        (
            reqwest::Method::POST,
            "/api/pin",
            Some(json!({"revision": head})),
        ),
        (reqwest::Method::DELETE, "/api/pin", Some(json!({}))),
        (
            reqwest::Method::POST,
            "/api/events/1/replay",
            Some(json!({})),
        ),
        (reqwest::Method::POST, "/api/sync", Some(json!({}))),
    ] {
        let r = call(method.clone(), path, body).await.unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
        let text = r.text().await.unwrap();
        assert!(text.contains("admin token"), "{text}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sent(&fake), 0, "the read token ran an action");
    let s = status(&daemon).await;
    assert!(s["pinned"].is_null(), "{s}");
    assert_eq!(s["applied_revision"], head.as_str());

    // The CLI's read commands use the read token when there is no admin token; its changes
    // do not.
    let env = [("SUPPORTOPSD_READ_TOKEN", READ)];
    let out = repo.run_with(&["status", "--url", &daemon.url], &env, None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&head[..12]), "{}", out.stdout);
    let out = repo.run_with(&["events", "dead", "--url", &daemon.url], &env, None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = repo.run_with(&["sync", "--url", &daemon.url], &env, None);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("SUPPORTOPSD_ADMIN_TOKEN"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(READ), "{}", out.stderr);
    // The admin token still does everything.
    let out = repo.run_with(
        &["sync", "--url", &daemon.url],
        &[("SUPPORTOPSD_ADMIN_TOKEN", ADMIN)],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    daemon.kill().await;
}

/// A rule nobody reviewed: it sends every Zendesk ticket to a channel of the author's choice.
const EXFIL_RULE: &str = r##"id = "exfil"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#attacker"
message = "{{ ticket.subject }} {{ requester.email }}"
"##;

/// Commits `rules/exfil.toml` on top of HEAD to `refs/heads/{branch}`, without touching HEAD or
/// the working tree: a pushed branch nobody merged. Its commit id.
fn unmerged_branch(repo: &Path, branch: &str) -> String {
    let git = git2::Repository::open(repo).unwrap();
    let head = git.head().unwrap().peel_to_commit().unwrap();
    let tree = head.tree().unwrap();
    let rules = tree
        .get_name("rules")
        .unwrap()
        .to_object(&git)
        .unwrap()
        .peel_to_tree()
        .unwrap();
    let blob = git.blob(EXFIL_RULE.as_bytes()).unwrap();
    let mut rules = git.treebuilder(Some(&rules)).unwrap();
    rules.insert("exfil.toml", blob, 0o100_644).unwrap();
    let rules = rules.write().unwrap();
    let mut top = git.treebuilder(Some(&tree)).unwrap();
    top.insert("rules", rules, 0o040_000).unwrap();
    let tree = git.find_tree(top.write().unwrap()).unwrap();
    let sig = git2::Signature::now("attacker", "attacker@example.invalid").unwrap();
    git.commit(
        Some(&format!("refs/heads/{branch}")),
        &sig,
        &sig,
        "unreviewed",
        &tree,
        &[&head],
    )
    .unwrap()
    .to_string()
}

/// Pins `revision` as the admin; the status and body.
async fn pin(daemon: &Daemon, revision: &str) -> (u16, Value) {
    let r = daemon
        .api(&reqwest::Client::new(), reqwest::Method::POST, "/api/pin")
        .json(&json!({"revision": revision, "reason": "incident"}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Asserts that the daemon still runs `head`, unpinned, without the unreviewed rule.
async fn still_on(daemon: &Daemon, head: &str) {
    let s = status(daemon).await;
    assert_eq!(s["applied_revision"], head, "{s}");
    assert!(s["pinned"].is_null(), "{s}");
    let rules = daemon.get_json("/api/rules").await;
    assert!(
        rules["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != "exfil"),
        "{rules}"
    );
}

/// SEC-06: `pin` of a branch nobody merged (by name or by commit) is refused with 422 and the
/// reason, through the API and the CLI; the applied revision does not change and the
/// unreviewed rule never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_06_a_pin_of_an_unmerged_branch_is_refused() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let head = git2::Repository::open(repo.path())
        .unwrap()
        .head()
        .unwrap()
        .target()
        .unwrap()
        .to_string();
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &[],
        &[("SUPPORTOPSD_ADMIN_TOKEN", ADMIN)],
    )
    .await;
    let evil = unmerged_branch(repo.path(), "evil");
    for revision in ["evil", evil.as_str(), &evil[..12]] {
        let (code, v) = pin(&daemon, revision).await;
        assert_eq!(code, 422, "{revision}: {v}");
        let why = v["error"].as_str().unwrap();
        assert!(
            why.contains("not on the followed branch HEAD") && why.contains("merge it first"),
            "{why}"
        );
    }
    still_on(&daemon, &head).await;
    let out = repo.run_with(
        &["pin", "evil", "--url", &daemon.url],
        &[("SUPPORTOPSD_ADMIN_TOKEN", ADMIN)],
        None,
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("not on the followed branch"),
        "{}",
        out.stderr
    );
    still_on(&daemon, &head).await;
    // The branch's own head is still pinnable.
    let (code, v) = pin(&daemon, "HEAD").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["pinned"], head.as_str());
    daemon.kill().await;
    // With no daemon, the CLI writes the pin into the state: the same rule holds.
    let out = repo.run(&[
        "--state",
        state.path().to_str().unwrap(),
        "pin",
        &evil,
        "--url",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("not on the followed branch"),
        "{}",
        out.stderr
    );
}

/// SEC-06, following a remote: the clone in the state holds the remote's other branches too,
/// and pinning one of them is refused all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_06_a_pin_of_a_remote_branch_nobody_merged_is_refused() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let origin = repo(&fake.base_url());
    let git = git2::Repository::open(origin.path()).unwrap();
    let head = git.head().unwrap();
    let branch = head.shorthand().unwrap().to_owned();
    let first = head.target().unwrap().to_string();
    let evil = unmerged_branch(origin.path(), "evil");
    let url = format!("file://{}", origin.path().display());
    let state = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn_with_env(
        elsewhere.path(),
        state.path(),
        &["--remote", &url, "--branch", &branch],
        &[("SUPPORTOPSD_ADMIN_TOKEN", ADMIN)],
    )
    .await;
    for revision in ["evil", evil.as_str()] {
        let (code, v) = pin(&daemon, revision).await;
        // 422 when the clone has the branch; 400 (unknown revision) if it only holds the
        // followed one. Never 200.
        assert!(code == 422 || code == 400, "{revision}: {code} {v}");
    }
    still_on(&daemon, &first).await;
    daemon.kill().await;
}

/// SEC-16: the audit records of `execute`, `pin`, `unpin`, `replay` and `sync` name the caller
/// — the peer address and which token let them in (admin, the git host's signature) — and
/// never the token itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_16_the_audit_names_who_executed_pinned_replayed_and_synced() {
    use hmac::{Hmac, KeyInit, Mac};
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &["--retry-schedule", "1s,1s"],
        &[
            ("SUPPORTOPSD_ADMIN_TOKEN", ADMIN),
            ("SUPPORTOPSD_READ_TOKEN", READ),
            ("SUPPORTOPSD_SYNC_SECRET", PUSH_SECRET),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let admin = |method: reqwest::Method, path: &str| daemon.api(&client, method, path);

    // execute
    let r = admin(
        reqwest::Method::POST,
        "/api/integrations/slack-main/execute",
    )
    .json(&slack_message("by the admin"))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    // pin, unpin
    let (code, v) = pin(&daemon, "HEAD").await;
    assert_eq!(code, 200, "{v}");
    let r = admin(reqwest::Method::DELETE, "/api/pin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // sync, by the admin and by the git host's signed push webhook
    let r = admin(reqwest::Method::POST, "/api/sync")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let push = br#"{"ref":"refs/heads/main"}"#;
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(PUSH_SECRET.as_bytes()).unwrap();
    mac.update(push);
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let r = client
        .post(format!("{}/api/sync", daemon.url))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", format!("sha256={signature}"))
        .body(push.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // replay: a job dead-lettered (a 5xx on a message: outcome unknown, not retried)
    fake.fail_next("chat.postMessage", Failure::ServerError, 1);
    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_ticket(1, "Doomed"), "inv-1").await,
        200
    );
    let mut dead = Value::Null;
    for _ in 0..300 {
        dead = daemon.get_json("/api/events/dead").await;
        if dead["dead"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = dead["dead"][0]["job"]["id"]
        .as_u64()
        .expect("a dead letter");
    let r = admin(reqwest::Method::POST, &format!("/api/events/{id}/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let r = admin(reqwest::Method::GET, "/api/audit/logs?limit=1000")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    for secret in [ADMIN, READ, PUSH_SECRET] {
        assert!(
            !text.contains(secret),
            "a token is in the audit log: {text}"
        );
    }
    let audit: Value = serde_json::from_str(&text).unwrap();
    let of = |kind: &str| -> Vec<Value> {
        audit["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"]["type"] == kind)
            .map(|r| r["detail"].clone())
            .collect()
    };
    let by_loopback = |d: &Value| {
        d["by"] == "operator api"
            && d["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:"))
    };
    for kind in ["action_executed", "pinned", "unpinned", "job_replayed"] {
        let records = of(kind);
        assert_eq!(records.len(), 1, "{kind}: {audit}");
        assert!(by_loopback(&records[0]), "{kind}: {}", records[0]);
        assert_eq!(records[0]["token"], "admin", "{kind}: {}", records[0]);
    }
    let syncs = of("sync_requested");
    assert_eq!(syncs.len(), 2, "{audit}");
    assert!(syncs.iter().all(by_loopback), "{syncs:?}");
    let mut tokens: Vec<&str> = syncs.iter().filter_map(|d| d["token"].as_str()).collect();
    tokens.sort_unstable();
    assert_eq!(tokens, ["admin", "sync_signature"]);
    daemon.kill().await;
}
