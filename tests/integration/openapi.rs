//! The OpenAPI document against the running daemon: every route it documents is served (never
//! the router's bare 404), for each token the document says may call it, and refused with 403
//! to the read-only token where it says only the admin token may; the example answers have the
//! fields the real answers have; `GET /api/openapi.json` answers the document itself to both
//! tokens.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use supportopsd::daemon::openapi::{document, operations};
use supportopsd::platforms::slack::fake::FakeSlack;

use crate::daemon_support::*;

const ADMIN: &str = "openapi-test-admin-token-5d1e";
const READ: &str = "openapi-test-read-token-c47a";

/// A request path for a documented one: its parameters filled with what the test repository
/// has (an integration, a rule), or a well-formed id the handlers look up (and may not find:
/// their own 404 carries a JSON body, the router's none).
fn sample(path: &str, event: &str) -> String {
    let id = if path.starts_with("/api/rules/") {
        "zendesk-to-slack"
    } else if path.starts_with("/api/events/") {
        event
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

/// Where the fields of a documented example and of a real answer differ: the top-level keys
/// of two objects, and those of the first element of each list both have (the fields a
/// reader relies on; maps keyed by data, such as counts by rule, are not compared).
fn differences(example: &Value, real: &Value) -> Vec<String> {
    fn keys(v: &Value) -> BTreeSet<&str> {
        v.as_object()
            .into_iter()
            .flat_map(|m| m.keys().map(String::as_str))
            .collect()
    }
    let mut out = Vec::new();
    let (e, r) = (keys(example), keys(real));
    if e != r {
        out.push(format!(
            "only in the example: {:?}; only in the answer: {:?}",
            e.difference(&r).collect::<Vec<_>>(),
            r.difference(&e).collect::<Vec<_>>()
        ));
    }
    for k in e.intersection(&r) {
        if let (Some(x), Some(y)) = (
            example[*k].as_array().and_then(|a| a.first()),
            real[*k].as_array().and_then(|a| a.first()),
        ) && x.is_object()
            && y.is_object()
        {
            let (ex, ey) = (keys(x), keys(y));
            if ex != ey {
                out.push(format!(
                    "{k}[0]: only in the example: {:?}; only in the answer: {:?}",
                    ex.difference(&ey).collect::<Vec<_>>(),
                    ey.difference(&ex).collect::<Vec<_>>()
                ));
            }
        }
    }
    out
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

    // One delivery, so that the event routes have something to show.
    assert_eq!(
        post_zendesk(
            &client,
            &daemon,
            zendesk_ticket(501, "Printer on fire"),
            "inv-1"
        )
        .await,
        200
    );
    let mut event = String::new();
    for _ in 0..200 {
        let (_, page) = send("get", "/api/events", Some(READ), &json!({})).await;
        let page: Value = serde_json::from_slice(&page).unwrap();
        if page["events"][0]["outcome"] == "done" {
            event = page["events"][0]["id"].as_str().unwrap().to_owned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        event.starts_with("evt_"),
        "the delivery's job did not finish"
    );

    let doc = document();
    let mut checked = 0;
    let mut compared = Vec::new();
    let mut mismatches = Vec::new();
    for (_, method, path, op) in operations(doc) {
        let url = sample(&path, &event);
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
            if let (200, Some(example), Ok(real)) = (
                code,
                op.pointer("/responses/200/content/application~1json/example"),
                serde_json::from_slice::<Value>(&answer),
            ) {
                compared.push(what.clone());
                for d in differences(example, &real) {
                    mismatches.push(format!("{what}: {d}"));
                }
            }
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
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(compared.len() >= 15, "{compared:?}");

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
