//! Rule selection: which rules of a [`ManifestSet`] an event triggers, and why each other rule
//! of its integration does not (disabled, listening to another event, suppressed by the loop
//! guard, conditions not holding — with the condition's [`Explanation`]).
//!
//! The daemon (`runtime::Active::matching`, through [`triggers`]), `supportopsd test` and the
//! explanations ([`explain`]) all decide through this module, and conditions through
//! [`Condition::walk`](crate::rules::condition::Condition::walk), so an explanation says
//! "matched" exactly when the daemon runs the rule.

use serde_json::{Value, json};

use super::IntegrationId;
use super::model::{ManifestSet, Rule};
use crate::platforms::supportopsd::events::originated_from;
use crate::rules::explain::{Explanation, explain as explain_condition};
use crate::rules::path::Root;

/// What selection needs to know about a delivery besides its context.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The integration it arrived on.
    pub integration: &'a IntegrationId,
    /// Its event name.
    pub event: &'a str,
    /// Whether it is one of supportopsd's own events (the built-in platform).
    pub builtin: bool,
    /// Its raw payload (a built-in event names the rules that led to it).
    pub payload: &'a Value,
    /// Whether supportopsd's own identity on the integration caused it.
    pub from_self: bool,
}

/// Why the loop guard keeps a rule from running on a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopGuard {
    /// supportopsd caused the event and the rule has no `allow_self`.
    SelfCaused,
    /// A supportopsd event that this very rule led to.
    OwnEvent,
}

impl LoopGuard {
    /// In words.
    pub fn reason(self) -> &'static str {
        match self {
            LoopGuard::SelfCaused => {
                "suppressed by the loop guard: supportopsd's own account caused this event, and the rule does not set `allow_self = true`"
            }
            LoopGuard::OwnEvent => {
                "suppressed by the loop guard: this supportopsd event was caused by the rule itself"
            }
        }
    }
}

/// The loop guard: whether (and why) it keeps `rule` from running on `d`.
#[inline]
pub fn loop_guard(rule: &Rule, d: &Delivery<'_>) -> Option<LoopGuard> {
    if d.from_self && !rule.trigger.allow_self {
        Some(LoopGuard::SelfCaused)
    } else if d.builtin && originated_from(d.payload, rule.id.as_str()) {
        Some(LoopGuard::OwnEvent)
    } else {
        None
    }
}

/// Whether `rule` — enabled and listening to `d`'s integration and event, which the caller's
/// index decides — runs on `d`: the loop guard lets it, and its conditions hold in `ctx`.
#[inline]
pub fn triggers<R: Root + ?Sized>(rule: &Rule, d: &Delivery<'_>, ctx: &R) -> bool {
    loop_guard(rule, d).is_none() && rule.trigger.condition.as_ref().is_none_or(|c| c.eval(ctx))
}

/// What selection decided for one rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict<'c> {
    /// It runs (with its conditions' explanation; `None`: it has none).
    Matched(Option<Explanation<'c>>),
    /// `enabled = false`.
    Disabled,
    /// It listens to another integration or event.
    OtherTrigger {
        /// Its integration.
        integration: String,
        /// Its event.
        event: &'static str,
    },
    /// The loop guard suppressed it (with what its conditions would have said).
    LoopGuard(LoopGuard, Option<Explanation<'c>>),
    /// Its conditions did not hold.
    NoMatch(Explanation<'c>),
}

/// One rule and what selection decided for it.
#[derive(Debug, Clone)]
pub struct RuleVerdict<'c> {
    /// The rule.
    pub rule: &'c Rule,
    /// The decision.
    pub verdict: Verdict<'c>,
}

impl Verdict<'_> {
    /// Whether the rule runs.
    pub fn matched(&self) -> bool {
        matches!(self, Verdict::Matched(_))
    }

    /// `matched`, `no_match`, `disabled`, `other_event` or `loop_guard`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Verdict::Matched(_) => "matched",
            Verdict::NoMatch(_) => "no_match",
            Verdict::Disabled => "disabled",
            Verdict::OtherTrigger { .. } => "other_event",
            Verdict::LoopGuard(..) => "loop_guard",
        }
    }

    /// The decision in words (one line).
    pub fn reason(&self) -> String {
        match self {
            Verdict::Matched(None) => "matched (the rule has no conditions)".into(),
            Verdict::Matched(Some(_)) => "matched: its conditions held".into(),
            Verdict::NoMatch(e) => {
                let n = e.failures().len();
                format!(
                    "no match: {n} condition{} did not hold",
                    if n == 1 { "" } else { "s" }
                )
            }
            Verdict::Disabled => "disabled (`enabled = false`): never runs".into(),
            Verdict::OtherTrigger { integration, event } => {
                format!("listens to `{event}` on `{integration}`, not to this event")
            }
            Verdict::LoopGuard(g, _) => g.reason().into(),
        }
    }

    /// The conditions' explanation, when they were evaluated.
    pub fn conditions(&self) -> Option<&Explanation<'_>> {
        match self {
            Verdict::Matched(e) | Verdict::LoopGuard(_, e) => e.as_ref(),
            Verdict::NoMatch(e) => Some(e),
            Verdict::Disabled | Verdict::OtherTrigger { .. } => None,
        }
    }
}

impl RuleVerdict<'_> {
    /// As JSON: `{rule, file, outcome, matched, reason, failures, conditions}`; `failures` are
    /// the texts of [`Explanation::failures`], `conditions` the whole tree (`null` when they
    /// were not evaluated or there are none).
    pub fn to_json(&self) -> Value {
        let conditions = self.verdict.conditions();
        json!({
            "rule": self.rule.id.as_str(),
            "file": self.rule.file,
            "integration": self.rule.trigger.integration.as_str(),
            "event": self.rule.trigger.event.name,
            "outcome": self.verdict.outcome(),
            "matched": self.verdict.matched(),
            "reason": self.verdict.reason(),
            "failures": conditions
                .map(|c| c.failures().iter().map(|f| f.text()).collect::<Vec<_>>())
                .unwrap_or_default(),
            "conditions": conditions.map(Explanation::to_json),
        })
    }
}

/// Decides for `rule` on `d`, with explanations (every condition evaluated, groups not
/// short-circuited).
pub fn verdict<'c, R: Root + ?Sized>(rule: &'c Rule, d: &Delivery<'_>, ctx: &R) -> Verdict<'c> {
    if !rule.enabled {
        return Verdict::Disabled;
    }
    if rule.trigger.integration != *d.integration || rule.trigger.event.name != d.event {
        return Verdict::OtherTrigger {
            integration: rule.trigger.integration.to_string(),
            event: rule.trigger.event.name,
        };
    }
    let conditions = rule
        .trigger
        .condition
        .as_ref()
        .map(|c| explain_condition(c, ctx));
    if let Some(guard) = loop_guard(rule, d) {
        return Verdict::LoopGuard(guard, conditions);
    }
    match conditions {
        Some(e) if !e.held => Verdict::NoMatch(e),
        other => Verdict::Matched(other),
    }
}

/// Every rule of `set` on `d`'s integration (or just `only`, wherever it listens), in id order,
/// with what selection decided and why. `None` for `only` naming no rule of the set.
pub fn explain<'c, R: Root + ?Sized>(
    set: &'c ManifestSet,
    d: &Delivery<'_>,
    ctx: &R,
    only: Option<&str>,
) -> Option<Vec<RuleVerdict<'c>>> {
    if let Some(id) = only {
        let rule = set.rules.get(id)?;
        return Some(vec![RuleVerdict {
            rule,
            verdict: verdict(rule, d, ctx),
        }]);
    }
    Some(
        set.rules
            .values()
            .filter(|r| r.trigger.integration == *d.integration)
            .map(|rule| RuleVerdict {
                rule,
                verdict: verdict(rule, d, ctx),
            })
            .collect(),
    )
}

/// Renders a rule's verdict as [`RuleVerdict::to_json`] gives it (also when it came from a
/// daemon's API) as readable text: the rule, the decision, then the conditions' tree with `✓`
/// for what held and `✗` for what did not, indented by `indent` spaces.
pub fn render_text(verdict: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let s = |k: &str| verdict.get(k).and_then(Value::as_str).unwrap_or("?");
    let mut out = format!("{pad}rule {} ({}): {}\n", s("rule"), s("file"), s("reason"));
    if let Some(c) = verdict.get("conditions").filter(|c| !c.is_null()) {
        render_node(c, indent + 2, &mut out);
    }
    out
}

fn render_node(node: &Value, indent: usize, out: &mut String) {
    let held = node.get("held").and_then(Value::as_bool).unwrap_or(false);
    let text = node.get("text").and_then(Value::as_str).unwrap_or("?");
    out.push_str(&format!(
        "{}{} {text}\n",
        " ".repeat(indent),
        if held { "✓" } else { "✗" }
    ));
    if let Some(members) = node.get("members").and_then(Value::as_array) {
        for m in members {
            render_node(m, indent + 2, out);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;
    use serde_json::{Map, json};

    use super::*;
    use crate::manifest::model::{Compact, Trigger};
    use crate::manifest::{IntegrationId, RuleId};
    use crate::platforms::PlatformKind;
    use crate::rules::condition::Condition;
    use crate::rules::condition::tests::{arb_condition, arb_ctx};
    use crate::rules::explain::Node;

    fn rule(condition: Option<Condition>, enabled: bool, allow_self: bool) -> Rule {
        let platform = PlatformKind::Zendesk;
        Rule {
            id: RuleId::parse("r").unwrap(),
            name: None,
            description: None,
            enabled,
            mode: crate::manifest::Mode::Active,
            limits: crate::manifest::RuleLimits::default(),
            file: "rules/r.toml".into(),
            trigger: Trigger {
                integration: IntegrationId::parse("zendesk-main").unwrap(),
                platform,
                event: platform.descriptor().event("ticket.created").unwrap(),
                conditions: Compact::table(&Map::new()),
                condition,
                allow_self,
            },
            actions: Vec::new(),
        }
    }

    #[test]
    fn verdicts_in_words() {
        let ctx = json!({"ticket": {"priority": "normal"}});
        let zd = IntegrationId::parse("zendesk-main").unwrap();
        let payload = json!({});
        let d = Delivery {
            integration: &zd,
            event: "ticket.created",
            builtin: false,
            payload: &payload,
            from_self: true,
        };
        let r = rule(None, true, false);
        let v = verdict(&r, &d, &ctx);
        assert_eq!(v.outcome(), "loop_guard");
        assert!(v.reason().contains("`allow_self = true`"), "{}", v.reason());
        let r = rule(None, false, true);
        assert_eq!(verdict(&r, &d, &ctx).outcome(), "disabled");
        let other = Delivery {
            event: "ticket.updated",
            ..d
        };
        let r = rule(None, true, true);
        let v = verdict(&r, &other, &ctx);
        assert_eq!(
            v.reason(),
            "listens to `ticket.created` on `zendesk-main`, not to this event"
        );
        let j = RuleVerdict {
            rule: &r,
            verdict: verdict(&r, &d, &ctx),
        }
        .to_json();
        assert_eq!(j["outcome"], "matched");
        assert_eq!(j["conditions"], Value::Null);
        assert_eq!(
            render_text(&j, 0),
            "rule r (rules/r.toml): matched (the rule has no conditions)\n"
        );
    }

    proptest! {
        /// The explanation says "matched" exactly when the daemon's selection runs the rule,
        /// and every failing test it reports is false on that event.
        #[test]
        fn prop_verdict_agrees_with_selection(
            c in arb_condition(),
            ctx in arb_ctx(),
            enabled in any::<bool>(),
            allow_self in any::<bool>(),
            from_self in any::<bool>(),
            same_event in any::<bool>(),
        ) {
            let r = rule(Some(c), enabled, allow_self);
            let zd = IntegrationId::parse("zendesk-main").unwrap();
            let payload = json!({});
            let d = Delivery {
                integration: &zd,
                event: if same_event { "ticket.created" } else { "ticket.updated" },
                builtin: false,
                payload: &payload,
                from_self,
            };
            let v = verdict(&r, &d, &ctx);
            let runs = enabled && same_event && triggers(&r, &d, &ctx);
            prop_assert_eq!(v.matched(), runs);
            if let Some(e) = v.conditions() {
                let cond = r.trigger.condition.as_ref().unwrap();
                prop_assert_eq!(e.held, cond.eval(&ctx));
                for f in e.failures() {
                    if let Node::Test { path, op, .. } = &f.node {
                        let alone = Condition::Test { path: (*path).clone(), op: (*op).clone() };
                        prop_assert!(!alone.eval(&ctx), "reported failing test holds: {}", f.text());
                    }
                }
            }
            if let Verdict::NoMatch(e) = &v {
                prop_assert!(!e.held && !e.failures().is_empty());
            }
            let j = RuleVerdict { rule: &r, verdict: v.clone() }.to_json();
            prop_assert_eq!(j["matched"].as_bool(), Some(runs));
        }
    }
}
