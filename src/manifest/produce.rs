//! Offline production: what the rules of a [`ManifestSet`] do with one payload, nothing sent
//! anywhere. The platform's real normalisation, what the enrichment step would add
//! ([`ENRICHED_KEY`]), the daemon's rule selection ([`select::triggers`]: the loop guard, the
//! conditions) and the templates, each earlier action's result a placeholder. `supportopsd
//! test`, `events fixture` and the behavioural plan (`plan --replay`) all produce through this
//! module, so they agree with each other and with the daemon.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::select;
use super::{IntegrationId, ManifestSet, Rule, RuleId};
use crate::platforms::{ActionSpec, EventSpec, PlatformKind, context};

/// The key of a fixture's payload that holds what the enrichment step would fetch (objects
/// merged into the normalised event's, e.g. `{"comment": {"body": "…"}}`): a Zendesk trigger
/// delivery carries no free text, so a case of a rule that reads `comment.body` gives it here.
pub const ENRICHED_KEY: &str = "supportopsd_enriched";

/// One action a rule produced.
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

/// Placeholder results for earlier actions: offline, nothing runs, so `actions[N].result.<field>`
/// renders as the text `<actions[N].result.<field>>`.
fn placeholder_result(index: usize, spec: &ActionSpec) -> Value {
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

/// The context conditions and templates see for `payload` delivered as `event` on
/// `integration`: the platform's real normalisation, plus what the enrichment step would add
/// ([`ENRICHED_KEY`]). An error says why the payload is not such an event.
pub fn context_of(
    platform: PlatformKind,
    integration: &IntegrationId,
    event: &'static EventSpec,
    payload: &Value,
) -> Result<Value, String> {
    let d = platform.descriptor();
    let mut normalized = (d.normalize)(event, payload)
        .map_err(|e| format!("the payload is not a valid `{}` event: {e}", event.name))?;
    // What the daemon's enrichment step would add (the fields the catalogue's
    // `Delivery::enriched` lists), given by the fixture.
    if let Some(Value::Object(extra)) = payload.get(ENRICHED_KEY) {
        for (k, v) in extra {
            match (normalized.objects.get_mut(k), v) {
                (Some(Value::Object(have)), Value::Object(new)) => {
                    for (field, value) in new {
                        have.insert(field.clone(), value.clone());
                    }
                }
                _ => {
                    normalized.objects.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Ok(context::build(
        platform,
        integration.as_str(),
        event,
        &normalized,
        payload,
    ))
}

/// What selection needs to know about an offline delivery: never caused by supportopsd's own
/// account (a recorded delivery does not say; the loop guard of supportopsd's own events still
/// applies, from the payload).
pub fn delivery<'a>(
    platform: PlatformKind,
    integration: &'a IntegrationId,
    event: &'a str,
    payload: &'a Value,
) -> select::Delivery<'a> {
    select::Delivery {
        integration,
        event,
        builtin: platform.is_builtin(),
        payload,
        from_self: false,
    }
}

/// Renders the actions of a rule that fired, in order, as the executor runs its job: each sees
/// the (placeholder) results of the earlier ones under `actions`, and the first that fails to
/// render ends the job (the result holds it last, `Err` with the message). `ctx` is the
/// event's context; its `actions` key is set while rendering and removed again, so one context
/// serves every rule without a copy.
pub fn render_actions(rule: &Rule, ctx: &mut Value) -> Vec<Result<Value, String>> {
    let mut out = Vec::with_capacity(rule.actions.len());
    let mut earlier = Vec::new();
    for (i, a) in rule.actions.iter().enumerate() {
        if let Value::Object(m) = ctx {
            m.insert("actions".into(), Value::Array(earlier.clone()));
        }
        let rendered = a.parameters.render(ctx);
        match rendered {
            Ok(parameters) => out.push(Ok(parameters)),
            Err(e) => {
                out.push(Err(e.to_string()));
                break;
            }
        }
        earlier.push(placeholder_result(i, a.action));
    }
    if let Value::Object(m) = ctx {
        m.remove("actions");
    }
    out
}

/// The enabled rules of a set by trigger (integration, event), in id order: built once, looked
/// up per event (the daemon's `Active` keeps the same index).
#[derive(Debug, Default)]
pub struct Index<'s> {
    by_trigger: HashMap<(&'s str, &'s str), Vec<&'s Rule>>,
}

impl<'s> Index<'s> {
    /// Indexes the enabled rules of `set`.
    pub fn new(set: &'s ManifestSet) -> Self {
        let mut by_trigger: HashMap<(&'s str, &'s str), Vec<&'s Rule>> = HashMap::new();
        for rule in set.rules.values().filter(|r| r.enabled) {
            by_trigger
                .entry((rule.trigger.integration.as_str(), rule.trigger.event.name))
                .or_default()
                .push(rule);
        }
        Index { by_trigger }
    }

    /// The enabled rules listening to `event` on `integration`, in id order.
    pub fn rules<'a>(&'a self, integration: &'a str, event: &'a str) -> &'a [&'s Rule] {
        // A map is covariant in its keys: looked up with the caller's shorter-lived names.
        let map: &'a HashMap<(&'a str, &'a str), Vec<&'s Rule>> = &self.by_trigger;
        map.get(&(integration, event)).map_or(&[], Vec::as_slice)
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
    /// The context the rules saw (`None` when the payload did not normalise).
    pub ctx: Option<Value>,
}

/// Runs `payload` as a delivery of `event` on `integration` (of `platform`) through the rules
/// of `set`, exactly as a test case does: the platform's normalisation, [`ENRICHED_KEY`], the
/// daemon's rule selection (conditions, the loop guard of supportopsd's own events), the
/// templates. The first action that fails to render stops the run.
pub fn produce(
    set: &ManifestSet,
    platform: PlatformKind,
    integration: &IntegrationId,
    event: &'static EventSpec,
    payload: &Value,
) -> Run {
    let mut run = Run::default();
    let mut ctx = match context_of(platform, integration, event, payload) {
        Ok(ctx) => ctx,
        Err(e) => {
            run.error = Some(e);
            return run;
        }
    };
    let d = delivery(platform, integration, event.name, payload);
    for rule in set.rules_for(integration, event.name) {
        // The daemon's decision: the loop guard of supportopsd's own events, the conditions.
        if !select::triggers(rule, &d, &ctx) {
            continue;
        }
        run.fired.push(rule.id.clone());
        let rendered = render_actions(rule, &mut ctx);
        for (i, (a, rendered)) in rule.actions.iter().zip(rendered).enumerate() {
            match rendered {
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
        }
    }
    run.ctx = Some(ctx);
    run
}
