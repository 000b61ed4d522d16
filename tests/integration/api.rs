//! The operator API of a spawned daemon: integrations (list, one, health, stats), the `test`
//! and `execute` verbs against the fake Zendesk and the fake Slack, rules, the admin token,
//! 404s, 405s on writes, 413, classified failures, and no secret in any answer.

use std::time::Duration;

use serde_json::{Value, json};
use supportopsd::platforms::fakekit::Failure;
use supportopsd::platforms::slack::fake::FakeSlack;
use supportopsd::platforms::zendesk::fake::{AGENT_EMAIL, FakeZendesk, sign};

use crate::daemon_support::*;
use crate::support::TestRepo;

const ZD_TOKEN: &str = "zd-api-token";
const ADMIN: &str = "admin-token-for-the-api-test";

fn repo(zendesk: &str, slack: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.file(
        "integrations/zendesk.toml",
        &format!(
            r#"id = "zendesk-main"
platform = "zendesk"
name = "Zendesk (Acme)"
[credentials]
subdomain = "acme"
email = "{AGENT_EMAIL}"
api_token = {{ env = "ZD_TOKEN" }}
[webhook]
events = ["ticket.created"]
[endpoint]
base_url = "{zendesk}"
[limits]
requests_per_minute = 6000
"#
        ),
    )
    .file(
        "integrations/slack.toml",
        &format!(
            r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = {{ env = "SLACK_BOT_TOKEN" }}
signing_secret = {{ env = "SLACK_SIGNING_SECRET" }}
[endpoint]
base_url = "{slack}"
[limits]
requests_per_minute = 6000
"#
        ),
    )
    .file(
        "rules/zendesk-to-nowhere.toml",
        r##"id = "zendesk-to-nowhere"
name = "Announce new tickets"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#no-such-channel"
message = "New: {{ ticket.subject }}"
"##,
    )
    .file(
        "rules/disabled.toml",
        r##"id = "disabled-rule"
enabled = false
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[[actions]]
integration = "zendesk-main"
action = "add_tags"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
tags = ["seen"]
"##,
    );
    repo.commit("initial");
    repo
}

/// Every answer of the test, to check for secrets at the end.
struct Api {
    client: reqwest::Client,
    url: String,
    /// What `get` and `post` send as the bearer token (`None` for a tokenless daemon: a token
    /// it does not know is refused).
    token: Option<&'static str>,
    bodies: Vec<String>,
}

impl Api {
    async fn call(
        &mut self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .timeout(Duration::from_secs(60));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        self.bodies.push(text.clone());
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }

    async fn get(&mut self, path: &str) -> (u16, Value) {
        let (s, v, _) = self
            .call(reqwest::Method::GET, path, self.token, None)
            .await;
        (s, v)
    }

    async fn post(&mut self, path: &str, body: Value) -> (u16, Value) {
        let (s, v, _) = self
            .call(
                reqwest::Method::POST,
                path,
                self.token,
                Some(serde_json::to_vec(&body).unwrap()),
            )
            .await;
        (s, v)
    }

    async fn execute(&mut self, id: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/api/integrations/{id}/execute"), body)
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_api_shows_and_drives_integrations_and_rules() {
    let zendesk = FakeZendesk::start(AGENT_EMAIL, ZD_TOKEN, None).await;
    let slack = FakeSlack::start(BOT_TOKEN, None).await;
    let ticket = zendesk.add_ticket(json!({"subject": "Printer on fire", "tags": ["vip"]}));
    let repo = repo(&zendesk.base_url(), &slack.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &[],
        &[("SUPPORTOPSD_ADMIN_TOKEN", ADMIN)],
    )
    .await;
    let mut api = Api {
        client: reqwest::Client::new(),
        url: daemon.url.clone(),
        token: Some(ADMIN),
        bodies: Vec::new(),
    };

    // Without the token (or with a wrong one) nothing of the API answers.
    for (method, path) in [
        (reqwest::Method::GET, "/api/integrations"),
        (reqwest::Method::GET, "/api/integrations/zendesk-main"),
        (
            reqwest::Method::GET,
            "/api/integrations/zendesk-main/health",
        ),
        (reqwest::Method::GET, "/api/integrations/zendesk-main/stats"),
        (reqwest::Method::POST, "/api/integrations/zendesk-main/test"),
        (
            reqwest::Method::POST,
            "/api/integrations/zendesk-main/execute",
        ),
        (reqwest::Method::GET, "/api/rules"),
        (reqwest::Method::GET, "/api/rules/zendesk-to-nowhere"),
    ] {
        for token in [None, Some("wrong-token")] {
            let (status, _, _) = api.call(method.clone(), path, token, None).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}");
        }
    }
    assert!(
        zendesk
            .requests_to("PUT", &format!("/api/v2/tickets/{ticket}/tags"))
            .is_empty()
    );

    // The reconciler registers the Zendesk webhook; the list shows it, secrets hidden.
    let mut listed = Value::Null;
    for _ in 0..600 {
        let (status, v) = api.get("/api/integrations").await;
        assert_eq!(status, 200, "{v}");
        if v["integrations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == "zendesk-main" && !i["registration"].is_null())
        {
            listed = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = listed["integrations"]
        .as_array()
        .expect("registered in time");
    assert_eq!(list.len(), 2, "{listed}");
    assert!(listed["applied_revision"].is_string(), "{listed}");
    let zd = list.iter().find(|i| i["id"] == "zendesk-main").unwrap();
    assert_eq!(zd["platform"], "zendesk");
    assert_eq!(zd["name"], "Zendesk (Acme)");
    assert_eq!(
        zd["configuration"]["credentials"]["api_token"],
        "(sensitive)"
    );
    assert_eq!(zd["configuration"]["credentials"]["subdomain"], "acme");
    assert_eq!(
        zd["configuration"]["webhook"]["events"],
        json!(["ticket.created"])
    );
    assert!(zd["health"]["status"].is_string(), "{zd}");
    assert!(zd["sync"]["reason"].is_string(), "{zd}");
    assert!(
        zd["registration"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/api/webhooks/zendesk/zendesk-main"),
        "{zd}"
    );
    let sl = list.iter().find(|i| i["id"] == "slack-main").unwrap();
    assert_eq!(
        sl["configuration"]["credentials"]["bot_token"],
        "(sensitive)"
    );
    assert_eq!(
        sl["configuration"]["credentials"]["signing_secret"],
        "(sensitive)"
    );

    // One integration, its health; unknown ids are 404 everywhere.
    let (status, one) = api.get("/api/integrations/zendesk-main").await;
    assert_eq!((status, &one["id"]), (200, &json!("zendesk-main")), "{one}");
    for path in [
        "/api/integrations/nope",
        "/api/integrations/nope/health",
        "/api/integrations/nope/stats",
        "/api/integrations/Not%20An%20Id",
        "/api/rules/nope",
    ] {
        let (status, v) = api.get(path).await;
        assert_eq!(status, 404, "{path}: {v}");
    }
    for path in [
        "/api/integrations/nope/test",
        "/api/integrations/nope/execute",
    ] {
        let (status, v) = api.post(path, json!({"action": "add_tags"})).await;
        assert_eq!(status, 404, "{path}: {v}");
    }

    // A connection check now: recorded, returned, visible in /health.
    let checks = zendesk.requests_to("GET", "/api/v2/users/me").len();
    let (status, tested) = api
        .post("/api/integrations/zendesk-main/test", json!({}))
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["healthy"], true, "{tested}");
    assert_eq!(tested["health"]["status"], "healthy", "{tested}");
    assert!(zendesk.requests_to("GET", "/api/v2/users/me").len() > checks);
    let (status, health) = api.get("/api/integrations/zendesk-main/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["health"]["status"], "healthy", "{health}");
    assert_eq!(health["health"]["consecutive_failures"], 0, "{health}");

    // Execute: an action now, at the fake, audited.
    let (status, done) = api
        .execute(
            "zendesk-main",
            json!({"action": "add_tags", "parameters": {"ticket_id": ticket, "tags": ["from-api"]}}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["action"], "add_tags");
    assert_eq!(
        zendesk.ticket(ticket).unwrap()["tags"],
        json!(["vip", "from-api"])
    );
    let (status, sent) = api
        .execute(
            "slack-main",
            json!({"action": "send_message", "parameters": {"channel": "#support", "message": "hello from the API"}}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(slack.requests_to("chat.postMessage").len(), 1);

    // Invalid requests are refused before anything is sent.
    let tag_calls = || {
        zendesk
            .requests_to("PUT", &format!("/api/v2/tickets/{ticket}/tags"))
            .len()
    };
    let before = tag_calls();
    for (body, says) in [
        (json!({"action": "set_fire"}), "no action `set_fire`"),
        (json!({"parameters": {}}), "the body must be"),
        (
            json!({"action": "add_tags", "parameters": {"tags": ["x"]}}),
            "`ticket_id`",
        ),
        (
            json!({"action": "add_tags", "parameters": {"ticket_id": ticket, "tags": "x"}}),
            "`tags`",
        ),
        (
            json!({"action": "add_tags", "parameters": {"ticket_id": ticket, "tags": ["x"], "colour": "red"}}),
            "no parameter `colour`",
        ),
        (
            json!({"action": "add_tags", "parameters": ["not", "a", "table"]}),
            "`parameters` must be",
        ),
    ] {
        let (status, v) = api.execute("zendesk-main", body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        let message = v["error"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body}: {message}");
    }
    let (status, _, _) = api
        .call(
            reqwest::Method::POST,
            "/api/integrations/zendesk-main/execute",
            Some(ADMIN),
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_eq!(status, 400);
    let huge = serde_json::to_vec(&json!({"action": "add_tags", "parameters": {"ticket_id": ticket, "tags": ["x".repeat(70 * 1024)]}})).unwrap();
    let (status, v, _) = api
        .call(
            reqwest::Method::POST,
            "/api/integrations/zendesk-main/execute",
            Some(ADMIN),
            Some(huge),
        )
        .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(tag_calls(), before, "nothing invalid reached the platform");

    // Failures come back classified.
    zendesk.fail_next("PUT /api/v2/tickets/{id}/tags", Failure::ServerError, 1);
    let (status, failed) = api
        .execute(
            "zendesk-main",
            json!({"action": "add_tags", "parameters": {"ticket_id": ticket, "tags": ["x"]}}),
        )
        .await;
    assert_eq!(status, 502, "{failed}");
    assert_eq!(failed["error"]["kind"], "transient", "{failed}");
    assert_eq!(failed["error"]["retryable"], true, "{failed}");
    let (status, missing) = api
        .execute(
            "zendesk-main",
            json!({"action": "add_tags", "parameters": {"ticket_id": 987_654_321u64, "tags": ["x"]}}),
        )
        .await;
    assert_eq!(status, 502, "{missing}");
    assert_eq!(missing["error"]["kind"], "not_found", "{missing}");
    assert_eq!(missing["error"]["retryable"], false, "{missing}");
    zendesk.fail_next(
        "PUT /api/v2/tickets/{id}/tags",
        Failure::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    let (status, limited, headers) = api
        .call(
            reqwest::Method::POST,
            "/api/integrations/zendesk-main/execute",
            Some(ADMIN),
            Some(
                serde_json::to_vec(&json!({"action": "add_tags", "parameters": {"ticket_id": ticket, "tags": ["x"]}}))
                    .unwrap(),
            ),
        )
        .await;
    assert_eq!(status, 429, "{limited}");
    assert_eq!(limited["error"]["kind"], "rate_limited", "{limited}");
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    let (status, refused) = api
        .execute(
            "slack-main",
            json!({"action": "send_message", "parameters": {"channel": "#no-such-channel", "message": "x"}}),
        )
        .await;
    assert_eq!(status, 502, "{refused}");
    assert_eq!(refused["error"]["kind"], "not_found", "{refused}");

    // The audit log has every execution, failed ones with their reason.
    let (status, audit) = api
        .get("/api/audit/logs?resource_type=integration&resource_id=zendesk-main")
        .await;
    assert_eq!(status, 200);
    let executed: Vec<&Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"]["type"] == "action_executed")
        .collect();
    assert_eq!(executed.len(), 4, "{audit}");
    assert_eq!(
        executed
            .iter()
            .filter(|r| r["kind"]["error"].is_null())
            .count(),
        1,
        "{audit}"
    );

    // Events in: one stored (its rule's action fails for good: a dead letter on Slack), one
    // refused for a bad signature.
    let hook = zendesk.webhooks()[0]["id"].as_str().unwrap().to_owned();
    let secret = zendesk
        .secret_of(&hook)
        .expect("the webhook's signing secret");
    let body = zendesk_ticket(ticket, "Printer on fire");
    let ts = rfc3339(0);
    for (sig, invocation, expect) in [
        (sign(&secret, &ts, &body), "inv-api-1", 200),
        (sign("not-the-secret", &ts, &body), "inv-api-2", 401),
    ] {
        let status = api
            .client
            .post(format!("{}/api/webhooks/zendesk/zendesk-main", daemon.url))
            .header("content-type", "application/json")
            .header("x-zendesk-webhook-signature-timestamp", &ts)
            .header("x-zendesk-webhook-signature", sig)
            .header("x-zendesk-webhook-invocation-id", invocation)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, expect);
    }
    let mut slack_stats = Value::Null;
    for _ in 0..600 {
        let (status, v) = api.get("/api/integrations/slack-main/stats").await;
        assert_eq!(status, 200, "{v}");
        if v["dead_letters"] == 1 {
            slack_stats = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        slack_stats["dead_letters"], 1,
        "the rule's job dead-lettered in time"
    );
    assert_eq!(slack_stats["actions_succeeded"], 1, "{slack_stats}");
    assert_eq!(slack_stats["actions_failed"], 2, "{slack_stats}");
    let (status, zd_stats) = api.get("/api/integrations/zendesk-main/stats").await;
    assert_eq!(status, 200);
    assert_eq!(zd_stats["events_received"], 1, "{zd_stats}");
    assert_eq!(zd_stats["events_rejected"], 1, "{zd_stats}");
    assert_eq!(zd_stats["actions_succeeded"], 1, "{zd_stats}");
    assert_eq!(zd_stats["actions_failed"], 3, "{zd_stats}");
    assert_eq!(zd_stats["rate_limit_waits"], 1, "{zd_stats}");
    assert_eq!(zd_stats["dead_letters"], 0, "{zd_stats}");

    // Rules.
    let (status, rules) = api.get("/api/rules").await;
    assert_eq!(status, 200);
    let rules = rules["rules"].as_array().unwrap().clone();
    assert_eq!(rules.len(), 2);
    let r = rules
        .iter()
        .find(|r| r["id"] == "zendesk-to-nowhere")
        .unwrap();
    assert_eq!(r["name"], "Announce new tickets");
    assert_eq!(r["enabled"], true);
    assert_eq!(r["trigger"]["integration"], "zendesk-main");
    assert_eq!(r["trigger"]["event"], "ticket.created");
    assert_eq!(
        r["actions"],
        json!([{"integration": "slack-main", "platform": "slack", "action": "send_message"}])
    );
    let d = rules.iter().find(|r| r["id"] == "disabled-rule").unwrap();
    assert_eq!(d["enabled"], false);
    let (status, one) = api.get("/api/rules/zendesk-to-nowhere").await;
    assert_eq!(status, 200);
    assert_eq!(
        one["actions"][0]["parameters"]["channel"],
        "#no-such-channel"
    );

    // Writes belong in a pull request.
    for (method, path) in [
        (reqwest::Method::POST, "/api/integrations"),
        (reqwest::Method::PUT, "/api/integrations/zendesk-main"),
        (reqwest::Method::DELETE, "/api/integrations/zendesk-main"),
        (reqwest::Method::PATCH, "/api/integrations/zendesk-main"),
        (reqwest::Method::POST, "/api/rules"),
        (reqwest::Method::PUT, "/api/rules/zendesk-to-nowhere"),
        (reqwest::Method::DELETE, "/api/rules/zendesk-to-nowhere"),
    ] {
        let (status, v, _) = api.call(method.clone(), path, Some(ADMIN), None).await;
        assert_eq!(status, 405, "{method} {path}");
        assert!(v["error"].as_str().unwrap().contains("pull request"), "{v}");
    }

    // No secret in anything the API said.
    for body in &api.bodies {
        for secret in [ZD_TOKEN, BOT_TOKEN, SLACK_SIGNING, ADMIN, secret.as_str()] {
            assert!(!body.contains(secret), "a secret leaked: {body}");
        }
    }
    assert_eq!(zendesk.spec_errors(), Vec::<String>::new());
    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
}

/// Without an admin token the API answers loopback; an unreachable platform is degraded with
/// a reason, and an integration whose credential cannot be resolved cannot execute (409).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_integrations_are_tested_and_refused_in_words() {
    let repo = TestRepo::new();
    repo.file(
        "integrations/zendesk.toml",
        r#"id = "zendesk-down"
platform = "zendesk"
[credentials]
subdomain = "acme"
email = "ops@acme.example"
api_token = { env = "ZD_TOKEN" }
# Nothing listens here.
[endpoint]
base_url = "http://127.0.0.1:9"
"#,
    )
    .file(
        "integrations/freshdesk.toml",
        r#"id = "freshdesk-nokey"
platform = "freshdesk"
[credentials]
domain = "acme.freshdesk.com"
api_key = { env = "FD_TEST_UNSET_KEY" }
[endpoint]
base_url = "http://127.0.0.1:9"
"#,
    );
    repo.commit("initial");
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    let mut api = Api {
        client: reqwest::Client::new(),
        url: daemon.url.clone(),
        token: None,
        bodies: Vec::new(),
    };
    // Loopback without a token configured: served without one.
    let (status, v, _) = api
        .call(reqwest::Method::GET, "/api/integrations", None, None)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["integrations"].as_array().unwrap().len(), 2, "{v}");

    let (status, tested) = api
        .post("/api/integrations/zendesk-down/test", json!({}))
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["healthy"], false, "{tested}");
    assert_eq!(tested["health"]["status"], "degraded", "{tested}");
    assert!(
        tested["health"]["reason"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{tested}"
    );
    let (status, failed) = api
        .execute(
            "zendesk-down",
            json!({"action": "add_tags", "parameters": {"ticket_id": 1, "tags": ["x"]}}),
        )
        .await;
    assert_eq!(status, 502, "{failed}");
    // Nothing listens there: the request never left (safe to send again).
    assert_eq!(failed["error"]["kind"], "not_performed", "{failed}");

    let (status, tested) = api
        .post("/api/integrations/freshdesk-nokey/test", json!({}))
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["health"]["status"], "missing", "{tested}");
    let (status, refused) = api
        .execute(
            "freshdesk-nokey",
            json!({"action": "add_note", "parameters": {"ticket_id": 1, "body": "x"}}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("cannot run actions"),
        "{refused}"
    );
    let (status, one) = api.get("/api/integrations/freshdesk-nokey").await;
    assert_eq!(status, 200);
    assert!(one["connector_error"].is_string(), "{one}");
    assert_eq!(one["health"]["status"], "missing", "{one}");
    for body in &api.bodies {
        assert!(!body.contains("zd-api-token"), "a secret leaked: {body}");
    }
    let status = daemon.terminate().await;
    assert!(status.success(), "{status:?}");
}

/// Sums one field of every per-minute record `GET /api/rollups` answered.
fn rollup_sum(answer: &Value, integration: &str, path: &[&str]) -> u64 {
    answer["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["integration"] == integration)
        .map(|m| path.iter().fold(m, |v, k| &v[*k]).as_u64().unwrap_or(0))
        .sum()
}

/// Per-minute rollups survive a restart: what a first run counted (events by outcome, rule
/// matches, actions by outcome) and what the next run counts add up, read by range and
/// integration through `GET /api/rollups` and as the rates of `status`, while the in-memory
/// stats start again at zero. What audit retention removed is kept in the state too, and shown
/// by `status` and `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_and_retention_counts_survive_a_restart() {
    let slack = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = crate::daemon_support::repo(&slack.base_url());
    let state = tempfile::tempdir().unwrap();
    {
        // An audit log beyond its size bound, trimmed before this daemon's time.
        let store = supportopsd::state::Store::open(state.path()).unwrap();
        for i in 0..10u64 {
            store
                .append_audit(&supportopsd::state::AuditRecord {
                    at_ms: 1_000 + i,
                    kind: supportopsd::state::AuditKind::Pinned,
                    resource_type: "revision".into(),
                    resource_id: i.to_string(),
                    detail: json!({}),
                })
                .unwrap();
        }
        assert_eq!(store.purge_audit_over(4).unwrap(), 6);
        store.flush().unwrap();
    }
    let client = reqwest::Client::new();
    let started = supportopsd::runtime::now_ms();
    let bad_signature = |daemon: &Daemon| {
        client
            .post(format!("{}/api/webhooks/zendesk/zendesk-main", daemon.url))
            .header("content-type", "application/json")
            .header("x-zendesk-webhook-signature-timestamp", rfc3339(0))
            .header("x-zendesk-webhook-signature", "bm90IGEgc2lnbmF0dXJl")
            .body(zendesk_ticket(9, "forged"))
            .send()
    };
    async fn rollups_when(daemon: &Daemon, query: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..600 {
            let v = daemon.get_json(&format!("/api/rollups?{query}")).await;
            if done(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the rollups did not get there in time");
    }
    let sent = |v: &Value, n: u64| {
        rollup_sum(
            v,
            "slack-main",
            &["actions", "zendesk-to-slack", "send_message", "succeeded"],
        ) == n
    };

    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_ticket(1, "One"), "inv-1").await,
        200
    );
    // The same signed body again: a duplicate.
    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_ticket(1, "One"), "inv-1b").await,
        200
    );
    assert_eq!(bad_signature(&daemon).await.unwrap().status(), 401);
    let query = format!("since={started}");
    rollups_when(&daemon, &query, |v| sent(v, 1)).await;
    assert!(daemon.terminate().await.success());

    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_ticket(2, "Two"), "inv-2").await,
        200
    );
    let v = rollups_when(&daemon, &query, |v| sent(v, 2)).await;
    let zd = |path: &[&str]| rollup_sum(&v, "zendesk-main", path);
    assert_eq!(zd(&["events", "accepted"]), 2, "{v}");
    assert_eq!(zd(&["events", "duplicate"]), 1, "{v}");
    assert_eq!(zd(&["events", "rejected", "bad_signature"]), 1, "{v}");
    assert_eq!(zd(&["rules", "zendesk-to-slack"]), 2, "{v}");
    for m in v["minutes"].as_array().unwrap() {
        let at = m["minute_ms"].as_u64().unwrap();
        assert_eq!(at % 60_000, 0, "{m}");
        assert!(at + 60_000 > started, "{m}");
    }
    // This run's own counters started at zero; the rollups did not.
    let stats = daemon
        .get_json("/api/integrations/zendesk-main/stats")
        .await;
    assert_eq!(stats["events_received"], 1, "{stats}");

    // One integration; a range with nothing in it; a bad bound.
    let slack_only = daemon
        .get_json(&format!("/api/rollups?{query}&integration=slack-main"))
        .await;
    let minutes = slack_only["minutes"].as_array().unwrap();
    assert!(!minutes.is_empty());
    assert!(
        minutes.iter().all(|m| m["integration"] == "slack-main"),
        "{slack_only}"
    );
    let later = started + 3_600_000;
    let empty = daemon
        .get_json(&format!(
            "/api/rollups?since={later}&until={}",
            later + 60_000
        ))
        .await;
    assert_eq!(empty["minutes"], json!([]), "{empty}");
    let r = daemon
        .api(
            &client,
            reqwest::Method::GET,
            "/api/rollups?since=yesterday",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // `status`: rates from the rollups, and what retention removed.
    let s = status(&daemon).await;
    let hour = &s["rates"]["last_hour"];
    assert_eq!(hour["events"]["accepted"], 2, "{s}");
    assert_eq!(hour["events"]["duplicate"], 1, "{s}");
    assert_eq!(hour["events"]["rejected"], 1, "{s}");
    assert_eq!(hour["rules_matched"], 2, "{s}");
    assert_eq!(hour["actions"]["succeeded"], 2, "{s}");
    assert_eq!(s["rates"]["last_24h"]["events"]["accepted"], 2, "{s}");
    assert_eq!(s["state"]["retention_removed"]["audit_records"], 6, "{s}");
    let metrics = client
        .get(format!("{}/metrics", daemon.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("supportopsd_retention_removed_total{kind=\"audit_records\"} 6"),
        "{metrics}"
    );
    let state_arg = state.path().to_str().unwrap();
    let out = repo.run(&["--state", state_arg, "status", "--url", &daemon.url]);
    let text = &out.stdout;
    assert_eq!(out.code, 0, "{text}{}", out.stderr);
    assert!(
        text.contains("last hour: 2 event(s) stored (0 matched no rule), 1 duplicate(s), 1 refused; 2 rule match(es); actions: 2 succeeded"),
        "{text}"
    );
    assert!(
        text.contains("retention removed: 6 audit record(s)"),
        "{text}"
    );
    assert!(daemon.terminate().await.success());
    // Without a daemon, `status` reads the same from the state.
    let out = repo.run(&[
        "--state",
        state_arg,
        "status",
        "--url",
        "http://127.0.0.1:9",
    ]);
    let text = &out.stdout;
    assert_eq!(out.code, 0, "{text}{}", out.stderr);
    assert!(text.contains("last 24 h: 2 event(s) stored"), "{text}");
    assert!(
        text.contains("retention removed: 6 audit record(s)"),
        "{text}"
    );
}

/// A `SIGKILL` loses only the counts the daemon had not written yet: what it counted more than
/// a write interval (10 s) before the kill is in the state when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_keeps_the_rollups_written_before_it() {
    let slack = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = crate::daemon_support::repo(&slack.base_url());
    let state = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let started = supportopsd::runtime::now_ms();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    assert_eq!(
        post_zendesk(&client, &daemon, zendesk_ticket(1, "One"), "inv-1").await,
        200
    );
    eventually(30, "the rule's message", || {
        slack.requests_to("chat.postMessage").len() == 1
    })
    .await;
    // Nothing reads the rollups (a read writes them): only the daemon's own writer does.
    tokio::time::sleep(supportopsd::runtime::stats::ROLLUP_WRITE_EVERY + Duration::from_secs(2))
        .await;
    daemon.kill().await;
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    let v = daemon
        .get_json(&format!("/api/rollups?since={started}"))
        .await;
    assert_eq!(
        rollup_sum(&v, "zendesk-main", &["events", "accepted"]),
        1,
        "{v}"
    );
    assert_eq!(
        rollup_sum(
            &v,
            "slack-main",
            &["actions", "zendesk-to-slack", "send_message", "succeeded"]
        ),
        1,
        "{v}"
    );
    assert!(daemon.terminate().await.success());
}
