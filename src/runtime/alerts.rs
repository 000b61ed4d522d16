//! The emitting half of supportopsd's own events (the built-in `supportopsd` platform): the
//! places where a fact happens — an integration degraded or recovered, a revision applied or
//! refused, a registration repaired, a job dead-lettered, a rule over its action budget — call [`Runtime::emit_internal`] in
//! one line. It is cheap and synchronous: it queues the occurrence (a bounded queue: past it,
//! occurrences are dropped with a warning rather than blocking the reconciler or the
//! executor). `daemon::alerts` stores them as events.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Runtime, now_ms};
use crate::platforms::PlatformKind;
use crate::platforms::supportopsd::events;
use crate::state::Job;

/// Occurrences waiting to be stored, at most.
pub const QUEUE: usize = 1024;

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
    pub fn emit_health(
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

    /// Emits `rule.throttled`: `rule` (triggered on `integration`) began a throttling episode
    /// (`runtime::budget`). The rule is its origin, so it is never triggered by its own
    /// throttling (an alert rule on `rule.throttled` that is itself throttled).
    pub fn emit_throttled(&self, rule: &str, integration: &str, episode: &super::budget::Episode) {
        self.emit_with_origin(
            events::RULE_THROTTLED,
            json!({"rule": {
                "id": rule,
                "integration": integration,
                "limit": episode.limit,
                "held_until": events::rfc3339_ms(episode.held_until_ms),
                "since": events::rfc3339_ms(episode.since_ms),
            }}),
            vec![rule.to_owned()],
        );
    }

    /// Emits `job.dead_lettered`. When the job was itself triggered by a supportopsd event, the
    /// rules that led to that event and the job's own rule go in `origin.rules`, so that none of
    /// them is triggered again by this one (an alert rule never alerts on itself).
    pub fn emit_dead_lettered(&self, job: &Job, error: &str) {
        let mut origin = Vec::new();
        if let Ok(Some(event)) = self.store.event(job.event_id)
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
