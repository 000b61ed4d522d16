//! The reconciler: brings the platforms in line with the newest revision of the manifest
//! repository, one pass at a time (so never two reconciles of one integration at once).
//!
//! A pass:
//! 1. resolves the revision to run (the pin, else `--rev`) and, when it is not the one in use,
//!    loads and validates it: a revision that does not validate is refused whole and the last
//!    good one keeps running ([`crate::runtime::Runtime::load_revision`]);
//! 2. checks the connection of every integration that is due (all of them after a new
//!    revision; failing ones again after a backoff; healthy ones every resync);
//! 3. syncs each integration's webhook registration ([`sync_registrations`]): level-triggered,
//!    the connector compares what the platform has with what is wanted, so a registration
//!    deleted or edited behind our back is repaired on the next pass; registrations recorded in
//!    the state whose integration (or `[webhook]`) is gone are pruned with the connector of the
//!    revision that made them.
//!
//! Passes are requested by the [`trigger`]s; the loop in [`run`] coalesces requests that arrive
//! while a pass runs into one more pass.

pub mod trigger;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::manifest::{self, IntegrationId, Source};
use crate::platforms::{self, Connector, RegistrationOutcome, WebhookSync, WebhookTarget};
use crate::runtime::health::{self, HealthStatus, SyncStatus};
use crate::runtime::pass::{Cause, PassReport, Request, ResourceResult};
use crate::runtime::{Problem, Runtime, active, now_ms};
use crate::secrets::{self, ResolveContext};
use crate::state::{AuditKind, RegistrationRecord};

/// Runs passes until `shutdown`: on requests, on the poll interval (a cheap check for a new
/// commit) and on the resync interval (a full pass).
pub async fn run(rt: Arc<Runtime>, mut rx: mpsc::Receiver<Request>, shutdown: CancellationToken) {
    let poll = rt.options.poll_interval;
    let resync = rt.options.resync_interval;
    let mut next_poll = later(tokio::time::Instant::now(), poll);
    let mut next_resync = later(tokio::time::Instant::now(), resync);
    // Passes in a row that left something failed: the next full pass comes sooner (with a
    // backoff) than the resync interval.
    let mut failed_streak = 0u32;
    loop {
        let first = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            req = rx.recv() => match req { Some(r) => r, None => return },
            () = tokio::time::sleep_until(next_poll.min(next_resync)) => {
                let now = tokio::time::Instant::now();
                if now >= next_resync {
                    next_resync = later(now, resync);
                    next_poll = later(now, poll);
                    Request { cause: Cause::Resync, reply: None }
                } else {
                    next_poll = later(now, poll);
                    Request { cause: Cause::Poll, reply: None }
                }
            }
        };
        let mut waiting = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        let cause = waiting
            .iter()
            .map(|r| r.cause)
            .find(|c| *c != Cause::Poll)
            .unwrap_or(Cause::Poll);
        let report = tokio::select! {
            () = shutdown.cancelled() => return,
            report = pass(&rt, cause) => report,
        };
        if report.results.iter().any(|r| r.outcome == "failed") {
            failed_streak = failed_streak.saturating_add(1);
            let retry = later(
                tokio::time::Instant::now(),
                health::backoff(failed_streak, resync),
            );
            next_resync = next_resync.min(retry);
        } else if cause != Cause::Poll {
            failed_streak = 0;
        }
        for w in waiting {
            if let Some(reply) = w.reply {
                let _ = reply.send(report.clone());
            }
        }
    }
}

/// `now + d`, or a year from now when `d` is too long for the clock (an interval from the
/// command line can be), never an overflow.
fn later(now: tokio::time::Instant, d: std::time::Duration) -> tokio::time::Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(std::time::Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

/// One pass (see the module documentation).
pub async fn pass(rt: &Runtime, cause: Cause) -> PassReport {
    let started = tokio::time::Instant::now();
    let mut report = PassReport::default();
    let loaded = match rt.load_revision().await {
        Ok(changed) => changed,
        Err(why) => {
            report.refused = Some(why);
            false
        }
    };
    report.loaded = loaded;
    // A poll that found nothing new does nothing more.
    let full = loaded || matches!(cause, Cause::Startup | Cause::Api | Cause::Signal);
    // Failing integrations are re-checked on their backoff even by polls.
    check_connections(rt, full).await;
    if cause != Cause::Poll || loaded {
        sync_registrations(rt, &mut report).await;
        if let Err(e) = rt.commit().await {
            tracing::warn!(error = %e, "Could not flush the state after a reconcile pass.");
        }
    }
    let status = rt.status();
    report.revision = status.applied;
    if report.refused.is_none() {
        report.refused = status.refused;
    }
    crate::telemetry::systemd::status(&rt.status_line());
    rt.metrics.reconcile_pass(
        cause.as_str(),
        !report.failed(),
        started.elapsed().as_secs_f64(),
    );
    if cause != Cause::Poll || loaded {
        tracing::info!(
            cause = cause.as_str(),
            revision = report.revision.as_deref().unwrap_or("none"),
            loaded,
            failed = report.failed(),
            "Reconcile pass done."
        );
    }
    report
}

/// Checks the connections that are due (all of them with `all`) and records health and the
/// identity the loop guard needs.
async fn check_connections(rt: &Runtime, all: bool) {
    let Some(active) = rt.active() else { return };
    let now = now_ms();
    // The checks run `CONCURRENCY` at a time; their results are recorded in manifest order.
    let mut due = Vec::new();
    let mut jobs = Vec::new();
    for (id, i) in &active.set.integrations {
        if !all && !rt.check_due(id.as_str(), now) {
            continue;
        }
        let connector = active.connector(id).ok().cloned();
        jobs.push(async move {
            match connector {
                Some(c) => Some(c.check().await),
                None => None,
            }
        });
        due.push((id, i));
    }
    let results = bounded(jobs, CONCURRENCY).await;
    for ((id, i), result) in due.into_iter().zip(results) {
        match result {
            Some(result) => {
                record_check(rt, id, i, result, now);
            }
            None => rt.record_health(
                id.as_str(),
                HealthStatus::Unknown,
                "the connection check stopped unexpectedly",
                now,
            ),
        }
    }
}

/// Checks one integration's connection now, records its health (and the identity the loop
/// guard needs), and returns what was recorded.
pub async fn check_one(
    rt: &Runtime,
    active: &crate::runtime::Active,
    id: &IntegrationId,
    i: &crate::manifest::Integration,
    now: u64,
) -> (HealthStatus, String) {
    let result = match active.connector(id) {
        Ok(c) => Some(c.check().await),
        Err(_) => None,
    };
    record_check(rt, id, i, result, now)
}

/// Records a connection check's result (`None`: the integration has no connector, so why not
/// is what its health says) and the identity the loop guard needs.
fn record_check(
    rt: &Runtime,
    id: &IntegrationId,
    i: &crate::manifest::Integration,
    result: Option<Result<platforms::Health, platforms::PlatformError>>,
    now: u64,
) -> (HealthStatus, String) {
    let (status, reason) = match result {
        Some(result) => {
            if let Ok(h) = &result
                && let Some(identity) = &h.identity
            {
                let mut ids = vec![identity.clone()];
                if let Some(active) = rt.active()
                    && let Ok(c) = active.connector(id)
                {
                    ids.extend(c.other_identities());
                }
                ids.dedup();
                rt.set_identity(id.clone(), ids);
            }
            health::of_check(&result)
        }
        None => match platforms::connect(
            i,
            &ResolveContext::new(rt.key.as_ref(), &env),
            &rt.options.policy,
        ) {
            Err(e) => health::of_connect_error(&e),
            Ok(_) => (HealthStatus::Unknown, "not checked".to_owned()),
        },
    };
    rt.record_health(id.as_str(), status, &reason, now);
    (status, reason)
}

fn env(name: &str) -> Option<String> {
    secrets::process_env(name)
}

/// Syncs every declared registration and prunes the recorded ones no longer declared.
pub async fn sync_registrations(rt: &Runtime, report: &mut PassReport) {
    let Some(active) = rt.active() else { return };
    let records: BTreeMap<String, RegistrationRecord> = match rt.store.registrations() {
        Ok(r) => r.into_iter().map(|r| (r.integration.clone(), r)).collect(),
        Err(e) => {
            tracing::error!(error = %e, "Cannot read the registrations; skipping them this pass.");
            return;
        }
    };
    let mut declared = Vec::new();
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    // The platform calls run `CONCURRENCY` at a time (one per integration); what they did is
    // recorded afterwards, in the order of the manifest.
    let mut targets = Vec::new();
    let mut jobs = Vec::new();
    for i in active.set.integrations.values() {
        let Some(events) = i
            .webhook
            .as_ref()
            .map(|w| &w.events)
            .filter(|e| !e.is_empty())
        else {
            continue;
        };
        declared.push(i.id.as_str().to_owned());
        let mut events = events.clone();
        events.sort();
        events.dedup();
        let target = WebhookTarget {
            integration: i.id.clone(),
            url: active::webhook_url(&rt.options.public_url, i.platform, &i.id),
            events,
            secret: active.manifest_secret(&i.id),
            previous: records
                .get(i.id.as_str())
                .map(|r| rt.unseal_registration(r)),
        };
        let connector = active.connector(&i.id).cloned();
        let job_target = target.clone();
        jobs.push(async move {
            match connector {
                Ok(c) => c
                    .sync_webhook(&job_target)
                    .await
                    .map_err(|e| health::explain(&e)),
                Err(e) => Err(e),
            }
        });
        targets.push((i, target));
    }
    let results = bounded(jobs, CONCURRENCY).await;
    for ((i, target), result) in targets.into_iter().zip(results) {
        let result =
            result.unwrap_or_else(|| Err("the registration task stopped unexpectedly".to_owned()));
        let platform = i.platform.as_str();
        match result {
            Ok(WebhookSync::Registered {
                outcome,
                registration,
            }) => {
                let detail = match outcome {
                    RegistrationOutcome::Unchanged => "webhook registered as declared".to_owned(),
                    RegistrationOutcome::Repaired => {
                        "webhook was changed or deleted on the platform; repaired".to_owned()
                    }
                    other => format!("webhook {}", other.as_str()),
                };
                // Registered, but the operator has to act (Slack: reinstall the app): said in
                // the sync reason and the pass's notes.
                let action = active
                    .connector(&i.id)
                    .ok()
                    .and_then(|c| c.pending_action());
                let detail = match &action {
                    Some(action) => {
                        notes.push(Problem {
                            integration: i.id.clone(),
                            message: action.clone(),
                        });
                        format!("{detail}; {action}")
                    }
                    None => detail,
                };
                if let Err(e) =
                    rt.record_registration(&i.id, platform, active.commit.clone(), &registration)
                {
                    tracing::error!(integration = %i.id, error = %e, "Could not record the registration.");
                }
                if outcome != RegistrationOutcome::Unchanged {
                    tracing::info!(integration = %i.id, outcome = outcome.as_str(), url = %target.url, "Webhook registration synced.");
                    rt.audit(
                        AuditKind::RegistrationSynced {
                            outcome: outcome.as_str().to_owned(),
                        },
                        i.id.as_str(),
                        json!({"platform": platform, "url": target.url, "events": target.events, "ids": registration.ids}),
                    );
                }
                rt.metrics.registration(platform, outcome.as_str());
                if outcome == RegistrationOutcome::Repaired {
                    rt.emit_internal(platforms::supportopsd::events::REGISTRATION_REPAIRED, json!({"registration": {"integration": i.id.as_str(), "platform": platform, "url": target.url, "events": target.events, "detail": detail}}));
                }
                rt.record_sync(i.id.as_str(), SyncStatus::InSync, &detail);
                report.results.push(ResourceResult {
                    integration: i.id.to_string(),
                    outcome: outcome.as_str().to_owned(),
                    detail,
                });
            }
            Ok(WebhookSync::Manual(what)) => {
                let (status, reason) = if i.platform == platforms::PlatformKind::Notion {
                    rt.notion_progress(&i.id, &what)
                } else {
                    (SyncStatus::Unknown, what.clone())
                };
                rt.record_sync(i.id.as_str(), status, &reason);
                notes.push(Problem {
                    integration: i.id.clone(),
                    message: what.clone(),
                });
                report.results.push(ResourceResult {
                    integration: i.id.to_string(),
                    outcome: "manual".to_owned(),
                    detail: what,
                });
            }
            Err(why) => {
                tracing::warn!(integration = %i.id, error = %why, "Webhook registration failed; retried on the next pass.");
                rt.metrics.registration(platform, "failed");
                let detail = format!("webhook registration failed: {why}");
                rt.record_sync(i.id.as_str(), SyncStatus::Drifted, &detail);
                problems.push(Problem {
                    integration: i.id.clone(),
                    message: detail.clone(),
                });
                report.results.push(ResourceResult {
                    integration: i.id.to_string(),
                    outcome: "failed".to_owned(),
                    detail,
                });
            }
        }
    }
    rt.record_registration_pass(notes, problems);
    for (id, record) in records {
        if declared.contains(&id) {
            continue;
        }
        let result = prune(rt, &record).await;
        match result {
            Ok(n) => {
                if let Err(e) = rt.store.remove_registration(&id) {
                    tracing::error!(integration = %id, error = %e, "Could not forget a pruned registration.");
                }
                tracing::info!(integration = %id, deleted = n, "Webhook registration pruned.");
                rt.audit(
                    AuditKind::RegistrationRemoved,
                    &id,
                    json!({"platform": record.platform, "url": record.url, "deleted": n}),
                );
                rt.metrics.registration(&record.platform, "removed");
                report.results.push(ResourceResult {
                    integration: id,
                    outcome: "removed".to_owned(),
                    detail: format!("webhook registration pruned ({n} deleted on the platform)"),
                });
            }
            Err(why) => {
                tracing::warn!(integration = %id, error = %why, "Pruning a webhook registration failed; retried on the next pass.");
                rt.metrics.registration(&record.platform, "failed");
                report.results.push(ResourceResult {
                    integration: id,
                    outcome: "failed".to_owned(),
                    detail: format!("pruning the webhook registration failed: {why}"),
                });
            }
        }
    }
}

/// Integrations a pass works on at once (connection checks, then webhook registrations). Each
/// integration still has at most one platform call of the reconciler in flight: a pass checks
/// it once and syncs it once, one step after the other, and passes never overlap.
pub const CONCURRENCY: usize = 16;

/// Runs `jobs`, at most `limit` at a time, and returns their outputs in the order of `jobs`
/// (`None` for a job whose task panicked).
pub(crate) async fn bounded<T, F>(jobs: Vec<F>, limit: usize) -> Vec<Option<T>>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut out: Vec<Option<T>> = std::iter::repeat_with(|| None).take(jobs.len()).collect();
    let mut set = tokio::task::JoinSet::new();
    let mut index = std::collections::HashMap::new();
    let mut pending = jobs.into_iter().enumerate();
    loop {
        while set.len() < limit.max(1) {
            let Some((n, job)) = pending.next() else {
                break;
            };
            let handle = set.spawn(job);
            index.insert(handle.id(), n);
        }
        let Some(joined) = set.join_next_with_id().await else {
            break;
        };
        match joined {
            Ok((id, value)) => {
                if let Some(slot) = index.remove(&id).and_then(|n| out.get_mut(n)) {
                    *slot = Some(value);
                }
            }
            Err(e) => {
                index.remove(&e.id());
                tracing::error!(error = %e, "A reconcile task failed.");
            }
        }
    }
    out
}

/// Deletes a recorded registration from its platform, with the connector of the revision that
/// made it (the integration may be gone from the current one).
async fn prune(rt: &Runtime, record: &RegistrationRecord) -> Result<usize, String> {
    let id = IntegrationId::parse(&record.integration).map_err(|e| e.to_string())?;
    let connector = connector_for(rt, &id, record.revision.as_deref()).await?;
    let mut target = WebhookTarget {
        integration: id,
        url: record.url.clone(),
        events: record.events.clone(),
        secret: None,
        previous: None,
    };
    target.previous = Some(rt.unseal_registration(record));
    connector
        .remove_webhook(&target)
        .await
        .map_err(|e| health::explain(&e))
}

/// The connector of `id`: from the active revision if it still declares the integration, else
/// from the revision `revision` of the repository.
async fn connector_for(
    rt: &Runtime,
    id: &IntegrationId,
    revision: Option<&str>,
) -> Result<Arc<dyn Connector>, String> {
    if let Some(active) = rt.active()
        && let Ok(c) = active.connector(id)
    {
        return Ok(c.clone());
    }
    let Some(revision) = revision else {
        return Err(format!(
            "integration `{id}` is gone and the revision that registered it is unknown; delete its webhook on the platform by hand"
        ));
    };
    let source = Source {
        repo: rt.options.repo.clone(),
        subdir: rt.options.subdir.clone(),
        rev: Some(revision.to_owned()),
    };
    let loaded = tokio::task::spawn_blocking(move || manifest::load_source(&source))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let set = loaded
        .set
        .ok_or_else(|| format!("revision {revision} that registered `{id}` no longer validates"))?;
    let integration = set
        .integrations
        .get(id)
        .ok_or_else(|| format!("revision {revision} does not declare `{id}`"))?;
    let ctx = ResolveContext::new(rt.key.as_ref(), &env);
    // The revision that registered it passed the policy then; the policy in force now decides
    // whether its connector may still be built.
    platforms::connect(integration, &ctx, &rt.options.policy).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::bounded;

    /// Jobs that count how many of them are in flight at once.
    fn counting_jobs(
        n: usize,
        in_flight: &Arc<AtomicUsize>,
        most: &Arc<AtomicUsize>,
    ) -> Vec<impl std::future::Future<Output = usize> + Send + 'static> {
        (0..n)
            .map(|k| {
                let in_flight = in_flight.clone();
                let most = most.clone();
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    for _ in 0..(n - k) {
                        tokio::task::yield_now().await;
                    }
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    k * 10
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn bounded_keeps_the_order_and_the_limit() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let out = bounded(counting_jobs(40, &in_flight, &most), 4).await;
        let expected: Vec<Option<usize>> = (0..40).map(|k| Some(k * 10)).collect();
        assert_eq!(out, expected);
        // On one thread, the first four jobs all start before any of them ends.
        assert_eq!(most.load(Ordering::SeqCst), 4);
        assert_eq!(in_flight.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn bounded_with_a_limit_of_one_runs_one_at_a_time() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let out = bounded(counting_jobs(5, &in_flight, &most), 0).await;
        assert_eq!(out, vec![Some(0), Some(10), Some(20), Some(30), Some(40)]);
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_job_that_panics_is_none_and_the_others_finish() {
        let jobs: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = u8> + Send>>> = vec![
            Box::pin(async { 1 }),
            Box::pin(async {
                let v: Vec<u8> = Vec::new();
                // An out-of-bounds index: the task panics.
                v[usize::from(v.is_empty())]
            }),
            Box::pin(async { 3 }),
        ];
        assert_eq!(bounded(jobs, 2).await, vec![Some(1), None, Some(3)]);
        assert_eq!(
            bounded(Vec::<std::future::Ready<u8>>::new(), 2).await,
            vec![]
        );
    }
}
