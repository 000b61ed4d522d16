//! Shadow rules (`mode = "shadow"`): evaluated on live deliveries like any rule (the same
//! selection, loop guard included: [`Active::shadow_matching`]), but nothing runs. For each
//! shadow rule a delivery matches, its actions are rendered offline — the event's context as
//! the executor builds it, each earlier action's result a placeholder
//! (`<actions[N].result.<field>>`) as `supportopsd test` renders them
//! ([`crate::manifest::Rule::render_offline`]): the executor's own path would need the results
//! of calls that are never made — and what it would have done becomes a `rule_shadowed` audit
//! record of the delivery (its parameters redacted like every rendered parameter,
//! [`crate::runtime::history::redacted`]), written in the same transaction as the delivery, so
//! the event history and the trace show it. Once the delivery is stored, each action is
//! counted: `supportopsd_shadow_actions_total{rule,action}` and the per-minute rollups'
//! `shadow` counts (by the rule's trigger integration), which `status`, the API and the
//! console read, so the counts survive restarts.
//!
//! A shadow rule creates no job and makes no platform call, not even an enrichment: the
//! enrichment step runs only for active rules, so a shadow rule that reads a field only the
//! enrichment fetches sees it only when an active rule on the same event needs it too.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::event::Event;
use crate::manifest::model::Rendered;
use crate::rules::template::limits;
use crate::runtime::Runtime;
use crate::runtime::active::Active;
use crate::runtime::history::redacted;
use crate::runtime::holds::HoldSet;
use crate::runtime::stats::Count;
use crate::state::{AuditKind, AuditRecord, MINUTE_MS, State};

/// What one shadow rule would have done for a delivery.
#[derive(Debug, Clone)]
pub struct Shadowed {
    /// The rule.
    pub rule: String,
    /// Its trigger's integration (its counts are kept under it).
    pub integration: String,
    /// The actions rendered, in order (up to a rendering error).
    pub actions: Vec<&'static str>,
    /// Its `rule_shadowed` audit record.
    pub record: AuditRecord,
}

/// The shadow rules `event` matches, each with what it would have done. Renders on the
/// blocking pool (as the executor does), under [`limits::RENDER_TIME`] per action; a render
/// that fails or outlives its time is recorded as the rule's error, after the actions that did
/// render.
///
/// A paused shadow rule (`supportopsd pause --rule`) matches nothing, as an active one: it is
/// removed from `rules` and returned in `paused` with its hold's reason, for the caller's
/// `rule_paused_skipped` records.
pub async fn evaluate(
    active: &Arc<Active>,
    holds: &HoldSet,
    event: &Event,
    from_self: bool,
    now: u64,
    paused: &mut Vec<(String, String)>,
) -> Vec<Shadowed> {
    let mut rules: Vec<String> = active
        .shadow_matching(event, &event.context_view(), from_self)
        .iter()
        .map(|r| r.id.to_string())
        .collect();
    paused.extend(holds.take_paused(&mut rules));
    if rules.is_empty() {
        return Vec::new();
    }
    let steps: u32 = rules
        .iter()
        .filter_map(|r| active.rule(r))
        .map(|r| u32::try_from(r.actions.len()).unwrap_or(u32::MAX).max(1))
        .fold(0, u32::saturating_add);
    let (owned, ctx, names) = (active.clone(), event.context(), rules.clone());
    let task = tokio::task::spawn_blocking(move || {
        names
            .iter()
            .map(|id| match owned.rule(id) {
                Some(rule) => {
                    let (done, error) = rule.render_offline(&ctx);
                    (done, error.map(|(i, e)| (i, e.to_string())))
                }
                None => (
                    Vec::new(),
                    Some((0, format!("rule `{id}` is not in the active revision"))),
                ),
            })
            .collect::<Vec<_>>()
    });
    let rendered = match tokio::time::timeout(limits::RENDER_TIME * steps, task).await {
        Ok(Ok(all)) => all,
        Ok(Err(e)) => {
            let why = format!("rendering failed: {e}");
            rules
                .iter()
                .map(|_| (Vec::new(), Some((0, why.clone()))))
                .collect()
        }
        Err(_) => {
            let why = format!(
                "rendering took longer than {} s per action",
                limits::RENDER_TIME.as_secs()
            );
            rules
                .iter()
                .map(|_| (Vec::new(), Some((0, why.clone()))))
                .collect()
        }
    };
    rules
        .into_iter()
        .zip(rendered)
        .map(|(rule, result)| shadowed(active, event, rule, result, now))
        .collect()
}

fn shadowed(
    active: &Active,
    event: &Event,
    rule: String,
    (done, error): (Vec<Rendered>, Option<(usize, String)>),
    now: u64,
) -> Shadowed {
    let integration = active.rule(&rule).map_or_else(
        || event.integration.to_string(),
        |r| r.trigger.integration.to_string(),
    );
    let actions: Vec<Value> = done
        .iter()
        .enumerate()
        .map(|(step, a)| {
            json!({
                "step": step,
                "action": a.action,
                "integration": a.integration.as_str(),
                "parameters": redacted(&a.parameters),
            })
        })
        .collect();
    let mut detail = json!({"key": event.key(), "mode": "shadow", "actions": actions});
    if let Some((step, e)) = &error {
        detail["error"] = json!({"step": step, "message": e});
    }
    Shadowed {
        record: AuditRecord {
            at_ms: now,
            kind: AuditKind::RuleShadowed { rule: rule.clone() },
            resource_type: "rule".into(),
            resource_id: rule.clone(),
            detail,
        },
        actions: done.iter().map(|a| a.action).collect(),
        integration,
        rule,
    }
}

/// Counts what the shadow rules of a stored delivery would have done: the metric and the
/// per-minute rollups (call once the delivery is stored, not for a duplicate).
pub fn count(rt: &Runtime, shadowed: &[Shadowed]) {
    for s in shadowed {
        for action in &s.actions {
            rt.metrics.shadow_action(&s.rule, action);
            rt.stats.count(
                &s.integration,
                Count::ShadowAction {
                    rule: &s.rule,
                    action,
                },
            );
        }
    }
}

/// The windows [`counts_json`] sums over: name and length in minutes.
pub const WINDOWS: [(&str, u64); 3] = [
    ("last_hour", 60),
    ("last_24h", 24 * 60),
    ("last_7d", 7 * 24 * 60),
];

/// The would-be action counts of each rule in `rules` (the shadow rules of the revision in
/// use), from the per-minute rollups (so they survive restarts; write the counts not yet
/// written first): per rule, for the last hour, 24 hours and 7 days (the minute in progress
/// included), the total and the count per action. `null` when the rollups cannot be read
/// (logged). Reads one total per minute of the week, only when `rules` is not empty.
pub fn counts_json(store: &dyn State, rules: &[&str], now: u64) -> Value {
    if rules.is_empty() {
        return json!([]);
    }
    let minute = now / MINUTE_MS;
    let longest = WINDOWS.iter().map(|(_, n)| *n).max().unwrap_or(1);
    let since = minute.saturating_sub(longest - 1).saturating_mul(MINUTE_MS);
    let totals = match store.rollup_totals(since, now.saturating_add(1)) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "Reading the per-minute counts failed.");
            return Value::Null;
        }
    };
    let out: Vec<Value> = rules
        .iter()
        .map(|rule| {
            let mut v = json!({"rule": rule});
            for (name, minutes) in WINDOWS {
                let from = minute.saturating_sub(minutes - 1).saturating_mul(MINUTE_MS);
                let mut by_action: BTreeMap<&str, u64> = BTreeMap::new();
                for t in totals.iter().filter(|t| t.minute_ms >= from) {
                    for (action, n) in t.shadow.get(*rule).into_iter().flatten() {
                        let slot = by_action.entry(action).or_default();
                        *slot = slot.saturating_add(*n);
                    }
                }
                let total = by_action.values().fold(0u64, |a, n| a.saturating_add(*n));
                v[name] = json!({"total": total, "by_action": by_action});
            }
            v
        })
        .collect();
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{MinuteRollup, RollupCounts, Store};

    #[test]
    fn counts_come_from_the_rollups_per_window_and_rule() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE_MS + 30_000;
        let rollup = |ago_minutes: u64, integration: &str, rule: &str, action: &str, n: u64| {
            let mut counts = RollupCounts::default();
            counts
                .shadow
                .entry(rule.to_owned())
                .or_default()
                .insert(action.to_owned(), n);
            MinuteRollup {
                minute_ms: (now / MINUTE_MS - ago_minutes) * MINUTE_MS,
                integration: integration.to_owned(),
                counts,
            }
        };
        store
            .add_rollups(&[
                rollup(0, "fd", "vip", "add_note", 2),
                rollup(0, "zd", "vip", "send_message", 1),
                rollup(90, "fd", "vip", "add_note", 5),
                rollup(3 * 24 * 60, "fd", "vip", "add_note", 7),
                rollup(8 * 24 * 60, "fd", "vip", "add_note", 100),
                rollup(0, "fd", "other", "add_note", 9),
            ])
            .unwrap();
        let v = counts_json(&store, &["vip", "quiet"], now);
        assert_eq!(v[0]["rule"], "vip");
        assert_eq!(v[0]["last_hour"]["total"], 3);
        assert_eq!(
            v[0]["last_hour"]["by_action"],
            json!({"add_note": 2, "send_message": 1})
        );
        assert_eq!(v[0]["last_24h"]["total"], 8);
        assert_eq!(v[0]["last_7d"]["total"], 15, "a week, not more");
        assert_eq!(v[1]["rule"], "quiet");
        assert_eq!(v[1]["last_7d"]["total"], 0);
        assert_eq!(counts_json(&store, &[], now), json!([]));
    }
}
