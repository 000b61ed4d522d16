//! What a delivery's complete event decides — as it is received, or once its enrichment is
//! done — in the one order both paths need: the active rules that match it
//! ([`Active::matching`]), less the paused ones ([`super::holds`]: a paused rule matches
//! nothing); each remaining rule's job reserved in its action budget ([`super::budget`]: a job
//! over it is held to a later minute); what the shadow rules would have done
//! ([`super::shadow`]); and the audit records of all three. [`Decision::stored`] counts it once
//! the delivery (or its enrichment) is stored, [`Decision::abandoned`] gives the reservations
//! back when it is not.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::Runtime;
use super::active::Active;
use super::budget::{self, Slot};
use super::shadow::{self, Shadowed};
use super::stats::Count;
use crate::event::Event;
use crate::state::{AuditKind, AuditRecord};

/// What matching decided for one event.
#[derive(Debug, Default)]
pub struct Decision {
    /// The active rules that get a job, in match order (paused ones removed).
    pub rules: Vec<String>,
    /// Their reservations in their action budgets.
    pub slots: Vec<(String, Slot)>,
    /// The rules whose job is held by their budget, and until when (ms).
    pub held: BTreeMap<String, u64>,
    /// The shadow rules that matched, with what they would have done.
    pub shadowed: Vec<Shadowed>,
    /// The paused rules (active or shadow) that matched, with their holds' reasons.
    pub paused: Vec<(String, String)>,
}

impl Runtime {
    /// Decides what `event` (complete: nothing left to enrich) does under `active` at `now`.
    pub async fn decide(
        &self,
        active: &Arc<Active>,
        event: &Event,
        from_self: bool,
        now: u64,
    ) -> Decision {
        let mut rules: Vec<String> = active
            .matching(event, &event.context_view(), from_self)
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        let holds = self.holds();
        let mut paused = holds.take_paused(&mut rules);
        let slots = self.reserve_jobs(active, &rules, now);
        let held = budget::held(&slots);
        let shadowed = shadow::evaluate(active, &holds, event, from_self, now, &mut paused).await;
        Decision {
            rules,
            slots,
            held,
            shadowed,
            paused,
        }
    }
}

impl Decision {
    /// The audit records of the decision for the delivery `key`: each rule matched (with
    /// `enriched` when it was decided after the enrichment, and until when a held job waits),
    /// each paused rule skipped, each shadow rule's would-be actions.
    pub fn records(&self, key: &str, now: u64, enriched: bool) -> Vec<AuditRecord> {
        let matched = self.rules.iter().map(|r| {
            let mut detail = json!({"key": key});
            if enriched {
                detail["enriched"] = json!(true);
            }
            if let Some(due) = self.held.get(r) {
                detail["held_until_ms"] = json!(due);
                detail["held"] = json!("over the rule's action budget");
            }
            AuditRecord {
                at_ms: now,
                kind: AuditKind::RuleMatched { rule: r.clone() },
                resource_type: "rule".into(),
                resource_id: r.clone(),
                detail,
            }
        });
        matched
            .chain(super::holds::paused_records(&self.paused, key, now))
            .chain(self.shadowed.iter().map(|s| s.record.clone()))
            .collect()
    }

    /// Once the delivery is stored with these jobs: the rule matches counted (metrics, the
    /// per-minute counts of `integration`), the shadow actions counted, the held jobs counted
    /// and `rule.throttled` emitted for each episode one began.
    pub fn stored(&self, rt: &Runtime, active: &Active, integration: &str) {
        for r in &self.rules {
            rt.metrics.rule_matched(r);
            rt.stats.count(integration, Count::RuleMatched { rule: r });
        }
        shadow::count(rt, &self.shadowed);
        rt.jobs_held(active, &self.slots);
    }

    /// The delivery was not stored (a duplicate, an error): the budget reservations back.
    pub fn abandoned(&self, rt: &Runtime) {
        rt.release_jobs(&self.slots);
    }
}
