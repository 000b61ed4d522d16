//! The audit log (`/ui/audit`), newest first, with the filters of `GET /api/audit/logs`
//! (resource type, resource id, since, limit). Records never hold secrets (`state::audit`).

use std::sync::Arc;

use http::StatusCode;
use maud::html;

use super::events::parse_time;
use super::layout::{empty, error_box, seg, time};
use super::{Ctx, failed, html_reply};
use crate::runtime::{Runtime, now_ms};
use crate::state::AuditFilter;
use crate::webhook::Reply;

/// Records shown when the page gives no limit.
const DEFAULT_LIMIT: usize = 100;
/// Records read at most for one page (a filter for a rare resource on a log of millions would
/// otherwise read them all); the page says when it stopped there.
const MAX_SCANNED: usize = 20_000;
/// The largest limit (as the API's).
const MAX_LIMIT: usize = 10_000;

/// `GET /ui/audit`.
pub(crate) async fn list(rt: &Arc<Runtime>, ctx: &mut Ctx, query: &str) -> Reply {
    let mut typed = [String::new(), String::new(), String::new(), String::new()];
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let i = match &*k {
            "resource_type" => 0,
            "resource_id" => 1,
            "since" => 2,
            "limit" => 3,
            _ => continue,
        };
        typed[i] = v.trim().to_owned();
    }
    let [rtype, rid, since, limit] = &typed;
    let mut problems = Vec::new();
    let since_ms = if since.is_empty() {
        None
    } else {
        let parsed = parse_time(since);
        if parsed.is_none() {
            problems.push(
                "`since` must be a date and time (2026-05-01T10:00, UTC) or Unix milliseconds",
            );
        }
        parsed
    };
    let limit_n = if limit.is_empty() {
        DEFAULT_LIMIT
    } else {
        match limit.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                problems.push("`limit` must be a number from 1 to 10000");
                DEFAULT_LIMIT
            }
        }
    };
    let filter = AuditFilter {
        resource_type: (!rtype.is_empty()).then(|| rtype.clone()),
        resource_id: (!rid.is_empty()).then(|| rid.clone()),
        since_ms,
        limit: limit_n,
    };
    rt.flush_rejections(now_ms(), true);
    if let Err(e) = rt.settle().await {
        return failed(ctx, "Reading the audit log", &e);
    }
    let (records, partial) = if problems.is_empty() {
        match rt.store.audit_bounded(&filter, MAX_SCANNED) {
            Ok(r) => r,
            Err(e) => return failed(ctx, "Reading the audit log", &e),
        }
    } else {
        (Vec::new(), false)
    };
    let body = html! {
        form #audit-filters .filters.panel method="get" action="/ui/audit" role="search" {
            label { "Resource type"
                select name="resource_type" {
                    option value="" { "any" }
                    @for t in ["event", "job", "integration", "revision", "console"] {
                        option value=(t) selected[t == rtype] { (t) }
                    }
                }
            }
            label { "Resource id" input type="text" name="resource_id" value=(rid); }
            label { "Since (UTC)" input type="datetime-local" name="since" value=(since) step="1"; }
            label { "Limit" input type="number" name="limit" min="1" max="10000" value=(limit_n); }
            button type="submit" { "Filter" }
            a.button.secondary href="/ui/audit" { "Clear" }
        }
        @for p in &problems { (error_box(&format!("These filters cannot be used: {p}."))) }
        @if partial {
            p #audit-partial .muted {
                "Only the newest " (MAX_SCANNED) " records were searched; older matching records may exist: "
                code { "GET /api/audit/logs" } " searches the whole log."
            }
        }
        @if problems.is_empty() && records.is_empty() {
            (empty("No audit record matches these filters."))
        } @else if !records.is_empty() {
            div.table-wrap {
                table #audit .stack {
                    thead { tr { th { "At" } th { "What" } th { "Resource" } th { "Detail" } } }
                    tbody {
                        @for r in &records {
                            @let kind = serde_json::to_value(&r.kind).unwrap_or_default();
                            tr {
                                td data-label="At" { (time(r.at_ms)) }
                                td data-label="What" {
                                    (kind["type"].as_str().unwrap_or("").replace('_', " "))
                                    @for (k, v) in kind.as_object().into_iter().flatten().filter(|(k, _)| *k != "type") {
                                        br; small.muted { (k) ": " (v.as_str().map_or_else(|| v.to_string(), str::to_owned)) }
                                    }
                                }
                                td data-label="Resource" {
                                    (r.resource_type) " "
                                    @if r.resource_type == "integration" {
                                        a href=(format!("/ui/integrations/{}", seg(&r.resource_id))) { code.mono { (r.resource_id) } }
                                    } @else {
                                        code.mono { (r.resource_id) }
                                    }
                                }
                                td data-label="Detail" { code.mono { (crate::runtime::history::redacted(&r.detail).to_string()) } }
                            }
                        }
                    }
                }
            }
            @if records.len() == limit_n {
                p.muted { "The newest " (limit_n) " are shown: raise the limit or narrow the filters for more." }
            }
        }
    };
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let page = ctx.page("/ui/audit", "Audit log", body);
    html_reply(code, page)
}
