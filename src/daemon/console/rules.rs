//! Rules (`/ui/rules`: paged and filtered, so 10,000 rules render fast) and one rule
//! (`/ui/rules/{id}`: its trigger, conditions and actions, and its matches and action outcomes
//! over the last day from the per-minute rollups of the integrations it involves). Each rule is
//! said as a sentence ([`crate::manifest::describe`]): its trigger, conditions and actions.

use std::collections::BTreeSet;

use http::StatusCode;
use maud::{Markup, html};
use serde_json::Value;

use super::chart::{DAY_MINUTES, Series, bucket, chart, day_first, day_index};
use super::layout::{badge, empty, error_box, seg, time};
use super::{Ctx, html_reply};
use crate::manifest::Rule;
use crate::runtime::{Runtime, now_ms};
use crate::state::MINUTE_MS;
use crate::webhook::Reply;

/// Rules per page.
const PAGE: usize = 100;

/// A rule as a sentence ([`crate::manifest::describe`], plain text, escaped here).
pub(crate) fn sentence(r: &Rule) -> Markup {
    html! { (crate::manifest::describe::describe(r).to_string()) }
}

/// A rule's sentence laid out: the trigger, each condition, each action, the notes.
fn sentence_parts(r: &Rule) -> Markup {
    let s = crate::manifest::describe::describe(r);
    html! {
        p.sentence #rule-sentence { (s.to_string()) }
        dl.facts {
            dt { "When" } dd { (s.trigger) }
            dt { "If" } dd {
                @if s.conditions.is_empty() { "always (no conditions)" }
                @else { ul { @for c in &s.conditions { li { (c) } } } }
            }
            dt { "Then" } dd {
                @if s.actions.is_empty() { "nothing" }
                @else { ol { @for a in &s.actions { li { (a) } } } }
            }
        }
        @for n in &s.notes { p.muted { (n) } }
    }
}

/// `GET /ui/rules?q=&integration=&page=`.
pub(crate) fn list(rt: &Runtime, ctx: &mut Ctx, query: &str) -> Reply {
    let (mut q, mut integration, mut page) = (String::new(), String::new(), 1usize);
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "q" => q = v.trim().to_owned(),
            "integration" => integration = v.trim().to_owned(),
            "page" => page = v.parse().ok().filter(|p| *p >= 1).unwrap_or(1),
            _ => {}
        }
    }
    let active = rt.active();
    let holds = rt.holds();
    let needle = q.to_lowercase();
    let matching: Vec<&Rule> = active
        .as_ref()
        .map(|a| {
            a.set
                .rules
                .values()
                .filter(|r| {
                    integration.is_empty()
                        || r.trigger.integration.as_str() == integration
                        || r.actions
                            .iter()
                            .any(|x| x.integration.as_str() == integration)
                })
                .filter(|r| {
                    needle.is_empty()
                        || r.id.as_str().to_lowercase().contains(&needle)
                        || r.name
                            .as_deref()
                            .is_some_and(|n| n.to_lowercase().contains(&needle))
                })
                .collect()
        })
        .unwrap_or_default();
    let total = matching.len();
    let pages = total.div_ceil(PAGE).max(1);
    let page = page.min(pages);
    let shown = matching.iter().skip((page - 1) * PAGE).take(PAGE);
    let integrations: Vec<String> = active
        .as_ref()
        .map(|a| a.set.integrations.keys().map(ToString::to_string).collect())
        .unwrap_or_default();
    let link = |p: usize| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if !q.is_empty() {
            s.append_pair("q", &q);
        }
        if !integration.is_empty() {
            s.append_pair("integration", &integration);
        }
        s.append_pair("page", &p.to_string());
        format!("/ui/rules?{}", s.finish())
    };
    let body = html! {
        form #rule-filters .filters.panel method="get" action="/ui/rules" role="search" {
            label { "Id or name contains" input type="search" name="q" value=(q); }
            label { "Integration"
                select name="integration" {
                    option value="" { "any" }
                    @for i in &integrations { option value=(i) selected[*i == integration] { (i) } }
                }
            }
            button type="submit" { "Filter" }
            a.button.secondary href="/ui/rules" { "Clear" }
        }
        @if active.is_none() {
            (error_box("No revision is applied: there are no rules in use."))
        } @else if total == 0 {
            (empty(if q.is_empty() && integration.is_empty() { "The applied revision has no rules." } else { "No rule matches these filters." }))
        } @else {
            p.muted { (total) " rules" @if pages > 1 { ", page " (page) " of " (pages) } "." }
            div.table-wrap {
                table #rules .stack {
                    thead { tr { th { "Rule" } th { "What it does" } th { "State" } } }
                    tbody {
                        @for r in shown {
                            tr data-rule=(r.id) {
                                td data-label="Rule" {
                                    a href=(format!("/ui/rules/{}", seg(r.id.as_str()))) { (r.id) }
                                    @if let Some(n) = &r.name { br; small.muted { (n) } }
                                }
                                td data-label="What it does" { (sentence(r)) }
                                td data-label="State" { @if r.enabled { (badge("enabled")) } @else { (badge("disabled")) } @if holds.rule(r.id.as_str()).is_some() { " " (badge("paused")) } }
                            }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav.pager aria-label="Pages" {
                    @if page > 1 { a href=(link(page - 1)) rel="prev" { "Previous" } }
                    @if page < pages { a href=(link(page + 1)) rel="next" { "Next" } }
                }
            }
        }
    };
    let page = ctx.page("/ui/rules", "Rules", body);
    html_reply(StatusCode::OK, page)
}

/// `GET /ui/rules/{id}`.
pub(crate) fn one(rt: &Runtime, ctx: &mut Ctx, id: &str) -> Reply {
    let active = rt.active();
    let Some(r) = active.as_ref().and_then(|a| a.rule(id)) else {
        return super::not_found(ctx, "The applied revision has no rule with this id.");
    };
    let now = now_ms();
    rt.write_rollups();
    let first = day_first(now);
    let n = DAY_MINUTES;
    let (mut matches, mut ok, mut bad) = (vec![0u64; n], vec![0u64; n], vec![0u64; n]);
    let involved: BTreeSet<&str> = std::iter::once(r.trigger.integration.as_str())
        .chain(r.actions.iter().map(|a| a.integration.as_str()))
        .collect();
    let mut unreadable = false;
    // What a shadow rule would have done in the last 24 hours, by action (its trigger
    // integration's records hold it).
    let mut shadow: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let throttled = rt.budgets.throttled(now).remove(id);
    for integration in involved {
        let records = match rt.store.rollups_of(
            first * MINUTE_MS,
            now + 1,
            Some(integration),
            usize::MAX,
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "Console: reading a rule's per-minute counts failed.");
                unreadable = true;
                continue;
            }
        };
        for m in records {
            let Some(i) = day_index(m.minute_ms, first) else {
                continue;
            };
            if let Some(k) = m.counts.rules.get(id) {
                matches[i] = matches[i].saturating_add(*k);
            }
            for (action, k) in m.counts.shadow.get(id).into_iter().flatten() {
                let slot = shadow.entry(action.clone()).or_default();
                *slot = slot.saturating_add(*k);
            }
            for outcomes in m
                .counts
                .actions
                .get(id)
                .into_iter()
                .flat_map(|a| a.values())
            {
                for (outcome, k) in outcomes {
                    let slot = if outcome == "succeeded" {
                        &mut ok[i]
                    } else {
                        &mut bad[i]
                    };
                    *slot = slot.saturating_add(*k);
                }
            }
        }
    }
    let conditions = Value::Object(r.trigger.conditions_source());
    let paused = rt.holds().rule(id).cloned();
    let title = format!("Rule {id}");
    let body = html! {
        section.panel {
            (sentence_parts(r))
            dl.facts {
                @if let Some(n) = &r.name { dt { "Name" } dd { (n) } }
                @if let Some(d) = &r.description { dt { "Description" } dd { (d) } }
                dt { "State" } dd { @if r.enabled { (badge("enabled")) } @else { (badge("disabled")) " never runs" } }
                @if let Some(h) = &paused {
                    dt { "Paused" } dd #paused { (badge("paused")) " since " (time(h.at_ms)) ": " (h.reason) ". It matches nothing until " code { "supportopsd resume --rule " (h.id) } "." }
                }
                dt { "Mode" } dd {
                    (badge(r.mode.as_str()))
                    @if r.is_shadow() { " what it would do is recorded; nothing runs" }
                }
                @if r.is_shadow() {
                    dt { "Would have performed (24 h)" } dd {
                        @if shadow.is_empty() { "nothing" }
                        @else {
                            @for (i, (action, k)) in shadow.iter().enumerate() {
                                @if i > 0 { ", " }
                                (k) " × " code { (action) }
                            }
                        }
                    }
                }
                dt { "Action budget" } dd {
                    (r.limits.max_actions_per_minute.unwrap_or(rt.options.max_actions_per_minute)) " a minute"
                    @if r.limits.max_actions_per_minute.is_none() { " (the daemon's default)" }
                    @if let Some(t) = throttled {
                        " — " (badge("throttled")) " " (t.held) " job(s) held, the last until "
                        (crate::platforms::supportopsd::events::rfc3339_ms(t.held_until_ms))
                    }
                }
                dt { "Declared in" } dd { code.mono { (r.file) } }
                dt { "Trigger" } dd {
                    code { (r.trigger.event.name) } " from "
                    a href=(format!("/ui/integrations/{}", seg(r.trigger.integration.as_str()))) { (r.trigger.integration) }
                    " (" (r.trigger.platform.as_str()) ")"
                }
            }
        }
        section.panel aria-labelledby="conditions-h" {
            h2 #conditions-h { "Conditions" }
            @if r.trigger.condition.is_none() {
                p { "None: every " code { (r.trigger.event.name) } " event matches." }
            } @else {
                pre { code { (serde_json::to_string_pretty(&conditions).unwrap_or_default()) } }
            }
        }
        section.panel aria-labelledby="actions-h" {
            h2 #actions-h { "Actions" }
            ol {
                @for a in &r.actions {
                    li {
                        code { (a.action.name) } " on "
                        a href=(format!("/ui/integrations/{}", seg(a.integration.as_str()))) { (a.integration) }
                        @let params = crate::runtime::history::redacted(&Value::Object(a.parameters_source()));
                        @if params.as_object().is_some_and(|p| !p.is_empty()) {
                            pre { code { (serde_json::to_string_pretty(&params).unwrap_or_default()) } }
                        }
                    }
                }
            }
        }
        section.panel aria-labelledby="activity-h" {
            h2 #activity-h { "Last 24 hours" }
            @if unreadable {
                (error_box("Some per-minute counts cannot be read; the daemon's log says why."))
            }
            div.grid {
                (chart("Matches per 5 minutes", "24 h ago", &[
                    Series { name: "matched", class: "s1", values: bucket(&matches, 5) },
                ]))
                (chart("Action outcomes per 5 minutes", "24 h ago", &[
                    Series { name: "succeeded", class: "s3", values: bucket(&ok, 5) },
                    Series { name: "failed or retried", class: "s2", values: bucket(&bad, 5) },
                ]))
            }
            p { a href=(format!("/ui/events?rule={}", seg(id))) { "Events this rule matched" } }
        }
    };
    let page = ctx.page("/ui/rules", &title, body);
    html_reply(StatusCode::OK, page)
}
