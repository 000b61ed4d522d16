//! Dead letters (`/ui/dead-letters`): the jobs that failed for good, oldest first, each with a
//! replay button, and "replay all" — the same operations as `POST /api/jobs/{id}/replay` and
//! `POST /api/jobs/replay-dead` ([`crate::daemon::api::replay_one`],
//! [`crate::daemon::api::replay_all`]), audited with the console as the way in. Read-only
//! sessions see the list without the buttons.

use std::sync::Arc;

use http::StatusCode;
use maud::html;

use super::layout::{csrf_field, empty, seg, time};
use super::{Ctx, done, failed, html_reply};
use crate::runtime::Runtime;
use crate::webhook::Reply;

/// Dead letters listed at most (as `GET /api/jobs/dead`).
const LIST: usize = 1_000;

/// `GET /ui/dead-letters`.
pub(crate) fn list(rt: &Runtime, ctx: &mut Ctx) -> Reply {
    let dead = match rt.store.dead(LIST) {
        Ok(d) => d,
        Err(e) => return failed(ctx, "Listing the dead letters", &e),
    };
    let total = rt.store.dead_depth();
    let active = rt.active();
    let may_change = ctx.may_change();
    let csrf = ctx.csrf().to_owned();
    let body = html! {
        p.muted {
            "A job is dead-lettered when an action failed for good (or kept failing until its retries ran out). "
            "Replaying puts it back in the queue: it runs again from the action that failed, and never repeats one that succeeded."
        }
        @if dead.is_empty() {
            (empty("No dead letters: every job ran, or is still being retried."))
        } @else {
            @if may_change {
                form #replay-all .panel method="post" action="/ui/dead-letters/replay-all" data-mutates
                    data-confirm=(format!("Replay all {total} dead-lettered jobs?")) {
                    (csrf_field(&csrf))
                    button type="submit" data-mutates { "Replay all " (total) }
                }
            }
            @if total > dead.len() {
                p.muted { "The oldest " (dead.len()) " of " (total) " are shown." }
            }
            div.table-wrap {
                table #dead-letters .stack {
                    thead { tr { th { "Job" } th { "Rule" } th { "Action" } th { "Event" } th { "Error" } th { "Dead since" } @if may_change { th { span.sr-only { "Replay" } } } } }
                    tbody {
                        @for d in &dead {
                            @let j = &d.job;
                            @let action = active.as_ref().and_then(|a| a.rule(&j.rule)).and_then(|r| r.actions.get(j.step));
                            tr data-job=(j.id) {
                                td data-label="Job" { (j.id) }
                                td data-label="Rule" { a href=(format!("/ui/rules/{}", seg(&j.rule))) { (j.rule) } }
                                td data-label="Action" {
                                    "step " (j.step + 1)
                                    @if let Some(a) = action { ": " (a.integration) " " code { (a.action.name) } }
                                }
                                td data-label="Event" { a href=(format!("/ui/events/{}", seg(&j.event_id.to_string()))) { code.mono { (j.event_id) } } }
                                td data-label="Error" { (j.last_error.as_deref().unwrap_or("")) " " small.muted { "(" (j.attempts) " attempts)" } }
                                td data-label="Dead since" { (time(d.dead_at_ms)) }
                                @if may_change {
                                    td {
                                        form.inline method="post" action=(format!("/ui/dead-letters/{}/replay", j.id)) data-mutates {
                                            (csrf_field(&csrf))
                                            button.replay type="submit" data-mutates aria-label=(format!("Replay job {}", j.id)) { "Replay" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let page = ctx.page("/ui/dead-letters", "Dead letters", body);
    html_reply(StatusCode::OK, page)
}

/// `POST /ui/dead-letters/{job}/replay`.
pub(crate) async fn replay(rt: &Arc<Runtime>, ctx: &mut Ctx, job: &str) -> Reply {
    let Ok(id) = job.parse::<u64>() else {
        return super::not_found(ctx, "That is not a job id.");
    };
    match crate::daemon::api::replay_one(rt, &ctx.caller, id).await {
        Ok(job) => done(
            ctx,
            "/ui/dead-letters",
            format!(
                "Job {id} (rule {}, event {}) was replayed: it runs again now.",
                job.rule, job.event_id
            ),
            false,
        ),
        Err(crate::state::Error::NoSuchDeadJob { .. }) => done(
            ctx,
            "/ui/dead-letters",
            format!("Job {id} is not dead-lettered (any more): nothing was replayed."),
            true,
        ),
        Err(e) => failed(ctx, "Replaying the job", &e),
    }
}

/// `POST /ui/dead-letters/replay-all`.
pub(crate) async fn replay_all(rt: &Arc<Runtime>, ctx: &mut Ctx) -> Reply {
    match crate::daemon::api::replay_all(rt, &ctx.caller, None).await {
        Ok(jobs) => done(
            ctx,
            "/ui/dead-letters",
            match jobs.len() {
                0 => "There was nothing to replay.".to_owned(),
                1 => "1 job was replayed: it runs again now.".to_owned(),
                n => format!("{n} jobs were replayed: they run again now."),
            },
            false,
        ),
        Err(e) => failed(ctx, "Replaying the dead letters", &e),
    }
}
