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
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Runtime, now_ms};
use crate::event::Event;
use crate::platforms::PlatformKind;
use crate::platforms::supportopsd::{self, events};
use crate::state::Job;

/// Occurrences waiting to be stored, at most.
pub(crate) const QUEUE: usize = 1024;

/// One occurrence of an internal event.
#[derive(Debug, Clone)]
pub struct Emission {
    /// The event name (`integration.degraded`).
    pub name: &'static str,
    /// Unique per occurrence (the dedupe id).
    pub id: String,
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The context objects (`{"integration": {…}}`).
    pub objects: Value,
    /// The rules that led to it (the loop guard).
    pub origin: Vec<String>,
}

impl Runtime {
    /// Emits one of supportopsd's own events (see the module documentation); never blocks.
    pub fn emit_internal(&self, name: &'static str, objects: Value) {
        self.emit_with_origin(name, objects, Vec::new());
    }

    fn emit_with_origin(&self, name: &'static str, objects: Value, origin: Vec<String>) {
        let at_ms = now_ms();
        let seq = self.alert_seq.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; 6];
        let nonce = match getrandom::fill(&mut nonce) {
            Ok(()) => nonce.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            Err(_) => String::new(),
        };
        let emission = Emission {
            name,
            id: format!("{name}-{at_ms}-{seq}{nonce}"),
            at_ms,
            objects,
            origin,
        };
        if let Err(e) = self.alerts.try_send(emission) {
            let dropped = match e {
                mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => e,
            };
            tracing::warn!(
                event = dropped.name,
                "Internal event dropped: too many are waiting to be stored."
            );
        }
    }

    /// Emits `integration.degraded` or `integration.recovered` for an integration of the active
    /// revision.
    pub(crate) fn emit_health(
        &self,
        name: &'static str,
        id: &str,
        health: &str,
        reason: &str,
        since_ms: u64,
        failures: u32,
    ) {
        let platform = self.active().and_then(|a| {
            a.set
                .integrations
                .values()
                .find(|i| i.id.as_str() == id)
                .map(|i| i.platform)
        });
        if platform.is_some_and(PlatformKind::is_builtin) {
            return;
        }
        self.emit_internal(
            name,
            json!({"integration": {
                "id": id,
                "platform": platform.map(PlatformKind::as_str),
                "health": health,
                "reason": reason,
                "since": events::rfc3339_ms(since_ms),
                "failures": failures,
            }}),
        );
    }

    /// Emits `job.dead_lettered`. When the job was itself triggered by a supportopsd event, the
    /// rules that led to that event and the job's own rule go in `origin.rules`, so that none of
    /// them is triggered again by this one (an alert rule never alerts on itself).
    pub(crate) fn emit_dead_lettered(&self, job: &Job, error: &str) {
        let mut origin = Vec::new();
        if let Ok(Some(event)) = self.store.event(job.event_ref)
            && event.platform.is_builtin()
        {
            origin = events::origin_rules(&event.payload);
            origin.push(job.rule.clone());
        }
        self.emit_with_origin(
            events::JOB_DEAD_LETTERED,
            json!({"job": {
                "id": job.id,
                "rule": job.rule,
                "error": error,
                "step": job.step,
                "attempts": job.attempts,
                "event": job.event_key,
            }}),
            origin,
        );
    }
}

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
pub fn events_of(active: &super::Active, emission: &Emission, now: u64) -> Vec<Event> {
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
            actor: normalized.actor.clone(),
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
