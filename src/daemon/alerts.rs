//! supportopsd's own events (the built-in `supportopsd` platform): the facts the daemon observes
//! — an integration degraded or recovered, a revision applied or refused, a registration
//! repaired, a job dead-lettered — become events that rules trigger on like any other.
//!
//! [`Runtime::emit_internal`] is cheap and synchronous, so that the places where the facts
//! happen call it in one line; it queues the occurrence (a bounded queue: past it, occurrences
//! are dropped with a warning rather than blocking the reconciler or the executor). [`run`]
//! turns each occurrence into one event per `supportopsd` integration of the active revision
//! and stores it through the same durable ingest path as a webhook delivery (dedupe id unique per
//! occurrence; matching rules become jobs the executor runs with its retries). Nothing is
//! stored when the active revision declares no `supportopsd` integration.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::Event;
use crate::platforms::PlatformKind;
use crate::platforms::supportopsd::{self, events};
use crate::runtime::alerts::Emission;
use crate::runtime::{Active, Runtime, now_ms};

/// Stores the emitted events until `shutdown`.
pub async fn run(rt: Arc<Runtime>, mut rx: mpsc::Receiver<Emission>, shutdown: CancellationToken) {
    loop {
        let emission = tokio::select! {
            () = shutdown.cancelled() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        store(&rt, emission).await;
    }
}

/// The events of one occurrence, one per `supportopsd` integration of `active`.
pub fn events_of(active: &Active, emission: &Emission, now: u64) -> Vec<Event> {
    let Some(spec) = supportopsd::DESCRIPTOR.event(emission.name) else {
        return Vec::new();
    };
    let time = events::rfc3339_ms(emission.at_ms);
    let payload = events::payload(
        emission.name,
        &emission.id,
        &time,
        emission.objects.clone(),
        &emission.origin,
    );
    let normalized = match (supportopsd::DESCRIPTOR.normalize)(spec, &payload) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(event = emission.name, error = %e, "An internal event does not fit its catalogue entry; dropped.");
            return Vec::new();
        }
    };
    active
        .integrations_of(PlatformKind::Supportopsd)
        .into_iter()
        .map(|id| Event {
            platform: PlatformKind::Supportopsd,
            integration: id.clone(),
            name: spec.name.to_owned(),
            id: emission.id.clone(),
            time: normalized.time.clone(),
            received_at_ms: now,
            actor: normalized.actors.first().cloned(),
            actors: normalized.actors.clone(),
            objects: normalized.objects.clone(),
            changes: normalized.changes.clone(),
            payload: payload.clone(),
        })
        .collect()
}

async fn store(rt: &Runtime, emission: Emission) {
    let Some(active) = rt.active() else { return };
    let now = now_ms();
    for event in events_of(&active, &emission, now) {
        let key = event.key();
        let reply = crate::webhook::store_event(rt, &active, event, now).await;
        if !reply.status().is_success() {
            tracing::warn!(event = %key, status = reply.status().as_u16(), "An internal event could not be stored; dropped.");
        }
    }
}
