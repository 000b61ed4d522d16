//! The executor: drains the outbox. It leases due jobs, runs each rule's actions in order (a
//! later action sees the results of the earlier ones), passes every request through the
//! integration's gate, retries what may succeed later with backoff, and dead-letters what is
//! exhausted or hopeless. Progress is recorded after every action, so a retry — or a restart
//! after a crash — never repeats an action that succeeded, and at most the job in flight runs
//! again.

pub mod gate;
pub mod retry;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::daemon::{Runtime, now_ms};
use crate::platforms::{ActionCall, PlatformError};
use crate::state::{AuditKind, Job};
use crate::webhook::audit;

/// How often the executor looks for due jobs when nothing wakes it.
const POLL: Duration = Duration::from_millis(500);

/// Runs until `shutdown`; jobs in flight finish (their leases protect them otherwise).
pub async fn run(rt: Arc<Runtime>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(rt.options.workers.max(1)));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        // Wait for a free worker first, so that a finished job lets the next one start at once.
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let free = slots.available_permits() + 1;
        let store = rt.store.clone();
        let lease_ms = u64::try_from(rt.options.lease.as_millis()).unwrap_or(u64::MAX);
        let leased = blocking(move || store.lease_due(now_ms(), lease_ms, free))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "Leasing jobs failed.");
                Vec::new()
            });
        if leased.is_empty() {
            drop(first);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = rt.work.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        let mut first = Some(first);
        for job in leased {
            let permit = match first.take() {
                Some(p) => p,
                None => match slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let rt = rt.clone();
            tracker.spawn(async move {
                run_job(&rt, job).await;
                drop(permit);
            });
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// What became of a job.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done,
    Retry,
    Dead,
}

/// Runs one leased job from its next step to the end, or until a step fails.
async fn run_job(rt: &Runtime, mut job: Job) {
    let outcome = step_through(rt, &mut job).await;
    if outcome != Outcome::Done {
        durable(rt).await;
        return;
    }
    let store = rt.store.clone();
    let id = job.id;
    if let Err(e) = blocking(move || store.ack(id)).await {
        tracing::error!(job = id, error = %e, "Recording a finished job failed; it will run again after its lease.");
    }
    durable(rt).await;
}

async fn step_through(rt: &Runtime, job: &mut Job) -> Outcome {
    let now = now_ms();
    let Some(active) = rt.active() else {
        return give_up(rt, job, "no active revision", now);
    };
    let Some(rule) = active.rule(&job.rule) else {
        return give_up(
            rt,
            job,
            &format!("rule `{}` is no longer in the active revision", job.rule),
            now,
        );
    };
    let event = match rt.store.event(&job.event_key) {
        Ok(Some(e)) => e,
        Ok(None) => return give_up(rt, job, "the event is no longer stored", now),
        Err(e) => return retry_later(rt, job, &format!("reading the event: {e}"), None),
    };
    let base = event.context();
    while job.step < rule.actions.len() {
        let step = job.step;
        let action = &rule.actions[step];
        let mut ctx = base.clone();
        if let Value::Object(m) = &mut ctx {
            let earlier: Vec<Value> = job.results.iter().map(|r| json!({ "result": r })).collect();
            m.insert("actions".into(), Value::Array(earlier));
        }
        let parameters = match action.parameters.render(&ctx) {
            Ok(p) => p,
            Err(e) => {
                return give_up(
                    rt,
                    job,
                    &format!("action {step} (`{}`): {e}", action.action.name),
                    now_ms(),
                );
            }
        };
        let connector = match active.connector(&action.integration) {
            Ok(c) => c.clone(),
            Err(e) => return give_up(rt, job, &format!("action {step}: {e}"), now_ms()),
        };
        if let Some(gate) = active.gate(&action.integration) {
            let _pass = gate.pass().await;
        }
        let call = ActionCall {
            action: action.action.name.to_owned(),
            parameters,
            idempotency_key: format!("supportopsd-{}-{}", job.id, step),
        };
        audit(
            rt,
            now_ms(),
            AuditKind::ActionAttempted { step },
            "job",
            &job.id.to_string(),
            json!({"rule": job.rule, "step": step, "action": call.action, "integration": action.integration.as_str(), "attempt": job.attempts + 1}),
        );
        let started = tokio::time::Instant::now();
        let result = connector.execute(&call).await;
        let seconds = started.elapsed().as_secs_f64();
        let platform = action.platform.as_str();
        match result {
            Ok(output) => {
                rt.metrics
                    .action(platform, &call.action, "succeeded", seconds);
                audit(
                    rt,
                    now_ms(),
                    AuditKind::ActionSucceeded { step },
                    "job",
                    &job.id.to_string(),
                    json!({"rule": job.rule, "step": step, "action": call.action}),
                );
                let store = rt.store.clone();
                let (id, result) = (job.id, output.result);
                match blocking(move || store.complete_step(id, step, result)).await {
                    Ok(updated) => *job = updated,
                    Err(e) => {
                        return retry_later(rt, job, &format!("recording progress: {e}"), None);
                    }
                }
                // Before the next action: a crash from here on must not repeat this one.
                if step + 1 < rule.actions.len() {
                    durable(rt).await;
                }
            }
            Err(e) => {
                if let PlatformError::RateLimited { retry_after } = &e {
                    rt.metrics.rate_limited(action.integration.as_str());
                    if let (Some(d), Some(gate)) = (retry_after, active.gate(&action.integration)) {
                        gate.pause_for(*d);
                    }
                }
                let message = format!("action {step} (`{}`): {e}", call.action);
                audit(
                    rt,
                    now_ms(),
                    AuditKind::ActionFailed {
                        step,
                        error: message.clone(),
                    },
                    "job",
                    &job.id.to_string(),
                    json!({"rule": job.rule, "step": step}),
                );
                if e.retryable() {
                    let outcome = retry_later(rt, job, &message, e.retry_after());
                    rt.metrics.action(
                        platform,
                        &call.action,
                        if outcome == Outcome::Dead {
                            "dead_lettered"
                        } else {
                            "retried"
                        },
                        seconds,
                    );
                    return outcome;
                }
                rt.metrics
                    .action(platform, &call.action, "dead_lettered", seconds);
                return give_up(rt, job, &message, now_ms());
            }
        }
    }
    Outcome::Done
}

/// Schedules the job again, or dead-letters it when its schedule is exhausted.
fn retry_later(rt: &Runtime, job: &Job, error: &str, retry_after: Option<Duration>) -> Outcome {
    let attempts = job.attempts.saturating_add(1);
    match rt
        .options
        .retry
        .next_delay(attempts, retry_after, retry::random_unit())
    {
        Some(delay) => {
            let due = now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
            if let Err(e) = rt.store.retry(job.id, error, due) {
                tracing::error!(job = job.id, error = %e, "Rescheduling failed; the job runs again after its lease.");
            }
            tracing::info!(job = job.id, rule = %job.rule, attempts, delay_ms = delay.as_millis() as u64, error, "Action failed; retrying later.");
            Outcome::Retry
        }
        None => give_up(
            rt,
            job,
            &format!("{error} (gave up after {attempts} attempts)"),
            now_ms(),
        ),
    }
}

/// Moves the job to the dead-letter tree.
fn give_up(rt: &Runtime, job: &Job, error: &str, now: u64) -> Outcome {
    tracing::warn!(job = job.id, rule = %job.rule, error, "Job dead-lettered; replay it with `supportopsd events replay {}`.", job.id);
    if let Err(e) = rt.store.dead_letter(job.id, error, now) {
        tracing::error!(job = job.id, error = %e, "Dead-lettering failed; the job runs again after its lease.");
    }
    audit(
        rt,
        now,
        AuditKind::ActionDeadLettered {
            step: job.step,
            error: error.to_owned(),
        },
        "job",
        &job.id.to_string(),
        json!({"rule": job.rule}),
    );
    rt.emit_dead_lettered(job, error);
    Outcome::Dead
}

/// Runs a state operation off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::state::Error> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Waits until the job's progress is on disk (shared with concurrent writers: group commit).
/// A failure only widens what a crash may repeat, so it is logged, not fatal.
async fn durable(rt: &Runtime) {
    if let Err(e) = rt.commit().await {
        tracing::warn!(error = %e, "Flushing job progress failed; a crash now may repeat an action.");
    }
}
