//! `plan`: a pure function from (desired, current) to an ordered list of changes. Never performs
//! I/O. Resources are integrations, their webhook registrations and rules; each is summarised as
//! canonical JSON whose hash is its fingerprint. Secret fields enter summaries only as a hash of
//! their reference, and renderings show them as "(sensitive value changed)".

pub mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::manifest::{Credential, Integration, ManifestSet, Rule};
use crate::platforms::PlatformKind;
use crate::state::AppliedResource;

/// Version of the JSON plan format: a minor bump adds fields, a major bump breaks them.
pub const FORMAT_VERSION: &str = "1.0";

/// Prefix marking a sensitive leaf in a summary; what follows is a hash, never a value.
const SENSITIVE: &str = "(sensitive:";

/// The kinds of resource a plan manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// An integration: credentials, config, limits.
    Integration,
    /// The webhook registration an integration's `[webhook]` asks for.
    Registration,
    /// A rule.
    Rule,
}

/// One resource, named.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ResourceRef {
    /// Kind.
    pub kind: ResourceKind,
    /// Id (the integration id for registrations).
    pub id: String,
}

/// A resource as a plan sees it: its platform and a flat summary of its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The platform it lives on (a rule's trigger platform).
    pub platform: Option<PlatformKind>,
    /// Canonical summary (nested JSON; sensitive leaves are hashes).
    pub summary: Value,
}

/// What happens to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// It will be created.
    Create,
    /// It will be changed.
    Update,
    /// It will be deleted.
    Delete,
}

/// One field of a change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// Dotted path (`credentials.api_key`, `actions[0].parameters.channel`).
    pub path: String,
    /// Value before (absent on create). Sensitive values are never included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Value after (absent on delete). Sensitive values are never included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// The field holds a secret: only the fact that it changed is shown.
    pub sensitive: bool,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The resource.
    pub resource: ResourceRef,
    /// Its platform.
    pub platform: Option<PlatformKind>,
    /// Create, update or delete.
    pub action: ChangeKind,
    /// Field-level detail.
    pub fields: Vec<FieldChange>,
}

/// A plan: plain, deterministically ordered data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// [`FORMAT_VERSION`].
    pub format_version: &'static str,
    /// What is compared against (a revision, the applied state, or nothing).
    pub from: String,
    /// What is desired (the working tree or a revision).
    pub to: String,
    /// Changes, ordered by resource kind then id.
    pub changes: Vec<Change>,
}

/// Counts per change kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Creations.
    pub create: usize,
    /// Updates.
    pub update: usize,
    /// Deletions.
    pub delete: usize,
}

// === desired state ===

fn sensitive(hash: &str) -> Value {
    Value::String(format!("{SENSITIVE}{hash})"))
}

fn is_sensitive(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.starts_with(SENSITIVE))
}

fn integration_summary(i: &Integration) -> Value {
    let mut creds = Map::new();
    for (k, c) in &i.credentials {
        let v = match c {
            Credential::Plain(s) => Value::String(s.clone()),
            Credential::Secret(r) => sensitive(&r.fingerprint()),
        };
        creds.insert(k.clone(), v);
    }
    json!({
        "platform": i.platform.as_str(),
        "name": i.name,
        "credentials": creds,
        "config": i.config,
        "base_url": i.base_url,
        "limits": {
            "requests_per_minute": i.limits.requests_per_minute,
            "concurrency": i.limits.concurrency,
        },
    })
}

/// Whether the daemon can register the webhook through the platform's API, or an operator has
/// to do it by hand (Notion; Zendesk with a `[webhook] secret`; Slack without both an app
/// configuration token and an app id, which the manifest API needs — the daemon's registration
/// makes the same distinction).
pub fn registration_mode(i: &Integration) -> &'static str {
    match i.platform {
        PlatformKind::Notion => "manual",
        // A manifest-given secret means a Zendesk webhook made by hand (the contract).
        PlatformKind::Zendesk if i.webhook.as_ref().is_some_and(|w| w.secret.is_some()) => "manual",
        PlatformKind::Slack
            if !(i.credentials.contains_key("app_config_token")
                && i.credentials.contains_key("app_id")) =>
        {
            "manual"
        }
        _ => "api",
    }
}

fn registration_summary(i: &Integration) -> Option<Value> {
    let w = i.webhook.as_ref()?;
    Some(json!({
        "platform": i.platform.as_str(),
        "path": format!("/api/webhooks/{}/{}", i.platform.as_str(), i.id),
        "events": w.events,
        "mode": registration_mode(i),
        "secret": w.secret.as_ref().map(|r| sensitive(&r.fingerprint())),
    }))
}

fn rule_summary(r: &Rule) -> Value {
    let actions: Vec<Value> = r
        .actions
        .iter()
        .map(|a| {
            json!({
                "integration": a.integration.as_str(),
                "action": a.action.name,
                "parameters": a.parameters_source(),
            })
        })
        .collect();
    json!({
        "name": r.name,
        "enabled": r.enabled,
        "trigger": {
            "integration": r.trigger.integration.as_str(),
            "event": r.trigger.event.name,
            "conditions": r.trigger.conditions_source(),
            "allow_self": r.trigger.allow_self,
        },
        "actions": actions,
    })
}

/// Every resource a manifest set declares.
pub fn desired(set: &ManifestSet) -> BTreeMap<ResourceRef, Resource> {
    let mut out = BTreeMap::new();
    for i in set.integrations.values() {
        let id = i.id.to_string();
        out.insert(
            ResourceRef {
                kind: ResourceKind::Integration,
                id: id.clone(),
            },
            Resource {
                platform: Some(i.platform),
                summary: integration_summary(i),
            },
        );
        if let Some(summary) = registration_summary(i) {
            out.insert(
                ResourceRef {
                    kind: ResourceKind::Registration,
                    id,
                },
                Resource {
                    platform: Some(i.platform),
                    summary,
                },
            );
        }
    }
    for r in set.rules.values() {
        out.insert(
            ResourceRef {
                kind: ResourceKind::Rule,
                id: r.id.to_string(),
            },
            Resource {
                platform: Some(r.trigger.platform),
                summary: rule_summary(r),
            },
        );
    }
    out
}

/// The fingerprint of a summary: SHA-256 of its canonical JSON (keys sorted), hex.
pub fn fingerprint(summary: &Value) -> String {
    let canonical = serde_json::to_vec(summary).unwrap_or_default();
    let digest = Sha256::digest(&canonical);
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

// === impl ResourceRef ===

impl ResourceRef {
    /// The key used in state (`integration/freshdesk-main`).
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.id)
    }

    /// Parses a state key.
    pub fn from_key(key: &str) -> Option<ResourceRef> {
        let (kind, id) = key.split_once('/')?;
        let kind = match kind {
            "integration" => ResourceKind::Integration,
            "registration" => ResourceKind::Registration,
            "rule" => ResourceKind::Rule,
            _ => return None,
        };
        Some(ResourceRef {
            kind,
            id: id.to_owned(),
        })
    }
}

impl ResourceKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Integration => "integration",
            ResourceKind::Registration => "registration",
            ResourceKind::Rule => "rule",
        }
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.id)
    }
}

/// Turns state records back into resources.
pub fn from_state(applied: &[AppliedResource]) -> BTreeMap<ResourceRef, Resource> {
    applied
        .iter()
        .filter_map(|a| {
            let r = ResourceRef::from_key(&a.key)?;
            let platform = a
                .summary
                .get("platform")
                .and_then(Value::as_str)
                .and_then(PlatformKind::parse);
            Some((
                r,
                Resource {
                    platform,
                    summary: a.summary.clone(),
                },
            ))
        })
        .collect()
}

/// State records for the desired resources (what `apply` stores once a change succeeded). Takes
/// the resources by value: each summary moves into its record.
pub fn to_state(desired: BTreeMap<ResourceRef, Resource>) -> Vec<AppliedResource> {
    desired
        .into_iter()
        .map(|(r, res)| AppliedResource {
            key: r.key(),
            fingerprint: fingerprint(&res.summary),
            summary: res.summary,
        })
        .collect()
}

// === diff ===

fn flatten(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(x, &p, out);
            }
        }
        Value::Array(items) if !items.is_empty() && items.iter().any(|x| x.is_object()) => {
            for (i, x) in items.iter().enumerate() {
                flatten(x, &format!("{prefix}[{i}]"), out);
            }
        }
        Value::Null => {}
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

fn field_changes(before: Option<&Value>, after: Option<&Value>) -> Vec<FieldChange> {
    let mut b = BTreeMap::new();
    let mut a = BTreeMap::new();
    if let Some(v) = before {
        flatten(v, "", &mut b);
    }
    if let Some(v) = after {
        flatten(v, "", &mut a);
    }
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| {
            let (bv, av) = (b.get(k), a.get(k));
            let sensitive = bv.is_some_and(is_sensitive) || av.is_some_and(is_sensitive);
            let hide = |v: Option<&Value>| if sensitive { None } else { v.cloned() };
            FieldChange {
                path: k.clone(),
                before: hide(bv),
                after: hide(av),
                sensitive,
            }
        })
        .collect()
}

/// Compares desired with current resources.
pub fn diff(
    desired: &BTreeMap<ResourceRef, Resource>,
    current: &BTreeMap<ResourceRef, Resource>,
    from: String,
    to: String,
) -> Plan {
    let keys: BTreeSet<&ResourceRef> = desired.keys().chain(current.keys()).collect();
    let mut changes = Vec::new();
    for r in keys {
        let (d, c) = (desired.get(r), current.get(r));
        let action = match (d, c) {
            (Some(_), None) => ChangeKind::Create,
            (None, Some(_)) => ChangeKind::Delete,
            (Some(d), Some(c)) if fingerprint(&d.summary) != fingerprint(&c.summary) => {
                ChangeKind::Update
            }
            _ => continue,
        };
        let fields = field_changes(c.map(|x| &x.summary), d.map(|x| &x.summary));
        let platform = d.or(c).and_then(|x| x.platform);
        changes.push(Change {
            resource: r.clone(),
            platform,
            action,
            fields,
        });
    }
    Plan {
        format_version: FORMAT_VERSION,
        from,
        to,
        changes,
    }
}

impl Counts {
    fn add(&mut self, kind: ChangeKind) {
        match kind {
            ChangeKind::Create => self.create += 1,
            ChangeKind::Update => self.update += 1,
            ChangeKind::Delete => self.delete += 1,
        }
    }
}

// === impl Plan ===

impl Plan {
    /// Whether anything changes.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Counts over all changes.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for ch in &self.changes {
            c.add(ch.action);
        }
        c
    }

    /// Counts per platform.
    pub fn counts_by_platform(&self) -> BTreeMap<String, Counts> {
        let mut out: BTreeMap<String, Counts> = BTreeMap::new();
        for ch in &self.changes {
            let key = ch.platform.map_or("other", PlatformKind::as_str).to_owned();
            out.entry(key).or_default().add(ch.action);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn res(summary: Value) -> Resource {
        Resource {
            platform: Some(PlatformKind::Slack),
            summary,
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[a-z]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_resources() -> impl Strategy<Value = BTreeMap<ResourceRef, Resource>> {
        prop::collection::btree_map(
            ("[a-c]{1,2}", 0..3u8).prop_map(|(id, k)| ResourceRef {
                kind: [
                    ResourceKind::Integration,
                    ResourceKind::Registration,
                    ResourceKind::Rule,
                ][k as usize],
                id,
            }),
            arb_json().prop_map(res),
            0..6,
        )
    }

    proptest! {
        #[test]
        fn diff_of_a_thing_with_itself_is_empty(a in arb_resources()) {
            let plan = diff(&a, &a, "a".into(), "a".into());
            prop_assert!(plan.changes.is_empty());
        }

        #[test]
        fn diff_is_symmetric_in_counts(a in arb_resources(), b in arb_resources()) {
            let ab = diff(&a, &b, String::new(), String::new()).counts();
            let ba = diff(&b, &a, String::new(), String::new()).counts();
            prop_assert_eq!(ab.create, ba.delete);
            prop_assert_eq!(ab.update, ba.update);
        }
    }

    #[test]
    fn field_level_changes_hide_secrets() {
        let before = json!({"credentials": {"api_key": sensitive("aaa"), "domain": "a"}});
        let after = json!({"credentials": {"api_key": sensitive("bbb"), "domain": "b"}});
        let mut d = BTreeMap::new();
        let mut c = BTreeMap::new();
        let r = ResourceRef {
            kind: ResourceKind::Integration,
            id: "x".into(),
        };
        d.insert(r.clone(), res(after));
        c.insert(r, res(before));
        let plan = diff(&d, &c, String::new(), String::new());
        assert_eq!(plan.changes.len(), 1);
        let f = &plan.changes[0].fields;
        assert_eq!(f.len(), 2);
        assert!(f[0].sensitive && f[0].before.is_none() && f[0].after.is_none());
        assert_eq!(f[1].after, Some(json!("b")));
    }

    #[test]
    fn keys_round_trip() {
        let r = ResourceRef {
            kind: ResourceKind::Registration,
            id: "zendesk-main".into(),
        };
        assert_eq!(ResourceRef::from_key(&r.key()), Some(r));
        assert_eq!(ResourceRef::from_key("nope/x"), None);
    }
}
