//! Event history and traces as the operator API and the CLI show them (`GET /api/events`,
//! `GET /api/events/{id}`, `supportopsd events list | show`): the listing's query (filters,
//! limit, opaque cursor) and its JSON, a delivery's trace (the normalised event, every rule of
//! its integration and event with match or no match, its jobs with each action attempt, what
//! its shadow rules would have done, its audit records), and the redaction of rendered
//! parameters. Reads the state through
//! [`State`] (the history index, never a scan) and, for the rules, the active revision.

use serde_json::{Map, Value, json};

use crate::event::Event;
use crate::platforms::supportopsd::events::rfc3339_ms;
use crate::runtime::active::Active;
use crate::secrets;
use crate::state::{
    AuditKind, AuditRecord, EventId, EventJob, EventMeta, HistoryFilter, JobOutcome, Outcome, State,
};

/// Deliveries per page when the caller gives no `limit`.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` a page may ask for.
pub const MAX_LIMIT: usize = 1_000;
/// Refusal records shown with a page, at most.
const MAX_REJECTIONS: usize = 200;
/// The window of refusals shown when the page gives no `since`: the last day.
const REJECTIONS_WINDOW_MS: u64 = 24 * 3_600_000;
/// Rendered strings longer than this are cut in traces and audit records.
const MAX_TEXT: usize = 2_000;
/// A platform's answer is summarised in at most this many characters.
const MAX_ANSWER: usize = 300;

/// A listing request: which deliveries, how many, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// The filters.
    pub filter: HistoryFilter,
    /// At most this many deliveries (1..=[`MAX_LIMIT`]).
    pub limit: usize,
    /// List from before this delivery (the decoded cursor).
    pub before: Option<EventId>,
}

/// The opaque cursor of the page after `id` (clients pass it back as `cursor=`).
pub fn cursor(id: EventId) -> String {
    format!("c{:x}", id.0 ^ CURSOR_MASK)
}

/// Mixed into cursors so that nobody mistakes them for event ids.
const CURSOR_MASK: u64 = 0x005e_ed0f_4157_0e11;

fn parse_cursor(s: &str) -> Option<EventId> {
    let hex = s.strip_prefix('c')?;
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(hex, 16)
        .ok()
        .map(|n| EventId(n ^ CURSOR_MASK))
}

/// Parses a listing's query string (`integration=&event=&rule=&outcome=&since=&until=&limit=
/// &cursor=`; times in Unix milliseconds). Unknown parameters and bad values are errors that
/// say which and why (the API answers them with 400).
pub fn parse_list_query(query: &str) -> Result<ListQuery, String> {
    let mut q = ListQuery {
        filter: HistoryFilter::default(),
        limit: DEFAULT_LIMIT,
        before: None,
    };
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if v.is_empty() {
            continue;
        }
        let ms = |name: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("`{name}` must be Unix milliseconds, not {v:?}"))
        };
        match &*k {
            "integration" => q.filter.integration = Some(v.to_string()),
            "event" => q.filter.event = Some(v.to_string()),
            "rule" => q.filter.rule = Some(v.to_string()),
            "outcome" => q.filter.outcome = Some(v.parse::<Outcome>()?),
            "since" => q.filter.since_ms = Some(ms("since")?),
            "until" => q.filter.until_ms = Some(ms("until")?),
            "limit" => {
                q.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!("`limit` must be a number from 1 to {MAX_LIMIT}, not {v:?}")
                    })?;
            }
            "cursor" => {
                q.before = Some(parse_cursor(&v).ok_or_else(|| {
                    "`cursor` is not a cursor this API gave (pass `next_cursor` back as it is)"
                        .to_owned()
                })?);
            }
            other => {
                return Err(format!(
                    "unknown parameter {:?} (expected integration, event, rule, outcome, since, until, limit, cursor)",
                    other.chars().take(32).collect::<String>()
                ));
            }
        }
    }
    q.filter.check().map_err(|e| e.0)?;
    Ok(q)
}

/// A time as `<name>_ms` and `<name>_at` (RFC 3339).
fn stamp(m: &mut Map<String, Value>, name: &str, ms: u64) {
    m.insert(format!("{name}_ms"), json!(ms));
    m.insert(format!("{name}_at"), json!(rfc3339_ms(ms)));
}

/// How a delivery was accepted, from its record: one of supportopsd's own events, polled from
/// the platform (Google Sheets' appended rows), or a webhook delivery whose signature or shared
/// secret was verified (refused ones are not stored: see the listing's `rejections`).
fn accepted_how(meta: &EventMeta) -> &'static str {
    if meta.platform.is_builtin() {
        "supportopsd's own event"
    } else if meta.platform == crate::platforms::PlatformKind::GoogleSheets
        && meta.name == "row_added"
    {
        "polled from the platform"
    } else {
        "webhook delivery, verified"
    }
}

/// One job's state as JSON, times with `_at` beside them.
pub fn job_json(j: &EventJob) -> Value {
    let mut outcome = Map::new();
    match &j.outcome {
        JobOutcome::Queued { due_ms } => {
            outcome.insert("state".into(), json!("queued"));
            stamp(&mut outcome, "due", *due_ms);
        }
        JobOutcome::Running { lease_until_ms } => {
            outcome.insert("state".into(), json!("running"));
            stamp(&mut outcome, "lease_until", *lease_until_ms);
        }
        JobOutcome::Retrying {
            due_ms,
            attempts,
            error,
        } => {
            outcome.insert("state".into(), json!("retrying"));
            stamp(&mut outcome, "due", *due_ms);
            outcome.insert("attempts".into(), json!(attempts));
            outcome.insert("error".into(), json!(error));
        }
        JobOutcome::Done { at_ms } => {
            outcome.insert("state".into(), json!("done"));
            stamp(&mut outcome, "at", *at_ms);
        }
        JobOutcome::Dead { at_ms, error } => {
            outcome.insert("state".into(), json!("dead"));
            stamp(&mut outcome, "at", *at_ms);
            outcome.insert("error".into(), json!(error));
        }
    }
    let mut m = Map::new();
    m.insert("job".into(), json!(j.job));
    m.insert("rule".into(), json!(j.rule));
    m.insert("outcome".into(), Value::Object(outcome));
    m.insert("steps_done".into(), json!(j.steps_done));
    m.insert("steps".into(), json!(j.steps));
    stamp(&mut m, "updated", j.updated_ms);
    Value::Object(m)
}

/// A delivery's summary: when, where, what, how accepted, rules, outcome, jobs.
fn delivery_json(meta: &EventMeta, outcome: Outcome, jobs: &[EventJob]) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(meta.id));
    stamp(&mut m, "received", meta.received_ms);
    m.insert("integration".into(), json!(meta.integration.as_str()));
    m.insert("platform".into(), json!(meta.platform.as_str()));
    m.insert("event".into(), json!(meta.name));
    m.insert("platform_event_id".into(), json!(meta.event_id));
    m.insert("accepted".into(), json!(accepted_how(meta)));
    m.insert("revision".into(), json!(meta.revision));
    m.insert("rules".into(), json!(meta.rules));
    m.insert("outcome".into(), json!(outcome));
    m.insert(
        "jobs".into(),
        Value::Array(jobs.iter().map(job_json).collect()),
    );
    Value::Object(m)
}

/// A page of the listing as JSON: `events` (newest first), `next_cursor`, the query echoed,
/// and `rejections`, the aggregated refusals of the page's window (one record per integration,
/// reason and minute: refused deliveries are not stored one by one).
pub fn list_json(
    store: &dyn State,
    q: &ListQuery,
    now_ms: u64,
) -> Result<Value, crate::state::Error> {
    let page = store.history(&q.filter, q.before, q.limit)?;
    let events: Vec<Value> = page
        .items
        .iter()
        .map(|i| delivery_json(&i.meta, i.outcome, &i.jobs))
        .collect();
    let until = q.filter.until_ms.unwrap_or(now_ms);
    let since = q
        .filter
        .since_ms
        .unwrap_or_else(|| until.saturating_sub(REJECTIONS_WINDOW_MS));
    let rejections: Vec<Value> =
        if q.filter.rule.is_some() || q.filter.outcome.is_some() || q.filter.event.is_some() {
            // A refused delivery has no event name, rule or outcome.
            Vec::new()
        } else {
            store
                .rejections(
                    since,
                    until,
                    q.filter.integration.as_deref(),
                    MAX_REJECTIONS,
                )?
                .iter()
                .map(rejection_json)
                .collect()
        };
    let f = &q.filter;
    Ok(json!({
        "events": events,
        "next_cursor": page.next.map(cursor),
        "filter": {
            "integration": f.integration, "event": f.event, "rule": f.rule,
            "outcome": f.outcome, "since_ms": f.since_ms, "until_ms": f.until_ms,
            "limit": q.limit,
        },
        "rejections": {
            "since_ms": since, "since_at": rfc3339_ms(since),
            "until_ms": until, "until_at": rfc3339_ms(until),
            "windows": rejections,
        },
    }))
}

fn rejection_json(r: &AuditRecord) -> Value {
    let reason = match &r.kind {
        AuditKind::EventRejected { reason } => reason.as_str(),
        _ => "",
    };
    let mut m = Map::new();
    m.insert("integration".into(), json!(r.resource_id));
    m.insert("reason".into(), json!(reason));
    m.insert(
        "count".into(),
        r.detail.get("count").cloned().unwrap_or(json!(1)),
    );
    let first = r
        .detail
        .get("first_ms")
        .and_then(Value::as_u64)
        .unwrap_or(r.at_ms);
    let last = r
        .detail
        .get("last_ms")
        .and_then(Value::as_u64)
        .unwrap_or(r.at_ms);
    stamp(&mut m, "first", first);
    stamp(&mut m, "last", last);
    Value::Object(m)
}

/// Rendered parameters as traces and audit records show them: values of parameters whose name
/// marks them sensitive (`token`, `secret`, `password`, `api_key`, `authorization`, …, at any
/// depth) replaced by `"[redacted]"`, long strings cut.
pub fn redacted(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let shown = if secrets::is_credential_name(k) {
                        json!("[redacted]")
                    } else {
                        redacted(v)
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redacted).collect()),
        Value::String(s) if s.chars().count() > MAX_TEXT => {
            let cut: String = s.chars().take(MAX_TEXT).collect();
            json!(format!("{cut}… ({} characters)", s.chars().count()))
        }
        other => other.clone(),
    }
}

/// A platform's answer in one short line (its result fields as compact JSON, cut).
pub fn answer_summary(result: &Value) -> String {
    let text = redacted(result).to_string();
    if text.chars().count() <= MAX_ANSWER {
        return text;
    }
    let cut: String = text.chars().take(MAX_ANSWER).collect();
    format!("{cut}…")
}

/// Each rule on the delivery's integration and event in the active revision, with whether it
/// matches now: `matched`, `no_match` (its condition does not hold), `disabled`, or
/// `loop_guard` (the event is supportopsd's own and the rule does not allow that). `ran`: a job
/// was created for it; `explanation` is the rule's verdict with its conditions' explanation
/// (as `GET /api/events/{id}/explain` gives it, against the revision in use).
pub fn rules_json(active: &Active, event: &Event, from_self: bool, jobs: &[EventJob]) -> Value {
    // The decision and its explanation come from rule selection itself (`select::explain`,
    // what `Active::matching` decides with), for the rules listening to this event.
    let view = event.context_view();
    let mut verdicts = active
        .explain(event, &view, from_self, None)
        .unwrap_or_default();
    verdicts.retain(|v| v.rule.trigger.event.name == event.name);
    verdicts.sort_by(|a, b| a.rule.id.as_str().cmp(b.rule.id.as_str()));
    let out: Vec<Value> = verdicts
        .iter()
        .map(|v| {
            let id = v.rule.id.as_str();
            json!({
                "rule": id,
                "result": v.verdict.outcome(),
                "matched": v.verdict.matched(),
                "ran": jobs.iter().any(|j| j.rule == id),
                "mode": v.rule.mode.as_str(),
                "file": v.rule.file,
                "explanation": v.to_json(),
            })
        })
        .collect();
    json!({
        "revision": active.commit,
        "evaluated": true,
        "rules": out,
    })
}

/// The attempts of a job, from its audit records (in time order): each `action_attempted` with
/// what followed it for the same step (succeeded, failed, dead-lettered).
fn attempts_of(job: u64, audit: &[AuditRecord]) -> Vec<Value> {
    let id = job.to_string();
    let mut out: Vec<Map<String, Value>> = Vec::new();
    for r in audit
        .iter()
        .filter(|r| r.resource_type == "job" && r.resource_id == id)
    {
        let d = &r.detail;
        match &r.kind {
            AuditKind::ActionAttempted { step } => {
                let mut m = Map::new();
                m.insert("step".into(), json!(step));
                m.insert(
                    "action".into(),
                    d.get("action").cloned().unwrap_or(Value::Null),
                );
                m.insert(
                    "integration".into(),
                    d.get("integration").cloned().unwrap_or(Value::Null),
                );
                m.insert(
                    "attempt".into(),
                    d.get("attempt").cloned().unwrap_or(Value::Null),
                );
                stamp(&mut m, "started", r.at_ms);
                m.insert(
                    "parameters".into(),
                    d.get("parameters").map_or(Value::Null, redacted),
                );
                m.insert("result".into(), json!("no answer recorded"));
                out.push(m);
            }
            AuditKind::ActionDeadLettered { step, .. }
                if out.last().is_some_and(|m| {
                    m.get("step") == Some(&json!(step)) && m.get("result") == Some(&json!("failed"))
                }) =>
            {
                // The failure that ended the job: said on the same attempt.
                if let Some(m) = out.last_mut() {
                    m.insert("dead_lettered".into(), json!(true));
                    stamp(m, "dead_lettered", r.at_ms);
                }
            }
            AuditKind::ActionSucceeded { step }
            | AuditKind::ActionFailed { step, .. }
            | AuditKind::ActionDeadLettered { step, .. } => {
                let open = out.iter_mut().rev().find(|m| {
                    m.get("step") == Some(&json!(step))
                        && m.get("result") == Some(&json!("no answer recorded"))
                });
                let m = match open {
                    Some(m) => m,
                    None => {
                        // Dead-lettered before an attempt (a template failed, the rule is gone).
                        let mut m = Map::new();
                        m.insert("step".into(), json!(step));
                        stamp(&mut m, "started", r.at_ms);
                        out.push(m);
                        let Some(last) = out.last_mut() else { continue };
                        last
                    }
                };
                let (result, error) = match &r.kind {
                    AuditKind::ActionSucceeded { .. } => ("succeeded", None),
                    AuditKind::ActionFailed { error, .. } => ("failed", Some(error)),
                    AuditKind::ActionDeadLettered { error, .. } => ("dead_lettered", Some(error)),
                    _ => ("", None),
                };
                m.insert("result".into(), json!(result));
                if let Some(e) = error {
                    m.insert("error".into(), json!(e));
                }
                stamp(m, "finished", r.at_ms);
                for key in ["duration_ms", "classification", "retryable", "answer"] {
                    if let Some(v) = d.get(key) {
                        m.insert(key.into(), v.clone());
                    }
                }
                if let Some(due) = d.get("retry_due_ms").and_then(Value::as_u64) {
                    stamp(m, "retry_due", due);
                }
            }
            _ => {}
        }
    }
    out.into_iter().map(Value::Object).collect()
}

/// The rules a runtime hold kept from the delivery when it arrived (its `rule_paused_skipped`
/// audit records): `result` `paused`, not matched, with the hold's reason (`paused_reason`)
/// and `note` "paused (reason)", whatever the revision in use says now; listed when missing.
fn mark_paused(rules: &mut Value, audit: &[AuditRecord]) {
    for r in audit {
        let AuditKind::RulePausedSkipped { rule } = &r.kind else {
            continue;
        };
        let reason = r.detail.get("reason").and_then(Value::as_str).unwrap_or("");
        let Some(list) = rules.get_mut("rules").and_then(Value::as_array_mut) else {
            return;
        };
        let entry = match list.iter_mut().position(|v| v["rule"] == rule.as_str()) {
            Some(i) => &mut list[i],
            None => {
                list.push(json!({"rule": rule, "ran": false, "explanation": Value::Null}));
                let last = list.len() - 1;
                &mut list[last]
            }
        };
        if let Value::Object(m) = entry {
            m.insert("result".into(), json!("paused"));
            m.insert("matched".into(), json!(false));
            m.insert("paused_reason".into(), json!(reason));
            m.insert(
                "note".into(),
                json!(format!("paused ({reason}): no job was created")),
            );
        }
    }
}

/// A delivery's trace: its record, the normalised event (the context conditions and templates
/// see), its rules (`rules`: from [`rules_json`] when a revision is active, else the rules it
/// matched when stored), its jobs with their attempts, and its audit records oldest first.
/// `None` when it is not stored.
pub fn trace_json(
    store: &dyn State,
    id: EventId,
    rules: impl FnOnce(&Event, &[EventJob]) -> Option<Value>,
) -> Result<Option<Value>, crate::state::Error> {
    let Some(meta) = store.event_meta(id)? else {
        return Ok(None);
    };
    let event = store.event(id)?;
    let (outcome, jobs) = store.event_outcome(id, !meta.rules.is_empty())?;
    let audit = store.event_audit(id)?;
    let rules = event
        .as_ref()
        .and_then(|e| rules(e, &jobs))
        .unwrap_or_else(|| {
            json!({
                "revision": meta.revision,
                "evaluated": false,
                "note": "no revision is active here: the rules the delivery matched when it was stored",
                "rules": meta.rules.iter().map(|r| json!({
                    "rule": r, "result": "matched", "matched": true,
                    "ran": jobs.iter().any(|j| j.rule == *r), "explanation": Value::Null,
                })).collect::<Vec<_>>(),
            })
        });
    let mut rules = rules;
    mark_paused(&mut rules, &audit);
    let jobs_out: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let mut v = job_json(j);
            if let Value::Object(m) = &mut v {
                m.insert("attempts".into(), Value::Array(attempts_of(j.job, &audit)));
            }
            v
        })
        .collect();
    let shadow = shadow_of(&audit);
    let audit_out: Vec<Value> = audit
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("at".into(), json!(rfc3339_ms(r.at_ms)));
                if let Some(d) = m.get_mut("detail") {
                    *d = redacted(d);
                }
            }
            v
        })
        .collect();
    Ok(Some(json!({
        "event": delivery_json(&meta, outcome, &jobs),
        "view": event.map(|e| redacted(&e.context())),
        "rules": rules,
        "jobs": jobs_out,
        "shadow": shadow,
        "audit": audit_out,
    })))
}

/// What the delivery's shadow rules would have done (`runtime::shadow`), from its
/// `rule_shadowed` audit records: per rule, each action with its rendered parameters
/// (redacted), and the rendering error if one stopped it.
fn shadow_of(audit: &[AuditRecord]) -> Vec<Value> {
    audit
        .iter()
        .filter_map(|r| match &r.kind {
            AuditKind::RuleShadowed { rule } => {
                let mut m = Map::new();
                m.insert("rule".into(), json!(rule));
                stamp(&mut m, "evaluated", r.at_ms);
                m.insert(
                    "actions".into(),
                    r.detail.get("actions").map_or(json!([]), redacted),
                );
                if let Some(e) = r.detail.get("error") {
                    m.insert("error".into(), redacted(e));
                }
                Some(Value::Object(m))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_bad_ones_say_why() {
        let q = parse_list_query(
            "integration=fd&event=ticket%2Ecreated&rule=r1&outcome=dead&since=5&until=9&limit=7",
        )
        .unwrap();
        assert_eq!(q.filter.event.as_deref(), Some("ticket.created"));
        assert_eq!(q.filter.outcome, Some(Outcome::Dead));
        assert_eq!(
            (q.filter.since_ms, q.filter.until_ms, q.limit),
            (Some(5), Some(9), 7)
        );
        assert_eq!(parse_list_query("").unwrap().limit, DEFAULT_LIMIT);
        let c = cursor(EventId(4242));
        assert_ne!(c, "4242");
        assert_eq!(
            parse_list_query(&format!("cursor={c}")).unwrap().before,
            Some(EventId(4242))
        );
        for (bad, says) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=x", "limit"),
            ("since=yesterday", "since"),
            ("outcome=fine", "outcome"),
            ("cursor=evt_1", "cursor"),
            ("cursor=c", "cursor"),
            ("since=9&until=5", "since"),
            ("colour=red", "unknown parameter"),
        ] {
            let e = parse_list_query(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        // A malformed escape is kept as written (as browsers and the URL standard do).
        let q = parse_list_query("rule=%zz+x").unwrap();
        assert_eq!(q.filter.rule.as_deref(), Some("%zz x"));
    }

    #[test]
    fn sensitive_parameters_are_redacted_at_any_depth() {
        let params = json!({
            "text": "hello",
            "api_key": "sk-live-1",
            "headers": {"Authorization": "Bearer abc", "x": 1},
            "list": [{"password": "p"}, "ok"],
            "long": "a".repeat(MAX_TEXT + 10),
        });
        let shown = redacted(&params);
        let text = shown.to_string();
        for secret in ["sk-live-1", "Bearer abc", "\"p\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(shown["text"], "hello");
        assert_eq!(shown["headers"]["x"], 1);
        assert_eq!(shown["list"][1], "ok");
        assert!(shown["long"].as_str().unwrap().ends_with("characters)"));
        assert!(answer_summary(&json!({"token": "t0k", "id": 5})).contains("[redacted]"));
    }
}
