//! `supportopsd test`: runs the repository's rule test cases offline. Each case's payload goes
//! through the real normalisation, matching and rendering code; the actions produced are compared
//! with the expected ones. Nothing is sent anywhere. Fields the daemon would fetch in its
//! enrichment step come from the payload's [`ENRICHED_KEY`](crate::manifest::produce::ENRICHED_KEY)
//! object. Production itself (normalisation, selection, rendering) is [`crate::manifest::produce`].

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Value, json};

use crate::manifest::diagnostic::did_you_mean;
use crate::manifest::produce::{Produced, context_of, produce};
use crate::manifest::{IntegrationId, ManifestSet, RuleId, TestCase, select};

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The test file.
    pub file: String,
    /// The case name.
    pub name: String,
    /// Passed.
    pub passed: bool,
    /// Why it failed: a message and, for mismatches, a unified diff of expected vs actual.
    pub failure: Option<String>,
    /// What the rules produced.
    pub produced: Vec<Produced>,
    /// For a failed case, why each rule it expected an action of did not run (the JSON of
    /// [`select::RuleVerdict::to_json`]); the failure's text ends with them rendered.
    pub explanations: Vec<Value>,
    /// How long the case took to run (JUnit's `time`; not in the JSON report, which stays the
    /// same from run to run).
    #[serde(skip)]
    pub duration: std::time::Duration,
}

/// The result of a whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every case, in file order.
    pub cases: Vec<CaseResult>,
    /// Enabled rules.
    pub rules_total: usize,
    /// Enabled rules that fired in at least one case.
    pub rules_exercised: usize,
    /// Enabled rules no case exercised, with their files.
    pub uncovered: Vec<(String, String)>,
}

impl Report {
    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| !c.passed).count()
    }

    /// Rule coverage in percent (100 when there are no rules: callers say "no rules to cover"
    /// and do not let it pass a coverage bar, see `rules_total`).
    pub fn coverage(&self) -> f64 {
        if self.rules_total == 0 {
            100.0
        } else {
            #[allow(clippy::cast_precision_loss)]
            let pct = self.rules_exercised as f64 * 100.0 / self.rules_total as f64;
            pct
        }
    }
}

/// Runs every test case of `set`.
pub fn run(set: &ManifestSet) -> Report {
    run_only(set, None)
}

/// Runs the test cases of `set` named `only` (all when `None`; a name may be given to cases
/// of several files). Coverage counts the cases run.
pub fn run_only(set: &ManifestSet, only: Option<&str>) -> Report {
    let mut exercised = BTreeSet::new();
    let cases = set
        .tests
        .iter()
        .filter(|case| only.is_none_or(|name| case.name == name))
        .map(|case| {
            let started = tokio::time::Instant::now();
            let (mut result, fired) = run_case(set, case);
            result.duration = started.elapsed();
            exercised.extend(fired);
            result
        })
        .collect();
    let enabled: Vec<_> = set.rules.values().filter(|r| r.enabled).collect();
    let uncovered = enabled
        .iter()
        .filter(|r| !exercised.contains(&r.id))
        .map(|r| (r.id.to_string(), r.file.clone()))
        .collect();
    Report {
        cases,
        rules_total: enabled.len(),
        rules_exercised: enabled.iter().filter(|r| exercised.contains(&r.id)).count(),
        uncovered,
    }
}

/// `supportopsd explain`: why each rule of `integration` (or just `only`) does or does not
/// run on `payload` delivered as `event` — the keys of a test case, through the same
/// normalisation and selection as [`run`] (supportopsd is never the cause offline: the loop
/// guard only applies to its own events). Each verdict as [`select::RuleVerdict::to_json`].
pub fn explain(
    set: &ManifestSet,
    integration: &str,
    event: &str,
    payload: &Value,
    only: Option<&str>,
) -> Result<Vec<Value>, String> {
    let Some(i) = set
        .integrations
        .values()
        .find(|i| i.id.as_str() == integration)
    else {
        let known: Vec<&str> = set.integrations.keys().map(IntegrationId::as_str).collect();
        return Err(match did_you_mean(integration, known.iter().copied()) {
            Some(s) => format!("no integration `{integration}`; did you mean `{s}`?"),
            None => format!(
                "no integration `{integration}` (the repository has: {})",
                known.join(", ")
            ),
        });
    };
    let d = i.platform.descriptor();
    let Some(spec) = d.event(event) else {
        let names: Vec<&str> = d.events.iter().map(|e| e.name).collect();
        let hint = did_you_mean(event, names.iter().copied())
            .map_or_else(String::new, |s| format!(" did you mean `{s}`?"));
        return Err(format!(
            "{} has no event `{event}`;{hint} its events: {}",
            i.platform.as_str(),
            names.join(", ")
        ));
    };
    if let Some(rule) = only
        && !set.rules.contains_key(rule)
    {
        let ids: Vec<&str> = set.rules.keys().map(RuleId::as_str).collect();
        return Err(match did_you_mean(rule, ids.iter().copied()) {
            Some(s) => format!("no rule `{rule}`; did you mean `{s}`?"),
            None => format!("no rule `{rule}` in the repository"),
        });
    }
    let ctx = context_of(i.platform, &i.id, spec, payload)?;
    let delivery = select::Delivery {
        integration: &i.id,
        event: spec.name,
        builtin: i.platform.is_builtin(),
        payload,
        from_self: false,
    };
    Ok(select::explain(set, &delivery, &ctx, only)
        .unwrap_or_default()
        .iter()
        .map(select::RuleVerdict::to_json)
        .collect())
}

fn run_case(set: &ManifestSet, case: &TestCase) -> (CaseResult, Vec<RuleId>) {
    let fail = |msg: String, produced: Vec<Produced>| CaseResult {
        file: case.file.clone(),
        name: case.name.clone(),
        passed: false,
        failure: Some(msg),
        produced,
        explanations: Vec::new(),
        duration: std::time::Duration::ZERO,
    };
    let run = produce(
        set,
        case.platform,
        &case.integration,
        case.event,
        &case.payload,
    );
    let mut result = match run.error {
        Some(msg) => return (fail(msg, run.produced), run.fired),
        None => compare(case, run.produced),
    };
    if let (false, Some(ctx)) = (result.passed, &run.ctx) {
        // Why an expected action did not happen: the explanation of each expected rule that
        // did not run, from the evaluator that decided.
        let delivery = select::Delivery {
            integration: &case.integration,
            event: case.event.name,
            builtin: case.platform.is_builtin(),
            payload: &case.payload,
            from_self: false,
        };
        let mut seen = BTreeSet::new();
        for e in &case.expect {
            if run.fired.contains(&e.rule) || !seen.insert(e.rule.clone()) {
                continue;
            }
            let Some(rule) = set.rules.get(&e.rule) else {
                continue;
            };
            let verdict = select::RuleVerdict {
                rule,
                verdict: select::verdict(rule, &delivery, ctx),
            }
            .to_json();
            if let Some(failure) = &mut result.failure {
                failure.push_str(&format!(
                    "why `{}` did not run:\n{}",
                    e.rule,
                    select::render_text(&verdict, 2)
                ));
            }
            result.explanations.push(verdict);
        }
    }
    (result, run.fired)
}

fn compare(case: &TestCase, produced: Vec<Produced>) -> CaseResult {
    let mut result = CaseResult {
        file: case.file.clone(),
        name: case.name.clone(),
        passed: true,
        failure: None,
        produced: Vec::new(),
        explanations: Vec::new(),
        duration: std::time::Duration::ZERO,
    };
    let matches = produced.len() == case.expect.len()
        && produced.iter().zip(&case.expect).all(|(p, e)| {
            p.rule == e.rule
                && p.action == e.action
                && p.shadow == e.shadow
                && e.parameters
                    .as_ref()
                    .is_none_or(|want| p.parameters == Value::Object(want.clone()))
        });
    if !matches {
        let expected: Vec<Value> = case
            .expect
            .iter()
            .map(|e| {
                let mut v = match &e.parameters {
                    Some(p) => {
                        json!({"rule": e.rule.as_str(), "action": e.action, "parameters": p})
                    }
                    None => json!({"rule": e.rule.as_str(), "action": e.action}),
                };
                if e.shadow {
                    v["shadow"] = json!(true);
                }
                v
            })
            .collect();
        let actual: Vec<Value> = produced
            .iter()
            .zip(case.expect.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(p, e)| {
                // Leave parameters out where the expectation leaves them out, so the diff shows
                // only what the case asserts.
                let mut v = if e.is_some_and(|e| {
                    e.parameters.is_none() && e.rule == p.rule && e.action == p.action
                }) {
                    json!({"rule": p.rule.as_str(), "action": p.action})
                } else {
                    json!({"rule": p.rule.as_str(), "action": p.action, "parameters": p.parameters})
                };
                if p.shadow {
                    v["shadow"] = json!(true);
                }
                v
            })
            .collect();
        let want = serde_json::to_string_pretty(&expected).unwrap_or_default() + "\n";
        let got = serde_json::to_string_pretty(&actual).unwrap_or_default() + "\n";
        let diff = word_diff(&want, &got);
        let what = if case.expect_none {
            "expected no actions, but rules fired".to_owned()
        } else {
            "the actions produced differ from the expected ones".to_owned()
        };
        result.passed = false;
        result.failure = Some(format!("{what}\n{diff}"));
    }
    result.produced = produced;
    result
}

/// A unified diff of `want` and `got` (`--- expected`, `+++ actual`, 3 lines of context) whose
/// changed lines also mark the changed words: `[-removed-]` on `-` lines, `{+added+}` on `+`
/// lines, so a one-character difference in a long line is found at a glance.
fn word_diff(want: &str, got: &str) -> String {
    use similar::{ChangeTag, TextDiff};
    let diff = TextDiff::from_lines(want, got);
    let mut out = String::from("--- expected\n+++ actual\n");
    for (i, group) in diff.grouped_ops(3).iter().enumerate() {
        if i > 0 {
            out.push_str("@@\n");
        }
        for op in group {
            for change in diff.iter_inline_changes(op) {
                let (sign, open, close) = match change.tag() {
                    ChangeTag::Delete => ('-', "[-", "-]"),
                    ChangeTag::Insert => ('+', "{+", "+}"),
                    ChangeTag::Equal => (' ', "", ""),
                };
                out.push(sign);
                for (emphasized, text) in change.iter_strings_lossy() {
                    if emphasized {
                        let (body, newline) = match text.strip_suffix('\n') {
                            Some(body) => (body, "\n"),
                            None => (text.as_ref(), ""),
                        };
                        out.push_str(open);
                        out.push_str(body);
                        out.push_str(close);
                        out.push_str(newline);
                    } else {
                        out.push_str(&text);
                    }
                }
                if change.missing_newline() {
                    out.push('\n');
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::word_diff;

    /// Issue 18 item 7: a mismatch marks the changed words, not only the lines.
    #[test]
    fn the_diff_marks_changed_words() {
        let want = "{\n  \"text\": \"Urgent ticket 42 from Ada\",\n  \"channel\": \"C1\"\n}\n";
        let got = "{\n  \"text\": \"Urgent ticket 43 from Ada\",\n  \"channel\": \"C1\"\n}\n";
        let d = word_diff(want, got);
        assert!(d.starts_with("--- expected\n+++ actual\n"), "{d}");
        assert!(
            d.contains("-  \"text\": \"Urgent ticket [-42-] from Ada\",\n"),
            "{d}"
        );
        assert!(
            d.contains("+  \"text\": \"Urgent ticket {+43+} from Ada\",\n"),
            "{d}"
        );
        assert!(d.contains("   \"channel\": \"C1\"\n"), "{d}");
        // Whole new lines are not bracketed.
        let d = word_diff("[]\n", "[\n  1\n]\n");
        assert!(!d.contains("{+"), "{d}");
    }
}
