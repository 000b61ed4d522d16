//! `supportopsd test`: runs the repository's rule test cases offline. Each case's payload goes
//! through the real normalisation, matching and rendering code; the actions produced are compared
//! with the expected ones. Nothing is sent anywhere. Fields the daemon would fetch in its
//! enrichment step come from the payload's [`ENRICHED_KEY`] object.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::manifest::{ManifestSet, RuleId, TestCase};
use crate::platforms::context;

/// The key of a fixture's payload that holds what the enrichment step would fetch (objects
/// merged into the normalised event's, e.g. `{"comment": {"body": "…"}}`): a Zendesk trigger
/// delivery carries no free text, so a case of a rule that reads `comment.body` gives it here.
pub const ENRICHED_KEY: &str = "supportopsd_enriched";

/// One action a rule produced for a case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Produced {
    /// The rule.
    pub rule: RuleId,
    /// The action name.
    pub action: String,
    /// The integration that would perform it.
    pub integration: String,
    /// Rendered parameters.
    pub parameters: Value,
}

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

    /// Rule coverage in percent (100 when there are no rules).
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
    let mut exercised = BTreeSet::new();
    let cases = set
        .tests
        .iter()
        .map(|case| {
            let (result, fired) = run_case(set, case);
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

/// Placeholder results for earlier actions: offline, nothing runs, so `actions[N].result.<field>`
/// renders as the text `<actions[N].result.<field>>`.
fn placeholder_result(index: usize, spec: &crate::platforms::ActionSpec) -> Value {
    let mut result = Map::new();
    for f in spec.result {
        insert_path(
            &mut result,
            f.path,
            json!(format!("<actions[{index}].result.{}>", f.path)),
        );
    }
    json!({ "action": spec.name, "result": result })
}

fn insert_path(m: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            m.insert(path.to_owned(), v);
        }
        Some((head, rest)) => {
            let entry = m
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                insert_path(inner, rest, v);
            }
        }
    }
}

fn run_case(set: &ManifestSet, case: &TestCase) -> (CaseResult, Vec<RuleId>) {
    let fail = |msg: String, produced: Vec<Produced>| CaseResult {
        file: case.file.clone(),
        name: case.name.clone(),
        passed: false,
        failure: Some(msg),
        produced,
    };
    let run = produce(
        set,
        case.platform,
        &case.integration,
        case.event,
        &case.payload,
    );
    match run.error {
        Some(msg) => (fail(msg, run.produced), run.fired),
        None => (compare(case, run.produced), run.fired),
    }
}

/// What the rules of a set do with one payload, offline.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// The actions produced, in order (up to an error).
    pub produced: Vec<Produced>,
    /// The rules that fired.
    pub fired: Vec<RuleId>,
    /// Why the run stopped: a payload that is not a valid delivery of the event, or a
    /// template that failed to render.
    pub error: Option<String>,
}

/// Runs `payload` as a delivery of `event` on `integration` (of `platform`) through the rules
/// of `set`, exactly as a test case does: the platform's normalisation, [`ENRICHED_KEY`], the
/// conditions, the loop guard of supportopsd's own events, the templates.
pub fn produce(
    set: &ManifestSet,
    platform: crate::platforms::PlatformKind,
    integration: &crate::manifest::IntegrationId,
    event: &'static crate::platforms::EventSpec,
    payload: &Value,
) -> Run {
    let mut run = Run::default();
    let d = platform.descriptor();
    let normalized = match (d.normalize)(event, payload) {
        Ok(mut n) => {
            // What the daemon's enrichment step would add (the fields the catalogue's
            // `Delivery::enriched` lists), given by the fixture.
            if let Some(Value::Object(extra)) = payload.get(ENRICHED_KEY) {
                for (k, v) in extra {
                    match (n.objects.get_mut(k), v) {
                        (Some(Value::Object(have)), Value::Object(new)) => {
                            for (field, value) in new {
                                have.insert(field.clone(), value.clone());
                            }
                        }
                        _ => {
                            n.objects.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            n
        }
        Err(e) => {
            run.error = Some(format!(
                "the payload is not a valid `{}` event: {e}",
                event.name
            ));
            return run;
        }
    };
    let ctx = context::build(platform, integration.as_str(), event, &normalized, payload);
    for rule in set.rules_for(integration, event.name) {
        if !rule.trigger.condition.as_ref().is_none_or(|c| c.eval(&ctx)) {
            continue;
        }
        // The loop guard of supportopsd's own events, as the daemon applies it.
        if platform.is_builtin()
            && crate::platforms::supportopsd::events::originated_from(payload, rule.id.as_str())
        {
            continue;
        }
        run.fired.push(rule.id.clone());
        let mut earlier = Vec::new();
        for (i, a) in rule.actions.iter().enumerate() {
            let mut action_ctx = ctx.clone();
            if let Value::Object(m) = &mut action_ctx {
                m.insert("actions".into(), Value::Array(earlier.clone()));
            }
            match a.parameters.render(&action_ctx) {
                Ok(parameters) => run.produced.push(Produced {
                    rule: rule.id.clone(),
                    action: a.action.name.to_owned(),
                    integration: a.integration.to_string(),
                    parameters,
                }),
                Err(e) => {
                    run.error = Some(format!(
                        "rule `{}` action {i} (`{}`): {e}",
                        rule.id, a.action.name
                    ));
                    return run;
                }
            }
            earlier.push(placeholder_result(i, a.action));
        }
    }
    run
}

fn compare(case: &TestCase, produced: Vec<Produced>) -> CaseResult {
    let mut result = CaseResult {
        file: case.file.clone(),
        name: case.name.clone(),
        passed: true,
        failure: None,
        produced: Vec::new(),
    };
    let matches = produced.len() == case.expect.len()
        && produced.iter().zip(&case.expect).all(|(p, e)| {
            p.rule == e.rule
                && p.action == e.action
                && e.parameters
                    .as_ref()
                    .is_none_or(|want| p.parameters == Value::Object(want.clone()))
        });
    if !matches {
        let expected: Vec<Value> = case
            .expect
            .iter()
            .map(|e| match &e.parameters {
                Some(p) => json!({"rule": e.rule.as_str(), "action": e.action, "parameters": p}),
                None => json!({"rule": e.rule.as_str(), "action": e.action}),
            })
            .collect();
        let actual: Vec<Value> = produced
            .iter()
            .zip(case.expect.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(p, e)| {
                // Leave parameters out where the expectation leaves them out, so the diff shows
                // only what the case asserts.
                if e.is_some_and(|e| {
                    e.parameters.is_none() && e.rule == p.rule && e.action == p.action
                }) {
                    json!({"rule": p.rule.as_str(), "action": p.action})
                } else {
                    json!({"rule": p.rule.as_str(), "action": p.action, "parameters": p.parameters})
                }
            })
            .collect();
        let want = serde_json::to_string_pretty(&expected).unwrap_or_default() + "\n";
        let got = serde_json::to_string_pretty(&actual).unwrap_or_default() + "\n";
        let diff = similar::TextDiff::from_lines(&want, &got)
            .unified_diff()
            .context_radius(3)
            .header("expected", "actual")
            .to_string();
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
