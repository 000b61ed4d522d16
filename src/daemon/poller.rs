//! The poller: for connectors that ask to be polled ([`Connector::poll_interval`], e.g. Google
//! Sheets' `row_added`), calls [`Connector::poll`] on that interval and feeds what it finds
//! through the same path as a webhook delivery: normalised, matched, stored durably and
//! deduplicated. The cursor advances only once every event of a poll is stored, so a crash or a
//! full queue re-polls rather than loses rows.
//!
//! [`Connector::poll_interval`]: crate::platforms::Connector::poll_interval
//! [`Connector::poll`]: crate::platforms::Connector::poll

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Runtime, now_ms};
use crate::event::Event;
use crate::manifest::IntegrationId;

/// How often the poller looks for integrations that are due.
const TICK: Duration = Duration::from_secs(1);

/// The next poll of an interval too long for the clock (a year).
const FOREVER: Duration = Duration::from_secs(365 * 86_400);

/// Runs until `shutdown`.
pub async fn run(rt: Arc<Runtime>, shutdown: CancellationToken) {
    let mut next: HashMap<IntegrationId, tokio::time::Instant> = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
        }
        let Some(active) = rt.active() else { continue };
        let now = tokio::time::Instant::now();
        for (id, connector) in active.connectors() {
            let Some(interval) = connector.poll_interval() else {
                continue;
            };
            if next.get(id).is_some_and(|due| *due > now) {
                continue;
            }
            // The interval comes from the manifest: a huge one means "hardly ever", never an
            // overflow.
            let due = now
                .checked_add(interval)
                .or_else(|| now.checked_add(FOREVER))
                .unwrap_or(now);
            next.insert(id.clone(), due);
            if let Err(why) = poll_once(&rt, &active, id, connector.as_ref()).await {
                tracing::warn!(integration = %id, error = %why, "Poll failed; trying again on the next interval.");
            }
        }
    }
}

/// One poll of one integration.
pub async fn poll_once(
    rt: &Runtime,
    active: &std::sync::Arc<crate::runtime::Active>,
    id: &IntegrationId,
    connector: &dyn crate::platforms::Connector,
) -> Result<usize, String> {
    let cursor = rt
        .store
        .poll_cursor(id.as_str())
        .map_err(|e| e.to_string())?;
    let polled = connector
        .poll(cursor.as_ref())
        .await
        .map_err(|e| crate::runtime::health::explain(&e))?;
    let Some(integration) = active.set.integrations.get(id) else {
        return Ok(0);
    };
    let descriptor = integration.platform.descriptor();
    let mut stored = 0;
    for (name, payload) in polled.events {
        let Some(spec) = descriptor.event(&name) else {
            return Err(format!(
                "the poll produced `{name}`, which the catalogue does not know"
            ));
        };
        let normalized = (descriptor.normalize)(spec, &payload).map_err(|e| e.to_string())?;
        let Some(event_id) = normalized.id.clone() else {
            return Err(format!("a polled `{name}` has no id"));
        };
        let now = now_ms();
        let event = Event {
            platform: integration.platform,
            integration: id.clone(),
            name,
            id: event_id,
            time: normalized.time,
            received_at_ms: now,
            actor: normalized.actors.first().cloned(),
            actors: normalized.actors,
            objects: normalized.objects,
            changes: normalized.changes,
            payload,
        };
        let reply = crate::webhook::store_event(rt, active, event, now).await;
        if !reply.status().is_success() {
            return Err(format!(
                "storing a polled event answered {}; the cursor stays put",
                reply.status()
            ));
        }
        stored += 1;
    }
    rt.store
        .put_poll_cursor(id.as_str(), &polled.cursor)
        .map_err(|e| e.to_string())?;
    rt.commit().await?;
    Ok(stored)
}
