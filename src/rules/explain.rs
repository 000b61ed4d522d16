//! Why a condition held or did not: the tree of groups and field tests with the value each test
//! saw (`ticket.priority: expected 4, was 3`). Built by [`explain`], which is
//! [`Condition::walk`] — the same evaluator [`Condition::eval`] runs — with an observer that
//! records, so an explanation can never disagree with the decision.
//!
//! Guarantees: [`explain`]'s `held` equals [`Condition::eval`] on the same context; every test
//! of the condition appears (groups are not short-circuited, so each failing member is named);
//! [`Explanation::failures`] lists the tests that made a failing condition fail, each of which
//! is false on that context. Values in texts are shortened (long strings and arrays end in `…`).

use serde_json::{Value, json};

use super::condition::{Condition, Group, Observer, Op};
use super::path::{FieldPath, Root};

/// Longest rendering of a value in an explanation's text, in characters.
const SHOWN_CHARS: usize = 80;

/// Why a condition held or did not.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation<'c> {
    /// Whether it held.
    pub held: bool,
    /// What was evaluated.
    pub node: Node<'c>,
}

/// One node of an [`Explanation`].
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'c> {
    /// A group and its members' explanations, in order.
    Group {
        /// Which group.
        group: Group,
        /// Its members.
        members: Vec<Explanation<'c>>,
    },
    /// A field test.
    Test {
        /// The field.
        path: &'c FieldPath,
        /// The test.
        op: &'c Op,
        /// What the test looked at (the field, or `changes[key]` for `changed`/`changed_to`);
        /// `None`: missing or `null`.
        observed: Option<Value>,
    },
}

/// Evaluates `condition` in `ctx` and says why it held or did not.
pub fn explain<'c, R: Root + ?Sized>(condition: &'c Condition, ctx: &R) -> Explanation<'c> {
    let mut recorder = Recorder {
        stack: vec![(Group::All, Vec::new())],
    };
    let held = condition.walk(ctx, &mut recorder);
    let mut top = recorder.stack.pop().map(|(_, m)| m).unwrap_or_default();
    match top.pop() {
        Some(e) if top.is_empty() => e,
        // Unreachable in practice (a walk yields exactly one top node); keep the result right.
        other => Explanation {
            held,
            node: Node::Group {
                group: Group::All,
                members: top.into_iter().chain(other).collect(),
            },
        },
    }
}

/// Builds the tree as the walk goes: one frame per open group.
struct Recorder<'c> {
    stack: Vec<(Group, Vec<Explanation<'c>>)>,
}

impl<'c> Recorder<'c> {
    fn push(&mut self, e: Explanation<'c>) {
        if let Some((_, members)) = self.stack.last_mut() {
            members.push(e);
        }
    }
}

impl<'c> Observer<'c> for Recorder<'c> {
    const SHORT_CIRCUIT: bool = false;

    fn enter(&mut self, group: Group) {
        self.stack.push((group, Vec::new()));
    }

    fn leave(&mut self, held: bool) {
        if let Some((group, members)) = self.stack.pop() {
            self.push(Explanation {
                held,
                node: Node::Group { group, members },
            });
        }
    }

    fn test<R: Root + ?Sized>(
        &mut self,
        path: &'c FieldPath,
        op: &'c Op,
        field: Option<&Value>,
        ctx: &R,
        held: bool,
    ) {
        let observed = op.observed(field, ctx).cloned();
        self.push(Explanation {
            held,
            node: Node::Test { path, op, observed },
        });
    }
}

impl Explanation<'_> {
    /// What made a condition that did not hold fail: each test that was false where it
    /// counted (a failing `all`'s failing members, every member of a failing `any`), and a
    /// `not` whose inside held (or an empty `any`) as itself. Empty when the condition held.
    pub fn failures(&self) -> Vec<&Self> {
        if self.held {
            return Vec::new();
        }
        match &self.node {
            Node::Test { .. } => vec![self],
            Node::Group {
                group: Group::All | Group::Any,
                members,
            } if members.iter().any(|m| !m.held) => members
                .iter()
                .filter(|m| !m.held)
                .flat_map(Explanation::failures)
                .collect(),
            Node::Group { .. } => vec![self],
        }
    }

    /// One line saying what was evaluated and what was seen (no mark, no indentation).
    pub fn text(&self) -> String {
        match &self.node {
            Node::Test { path, op, observed } => test_text(path, op, observed.as_ref()),
            Node::Group { group, members } => {
                let n = members.len();
                let held = members.iter().filter(|m| m.held).count();
                match group {
                    Group::All if self.held => format!("all[…]: all {n} held"),
                    Group::All => format!("all[…]: {} of {n} failed", n - held),
                    Group::Any if held == 0 => format!("any[…]: none of {n} held"),
                    Group::Any => format!("any[…]: {held} of {n} held"),
                    Group::Not if self.held => "not[…]: the condition inside did not hold".into(),
                    Group::Not => "not[…]: the condition inside held".into(),
                }
            }
        }
    }

    /// The explanation as JSON: `{held, text, path, op, operand, observed}` for a test,
    /// `{held, text, group, members}` for a group.
    pub fn to_json(&self) -> Value {
        match &self.node {
            Node::Test { path, op, observed } => json!({
                "held": self.held,
                "text": self.text(),
                "path": path.to_string(),
                "op": op.name(),
                "operand": op.operand(),
                "observed": observed,
            }),
            Node::Group { group, members } => json!({
                "held": self.held,
                "text": self.text(),
                "group": match group {
                    Group::All => "all",
                    Group::Any => "any",
                    Group::Not => "not",
                },
                "members": members.iter().map(Explanation::to_json).collect::<Vec<_>>(),
            }),
        }
    }
}

/// `ticket.priority: expected 4, was 3`.
fn test_text(path: &FieldPath, op: &Op, observed: Option<&Value>) -> String {
    let was = observed.map_or_else(|| "missing".to_owned(), show);
    let changes = |key: &str| format!("changes.{key}");
    match op {
        Op::Eq(v) => format!("{path}: expected {}, was {was}", show(v)),
        Op::Ne(v) => format!("{path}: expected not {}, was {was}", show(v)),
        Op::In(vs) => format!("{path}: expected one of {}, was {was}", show_list(vs)),
        Op::NotIn(vs) => format!("{path}: expected none of {}, was {was}", show_list(vs)),
        Op::Gt(v) => format!("{path}: expected > {}, was {was}", show(v)),
        Op::Gte(v) => format!("{path}: expected >= {}, was {was}", show(v)),
        Op::Lt(v) => format!("{path}: expected < {}, was {was}", show(v)),
        Op::Lte(v) => format!("{path}: expected <= {}, was {was}", show(v)),
        Op::Contains(v) => format!("{path} contains {}: was {was}", show(v)),
        Op::Matches(p) => format!("{path} matches {}: was {was}", show(&json!(p.as_str()))),
        Op::Exists(true) => format!("{path} exists: was {was}"),
        Op::Exists(false) => format!("{path} is missing: was {was}"),
        Op::Changed {
            expected: true,
            key,
        } => format!("{path} changed: {} was {was}", changes(key)),
        Op::Changed {
            expected: false,
            key,
        } => format!("{path} did not change: {} was {was}", changes(key)),
        Op::ChangedTo { value, key } => {
            format!(
                "{path} changed to {}: {} was {was}",
                show(value),
                changes(key)
            )
        }
    }
}

fn show_list(vs: &[Value]) -> String {
    show(&Value::Array(vs.to_vec()))
}

/// A value as JSON text, shortened to [`SHOWN_CHARS`].
fn show(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > SHOWN_CHARS {
        let short: String = text.chars().take(SHOWN_CHARS - 1).collect();
        format!("{short}…")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::rules::condition::tests::{arb_condition, arb_ctx};

    fn test(path: &str, op: Op) -> Condition {
        Condition::Test {
            path: FieldPath::parse(path).unwrap(),
            op,
        }
    }

    #[test]
    fn names_the_failing_test_and_the_value_seen() {
        let ctx = json!({"ticket": {"priority": 3, "tags": ["billing"]}, "changes": {}});
        let c = Condition::All(vec![
            test("ticket.priority", Op::Eq(json!(4))),
            test("ticket.tags", Op::Contains(json!("vip"))),
            test("ticket.status", Op::Exists(true)),
        ]);
        let e = explain(&c, &ctx);
        assert!(!e.held);
        let texts: Vec<String> = e.failures().iter().map(|f| f.text()).collect();
        assert_eq!(
            texts,
            [
                "ticket.priority: expected 4, was 3",
                "ticket.tags contains \"vip\": was [\"billing\"]",
                "ticket.status exists: was missing",
            ]
        );
        assert_eq!(e.text(), "all[…]: 3 of 3 failed");
    }

    #[test]
    fn any_names_each_branch_and_not_names_itself() {
        let ctx = json!({"ticket": {"priority": 3, "status": "open"}, "changes": {"status": {"from": "new", "to": "open"}}});
        let any = Condition::Any(vec![
            test("ticket.priority", Op::In(vec![json!(4), json!(5)])),
            test(
                "ticket.status",
                Op::ChangedTo {
                    value: json!("solved"),
                    key: "status".into(),
                },
            ),
        ]);
        let e = explain(&any, &ctx);
        assert_eq!(e.text(), "any[…]: none of 2 held");
        let texts: Vec<String> = e.failures().iter().map(|f| f.text()).collect();
        assert_eq!(
            texts,
            [
                "ticket.priority: expected one of [4,5], was 3",
                "ticket.status changed to \"solved\": changes.status was {\"from\":\"new\",\"to\":\"open\"}",
            ]
        );
        let not = Condition::Not(Box::new(test("ticket.status", Op::Eq(json!("open")))));
        let e = explain(&not, &ctx);
        assert_eq!(e.failures().len(), 1);
        assert_eq!(e.failures()[0].text(), "not[…]: the condition inside held");
        let j = e.to_json();
        assert_eq!(j["group"], "not");
        assert_eq!(j["members"][0]["observed"], "open");
        assert_eq!(j["members"][0]["held"], true);
    }

    #[test]
    fn long_values_are_shortened() {
        let long = "x".repeat(500);
        let ctx = json!({"ticket": {"subject": long}});
        let c = test("ticket.subject", Op::Eq(json!("short")));
        let text = explain(&c, &ctx).text();
        assert!(text.chars().count() < 150, "{text}");
        assert!(text.ends_with('…'));
    }

    /// Every test of a failing member is false where it is reported; `not` nodes report that
    /// their inside held.
    fn check_failures(e: &Explanation<'_>, ctx: &Value) -> Result<(), TestCaseError> {
        for f in e.failures() {
            prop_assert!(!f.held);
            match &f.node {
                Node::Test { path, op, .. } => {
                    let alone = Condition::Test {
                        path: (*path).clone(),
                        op: (*op).clone(),
                    };
                    prop_assert!(
                        !alone.eval(ctx),
                        "reported failing test holds: {}",
                        f.text()
                    );
                }
                Node::Group {
                    group: Group::Not,
                    members,
                } => {
                    prop_assert!(members.len() == 1 && members[0].held);
                }
                Node::Group { group, members } => {
                    prop_assert!(*group == Group::Any && members.is_empty());
                }
            }
        }
        Ok(())
    }

    /// Every node's `held` is its own evaluation: groups agree with their members.
    fn check_tree(e: &Explanation<'_>) -> Result<(), TestCaseError> {
        if let Node::Group { group, members } = &e.node {
            let expected = match group {
                Group::All => members.iter().all(|m| m.held),
                Group::Any => members.iter().any(|m| m.held),
                Group::Not => members.len() == 1 && !members[0].held,
            };
            prop_assert_eq!(e.held, expected);
            for m in members {
                check_tree(m)?;
            }
        }
        Ok(())
    }

    proptest! {
        /// The explanation says "held" exactly when the condition holds, and every failing
        /// test it reports is false on that context.
        #[test]
        fn prop_explain_agrees_with_eval(c in arb_condition(), ctx in arb_ctx()) {
            let e = explain(&c, &ctx);
            prop_assert_eq!(e.held, c.eval(&ctx));
            prop_assert_eq!(e.failures().is_empty(), e.held);
            check_failures(&e, &ctx)?;
            check_tree(&e)?;
            let j = e.to_json();
            prop_assert_eq!(j["held"].as_bool(), Some(e.held));
        }
    }
}
