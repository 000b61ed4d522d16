//! The daemon's metrics, served as Prometheus/OpenMetrics text from `/metrics`. One place
//! defines every metric name, so names never drift between the code that counts and the docs.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric of the daemon.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events_received: Family<Labels, Counter>,
    events_rejected: Family<Labels, Counter>,
    events_duplicate: Family<Labels, Counter>,
    rules_matched: Family<Labels, Counter>,
    shadow_actions: Family<Labels, Counter>,
    jobs_held: Family<Labels, Counter>,
    actions: Family<Labels, Counter>,
    action_seconds: Family<Labels, Histogram>,
    rate_limit_waits: Family<Labels, Counter>,
    bulk_calls: Family<Labels, Counter>,
    bulk_jobs: Family<Labels, Counter>,
    queue_depth: Gauge,
    queue_oldest_seconds: Gauge,
    dead_letters: Gauge,
    reloads: Family<Labels, Counter>,
    reload_ok: Gauge,
    reconcile_passes: Family<Labels, Counter>,
    reconcile_seconds: Histogram,
    registrations: Family<Labels, Counter>,
    integration_healthy: Family<Labels, Gauge>,
    applied_revision: Family<Labels, Gauge>,
    state_bytes: Family<Labels, Gauge>,
    retention_removed: Family<Labels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 5 ms … ~40 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("supportopsd");
        let m = Metrics {
            events_received: Family::default(),
            events_rejected: Family::default(),
            events_duplicate: Family::default(),
            rules_matched: Family::default(),
            shadow_actions: Family::default(),
            jobs_held: Family::default(),
            actions: Family::default(),
            action_seconds: Family::new_with_constructor(latency_histogram),
            rate_limit_waits: Family::default(),
            bulk_calls: Family::default(),
            bulk_jobs: Family::default(),
            queue_depth: Gauge::default(),
            queue_oldest_seconds: Gauge::default(),
            dead_letters: Gauge::default(),
            reloads: Family::default(),
            reload_ok: Gauge::default(),
            reconcile_passes: Family::default(),
            reconcile_seconds: latency_histogram(),
            registrations: Family::default(),
            integration_healthy: Family::default(),
            applied_revision: Family::default(),
            state_bytes: Family::default(),
            retention_removed: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_received",
            "Webhook deliveries accepted and stored, by platform",
            m.events_received.clone(),
        );
        registry.register(
            "events_rejected",
            "Webhook deliveries refused, by platform and reason",
            m.events_rejected.clone(),
        );
        registry.register(
            "events_duplicate",
            "Redeliveries of an event already stored (answered 200, run once)",
            m.events_duplicate.clone(),
        );
        registry.register(
            "rules_matched",
            "Rule matches that produced a job, by rule",
            m.rules_matched.clone(),
        );
        registry.register(
            "shadow_actions",
            "Actions a shadow rule (mode = \"shadow\") would have performed, recorded and not run, by rule and action",
            m.shadow_actions.clone(),
        );
        registry.register(
            "jobs_held",
            "Jobs held past the minute they were created in because their rule was over its action budget, by rule",
            m.jobs_held.clone(),
        );
        registry.register(
            "actions",
            "Actions performed, by platform, action and outcome",
            m.actions.clone(),
        );
        registry.register(
            "action_duration_seconds",
            "Time a platform took to answer an action",
            m.action_seconds.clone(),
        );
        registry.register(
            "rate_limit_waits",
            "Platform answers asking to slow down (429 or equivalent), by integration",
            m.rate_limit_waits.clone(),
        );
        registry.register(
            "bulk_calls",
            "Bulk calls that ran several due jobs' last action at once, by platform and action",
            m.bulk_calls.clone(),
        );
        registry.register(
            "bulk_jobs",
            "Jobs whose last action ran in a bulk call, by platform and action",
            m.bulk_jobs.clone(),
        );
        registry.register(
            "queue_depth",
            "Jobs waiting or in flight in the outbox",
            m.queue_depth.clone(),
        );
        registry.register(
            "queue_oldest_age_seconds",
            "How long the longest-due job has been due",
            m.queue_oldest_seconds.clone(),
        );
        registry.register(
            "dead_letters",
            "Jobs in the dead-letter tree",
            m.dead_letters.clone(),
        );
        registry.register(
            "state_bytes",
            "Size of the state directory by kind (payloads, database, journal)",
            m.state_bytes.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration loads, by outcome (applied, refused)",
            m.reloads.clone(),
        );
        registry.register(
            "config_last_reload_successful",
            "1 when the last configuration load was applied",
            m.reload_ok.clone(),
        );
        registry.register(
            "reconcile_passes",
            "Reconcile passes, by cause (startup, git, poll, signal, api, resync) and outcome (ok, failed)",
            m.reconcile_passes.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconcile pass took",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "registrations",
            "Webhook registration syncs, by platform and outcome (created, updated, repaired, renewed, unchanged, removed, failed)",
            m.registrations.clone(),
        );
        registry.register(
            "integration_healthy",
            "1 when the integration's last connection check succeeded, by integration",
            m.integration_healthy.clone(),
        );
        registry.register(
            "applied_revision",
            "1 for the revision in use, by revision",
            m.applied_revision.clone(),
        );
        registry.register(
            "retention_removed",
            "What retention removed from the state since it was created, by kind (events, payload_bytes, audit_records); kept in the state, so it does not reset on restart",
            m.retention_removed.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Sets what retention removed of `kind` to `total` (read from the state at scrape time; a
    /// counter, so it only moves up).
    pub fn set_retention_removed(&self, kind: &str, total: u64) {
        let counter = self
            .retention_removed
            .get_or_create(&vec![("kind", kind.to_owned())]);
        counter.inc_by(total.saturating_sub(counter.get()));
    }

    /// A reconcile pass ended.
    pub fn reconcile_pass(&self, cause: &str, ok: bool, seconds: f64) {
        self.reconcile_passes
            .get_or_create(&vec![
                ("cause", cause.to_owned()),
                ("outcome", if ok { "ok" } else { "failed" }.to_owned()),
            ])
            .inc();
        self.reconcile_seconds.observe(seconds);
    }

    /// A webhook registration was synced (or removed, or failed).
    pub fn registration(&self, platform: &str, outcome: &str) {
        self.registrations
            .get_or_create(&vec![
                ("platform", platform.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    /// An integration's connection check result.
    pub fn set_integration_healthy(&self, integration: &str, healthy: bool) {
        self.integration_healthy
            .get_or_create(&vec![("integration", integration.to_owned())])
            .set(i64::from(healthy));
    }

    /// The revision now in use.
    pub fn set_applied_revision(&self, revision: &str) {
        self.applied_revision.clear();
        self.applied_revision
            .get_or_create(&vec![("revision", revision.to_owned())])
            .set(1);
    }

    /// An event was stored.
    pub fn event_received(&self, platform: &str) {
        self.events_received
            .get_or_create(&vec![("platform", platform.to_owned())])
            .inc();
    }

    /// A delivery was refused.
    pub fn event_rejected(&self, platform: &str, reason: &str) {
        self.events_rejected
            .get_or_create(&vec![
                ("platform", platform.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .inc();
    }

    /// A redelivery was recognised.
    pub fn event_duplicate(&self, platform: &str) {
        self.events_duplicate
            .get_or_create(&vec![("platform", platform.to_owned())])
            .inc();
    }

    /// A rule matched an event.
    pub fn rule_matched(&self, rule: &str) {
        self.rules_matched
            .get_or_create(&vec![("rule", rule.to_owned())])
            .inc();
    }

    /// A shadow rule would have performed `action` (recorded, not run).
    pub fn shadow_action(&self, rule: &str, action: &str) {
        self.shadow_actions
            .get_or_create(&vec![
                ("rule", rule.to_owned()),
                ("action", action.to_owned()),
            ])
            .inc();
    }

    /// A job of `rule` was held past its minute (the rule was over its action budget).
    pub fn job_held(&self, rule: &str) {
        self.jobs_held
            .get_or_create(&vec![("rule", rule.to_owned())])
            .inc();
    }

    /// An action finished (`outcome`: succeeded, retried, dead_lettered, outcome_unknown).
    pub fn action(&self, platform: &str, action: &str, outcome: &str, seconds: f64) {
        let labels = vec![
            ("platform", platform.to_owned()),
            ("action", action.to_owned()),
            ("outcome", outcome.to_owned()),
        ];
        self.actions.get_or_create(&labels).inc();
        self.action_seconds
            .get_or_create(&vec![("platform", platform.to_owned())])
            .observe(seconds);
    }

    /// A platform asked us to slow down.
    pub fn rate_limited(&self, integration: &str) {
        self.rate_limit_waits
            .get_or_create(&vec![("integration", integration.to_owned())])
            .inc();
    }

    /// One bulk call ran the last action of `jobs` jobs.
    pub fn bulk(&self, platform: &str, action: &str, jobs: usize) {
        let labels = vec![
            ("platform", platform.to_owned()),
            ("action", action.to_owned()),
        ];
        self.bulk_calls.get_or_create(&labels).inc();
        self.bulk_jobs
            .get_or_create(&labels)
            .inc_by(u64::try_from(jobs).unwrap_or(u64::MAX));
    }

    /// A configuration load ended.
    pub fn reload(&self, applied: bool) {
        let outcome = if applied { "applied" } else { "refused" };
        self.reloads
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
        self.reload_ok.set(i64::from(applied));
    }

    /// Sets the queue gauges (read from the store at scrape time).
    pub fn set_queue(&self, depth: usize, oldest_age_secs: u64, dead: usize) {
        self.queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
        self.queue_oldest_seconds
            .set(i64::try_from(oldest_age_secs).unwrap_or(i64::MAX));
        self.dead_letters
            .set(i64::try_from(dead).unwrap_or(i64::MAX));
    }

    /// Sets the state's size of one kind (read from the store at scrape time).
    pub fn set_state_bytes(&self, kind: &str, bytes: u64) {
        self.state_bytes
            .get_or_create(&vec![("kind", kind.to_owned())])
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.event_received("slack");
        m.event_rejected("zendesk", "bad_signature");
        m.action("slack", "send_message", "succeeded", 0.02);
        m.set_queue(3, 7, 1);
        m.shadow_action("vip", "send_message");
        m.shadow_action("vip", "send_message");
        m.job_held("loop");
        m.set_state_bytes("payloads", 4096);
        m.set_retention_removed("events", 5);
        m.set_retention_removed("events", 12);
        m.set_retention_removed("events", 3);
        let text = m.render();
        assert!(
            text.contains("supportopsd_state_bytes{kind=\"payloads\"} 4096"),
            "{text}"
        );
        assert!(
            text.contains("supportopsd_retention_removed_total{kind=\"events\"} 12"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE supportopsd_retention_removed ")
                .count(),
            1,
            "one family: {text}"
        );
        assert!(
            text.contains("supportopsd_events_received_total{platform=\"slack\"} 1"),
            "{text}"
        );
        assert!(text.contains("reason=\"bad_signature\""), "{text}");
        assert!(
            text.contains(
                "supportopsd_shadow_actions_total{rule=\"vip\",action=\"send_message\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("supportopsd_jobs_held_total{rule=\"loop\"} 1"),
            "{text}"
        );
        assert!(text.contains("supportopsd_queue_depth 3"), "{text}");
        assert!(
            text.contains("supportopsd_action_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
