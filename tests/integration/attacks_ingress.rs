//! Attacks by an unauthenticated client on the daemon's ingress (boundary 5 of the security
//! model: an unauthenticated client can't exhaust the daemon), each against the real daemon on
//! loopback and named for the finding of the security review it reproduces: SEC-07 (holding
//! every connection slot with pipelined requests whose answers are never read, or with a
//! trickled `POST /api/sync` body), SEC-08 (flooding the audit log with forged deliveries) and
//! SEC-14 (telling unknown integration ids from known ones; reading `/metrics`).

use std::time::Duration;

use serde_json::Value;
use supportopsd::platforms::slack::fake::FakeSlack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::daemon_support::*;

const ADMIN: &str = "ingress-test-admin-token-55c1";
const READ: &str = "ingress-test-read-token-0e7d";

/// A connection with a small receive buffer (so that unread answers back up quickly).
async fn connect_small(daemon: &Daemon) -> TcpStream {
    let addr = daemon
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Pipelines `GET /metrics` requests on `conn` and never reads an answer: writes until the
/// daemon stops taking them (its answers fill the buffers) or a bounded amount is sent.
async fn pipeline_without_reading(conn: &mut TcpStream) {
    let batch = "GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".repeat(100);
    for _ in 0..400 {
        if tokio::time::timeout(Duration::from_millis(500), conn.write_all(batch.as_bytes()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Whether a fresh `GET /healthz` is answered 200 within `limit`.
async fn healthz_within(daemon: &Daemon, limit: Duration) -> bool {
    let client = reqwest::Client::new();
    matches!(
        tokio::time::timeout(limit, client.get(format!("{}/healthz", daemon.url)).send()).await,
        Ok(Ok(r)) if r.status() == 200
    )
}

/// SEC-07 (a): with every connection slot held by a client that pipelines requests and never
/// reads the answers, the daemon closes those connections once their writes make no progress
/// for the read timeout, and `/healthz` is answered within a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_07_pipelining_clients_that_never_read_lose_their_slots() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(
        repo.path(),
        state.path(),
        &["--max-connections", "3", "--read-timeout", "2s"],
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = connect_small(&daemon).await;
        pipeline_without_reading(&mut conn).await;
        held.push(conn);
    }
    assert!(
        healthz_within(&daemon, Duration::from_secs(10)).await,
        "/healthz was not answered while the slots were held"
    );
    // The stuck connections were closed: after the daemon's answers already sent, each ends.
    for mut conn in held {
        let mut sink = vec![0u8; 64 * 1024];
        let ended = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match conn.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "a stuck connection stayed open");
    }
    daemon.kill().await;
}

/// SEC-07 (b): a `POST /api/sync` (the push webhook's route, open to anyone when a sync secret
/// is set) whose body trickles in gets 408 at the read timeout for the whole body, and the
/// slots it held serve `/healthz` again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_07_a_trickled_sync_body_gets_408_at_the_read_timeout() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &["--max-connections", "2", "--read-timeout", "2s"],
        &[("SUPPORTOPSD_SYNC_SECRET", "ingress-test-sync-secret")],
    )
    .await;
    let addr = daemon.url.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        conn.write_all(
            b"POST /api/sync HTTP/1.1\r\nhost: 127.0.0.1\r\nx-hub-signature-256: sha256=00\r\ncontent-length: 1000000\r\n\r\n{",
        )
        .await
        .unwrap();
        slow.push(conn);
    }
    // Trickle a byte a second on each, and read what comes back.
    let mut answers = Vec::new();
    for mut conn in slow {
        answers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            for _ in 0..15 {
                let _ = conn.write_all(b" ").await;
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if got.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
            String::from_utf8_lossy(&got).into_owned()
        }));
    }
    assert!(
        healthz_within(&daemon, Duration::from_secs(10)).await,
        "/healthz was not answered while slow sync bodies held the slots"
    );
    for answer in answers {
        let answer = answer.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
    daemon.kill().await;
}

/// The audit log's rejection records of `integration`.
async fn rejections(daemon: &Daemon, client: &reqwest::Client, integration: &str) -> Vec<Value> {
    let v: Value = daemon
        .api(
            client,
            reqwest::Method::GET,
            &format!(
                "/api/audit/logs?resource_type=integration&resource_id={integration}&limit=10000"
            ),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"]["type"] == "event_rejected")
        .cloned()
        .collect()
}

/// SEC-08: N forged deliveries (bad signatures) to a known integration write a few audit
/// records (one per integration, reason and minute) that count N between them, not N records;
/// the metrics count every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_08_forged_deliveries_are_counted_not_recorded_one_by_one() {
    const N: u64 = 300;
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/webhooks/zendesk/zendesk-main", daemon.url);
    let ts = rfc3339(0);
    for i in 0..N {
        let body = format!(r#"{{"forged": {i}}}"#);
        let r = client
            .post(&url)
            .header("x-zendesk-webhook-signature-timestamp", &ts)
            .header(
                "x-zendesk-webhook-signature",
                zendesk_signature("not-the-secret", &ts, body.as_bytes()),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let records = rejections(&daemon, &client, "zendesk-main").await;
    assert!(
        (1..=3).contains(&records.len()),
        "{} records for {N} forged deliveries",
        records.len()
    );
    let counted: u64 = records
        .iter()
        .map(|r| {
            assert_eq!(r["kind"]["reason"], "bad_signature", "{r}");
            r["detail"]["count"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(counted, N);
    let metrics = client
        .get(format!("{}/metrics", daemon.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("supportopsd_events_rejected_total{")
                && l.contains("reason=\"bad_signature\"")
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(line.ends_with(&format!(" {N}")), "{line}");
    // More refusals after the log was read start a new window; nothing is lost.
    let r = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let records = rejections(&daemon, &client, "zendesk-main").await;
    let counted: u64 = records
        .iter()
        .map(|r| r["detail"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, N + 1);
    daemon.kill().await;
}

/// What a delivery to `url` gets: status and body.
async fn answer(client: &reqwest::Client, method: reqwest::Method, url: &str) -> (u16, String) {
    let ts = rfc3339(0);
    let r = client
        .request(method, url)
        .header("x-zendesk-webhook-signature-timestamp", &ts)
        .header("x-zendesk-webhook-signature", "AAAA")
        .header("content-type", "application/json")
        .body(r#"{"probe": true}"#)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// SEC-14: an integration id the daemon does not have is answered exactly like one it has
/// (401 with the same empty body to a bad signature, the same to HEAD and PUT), so ids can't be
/// enumerated; and with `--metrics-auth token`, `/metrics` (whose labels name integrations,
/// rules and the revision) answers only the read or admin token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec_14_unknown_ids_answer_like_known_ones_and_metrics_can_need_the_token() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &["--metrics-auth", "token"],
        &[
            ("SUPPORTOPSD_ADMIN_TOKEN", ADMIN),
            ("SUPPORTOPSD_READ_TOKEN", READ),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    for method in [
        reqwest::Method::POST,
        reqwest::Method::HEAD,
        reqwest::Method::PUT,
    ] {
        let known = answer(
            &client,
            method.clone(),
            &format!("{}/api/webhooks/zendesk/zendesk-main", daemon.url),
        )
        .await;
        for unknown in ["does-not-exist", "freshdesk-main", "Not An Id"] {
            let got = answer(
                &client,
                method.clone(),
                &format!("{}/api/webhooks/zendesk/{unknown}", daemon.url),
            )
            .await;
            assert_eq!(got, known, "{method} {unknown}");
        }
    }
    let metrics = |token: Option<&str>| {
        let mut req = client.get(format!("{}/metrics", daemon.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let r = metrics(None).await.unwrap();
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(
        !body.contains("zendesk-main") && !body.contains("rule="),
        "{body}"
    );
    assert_eq!(metrics(Some("wrong")).await.unwrap().status(), 401);
    for token in [READ, ADMIN] {
        let r = metrics(Some(token)).await.unwrap();
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        assert!(body.contains("supportopsd_events_rejected_total"), "{body}");
    }
    daemon.kill().await;
}
