//! Attacks on a Notion subscription's verification token (boundary 4 of docs/security.md's security
//! model: the first comer does not own a Notion subscription), against the real daemon and the
//! fake Notion on loopback.
//!
//! SEC-04: Notion posts its verification token unsigned, once, to a predictable URL; the
//! daemon used to keep the first token that came as the signing key and report the
//! subscription verified. An attacker who posted first could then sign events that run rules.

use reqwest::Method;
use serde_json::{Value, json};

use supportopsd::manifest::IntegrationId;
use supportopsd::platforms::notion::fake::{self, FakeNotion};
use supportopsd::secrets::{self, SealKey};

use crate::daemon_support::{Daemon, eventually};
use crate::support::TestRepo;

const NOTION_TOKEN: &str = "ntn_attack_token_value";
const ADMIN: &str = "notion-attack-admin-token";
const READ: &str = "notion-attack-read-token";
/// The token the attacker plants.
const PLANTED: &str = "secret_attacker_planted_token";
const ID: &str = "notion-main";

/// A signed `page.created` the attacker forges with `token`.
fn forged_event(n: u32) -> Vec<u8> {
    format!(
        r#"{{"id":"forged-{n}","type":"page.created","timestamp":"2026-01-01T00:00:00.000Z","entity":{{"id":"1111111111111111111111111111111{n}","type":"page"}},"authors":[{{"id":"{}","type":"person"}}],"data":{{"parent":{{"id":"22222222222222222222222222222222","type":"database"}}}}}}"#,
        fake::PERSON_ID
    )
    .into_bytes()
}

struct Setup {
    fake: FakeNotion,
    daemon: Daemon,
    client: reqwest::Client,
    hook: String,
    _state: tempfile::TempDir,
    repo: TestRepo,
}

async fn setup() -> Setup {
    let fake = FakeNotion::start(NOTION_TOKEN).await;
    let state = tempfile::tempdir().unwrap();
    let key = SealKey::generate().unwrap();
    let key_path = state.path().join("supportopsd.key");
    std::fs::write(&key_path, format!("{}\n", &*key.to_base64())).unwrap();
    let id = IntegrationId::parse(ID).unwrap();
    let sealed = secrets::seal(&key, &id, "token", NOTION_TOKEN.as_bytes()).unwrap();
    let repo = TestRepo::new();
    repo.file(
        "integrations/notion.toml",
        &format!(
            r#"id = "{ID}"
platform = "notion"
[credentials]
token = {{ sealed = "{sealed}" }}
[config]
notion_version = "2025-09-03"
[webhook]
events = ["page.created"]
[endpoint]
base_url = "{}"
"#,
            fake.base_url()
        ),
    )
    .file(
        "rules/notion-ack.toml",
        &format!(
            r#"id = "notion-ack"
[trigger]
integration = "{ID}"
event = "page.created"
[[actions]]
integration = "{ID}"
action = "add_comment"
[actions.parameters]
page_id = "{{{{ page.id }}}}"
text = "seen"
"#
        ),
    );
    repo.commit("notion");
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &["--key-file", key_path.to_str().unwrap()],
        &[
            ("SUPPORTOPSD_ADMIN_TOKEN", ADMIN),
            ("SUPPORTOPSD_READ_TOKEN", READ),
        ],
    )
    .await;
    let hook = format!("{}/api/webhooks/notion/{ID}", daemon.url);
    Setup {
        fake,
        daemon,
        client: reqwest::Client::new(),
        hook,
        _state: state,
        repo,
    }
}

impl Setup {
    /// An operator API call with `token` (a JSON body on a change).
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.daemon.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(ADMIN, method, path, body).await
    }

    async fn verification(&self) -> Value {
        let (code, v) = self
            .admin(
                Method::GET,
                &format!("/api/integrations/{ID}/notion/verification"),
                None,
            )
            .await;
        assert_eq!(code, 200, "{v}");
        v
    }

    /// The attacker's unsigned verification request.
    async fn plant(&self, token: &str) -> u16 {
        self.client
            .post(&self.hook)
            .header("content-type", "application/json")
            .body(json!({ "verification_token": token }).to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// An event signed with `token`.
    async fn signed(&self, token: &str, body: &[u8]) -> u16 {
        self.client
            .post(&self.hook)
            .header("content-type", "application/json")
            .header("x-notion-signature", fake::signature(token, body))
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn sync_reason(&self) -> String {
        let (code, v) = self.admin(Method::GET, "/api/status", None).await;
        assert_eq!(code, 200);
        v["integrations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == ID)
            .map(|i| i["sync"]["reason"].as_str().unwrap_or("").to_owned())
            .unwrap_or_default()
    }

    async fn events_accepted(&self) -> usize {
        let (code, v) = self
            .admin(Method::GET, "/api/audit/logs?resource_type=event", None)
            .await;
        assert_eq!(code, 200);
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"]["type"] == "event_accepted" || r["type"] == "event_accepted")
            .count()
    }
}

/// SEC-04: a verification token that arrives while no operator expects one is refused like a
/// forged delivery and leaves nothing behind; the read-only token can neither open a window nor
/// see tokens.
#[tokio::test]
async fn sec_04_a_token_planted_before_any_window_is_refused_and_not_kept() {
    let s = setup().await;
    eventually(30, "the first pass", || {
        s.fake.requests().iter().any(|r| r.path == "/v1/users/me")
    })
    .await;
    assert_eq!(
        s.plant(PLANTED).await,
        401,
        "no window: like a bad signature"
    );
    let v = s.verification().await;
    assert_eq!(v["tokens"], json!([]), "{v}");
    assert_eq!(v["window_open"], false, "{v}");
    // The planted token is no key: events signed with it are refused.
    assert_eq!(s.signed(PLANTED, &forged_event(1)).await, 401);
    assert!(!s.sync_reason().await.starts_with("verified"));
    // The read-only token opens no window and sees no tokens.
    let read_open = s
        .call(
            READ,
            Method::POST,
            &format!("/api/integrations/{ID}/notion/expect-verification"),
            Some(json!({})),
        )
        .await;
    assert_eq!(read_open.0, 403, "{}", read_open.1);
    assert_eq!(s.plant(PLANTED).await, 401, "the read token opened nothing");
    let read_view = s
        .call(
            READ,
            Method::GET,
            &format!("/api/integrations/{ID}/notion/verification"),
            None,
        )
        .await;
    assert_eq!(read_view.0, 403, "{}", read_view.1);
    // The refusal is audited with its reason, never the token.
    let (_, audit) = s
        .admin(
            Method::GET,
            "/api/audit/logs?resource_type=integration",
            None,
        )
        .await;
    let text = audit.to_string();
    assert!(text.contains("no_verification_window"), "{text}");
    assert!(!text.contains(PLANTED), "{text}");
    s.daemon.terminate().await;
}

/// SEC-04: inside a window both the attacker's and Notion's tokens are kept and shown (to the
/// admin token only); nothing verifies until the operator confirms one, the attacker's token
/// stays refused after the genuine one is confirmed, and a reset starts over.
#[tokio::test]
async fn sec_04_every_token_in_a_window_is_shown_and_only_the_confirmed_one_verifies() {
    let s = setup().await;
    let path = |verb: &str| format!("/api/integrations/{ID}/notion/{verb}");
    let (code, v) = s
        .admin(
            Method::POST,
            &path("expect-verification"),
            Some(json!({"minutes": 61})),
        )
        .await;
    assert_eq!(code, 400, "a window is at most an hour: {v}");
    let (code, v) = s
        .admin(
            Method::POST,
            &path("expect-verification"),
            Some(json!({"minutes": 5})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    // The attacker races Notion; both get in.
    assert_eq!(s.plant(PLANTED).await, 200);
    let (sub, status) = s
        .fake
        .create_subscription(&s.hook, &["page.created"], "2025-09-03")
        .await;
    assert_eq!(status, 200);
    let genuine = s.fake.subscriptions()[0].token.clone();
    let v = s.verification().await;
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{v}");
    let shown: Vec<&str> = tokens
        .iter()
        .map(|t| t["verification_token"].as_str().unwrap())
        .collect();
    assert_eq!(shown, [PLANTED, genuine.as_str()], "{v}");
    for t in tokens {
        assert!(t["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{t}");
        assert!(t["received_ms"].as_u64().unwrap() > 0, "{t}");
        assert_eq!(t["confirmed"], false);
    }
    assert_eq!(v["verified"], false);
    let reason = s.sync_reason().await;
    assert!(
        reason.starts_with("waiting for confirmation: 2 token(s) received"),
        "{reason}"
    );
    // The admin's status lists them; the read-only token sees none, anywhere.
    let (_, admin_status) = s.admin(Method::GET, "/api/status", None).await;
    assert!(admin_status.to_string().contains(PLANTED));
    for route in [
        "/api/status".to_owned(),
        format!("/api/integrations/{ID}"),
        "/api/integrations".to_owned(),
        "/api/audit/logs".to_owned(),
    ] {
        let (code, body) = s.call(READ, Method::GET, &route, None).await;
        assert_eq!(code, 200, "{route}");
        let text = body.to_string();
        assert!(
            !text.contains(PLANTED) && !text.contains(&genuine),
            "{route}: {text}"
        );
    }
    // Before confirmation every signed event is refused and nothing is stored: the
    // attacker's and even Notion's.
    assert!(s.fake.verify_subscription(&sub, &genuine));
    assert_eq!(s.signed(PLANTED, &forged_event(2)).await, 401);
    let rows = s.fake.add_rows(2);
    assert_eq!(
        s.fake
            .deliver(&sub, "page.created", &rows[0], fake::PERSON_ID)
            .await,
        Some(401)
    );
    assert_eq!(s.events_accepted().await, 0);
    assert!(!s.sync_reason().await.starts_with("verified"));
    // A new revision rebuilds the verification keys: an unconfirmed token is still none.
    s.repo
        .file("NOTES.md", "a commit that reloads\n")
        .commit("notes");
    let (code, v) = s.admin(Method::POST, "/api/sync", Some(json!({}))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(s.signed(PLANTED, &forged_event(4)).await, 401);
    assert_eq!(s.events_accepted().await, 0);
    assert!(!s.sync_reason().await.starts_with("verified"));
    // Confirming an unknown token is refused and changes nothing.
    let (code, _) = s
        .admin(
            Method::POST,
            &path("confirm-verification"),
            Some(json!({"token_id": 9})),
        )
        .await;
    assert_eq!(code, 400);
    // The operator confirms the one Notion shows (by its fingerprint).
    let fingerprint = tokens
        .iter()
        .find(|t| t["verification_token"] == genuine.as_str())
        .unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, v) = s
        .admin(
            Method::POST,
            &path("confirm-verification"),
            Some(json!({ "fingerprint": fingerprint })),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["confirmed_token_id"], 2);
    // The attacker's token is still refused; Notion's events now run.
    assert_eq!(s.signed(PLANTED, &forged_event(3)).await, 401);
    assert_eq!(
        s.fake
            .deliver(&sub, "page.created", &rows[1], fake::PERSON_ID)
            .await,
        Some(200)
    );
    assert_eq!(s.events_accepted().await, 1);
    let reason = s.sync_reason().await;
    assert!(
        reason.starts_with("verified: the operator confirmed token 2"),
        "{reason}"
    );
    // Once verified, no new token is kept without a window.
    assert_eq!(s.plant("secret_second_attempt").await, 401);
    // An admin may open one to replace the token (issue 16 item 10: "Resend token"); the
    // confirmed token keeps verifying until another is confirmed.
    let (code, _) = s
        .admin(Method::POST, &path("expect-verification"), Some(json!({})))
        .await;
    assert_eq!(code, 200);
    assert_eq!(s.plant("secret_second_attempt").await, 200);
    assert_eq!(
        s.fake
            .deliver(&sub, "page.created", &rows[1], fake::PERSON_ID)
            .await,
        Some(200)
    );
    let reason = s.sync_reason().await;
    assert!(reason.contains("being replaced"), "{reason}");
    // Every step is audited with the caller, never with a token.
    let (_, audit) = s
        .admin(
            Method::GET,
            "/api/audit/logs?resource_type=integration",
            None,
        )
        .await;
    let text = audit.to_string();
    for kind in [
        "notion_verification_expected",
        "verification_token_captured",
        "notion_verification_confirmed",
    ] {
        assert!(text.contains(kind), "{kind}: {text}");
    }
    assert!(text.contains("\"token\":\"admin\""), "{text}");
    assert!(
        !text.contains(PLANTED) && !text.contains(&genuine),
        "{text}"
    );

    // The read-only token cannot reset; the admin can, and everything is forgotten.
    let (code, _) = s
        .call(
            READ,
            Method::POST,
            &path("reset-verification"),
            Some(json!({})),
        )
        .await;
    assert_eq!(code, 403);
    let (code, v) = s
        .admin(Method::POST, &path("reset-verification"), Some(json!({})))
        .await;
    assert_eq!(code, 200, "{v}");
    let v = s.verification().await;
    assert_eq!(v["tokens"], json!([]), "{v}");
    assert_eq!(v["verified"], false);
    assert_eq!(
        s.fake
            .deliver(&sub, "page.created", &rows[0], fake::PERSON_ID)
            .await,
        Some(401),
        "after a reset the old token verifies nothing"
    );
    assert!(!s.sync_reason().await.starts_with("verified"));
    assert_eq!(s.plant(PLANTED).await, 401, "a reset opens no window");
    let (_, audit) = s
        .admin(
            Method::GET,
            "/api/audit/logs?resource_type=integration",
            None,
        )
        .await;
    assert!(audit.to_string().contains("notion_verification_reset"));
    s.daemon.terminate().await;
}

/// Runs `supportopsd ARGS --url <daemon>` with `token` as the admin token, or as the read-only
/// token when `admin` is false: (success, stdout, stderr).
async fn cli(s: &Setup, token: &str, admin: bool, args: &[&str]) -> (bool, String, String) {
    let var = if admin {
        "SUPPORTOPSD_ADMIN_TOKEN"
    } else {
        "SUPPORTOPSD_READ_TOKEN"
    };
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .args(args)
        .args(["--url", &s.daemon.url])
        .env_remove("SUPPORTOPSD_ADMIN_TOKEN")
        .env_remove("SUPPORTOPSD_READ_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("SUPPORTOPSD_URL")
        .env(var, token)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// SEC-04 through the command line: `supportopsd notion expect-verification`, `verification`,
/// `confirm-verification` and `reset-verification` need the admin token; `status` shows the
/// received tokens to the admin token only.
#[tokio::test]
async fn sec_04_the_notion_commands_open_list_confirm_and_reset() {
    let s = setup().await;
    let (ok, _, err) = cli(&s, READ, false, &["notion", "expect-verification", ID]).await;
    assert!(!ok, "the read-only token opens no window");
    assert!(err.contains("admin token"), "{err}");
    assert_eq!(s.plant(PLANTED).await, 401);
    let (ok, out, err) = cli(
        &s,
        ADMIN,
        true,
        &["notion", "expect-verification", ID, "--minutes", "5"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("open for 5 minute(s)"), "{out}");
    assert_eq!(s.plant(PLANTED).await, 200);
    let (_, status) = s
        .fake
        .create_subscription(&s.hook, &["page.created"], "2025-09-03")
        .await;
    assert_eq!(status, 200);
    let genuine = s.fake.subscriptions()[0].token.clone();
    let (ok, out, err) = cli(&s, ADMIN, true, &["notion", "verification", ID]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("waiting for confirmation: 2 token(s) received"),
        "{out}"
    );
    assert!(out.contains(&format!("token 1: {PLANTED}")), "{out}");
    assert!(out.contains(&format!("token 2: {genuine}")), "{out}");
    let (ok, out, _) = cli(&s, ADMIN, true, &["status"]).await;
    assert!(ok);
    assert!(out.contains(&genuine) && out.contains(PLANTED), "{out}");
    let (ok, out, _) = cli(&s, READ, false, &["status"]).await;
    assert!(ok);
    assert!(!out.contains(&genuine) && !out.contains(PLANTED), "{out}");
    let (ok, _, err) = cli(&s, READ, false, &["notion", "verification", ID]).await;
    assert!(!ok && err.contains("403"), "{err}");
    let (ok, out, err) = cli(
        &s,
        ADMIN,
        true,
        &["notion", "confirm-verification", ID, "2"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("Token 2"), "{out}");
    assert!(s.sync_reason().await.starts_with("verified"));
    let (ok, _, err) = cli(&s, ADMIN, true, &["notion", "reset-verification", ID]).await;
    assert!(ok, "{err}");
    assert_eq!(s.verification().await["tokens"], json!([]));
    assert!(!s.sync_reason().await.starts_with("verified"));
    s.daemon.terminate().await;
}
