//! `plan`: a pure function from (desired, current) to an ordered list of changes and the
//! security-sensitive ones among them ([`sensitive`]). Never performs I/O. Resources are
//! integrations, their webhook registrations and rules; each is summarised as canonical JSON
//! whose hash is its fingerprint.
//!
//! Secret fields enter summaries as their *reference* ([`SecretRef::describe`]: `env:NAME`,
//! `file:name`, `sealed:<12 hex of the ciphertext's SHA-256>`), never a value and never a
//! ciphertext: a reference is not secret, and a reviewer must see where a credential comes
//! from. Which summary leaves are references is decided by the platform's catalogue (a
//! credential field marked secret) and by the resource kind (a registration's `secret`).

pub mod behaviour;
pub mod render;
pub mod sensitive;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::manifest::{Credential, Integration, ManifestSet, Mode, Rule};
use crate::platforms::PlatformKind;
use crate::secrets::SecretRef;
use crate::state::AppliedResource;

pub use sensitive::{SensitiveChange, SensitiveKind};

/// Version of the JSON plan format: a minor bump adds fields, a major bump breaks them.
///
/// 1.1 added `security_sensitive`, and secret fields' `before`/`after` (their references);
/// 1.2 added `holds` (the runtime holds: paused rules and integrations), `holds_from`, and
/// `behaviour` (the behavioural plan, with `--replay`).
pub const FORMAT_VERSION: &str = "1.2";

/// Prefix of a secret leaf in a summary recorded by a build before format 1.1: a hash of the
/// reference (`(sensitive:<16 hex>)`), which [`diff`] recognises (see [`upgrade_legacy`]).
const LEGACY_SENSITIVE: &str = "(sensitive:";

/// How a secret leaf recorded by an earlier build, whose reference is unknown, is shown.
pub const UNRECORDED_REFERENCE: &str = "(reference not recorded)";

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
    /// Canonical summary (nested JSON; secret fields are their references, never values).
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
    /// Value before (absent on create). For a secret field, its reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Value after (absent on delete). For a secret field, its reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// The field holds a secret: `before` and `after` are references (`env:NAME`, `file:name`,
    /// `sealed:<hash>`, or [`UNRECORDED_REFERENCE`]), never values.
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
    /// The changes a reviewer must look at before approving (see [`sensitive`]), ordered by
    /// kind, resource and field.
    pub security_sensitive: Vec<SensitiveChange>,
    /// Changes, ordered by resource kind then id.
    pub changes: Vec<Change>,
    /// The runtime holds in force where the plan looked (`supportopsd pause`: paused rules and
    /// integrations, kept in the daemon's state, not changed by any plan), rules first, each
    /// kind by id. Empty when none, or when they were not read (`holds_from` is `None`).
    pub holds: Vec<RuntimeHold>,
    /// Where the holds were read (`state`, `daemon at URL`); `None`: not read (`--base`
    /// without a daemon to ask).
    pub holds_from: Option<String>,
    /// The behavioural plan: the corpus replayed against both revisions (`--replay` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<behaviour::Behaviour>,
}

/// A runtime hold as a plan shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeHold {
    /// `rule` or `integration`.
    pub kind: String,
    /// The rule's or integration's id.
    pub id: String,
    /// Why (the operator's words).
    pub reason: String,
    /// Who paused it.
    pub by: String,
    /// Since when, milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// Since when, RFC 3339 UTC.
    pub since_at: String,
}

impl RuntimeHold {
    /// A hold as the state keeps it.
    pub fn of(h: &crate::state::Hold) -> RuntimeHold {
        RuntimeHold {
            kind: h.kind.as_str().to_owned(),
            id: h.id.clone(),
            reason: h.reason.clone(),
            by: h.by.clone(),
            since_ms: h.at_ms,
            since_at: crate::platforms::supportopsd::events::rfc3339_ms(h.at_ms),
        }
    }
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

fn integration_summary(i: &Integration) -> Value {
    let mut creds = Map::new();
    for (k, c) in &i.credentials {
        let v = match c {
            Credential::Plain(s) => Value::String(s.clone()),
            Credential::Secret(r) => Value::String(r.describe()),
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
        "secret": w.secret.as_ref().map(SecretRef::describe),
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
    let mut summary = json!({
        "name": r.name,
        "enabled": r.enabled,
        "mode": r.mode.as_str(),
        "trigger": {
            "integration": r.trigger.integration.as_str(),
            "event": r.trigger.event.name,
            "conditions": r.trigger.conditions_source(),
            "allow_self": r.trigger.allow_self,
        },
        "actions": actions,
    });
    if let Some(n) = r.limits.max_actions_per_minute {
        summary["limits"] = json!({"max_actions_per_minute": n});
    }
    summary
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

/// Whether the leaf at `path` of a `kind` resource on `platform` holds a secret reference: a
/// credential field the platform's catalogue marks secret, or a registration's `secret`.
pub fn holds_reference(kind: ResourceKind, platform: Option<PlatformKind>, path: &str) -> bool {
    match kind {
        ResourceKind::Integration => path.strip_prefix("credentials.").is_some_and(|field| {
            platform
                .and_then(|p| p.descriptor().credential(field))
                .is_some_and(|c| c.secret)
        }),
        ResourceKind::Registration => path == "secret",
        ResourceKind::Rule => false,
    }
}

/// A reference leaf as shown: its description, or [`UNRECORDED_REFERENCE`] for a leaf an earlier
/// build recorded as a hash.
fn reference_shown(v: &Value) -> Value {
    match v.as_str() {
        Some(s) if s.starts_with(LEGACY_SENSITIVE) => {
            Value::String(UNRECORDED_REFERENCE.to_owned())
        }
        _ => v.clone(),
    }
}

fn field_changes(
    kind: ResourceKind,
    platform: Option<PlatformKind>,
    before: Option<&Value>,
    after: Option<&Value>,
) -> Vec<FieldChange> {
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
            let sensitive = holds_reference(kind, platform, k);
            let shown = |v: Option<&Value>| {
                if sensitive {
                    v.map(reference_shown)
                } else {
                    v.cloned()
                }
            };
            FieldChange {
                path: k.clone(),
                before: shown(bv),
                after: shown(av),
                sensitive,
            }
        })
        .collect()
}

/// The fingerprint an earlier build recorded for the reference `described` (an `env:` or
/// `file:` description; a sealed value's description does not hold its ciphertext).
fn legacy_fingerprint(described: &str) -> Option<String> {
    let r = if let Some(var) = described.strip_prefix("env:") {
        SecretRef::Env(var.to_owned())
    } else if let Some(file) = described.strip_prefix("file:") {
        SecretRef::File(file.to_owned())
    } else {
        return None;
    };
    Some(format!("{LEGACY_SENSITIVE}{})", r.fingerprint()))
}

/// A state recorded by a build before format 1.1 holds secret leaves as a hash of their
/// reference. Where the desired reference hashes to the recorded one, the recorded leaf is
/// replaced by the desired description, so that an upgrade alone shows no change; `None` when
/// nothing was replaced. (A sealed reference cannot be matched this way and shows as
/// [`UNRECORDED_REFERENCE`] until the daemon records the revision again.)
fn upgrade_legacy(kind: ResourceKind, desired: &Resource, current: &Resource) -> Option<Resource> {
    let mut summary = current.summary.clone();
    let mut replaced = false;
    let mut upgrade = |cur: Option<&mut Value>, want: Option<&Value>| {
        if let (Some(cur), Some(Value::String(want))) = (cur, want)
            && cur
                .as_str()
                .is_some_and(|c| c.starts_with(LEGACY_SENSITIVE))
            && legacy_fingerprint(want).as_deref() == cur.as_str()
        {
            *cur = Value::String(want.clone());
            replaced = true;
        }
    };
    match kind {
        ResourceKind::Integration => {
            if let Some(Value::Object(creds)) = summary.get_mut("credentials") {
                for (field, cur) in creds.iter_mut() {
                    upgrade(
                        Some(cur),
                        desired.summary.pointer(&format!("/credentials/{field}")),
                    );
                }
            }
        }
        ResourceKind::Registration => {
            upgrade(summary.get_mut("secret"), desired.summary.get("secret"));
        }
        ResourceKind::Rule => {
            // Rules recorded before `mode` existed were all active.
            if let Value::Object(m) = &mut summary
                && !m.contains_key("mode")
                && desired.summary.get("mode").is_some()
            {
                m.insert("mode".into(), json!(Mode::Active.as_str()));
                replaced = true;
            }
        }
    }
    replaced.then_some(Resource {
        platform: current.platform,
        summary,
    })
}

/// Compares desired with current resources.
pub fn diff(
    desired: &BTreeMap<ResourceRef, Resource>,
    current: &BTreeMap<ResourceRef, Resource>,
    from: String,
    to: String,
) -> Plan {
    let upgraded: BTreeMap<&ResourceRef, Resource> = current
        .iter()
        .filter_map(|(r, c)| Some((r, upgrade_legacy(r.kind, desired.get(r)?, c)?)))
        .collect();
    let current_of = |r: &ResourceRef| upgraded.get(r).or_else(|| current.get(r));
    let keys: BTreeSet<&ResourceRef> = desired.keys().chain(current.keys()).collect();
    let mut changes = Vec::new();
    for r in keys {
        let (d, c) = (desired.get(r), current_of(r));
        let action = match (d, c) {
            (Some(_), None) => ChangeKind::Create,
            (None, Some(_)) => ChangeKind::Delete,
            (Some(d), Some(c)) if fingerprint(&d.summary) != fingerprint(&c.summary) => {
                ChangeKind::Update
            }
            _ => continue,
        };
        let platform = d.or(c).and_then(|x| x.platform);
        let fields = field_changes(
            r.kind,
            platform,
            c.map(|x| &x.summary),
            d.map(|x| &x.summary),
        );
        changes.push(Change {
            resource: r.clone(),
            platform,
            action,
            fields,
        });
    }
    let security_sensitive = sensitive::review(
        &changes,
        desired,
        current.keys().filter_map(|r| Some((r, current_of(r)?))),
    );
    Plan {
        format_version: FORMAT_VERSION,
        from,
        to,
        security_sensitive,
        changes,
        holds: Vec::new(),
        holds_from: None,
        behaviour: None,
    }
}

/// Writes `s` with control characters and the invisible or direction-changing ones (zero-width
/// spaces and joiners, bidirectional overrides and isolates, byte-order mark) escaped as
/// `\u{…}`, so that a value from a manifest cannot hide itself, break a line or a markdown
/// block, or send escape sequences to a terminal.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let hidden = c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}');
        if hidden {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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

    fn integration(platform: PlatformKind, summary: Value) -> Resource {
        Resource {
            platform: Some(platform),
            summary,
        }
    }

    fn one(kind: ResourceKind, d: Resource, c: Resource) -> Plan {
        let r = ResourceRef {
            kind,
            id: "x".into(),
        };
        let desired = BTreeMap::from([(r.clone(), d)]);
        let current = BTreeMap::from([(r, c)]);
        diff(&desired, &current, String::new(), String::new())
    }

    #[test]
    fn secret_fields_show_references_plain_fields_values() {
        let before = json!({"credentials": {"api_key": "env:A", "domain": "a"}});
        let after = json!({"credentials": {"api_key": "file:b", "domain": "b"}});
        let plan = one(
            ResourceKind::Integration,
            integration(PlatformKind::Freshdesk, after),
            integration(PlatformKind::Freshdesk, before),
        );
        assert_eq!(plan.changes.len(), 1);
        let f = &plan.changes[0].fields;
        assert_eq!(f.len(), 2);
        assert!(f[0].sensitive);
        assert_eq!(f[0].before, Some(json!("env:A")));
        assert_eq!(f[0].after, Some(json!("file:b")));
        assert!(!f[1].sensitive);
        assert_eq!(f[1].after, Some(json!("b")));
    }

    #[test]
    fn summaries_hold_references_never_values_or_ciphertext() {
        let key = crate::secrets::SealKey::generate().unwrap();
        let id = crate::manifest::IntegrationId::parse("slack-main").unwrap();
        let sealed = crate::secrets::seal(&key, &id, "signing_secret", b"s3cret-value").unwrap();
        let slack = format!(
            "id = \"slack-main\"\nplatform = \"slack\"\n[credentials]\nbot_token = {{ env = \"SLACK_BOT\" }}\nsigning_secret = {{ sealed = \"{sealed}\" }}\n"
        );
        let files = vec![crate::manifest::RawFile {
            path: "integrations/slack.toml".into(),
            kind: crate::manifest::FileKind::Integration,
            contents: crate::manifest::source::Contents::Bytes(slack.into_bytes()),
        }];
        let set = crate::manifest::load(&crate::manifest::Snapshot::in_memory(files))
            .set
            .unwrap();
        let summary = &desired(&set)[&ResourceRef {
            kind: ResourceKind::Integration,
            id: "slack-main".into(),
        }]
            .summary;
        assert_eq!(summary["credentials"]["bot_token"], "env:SLACK_BOT");
        let shown = summary["credentials"]["signing_secret"].as_str().unwrap();
        assert_eq!(
            shown,
            SecretRef::Sealed(sealed.clone()).describe(),
            "a sealed value is its short hash"
        );
        let text = summary.to_string();
        assert!(
            !text.contains(&sealed[5..25]) && !text.contains("s3cret-value"),
            "{text}"
        );
    }

    #[test]
    fn a_state_recorded_before_format_1_1_upgrades_without_a_change() {
        let legacy = |r: &SecretRef| json!(format!("{LEGACY_SENSITIVE}{})", r.fingerprint()));
        let env = SecretRef::Env("SLACK_BOT".into());
        let before = json!({"credentials": {"bot_token": legacy(&env), "signing_secret": legacy(&SecretRef::Sealed("sos1:abc".into()))}});
        let after = json!({"credentials": {"bot_token": "env:SLACK_BOT", "signing_secret": "sealed:0123456789ab"}});
        let plan = one(
            ResourceKind::Integration,
            integration(PlatformKind::Slack, after.clone()),
            integration(PlatformKind::Slack, before),
        );
        // The env reference hashes to what was recorded: no change. The sealed one cannot be
        // matched: it shows as a change from an unrecorded reference.
        let f = &plan.changes[0].fields;
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].path, "credentials.signing_secret");
        assert_eq!(f[0].before, Some(json!(UNRECORDED_REFERENCE)));
        // Another reference than the recorded one is a change, shown as such.
        let other = json!({"credentials": {"bot_token": legacy(&SecretRef::Env("OTHER".into())), "signing_secret": "sealed:0123456789ab"}});
        let plan = one(
            ResourceKind::Integration,
            integration(PlatformKind::Slack, after.clone()),
            integration(PlatformKind::Slack, other),
        );
        assert_eq!(
            plan.changes[0].fields[0].before,
            Some(json!(UNRECORDED_REFERENCE))
        );
        assert_eq!(plan.security_sensitive.len(), 1);
        // Everything matching: no change at all.
        let same = json!({"credentials": {"bot_token": legacy(&env), "signing_secret": "sealed:0123456789ab"}});
        let plan = one(
            ResourceKind::Integration,
            integration(PlatformKind::Slack, after),
            integration(PlatformKind::Slack, same),
        );
        assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    }

    /// Issue 22: rules recorded before `mode` existed were all active; an upgrade alone shows
    /// no change, and a rule now in shadow shows its mode change.
    #[test]
    fn a_rule_recorded_without_a_mode_was_active() {
        let recorded = json!({"name": null, "enabled": true, "actions": []});
        let mut active = recorded.clone();
        active["mode"] = json!("active");
        let plan = one(ResourceKind::Rule, res(active), res(recorded.clone()));
        assert!(plan.changes.is_empty(), "{:?}", plan.changes);
        let mut shadow = recorded.clone();
        shadow["mode"] = json!("shadow");
        let plan = one(ResourceKind::Rule, res(shadow), res(recorded));
        let f = &plan.changes[0].fields;
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(
            (f[0].path.as_str(), &f[0].before, &f[0].after),
            ("mode", &Some(json!("active")), &Some(json!("shadow")))
        );
    }

    #[test]
    fn printable_escapes_what_could_hide_or_break_a_line() {
        assert_eq!(
            printable("a\nb\u{1b}[31m\u{202e}c\u{200b}"),
            "a\\nb\\u{1b}[31m\\u{202e}c\\u{200b}"
        );
        assert_eq!(
            printable("env:FRESHDESK_API_KEY → ü"),
            "env:FRESHDESK_API_KEY → ü"
        );
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
