//! What happened per integration, counted once where it happens (the metrics are counted at
//! the same places; they label most of these by platform, not by integration), for two readers:
//!
//! - the counters of `GET /api/integrations/{id}/stats`: atomics in a map keyed by integration
//!   id, which start at zero when the daemon starts;
//! - the per-minute rollups (`state::rollups`): counts by minute and integration, in memory
//!   until the daemon writes them to the state ([`Stats::take_rollups`], every few seconds,
//!   at each minute's end and at a clean stop: `daemon::write_rollups`). A write *adds* to
//!   the stored minute, so a restart continues a minute the previous run began, and rates read
//!   from the state do not reset when the daemon restarts.
//!
//! What a crash (or `SIGKILL`) loses: the counts not yet written — at most the last
//! [`ROLLUP_WRITE_EVERY`] (10 s), and never more than the minute in progress plus the moment
//! between a minute's end and its write. What was written stays (it is flushed with the state).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::state::{MINUTE_MS, MinuteRollup, RollupCounts};

/// How often the daemon writes the counts not yet written (and at each minute's end).
pub const ROLLUP_WRITE_EVERY: Duration = Duration::from_secs(10);

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

/// How an action attempt ended (the `outcome` label of `supportopsd_actions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionOutcome {
    /// It succeeded.
    Succeeded,
    /// It failed and the job will be tried again.
    Retried,
    /// It failed for good; the job was dead-lettered.
    DeadLettered,
    /// It may have reached the platform and would duplicate if sent again: dead-lettered.
    OutcomeUnknown,
    /// It failed (the operator API's `execute`, which does not retry).
    Failed,
}

impl ActionOutcome {
    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionOutcome::Succeeded => "succeeded",
            ActionOutcome::Retried => "retried",
            ActionOutcome::DeadLettered => "dead_lettered",
            ActionOutcome::OutcomeUnknown => "outcome_unknown",
            ActionOutcome::Failed => "failed",
        }
    }
}

/// What happened, counted for an integration (in its counters and in the current minute's
/// rollup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count<'a> {
    /// An event was stored; `jobs`: whether it created a job (a rule matched, or an
    /// enrichment is pending).
    EventReceived {
        /// Whether a job was created.
        jobs: bool,
    },
    /// A delivery was refused.
    EventRejected {
        /// Why (one of a fixed set of reasons).
        reason: &'a str,
    },
    /// A redelivery was recognised.
    EventDuplicate,
    /// A rule matched an event of the integration and a job was created.
    RuleMatched {
        /// The rule.
        rule: &'a str,
    },
    /// An action attempt on the integration ended.
    Action {
        /// The rule it belongs to ([`RULE_ENRICHMENT`], [`RULE_OPERATOR`]).
        rule: &'a str,
        /// The action's name.
        action: &'a str,
        /// How it ended.
        outcome: ActionOutcome,
    },
    /// The platform asked us to slow down.
    RateLimited,
    /// A shadow rule would have performed `action` on the integration (recorded, not run);
    /// counted under the rule's trigger integration.
    ShadowAction {
        /// The rule.
        rule: &'a str,
        /// The action's name.
        action: &'a str,
    },
}

/// The rule an enrichment's attempts are counted under.
pub const RULE_ENRICHMENT: &str = crate::state::ENRICHMENT;
/// The rule the operator API's `execute` is counted under.
pub const RULE_OPERATOR: &str = "(operator)";

/// Counters by integration id, and the rollups not yet written.
#[derive(Debug, Default)]
pub struct Stats {
    by_integration: RwLock<HashMap<String, Arc<Counters>>>,
    /// Counts not yet written to the state, by minute number and integration.
    pending: Mutex<BTreeMap<u64, HashMap<String, RollupCounts>>>,
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

    /// Counts what happened on `integration` now.
    pub fn count(&self, integration: &str, what: Count<'_>) {
        self.count_at(integration, what, super::now_ms());
    }

    /// Counts what happened on `integration` at `now_ms`: its counter, and its rollup of the
    /// minute of `now_ms`.
    pub fn count_at(&self, integration: &str, what: Count<'_>, now_ms: u64) {
        let c = self.counters(integration);
        let counter = match what {
            Count::EventReceived { .. } => Some(&c.events_received),
            Count::EventRejected { .. } => Some(&c.events_rejected),
            Count::EventDuplicate => Some(&c.events_duplicate),
            Count::Action {
                outcome: ActionOutcome::Succeeded,
                ..
            } => Some(&c.actions_succeeded),
            Count::Action { .. } => Some(&c.actions_failed),
            Count::RateLimited => Some(&c.rate_limit_waits),
            Count::RuleMatched { .. } | Count::ShadowAction { .. } => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if what == Count::RateLimited {
            return;
        }
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let minute = pending.entry(now_ms / MINUTE_MS).or_default();
        let counts = match minute.get_mut(integration) {
            Some(c) => c,
            None => minute.entry(integration.to_owned()).or_default(),
        };
        let bump = |map: &mut BTreeMap<String, u64>, key: &str| match map.get_mut(key) {
            Some(n) => *n = n.saturating_add(1),
            None => {
                map.insert(key.to_owned(), 1);
            }
        };
        let e = &mut counts.events;
        match what {
            Count::EventReceived { jobs: true } => e.accepted = e.accepted.saturating_add(1),
            Count::EventReceived { jobs: false } => {
                e.accepted_no_rule = e.accepted_no_rule.saturating_add(1);
            }
            Count::EventDuplicate => e.duplicate = e.duplicate.saturating_add(1),
            Count::EventRejected { reason } => bump(&mut e.rejected, reason),
            Count::RuleMatched { rule } => bump(&mut counts.rules, rule),
            Count::Action {
                rule,
                action,
                outcome,
            } => bump(
                counts
                    .actions
                    .entry(rule.to_owned())
                    .or_default()
                    .entry(action.to_owned())
                    .or_default(),
                outcome.as_str(),
            ),
            Count::ShadowAction { rule, action } => {
                bump(counts.shadow.entry(rule.to_owned()).or_default(), action)
            }
            Count::RateLimited => {}
        }
    }

    /// Takes every count not yet written, one record per minute and integration (the caller
    /// writes them with [`crate::state::Store::add_rollups`], which adds them to what is
    /// stored, and gives them back with [`Stats::restore`] if that fails).
    pub fn take_rollups(&self) -> Vec<MinuteRollup> {
        let pending = std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        pending
            .into_iter()
            .flat_map(|(minute, by_integration)| {
                by_integration
                    .into_iter()
                    .map(move |(integration, counts)| MinuteRollup {
                        minute_ms: minute.saturating_mul(MINUTE_MS),
                        integration,
                        counts,
                    })
            })
            .collect()
    }

    /// Puts back counts [`Stats::take_rollups`] took but that could not be written.
    pub fn restore(&self, records: Vec<MinuteRollup>) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for r in records {
            pending
                .entry(r.minute_ms / MINUTE_MS)
                .or_default()
                .entry(r.integration)
                .or_default()
                .add(&r.counts);
        }
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

    /// Forgets the counters of integrations no longer in the active revision (counts not yet
    /// written as rollups are kept: they happened).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.by_integration
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|id, _| keep(id));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::state::Store;

    const RECEIVED: Count<'static> = Count::EventReceived { jobs: true };

    fn action(outcome: ActionOutcome) -> Count<'static> {
        Count::Action {
            rule: "notify",
            action: "send_message",
            outcome,
        }
    }

    #[test]
    fn counts_per_integration() {
        let s = Stats::default();
        s.count("zendesk-main", RECEIVED);
        s.count("zendesk-main", Count::EventReceived { jobs: false });
        s.count("zendesk-main", Count::RateLimited);
        s.count("slack-main", action(ActionOutcome::Retried));
        s.count("slack-main", action(ActionOutcome::OutcomeUnknown));
        s.count("slack-main", action(ActionOutcome::Succeeded));
        let z = s.snapshot("zendesk-main");
        assert_eq!((z.events_received, z.rate_limit_waits), (2, 1));
        assert_eq!(z.actions_failed, 0);
        let sl = s.snapshot("slack-main");
        assert_eq!((sl.actions_failed, sl.actions_succeeded), (2, 1));
        assert_eq!(s.snapshot("unknown"), Snapshot::default());
        s.retain(|id| id == "slack-main");
        assert_eq!(s.snapshot("zendesk-main"), Snapshot::default());
        assert_eq!(s.snapshot("slack-main").actions_failed, 2);
        // Forgetting counters keeps what the rollups have not written yet.
        let taken = s.take_rollups();
        assert!(taken.iter().any(|r| r.integration == "zendesk-main"));
    }

    #[test]
    fn rollups_by_minute_integration_and_outcome() {
        let s = Stats::default();
        let m = 29_416_666 * MINUTE_MS;
        s.count_at("zd", RECEIVED, m);
        s.count_at("zd", RECEIVED, m + MINUTE_MS - 1);
        s.count_at("zd", Count::RuleMatched { rule: "notify" }, m + 1);
        s.count_at("zd", Count::EventRejected { reason: "stale" }, m + 2);
        s.count_at("zd", Count::EventRejected { reason: "stale" }, m + 3);
        s.count_at("zd", Count::EventDuplicate, m + 4);
        s.count_at("zd", Count::RateLimited, m + 4);
        s.count_at("zd", RECEIVED, m + MINUTE_MS);
        s.count_at("slack", action(ActionOutcome::DeadLettered), m + 5);
        let mut taken = s.take_rollups();
        taken.sort_by(|a, b| (a.minute_ms, &a.integration).cmp(&(b.minute_ms, &b.integration)));
        let keys: Vec<(u64, &str)> = taken
            .iter()
            .map(|r| (r.minute_ms, r.integration.as_str()))
            .collect();
        assert_eq!(keys, [(m, "slack"), (m, "zd"), (m + MINUTE_MS, "zd")]);
        let zd = &taken[1].counts;
        assert_eq!(zd.events.accepted, 2);
        assert_eq!(zd.events.duplicate, 1);
        assert_eq!(zd.events.rejected["stale"], 2);
        assert_eq!(zd.rules["notify"], 1);
        assert_eq!(taken[2].counts.events.accepted, 1);
        assert_eq!(
            taken[0].counts.actions["notify"]["send_message"]["dead_lettered"],
            1
        );
        // Taken means gone; a failed write gives them back, summed with what came since.
        assert!(s.take_rollups().is_empty());
        s.count_at("zd", RECEIVED, m + 10);
        s.restore(taken);
        let again = s.take_rollups();
        let zd = again
            .iter()
            .find(|r| r.minute_ms == m && r.integration == "zd")
            .unwrap();
        assert_eq!(zd.counts.events.accepted, 3);
    }

    /// What a crash loses: only what was not written yet. A restart adds to the minute the
    /// previous run began.
    #[test]
    fn written_counts_survive_a_crash_and_a_restart_continues_the_minute() {
        let tmp = tempfile::tempdir().unwrap();
        let m = 29_416_666 * MINUTE_MS;
        {
            let store = Store::open(tmp.path()).unwrap();
            let s = Stats::default();
            for i in 0..5 {
                s.count_at("zd", RECEIVED, m + i);
            }
            store.add_rollups(&s.take_rollups()).unwrap();
            store.flush().unwrap();
            // Counted but never written: the crash comes first.
            for i in 0..7 {
                s.count_at("zd", RECEIVED, m + 30_000 + i);
            }
            s.count_at("zd", RECEIVED, m + MINUTE_MS);
        }
        let store = Store::open(tmp.path()).unwrap();
        let got = store.rollups(m, m + 2 * MINUTE_MS).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].counts.events.accepted, 5);
        // The next run counts more in the same minute: added to it.
        let s = Stats::default();
        s.count_at("zd", RECEIVED, m + 50_000);
        s.count_at("zd", RECEIVED, m + MINUTE_MS + 1);
        store.add_rollups(&s.take_rollups()).unwrap();
        let got = store.rollups(m, m + 2 * MINUTE_MS).unwrap();
        let accepted: Vec<u64> = got.iter().map(|r| r.counts.events.accepted).collect();
        assert_eq!(accepted, [6, 1]);
    }
}
