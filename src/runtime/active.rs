//! The active configuration of a running daemon: one validated revision with everything derived
//! from it (the rule index, each integration's webhook keys, connectors and gates). Built off to
//! the side and swapped in whole, so a revision that fails to load never replaces the last good
//! one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::Event;
use crate::manifest::select;
use crate::manifest::{Credential, IntegrationId, ManifestSet, Rule, RuleId};
use crate::platforms::{self, Connector, PlatformKind, VerifyKeys};
use crate::policy::Policy;
use crate::rules::path::Root;
use crate::runtime::gate::Gate;
use crate::secrets::{ResolveContext, SecretRef};

/// A loaded, validated revision and what the daemon derives from it.
#[derive(Debug)]
pub struct Active {
    /// The manifests.
    pub set: ManifestSet,
    /// The commit it was read at (`None` for the working tree).
    pub commit: Option<String>,
    by_trigger: HashMap<(IntegrationId, String), Vec<RuleId>>,
    /// The (integration, event) pairs whose deliveries are enriched before matching: an
    /// enabled rule on them reads a field the integration's delivery mode leaves to the
    /// enrichment step ([`Active::needs_enrichment`]): the enriched fields they read, and whether one of those rules has
    /// `allow_self`.
    enrich: HashMap<(IntegrationId, String), (Vec<&'static str>, bool)>,
    keys: HashMap<IntegrationId, VerifyKeys>,
    connectors: HashMap<IntegrationId, Result<Arc<dyn Connector>, String>>,
    gates: HashMap<IntegrationId, Gate>,
}

/// Why an integration's webhook keys or connector are not usable, per integration (reported,
/// not fatal: the rest of the revision runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The integration.
    pub integration: IntegrationId,
    /// What is wrong, in words an operator can act on (never a secret).
    pub message: String,
}

fn resolve(
    integration: &IntegrationId,
    field: &str,
    r: &SecretRef,
    ctx: &ResolveContext<'_>,
    problems: &mut Vec<Problem>,
) -> Option<crate::secrets::Secret> {
    match r.resolve(integration, field, ctx) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(Problem {
                integration: integration.clone(),
                message: format!("`{field}` ({}): {e}", r.describe()),
            });
            None
        }
    }
}

impl Active {
    /// Derives everything the daemon needs from a validated manifest set. `public_url` is where
    /// the platforms reach us (part of Trello's signature). `captured` holds secrets the daemon
    /// learned at run time (Notion verification tokens), by integration.
    ///
    /// Connectors are built through [`platforms::connect`] under `policy`; a revision the
    /// policy refuses never gets here ([`policy_refusals`] is checked before, and the revision
    /// refused whole).
    pub fn build(
        set: ManifestSet,
        commit: Option<String>,
        public_url: &str,
        ctx: &ResolveContext<'_>,
        policy: &Policy,
        captured: &HashMap<IntegrationId, crate::secrets::Secret>,
    ) -> (Active, Vec<Problem>) {
        let mut problems = Vec::new();
        let mut by_trigger: HashMap<(IntegrationId, String), Vec<RuleId>> = HashMap::new();
        for rule in set.rules.values().filter(|r| r.enabled) {
            by_trigger
                .entry((
                    rule.trigger.integration.clone(),
                    rule.trigger.event.name.to_owned(),
                ))
                .or_default()
                .push(rule.id.clone());
        }
        let mut enrich: HashMap<(IntegrationId, String), (Vec<&'static str>, bool)> =
            HashMap::new();
        // Shadow rules never cause an enrichment (a platform call): `runtime::shadow`.
        for rule in set.rules.values().filter(|r| r.enabled && !r.is_shadow()) {
            let fields = enriched_reads(&set, rule);
            if fields.is_empty() {
                continue;
            }
            let (all, allow_self) = enrich
                .entry((
                    rule.trigger.integration.clone(),
                    rule.trigger.event.name.to_owned(),
                ))
                .or_default();
            for f in fields {
                if !all.contains(&f) {
                    all.push(f);
                }
            }
            *allow_self |= rule.trigger.allow_self;
        }
        let mut keys = HashMap::new();
        let mut connectors = HashMap::new();
        let mut gates = HashMap::new();
        for (id, i) in &set.integrations {
            let secret_field = |name: &str| match i.credentials.get(name) {
                Some(Credential::Secret(r)) => Some(r),
                _ => None,
            };
            let webhook_secret = i.webhook.as_ref().and_then(|w| w.secret.as_ref());
            let secret = match i.platform {
                PlatformKind::Slack => secret_field("signing_secret")
                    .and_then(|r| resolve(id, "signing_secret", r, ctx, &mut problems)),
                PlatformKind::Trello => secret_field("app_secret")
                    .and_then(|r| resolve(id, "app_secret", r, ctx, &mut problems)),
                PlatformKind::Zendesk | PlatformKind::Freshdesk => webhook_secret
                    .and_then(|r| resolve(id, "webhook_secret", r, ctx, &mut problems)),
                PlatformKind::Notion => captured
                    .get(id)
                    .map(|s| crate::secrets::Secret::new(s.expose().to_vec())),
                PlatformKind::GoogleSheets | PlatformKind::Supportopsd => None,
            };
            let callback_url = Some(webhook_url(public_url, i.platform, id));
            keys.insert(
                id.clone(),
                VerifyKeys {
                    secret,
                    callback_url,
                    channel_id: None,
                },
            );
            let connector = platforms::connect(i, ctx, policy).map_err(|e| e.to_string());
            if let Err(e) = &connector
                && i.platform == PlatformKind::Slack
            {
                problems.push(Problem {
                    integration: id.clone(),
                    message: e.clone(),
                });
            }
            connectors.insert(id.clone(), connector);
            gates.insert(id.clone(), Gate::for_integration(i.platform, &i.limits));
        }
        (
            Active {
                set,
                commit,
                by_trigger,
                enrich,
                keys,
                connectors,
                gates,
            },
            problems,
        )
    }

    /// Replaces an integration's connector (unit tests run the executor against a test one).
    #[cfg(test)]
    pub(crate) fn set_connector(&mut self, id: IntegrationId, connector: Arc<dyn Connector>) {
        self.connectors.insert(id, Ok(connector));
    }

    /// The integration's webhook keys.
    pub fn keys(&self, id: &IntegrationId) -> Option<&VerifyKeys> {
        self.keys.get(id)
    }

    /// The inbound shared secret the manifest gives the integration (`[webhook] secret`),
    /// resolved: what Freshdesk's automation rules send back.
    pub fn manifest_secret(&self, id: &IntegrationId) -> Option<crate::secrets::Secret> {
        let i = self.set.integrations.get(id)?;
        i.webhook.as_ref()?.secret.as_ref()?;
        matches!(i.platform, PlatformKind::Freshdesk | PlatformKind::Zendesk)
            .then(|| self.keys.get(id)?.secret.clone())
            .flatten()
    }

    /// The integration's connector, or why there is none.
    pub fn connector(&self, id: &IntegrationId) -> Result<&Arc<dyn Connector>, String> {
        match self.connectors.get(id) {
            Some(Ok(c)) => Ok(c),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("integration `{id}` is not in the active revision")),
        }
    }

    /// Every connector that could be built, for connection checks.
    pub fn connectors(&self) -> impl Iterator<Item = (&IntegrationId, &Arc<dyn Connector>)> {
        self.connectors
            .iter()
            .filter_map(|(id, c)| c.as_ref().ok().map(|c| (id, c)))
    }

    /// The integration's gate.
    pub fn gate(&self, id: &IntegrationId) -> Option<&Gate> {
        self.gates.get(id)
    }

    /// A rule by id.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.set.rules.get(id)
    }

    /// The rules an event triggers: enabled, active (not `mode = "shadow"`), on its integration
    /// and event, conditions holding, and — unless a rule opts in with `allow_self` — not
    /// caused by supportopsd itself (`from_self`; the loop guard). Decided by
    /// [`select::triggers`], as the explanations ([`Active::explain`]) are.
    pub fn matching<R: Root + ?Sized>(
        &self,
        event: &Event,
        ctx: &R,
        from_self: bool,
    ) -> Vec<&Rule> {
        self.selected(event, ctx, from_self, false)
    }

    /// The shadow rules (`mode = "shadow"`) an event triggers, decided exactly as
    /// [`Active::matching`] decides the active ones (the loop guard included): what
    /// `runtime::shadow` records instead of running.
    pub fn shadow_matching<R: Root + ?Sized>(
        &self,
        event: &Event,
        ctx: &R,
        from_self: bool,
    ) -> Vec<&Rule> {
        self.selected(event, ctx, from_self, true)
    }

    fn selected<R: Root + ?Sized>(
        &self,
        event: &Event,
        ctx: &R,
        from_self: bool,
        shadow: bool,
    ) -> Vec<&Rule> {
        let Some(ids) = self
            .by_trigger
            .get(&(event.integration.clone(), event.name.clone()))
        else {
            return Vec::new();
        };
        let d = delivery(event, from_self);
        ids.iter()
            .filter_map(|id| self.set.rules.get(id))
            .filter(|r| r.is_shadow() == shadow)
            .filter(|r| select::triggers(r, &d, ctx))
            .collect()
    }

    /// Why each rule of the event's integration (or just `only`) does or does not run on it:
    /// [`select::explain`] on this revision. `None` when `only` names no rule.
    pub fn explain<'a, R: Root + ?Sized>(
        &'a self,
        event: &Event,
        ctx: &R,
        from_self: bool,
        only: Option<&str>,
    ) -> Option<Vec<select::RuleVerdict<'a>>> {
        select::explain(&self.set, &delivery(event, from_self), ctx, only)
    }

    /// Whether a delivery of `event` is stored with a pending enrichment instead of being
    /// matched at once: a rule on its integration and event reads a field that the
    /// integration's delivery mode leaves to the enrichment step (the catalogue's
    /// [`platforms::Delivery`]), and the delivery does not carry it (a hand-made trigger body
    /// with text placeholders does). Only those deliveries cost API calls; the others are
    /// matched as they arrive. An event supportopsd caused (`from_self`) is enriched only when
    /// one of those rules has `allow_self` (the loop guard would drop the others anyway).
    pub fn needs_enrichment(&self, event: &Event, from_self: bool) -> bool {
        let Some((fields, allow_self)) = self
            .enrich
            .get(&(event.integration.clone(), event.name.clone()))
        else {
            return false;
        };
        if from_self && !allow_self {
            return false;
        }
        fields.iter().any(|f| {
            let mut parts = f.split('.');
            let mut value = parts.next().and_then(|k| event.objects.get(k));
            for k in parts {
                value = value.and_then(|v| v.get(k));
            }
            value.is_none_or(serde_json::Value::is_null)
        })
    }

    /// The integrations of a platform (for `/api/webhooks/{platform}` without an id).
    pub fn integrations_of(&self, kind: PlatformKind) -> Vec<&IntegrationId> {
        self.set
            .integrations
            .values()
            .filter(|i| i.platform == kind)
            .map(|i| &i.id)
            .collect()
    }
}

/// What rule selection needs to know about `event`.
pub fn delivery(event: &Event, from_self: bool) -> select::Delivery<'_> {
    select::Delivery {
        integration: &event.integration,
        event: &event.name,
        builtin: event.platform.is_builtin(),
        payload: &event.payload,
        from_self,
    }
}

/// The fields `rule` reads (in its conditions or its templates) that its trigger's delivery
/// leaves to the enrichment step: a field read itself, beneath it, or through an object
/// holding it.
fn enriched_reads(set: &ManifestSet, rule: &Rule) -> Vec<&'static str> {
    let Some(delivery) = set
        .integrations
        .get(&rule.trigger.integration)
        .and_then(|i| {
            rule.trigger
                .platform
                .delivery(rule.trigger.event, &i.config)
        })
    else {
        return Vec::new();
    };
    let dotted = |p: &crate::rules::path::FieldPath| {
        p.segments()
            .iter()
            .map(|s| match s {
                crate::rules::path::Segment::Key(k) => k.clone(),
                crate::rules::path::Segment::Index(_) => "0".to_owned(),
            })
            .collect::<Vec<_>>()
            .join(".")
    };
    let mut paths: Vec<String> = rule
        .trigger
        .condition
        .as_ref()
        .map(|c| c.paths().into_iter().map(dotted).collect())
        .unwrap_or_default();
    for a in &rule.actions {
        for (_, t) in a.parameters.templates() {
            paths.extend(t.paths().iter().map(dotted));
        }
    }
    delivery
        .enriched
        .iter()
        .copied()
        .filter(|f| {
            paths.iter().any(|p| {
                platforms::Delivery::covers(&[f], p) || platforms::Delivery::covers(&[p], f)
            })
        })
        .collect()
}

/// The canonical webhook URL of an integration: what the daemon registers and Trello signs.
pub fn webhook_url(public_url: &str, kind: PlatformKind, id: &IntegrationId) -> String {
    format!(
        "{}/api/webhooks/{}/{}",
        public_url.trim_end_matches('/'),
        kind.as_str(),
        id
    )
}

/// Everything the host policy refuses in `set` (see [`platforms::connector::policy_refusals`]),
/// integration by integration: a revision with any is refused whole.
pub fn policy_refusals(set: &ManifestSet, policy: &Policy) -> Vec<String> {
    set.integrations
        .values()
        .flat_map(|i| platforms::connector::policy_refusals(i, policy))
        .collect()
}
