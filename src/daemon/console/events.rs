//! The event history (`/ui/events`: filters by integration, event, rule, outcome and time, and
//! cursor pages, through the same query and listing as `GET /api/events`,
//! [`crate::runtime::history`]) and one delivery's trace (`/ui/events/{id}`: the event as
//! conditions see it, every rule's verdict with the explanation of why it did or did not fire,
//! the jobs with their attempts, the audit records — the trace of `GET /api/events/{id}`, with
//! its redaction).

use std::sync::Arc;

use http::StatusCode;
use maud::{Markup, html};
use serde_json::Value;

use super::layout::{badge, empty, error_box, seg, time_text};
use super::{Ctx, failed, html_reply};
use crate::runtime::history::{MAX_LIMIT, list_json, parse_list_query};
use crate::runtime::{Runtime, now_ms};
use crate::state::{EventId, Outcome};
use crate::webhook::Reply;

/// A time filter as typed: Unix milliseconds, RFC 3339, a date, or what a `datetime-local`
/// input sends (`2026-05-01T10:00`, taken as UTC).
pub(crate) fn parse_time(text: &str) -> Option<u64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let parsed = crate::rules::condition::parse_timestamp(text).or_else(|| {
        let with_zone = if text.len() == 16 {
            format!("{text}:00Z")
        } else {
            format!("{text}Z")
        };
        crate::rules::condition::parse_timestamp(&with_zone)
    })?;
    let secs = u64::try_from(parsed.0).ok()?;
    Some(secs.saturating_mul(1000) + u64::from(parsed.1 / 1_000_000))
}

/// The filters of the page as typed (kept in the form) and as the API's query.
#[derive(Default)]
struct Filters {
    integration: String,
    event: String,
    rule: String,
    outcome: String,
    since: String,
    until: String,
    cursor: String,
}

impl Filters {
    fn parse(query: &str) -> Filters {
        let mut f = Filters::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*k {
                "integration" => &mut f.integration,
                "event" => &mut f.event,
                "rule" => &mut f.rule,
                "outcome" => &mut f.outcome,
                "since" => &mut f.since,
                "until" => &mut f.until,
                "cursor" => &mut f.cursor,
                _ => continue,
            };
            *slot = v.trim().to_owned();
        }
        f
    }

    /// The filters as typed, by name (not the cursor).
    fn typed(&self) -> [(&'static str, &str); 6] {
        [
            ("integration", &self.integration),
            ("event", &self.event),
            ("rule", &self.rule),
            ("outcome", &self.outcome),
            ("since", &self.since),
            ("until", &self.until),
        ]
    }

    /// The API's query string, or what is wrong with a time.
    fn api_query(&self) -> Result<String, String> {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (name, v) in self.typed() {
            if v.is_empty() {
                continue;
            }
            if matches!(name, "since" | "until") {
                let ms = parse_time(v).ok_or_else(|| {
                    format!("`{name}` must be a date and time (2026-05-01T10:00, UTC) or Unix milliseconds")
                })?;
                q.append_pair(name, &ms.to_string());
            } else {
                q.append_pair(name, v);
            }
        }
        if !self.cursor.is_empty() {
            q.append_pair("cursor", &self.cursor);
        }
        Ok(q.finish())
    }

    /// This page's link with another cursor (none: the newest page).
    fn with_cursor(&self, cursor: Option<&str>) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (name, v) in self.typed() {
            if !v.is_empty() {
                q.append_pair(name, v);
            }
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        format!("/ui/events?{}", q.finish())
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `GET /ui/events`.
pub(crate) async fn list(rt: &Arc<Runtime>, ctx: &mut Ctx, query: &str) -> Reply {
    rt.flush_rejections(now_ms(), true);
    if let Err(e) = rt.settle().await {
        return failed(ctx, "Reading the event history", &e);
    }
    let f = Filters::parse(query);
    let listed = f
        .api_query()
        .and_then(|q| parse_list_query(&q))
        .map(|q| list_json(rt.store.as_ref(), &q, now_ms()));
    let (code, result) = match listed {
        Ok(Ok(v)) => (StatusCode::OK, Ok(v)),
        Ok(Err(e)) => return failed(ctx, "Reading the event history", &e),
        Err(why) => (StatusCode::BAD_REQUEST, Err(why)),
    };
    let integrations: Vec<String> = rt
        .active()
        .map(|a| a.set.integrations.keys().map(ToString::to_string).collect())
        .unwrap_or_default();
    let body = html! {
        form #event-filters .filters.panel method="get" action="/ui/events" role="search" {
            label { "Integration"
                select name="integration" {
                    option value="" { "any" }
                    @for i in &integrations {
                        option value=(i) selected[*i == f.integration] { (i) }
                    }
                    @if !f.integration.is_empty() && !integrations.contains(&f.integration) {
                        option value=(f.integration) selected { (f.integration) }
                    }
                }
            }
            label { "Event" input type="text" name="event" value=(f.event) placeholder="ticket.created"; }
            label { "Rule" input type="text" name="rule" value=(f.rule) placeholder="rule id"; }
            label { "Outcome"
                select name="outcome" {
                    option value="" { "any" }
                    @for o in Outcome::ALL {
                        option value=(o.as_str()) selected[o.as_str() == f.outcome] { (o.as_str().replace('_', " ")) }
                    }
                }
            }
            label { "Since (UTC)" input type="datetime-local" name="since" value=(f.since) step="1"; }
            label { "Until (UTC)" input type="datetime-local" name="until" value=(f.until) step="1"; }
            button type="submit" { "Filter" }
            a.button.secondary href="/ui/events" { "Clear" }
        }
        @match &result {
            Err(why) => (error_box(&format!("These filters cannot be used: {why}."))),
            Ok(v) => (listing(v, &f)),
        }
    };
    let page = ctx.page("/ui/events", "Events", body);
    html_reply(code, page)
}

fn listing(v: &Value, f: &Filters) -> Markup {
    let events = v["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let windows = v["rejections"]["windows"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    html! {
        @if events.is_empty() {
            (empty(if f.cursor.is_empty() {
                "No stored events match these filters."
            } else {
                "No more events: this is the end of the history."
            }))
        } @else {
            div.table-wrap {
                table #events .stack {
                    thead { tr { th { "Received" } th { "Event" } th { "Integration" } th { "Outcome" } th { "Rules" } } }
                    tbody {
                        @for e in events {
                            @let id = s(e, "id");
                            tr data-event=(id) {
                                td data-label="Received" { (time_text(s(e, "received_at"))) }
                                td data-label="Event" {
                                    a href=(format!("/ui/events/{}", seg(id))) { code.mono { (id) } }
                                    " " (s(e, "event"))
                                }
                                td data-label="Integration" { (s(e, "integration")) }
                                td data-label="Outcome" { (badge(s(e, "outcome"))) }
                                td data-label="Rules" {
                                    @for (i, r) in e["rules"].as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
                                        @if i > 0 { ", " }
                                        @let r = r.as_str().unwrap_or("");
                                        a href=(format!("/ui/rules/{}", seg(r))) { (r) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if !f.cursor.is_empty() {
                a href=(f.with_cursor(None)) { "Newest" }
            }
            @if let Some(next) = v["next_cursor"].as_str() {
                a #next-page href=(f.with_cursor(Some(next))) { "Older events" }
            }
            span.muted { "Up to " (v["filter"]["limit"].as_u64().unwrap_or(0).min(MAX_LIMIT as u64)) " per page, newest first." }
        }
        @if !windows.is_empty() {
            h2 { "Refused deliveries" }
            p.muted { "Refused deliveries are not stored one by one: they are counted per integration, reason and minute." }
            div.table-wrap {
                table #rejections .stack {
                    thead { tr { th { "Integration" } th { "Reason" } th { "Count" } th { "First" } th { "Last" } } }
                    tbody {
                        @for w in windows {
                            tr {
                                td data-label="Integration" { (s(w, "integration")) }
                                td data-label="Reason" { (s(w, "reason")) }
                                td data-label="Count" { (w["count"].as_u64().unwrap_or(0)) }
                                td data-label="First" { (time_text(s(w, "first_at"))) }
                                td data-label="Last" { (time_text(s(w, "last_at"))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// JSON shown as indented text (already redacted by the trace).
fn json_block(v: &Value) -> Markup {
    html! { pre { code { (serde_json::to_string_pretty(v).unwrap_or_default()) } } }
}

/// `GET /ui/events/{id}`.
pub(crate) async fn trace(rt: &Arc<Runtime>, ctx: &mut Ctx, id: &str) -> Reply {
    let Ok(eid) = id.parse::<EventId>() else {
        return super::not_found(ctx, "That is not an event id (they look like evt_123).");
    };
    if let Err(e) = rt.settle().await {
        return failed(ctx, "Reading the event", &e);
    }
    let v = match crate::daemon::api::trace_value(rt, eid) {
        Ok(Some(v)) => v,
        Ok(None) => {
            return super::not_found(
                ctx,
                "No stored event has this id: it was never received, or retention removed it.",
            );
        }
        Err(e) => return failed(ctx, "Reading the event", &e),
    };
    let ev = &v["event"];
    let rules = v["rules"]["rules"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let jobs = v["jobs"].as_array().map(Vec::as_slice).unwrap_or_default();
    let audit = v["audit"].as_array().map(Vec::as_slice).unwrap_or_default();
    let title = format!("Event {eid}");
    let body = html! {
        section.panel {
            dl.facts {
                dt { "Event" } dd { (s(ev, "event")) }
                dt { "Integration" } dd { a href=(format!("/ui/integrations/{}", seg(s(ev, "integration")))) { (s(ev, "integration")) } " (" (s(ev, "platform")) ")" }
                dt { "Received" } dd { (time_text(s(ev, "received_at"))) }
                dt { "Accepted as" } dd { (s(ev, "accepted")) }
                dt { "Platform's event id" } dd { code.mono { (s(ev, "platform_event_id")) } }
                dt { "Revision" } dd { code.mono { (ev["revision"].as_str().unwrap_or("not recorded")) } }
                dt { "Outcome" } dd { (badge(s(ev, "outcome"))) }
            }
        }
        section #trace-rules aria-labelledby="rules-h" {
            h2 #rules-h { "Rules" }
            @if let Some(note) = v["rules"]["note"].as_str() { p.muted { (note) } }
            @else {
                p.muted { "Every rule on this integration and event, decided against the revision in use "
                    code.mono { (v["rules"]["revision"].as_str().unwrap_or("(working tree)")) } "." }
            }
            @if rules.is_empty() {
                (empty("No rule listens to this event."))
            } @else {
                ul.verdict-list {
                    @for r in rules {
                        @let rule = s(r, "rule");
                        @let verdict = s(r, "result");
                        li data-rule=(rule) data-verdict=(verdict) {
                            a href=(format!("/ui/rules/{}", seg(rule))) { strong { (rule) } }
                            " " (badge(verdict))
                            @if r["ran"] == true { " " span.muted { "(a job ran)" } }
                            @let ex = &r["explanation"];
                            @if let Some(note) = r.get("note").and_then(Value::as_str) {
                                p.sentence.paused { (note) }
                            } @else if let Some(reason) = ex.get("reason").and_then(Value::as_str) {
                                p.sentence { (reason) }
                            }
                            @let failures = ex.get("failures").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                            @if !failures.is_empty() {
                                ul.failures {
                                    @for f in failures { li { (f.as_str().unwrap_or("")) } }
                                }
                            }
                        }
                    }
                }
            }
        }
        section #trace-jobs aria-labelledby="jobs-h" {
            h2 #jobs-h { "Jobs" }
            @if jobs.is_empty() {
                (empty("No job was created for this event (no rule matched when it was stored)."))
            } @else {
                @for j in jobs {
                    div.panel data-job=(j["job"].as_u64().unwrap_or(0)) {
                        p {
                            strong { "Job " (j["job"].as_u64().unwrap_or(0)) } " · rule "
                            a href=(format!("/ui/rules/{}", seg(s(j, "rule")))) { (s(j, "rule")) }
                            " · " (badge(s(&j["outcome"], "state")))
                            " · " (j["steps_done"].as_u64().unwrap_or(0)) " of " (j["steps"].as_u64().unwrap_or(0)) " actions done"
                        }
                        @if let Some(err) = j["outcome"].get("error").and_then(Value::as_str) {
                            p.error-box { (err) }
                        }
                        @let attempts = j["attempts"].as_array().map(Vec::as_slice).unwrap_or_default();
                        @if attempts.is_empty() {
                            p.muted { "No attempt yet." }
                        } @else {
                            div.table-wrap {
                                table.stack {
                                    thead { tr { th { "Step" } th { "Action" } th { "Started" } th { "Result" } th { "Details" } } }
                                    tbody {
                                        @for a in attempts {
                                            tr {
                                                td data-label="Step" { (a["step"].as_u64().unwrap_or(0) + 1) }
                                                td data-label="Action" { (s(a, "integration")) " " code { (s(a, "action")) } }
                                                td data-label="Started" { (time_text(s(a, "started_at"))) }
                                                td data-label="Result" { (badge(s(a, "result"))) }
                                                td data-label="Details" {
                                                    @if let Some(e) = a.get("error").and_then(Value::as_str) { (e) br; }
                                                    @if let Some(ans) = a.get("answer").and_then(Value::as_str) { small.muted { "Answer: " (ans) } br; }
                                                    @if let Some(d) = a.get("duration_ms").and_then(Value::as_u64) { small.muted { (d) " ms" } }
                                                    @if a.get("parameters").is_some_and(|p| !p.is_null()) {
                                                        details { summary { "Parameters" } (json_block(&a["parameters"])) }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section #trace-view aria-labelledby="view-h" {
            h2 #view-h { "The event as conditions see it" }
            @if v["view"].is_null() {
                (empty("The event's body is no longer stored (retention)."))
            } @else {
                details { summary { "Show" } (json_block(&v["view"])) }
            }
        }
        section #trace-audit aria-labelledby="audit-h" {
            h2 #audit-h { "Audit records" }
            @if audit.is_empty() {
                (empty("No audit record concerns this event."))
            } @else {
                div.table-wrap {
                    table.stack {
                        thead { tr { th { "At" } th { "What" } th { "Resource" } th { "Detail" } } }
                        tbody {
                            @for r in audit {
                                tr {
                                    td data-label="At" { (time_text(s(r, "at"))) }
                                    td data-label="What" { (s(&r["kind"], "type").replace('_', " ")) }
                                    td data-label="Resource" { (s(r, "resource_type")) " " code.mono { (s(r, "resource_id")) } }
                                    td data-label="Detail" { code.mono { (r["detail"].to_string()) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let page = ctx.page("/ui/events", &title, body);
    html_reply(StatusCode::OK, page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_filters_take_dates_times_and_milliseconds() {
        assert_eq!(parse_time("1765000000000"), Some(1_765_000_000_000));
        assert_eq!(parse_time("2025-12-06T05:46:40Z"), Some(1_765_000_000_000));
        assert_eq!(parse_time("2025-12-06T05:46"), Some(1_764_999_960_000));
        assert_eq!(parse_time("2025-12-06T05:46:40"), Some(1_765_000_000_000));
        assert_eq!(parse_time("2025-12-06"), Some(1_764_979_200_000));
        for bad in ["", "yesterday", "2025-13-01", "-5"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn hostile_fields_in_a_listing_are_escaped() {
        let evil = "<script>alert(1)</script>\"'";
        let v = serde_json::json!({
            "events": [{
                "id": evil, "event": evil, "integration": evil, "outcome": evil,
                "received_at": evil, "rules": [evil],
            }],
            "next_cursor": evil,
            "filter": {"limit": 50},
            "rejections": {"windows": [{
                "integration": evil, "reason": evil, "count": 1,
                "first_at": evil, "last_at": evil,
            }]},
        });
        let f = Filters::parse("rule=%3Cb%3E");
        let html = listing(&v, &f).into_string();
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;'"));
        // Ids in links are path segments, encoded.
        assert!(
            html.contains("href=\"/ui/events/%3Cscript%3Ealert%281%29"),
            "{html}"
        );
        assert!(html.contains("cursor=%3Cscript%3E"), "{html}");
        // An empty page says so.
        let empty = listing(&serde_json::json!({"events": [], "filter": {}}), &f).into_string();
        assert!(empty.contains("No stored events match these filters."));
    }

    #[test]
    fn filters_become_the_api_query() {
        let f =
            Filters::parse("integration=zd&event=ticket.created&since=2025-12-06&outcome=dead&x=1");
        assert_eq!(
            f.api_query().unwrap(),
            "integration=zd&event=ticket.created&outcome=dead&since=1764979200000"
        );
        let f = Filters::parse("since=soon");
        assert!(f.api_query().unwrap_err().contains("since"));
        let f = Filters::parse("rule=a%26b&cursor=c1");
        assert_eq!(f.with_cursor(Some("c2")), "/ui/events?rule=a%26b&cursor=c2");
        assert_eq!(f.with_cursor(None), "/ui/events?rule=a%26b");
    }
}
