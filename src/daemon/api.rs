//! The operator API's views of integrations and rules, and the two verbs that act on an
//! integration now (`test`, `execute`). `server.rs` authenticates and routes; everything here
//! answers for the active revision and never shows a secret: secret credentials and webhook
//! secrets appear only as `"(sensitive)"`, and platform errors are the connectors'
//! redaction-safe classifications. It also streams a backup of the state
//! (`POST /api/state/backup`, [`state_backup`]) and an event corpus (`GET /api/events/export`,
//! [`events_export`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderValue, Request, StatusCode, header};
use serde_json::{Map, Value, json};

use super::auth::{Access, Caller};
use crate::manifest::{Credential, Integration, IntegrationId, Rule};
use crate::platforms::{ActionCall, ActionSpec, PlatformError};
use crate::runtime::gate::Paused;
use crate::runtime::health;
use crate::runtime::stats::{ActionOutcome, Count, RULE_OPERATOR};
use crate::runtime::{Active, Runtime, now_ms};
use crate::state::{
    AuditKind, EventId, HealthRecord, MINUTE_MS, MinuteTotals, RegistrationRecord, State,
};
use crate::webhook::{Reply, reply};

/// Dead-lettered jobs a listing shows at most.
const DEAD_LIST: usize = 1_000;

/// `GET /api/events/{id}/explain[?rule=R]`: why each rule of the stored delivery's integration
/// (or just `R`) did or did not run, against the revision recorded with it (loaded from the
/// daemon's repository when it is not the one in use), and whether the revision in use now
/// would decide differently ([`crate::runtime::explain`]). 400 for a malformed id, 404 for a
/// delivery not (or no longer) stored or a rule in neither revision.
pub async fn event_explain(rt: &Arc<Runtime>, id: &str, rule: Option<&str>) -> Reply {
    use crate::runtime::explain::{Revision, explain_event};
    let Ok(eid) = id.parse::<EventId>() else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("`{}` is not an event id (evt_<n>)", shorten(id)),
        );
    };
    let stored = rt
        .store
        .event_meta(eid)
        .and_then(|meta| Ok(meta.zip(rt.store.event(eid)?)));
    let (meta, event) = match stored {
        Ok(Some(found)) => found,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no stored event `{eid}` (retention may have removed it)"),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let active = rt.active();
    let in_use = active.as_ref().and_then(|a| a.commit.clone());
    let loaded = match &meta.revision {
        None => Err("no revision was recorded with this event (stored before schema 4)".to_owned()),
        Some(c) if active.is_some() && in_use.as_deref() == Some(c.as_str()) => Ok(None),
        Some(c) => {
            let (rt2, c2) = (Arc::clone(rt), c.clone());
            match tokio::task::spawn_blocking(move || rt2.manifest_at(&c2)).await {
                Ok(Ok(set)) => Ok(Some(set)),
                Ok(Err(why)) => Err(format!(
                    "the revision recorded with this event ({c}) is not available: {why}"
                )),
                Err(e) => Err(format!(
                    "the revision recorded with this event ({c}) is not available: {e}"
                )),
            }
        }
    };
    let current = active.as_ref().map(|a| Revision {
        commit: a.commit.as_deref(),
        set: &a.set,
    });
    let recorded = match &loaded {
        Ok(Some(set)) => Ok(Revision {
            commit: meta.revision.as_deref(),
            set,
        }),
        Ok(None) => current.ok_or_else(String::new),
        Err(why) => Err(why.clone()),
    };
    let from_self = rt.is_self(&event);
    match explain_event(&event, &meta, recorded, current, from_self, rule) {
        Ok(v) => json_reply(StatusCode::OK, v),
        Err(e) => error(StatusCode::NOT_FOUND, &e.to_string()),
    }
}

/// At most 64 characters of caller input, for error messages.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if s.chars().count() > 64 {
        out.push('…');
    }
    out
}

/// Largest `execute` body accepted (413 beyond).
pub const MAX_EXECUTE_BODY: usize = 64 * 1024;

/// How a secret value is shown.
const SENSITIVE: &str = "(sensitive)";

/// Dead-lettered jobs looked at when counting an integration's dead letters.
const DEAD_SCAN: usize = 100_000;

fn json_reply(code: StatusCode, mut v: Value) -> Reply {
    with_times(&mut v);
    reply(
        code,
        "application/json",
        serde_json::to_vec_pretty(&v).unwrap_or_default(),
    )
}

/// The fields of the operator API's answers (and the CLI's `--json`) that hold a point in time
/// as milliseconds since the Unix epoch. Durations (`lease_ms`, `delay_ms`, …) are not here.
const TIME_FIELDS: &[&str] = &[
    "at_ms",
    "applied_ms",
    "checked_ms",
    "created_ms",
    "dead_at_ms",
    "dedupe_until_ms",
    "due_ms",
    "expires_at_ms",
    "first_ms",
    "last_ms",
    "lease_until_ms",
    "minute_ms",
    "newest_ms",
    "oldest_ms",
    "received_at_ms",
    "received_ms",
    "since_ms",
    "started_ms",
    "synced_ms",
    "until_ms",
    "updated_ms",
    "window_until_ms",
];

/// Puts an RFC 3339 UTC time beside every epoch-milliseconds field of [`TIME_FIELDS`] in `v`,
/// at any depth: `at_ms` gets `at`, `checked_ms` gets `checked_at` (`received_at_ms` gets
/// `received_at`). A field already there is left alone; a null or a zero (never) gets none.
pub fn with_times(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let mut add = Vec::new();
            for (k, child) in m.iter_mut() {
                if let (true, Some(ms)) = (TIME_FIELDS.contains(&k.as_str()), child.as_u64()) {
                    let base = k.trim_end_matches("_ms");
                    let name = if base.ends_with("_at") || base == "at" {
                        base.to_owned()
                    } else {
                        format!("{base}_at")
                    };
                    if ms > 0 {
                        add.push((name, ms));
                    }
                } else {
                    with_times(child);
                }
            }
            for (name, ms) in add {
                m.entry(name).or_insert_with(|| {
                    Value::String(crate::platforms::supportopsd::events::rfc3339_ms(ms))
                });
            }
        }
        Value::Array(a) => a.iter_mut().for_each(with_times),
        _ => {}
    }
}

fn error(code: StatusCode, message: &str) -> Reply {
    json_reply(code, json!({ "error": message }))
}

fn not_found(what: &str, id: &str) -> Reply {
    error(
        StatusCode::NOT_FOUND,
        &format!("no {what} `{id}` in the active revision"),
    )
}

/// The integration `id` of the active revision.
fn find<'a>(active: Option<&'a Arc<Active>>, id: &str) -> Option<(&'a Active, &'a Integration)> {
    let active = active?;
    let parsed = IntegrationId::parse(id).ok()?;
    let i = active.set.integrations.get(&parsed)?;
    Some((active.as_ref(), i))
}

pub(crate) fn health_json(h: &HealthRecord) -> Value {
    json!({
        "status": h.health,
        "reason": h.health_reason,
        "since_ms": h.since_ms,
        "checked_ms": h.checked_ms,
        "consecutive_failures": h.consecutive_failures,
    })
}

pub(crate) fn sync_json(h: &HealthRecord) -> Value {
    json!({"status": h.sync, "reason": h.sync_reason})
}

pub(crate) fn health_of(rt: &Runtime, id: &str) -> Option<HealthRecord> {
    rt.health_records()
        .into_iter()
        .find(|h| h.integration == id)
}

pub(crate) fn registration_json(r: &RegistrationRecord) -> Value {
    json!({
        "url": r.url,
        "events": r.events,
        "ids": r.ids,
        "expires_at_ms": r.expires_at_ms,
        "synced_ms": r.synced_ms,
        "revision": r.revision,
    })
}

/// An integration's configuration as the manifest declares it, secrets replaced.
fn config_json(i: &Integration) -> Value {
    let credentials: Map<String, Value> = i
        .credentials
        .iter()
        .map(|(name, c)| {
            let shown = match c {
                Credential::Plain(v) => Value::String(v.clone()),
                Credential::Secret(_) => Value::String(SENSITIVE.to_owned()),
            };
            (name.clone(), shown)
        })
        .collect();
    let webhook = i.webhook.as_ref().map(|w| {
        json!({
            "events": w.events,
            "secret": w.secret.as_ref().map(|_| SENSITIVE),
        })
    });
    json!({
        "credentials": credentials,
        "config": i.config,
        "webhook": webhook,
        "base_url": i.base_url,
        "limits": {
            "requests_per_minute": i.limits.requests_per_minute,
            "concurrency": i.limits.concurrency,
        },
    })
}

/// One integration's view: identity, health and sync with reasons, problems, registration and
/// configuration.
pub(crate) fn integration_json(
    rt: &Runtime,
    active: &Active,
    i: &Integration,
    health: Option<&HealthRecord>,
    registration: Option<&RegistrationRecord>,
    problems: &[String],
) -> Value {
    let id = i.id.as_str();
    let connector = active.connector(&i.id).err();
    json!({
        "id": id,
        "platform": i.platform.as_str(),
        "name": i.name,
        "description": i.description,
        "file": i.file,
        "health": health.map(health_json),
        "sync": health.map(sync_json),
        "problems": problems,
        "connector_error": connector,
        "registration": registration.map(registration_json),
        "configuration": config_json(i),
        "rules_triggered": active.set.rules.values().filter(|r| r.trigger.integration == i.id).map(|r| r.id.as_str()).collect::<Vec<_>>(),
        "stats": rt.stats.snapshot(id),
    })
}

pub(crate) fn problems_of(rt: &Runtime) -> Vec<(String, String)> {
    let s = rt.status();
    s.problems
        .iter()
        .chain(&s.registration_problems)
        .map(|p| (p.integration.to_string(), p.message.clone()))
        .collect()
}

pub(crate) fn registration_of(rt: &Runtime, id: &str) -> Option<RegistrationRecord> {
    rt.store.registration(id).ok().flatten()
}

/// The `state` section of `status`: the state's size on disk by kind, what retention removed
/// since the state was created, and why the size limit cannot be met (when it cannot).
pub(crate) fn state_section(store: &dyn State) -> Value {
    let bytes = store.state_bytes();
    let totals = store.retention_totals().unwrap_or_default();
    let audit_records = audit_removed(store);
    json!({
        "bytes": {
            "payloads": bytes.payloads,
            "database": bytes.database,
            "journal": bytes.journal,
        },
        "retention_removed": {
            "events": totals.events,
            "payload_bytes": totals.payload_bytes,
            "audit_records": audit_records,
        },
        "limit_unmet": totals.limit_unmet,
    })
}

/// One integration in `/api/status` and `supportopsd status --state`: health and sync with
/// their reasons, and the registration.
pub(crate) fn status_entry(
    h: &HealthRecord,
    platform: Option<&str>,
    registration: Option<&RegistrationRecord>,
) -> Value {
    json!({
        "id": h.integration,
        "platform": platform,
        "sync": sync_json(h),
        "health": health_json(h),
        "registration": registration.map(registration_json),
    })
}

/// `GET /api/integrations`.
pub fn integrations(rt: &Runtime) -> Reply {
    let active = rt.active();
    let Some(active) = active.as_ref() else {
        return json_reply(
            StatusCode::OK,
            json!({"applied_revision": null, "integrations": []}),
        );
    };
    let health: std::collections::HashMap<String, HealthRecord> = rt
        .health_records()
        .into_iter()
        .map(|h| (h.integration.clone(), h))
        .collect();
    let registrations: std::collections::HashMap<String, RegistrationRecord> = rt
        .store
        .registrations()
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.integration.clone(), r))
        .collect();
    let problems = problems_of(rt);
    let list: Vec<Value> = active
        .set
        .integrations
        .values()
        .map(|i| {
            let id = i.id.as_str();
            let mine: Vec<String> = problems
                .iter()
                .filter(|(p, _)| p == id)
                .map(|(_, m)| m.clone())
                .collect();
            integration_json(rt, active, i, health.get(id), registrations.get(id), &mine)
        })
        .collect();
    json_reply(
        StatusCode::OK,
        json!({"applied_revision": active.commit, "integrations": list}),
    )
}

/// `GET /api/integrations/{id}`.
pub fn integration(rt: &Runtime, id: &str) -> Reply {
    let active = rt.active();
    let Some((active, i)) = find(active.as_ref(), id) else {
        return not_found("integration", id);
    };
    let mine: Vec<String> = problems_of(rt)
        .into_iter()
        .filter(|(p, _)| p == id)
        .map(|(_, m)| m)
        .collect();
    let health = health_of(rt, id);
    let registration = registration_of(rt, id);
    json_reply(
        StatusCode::OK,
        integration_json(rt, active, i, health.as_ref(), registration.as_ref(), &mine),
    )
}

/// `GET /api/integrations/{id}/health`.
pub fn health(rt: &Runtime, id: &str) -> Reply {
    let active = rt.active();
    if find(active.as_ref(), id).is_none() {
        return not_found("integration", id);
    }
    match health_of(rt, id) {
        Some(h) => json_reply(
            StatusCode::OK,
            json!({"integration": id, "health": health_json(&h), "sync": sync_json(&h)}),
        ),
        None => not_found("integration", id),
    }
}

/// The dead-lettered jobs that concern `id`: the action that failed for good was on it, or —
/// when the rule is no longer known — its event came from it.
fn dead_letters_of(rt: &Runtime, active: &Active, id: &IntegrationId) -> usize {
    let prefix = format!("{id}/");
    rt.store
        .dead(DEAD_SCAN)
        .unwrap_or_default()
        .iter()
        .filter(|d| {
            match active
                .rule(&d.job.rule)
                .and_then(|r| r.actions.get(d.job.step))
            {
                Some(action) => action.integration == *id,
                None => d.job.event_key.starts_with(&prefix),
            }
        })
        .count()
}

/// `GET /api/integrations/{id}/stats`.
pub fn stats(rt: &Runtime, id: &str) -> Reply {
    let active = rt.active();
    let Some((active, i)) = find(active.as_ref(), id) else {
        return not_found("integration", id);
    };
    let s = rt.stats.snapshot(id);
    json_reply(
        StatusCode::OK,
        json!({
            "integration": id,
            "events_received": s.events_received,
            "events_rejected": s.events_rejected,
            "events_duplicate": s.events_duplicate,
            "actions_succeeded": s.actions_succeeded,
            "actions_failed": s.actions_failed,
            "rate_limit_waits": s.rate_limit_waits,
            "dead_letters": dead_letters_of(rt, active, &i.id),
            "counted_since": "daemon start (dead_letters: what the state holds now)",
        }),
    )
}

/// An action the operator API ran, as counted.
fn operator_action(action: &str, outcome: ActionOutcome) -> Count<'_> {
    Count::Action {
        rule: RULE_OPERATOR,
        action,
        outcome,
    }
}

/// `POST /api/integrations/{id}/test`: a connection check now, recorded like the reconciler's.
pub async fn test(rt: &Runtime, id: &str) -> Reply {
    match test_value(rt, id).await {
        Some(v) => json_reply(StatusCode::OK, v),
        None => not_found("integration", id),
    }
}

/// What `POST /api/integrations/{id}/test` answers (the console's "test connection" shows the
/// same): `{integration, healthy, health}` after a connection check now, recorded like the
/// reconciler's. `None` when the active revision has no integration `id`.
pub async fn test_value(rt: &Runtime, id: &str) -> Option<Value> {
    let active = rt.active();
    let (active_ref, i) = find(active.as_ref(), id)?;
    let (status, reason) = crate::reconcile::check_one(rt, active_ref, &i.id, i, now_ms()).await;
    let record = health_of(rt, id);
    Some(json!({
        "integration": id,
        "healthy": status == crate::runtime::health::HealthStatus::Healthy,
        "health": record.as_ref().map_or_else(
            || json!({"status": status.as_str(), "reason": reason}),
            health_json,
        ),
    }))
}

/// Checks operator-supplied parameters against the catalogue before anything is sent:
/// unknown names, types, required parameters and one-of groups. Parameters are sent as given
/// (no template is rendered), so a template string is accepted only where text is.
fn check_parameters(spec: &ActionSpec, params: &Map<String, Value>) -> Result<(), String> {
    use crate::platforms::ParamType;
    let action = spec.name;
    for (name, value) in params {
        let Some(ps) = spec.params.iter().find(|p| p.name == name) else {
            let known: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
            return Err(format!(
                "`{action}` has no parameter `{name}`; it takes: {}",
                known.join(", ")
            ));
        };
        let templated = value
            .as_str()
            .is_some_and(|s| s.contains("{{") || s.contains("{%"));
        if templated && !matches!(ps.ty, ParamType::String | ParamType::Any) {
            return Err(format!(
                "`{action}` parameter `{name}`: templates are rendered only in rules; give the value itself"
            ));
        }
        crate::manifest::resolve::check_param(&ps.ty, value)
            .map_err(|why| format!("`{action}` parameter `{name}`: {why}"))?;
    }
    for ps in spec.params.iter().filter(|p| p.required) {
        if params.get(ps.name).is_none_or(Value::is_null) {
            return Err(format!(
                "`{action}` needs the parameter `{}` ({})",
                ps.name, ps.description
            ));
        }
    }
    for group in spec.require_one_of {
        if !group
            .iter()
            .any(|n| params.get(*n).is_some_and(|v| !v.is_null()))
        {
            return Err(format!(
                "`{action}` needs one of the parameters {}",
                group
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}

/// The name of a platform error's class, for API clients.
fn error_kind(e: &PlatformError) -> &'static str {
    e.kind()
}

/// Distinguishes idempotency keys of API calls within one process.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Reads a JSON body of at most [`MAX_EXECUTE_BODY`] bytes, all of it within `read_timeout`
/// (408 otherwise; a larger one is drained for at most that long): `Err` is the reply to give.
async fn read_body<B>(
    req: Request<B>,
    read_timeout: std::time::Duration,
) -> Result<bytes::Bytes, Reply>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body may hold at most {MAX_EXECUTE_BODY} bytes"),
        )
    };
    let (parts, body) = req.into_parts();
    match crate::webhook::read_body(&parts.headers, body, MAX_EXECUTE_BODY, read_timeout).await {
        Ok(body) => Ok(body),
        Err(crate::webhook::BodyError::TooLarge) => Err(too_large()),
        Err(crate::webhook::BodyError::Timeout) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive within the read timeout",
        )),
        Err(crate::webhook::BodyError::Unreadable) => {
            Err(error(StatusCode::BAD_REQUEST, "the body could not be read"))
        }
    }
}

/// `POST /api/integrations/{id}/execute {"action", "parameters"}`: one action now, through the
/// integration's gate, validated against the catalogue first and audited with the caller.
pub async fn execute<B>(rt: &Runtime, id: &str, caller: &Caller, req: Request<B>) -> Reply
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let active = rt.active();
    let Some((active, i)) = find(active.as_ref(), id) else {
        return not_found("integration", id);
    };
    let body = match read_body(req, rt.options.read_timeout).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let usage = "the body must be {\"action\": \"<name>\", \"parameters\": {…}}";
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, usage);
    };
    let Some(action) = v.get("action").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, usage);
    };
    let parameters = match v.get("parameters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "`parameters` must be an object of parameter names and values",
            );
        }
    };
    let descriptor = i.platform.descriptor();
    let Some(spec) = descriptor.action(action) else {
        let known: Vec<&str> = descriptor.actions.iter().map(|a| a.name).collect();
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "{} has no action `{action}`; its actions are: {}",
                i.platform.as_str(),
                known.join(", ")
            ),
        );
    };
    if let Err(why) = check_parameters(spec, &parameters) {
        return error(StatusCode::BAD_REQUEST, &why);
    }
    let connector = match active.connector(&i.id) {
        Ok(c) => c.clone(),
        Err(why) => {
            return error(
                StatusCode::CONFLICT,
                &format!("integration `{id}` cannot run actions: {why}"),
            );
        }
    };
    let call = ActionCall {
        action: spec.name.to_owned(),
        parameters: Value::Object(parameters),
        idempotency_key: format!(
            "supportopsd-api-{}-{}",
            now_ms(),
            CALLS.fetch_add(1, Ordering::Relaxed)
        ),
    };
    let started = tokio::time::Instant::now();
    let result = {
        let _pass = match active.gate(&i.id) {
            Some(gate) => match gate.pass().await {
                Ok(pass) => Some(pass),
                Err(Paused(left)) => return paused(id, spec.name, left),
            },
            None => None,
        };
        connector.execute(&call).await
    };
    let seconds = started.elapsed().as_secs_f64();
    let platform = i.platform.as_str();
    match result {
        Ok(output) => {
            rt.metrics.action(platform, spec.name, "succeeded", seconds);
            rt.stats
                .count(id, operator_action(spec.name, ActionOutcome::Succeeded));
            rt.audit(
                AuditKind::ActionExecuted {
                    action: spec.name.to_owned(),
                    error: None,
                },
                id,
                caller.audit(json!({})),
            );
            json_reply(
                StatusCode::OK,
                json!({"integration": id, "action": spec.name, "result": output.result}),
            )
        }
        Err(e) => {
            rt.metrics.action(platform, spec.name, "failed", seconds);
            rt.stats
                .count(id, operator_action(spec.name, ActionOutcome::Failed));
            if let PlatformError::RateLimited { .. } = &e {
                rt.metrics.rate_limited(id);
                rt.stats.count(id, Count::RateLimited);
                if let (Some(d), Some(gate)) = (e.retry_after(), active.gate(&i.id)) {
                    gate.pause_for(d);
                }
            }
            let message = health::explain(&e);
            rt.audit(
                AuditKind::ActionExecuted {
                    action: spec.name.to_owned(),
                    error: Some(message.clone()),
                },
                id,
                caller.audit(json!({})),
            );
            let code = match &e {
                PlatformError::Invalid(_) => StatusCode::BAD_REQUEST,
                PlatformError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_GATEWAY,
            };
            let mut r = json_reply(
                code,
                json!({
                    "integration": id,
                    "action": spec.name,
                    "error": {
                        "kind": error_kind(&e),
                        "message": message,
                        "retryable": e.retryable(),
                        "retry_after_secs": e.retry_after().map(|d| d.as_secs()),
                        "status": match &e { PlatformError::Rejected { status, .. } => Some(*status), _ => None },
                    },
                }),
            );
            if let Some(d) = e.retry_after() {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)));
            }
            r
        }
    }
}

/// The answer to `execute` while the integration's gate is paused by a platform's
/// `Retry-After`: 429 with the time left (rounded up), and nothing sent.
fn paused(id: &str, action: &str, left: Duration) -> Reply {
    let secs = left
        .as_secs()
        .saturating_add(u64::from(left.subsec_nanos() > 0))
        .max(1);
    let mut r = json_reply(
        StatusCode::TOO_MANY_REQUESTS,
        json!({
            "integration": id,
            "action": action,
            "error": {
                "kind": "rate_limited",
                "message": format!("the platform asked supportopsd to wait (Retry-After); nothing was sent; try again in {secs} s"),
                "retryable": true,
                "retry_after_secs": secs,
                "status": null,
            },
        }),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// The Notion integration `id` of the active revision, or the reply to give.
fn notion_integration(rt: &Runtime, id: &str) -> Result<IntegrationId, Box<Reply>> {
    let active = rt.active();
    let Some((_, i)) = find(active.as_ref(), id) else {
        return Err(Box::new(not_found("integration", id)));
    };
    if i.platform != crate::platforms::PlatformKind::Notion {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            &format!(
                "`{id}` is a {} integration; verification tokens are Notion's",
                i.platform.as_str()
            ),
        )));
    }
    Ok(i.id.clone())
}

/// `GET /api/integrations/{id}/notion/verification`: the window, every token received (the
/// tokens themselves: an admin caller only, 403 for the read-only token) and the confirmation.
pub fn notion_verification(rt: &Runtime, id: &str, caller: &Caller) -> Reply {
    if caller.access == Access::Read {
        return error(
            StatusCode::FORBIDDEN,
            "verification tokens are signing secrets: this route needs the admin token",
        );
    }
    match notion_integration(rt, id) {
        Ok(id) => json_reply(
            StatusCode::OK,
            rt.notion_verification_view(&id, true, now_ms()),
        ),
        Err(r) => *r,
    }
}

/// `POST /api/integrations/{id}/notion/{expect,confirm,reset}-verification` (SEC-04): open a
/// window for Notion's verification token (`{"minutes": N}`, optional), confirm the token
/// Notion shows (`{"token_id": N}` or `{"fingerprint": "sha256:…"}`), or start over. Each is
/// audited with the caller (never a token).
pub async fn notion_action<B>(
    rt: &Runtime,
    id: &str,
    action: &str,
    caller: &Caller,
    req: Request<B>,
) -> Reply
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use crate::runtime::notion::{ActionRefusal, TokenChoice};
    if !matches!(
        action,
        "expect-verification" | "confirm-verification" | "reset-verification"
    ) {
        return error(
            StatusCode::NOT_FOUND,
            "the Notion verification verbs are expect-verification, confirm-verification and reset-verification",
        );
    }
    let iid = match notion_integration(rt, id) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let body = match read_body(req, rt.options.read_timeout).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let v: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => m,
            _ => return error(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
        }
    };
    let refused = |e: ActionRefusal| match e {
        ActionRefusal::Conflict(why) => error(StatusCode::CONFLICT, &why),
        ActionRefusal::Invalid(why) => error(StatusCode::BAD_REQUEST, &why),
        ActionRefusal::Failed(why) => {
            tracing::error!(error = %why, "A Notion verification change failed.");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the daemon's log",
            )
        }
    };
    let now = now_ms();
    match action {
        "expect-verification" => {
            let minutes = match v.get("minutes") {
                None | Some(Value::Null) => None,
                Some(m) => match m.as_u64() {
                    Some(m) => Some(m),
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "`minutes` must be a whole number of minutes",
                        );
                    }
                },
            };
            match rt.expect_notion_verification(&iid, minutes, now) {
                Ok(until) => {
                    rt.audit(
                        AuditKind::NotionVerificationExpected,
                        id,
                        caller.audit(json!({"until_ms": until})),
                    );
                    json_reply(
                        StatusCode::OK,
                        json!({"integration": id, "window_until_ms": until,
                            "next": "create the subscription in Notion (or press \"Resend token\") now; then compare the tokens received with the one Notion shows and confirm it"}),
                    )
                }
                Err(e) => refused(e),
            }
        }
        "confirm-verification" => {
            let choice = match (v.get("token_id"), v.get("fingerprint")) {
                (Some(t), None) => match t
                    .as_u64()
                    .or_else(|| t.as_str().and_then(|s| s.trim().parse().ok()))
                    .and_then(|n| u32::try_from(n).ok())
                {
                    Some(n) => TokenChoice::Id(n),
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "`token_id` must be a token's number",
                        );
                    }
                },
                (None, Some(Value::String(f))) => TokenChoice::Fingerprint(f.trim().to_owned()),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "the body must be {\"token_id\": N} or {\"fingerprint\": \"sha256:…\"}",
                    );
                }
            };
            match rt.confirm_notion_token(&iid, &choice) {
                Ok(t) => {
                    rt.audit(
                        AuditKind::NotionVerificationConfirmed,
                        id,
                        caller.audit(json!({"token_id": t.id, "fingerprint": t.fingerprint, "received_from": t.peer})),
                    );
                    json_reply(
                        StatusCode::OK,
                        json!({"integration": id, "confirmed_token_id": t.id, "fingerprint": t.fingerprint}),
                    )
                }
                Err(e) => refused(e),
            }
        }
        _ => match rt.reset_notion_verification(&iid) {
            Ok(()) => {
                rt.audit(
                    AuditKind::NotionVerificationReset,
                    id,
                    caller.audit(json!({})),
                );
                json_reply(StatusCode::OK, json!({"integration": id, "reset": true}))
            }
            Err(e) => refused(e),
        },
    }
}

pub(crate) fn rule_summary(r: &Rule) -> Value {
    json!({
        "id": r.id.as_str(),
        "name": r.name,
        "description": r.description,
        "enabled": r.enabled,
        "file": r.file,
        "trigger": {
            "integration": r.trigger.integration.as_str(),
            "platform": r.trigger.platform.as_str(),
            "event": r.trigger.event.name,
            "has_conditions": r.trigger.condition.is_some(),
            "allow_self": r.trigger.allow_self,
        },
        "actions": r.actions.iter().map(|a| json!({
            "integration": a.integration.as_str(),
            "platform": a.platform.as_str(),
            "action": a.action.name,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /api/rules`.
pub fn rules(rt: &Runtime) -> Reply {
    let active = rt.active();
    let Some(active) = active.as_ref() else {
        return json_reply(
            StatusCode::OK,
            json!({"applied_revision": null, "rules": []}),
        );
    };
    let list: Vec<Value> = active.set.rules.values().map(rule_summary).collect();
    json_reply(
        StatusCode::OK,
        json!({"applied_revision": active.commit, "rules": list}),
    )
}

/// `GET /api/rules/{id}`: the summary, with the conditions and parameters as written.
pub fn rule(rt: &Runtime, id: &str) -> Reply {
    let active = rt.active();
    let Some(r) = active.as_ref().and_then(|a| a.rule(id)) else {
        return not_found("rule", id);
    };
    let mut v = rule_summary(r);
    v["trigger"]["conditions"] = Value::Object(r.trigger.conditions_source());
    if let Some(actions) = v["actions"].as_array_mut() {
        for (out, a) in actions.iter_mut().zip(&r.actions) {
            out["parameters"] = Value::Object(a.parameters_source());
        }
    }
    json_reply(StatusCode::OK, v)
}

/// Records `GET /api/rollups` answers at most (a longer range is paged with `next_since`).
pub const MAX_ROLLUP_RECORDS: usize = 10_000;

/// `GET /api/rollups?since=&until=&integration=`: the per-minute records of the minutes that
/// overlap `since .. until` (Unix milliseconds; default the last hour), every integration or
/// one. The counts not yet written are written first, so the minute in progress is current.
/// At most [`MAX_ROLLUP_RECORDS`] records, whole minutes only; when there are more,
/// `next_since` says where the next page starts.
pub fn rollups(
    rt: &Runtime,
    since: Option<u64>,
    until: Option<u64>,
    integration: Option<&str>,
) -> Reply {
    let now = now_ms();
    let until = until.unwrap_or(now);
    let since = since.unwrap_or_else(|| until.saturating_sub(3_600_000));
    rt.write_rollups();
    let mut records = match rt
        .store
        .rollups_of(since, until, integration, MAX_ROLLUP_RECORDS + 1)
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "Reading the per-minute counts failed.");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the daemon's log",
            );
        }
    };
    let mut next_since = None;
    if records.len() > MAX_ROLLUP_RECORDS {
        // Whole minutes only: the last minute of the page starts the next one.
        let last = records[MAX_ROLLUP_RECORDS].minute_ms;
        records.truncate(MAX_ROLLUP_RECORDS);
        if records.first().is_some_and(|r| r.minute_ms < last) {
            records.retain(|r| r.minute_ms < last);
        }
        next_since = records
            .last()
            .map(|r| r.minute_ms.saturating_add(MINUTE_MS));
    }
    json_reply(
        StatusCode::OK,
        json!({
            "since": since,
            "until": until,
            "integration": integration,
            "minutes": records,
            "next_since": next_since,
        }),
    )
}

/// The sums of `status`: the last hour and the last 24 hours from the per-minute rollups (the
/// minute in progress included, as far as it is written), so rates do not reset when the
/// daemon restarts. `null` for a window that cannot be read (logged).
pub(crate) fn rates(store: &dyn State, now: u64) -> Value {
    let minute = now / MINUTE_MS;
    let window = |minutes: u64| -> Value {
        let since = minute.saturating_sub(minutes - 1).saturating_mul(MINUTE_MS);
        // One record per minute, however many integrations there are.
        let minutes = match store.rollup_totals(since, now.saturating_add(1)) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "Reading the per-minute counts failed.");
                return Value::Null;
            }
        };
        let mut total = MinuteTotals::default();
        for m in &minutes {
            total.merge(m);
        }
        json!({
            "since_ms": since,
            "events": {
                "accepted": total.events.saturating_sub(total.accepted_no_rule),
                "accepted_no_rule": total.accepted_no_rule,
                "duplicate": total.duplicate,
                "rejected": total.rejected,
                "rejected_by_reason": total.rejected_by_reason,
            },
            "rules_matched": total.matches,
            "actions": total.actions,
        })
    };
    json!({"last_hour": window(60), "last_24h": window(24 * 60)})
}

/// What retention removed, for `status`'s `state` section (the audit part).
pub(crate) fn audit_removed(store: &dyn State) -> Value {
    match store.audit_records_removed() {
        Ok(n) => json!(n),
        Err(e) => {
            tracing::warn!(error = %e, "Reading what retention removed failed.");
            Value::Null
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platforms::PlatformKind;

    fn spec(kind: PlatformKind, name: &str) -> &'static ActionSpec {
        kind.descriptor().action(name).expect("catalogued")
    }

    #[test]
    fn parameters_are_checked_against_the_catalogue() {
        let send = spec(PlatformKind::Slack, "send_message");
        let ok: Map<String, Value> =
            serde_json::from_value(json!({"channel": "#support", "message": "hi {{ there }}"}))
                .unwrap_or_default();
        assert_eq!(check_parameters(send, &ok), Ok(()));
        let unknown: Map<String, Value> =
            serde_json::from_value(json!({"channel": "#support", "message": "x", "colour": 1}))
                .unwrap_or_default();
        let why = check_parameters(send, &unknown).unwrap_err();
        assert!(why.contains("no parameter `colour`"), "{why}");
        let tags = spec(PlatformKind::Zendesk, "add_tags");
        let missing: Map<String, Value> =
            serde_json::from_value(json!({"tags": ["x"]})).unwrap_or_default();
        let why = check_parameters(tags, &missing).unwrap_err();
        assert!(why.contains("`ticket_id`"), "{why}");
        let wrong: Map<String, Value> =
            serde_json::from_value(json!({"ticket_id": 1, "tags": "not-a-list"}))
                .unwrap_or_default();
        let why = check_parameters(tags, &wrong).unwrap_err();
        assert!(why.contains("`tags`"), "{why}");
        let templated: Map<String, Value> =
            serde_json::from_value(json!({"ticket_id": "{{ ticket.id }}", "tags": ["a"]}))
                .unwrap_or_default();
        let why = check_parameters(tags, &templated).unwrap_err();
        assert!(why.contains("templates"), "{why}");
    }
}

/// How many bytes of a streamed answer (a backup, an export) go into one chunk.
const BACKUP_CHUNK: usize = 256 * 1024;

/// The body of a streamed answer: chunks as a blocking thread writes them (the backup as
/// [`Store::backup`] writes it, a corpus as [`crate::runtime::export::write`] writes it). An
/// error ends the body early: the client sees a cut-short answer (and the backup's missing end
/// makes it fail `state verify`).
///
/// [`Store::backup`]: crate::state::Store::backup
#[derive(Debug)]
pub struct BackupBody(tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>);

impl hyper::body::Body for BackupBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| c.map(hyper::body::Frame::data)))
    }
}

/// An answer whose body is whole, or a stream (a backup, an export).
pub type Streamed =
    http::Response<http_body_util::Either<http_body_util::Full<bytes::Bytes>, BackupBody>>;

/// What a streamed answer is written to on its blocking thread: chunks sent to the answer.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(BACKUP_CHUNK),
        ));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client went away before the answer was complete",
            )
        })
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BACKUP_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// `POST /api/state/backup`: a consistent snapshot of the state, streamed as it is written
/// (`application/octet-stream`, the format of `docs/state-backup.md`). Every delivery answered
/// before the request is in it (the ingest writer is settled first). Audited
/// (`state_backed_up`, with the caller, the size and how long writes waited) once the whole
/// snapshot was handed to the connection, or with the reason it failed.
pub async fn state_backup(rt: &Arc<Runtime>, caller: &Caller) -> Streamed {
    if let Err(e) = rt.settle().await {
        tracing::error!(error = %e, "Backup refused: the ingest writer could not settle.");
        return json_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "internal error; see the daemon's log"}),
        )
        .map(http_body_util::Either::Left);
    }
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut detail = caller.audit(json!({}));
    let rt = rt.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(BACKUP_CHUNK),
        };
        let result = rt
            .store
            .backup(&mut out, crate::state::Taken::Online)
            .and_then(|report| {
                std::io::Write::flush(&mut out).map_err(crate::state::BackupError::Write)?;
                Ok(report)
            });
        let error = match result {
            Ok(report) => {
                let quiesced_ms = u64::try_from(report.quiesced.as_millis()).unwrap_or(u64::MAX);
                tracing::info!(
                    bytes = report.contents.bytes,
                    entries = report.contents.entries,
                    files = report.contents.files,
                    quiesced_ms,
                    took_ms = u64::try_from(report.took.as_millis()).unwrap_or(u64::MAX),
                    "State backed up."
                );
                if let Some(d) = detail.as_object_mut() {
                    d.insert("bytes".to_owned(), json!(report.contents.bytes));
                    d.insert("quiesced_ms".to_owned(), json!(quiesced_ms));
                }
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "State backup failed.");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                Some(e.to_string())
            }
        };
        rt.record_audit(
            now_ms(),
            AuditKind::StateBackedUp { error },
            "state",
            "backup",
            detail,
        );
    });
    let mut answer = http::Response::new(http_body_util::Either::Right(BackupBody(rx)));
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    answer
}

/// `GET /api/events/export?since_ms=…&integration=…&scrub_text=true`: the stored deliveries
/// received since `since_ms` (of `integration`), oldest first, as an event corpus
/// (`application/x-ndjson`: a header line, then one record per delivery), streamed as it is
/// written ([`crate::runtime::export::write`]): each payload is pseudonymised here, per
/// delivery, before it leaves the daemon, credentials always redacted. Every delivery answered
/// before the request is in it (the ingest writer is settled first). 400 for a malformed or
/// unknown parameter; a failure after the answer began ends the body early.
pub async fn events_export(rt: &Arc<Runtime>, query: &str) -> Streamed {
    let whole = |r: Reply| r.map(http_body_util::Either::Left);
    let q = match crate::runtime::export::parse_query(query) {
        Ok(q) => q,
        Err(e) => return whole(error(StatusCode::BAD_REQUEST, &e)),
    };
    if let Err(e) = rt.settle().await {
        tracing::error!(error = %e, "Export refused: the ingest writer could not settle.");
        return whole(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the daemon's log",
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let rt = rt.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(BACKUP_CHUNK),
        };
        let started = tokio::time::Instant::now();
        let result =
            crate::runtime::export::write(rt.store.as_ref(), &q, "daemon", now_ms(), &mut out)
                .and_then(|summary| {
                    std::io::Write::flush(&mut out)?;
                    Ok(summary)
                });
        match result {
            Ok(summary) => tracing::info!(
                deliveries = summary.deliveries,
                integration = q.integration.as_ref().map(IntegrationId::as_str),
                since_ms = q.since_ms,
                scrub_text = q.scrub_text,
                took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "Events exported."
            ),
            Err(e) => {
                tracing::warn!(error = %e, "Events export failed.");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let mut answer = http::Response::new(http_body_util::Either::Right(BackupBody(rx)));
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    answer
}

/// `GET /api/jobs/dead` (alias `GET /api/events/dead`): dead-lettered jobs, oldest first.
pub fn dead_jobs(rt: &Runtime) -> Reply {
    match rt.store.dead(DEAD_LIST) {
        Ok(dead) => json_reply(StatusCode::OK, json!({ "dead": dead })),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `POST /api/jobs/{id}/replay` (alias `POST /api/events/{job id}/replay`): puts a
/// dead-lettered job back in the queue, audited.
pub async fn replay_job(rt: &Runtime, caller: &Caller, id: &str) -> Reply {
    let Ok(id) = id.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "not a job id (a number, from `events dead`): {:?}",
                id.chars().take(64).collect::<String>()
            ),
        );
    };
    match replay_one(rt, caller, id).await {
        Ok(job) => json_reply(
            StatusCode::ACCEPTED,
            json!({"replayed": id, "rule": job.rule, "event": job.event_id}),
        ),
        Err(crate::state::Error::NoSuchDeadJob { .. }) => {
            error(StatusCode::NOT_FOUND, &format!("no dead-lettered job {id}"))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Puts the dead-lettered job `id` back in the queue, wakes the executor and audits it
/// (`job_replayed`, with the caller): what `POST /api/jobs/{id}/replay` and the console's
/// replay button do. [`crate::state::Error::NoSuchDeadJob`] when there is no such dead letter.
pub async fn replay_one(
    rt: &Runtime,
    caller: &Caller,
    id: u64,
) -> Result<crate::state::Job, crate::state::Error> {
    let job = rt.store.replay(id, now_ms())?;
    rt.work.notify_one();
    rt.record_audit(
        now_ms(),
        AuditKind::JobReplayed,
        "job",
        &id.to_string(),
        caller.audit(json!({"rule": job.rule, "event": job.event_id})),
    );
    let _ = rt.commit().await;
    Ok(job)
}

/// `GET /api/events?…`: a page of the event history (`runtime::history`).
pub fn events_list(rt: &Runtime, query: &str) -> Reply {
    let q = match crate::runtime::history::parse_list_query(query) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    match crate::runtime::history::list_json(rt.store.as_ref(), &q, now_ms()) {
        Ok(v) => json_reply(StatusCode::OK, v),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `GET /api/events/{id}`: a delivery's trace, its rules evaluated against the active
/// revision.
pub fn event_trace(rt: &Runtime, id: &str) -> Reply {
    let id = match id.parse::<crate::state::EventId>() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match trace_value(rt, id) {
        Ok(Some(v)) => json_reply(StatusCode::OK, v),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            &format!("no stored event {id} (never received, or removed by retention)"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// A delivery's trace as `GET /api/events/{id}` answers it (and the console's event page
/// shows it): [`crate::runtime::history::trace_json`] with its rules evaluated against the
/// active revision. `None` when it is not stored.
pub fn trace_value(
    rt: &Runtime,
    id: crate::state::EventId,
) -> Result<Option<Value>, crate::state::Error> {
    let active = rt.active();
    let rules = |event: &crate::event::Event, jobs: &[crate::state::EventJob]| {
        active
            .as_ref()
            .map(|a| crate::runtime::history::rules_json(a, event, rt.is_self(event), jobs))
    };
    crate::runtime::history::trace_json(rt.store.as_ref(), id, rules)
}

/// A stored delivery as `GET /api/events/{id}/payload` shows it (and `events fixture --state`
/// reads it): the normalised event with its raw `payload`, and what the state recorded with it
/// (the revision in use, the rules it matched). Credential fields a platform puts in its bodies
/// (Slack's `token`, …) are replaced ([`crate::event::pseudonym::scrub_credentials`]);
/// personal data is not: the caller decides what to do with it.
pub(crate) fn stored_event_json(
    event: &crate::event::Event,
    meta: &crate::state::EventMeta,
) -> Value {
    let mut v = json!({
        "id": meta.id,
        "received_ms": meta.received_ms,
        "received_at": crate::platforms::supportopsd::events::rfc3339_ms(meta.received_ms),
        "integration": meta.integration.as_str(),
        "platform": meta.platform.as_str(),
        "event": meta.name,
        "event_id": meta.event_id,
        "revision": meta.revision,
        "rules": meta.rules,
        "time": event.time,
        "actors": event.all_actors(),
        "objects": event.objects,
        "changes": event.changes,
        "payload": event.payload,
    });
    crate::event::pseudonym::scrub_credentials(&mut v);
    v
}

/// `GET /api/events/{id}/payload`: one stored delivery ([`stored_event_json`]); 400 for a
/// malformed id, 404 for one not (or no longer) stored.
pub async fn event_payload(rt: &Runtime, id: &str) -> Reply {
    let id = match id.parse::<crate::state::EventId>() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    // Every delivery answered so far is readable (the writer may be holding some).
    if let Err(e) = rt.settle().await {
        tracing::error!(error = %e, "Settling the ingest writer failed.");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the daemon's log",
        );
    }
    match (rt.store.event(id), rt.store.event_meta(id)) {
        (Ok(Some(event)), Ok(Some(meta))) => {
            json_reply(StatusCode::OK, stored_event_json(&event, &meta))
        }
        (Ok(_), Ok(_)) => error(
            StatusCode::NOT_FOUND,
            &format!("no stored event `{id}` (unknown, or removed by retention)"),
        ),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "Reading a stored event failed.");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the daemon's log",
            )
        }
    }
}

/// Reads an operator API request's JSON object body (at most 64 KiB; an empty body is `{}`):
/// `Err` is the answer to give instead.
async fn json_body<B>(rt: &Runtime, req: Request<B>) -> Result<Map<String, Value>, Box<Reply>>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let body = crate::webhook::read_body(&parts.headers, body, 64 * 1024, rt.options.read_timeout)
        .await
        .map_err(|e| Box::new(crate::webhook::status(e.status())))?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object",
        ))),
    }
}

/// `POST /api/jobs/replay-dead {"integration"?}`: re-queues every dead-lettered job (of one
/// integration's deliveries when named), each audited (`job_replayed`, with the caller) like
/// `POST /api/jobs/{id}/replay`. Answers 202 with the jobs re-queued.
pub async fn replay_dead<B>(rt: &Runtime, caller: &Caller, req: Request<B>) -> Reply
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let body = match json_body(rt, req).await {
        Ok(body) => body,
        Err(reply) => return *reply,
    };
    let integration = match body.get("integration") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match IntegrationId::parse(s) {
            Ok(id) => Some(id),
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("`integration`: {e}")),
        },
        Some(_) => return error(StatusCode::BAD_REQUEST, "`integration` must be a string"),
    };
    if let Some(k) = body.keys().find(|k| k.as_str() != "integration") {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("unknown field `{k}` (the body is {{\"integration\": \"…\"}}, or empty)"),
        );
    }
    let replayed = match replay_all(rt, caller, integration.as_ref()).await {
        Ok(replayed) => replayed,
        Err(e) => {
            tracing::error!(error = %e, "Replaying dead letters failed.");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the daemon's log",
            );
        }
    };
    json_reply(
        StatusCode::ACCEPTED,
        json!({
            "replayed": replayed.len(),
            "jobs": replayed,
            "integration": integration.as_ref().map(IntegrationId::as_str),
        }),
    )
}

/// Re-queues every dead-lettered job (of `integration`'s deliveries when given), each audited
/// (`job_replayed`, with the caller, `all_dead`), wakes the executor and flushes: what
/// `POST /api/jobs/replay-dead` and the console's "replay all" do. Returns the jobs re-queued
/// (`{id, rule, event}`); one replayed meanwhile by another caller is skipped.
pub async fn replay_all(
    rt: &Runtime,
    caller: &Caller,
    integration: Option<&IntegrationId>,
) -> Result<Vec<Value>, crate::state::Error> {
    let dead = rt.store.dead(DEAD_SCAN)?;
    let prefix = integration.map(|i| format!("{i}/"));
    let mut replayed = Vec::new();
    for d in dead {
        if prefix
            .as_deref()
            .is_some_and(|p| !d.job.event_key.starts_with(p))
        {
            continue;
        }
        let now = now_ms();
        match rt.store.replay(d.job.id, now) {
            Ok(job) => {
                rt.record_audit(
                    now,
                    AuditKind::JobReplayed,
                    "job",
                    &job.id.to_string(),
                    caller
                        .audit(json!({"rule": job.rule, "event": job.event_id, "all_dead": true})),
                );
                replayed.push(json!({"id": job.id, "rule": job.rule, "event": job.event_id}));
            }
            // Replayed meanwhile by another caller.
            Err(crate::state::Error::NoSuchDeadJob { .. }) => {}
            Err(e) => {
                if !replayed.is_empty() {
                    rt.work.notify_one();
                }
                return Err(e);
            }
        }
    }
    if !replayed.is_empty() {
        rt.work.notify_one();
    }
    if let Err(e) = rt.commit().await {
        tracing::warn!(error = %e, "Flushing replayed jobs failed.");
    }
    Ok(replayed)
}

/// Why a rule is not run again by a redelivery, from the delivery's jobs for it (`None`: it
/// never got a job, or only jobs that ran no action and can no longer run: run it).
fn already_ran(jobs: &[&crate::state::EventJob]) -> Option<String> {
    use crate::state::JobOutcome;
    let mut why = None;
    for j in jobs {
        let reason = match &j.outcome {
            JobOutcome::Done { .. } => format!("job {} ran it (done)", j.job),
            _ if j.steps_done > 0 => format!("job {} ran {} of its actions", j.job, j.steps_done),
            JobOutcome::Queued { .. }
            | JobOutcome::Running { .. }
            | JobOutcome::Retrying { .. } => {
                format!("job {} has not finished yet", j.job)
            }
            JobOutcome::Dead { .. } => format!(
                "job {} is dead-lettered before its first action: `supportopsd events replay {}` runs it again",
                j.job, j.job
            ),
        };
        why.get_or_insert(reason);
    }
    why
}

/// `POST /api/events/{id}/redeliver {"rule"?, "force"?}`: evaluates the stored delivery
/// again against the revision in use (the runtime's matching: conditions, disabled rules,
/// the loop guard) and creates one job per matching rule that has not already run for it
/// ([`already_ran`], from the delivery's history; a delivery stored before the history
/// existed counts every rule it matched then as run). `rule` limits it to one rule, which
/// must match; re-running a rule that already ran needs `rule` and `force` (a duplicate
/// message to a customer is worse than a missing one). Audited (`event_redelivered`, with the
/// caller and the revision). 202 with the jobs created and the rules skipped, and why.
pub async fn redeliver<B>(rt: &Runtime, id: &str, caller: &Caller, req: Request<B>) -> Reply
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let id = match id.parse::<crate::state::EventId>() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let body = match json_body(rt, req).await {
        Ok(body) => body,
        Err(reply) => return *reply,
    };
    if let Some(k) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "rule" | "force"))
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "unknown field `{k}` (the body is {{\"rule\": \"…\", \"force\": true}}, both optional)"
            ),
        );
    }
    let rule = match body.get("rule") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return error(StatusCode::BAD_REQUEST, "`rule` must be a string"),
    };
    let force = match body.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return error(StatusCode::BAD_REQUEST, "`force` must be true or false"),
    };
    if force && rule.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "`force` re-runs one rule that already ran: name it with `rule`",
        );
    }
    let internal = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "Redelivering an event failed.");
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the daemon's log",
        )
    };
    // Every delivery answered so far is readable (the writer may be holding some).
    if let Err(e) = rt.settle().await {
        return internal(&e);
    }
    let (event, meta) = match (rt.store.event(id), rt.store.event_meta(id)) {
        (Ok(Some(e)), Ok(Some(m))) => (e, m),
        (Ok(_), Ok(_)) => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("no stored event `{id}` (unknown, or removed by retention)"),
            );
        }
        (Err(e), _) | (_, Err(e)) => return internal(&e),
    };
    let Some(active) = rt.active() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no revision is in use yet");
    };
    let from_self = rt.is_self(&event);
    if meta.rules.iter().any(|r| r == crate::state::ENRICHMENT)
        || active.needs_enrichment(&event, from_self)
    {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "`{id}` lacks fields its rules read (its enrichment has not completed): replay its enrichment job instead (`supportopsd events dead`)"
            ),
        );
    }
    let matched: Vec<String> = active
        .matching(&event, &event.context_view(), from_self)
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    let history = match rt.store.event_jobs(id) {
        Ok(jobs) => jobs,
        Err(e) => return internal(&e),
    };
    let revision = active.commit.clone();
    let considered: Vec<String> = match &rule {
        Some(r) => {
            if active.rule(r).is_none() {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("no rule `{r}` in the revision in use"),
                );
            }
            if !matched.contains(r) {
                return error(
                    StatusCode::CONFLICT,
                    &format!(
                        "rule `{r}` does not match `{id}` under the revision in use (`supportopsd events explain {id} --rule {r}` says why)"
                    ),
                );
            }
            vec![r.clone()]
        }
        None => matched.clone(),
    };
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    for r in &considered {
        let jobs: Vec<&crate::state::EventJob> = history.iter().filter(|j| &j.rule == r).collect();
        // Stored before the history index: the rules it matched got jobs then.
        let reason = already_ran(&jobs).or_else(|| {
            (history.is_empty() && meta.rules.contains(r))
                .then(|| "it matched when the delivery arrived (no job history kept)".to_owned())
        });
        match reason {
            Some(why) if !force => skipped.push(json!({"rule": r, "reason": why})),
            _ => run.push(r.clone()),
        }
    }
    if rule.is_some() && run.is_empty() {
        let why = skipped
            .first()
            .and_then(|s| s["reason"].as_str())
            .unwrap_or_default()
            .to_owned();
        return error(
            StatusCode::CONFLICT,
            &format!(
                "rule `{}` already ran for `{id}` ({why}); re-running it may send a duplicate: add `force`",
                considered.join(", ")
            ),
        );
    }
    let mut created = Vec::new();
    if !run.is_empty() {
        let now = now_ms();
        let audit = [crate::state::AuditRecord {
            at_ms: now,
            kind: AuditKind::EventRedelivered { rules: run.clone() },
            resource_type: "event".into(),
            resource_id: id.to_string(),
            detail: caller.audit(json!({"revision": revision, "forced": force})),
        }];
        match rt.store.redeliver_jobs(id, &run, now, &audit) {
            Ok(jobs) => {
                created = jobs
                    .iter()
                    .map(|j| json!({"rule": j.rule, "job": j.id}))
                    .collect();
            }
            Err(crate::state::Error::NoSuchEvent { .. }) => {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("no stored event `{id}` (removed by retention)"),
                );
            }
            Err(e) => return internal(&e),
        }
        rt.work.notify_one();
        if let Err(e) = rt.commit().await {
            tracing::warn!(error = %e, "Flushing a redelivery failed.");
        }
    }
    json_reply(
        StatusCode::ACCEPTED,
        json!({
            "event": id,
            "revision": revision,
            "matched": matched,
            "redelivered": created,
            "skipped": skipped,
        }),
    )
}

#[cfg(test)]
mod time_tests {
    use super::*;

    #[test]
    fn times_get_rfc3339_beside_epoch_milliseconds_at_any_depth() {
        let mut v = json!({
            "applied_ms": 1_700_000_000_000_u64,
            "dead": [{"dead_at_ms": 1_700_000_000_000_u64, "job": {"due_ms": 0, "lease_until_ms": null}}],
            "records": [{"at_ms": 1_700_000_001_000_u64, "at": "kept"}],
            "received_at_ms": 1_700_000_000_000_u64,
            "lease_ms": 30_000,
        });
        with_times(&mut v);
        assert_eq!(v["applied_at"], "2023-11-14T22:13:20Z");
        assert_eq!(v["dead"][0]["dead_at"], "2023-11-14T22:13:20Z");
        assert_eq!(v["received_at"], "2023-11-14T22:13:20Z");
        // Never (0), unknown (null), already there, and durations: left alone.
        assert!(v["dead"][0]["job"].get("due_at").is_none());
        assert!(v["dead"][0]["job"].get("lease_until_at").is_none());
        assert_eq!(v["records"][0]["at"], "kept");
        assert!(v.get("lease_at").is_none());
    }
}
