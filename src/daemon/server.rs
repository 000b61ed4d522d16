//! The HTTP server: webhook ingress, the operator API, the always-open health endpoints and
//! `/metrics` (open, or behind the operator API's tokens with `--metrics-auth token`), on one
//! hyper listener. Connections are capped by a semaphore taken before `accept`; headers must
//! arrive within the read timeout and every body too, whole (else 408; an idle keep-alive
//! connection is closed without one); a connection whose answers are not read for that long is
//! closed (SEC-07). On shutdown the listener stops accepting and in-flight requests finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::auth::{self, Caller};
use super::conn::{self, Progress, SharedStream};
use super::routes::{self, Api, Open, Streamed, Target};
use super::{Runtime, api, now_ms};
use crate::state::AuditFilter;
use crate::webhook::{self, Reply, reply, status};

/// The most a connection's read buffer holds (hyper's minimum is 8 KiB).
const MAX_BUF: usize = 64 * 1024;

/// How long in-flight requests get to finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(20);

/// Serves until `shutdown`, then drains.
pub async fn serve(rt: Arc<Runtime>, listener: TcpListener, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(rt.options.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "Accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let read_timeout = rt.options.read_timeout;
        let rt = rt.clone();
        let stream = Arc::new(stream);
        let progress = Arc::new(Progress::default());
        let answered = progress.clone();
        let service = service_fn(move |req| {
            let rt = rt.clone();
            let answered = answered.clone();
            async move {
                let reply = serve_request(&rt, peer, req).await;
                answered.answered();
                Ok::<_, Infallible>(reply)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(read_timeout)
            // A pipelining client is read at most this far ahead of its answers (the default
            // is about 400 KiB per connection); a request head must fit (431 beyond).
            .max_buf_size(MAX_BUF)
            .serve_connection(
                TokioIo::new(SharedStream::new(
                    stream.clone(),
                    progress.clone(),
                    read_timeout,
                )),
                service,
            );
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // hyper gives up on a slow request head without a word: say 408 if a request
                // was under way (not on an idle keep-alive connection).
                if e.is_timeout() && progress.partial_request() {
                    conn::request_timeout(SharedStream::new(stream, progress, read_timeout)).await;
                }
                tracing::debug!(error = %e, "Connection ended with an error.");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("All connections drained."),
        () = tokio::time::sleep(DRAIN) => tracing::warn!("Shutdown deadline reached with connections still open."),
    }
}

/// A JSON answer of the operator API, with RFC 3339 times beside epoch milliseconds
/// ([`api::with_times`]).
fn json(code: StatusCode, mut v: serde_json::Value) -> Reply {
    api::with_times(&mut v);
    reply(
        code,
        "application/json",
        serde_json::to_vec_pretty(&v).unwrap_or_default(),
    )
}

/// The first value of `name` in a query string, decoded (`%XX`, `+`); `None` when it is absent
/// or empty.
fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// Answers one request: a backup (`POST /api/state/backup`, admin token) and the events
/// export (`GET /api/events/export`, either token) are streamed, every other answer is whole
/// ([`route`]).
async fn serve_request(
    rt: &Arc<Runtime>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> api::Streamed {
    let segments: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    match routes::resolve(req.method(), &segments) {
        Some((Target::Streamed(Streamed::StateBackup), _)) => {
            return match admin_caller(rt, peer, &req) {
                Ok(caller) => api::state_backup(rt, &caller).await,
                Err(refusal) => (*refusal).map(http_body_util::Either::Left),
            };
        }
        Some((Target::Streamed(Streamed::EventsExport), _)) => {
            // A read: any token (or the tokenless loopback mode) may ask.
            return match auth::authenticate(&rt.options, peer, req.headers(), req.uri()) {
                Ok(_) => api::events_export(rt, req.uri().query().unwrap_or("")).await,
                Err(refusal) => refusal.reply().map(http_body_util::Either::Left),
            };
        }
        _ => {}
    }
    route(rt, peer, req).await.map(http_body_util::Either::Left)
}

/// The caller of a change through the operator API, or the refusal: as [`operator`] decides
/// (a token that may change things, a JSON content type).
fn admin_caller(
    rt: &Runtime,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Result<Caller, Box<Reply>> {
    let caller = auth::authenticate(&rt.options, peer, req.headers(), req.uri())
        .map_err(|refusal| Box::new(refusal.reply()))?;
    if !caller.access.may_change() {
        return Err(Box::new(auth::read_only()));
    }
    if !auth::is_json(req.headers()) {
        return Err(Box::new(auth::not_json()));
    }
    Ok(caller)
}

/// Routes one request.
pub async fn route(rt: &Arc<Runtime>, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    // Every documented route is a row of the table (`routes::ROUTES`); what is not a row is
    // the console, its redirect, a webhook path called with a method it refuses (405, from
    // `webhook::handle`), or the operator API's 401/404.
    match routes::resolve(&method, &segments) {
        Some((Target::Open(open), p)) => match open {
            Open::Healthz => reply(StatusCode::OK, "text/plain", "ok\n"),
            Open::Readyz => {
                if rt.active().is_some() {
                    reply(StatusCode::OK, "text/plain", "ready\n")
                } else {
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "no revision applied\n",
                    )
                }
            }
            Open::Metrics => metrics(rt, peer, &req),
            Open::Webhook => {
                let platform = p.get("platform").to_owned();
                webhook::handle(rt, peer, &platform, None, req).await
            }
            Open::WebhookIntegration => {
                let (platform, id) = (
                    p.get("platform").to_owned(),
                    p.get("integration").to_owned(),
                );
                webhook::handle(rt, peer, &platform, Some(&id), req).await
            }
        },
        Some((Target::Api(_) | Target::Streamed(_), _)) => operator(rt, peer, req, &segments).await,
        None => match segments.as_slice() {
            ["api", "webhooks", platform] => {
                let platform = (*platform).to_owned();
                webhook::handle(rt, peer, &platform, None, req).await
            }
            ["api", "webhooks", platform, id] => {
                let (platform, id) = ((*platform).to_owned(), (*id).to_owned());
                webhook::handle(rt, peer, &platform, Some(&id), req).await
            }
            ["api", ..] => operator(rt, peer, req, &segments).await,
            // The operator console (`daemon::console`); `/` leads to it.
            ["ui", ..] => super::console::serve(rt, peer, req).await,
            [""] if method == Method::GET => super::console::to_console(),
            _ => status(StatusCode::NOT_FOUND),
        },
    }
}

/// `GET /metrics`: open, or behind the operator API's tokens with `--metrics-auth token`.
fn metrics(rt: &Runtime, peer: SocketAddr, req: &Request<Incoming>) -> Reply {
    // SEC-14: the labels name integrations, rules and the revision.
    if rt.options.metrics_auth == crate::runtime::MetricsAuth::Token
        && let Err(refusal) = auth::authenticate(&rt.options, peer, req.headers(), req.uri())
    {
        return refusal.reply();
    }
    let now = now_ms();
    let oldest = match rt.store.oldest_due_ms() {
        Ok(Some(due)) => now.saturating_sub(due) / 1000,
        _ => 0,
    };
    let dead = rt.store.dead_depth();
    rt.metrics.set_queue(rt.store.queue_depth(), oldest, dead);
    let state = crate::daemon::api::state_section(rt.store.as_ref());
    for kind in ["payloads", "database", "journal"] {
        let bytes = state["bytes"][kind].as_u64().unwrap_or(0);
        rt.metrics.set_state_bytes(kind, bytes);
    }
    for kind in ["events", "payload_bytes", "audit_records"] {
        let total = state["retention_removed"][kind].as_u64().unwrap_or(0);
        rt.metrics.set_retention_removed(kind, total);
    }
    reply(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        rt.metrics.render(),
    )
}

/// Whether a `POST /api/sync` is a git host's push webhook: it carries the host's signature
/// (or token) header.
fn signed_push(req: &Request<Incoming>) -> bool {
    let h = req.headers();
    h.contains_key("x-hub-signature-256") || h.contains_key("x-gitlab-token")
}

/// The operator API: who calls (`auth`), whether they may, then the route.
async fn operator(
    rt: &Arc<Runtime>,
    peer: SocketAddr,
    req: Request<Incoming>,
    segments: &[&str],
) -> Reply {
    let method = req.method().clone();
    let authenticated = auth::authenticate(&rt.options, peer, req.headers(), req.uri());
    // A git host's push webhook is authenticated by its signature, not by a token (and is
    // exempt from the JSON content type: GitHub may send a form).
    if method == Method::POST
        && segments == ["api", "sync"]
        && rt.options.sync_secret.is_some()
        && (authenticated.is_err()
            || (signed_push(&req) && !req.headers().contains_key(header::AUTHORIZATION)))
    {
        return push_sync(rt, peer, req).await;
    }
    let caller = match authenticated {
        Ok(caller) => caller,
        Err(refusal) => return refusal.reply(),
    };
    let safe = auth::is_safe(&method);
    if !safe && !caller.access.may_change() {
        return auth::read_only();
    }
    let verb = method == Method::POST
        && matches!(
            segments,
            ["api", "integrations", _, "test" | "execute"]
                | [
                    "api",
                    "integrations",
                    _,
                    "notion",
                    "expect-verification" | "confirm-verification" | "reset-verification"
                ]
        );
    if !safe && matches!(segments, ["api", "integrations" | "rules", ..]) && !verb {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "integrations and rules are changed by a pull request to the manifest repository, not through this API"}),
        );
    }
    if !safe && !auth::is_json(req.headers()) {
        return auth::not_json();
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    // The route table decides which route this is; the `match` below must name every one.
    let Some((Target::Api(route), p)) = routes::resolve(&method, segments) else {
        return status(StatusCode::NOT_FOUND);
    };
    match route {
        Api::OpenApi => reply(
            StatusCode::OK,
            "application/json",
            super::openapi::document_bytes(),
        ),
        Api::Integrations => api::integrations(rt),
        Api::Integration => api::integration(rt, p.get("id")),
        Api::IntegrationHealth => api::health(rt, p.get("id")),
        Api::IntegrationStats => api::stats(rt, p.get("id")),
        Api::IntegrationTest => api::test(rt, p.get("id")).await,
        Api::IntegrationExecute => {
            let id = p.get("id").to_owned();
            api::execute(rt, &id, &caller, req).await
        }
        Api::NotionVerification => api::notion_verification(rt, p.get("id"), &caller),
        Api::NotionExpect | Api::NotionConfirm | Api::NotionReset => {
            let action = match route {
                Api::NotionExpect => "expect-verification",
                Api::NotionConfirm => "confirm-verification",
                _ => "reset-verification",
            };
            let id = p.get("id").to_owned();
            api::notion_action(rt, &id, action, &caller, req).await
        }
        Api::Rules => api::rules(rt),
        Api::Rule => api::rule(rt, p.get("id")),
        Api::Status => json(
            StatusCode::OK,
            status_value(rt, caller.access != auth::Access::Read),
        ),
        Api::Sync => sync(rt, &caller).await,
        Api::Pin => pin(rt, &caller, req).await,
        Api::Unpin => {
            if let Err(e) = rt.store.unpin(now_ms(), caller.audit(json!({}))) {
                return internal(&e);
            }
            let report = rt.request_pass(crate::runtime::pass::Cause::Api).await;
            json(
                StatusCode::OK,
                json!({"pinned": null, "applied_revision": report.and_then(|r| r.revision)}),
            )
        }
        // Jobs have their own routes; `/api/events/dead` and `POST /api/events/{job id}/replay`
        // are their old names, kept as aliases (matched before the `evt_` routes).
        Api::DeadJobs | Api::DeadJobsAlias => api::dead_jobs(rt),
        Api::ReplayJob => api::replay_job(rt, &caller, p.get("job_id")).await,
        Api::ReplayJobAlias => {
            let id = p.get("job_id");
            if id.parse::<u64>().is_err() {
                return status(StatusCode::NOT_FOUND);
            }
            api::replay_job(rt, &caller, id).await
        }
        Api::EventExplain => {
            let rule = query_param(&query, "rule");
            api::event_explain(rt, p.get("id"), rule.as_deref()).await
        }
        Api::Events => {
            // Every delivery answered so far is listed, and every refusal counted so far.
            rt.flush_rejections(now_ms(), true);
            if let Err(e) = rt.settle().await {
                return internal(&e);
            }
            api::events_list(rt, &query)
        }
        Api::Event => {
            if let Err(e) = rt.settle().await {
                return internal(&e);
            }
            api::event_trace(rt, p.get("id"))
        }
        Api::ReplayDead => api::replay_dead(rt, &caller, req).await,
        Api::EventRedeliver => {
            let id = p.get("id").to_owned();
            api::redeliver(rt, &id, &caller, req).await
        }
        Api::EventPayload => {
            let id = p.get("id").to_owned();
            api::event_payload(rt, &id).await
        }
        Api::Rollups => {
            let mut bounds = [None, None];
            for (slot, name) in bounds.iter_mut().zip(["since", "until"]) {
                if let Some(v) = query_param(&query, name) {
                    match v.parse::<u64>() {
                        Ok(ms) => *slot = Some(ms),
                        Err(_) => {
                            return json(
                                StatusCode::BAD_REQUEST,
                                json!({"error": format!("`{name}` must be Unix milliseconds")}),
                            );
                        }
                    }
                }
            }
            let integration = query_param(&query, "integration");
            api::rollups(rt, bounds[0], bounds[1], integration.as_deref())
        }
        Api::AuditLogs => {
            let filter = AuditFilter {
                resource_type: query_param(&query, "resource_type"),
                resource_id: query_param(&query, "resource_id"),
                since_ms: query_param(&query, "since").and_then(|s| s.parse().ok()),
                limit: query_param(&query, "limit")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(100)
                    .min(10_000),
            };
            // Every delivery answered so far is in the log (the writer may be holding some),
            // and so is every refusal counted so far (SEC-08 windows close early for this).
            rt.flush_rejections(now_ms(), true);
            if let Err(e) = rt.settle().await {
                return internal(&e);
            }
            match rt.store.audit(&filter) {
                Ok(records) => json(StatusCode::OK, json!({ "records": records })),
                Err(e) => internal(&e),
            }
        }
    }
}

/// A reconcile pass now; the answer waits until the revision is applied (200) or refused (409).
/// Audited (`sync_requested`) with the caller and the outcome.
async fn sync(rt: &Arc<Runtime>, caller: &Caller) -> Reply {
    let report = rt.request_pass(crate::runtime::pass::Cause::Api).await;
    rt.record_audit(
        now_ms(),
        crate::state::AuditKind::SyncRequested,
        "revision",
        report
            .as_ref()
            .and_then(|r| r.revision.as_deref())
            .unwrap_or(""),
        caller.audit(match &report {
            Some(r) => json!({"refused": r.refused}),
            None => json!({"refused": "the reconciler is not running"}),
        }),
    );
    let Some(report) = report else {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "the reconciler is not running"}),
        );
    };
    let code = if report.refused.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    json(
        code,
        json!({
            "applied_revision": report.revision,
            "refused": report.refused,
            "loaded": report.loaded,
            "results": report.results,
        }),
    )
}

/// `POST /api/sync` from a git host's push webhook: the body must be signed with the sync
/// secret (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`, GitHub and Gitea) or carry it
/// (`X-Gitlab-Token`). Anything else is a bare 401.
async fn push_sync(rt: &Arc<Runtime>, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    use hmac::{Hmac, KeyInit, Mac};
    let Some(secret) = rt.options.sync_secret.clone() else {
        return status(StatusCode::UNAUTHORIZED);
    };
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let body = match webhook::read_body(&headers, body, 1024 * 1024, rt.options.read_timeout).await
    {
        Ok(body) => body,
        Err(e) => return status(e.status()),
    };
    let header = |name: &str| headers.get(name).map(http::HeaderValue::as_bytes);
    let genuine = if let Some(sig) = header("x-hub-signature-256") {
        match (
            sig.strip_prefix(b"sha256=")
                .and_then(crate::platforms::inbound::unhex),
            <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.expose()),
        ) {
            (Some(given), Ok(mut mac)) => {
                mac.update(&body);
                mac.verify_slice(&given).is_ok()
            }
            _ => false,
        }
    } else if let Some(token) = header("x-gitlab-token") {
        crate::secrets::constant_time_eq(token, secret.expose())
    } else {
        false
    };
    if !genuine {
        return status(StatusCode::UNAUTHORIZED);
    }
    let caller = Caller {
        peer,
        access: auth::Access::SyncSignature,
        by: auth::OPERATOR_API,
    };
    sync(rt, &caller).await
}

/// `POST /api/pin {"revision", "reason"}`: resolves the revision in the daemon's repository —
/// only a commit the followed branch contains (422 otherwise, SEC-06) — pins it (audited with
/// the caller), and answers after the pass that puts it in use.
async fn pin(rt: &Arc<Runtime>, caller: &Caller, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let body =
        match webhook::read_body(&parts.headers, body, 64 * 1024, rt.options.read_timeout).await {
            Ok(body) => body,
            Err(e) => return status(e.status()),
        };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(rev) = v.get("revision").and_then(serde_json::Value::as_str) else {
        return json(
            StatusCode::BAD_REQUEST,
            json!({"error": "the body must be {\"revision\": \"…\"}"}),
        );
    };
    let reason = v
        .get("reason")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let followed = &rt.options.rev;
    let commit = match crate::manifest::source::resolve_on_branch(&rt.options.repo, rev, followed) {
        Ok(c) => c,
        Err(e @ crate::manifest::source::Error::NotOnBranch { .. }) => {
            return json(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": e.to_string()}),
            );
        }
        Err(e) => return json(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    };
    if let Err(e) = rt
        .store
        .pin_revision(&commit, reason, now_ms(), caller.audit(json!({})))
    {
        return internal(&e);
    }
    let report = rt.request_pass(crate::runtime::pass::Cause::Api).await;
    json(
        StatusCode::OK,
        json!({
            "pinned": commit,
            "applied_revision": report.as_ref().and_then(|r| r.revision.clone()),
            "refused": report.and_then(|r| r.refused),
        }),
    )
}

fn internal(e: &dyn std::fmt::Display) -> Reply {
    tracing::error!(error = %e, "Operator API request failed.");
    json(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"error": "internal error; see the daemon's log"}),
    )
}

/// The body of `GET /api/status`: the revision (applied, refused, pinned), every integration's
/// sync status and health with reasons, its webhook registration, and the queue. Notion
/// verification tokens awaiting confirmation are signing secrets: they are listed only when
/// `reveal_tokens` (an admin caller), never for the read-only token.
pub fn status_value(rt: &Runtime, reveal_tokens: bool) -> serde_json::Value {
    let s = rt.status();
    let problems: Vec<_> = s
        .problems
        .iter()
        .chain(&s.registration_problems)
        .map(|p| json!({"integration": p.integration.as_str(), "problem": p.message}))
        .collect();
    let notes: Vec<_> = s
        .notes
        .iter()
        .map(|p| json!({"integration": p.integration.as_str(), "note": p.message}))
        .collect();
    let registrations: std::collections::HashMap<String, crate::state::RegistrationRecord> = rt
        .store
        .registrations()
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.integration.clone(), r))
        .collect();
    let active = rt.active();
    let integrations: Vec<_> = rt
        .health_records()
        .into_iter()
        .map(|h| {
            let platform = active.as_ref().and_then(|a| {
                crate::manifest::IntegrationId::parse(&h.integration)
                    .ok()
                    .and_then(|id| a.set.integrations.get(&id).map(|i| i.platform.as_str()))
            });
            super::api::status_entry(&h, platform, registrations.get(&h.integration))
        })
        .collect();
    let pin = rt.store.pin().ok().flatten();
    // Notion verification tokens awaiting the operator's confirmation: signing secrets, shown
    // to an admin caller only (SEC-04), never to the read-only token.
    let now = now_ms();
    let tokens: Vec<_> = match (&active, reveal_tokens) {
        (Some(active), true) => active
            .set
            .integrations
            .values()
            .filter(|i| i.platform == crate::platforms::PlatformKind::Notion)
            .map(|i| rt.notion_verification_view(&i.id, true, now))
            .filter(|v| {
                // Awaiting a first confirmation, or a replacement while a window is open.
                (v["verified"] == false || v["window_open"] == true)
                    && v["tokens"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|t| t["confirmed"] == false))
            })
            .collect(),
        _ => Vec::new(),
    };
    // Rates from the per-minute rollups (current: what was counted so far is written first).
    rt.write_rollups();
    let rates = super::api::rates(rt.store.as_ref(), now);
    json!({
        "rates": rates,
        "verification_tokens": tokens,
        "applied_revision": s.applied,
        "applied_ms": s.applied_ms,
        "refused": s.refused,
        "refused_revision": s.refused_commit,
        "pinned": pin,
        "integrations": integrations,
        "problems": problems,
        "notes": notes,
        "queue_depth": rt.store.queue_depth(),
        "dead_letters": rt.store.dead_depth(),
        "state": crate::daemon::api::state_section(rt.store.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::query_param;

    #[test]
    fn query_values_are_decoded_and_empty_ones_are_absent() {
        let q = "rule=vip%2Durgent&integration=&resource_id=a+b&x";
        assert_eq!(query_param(q, "rule").as_deref(), Some("vip-urgent"));
        assert_eq!(query_param(q, "resource_id").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "integration"), None);
        assert_eq!(query_param(q, "x"), None);
        assert_eq!(query_param(q, "missing"), None);
    }
}
