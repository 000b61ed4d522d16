//! One integration (`/ui/integrations/{id}`): health now and its changes (the audit log's
//! `integration_degraded` / `integration_recovered` records), sync, problems, the webhook
//! registration on the platform (URL, events, ids, expiry), what to do by hand, counters and a
//! chart of its last day, its rules, its recent events, and a "test connection" button (the
//! check of `POST /api/integrations/{id}/test`, [`crate::daemon::api::test_value`]).
//! Credentials are named, never shown; configuration values pass through the traces'
//! redaction.

use std::sync::Arc;

use http::StatusCode;
use maud::{Markup, html};
use serde_json::Value;

use super::chart::{DAY_MINUTES, Series, bucket, chart, day_first, day_index};
use super::layout::{badge, csrf_field, empty, error_box, seg, time, time_text};
use super::{Ctx, failed, html_reply};
use crate::manifest::Credential;
use crate::runtime::{Runtime, now_ms};
use crate::state::{AuditFilter, AuditKind, MINUTE_MS};
use crate::webhook::Reply;

/// Health changes shown at most.
const HISTORY: usize = 20;
/// How far back health changes are looked for: a week.
const HISTORY_WINDOW_MS: u64 = 7 * 24 * 3_600_000;
/// Audit records read at most for the health changes.
const HISTORY_SCAN: usize = 5_000;
/// Recent events shown.
const RECENT: usize = 10;

/// `GET /ui/integrations/{id}` (and the answer of its test button, with `tested`).
pub(crate) fn page(rt: &Runtime, ctx: &mut Ctx, id: &str, tested: Option<Value>) -> Reply {
    let active = rt.active();
    let Some(i) = active.as_ref().and_then(|a| {
        crate::manifest::IntegrationId::parse(id)
            .ok()
            .and_then(|parsed| a.set.integrations.get(&parsed))
    }) else {
        return super::not_found(ctx, "The applied revision has no integration with this id.");
    };
    let Some(active) = active.as_ref() else {
        return super::not_found(ctx, "No revision is applied.");
    };
    let now = now_ms();
    let health = crate::daemon::api::health_of(rt, id);
    let registration = crate::daemon::api::registration_of(rt, id);
    let status = rt.status();
    let problems: Vec<&str> = status
        .problems
        .iter()
        .chain(&status.registration_problems)
        .filter(|p| p.integration.as_str() == id)
        .map(|p| p.message.as_str())
        .collect();
    let notes: Vec<&str> = status
        .notes
        .iter()
        .filter(|p| p.integration.as_str() == id)
        .map(|p| p.message.as_str())
        .collect();
    let connector_error = active.connector(&i.id).err();
    // A filtered scan of the log (as `GET /api/audit/logs` does), bounded in time and in
    // records read, so the page stays fast on a log of millions.
    let (changes, partial): (Vec<crate::state::AuditRecord>, bool) = match rt.store.audit_bounded(
        &AuditFilter {
            resource_type: Some("integration".into()),
            resource_id: Some(id.to_owned()),
            since_ms: Some(now.saturating_sub(HISTORY_WINDOW_MS)),
            limit: 200,
        },
        HISTORY_SCAN,
    ) {
        Ok((records, partial)) => (
            records
                .into_iter()
                .filter(|r| {
                    matches!(
                        r.kind,
                        AuditKind::IntegrationDegraded { .. } | AuditKind::IntegrationRecovered
                    )
                })
                .take(HISTORY)
                .collect(),
            partial,
        ),
        Err(e) => return failed(ctx, "Reading the integration's health history", &e),
    };
    let stats = rt.stats.snapshot(id);
    rt.write_rollups();
    let first = day_first(now);
    let minutes = rt
        .store
        .rollups_of(first * MINUTE_MS, now + 1, Some(id), usize::MAX);
    let recent = crate::runtime::history::parse_list_query(&format!(
        "integration={}&limit={RECENT}",
        seg(id)
    ))
    .map_err(|e| e.to_string())
    .and_then(|q| {
        crate::runtime::history::list_json(rt.store.as_ref(), &q, now).map_err(|e| e.to_string())
    });
    let triggered: Vec<_> = active
        .set
        .rules
        .values()
        .filter(|r| r.trigger.integration == i.id)
        .collect();
    let acting: Vec<_> = active
        .set
        .rules
        .values()
        .filter(|r| {
            r.trigger.integration != i.id && r.actions.iter().any(|a| a.integration == i.id)
        })
        .collect();
    let may_change = ctx.may_change();
    let csrf = ctx.csrf().to_owned();
    let paused = rt.holds().integration(i.id.as_str()).cloned();
    let config = crate::runtime::history::redacted(&Value::Object(i.config.clone()));
    let body = html! {
        @if let Some(t) = &tested { (test_result(t)) }
        @if let Some(h) = &paused {
            p #paused { (badge("paused")) " since " (time(h.at_ms)) ": " (h.reason) ". Its actions wait in the queue until " code { "supportopsd resume --integration " (h.id) } "." }
        }
        section.panel aria-labelledby="health-h" {
            h2 #health-h { "Health" }
            @match &health {
                Some(h) => dl.facts {
                    dt { "Health" } dd.health { (badge(&h.health)) " " (h.health_reason) }
                    dt { "Since" } dd { (time(h.since_ms)) }
                    dt { "Last checked" } dd { (time(h.checked_ms)) @if h.consecutive_failures > 0 { " (" (h.consecutive_failures) " failures in a row)" } }
                    dt { "Sync" } dd.sync { (badge(&h.sync)) " " (h.sync_reason) }
                },
                None => (empty("Not checked yet.")),
            }
            @for p in &problems { (error_box(p)) }
            @if let Some(e) = &connector_error { (error_box(&format!("Its connector could not be built: {e}"))) }
            @if may_change {
                form #test-form method="post" action=(format!("/ui/integrations/{}/test", seg(id))) data-mutates {
                    (csrf_field(&csrf))
                    button #test-connection type="submit" data-mutates { "Test connection" }
                    " " span.hint { "Checks the credentials against the platform now (read-only on the platform) and records the result." }
                }
            }
            h3 { "Health changes in the last 7 days" }
            @if partial {
                p.muted { "Only the newest " (HISTORY_SCAN) " audit records were searched: older changes may be in "
                    a href=(format!("/ui/audit?resource_type=integration&resource_id={}", seg(id))) { "the audit log" } "." }
            }
            @if changes.is_empty() {
                p.muted { "No change found in the last 7 days." }
            } @else {
                ul #health-history {
                    @for r in &changes {
                        li {
                            (time(r.at_ms)) ": "
                            @match &r.kind {
                                AuditKind::IntegrationDegraded { reason } => { (badge("degraded")) " " (reason) },
                                _ => (badge("healthy")),
                            }
                        }
                    }
                }
            }
        }
        section.panel aria-labelledby="about-h" {
            h2 #about-h { "Configuration" }
            dl.facts {
                dt { "Platform" } dd { (i.platform.as_str()) }
                @if let Some(n) = &i.name { dt { "Name" } dd { (n) } }
                @if let Some(d) = &i.description { dt { "Description" } dd { (d) } }
                dt { "Declared in" } dd { code.mono { (i.file) } }
                dt { "Credentials" } dd {
                    @if i.credentials.is_empty() { span.muted { "none" } }
                    @for (n, (name, c)) in i.credentials.iter().enumerate() {
                        @if n > 0 { ", " }
                        code { (name) } " "
                        span.muted { @match c { Credential::Secret(_) => "(secret, set)", Credential::Plain(_) => "(set)" } }
                    }
                }
                @if let Some(url) = &i.base_url { dt { "Endpoint" } dd { code.mono { (url) } } }
                dt { "Limits" } dd {
                    @match i.limits.requests_per_minute { Some(n) => { (n) " requests a minute" }, None => "no request limit" }
                    ", "
                    @match i.limits.concurrency { Some(n) => { (n) " at once" }, None => "no concurrency limit" }
                }
                @if !i.config.is_empty() {
                    dt { "Settings" } dd { code.mono { (config.to_string()) } }
                }
            }
        }
        section.panel aria-labelledby="registration-h" {
            h2 #registration-h { "Webhook registration on the platform" }
            @match &registration {
                Some(r) => dl.facts {
                    dt { "Delivers to" } dd { code.mono { (r.url) } }
                    dt { "Events" } dd { @if r.events.is_empty() { "none" } @else { (r.events.join(", ")) } }
                    dt { "Platform ids" } dd { code.mono { (r.ids.join(", ")) } }
                    dt { "Expires" } dd { @match r.expires_at_ms { Some(ms) => (time(ms)), None => "never (renewed by supportopsd when needed)" } }
                    dt { "Last synced" } dd { (time(r.synced_ms)) }
                },
                None => @if i.webhook.is_some() {
                    (empty("Not registered yet: the next reconcile pass registers it, or the problems above say why not."))
                } @else {
                    (empty("This integration declares no webhook: supportopsd does not register one."))
                },
            }
            @if !notes.is_empty() {
                h3 { "To do by hand" }
                ul #by-hand { @for n in &notes { li { (n) } } }
            }
        }
        section.panel aria-labelledby="counters-h" {
            h2 #counters-h { "Counters" }
            dl.facts {
                dt { "Events received" } dd { (stats.events_received) }
                dt { "Refused" } dd { (stats.events_rejected) }
                dt { "Duplicates" } dd { (stats.events_duplicate) }
                dt { "Actions succeeded" } dd { (stats.actions_succeeded) }
                dt { "Actions failed" } dd { (stats.actions_failed) }
                dt { "Rate-limit waits" } dd { (stats.rate_limit_waits) }
                dt { "Dead letters" } dd { a href=(format!("/ui/events?integration={}&outcome=dead", seg(id))) { "its events with a dead-lettered job" } }
            }
            p.muted { "Counted since the daemon started." }
            @match &minutes {
                Ok(m) => (day_chart(m, first)),
                Err(_) => (error_box("The per-minute counts cannot be read; the daemon's log says why.")),
            }
        }
        section.panel aria-labelledby="rules-h" {
            h2 #rules-h { "Rules" }
            @if triggered.is_empty() && acting.is_empty() {
                (empty("No rule triggers on this integration or acts on it."))
            }
            @if !triggered.is_empty() {
                h3 { "Triggered by its events" }
                ul { @for r in &triggered { li { a href=(format!("/ui/rules/{}", seg(r.id.as_str()))) { (r.id) } " on " code { (r.trigger.event.name) } @if !r.enabled { " " (badge("disabled")) } } } }
            }
            @if !acting.is_empty() {
                h3 { "Acting on it" }
                ul { @for r in &acting { li { a href=(format!("/ui/rules/{}", seg(r.id.as_str()))) { (r.id) } } } }
            }
        }
        section.panel aria-labelledby="recent-h" {
            h2 #recent-h { "Recent events" }
            @match &recent {
                Ok(v) => (recent_events(v)),
                Err(_) => (error_box("The event history cannot be read; the daemon's log says why.")),
            }
            p { a href=(format!("/ui/events?integration={}", seg(id))) { "All of its events" } }
        }
    };
    if let Err(e) = &minutes {
        tracing::error!(error = %e, "Console: reading an integration's per-minute counts failed.");
    }
    if let Err(e) = &recent {
        tracing::error!(error = %e, "Console: reading an integration's events failed.");
    }
    let title = format!("Integration {id}");
    let page = ctx.page("", &title, body);
    html_reply(StatusCode::OK, page)
}

fn day_chart(minutes: &[crate::state::MinuteRollup], first: u64) -> Markup {
    let n = DAY_MINUTES;
    let (mut events, mut refused, mut ok, mut bad) =
        (vec![0u64; n], vec![0u64; n], vec![0u64; n], vec![0u64; n]);
    for m in minutes {
        let Some(i) = day_index(m.minute_ms, first) else {
            continue;
        };
        let c = &m.counts;
        events[i] = c.events.accepted.saturating_add(c.events.accepted_no_rule);
        refused[i] = c.rejected_total();
        for (outcome, k) in c.actions_by_outcome() {
            if outcome == "succeeded" {
                ok[i] = ok[i].saturating_add(k);
            } else {
                bad[i] = bad[i].saturating_add(k);
            }
        }
    }
    html! {
        div.grid {
            (chart("Events per 5 minutes", "24 h ago", &[
                Series { name: "stored", class: "s1", values: bucket(&events, 5) },
                Series { name: "refused", class: "s2", values: bucket(&refused, 5) },
            ]))
            (chart("Actions on it per 5 minutes", "24 h ago", &[
                Series { name: "succeeded", class: "s3", values: bucket(&ok, 5) },
                Series { name: "failed or retried", class: "s2", values: bucket(&bad, 5) },
            ]))
        }
    }
}

fn recent_events(v: &Value) -> Markup {
    let events = v["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let s = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    html! {
        @if events.is_empty() {
            (empty("No stored events from this integration."))
        } @else {
            ul {
                @for e in events {
                    li {
                        (time_text(&s(e, "received_at"))) " "
                        a href=(format!("/ui/events/{}", seg(&s(e, "id")))) { code.mono { (s(e, "id")) } }
                        " " (s(e, "event")) " " (badge(&s(e, "outcome")))
                    }
                }
            }
        }
    }
}

fn test_result(t: &Value) -> Markup {
    let healthy = t["healthy"] == true;
    let status = t["health"]["status"].as_str().unwrap_or("unknown");
    let reason = t["health"]["reason"].as_str().unwrap_or("");
    html! {
        div #test-result .flash .error[!healthy] role="status" data-healthy=(healthy) {
            strong { @if healthy { "Connection works. " } @else { "Connection check failed. " } }
            (badge(status)) " " (reason)
        }
    }
}

/// `POST /ui/integrations/{id}/test`: runs the connection check and shows the page with its
/// result.
pub(crate) async fn test(rt: &Arc<Runtime>, ctx: &mut Ctx, id: &str) -> Reply {
    match crate::daemon::api::test_value(rt, id).await {
        Some(v) => page(rt, ctx, id, Some(v)),
        None => super::not_found(ctx, "The applied revision has no integration with this id."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_result_and_recent_events_escape_what_they_show() {
        let evil = "<img src=x onerror=alert(1)>";
        let ok = test_result(&serde_json::json!({
            "healthy": true, "health": {"status": "healthy", "reason": evil},
        }))
        .into_string();
        assert!(ok.contains("id=\"test-result\"") && ok.contains("Connection works"));
        assert!(!ok.contains("<img") && ok.contains("&lt;img"));
        let bad = test_result(&serde_json::json!({
            "healthy": false, "health": {"status": "degraded", "reason": "401"},
        }))
        .into_string();
        assert!(bad.contains("Connection check failed") && bad.contains("error"));
        let recent = recent_events(&serde_json::json!({"events": [{
            "id": evil, "event": evil, "outcome": evil, "received_at": evil,
        }]}))
        .into_string();
        assert!(!recent.contains("<img"), "{recent}");
        assert!(recent.contains("/ui/events/%3Cimg%20src%3Dx"));
        let none = recent_events(&serde_json::json!({"events": []})).into_string();
        assert!(none.contains("No stored events from this integration."));
    }
}
