//! Offline production: what the rules of a [`ManifestSet`] do with one payload, nothing sent
//! anywhere. The platform's real normalisation, what the enrichment step would add
//! ([`ENRICHED_KEY`]), the daemon's rule selection ([`select::triggers`]: the loop guard, the
//! conditions) and the templates, each earlier action's result a placeholder. `supportopsd
//! test`, `events fixture` and the behavioural plan (`plan --replay`) all produce through this
//! module, so they agree with each other and with the daemon.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use super::select;
use super::{IntegrationId, ManifestSet, Rule, RuleId};
use crate::platforms::{EventSpec, PlatformKind, context};

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
    /// A shadow rule's action (`mode = "shadow"`): the daemon records it and runs nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
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
        let (rendered, error) = rule.render_offline_in(&mut ctx);
        run.produced.extend(rendered.into_iter().map(|a| Produced {
            rule: rule.id.clone(),
            action: a.action.to_owned(),
            integration: a.integration.to_string(),
            parameters: a.parameters,
            shadow: rule.is_shadow(),
        }));
        if let Some((i, e)) = error {
            let name = rule.actions.get(i).map_or("?", |a| a.action.name);
            run.error = Some(format!("rule `{}` action {i} (`{name}`): {e}", rule.id));
            return run;
        }
    }
    run.ctx = Some(ctx);
    run
}
