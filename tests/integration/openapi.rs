//! The OpenAPI document against the running daemon: every route it documents is served (never
//! the router's bare 404), for each token the document says may call it, and refused with 403
//! to the read-only token where it says only the admin token may; `GET /api/openapi.json`
//! answers the document itself to both tokens.

use serde_json::{Value, json};
use supportopsd::daemon::openapi::{document, operations};
use supportopsd::platforms::slack::fake::FakeSlack;

use crate::daemon_support::*;

const ADMIN: &str = "openapi-test-admin-token-5d1e";
const READ: &str = "openapi-test-read-token-c47a";

/// A request path for a documented one: its parameters filled with what the test repository
/// has (an integration, a rule), or a well-formed id the handlers look up (and may not find:
/// their own 404 carries a JSON body, the router's none).
fn sample(path: &str) -> String {
    let id = if path.starts_with("/api/rules/") {
        "zendesk-to-slack"
    } else if path.starts_with("/api/events/") {
        "evt_1"
    } else {
        "zendesk-main"
    };
    path.replace("{platform}", "zendesk")
        .replace("{integration}", "zendesk-main")
        .replace("{job_id}", "1")
        .replace("{id}", id)
}

/// The request body an operation documents (its example), else `{}`.
fn body_of(op: &Value) -> Value {
    op.pointer("/requestBody/content/application~1json/example")
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// Whether an answer is the router's: a 404 with an empty body.
fn routers_404(code: u16, body: &[u8]) -> bool {
    code == 404 && body.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
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
    let send = |method: &str, path: &str, token: Option<&str>, body: &Value| {
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = client.request(method.clone(), format!("{}{path}", daemon.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if method != reqwest::Method::GET && method != reqwest::Method::HEAD {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        async move {
            let r = req.send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.bytes().await.unwrap().to_vec())
        }
    };

    // The check can fail: an undocumented route is the router's 404, to either token.
    for token in [ADMIN, READ] {
        let (code, body) = send("get", "/api/no-such-route", Some(token), &json!({})).await;
        assert!(routers_404(code, &body), "{code}");
    }

    let doc = document();
    let mut checked = 0;
    for (_, method, path, op) in operations(doc) {
        let url = sample(&path);
        let body = body_of(op);
        let schemes: Vec<&str> = op["security"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| {
                r.as_object()
                    .and_then(|m| m.keys().next())
                    .map(String::as_str)
            })
            .collect();
        let open = op["security"].as_array().unwrap().is_empty()
            || op["security"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_object().is_some_and(serde_json::Map::is_empty));
        let what = format!("{} {url}", method.to_uppercase());
        if open {
            let (code, answer) = send(method, &url, None, &body).await;
            assert!(!routers_404(code, &answer), "{what}: the router's 404");
            assert_ne!(code, 403, "{what}");
            checked += 1;
        }
        if schemes.contains(&"readOnlyToken") {
            let (code, answer) = send(method, &url, Some(READ), &body).await;
            assert!(
                !routers_404(code, &answer),
                "{what} (read token): the router's 404"
            );
            assert!(![401, 403].contains(&code), "{what} (read token): {code}");
            checked += 1;
        } else if schemes.contains(&"adminToken") {
            // Documented as the admin token's only: the read-only token is refused.
            let (code, answer) = send(method, &url, Some(READ), &body).await;
            assert_eq!(
                code,
                403,
                "{what} (read token): {}",
                String::from_utf8_lossy(&answer)
            );
        }
        if schemes.contains(&"adminToken") {
            let (code, answer) = send(method, &url, Some(ADMIN), &body).await;
            assert!(
                !routers_404(code, &answer),
                "{what} (admin token): the router's 404"
            );
            assert!(![401, 403].contains(&code), "{what} (admin token): {code}");
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked}");

    // The document itself, to both tokens, as compiled in.
    for token in [ADMIN, READ] {
        let (code, answer) = send("get", "/api/openapi.json", Some(token), &json!({})).await;
        assert_eq!(code, 200);
        let served: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(&served, doc);
    }
    let (code, _) = send("get", "/api/openapi.json", None, &json!({})).await;
    assert_eq!(code, 401);
    daemon.kill().await;
}
