//! The executor: drains the outbox. It leases due jobs, runs each rule's actions in order (a
//! later action sees the results of the earlier ones), passes every request through the
//! integration's gate, retries what may succeed later with backoff, and dead-letters what is
//! exhausted or hopeless.
//!
//! What is guaranteed about repeats:
//!
//! - Progress is recorded (and flushed before the next action) after every action, so a retry
//!   never repeats an action whose success was recorded.
//! - A failure that may have reached the platform (a 5xx, a timeout after sending, a cut
//!   connection) is retried only for actions that are safe to send twice: reads, updates,
//!   and creates the platform deduplicates (Zendesk's `Idempotency-Key`, names that are
//!   unique). An action that would create its object again ([`Resend::Duplicates`] in the
//!   platform's catalogue) is dead-lettered as "outcome unknown" instead, with what to check
//!   on the platform; the operator replays it if the object is missing.
//! - For those same actions the attempt is recorded on disk before the request is sent
//!   ([`crate::state::Outbox::begin_attempt`]). After a crash or `SIGKILL`, a job found with
//!   its attempt in flight is dead-lettered as "outcome unknown" instead of being sent again.
//! - What a crash can still repeat: an action of a kind that is safe to send twice, in flight
//!   or succeeded but not yet recorded on disk (at most one per job; it runs again, to the
//!   same effect, or a Zendesk create returns what its idempotency key created). A create that
//!   would duplicate is not sent twice by supportopsd (unless the disk write before it
//!   fails, which is logged); the price is that one in flight at a crash waits for the
//!   operator.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::manifest::RuleAction;
use crate::platforms::{ActionCall, ActionOutput, Connector, PlatformError, Resend};
use crate::rules::template::{Limit, RenderError, limits};
use crate::runtime::gate::Paused;
use crate::runtime::holds::HOLD_RECHECK;
use crate::runtime::stats::{ActionOutcome, Count, RULE_ENRICHMENT};
use crate::runtime::{Active, Runtime, now_ms};
use crate::state::{AuditKind, ENRICHMENT, Job};

/// How often the executor looks for due jobs when nothing wakes it.
const POLL: Duration = Duration::from_millis(500);

/// Runs until `shutdown`; jobs in flight finish (their leases protect them otherwise).
pub async fn run(rt: Arc<Runtime>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(rt.options.workers.max(1)));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        // Wait for a free worker first, so that a finished job lets the next one start at once.
        // `biased`: once shutdown has begun no new job is leased, even with workers free (an
        // unbiased select picks a ready branch at random, so a busy queue kept being leased).
        let first = tokio::select! {
            biased;
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
                biased;
                () = shutdown.cancelled() => break,
                () = rt.work.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        let mut first = Some(first);
        for work in plan(&rt, leased) {
            let permit = match first.take() {
                Some(p) => p,
                None => match slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let rt = rt.clone();
            tracker.spawn(async move {
                run_work(&rt, work).await;
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
    /// Put back by a runtime hold (not a run: not logged as one).
    Held,
}

/// What a worker runs: one job on its own, or the last steps of several jobs in one bulk call.
#[derive(Debug)]
enum Work {
    /// A job from its next step to the end (the path every job takes unless it is batched).
    Single(Job),
    /// Jobs whose single remaining step is the same batchable action on the same integration,
    /// under the revision they were grouped by.
    Batch { active: Arc<Active>, jobs: Vec<Job> },
}

/// Groups what was leased into work: the jobs whose only remaining step is an action their
/// integration's connector can batch, and that share the integration and the action, become
/// one [`Work::Batch`] (in lease order); everything else, and a group of one, runs alone.
fn plan(rt: &Runtime, leased: Vec<Job>) -> Vec<Work> {
    let Some(active) = rt.active() else {
        return leased.into_iter().map(Work::Single).collect();
    };
    let mut work = Vec::new();
    let mut groups: Vec<((String, &'static str), Vec<Job>)> = Vec::new();
    for job in leased {
        match batch_key(&active, &job) {
            Some(key) => match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, jobs)) => jobs.push(job),
                None => groups.push((key, vec![job])),
            },
            None => work.push(Work::Single(job)),
        }
    }
    for (_, mut jobs) in groups {
        if jobs.len() == 1 {
            if let Some(job) = jobs.pop() {
                work.push(Work::Single(job));
            }
        } else {
            work.push(Work::Batch {
                active: active.clone(),
                jobs,
            });
        }
    }
    work
}

/// The integration and action of a job's step when it is the job's last and its connector can
/// batch it; `None` when the job must run alone.
fn batch_key(active: &Active, job: &Job) -> Option<(String, &'static str)> {
    let rule = active.rule(&job.rule)?;
    if job.step + 1 != rule.actions.len() {
        return None;
    }
    let action = rule.actions.get(job.step)?;
    let connector = active.connector(&action.integration).ok()?;
    connector
        .batchable(action.action.name)
        .then(|| (action.integration.to_string(), action.action.name))
}

/// Runs one piece of work to the end.
async fn run_work(rt: &Runtime, work: Work) {
    match work {
        Work::Single(job) => run_job(rt, job).await,
        Work::Batch { active, jobs } => run_batch(rt, &active, jobs).await,
    }
}

/// Runs one leased job from its next step to the end, or until a step fails.
async fn run_job(rt: &Runtime, mut job: Job) {
    if job.rule == ENRICHMENT {
        enrich(rt, &job).await;
        durable(rt).await;
        return;
    }
    let outcome = step_through(rt, &mut job).await;
    log_run(rt, &job, &outcome);
    if outcome == Outcome::Done {
        ack(rt, job.id).await;
    }
    durable(rt).await;
}

/// The one `INFO` line of a rule run (a job leased and run until it finished, failed or
/// waits): its event, rule, actions and outcome. Never a parameter: rendered values may hold
/// personal data, and a platform's answer is in the audit log.
fn log_run(rt: &Runtime, job: &Job, outcome: &Outcome) {
    let actions = rt
        .active()
        .and_then(|a| {
            a.rule(&job.rule).map(|r| {
                r.actions
                    .iter()
                    .map(|a| a.action.name)
                    .collect::<Vec<_>>()
                    .join(",")
            })
        })
        .unwrap_or_default();
    let outcome = match outcome {
        Outcome::Held => return,
        Outcome::Done => "done",
        Outcome::Retry => "retrying",
        Outcome::Dead => "dead_lettered",
    };
    tracing::info!(event = %job.event_id, job = job.id, rule = %job.rule, actions, steps_done = job.step, outcome, "Rule ran.");
}

/// Runs an enrichment job ([`ENRICHMENT`]): fetches what the delivery did not carry with the
/// integration's connector ([`Connector::enrich`], one call per delivery through the
/// integration's gate), merges it into the stored event, matches the rules on the enriched
/// event (the loop guard included) and, in one state transaction, records the enriched event
/// and enqueues the rules' jobs. A platform that is down or rate-limits is retried with
/// backoff, and a hopeless or exhausted enrichment dead-lettered, exactly like an action
/// (replaying it enriches again).
async fn enrich(rt: &Runtime, job: &Job) -> Outcome {
    let now = now_ms();
    let Some(active) = rt.active() else {
        return give_up(rt, job, "no active revision", now);
    };
    let mut event = match rt.store.event(job.event_id) {
        Ok(Some(e)) => e,
        Ok(None) => return give_up(rt, job, "the event is no longer stored", now),
        Err(e) => return retry_later(rt, job, &format!("reading the event: {e}"), None),
    };
    if rt.holds().integration(event.integration.as_str()).is_some() {
        return hold_back(rt, std::slice::from_ref(job), event.integration.as_str());
    }
    let connector = match active.connector(&event.integration) {
        Ok(c) => c.clone(),
        Err(e) => return give_up(rt, job, &format!("enrichment: {e}"), now),
    };
    let pass = match active.gate(&event.integration) {
        Some(gate) => match gate.pass().await {
            Ok(pass) => Some(pass),
            Err(Paused(left)) => return postpone(rt, std::slice::from_ref(job), left),
        },
        None => None,
    };
    let result = connector.enrich(&event.name, &event.objects).await;
    drop(pass);
    let integration = event.integration.clone();
    let enrichment = |outcome| Count::Action {
        rule: RULE_ENRICHMENT,
        action: ENRICH_ACTION,
        outcome,
    };
    let fields = match result {
        Ok(fields) => {
            rt.stats
                .count(integration.as_str(), enrichment(ActionOutcome::Succeeded));
            fields
        }
        Err(e) => {
            // Counted before the job moves, so a reader who sees the retry or the dead letter
            // sees the count.
            let counted = if e.retryable() && retries_left(rt, job) {
                ActionOutcome::Retried
            } else {
                ActionOutcome::DeadLettered
            };
            rt.stats.count(integration.as_str(), enrichment(counted));
            if let PlatformError::RateLimited { .. } = &e {
                rt.metrics.rate_limited(event.integration.as_str());
                rt.stats
                    .count(event.integration.as_str(), Count::RateLimited);
                if let (Some(d), Some(gate)) = (e.retry_after(), active.gate(&event.integration)) {
                    gate.pause_for(d);
                }
            }
            let message = format!("enrichment of `{}` {}: {e}", event.name, event.key());
            if e.retryable() {
                return retry_later(rt, job, &message, e.retry_after());
            }
            return give_up(rt, job, &message, now_ms());
        }
    };
    merge_objects(&mut event.objects, fields);
    let from_self = rt.is_self(&event);
    let now = now_ms();
    // What matching decides (`runtime::decide`: paused rules removed, budgets, shadow rules).
    let decision = rt.decide(&active, &event, from_self, now).await;
    let records = decision.records(&event.key(), now, true);
    let store = rt.store.clone();
    let (id, matched, held) = (job.id, decision.rules.clone(), decision.held.clone());
    let completed =
        blocking(move || store.complete_enrichment(id, &event, &matched, now, &records, &held))
            .await;
    if completed.is_err() {
        decision.abandoned(rt);
    }
    match completed {
        Ok(_) => {
            decision.stored(rt, &active, integration.as_str());
            if !decision.rules.is_empty() {
                rt.work.notify_one();
            }
            Outcome::Done
        }
        Err(e) => retry_later(rt, job, &format!("recording the enrichment: {e}"), None),
    }
}

/// Merges enriched objects into an event's: key by key into an object the event has, whole
/// where it has none.
fn merge_objects(objects: &mut Map<String, Value>, fields: Map<String, Value>) {
    for (k, v) in fields {
        match (objects.get_mut(&k), v) {
            (Some(Value::Object(have)), Value::Object(new)) => {
                for (field, value) in new {
                    have.insert(field, value);
                }
            }
            (_, v) => {
                objects.insert(k, v);
            }
        }
    }
}

/// Removes a finished job.
async fn ack(rt: &Runtime, id: u64) {
    let store = rt.store.clone();
    if let Err(e) = blocking(move || store.ack(id)).await {
        tracing::error!(job = id, error = %e, "Recording a finished job failed; it will run again after its lease.");
    }
}

/// The event's context a job's templates render against, or what became of the job when it
/// cannot be read.
fn job_context(rt: &Runtime, job: &Job) -> Result<Value, Outcome> {
    match rt.store.event(job.event_id) {
        Ok(Some(e)) => Ok(e.context()),
        Ok(None) => Err(give_up(rt, job, "the event is no longer stored", now_ms())),
        Err(e) => Err(retry_later(
            rt,
            job,
            &format!("reading the event: {e}"),
            None,
        )),
    }
}

/// Renders the job's next step into a call for its connector, or gives the job up. A template
/// that fails — a rendering limit included — dead-letters the job: rendering it again gives the
/// same result.
async fn prepare(
    rt: &Runtime,
    active: &Arc<Active>,
    action: &RuleAction,
    job: &Job,
    base: &Value,
) -> Result<(ActionCall, Arc<dyn Connector>), Outcome> {
    let step = job.step;
    let mut ctx = base.clone();
    if let Value::Object(m) = &mut ctx {
        let earlier: Vec<Value> = job.results.iter().map(|r| json!({ "result": r })).collect();
        m.insert("actions".into(), Value::Array(earlier));
    }
    let parameters = match render_parameters(active, &job.rule, step, ctx).await {
        Ok(p) => p,
        Err(e) => {
            return Err(give_up(
                rt,
                job,
                &format!("action {step} (`{}`): {e}", action.action.name),
                now_ms(),
            ));
        }
    };
    let connector = match active.connector(&action.integration) {
        Ok(c) => c.clone(),
        Err(e) => return Err(give_up(rt, job, &format!("action {step}: {e}"), now_ms())),
    };
    let call = ActionCall {
        action: action.action.name.to_owned(),
        parameters,
        idempotency_key: format!("supportopsd-{}-{}", job.id, step),
    };
    Ok((call, connector))
}

/// Renders the parameters of action `step` of `rule` on the blocking pool, so that a template
/// doing all the work its fuel allows never holds an async worker thread, under
/// [`limits::RENDER_TIME`]. A render that outlives the limit is abandoned (its thread stops
/// when the fuel runs out).
async fn render_parameters(
    active: &Arc<Active>,
    rule: &str,
    step: usize,
    ctx: Value,
) -> Result<Value, RenderError> {
    let (active, rule) = (active.clone(), rule.to_owned());
    let task = tokio::task::spawn_blocking(move || {
        match active.rule(&rule).and_then(|r| r.actions.get(step)) {
            Some(action) => action.parameters.render(&ctx),
            None => Err(RenderError::Failed {
                message: format!("rule `{rule}` has no action {step}"),
                offset: None,
            }),
        }
    });
    match tokio::time::timeout(limits::RENDER_TIME, task).await {
        Ok(Ok(rendered)) => rendered,
        Ok(Err(e)) => Err(RenderError::Failed {
            message: format!("rendering failed: {e}"),
            offset: None,
        }),
        Err(_) => Err(RenderError::Limit(Limit::Time)),
    }
}

/// Records that the job's next step is about to be attempted, with its rendered parameters
/// (redacted: [`crate::runtime::history::redacted`]).
fn attempted(rt: &Runtime, job: &Job, action: &RuleAction, call: &ActionCall) {
    let step = job.step;
    rt.record_audit(
        now_ms(),
        AuditKind::ActionAttempted { step },
        "job",
        &job.id.to_string(),
        json!({"event": job.event_id, "rule": job.rule, "step": step, "action": action.action.name, "integration": action.integration.as_str(), "attempt": job.attempts + 1, "parameters": crate::runtime::history::redacted(&call.parameters)}),
    );
}

/// How an attempt went, besides its result.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    /// The rule's number of actions.
    steps: usize,
    /// How long the platform took.
    seconds: f64,
    /// Whether a rate-limit answer is counted in the metrics (once per HTTP answer: a bulk
    /// call's rate limit counts once, not once per job).
    count_rate_limit: bool,
}

/// Records what the platform answered for the job's next step: progress on success (`None`:
/// go on), else the retry or the dead letter it leads to.
async fn settle(
    rt: &Runtime,
    active: &Active,
    job: &mut Job,
    action: &RuleAction,
    result: Result<ActionOutput, PlatformError>,
    attempt: Attempt,
) -> Option<Outcome> {
    let Attempt {
        steps,
        seconds,
        count_rate_limit,
    } = attempt;
    let step = job.step;
    let name = action.action.name;
    let platform = action.platform.as_str();
    match result {
        Ok(output) => {
            rt.metrics.action(platform, name, "succeeded", seconds);
            rt.stats.count(
                action.integration.as_str(),
                Count::Action {
                    rule: &job.rule,
                    action: name,
                    outcome: ActionOutcome::Succeeded,
                },
            );
            rt.record_audit(
                now_ms(),
                AuditKind::ActionSucceeded { step },
                "job",
                &job.id.to_string(),
                json!({"event": job.event_id, "rule": job.rule, "step": step, "action": name, "duration_ms": duration_ms(seconds), "classification": "ok", "answer": crate::runtime::history::answer_summary(&output.result)}),
            );
            let store = rt.store.clone();
            let (id, result) = (job.id, output.result);
            match blocking(move || store.complete_step(id, step, result)).await {
                Ok(updated) => *job = updated,
                Err(e) => {
                    return Some(retry_later(
                        rt,
                        job,
                        &format!("recording progress: {e}"),
                        None,
                    ));
                }
            }
            // Before the next action: a crash from here on must not repeat this one.
            if step + 1 < steps {
                durable(rt).await;
            }
            None
        }
        Err(e) => {
            // Counted before the job moves (retry or dead letter), so a reader who sees either
            // sees the count; `retries_left` is the decision `retry_later` makes.
            let counted = match &e {
                _ if e.retryable() && retries_left(rt, job) => ActionOutcome::Retried,
                PlatformError::OutcomeUnknown { .. } if !e.retryable() => {
                    ActionOutcome::OutcomeUnknown
                }
                _ => ActionOutcome::DeadLettered,
            };
            rt.stats.count(
                action.integration.as_str(),
                Count::Action {
                    rule: &job.rule,
                    action: name,
                    outcome: counted,
                },
            );
            if let PlatformError::RateLimited { .. } = &e {
                if count_rate_limit {
                    rt.metrics.rate_limited(action.integration.as_str());
                    rt.stats
                        .count(action.integration.as_str(), Count::RateLimited);
                }
                // Clamped to `MAX_RETRY_AFTER` by `retry_after()`.
                if let (Some(d), Some(gate)) = (e.retry_after(), active.gate(&action.integration)) {
                    gate.pause_for(d);
                }
            }
            let message = format!("action {step} (`{name}`): {e}");
            // When it runs again (decided before the record, which says so).
            let due = e
                .retryable()
                .then(|| next_due(rt, job, e.retry_after()))
                .flatten();
            rt.record_audit(
                now_ms(),
                AuditKind::ActionFailed {
                    step,
                    error: message.clone(),
                },
                "job",
                &job.id.to_string(),
                json!({"event": job.event_id, "rule": job.rule, "step": step, "action": name, "duration_ms": duration_ms(seconds), "classification": e.kind(), "retryable": e.retryable(), "retry_due_ms": due}),
            );
            if e.retryable() {
                let outcome = retry_at(rt, job, &message, due);
                rt.metrics.action(
                    platform,
                    name,
                    if outcome == Outcome::Dead {
                        "dead_lettered"
                    } else {
                        "retried"
                    },
                    seconds,
                );
                return Some(outcome);
            }
            let label = match e {
                PlatformError::OutcomeUnknown { .. } => "outcome_unknown",
                _ => "dead_lettered",
            };
            rt.metrics.action(platform, name, label, seconds);
            Some(give_up(rt, job, &message, now_ms()))
        }
    }
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
    let base = match job_context(rt, job) {
        Ok(base) => base,
        Err(outcome) => return outcome,
    };
    let steps = rule.actions.len();
    while let Some(action) = rule.actions.get(job.step) {
        if held(rt, &job.rule, action.integration.as_str()) {
            return hold_back(rt, std::slice::from_ref(job), action.integration.as_str());
        }
        let check = match action.platform.descriptor().resend(action.action.name) {
            Resend::Duplicates { check } => Some(check),
            _ => None,
        };
        if let Some(check) = check
            && job.in_flight == Some(job.step)
        {
            // Leased again with its request marked in flight: supportopsd stopped while it
            // was being sent. Sending it again could create the thing twice.
            let e = PlatformError::OutcomeUnknown {
                detail: format!(
                    "`{}`: supportopsd stopped (a crash or a kill) while this request was in flight",
                    action.action.name
                ),
                check: check.to_owned(),
            };
            let attempt = Attempt {
                steps,
                seconds: 0.0,
                count_rate_limit: false,
            };
            return settle(rt, &active, job, action, Err(e), attempt)
                .await
                .unwrap_or(Outcome::Dead);
        }
        let (call, connector) = match prepare(rt, &active, action, job, &base).await {
            Ok(prepared) => prepared,
            Err(outcome) => return outcome,
        };
        // Held until the platform has answered (the integration's concurrency cap).
        let pass = match active.gate(&action.integration) {
            Some(gate) => match gate.pass().await {
                Ok(pass) => Some(pass),
                Err(Paused(left)) => return postpone(rt, std::slice::from_ref(job), left),
            },
            None => None,
        };
        if check.is_some() {
            // On disk before the request leaves, so that a crash from here until its outcome
            // is recorded is found on restart instead of re-sending the request.
            let store = rt.store.clone();
            let (id, step) = (job.id, job.step);
            match blocking(move || store.begin_attempt(id, step)).await {
                Ok(updated) => *job = updated,
                Err(e) => {
                    drop(pass);
                    return retry_later(rt, job, &format!("recording the attempt: {e}"), None);
                }
            }
            durable(rt).await;
        }
        attempted(rt, job, action, &call);
        let started = tokio::time::Instant::now();
        let result = connector.execute(&call).await;
        let seconds = started.elapsed().as_secs_f64();
        drop(pass);
        let attempt = Attempt {
            steps,
            seconds,
            count_rate_limit: true,
        };
        if let Some(outcome) = settle(rt, &active, job, action, result, attempt).await {
            return outcome;
        }
    }
    Outcome::Done
}

/// Runs the last step of several jobs (same integration, same batchable action) with one
/// [`crate::platforms::Connector::execute_many`] call that passes the gate once, then settles
/// each job from its own result exactly as [`run_job`] would. A job that cannot be prepared
/// (its event is gone, a template fails) is settled alone; when only one job is left it takes
/// the single path.
async fn run_batch(rt: &Runtime, active: &Arc<Active>, jobs: Vec<Job>) {
    let mut ready: Vec<(Job, ActionCall)> = Vec::with_capacity(jobs.len());
    let mut batch: Option<(&RuleAction, Arc<dyn Connector>)> = None;
    for job in jobs {
        let Some(rule) = active.rule(&job.rule) else {
            // Grouped under this revision, so its rule is in it; should that ever change, the
            // single path decides.
            run_job(rt, job).await;
            continue;
        };
        let Some(action) = rule.actions.get(job.step) else {
            run_job(rt, job).await;
            continue;
        };
        if held(rt, &job.rule, action.integration.as_str()) {
            hold_back(rt, std::slice::from_ref(&job), action.integration.as_str());
            continue;
        }
        let base = match job_context(rt, &job) {
            Ok(base) => base,
            Err(outcome) => {
                log_run(rt, &job, &outcome);
                continue;
            }
        };
        match prepare(rt, active, action, &job, &base).await {
            Ok((call, connector)) => {
                if batch.is_none() {
                    batch = Some((action, connector));
                }
                ready.push((job, call));
            }
            Err(outcome) => {
                log_run(rt, &job, &outcome);
                continue;
            }
        }
    }
    let Some((action, connector)) = batch else {
        durable(rt).await;
        return;
    };
    if ready.len() == 1 {
        if let Some((job, _)) = ready.pop() {
            run_job(rt, job).await;
        }
        return;
    }
    // One bulk request passes the gate once.
    let pass = match active.gate(&action.integration) {
        Some(gate) => match gate.pass().await {
            Ok(pass) => Some(pass),
            Err(Paused(left)) => {
                let jobs: Vec<Job> = ready.into_iter().map(|(job, _)| job).collect();
                postpone(rt, &jobs, left);
                durable(rt).await;
                return;
            }
        },
        None => None,
    };
    for (job, call) in &ready {
        attempted(rt, job, action, call);
    }
    let calls: Vec<ActionCall> = ready.iter().map(|(_, c)| c.clone()).collect();
    tracing::debug!(integration = %action.integration, action = action.action.name, jobs = calls.len(), "Running due jobs in one bulk call.");
    let ids: Vec<u64> = ready.iter().map(|(j, _)| j.id).collect();
    let started = tokio::time::Instant::now();
    // A bulk call polls its job and may outlast the lease: keep the jobs leased meanwhile.
    let results = tokio::select! {
        results = connector.execute_many(&calls) => results,
        () = keep_leased(rt, &ids) => Vec::new(),
    };
    let mut results = results.into_iter();
    let seconds = started.elapsed().as_secs_f64();
    drop(pass);
    rt.metrics
        .bulk(action.platform.as_str(), action.action.name, calls.len());
    let mut rate_limit_counted = false;
    for (mut job, _) in ready {
        let result = results.next().unwrap_or_else(|| {
            Err(PlatformError::Transient {
                detail: "the bulk call returned no result for this job".into(),
                retry_after: None,
            })
        });
        let limited = matches!(result, Err(PlatformError::RateLimited { .. }));
        let attempt = Attempt {
            steps: job.step + 1,
            seconds,
            count_rate_limit: limited && !rate_limit_counted,
        };
        rate_limit_counted |= limited;
        let outcome = settle(rt, active, &mut job, action, result, attempt).await;
        log_run(rt, &job, outcome.as_ref().unwrap_or(&Outcome::Done));
        if outcome.is_none() {
            ack(rt, job.id).await;
        }
    }
    durable(rt).await;
}

/// Renews the leases of `ids` every half lease, for as long as it is polled (it never ends on
/// its own).
async fn keep_leased(rt: &Runtime, ids: &[u64]) {
    let lease = rt.options.lease.max(Duration::from_millis(2));
    let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
    loop {
        tokio::time::sleep(lease / 2).await;
        let until = now_ms().saturating_add(lease_ms);
        for id in ids {
            if let Err(e) = rt.store.renew_lease(*id, until) {
                tracing::warn!(job = id, error = %e, "Renewing a job's lease failed; it may run again after its lease.");
            }
        }
    }
}

/// Puts jobs back without an attempt counted, due when their integration's gate reopens: a
/// paused gate (a platform's `Retry-After`) must not hold a worker for the pause.
fn postpone(rt: &Runtime, jobs: &[Job], left: Duration) -> Outcome {
    let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
    let due = now_ms().saturating_add(left_ms);
    for job in jobs {
        match rt.store.postpone(job.id, due) {
            Ok(_) => {
                tracing::debug!(job = job.id, rule = %job.rule, wait_ms = left_ms, "The integration is paused by the platform's Retry-After; the job waits in the queue.");
            }
            Err(e) => {
                tracing::error!(job = job.id, error = %e, "Postponing failed; the job runs again after its lease.");
            }
        }
    }
    Outcome::Retry
}

/// Whether a runtime hold (`supportopsd pause`) keeps a job of `rule` whose next request goes
/// to `integration` in the queue.
fn held(rt: &Runtime, rule: &str, integration: &str) -> bool {
    rt.holds().holding(rule, integration).is_some()
}

/// Puts jobs a runtime hold keeps back (their next request goes to `integration`) into the
/// queue without an attempt counted, looked at again after [`HOLD_RECHECK`] unless a resume
/// wakes them first: a pause never burns retries, dead-letters, or keeps a worker (or the
/// leasing loop) busy. A job whose hold was released while it was being put back (the resume's
/// wake skipped it: it was leased) is woken here.
fn hold_back(rt: &Runtime, jobs: &[Job], integration: &str) -> Outcome {
    let wait_ms = u64::try_from(HOLD_RECHECK.as_millis()).unwrap_or(u64::MAX);
    let due = now_ms().saturating_add(wait_ms);
    for job in jobs {
        match rt.store.postpone(job.id, due) {
            Ok(_) => {
                tracing::debug!(job = job.id, rule = %job.rule, "Paused (`supportopsd pause`); the job waits in the queue until resumed.");
            }
            Err(e) => {
                tracing::error!(job = job.id, error = %e, "Putting a paused job back failed; it is looked at again after its lease.");
                continue;
            }
        }
        if !held(rt, &job.rule, integration) {
            match rt.store.wake(job.id, now_ms()) {
                Ok(true) => rt.work.notify_one(),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(job = job.id, error = %e, "Waking a resumed job failed; it runs within a minute.");
                }
            }
        }
    }
    Outcome::Held
}

/// The action name an enrichment's attempts are counted under.
const ENRICH_ACTION: &str = "enrich";

/// Whether [`retry_later`] schedules `job` again after one more failed attempt (else it
/// dead-letters it): the schedule's length decides, not the jitter.
fn retries_left(rt: &Runtime, job: &Job) -> bool {
    rt.options
        .retry
        .next_delay(job.attempts.saturating_add(1), None, 0.0)
        .is_some()
}

/// Schedules the job again, or dead-letters it when its schedule is exhausted.
fn retry_later(rt: &Runtime, job: &Job, error: &str, retry_after: Option<Duration>) -> Outcome {
    let due = next_due(rt, job, retry_after);
    retry_at(rt, job, error, due)
}

/// When the job runs again after one more failed attempt, by the retry schedule (`None`: the
/// schedule is exhausted).
fn next_due(rt: &Runtime, job: &Job, retry_after: Option<Duration>) -> Option<u64> {
    let attempts = job.attempts.saturating_add(1);
    rt.options
        .retry
        .next_delay(attempts, retry_after, crate::runtime::retry::random_unit())
        .map(|delay| now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)))
}

/// Schedules the job again at `due`, or dead-letters it when there is none.
fn retry_at(rt: &Runtime, job: &Job, error: &str, due: Option<u64>) -> Outcome {
    let attempts = job.attempts.saturating_add(1);
    match due {
        Some(due) => {
            if let Err(e) = rt.store.retry(job.id, error, due) {
                tracing::error!(job = job.id, error = %e, "Rescheduling failed; the job runs again after its lease.");
            }
            let delay_ms = due.saturating_sub(now_ms());
            tracing::info!(job = job.id, rule = %job.rule, attempts, delay_ms, error, "Action failed; retrying later.");
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
    rt.record_audit(
        now,
        AuditKind::ActionDeadLettered {
            step: job.step,
            error: error.to_owned(),
        },
        "job",
        &job.id.to_string(),
        json!({"event": job.event_id, "rule": job.rule}),
    );
    rt.emit_dead_lettered(job, error);
    Outcome::Dead
}

/// Seconds as whole milliseconds, for audit records.
fn duration_ms(seconds: f64) -> u64 {
    // Saturating: a NaN or negative duration is 0.
    (seconds * 1000.0).round().clamp(0.0, u64::MAX as f64) as u64
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
