//! The daemon: wires the webhook server, the executor, the reconciler, supportopsd's own events
//! and the poller around one shared [`Runtime`] under one cancellation token. `run` serves until
//! SIGTERM; SIGHUP asks for a reconcile pass. Nothing below imports this module.

pub mod alerts;
pub mod api;
pub mod auth;
mod conn;
pub mod console;
pub mod openapi;
pub mod poller;
pub mod routes;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::reconcile;
use crate::runtime::pass::Cause;
use crate::runtime::stats::ROLLUP_WRITE_EVERY;
use crate::runtime::{Runtime, now_ms};

/// Runs the daemon until `shutdown` fires: serves webhooks and the API, runs the executor and
/// the reconciler (a first pass at once; then on new commits, SIGHUP (`reload`), the API and
/// the resync interval).
pub async fn run(
    rt: Arc<Runtime>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
    mut reload: mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    // The first revision loads before the server answers, so that readiness means something;
    // registration runs beside the server (Slack and Trello call us back while it is in flight).
    if let Err(why) = rt.load_revision().await {
        tracing::error!(reason = %why, "No valid revision to start with; serving health endpoints only until one loads.");
    }
    let tracker = tokio_util::task::TaskTracker::new();
    if let Some(rx) = rt.take_pass_requests() {
        tracker.spawn(reconcile::run(rt.clone(), rx, shutdown.child_token()));
    }
    rt.trigger_pass(Cause::Startup);
    let _watcher = if rt.options.watch {
        reconcile::trigger::watch_git(&rt.options.repo, rt.pass_requests(), shutdown.child_token())
    } else {
        None
    };
    tracker.spawn(crate::execute::run(rt.clone(), shutdown.child_token()));
    if let Some(rx) = rt.take_emissions() {
        tracker.spawn(alerts::run(rt.clone(), rx, shutdown.child_token()));
    }
    tracker.spawn(housekeeping(rt.clone(), shutdown.child_token()));
    tracker.spawn(close_rejection_windows(rt.clone(), shutdown.child_token()));
    tracker.spawn(write_rollups(rt.clone(), shutdown.child_token()));
    tracker.spawn(poller::run(rt.clone(), shutdown.child_token()));
    {
        let rt = rt.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    msg = reload.recv() => match msg {
                        Some(()) => rt.trigger_pass(Cause::Signal),
                        None => break,
                    },
                }
            }
        });
    }
    crate::telemetry::systemd::ready(&rt.status_line());
    crate::telemetry::systemd::spawn_watchdog(shutdown.child_token());
    server::serve(rt.clone(), listener, shutdown.clone()).await;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    rt.flush_rejections(now_ms(), true);
    // The minute in progress too: the next start adds to it.
    rt.write_rollups();
    // Nothing ingests any more: the journal is folded into the state and retired, so the next
    // start has nothing to replay.
    if let Err(e) = rt.close_ingest().await {
        tracing::warn!(error = %e, "The ingest journal was not retired; the next start replays it.");
    }
    if let Err(e) = rt.store.release_leases() {
        tracing::warn!(error = %e, "Could not release job leases; they expire on their own.");
    }
    rt.store.flush().map_err(anyhow::Error::from)?;
    // sled's snapshot, so that the next start reads none of its log (it costs this stop what
    // it saves that start).
    match rt.store.upkeep(crate::state::Upkeep::Stop) {
        Ok(Some(took)) => {
            tracing::info!(took_ms = took.as_millis() as u64, "State snapshot written.");
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "State snapshot not written; the next start reads the state's log.")
        }
    }
    Ok(())
}

/// Writes the audit record of each refusal window once its minute is over (SEC-08).
async fn close_rejection_windows(rt: Arc<Runtime>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        rt.flush_rejections(now_ms(), false);
    }
}

/// Writes the per-minute counts (`runtime::stats`) every [`ROLLUP_WRITE_EVERY`] and just
/// after each minute ends, and makes them durable, so a crash loses at most the minute in
/// progress.
async fn write_rollups(rt: Arc<Runtime>, shutdown: CancellationToken) {
    loop {
        let into_minute = now_ms() % crate::state::MINUTE_MS;
        let to_minute_end = Duration::from_millis(crate::state::MINUTE_MS - into_minute + 20);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(ROLLUP_WRITE_EVERY.min(to_minute_end)) => {}
        }
        if rt.write_rollups()
            && let Err(e) = rt.commit().await
        {
            tracing::warn!(error = %e, "Flushing the per-minute counts failed; a crash now may lose them.");
        }
    }
}

/// Periodic upkeep: expired dedupe entries and orphaned events, the state's file modes,
/// audit records beyond their age and count bounds, rollups beyond theirs.
/// How often housekeeping runs: every 5 minutes, or a quarter of the shortest retention or
/// dedupe window when that is shorter (at least every second), so that a short setting is
/// honoured within a quarter of itself.
fn housekeeping_interval(options: &crate::runtime::Options) -> Duration {
    [
        options.event_retention,
        options.dedupe_ttl,
        options.audit_retention,
    ]
    .into_iter()
    .map(|d| d / 4)
    .fold(Duration::from_secs(300), Duration::min)
    .max(Duration::from_secs(1))
}

/// The event retention of `--event-retention` and `--max-state-size`.
fn supportopsd_retention(options: &crate::runtime::Options) -> crate::state::Retention {
    crate::state::Retention {
        event_retention_ms: u64::try_from(options.event_retention.as_millis()).unwrap_or(u64::MAX),
        max_state_bytes: options.max_state_size,
    }
}

/// Periodic upkeep: expired dedupe entries, deliveries past retention (and their segment
/// files), the state's file modes.
async fn housekeeping(rt: Arc<Runtime>, shutdown: CancellationToken) {
    let every = housekeeping_interval(&rt.options);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let store = rt.store.clone();
        let retention = u64::try_from(rt.options.audit_retention.as_millis()).unwrap_or(u64::MAX);
        let (max_audit, rollup_retention) = (
            rt.options.audit_max_records,
            u64::try_from(rt.options.rollup_retention.as_millis()).unwrap_or(u64::MAX),
        );
        let events = supportopsd_retention(&rt.options);
        let result = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            let purged = store.purge_expired(now, &events)?;
            if purged.events > 0 || purged.segments > 0 {
                tracing::info!(
                    events = purged.events,
                    segments = purged.segments,
                    bytes = purged.payload_bytes,
                    copied = purged.copied,
                    "Retention removed stored deliveries."
                );
            }
            if let Some(why) = store.retention_totals()?.limit_unmet {
                tracing::warn!(reason = %why, "The state cannot be kept under --max-state-size.");
            }
            // sled's snapshots and blobs since the last time.
            store.secure_files();
            store.purge_audit(now.saturating_sub(retention))?;
            store.purge_audit_over(max_audit)?;
            store.purge_rollups(now.saturating_sub(rollup_retention))
        })
        .await;
        if let Ok(Err(e)) = result {
            tracing::warn!(error = %e, "Housekeeping failed; it runs again at its next interval.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn housekeeping_keeps_up_with_short_retention_settings() {
        let mut options = crate::runtime::Options::new(
            "127.0.0.1:0".parse().unwrap(),
            "http://127.0.0.1".to_owned(),
            "repo".into(),
            "state".into(),
        );
        assert_eq!(housekeeping_interval(&options), Duration::from_secs(300));
        options.event_retention = Duration::from_secs(60);
        assert_eq!(housekeeping_interval(&options), Duration::from_secs(15));
        options.dedupe_ttl = Duration::from_secs(8);
        assert_eq!(housekeeping_interval(&options), Duration::from_secs(2));
        options.audit_retention = Duration::from_millis(10);
        assert_eq!(housekeeping_interval(&options), Duration::from_secs(1));
    }
}
