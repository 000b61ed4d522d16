//! The overview (`/ui/`): the applied revision (commit, author, message, since), the pin, a
//! refused newest revision and why; every integration's health and sync with their reasons
//! and since when; the queue (depth, oldest due job's age) and the dead letters; events and
//! actions over the last day as charts from the per-minute totals
//! ([`crate::state::Rollups::rollup_totals`]: 1,440 reads whatever the number of
//! integrations).

use std::collections::HashMap;
use std::sync::PoisonError;

use maud::{Markup, html};

use super::chart::{DAY_MINUTES, Series, bucket, chart, day_first, day_index};
use super::layout::{age, badge, empty, error_box, seg, short, time};
use super::{CONSOLE, Ctx};
use crate::manifest::source::CommitSummary;
use crate::runtime::{Runtime, now_ms};
use crate::state::{HoldKind, MINUTE_MS};

/// Minutes per chart bucket (a day is 288 points).
const BUCKET_MINUTES: usize = 5;

/// The author, message and time of `commit`, read from the repository once per commit.
fn commit_info(rt: &Runtime, commit: &str) -> Option<CommitSummary> {
    let mut cached = CONSOLE
        .commit
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some((c, info)) = cached.as_ref()
        && c == commit
    {
        return info.clone();
    }
    let info = match crate::manifest::source::commit_summary(&rt.options.repo, commit) {
        Ok(info) => Some(info),
        Err(e) => {
            tracing::debug!(error = %e, "Console: the applied commit's details are not readable.");
            None
        }
    };
    *cached = Some((commit.to_owned(), info.clone()));
    info
}

/// Per-minute series of the last day (oldest first): stored, refused, actions succeeded,
/// actions failed (retried, failed, dead-lettered or outcome unknown).
struct Day {
    events: Vec<u64>,
    refused: Vec<u64>,
    succeeded: Vec<u64>,
    failed: Vec<u64>,
}

fn day(rt: &Runtime, now: u64) -> Result<Day, crate::state::Error> {
    // What was counted and not yet written is written first, so the minute in progress shows.
    rt.write_rollups();
    let first = day_first(now);
    let since = first.saturating_mul(MINUTE_MS);
    let totals = rt.store.rollup_totals(since, now.saturating_add(1))?;
    let mut d = Day {
        events: vec![0; DAY_MINUTES],
        refused: vec![0; DAY_MINUTES],
        succeeded: vec![0; DAY_MINUTES],
        failed: vec![0; DAY_MINUTES],
    };
    for t in totals {
        let Some(i) = day_index(t.minute_ms, first) else {
            continue;
        };
        d.events[i] = t.events;
        d.refused[i] = t.rejected;
        for (outcome, n) in &t.actions {
            if outcome == "succeeded" {
                d.succeeded[i] = d.succeeded[i].saturating_add(*n);
            } else {
                d.failed[i] = d.failed[i].saturating_add(*n);
            }
        }
    }
    Ok(d)
}

/// How urgently a health needs attention (lower first).
fn rank(health: &str) -> u8 {
    match health {
        "degraded" | "missing" => 0,
        "progressing" | "unknown" => 1,
        _ => 2,
    }
}

fn sum(v: &[u64]) -> u64 {
    v.iter().fold(0, |a, n| a.saturating_add(*n))
}

/// `GET /ui/`.
pub(crate) fn page(rt: &Runtime, ctx: &mut Ctx) -> Markup {
    let now = now_ms();
    let status = rt.status();
    let pin = rt.store.pin().ok().flatten();
    let holds = rt.holds();
    let commit = status.applied.as_deref().and_then(|c| commit_info(rt, c));
    let queue = rt.store.queue_depth();
    let dead = rt.store.dead_depth();
    let oldest = rt.store.oldest_due_ms().ok().flatten();
    let mut problems: HashMap<&str, Vec<&str>> = HashMap::new();
    for p in status.problems.iter().chain(&status.registration_problems) {
        problems
            .entry(p.integration.as_str())
            .or_default()
            .push(&p.message);
    }
    let active = rt.active();
    let platforms: HashMap<&str, &str> = active
        .as_ref()
        .map(|a| {
            a.set
                .integrations
                .values()
                .map(|i| (i.id.as_str(), i.platform.as_str()))
                .collect()
        })
        .unwrap_or_default();
    // Those that need attention first: unhealthy, then drifted, then the rest, by id.
    let mut health = rt.health_records();
    health.sort_by(|a, b| {
        (rank(&a.health), a.sync != "drifted", &a.integration).cmp(&(
            rank(&b.health),
            b.sync != "drifted",
            &b.integration,
        ))
    });
    let mut by_health: Vec<(&str, usize)> = Vec::new();
    for h in &health {
        match by_health.iter_mut().find(|(name, _)| *name == h.health) {
            Some((_, n)) => *n += 1,
            None => by_health.push((&h.health, 1)),
        }
    }
    let day = day(rt, now).map_err(|e| {
        tracing::error!(error = %e, "Console: reading the per-minute totals failed.");
    });
    let span = "24 h ago";
    let body = html! {
        section.panel aria-labelledby="revision-h" {
            h2 #revision-h { "Revision" }
            @match &status.applied {
                Some(c) => dl.facts {
                    dt { "Applied" } dd { code.mono #applied-revision title=(c) { (short(c)) } }
                    @if let Some(info) = &commit {
                        dt { "Author" } dd { (info.author) }
                        dt { "Message" } dd { (info.summary) }
                        dt { "Committed" } dd { (time(info.time_ms)) }
                    }
                    dt { "In use since" } dd { (time(status.applied_ms.unwrap_or(0))) }
                },
                None => (error_box("No revision is applied: the daemon serves its health endpoints only until one loads. The refusal below, or the daemon's log, says why.")),
            }
            @if let Some(p) = &pin {
                p #pin {
                    (badge("pinned")) " Held on "
                    code.mono title=(p.revision) { (short(&p.revision)) }
                    " since " (time(p.at_ms))
                    @if !p.reason.is_empty() { ": " (p.reason) }
                    ". New commits on the branch are not applied until the pin is released ("
                    code { "supportopsd unpin" } ")."
                }
            }
            @if !holds.is_empty() {
                div #holds {
                    @for h in holds.all() {
                        p {
                            (badge("paused")) " " (h.kind.as_str()) " "
                            @if h.kind == HoldKind::Rule {
                                a href=(format!("/ui/rules/{}", seg(&h.id))) { (h.id) }
                            } @else {
                                a href=(format!("/ui/integrations/{}", seg(&h.id))) { (h.id) }
                            }
                            " since " (time(h.at_ms)) ": " (h.reason)
                            @if h.kind == HoldKind::Rule { ". It matches nothing" } @else { ". Its actions wait in the queue" }
                            " until " code { "supportopsd resume --" (h.kind.as_str()) " " (h.id) } "."
                        }
                    }
                }
            }
            @if let Some(why) = &status.refused {
                div #refused .error-box role="alert" {
                    strong { "The newest revision was refused" }
                    @if let Some(c) = &status.refused_commit {
                        " (" code.mono title=(c) { (short(c)) } ")"
                    }
                    "; the one above keeps running. Why: " (why)
                }
            }
        }
        div.grid {
            section.panel aria-labelledby="queue-h" {
                h2 #queue-h { "Queue" }
                p.stat #queue-depth { (queue) }
                p.muted {
                    @match oldest {
                        Some(due) if queue > 0 => { "jobs waiting; the oldest has been due for " (age(now.saturating_sub(due))) },
                        _ => "jobs waiting: nothing is due",
                    }
                }
            }
            section.panel aria-labelledby="dead-h" {
                h2 #dead-h { "Dead letters" }
                p.stat #dead-count { (dead) }
                p.muted {
                    @if dead == 0 { "No job has failed for good." }
                    @else { a href="/ui/dead-letters" { "See them and replay" } }
                }
            }
            section.panel aria-labelledby="day-h" {
                h2 #day-h { "Last 24 hours" }
                @match &day {
                    Ok(d) => {
                        p.stat { (sum(&d.events)) }
                        p.muted { "events stored, " (sum(&d.refused)) " refused; "
                            (sum(&d.succeeded)) " actions succeeded, " (sum(&d.failed)) " did not" }
                    }
                    Err(_) => p.muted { "The per-minute counts cannot be read; the daemon's log says why." },
                }
            }
        }
        section.panel aria-labelledby="charts-h" {
            h2 #charts-h { "Activity" }
            @match &day {
                Ok(d) => div.grid {
                    (chart("Events per 5 minutes", span, &[
                        Series { name: "stored", class: "s1", values: bucket(&d.events, BUCKET_MINUTES) },
                        Series { name: "refused", class: "s2", values: bucket(&d.refused, BUCKET_MINUTES) },
                    ]))
                    (chart("Actions per 5 minutes", span, &[
                        Series { name: "succeeded", class: "s3", values: bucket(&d.succeeded, BUCKET_MINUTES) },
                        Series { name: "failed or retried", class: "s2", values: bucket(&d.failed, BUCKET_MINUTES) },
                    ]))
                },
                Err(()) => (error_box("The per-minute counts cannot be read; the daemon's log says why.")),
            }
        }
        section aria-labelledby="integrations-h" {
            h2 #integrations-h { "Integrations" }
            @if health.is_empty() {
                (empty("No integrations: the applied revision declares none (or none is applied)."))
            } @else {
                p #health-summary {
                    @for (i, (name, n)) in by_health.iter().enumerate() {
                        @if i > 0 { " · " }
                        (n) " " (badge(name))
                    }
                    span.muted { " — those that need attention are listed first." }
                }
                div.table-wrap {
                    table #integrations .stack {
                        thead { tr { th { "Integration" } th { "Platform" } th { "Health" } th { "Sync" } th { "Since" } } }
                        tbody {
                            @for h in &health {
                                tr data-integration=(h.integration) {
                                    td data-label="Integration" {
                                        a href=(format!("/ui/integrations/{}", seg(&h.integration))) { (h.integration) }
                                        @if let Some(list) = problems.get(h.integration.as_str()) {
                                            @for p in list { br; small.muted { (p) } }
                                        }
                                    }
                                    td data-label="Platform" { (platforms.get(h.integration.as_str()).copied().unwrap_or("")) }
                                    td.health data-label="Health" data-status=(h.health) {
                                        (badge(&h.health)) " " small.muted { (h.health_reason) }
                                    }
                                    td.sync data-label="Sync" data-status=(h.sync) {
                                        (badge(&h.sync)) " " small.muted { (h.sync_reason) }
                                    }
                                    td data-label="Since" { (time(h.since_ms)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    ctx.page("/ui/", "Overview", body)
}
