//! Per-integration counters for `GET /api/integrations/{id}/stats`: atomics in a map keyed by
//! integration id, counted where the metrics are (the metrics label most of these by platform,
//! not by integration). Counts start at zero when the daemon starts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::Serialize;

/// The counters of one integration.
#[derive(Debug, Default)]
pub struct Counters {
    /// Webhook deliveries verified and stored.
    pub events_received: AtomicU64,
    /// Webhook deliveries refused (signature, size, timeout, malformed, queue full).
    pub events_rejected: AtomicU64,
    /// Redeliveries of an event already stored.
    pub events_duplicate: AtomicU64,
    /// Actions performed on the integration that succeeded (rules and the operator API).
    pub actions_succeeded: AtomicU64,
    /// Action attempts on the integration that failed (each retry counts).
    pub actions_failed: AtomicU64,
    /// Platform answers asking to slow down (429 or equivalent).
    pub rate_limit_waits: AtomicU64,
}

/// A copy of [`Counters`] for the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// See [`Counters::events_received`].
    pub events_received: u64,
    /// See [`Counters::events_rejected`].
    pub events_rejected: u64,
    /// See [`Counters::events_duplicate`].
    pub events_duplicate: u64,
    /// See [`Counters::actions_succeeded`].
    pub actions_succeeded: u64,
    /// See [`Counters::actions_failed`].
    pub actions_failed: u64,
    /// See [`Counters::rate_limit_waits`].
    pub rate_limit_waits: u64,
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// An event was stored.
    EventReceived,
    /// A delivery was refused.
    EventRejected,
    /// A redelivery was recognised.
    EventDuplicate,
    /// An action succeeded.
    ActionSucceeded,
    /// An action attempt failed.
    ActionFailed,
    /// The platform asked us to slow down.
    RateLimited,
}

/// Counters by integration id.
#[derive(Debug, Default)]
pub struct Stats {
    by_integration: RwLock<HashMap<String, Arc<Counters>>>,
}

impl Stats {
    fn counters(&self, integration: &str) -> Arc<Counters> {
        if let Some(c) = self
            .by_integration
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(integration)
        {
            return c.clone();
        }
        self.by_integration
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(integration.to_owned())
            .or_default()
            .clone()
    }

    /// Adds one to a counter of `integration`.
    pub fn count(&self, integration: &str, what: Count) {
        let c = self.counters(integration);
        let counter = match what {
            Count::EventReceived => &c.events_received,
            Count::EventRejected => &c.events_rejected,
            Count::EventDuplicate => &c.events_duplicate,
            Count::ActionSucceeded => &c.actions_succeeded,
            Count::ActionFailed => &c.actions_failed,
            Count::RateLimited => &c.rate_limit_waits,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of `integration` (zeros when nothing was counted).
    pub fn snapshot(&self, integration: &str) -> Snapshot {
        let map = self
            .by_integration
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(c) = map.get(integration) else {
            return Snapshot::default();
        };
        Snapshot {
            events_received: c.events_received.load(Ordering::Relaxed),
            events_rejected: c.events_rejected.load(Ordering::Relaxed),
            events_duplicate: c.events_duplicate.load(Ordering::Relaxed),
            actions_succeeded: c.actions_succeeded.load(Ordering::Relaxed),
            actions_failed: c.actions_failed.load(Ordering::Relaxed),
            rate_limit_waits: c.rate_limit_waits.load(Ordering::Relaxed),
        }
    }

    /// Forgets integrations no longer in the active revision.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.by_integration
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|id, _| keep(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_integration() {
        let s = Stats::default();
        s.count("zendesk-main", Count::EventReceived);
        s.count("zendesk-main", Count::EventReceived);
        s.count("zendesk-main", Count::RateLimited);
        s.count("slack-main", Count::ActionFailed);
        let z = s.snapshot("zendesk-main");
        assert_eq!((z.events_received, z.rate_limit_waits), (2, 1));
        assert_eq!(z.actions_failed, 0);
        assert_eq!(s.snapshot("slack-main").actions_failed, 1);
        assert_eq!(s.snapshot("unknown"), Snapshot::default());
        s.retain(|id| id == "slack-main");
        assert_eq!(s.snapshot("zendesk-main"), Snapshot::default());
        assert_eq!(s.snapshot("slack-main").actions_failed, 1);
    }
}
