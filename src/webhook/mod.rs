//! Webhook ingress: route → limits → verify → parse → dedupe + persist → 2xx.
//!
//! A delivery whose rules need fields the platform does not send (the catalogue's
//! `Delivery::enriched`) is stored with one enrichment job instead of its rules' jobs; the
//! executor fetches the fields and matches the rules then (`execute`).
//!
//! A delivery is acknowledged only once its event and the jobs of every rule it triggers are in
//! the state store and flushed to disk (group commit), so killing the process at any instant
//! loses nothing that was acknowledged. Bad signatures get a bare 401; nothing about why leaves
//! the process (the reason goes to the audit log and the metrics).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::json;

use crate::event::Event;
use crate::manifest::IntegrationId;
use crate::platforms::{
    self, Inbound, InboundRequest, ParseError, PlatformKind, VerifyError, VerifyKeys,
};
use crate::runtime::decide::Decision;
use crate::runtime::stats::Count;
use crate::runtime::{Active, Runtime, now_ms};
use crate::secrets;
use crate::state::journal::IngestRecord;
use crate::state::{AuditKind, AuditRecord, ENRICHMENT, IngestOutcome};

/// A response with a small body.
pub type Reply = Response<Full<Bytes>>;

/// Builds a reply.
pub fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// A bare status with no body.
pub fn status(code: StatusCode) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// Most bytes of a refused body read (and dropped) before answering.
const DISCARD_BUDGET: usize = 1024 * 1024;

/// Reads and drops what a refused request still sends, up to 1 MiB and for at most `timeout`,
/// so that the client reads the answer (a 413) instead of a reset connection: a socket closed
/// with unread data is reset, and the client may still be writing when the answer comes. A
/// larger or slower body is left unread, and the connection is closed after the answer.
pub(crate) async fn discard_body<B>(body: B, timeout: Duration)
where
    B: hyper::body::Body,
{
    let drain = async {
        let mut body = std::pin::pin!(body);
        let mut read = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                read = read.saturating_add(bytes::Buf::remaining(data));
            }
            if read > DISCARD_BUDGET {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, drain).await;
}

fn json_reply(code: StatusCode, v: &serde_json::Value) -> Reply {
    reply(
        code,
        "application/json",
        serde_json::to_vec(v).unwrap_or_default(),
    )
}

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Larger than allowed (413).
    TooLarge,
    /// Not all there within the read timeout (408).
    Timeout,
    /// The connection failed while reading (400).
    Unreadable,
}

impl BodyError {
    /// The status that answers it.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            BodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
            BodyError::Unreadable => StatusCode::BAD_REQUEST,
        }
    }

    /// The rejection reason (metrics).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            BodyError::TooLarge => "too_large",
            BodyError::Timeout => "timeout",
            BodyError::Unreadable => "unreadable",
        }
    }
}

/// Reads a whole body of at most `limit` bytes, all of it within `timeout` (SEC-07: a body
/// trickled byte by byte can't hold a connection slot longer than that). Every body the daemon
/// reads goes through here. A body whose `Content-Length` (in `headers`) is over the limit is
/// not read but drained ([`discard_body`]), so that the client gets the 413.
pub(crate) async fn read_body<B>(
    headers: &http::HeaderMap,
    body: B,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| len > limit)
    {
        discard_body(body, timeout).await;
        return Err(BodyError::TooLarge);
    }
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(BodyError::TooLarge)
        }
        Ok(Err(_)) => Err(BodyError::Unreadable),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// What an unknown integration id is checked against, so that it costs about what a known one
/// does and is answered alike (SEC-14). Nothing verifies against it.
fn decoy_keys() -> VerifyKeys {
    VerifyKeys {
        secret: Some(secrets::Secret::new(vec![0x5a; 32])),
        callback_url: Some("https://decoy.invalid/api/webhooks".into()),
        channel_id: Some("decoy".into()),
    }
}

/// Handles `/api/webhooks/{platform}[/{integration}]` from `peer`.
///
/// An integration id this revision does not have (or a platform path that names no single
/// integration) is answered like a known one with a bad signature: the body is read under the
/// same limits, checked against a decoy key, and refused with a bare 401 (SEC-14). Only an
/// unknown platform gets 404 (the platforms are public).
pub async fn handle<B>(
    rt: &Runtime,
    peer: SocketAddr,
    platform: &str,
    integration: Option<&str>,
    req: Request<B>,
) -> Reply
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // The built-in platform's events are emitted by the daemon itself: nobody may post them.
    let Some(kind) = PlatformKind::parse(platform).filter(|k| !k.is_builtin()) else {
        return status(StatusCode::NOT_FOUND);
    };
    let Some(active) = rt.active() else {
        return retry_later(StatusCode::SERVICE_UNAVAILABLE, 5);
    };
    let known = match integration {
        Some(id) => IntegrationId::parse(id).ok().filter(|id| {
            active
                .set
                .integrations
                .get(id)
                .is_some_and(|i| i.platform == kind)
        }),
        None => match active.integrations_of(kind).as_slice() {
            [only] => Some((*only).clone()),
            _ => None,
        },
    };
    let method = req.method().clone();
    if method == Method::HEAD || method == Method::GET {
        // Trello validates a callback with HEAD before it creates the webhook.
        return status(StatusCode::OK);
    }
    if method != Method::POST {
        return status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let (parts, body) = req.into_parts();
    let max = rt.options.max_body;
    let refused = |reason: &str| {
        rt.metrics.event_rejected(kind.as_str(), reason);
        if let Some(id) = &known {
            rt.stats.count(id.as_str(), Count::EventRejected { reason });
        }
    };
    let body = match read_body(&parts.headers, body, max, rt.options.read_timeout).await {
        Ok(body) => body,
        Err(e) => {
            refused(e.reason());
            return status(e.status());
        }
    };
    let now = now_ms();
    let inbound = InboundRequest {
        method: &parts.method,
        headers: &parts.headers,
        body: &body,
        now_unix: i64::try_from(now / 1000).unwrap_or(i64::MAX),
    };
    let Some(id) = known else {
        // Same work as a known id with a bad signature, same answer; counted by platform only
        // (the id is the client's, so it goes into no label, record or log line).
        let _ = platforms::verify(kind, &inbound, &decoy_keys());
        rt.metrics
            .event_rejected(kind.as_str(), "unknown_integration");
        return status(StatusCode::UNAUTHORIZED);
    };
    let keys = rt.verify_keys(&active, &id);
    let verified = match &keys {
        Some(k) => platforms::verify(kind, &inbound, k),
        None => Err(VerifyError::NotConfigured),
    };
    // Notion's verification request inside a window the operator opened is kept whatever its
    // signature: a resent or re-created subscription's token is new, and the request is
    // unsigned or signed with that new token, never with the one stored (SEC-04: nothing it
    // carries verifies anything until the operator confirms it).
    let notion_handshake = kind == PlatformKind::Notion
        && platforms::notion::webhook::is_handshake(&body)
        && rt.notion_window_open(&id, now);
    if let Err(e) = verified
        && !notion_handshake
    {
        reject(rt, kind, &id, e.reason(), now);
        return status(StatusCode::UNAUTHORIZED);
    }
    if kind == PlatformKind::Notion && !notion_handshake {
        if keys.as_ref().is_some_and(|k| k.usable_secret().is_some()) {
            rt.note_signed_delivery(&id);
        } else if !rt.notion_window_open(&id, now) {
            // Without a confirmed token only the unsigned verification request verifies, and
            // only inside a window the operator opened (SEC-04): otherwise it is as
            // unverifiable as a bad signature.
            reject(rt, kind, &id, "no_verification_window", now);
            return status(StatusCode::UNAUTHORIZED);
        }
    }
    let parsed = match platforms::parse(kind, &inbound) {
        Ok(p) => p,
        Err(e) => {
            let (code, reason) = match e {
                ParseError::UnsupportedMediaType => {
                    (StatusCode::UNSUPPORTED_MEDIA_TYPE, "content_type")
                }
                ParseError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
            };
            reject(rt, kind, &id, reason, now);
            return status(code);
        }
    };
    match parsed {
        Inbound::Challenge { content_type, body } => reply(StatusCode::OK, content_type, body),
        Inbound::Acknowledge => status(StatusCode::OK),
        Inbound::VerificationToken(token) => capture_token(rt, kind, &id, &token, peer, now),
        Inbound::Event {
            event,
            normalized,
            payload,
        } => {
            let Some(event_id) = normalized.id.clone() else {
                reject(rt, kind, &id, "no_event_id", now);
                return status(StatusCode::BAD_REQUEST);
            };
            let event = Event {
                platform: kind,
                integration: id.clone(),
                name: event.name.to_owned(),
                id: event_id,
                time: normalized.time,
                received_at_ms: now,
                actor: normalized.actors.first().cloned(),
                actors: normalized.actors,
                objects: normalized.objects,
                changes: normalized.changes,
                payload,
            };
            store_event(rt, &active, event, now).await
        }
    }
}

fn retry_later(code: StatusCode, secs: u64) -> Reply {
    let mut r = status(code);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// A refused delivery of a known integration: counted in the metrics and stats one by one,
/// and in the audit log and the log aggregated per integration, reason and minute (SEC-08).
fn reject(rt: &Runtime, kind: PlatformKind, id: &IntegrationId, reason: &str, now: u64) {
    rt.metrics.event_rejected(kind.as_str(), reason);
    rt.stats.count(id.as_str(), Count::EventRejected { reason });
    let noted = rt.rejections.note(kind.as_str(), id.as_str(), reason, now);
    if noted.first {
        tracing::info!(platform = kind.as_str(), integration = %id, reason, "Webhook delivery refused (more this minute are counted, not logged).");
    }
    for record in &noted.closed {
        if let Err(e) = rt.store.append_audit(record) {
            tracing::warn!(error = %e, "Audit record not written.");
        }
    }
}

/// How long an event of `kind` is deduplicated: the platform's own window
/// ([`PlatformKind::dedupe_window`]) when it has one, capped by the daemon's `--dedupe-ttl`.
pub(crate) fn dedupe_ttl(kind: PlatformKind, daemon: std::time::Duration) -> std::time::Duration {
    kind.dedupe_window().map_or(daemon, |w| w.min(daemon))
}

/// Matches, stores and flushes an event; 200 once it is durable (also the path of polled
/// events and of supportopsd's own, which `daemon::poller` and `daemon::alerts` hand in).
pub(crate) async fn store_event(
    rt: &Runtime,
    active: &Arc<Active>,
    event: Event,
    now: u64,
) -> Reply {
    let kind = event.platform;
    if rt.store.queue_depth() >= rt.options.max_queue {
        rt.metrics.event_rejected(kind.as_str(), "queue_full");
        rt.stats.count(
            event.integration.as_str(),
            Count::EventRejected {
                reason: "queue_full",
            },
        );
        return retry_later(StatusCode::SERVICE_UNAVAILABLE, 30);
    }
    let from_self = rt.is_self(&event);
    // A delivery whose rules read fields the platform did not send is stored with a pending
    // enrichment instead: the executor fetches them, then matches the rules on the enriched
    // event (never a platform call before the delivery is answered).
    let enrich = active.needs_enrichment(&event, from_self);
    // What matching decides (`runtime::decide`: paused rules removed, budgets, shadow rules);
    // a delivery with a pending enrichment is decided once it is done.
    let decision = if enrich {
        Decision::default()
    } else {
        rt.decide(active, &event, from_self, now).await
    };
    let rules: Vec<String> = if enrich {
        vec![ENRICHMENT.to_owned()]
    } else {
        decision.rules.clone()
    };
    let dedupe_until = now.saturating_add(
        u64::try_from(dedupe_ttl(kind, rt.options.dedupe_ttl).as_millis()).unwrap_or(u64::MAX),
    );
    let mut records = vec![AuditRecord {
        at_ms: now,
        kind: AuditKind::EventAccepted,
        resource_type: "event".into(),
        resource_id: event.key(),
        detail: if enrich {
            json!({"name": event.name, "platform": kind.as_str(), "enrichment": "pending"})
        } else {
            json!({"name": event.name, "platform": kind.as_str()})
        },
    }];
    records.extend(decision.records(&event.key(), now, false));
    let integration = event.integration.clone();
    let record = IngestRecord {
        event,
        rules: rules.clone(),
        now_ms: now,
        dedupe_until_ms: dedupe_until,
        audit: records,
        revision: active.commit.clone(),
        held: decision.held.clone(),
    };
    let ingested = rt.ingest(record).await;
    if !matches!(ingested, Ok(IngestOutcome::Stored { .. })) {
        decision.abandoned(rt);
    }
    match ingested {
        Ok(IngestOutcome::Duplicate) => {
            rt.metrics.event_duplicate(kind.as_str());
            rt.stats.count(integration.as_str(), Count::EventDuplicate);
            status(StatusCode::OK)
        }
        Ok(IngestOutcome::Stored { .. }) => {
            rt.metrics.event_received(kind.as_str());
            rt.stats.count(
                integration.as_str(),
                Count::EventReceived {
                    jobs: !rules.is_empty(),
                },
            );
            decision.stored(rt, active, integration.as_str());
            if !rules.is_empty() {
                rt.work.notify_one();
            }
            status(StatusCode::OK)
        }
        Err(e) => {
            tracing::error!(error = %e, "Storing an event failed; the delivery is not acknowledged.");
            retry_later(StatusCode::SERVICE_UNAVAILABLE, 5)
        }
    }
}

/// Keeps Notion's verification token, if a window is open (`runtime::notion`); the operator
/// sees every token received and confirms one. Outside a window: a bare 401, nothing stored.
fn capture_token(
    rt: &Runtime,
    kind: PlatformKind,
    id: &IntegrationId,
    token: &secrets::Secret,
    peer: SocketAddr,
    now: u64,
) -> Reply {
    use crate::runtime::notion::CaptureRefusal;
    match rt.capture_notion_token(id, token, &peer.to_string(), now) {
        Ok(()) => {
            tracing::warn!(integration = %id, peer = %peer, "Notion verification token received; compare it with the one Notion shows and confirm it (`supportopsd notion verification`).");
            json_reply(StatusCode::OK, &json!({"ok": true}))
        }
        Err(CaptureRefusal::NoWindow) => {
            reject(rt, kind, id, "no_verification_window", now);
            status(StatusCode::UNAUTHORIZED)
        }
        Err(CaptureRefusal::Full) => {
            reject(rt, kind, id, "verification_window_full", now);
            status(StatusCode::UNAUTHORIZED)
        }
        Err(CaptureRefusal::NoKey) => {
            tracing::error!(integration = %id, "A verification token arrived but there is no sealing key to keep it with; configure one.");
            retry_later(StatusCode::SERVICE_UNAVAILABLE, 60)
        }
        Err(CaptureRefusal::Failed(e)) => {
            tracing::error!(error = %e, "Storing the verification token failed.");
            retry_later(StatusCode::SERVICE_UNAVAILABLE, 5)
        }
    }
}

/// Default read timeout for webhook bodies.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests;
