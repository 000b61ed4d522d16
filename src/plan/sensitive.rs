//! The security-sensitive changes of a plan: what decides where credentials and event data go,
//! listed apart so that a reviewer cannot miss them among ordinary changes.
//!
//! A change is security-sensitive when it is one of these [`SensitiveKind`]s:
//!
//! - **endpoint**: an integration's `[endpoint] base_url` is set, changed or removed (a created
//!   integration with one counts; a deleted integration does not).
//! - **domain**: a credential field that decides the platform host changes, or is given by a
//!   created integration: Freshdesk `domain`, Zendesk `subdomain` ([`decides_host`]). The other
//!   platforms' hosts are fixed unless `base_url` overrides them; Google Sheets' token endpoint
//!   comes from inside its `service_account_key` (`token_uri`), so a new key shows as a
//!   credential reference change.
//! - **credential_reference**: a secret credential field's reference is added (a created
//!   integration's included), changed or removed. A deleted integration's references are not
//!   listed: nothing is sent anywhere because of a deletion.
//! - **webhook_secret**: a registration's `[webhook] secret` reference is added (a created
//!   registration's included), changed or removed (the daemon then generates one or reads the
//!   platform's).
//! - **shared_reference**: an integration starts using a reference (a credential or its webhook
//!   secret) that another integration uses too, e.g. a new integration reusing another's
//!   `env:FRESHDESK_API_KEY`. One entry per field that newly shares it.
//! - **new_destination**: an enabled, active rule sends event data to an integration it did not
//!   send to before: a pair (trigger integration → action integration, the two different) that
//!   the rule's current version does not have. A new rule, a rule newly enabled or switched from
//!   `mode = "shadow"` to active (a shadow rule sends nothing), an action added on
//!   another integration, or the trigger moved to another integration all count; actions on the
//!   trigger's own integration do not (the data stays in that account), nor do changes of an
//!   action's parameters.
//!
//! Entries show references (`env:NAME`, `file:name`, `sealed:<hash>`), never values; every
//! string from a manifest goes through [`printable`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::{
    Change, ChangeKind, FieldChange, Resource, ResourceKind, ResourceRef, UNRECORDED_REFERENCE,
    holds_reference, printable,
};
use crate::platforms::PlatformKind;

/// What kind of security-sensitive change (the module docs define each precisely).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SensitiveKind {
    /// `[endpoint] base_url` set, changed or removed.
    Endpoint,
    /// A credential that decides the platform host (Freshdesk `domain`, Zendesk `subdomain`).
    Domain,
    /// A secret credential's reference added, changed or removed.
    CredentialReference,
    /// A `[webhook] secret` reference added, changed or removed.
    WebhookSecret,
    /// A reference newly shared by two integrations.
    SharedReference,
    /// A rule sends event data to an integration it did not send to before.
    NewDestination,
}

/// One security-sensitive change: what, where, before → after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SensitiveChange {
    /// What kind.
    pub kind: SensitiveKind,
    /// Where: the integration, registration or rule.
    pub resource: ResourceRef,
    /// The field (`base_url`, `credentials.api_key`, `secret`, `actions[1].integration`).
    pub field: String,
    /// Before (absent when there was none): a plain value or a reference, printable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// After (absent when removed): a plain value or a reference, printable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// One line saying all of it, for people.
    pub detail: String,
}

/// Whether the credential `field` of `platform` decides which host the platform's client talks
/// to (besides `[endpoint] base_url`, which every platform has).
pub fn decides_host(platform: PlatformKind, field: &str) -> bool {
    matches!(
        (platform, field),
        (PlatformKind::Freshdesk, "domain") | (PlatformKind::Zendesk, "subdomain")
    )
}

impl SensitiveKind {
    /// The name in JSON and in renderings (`credential_reference`).
    pub fn as_str(self) -> &'static str {
        match self {
            SensitiveKind::Endpoint => "endpoint",
            SensitiveKind::Domain => "domain",
            SensitiveKind::CredentialReference => "credential_reference",
            SensitiveKind::WebhookSecret => "webhook_secret",
            SensitiveKind::SharedReference => "shared_reference",
            SensitiveKind::NewDestination => "new_destination",
        }
    }
}

impl fmt::Display for SensitiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value as an entry shows it: strings as they are, anything else as JSON; printable.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => printable(s),
        other => printable(&serde_json::to_string(other).unwrap_or_default()),
    }
}

/// The entry of one changed field, `none_before` / `none_after` saying what absence means.
fn field_entry(
    kind: SensitiveKind,
    ch: &Change,
    f: &FieldChange,
    none_before: &str,
    none_after: &str,
) -> SensitiveChange {
    let before = f.before.as_ref().map(shown);
    let after = f.after.as_ref().map(shown);
    let detail = format!(
        "{}: {} → {}",
        printable(&f.path),
        before.as_deref().unwrap_or(none_before),
        after.as_deref().unwrap_or(none_after)
    );
    SensitiveChange {
        kind,
        resource: ch.resource.clone(),
        field: f.path.clone(),
        before,
        after,
        detail,
    }
}

/// Endpoint, domain, credential reference and webhook secret entries of the field changes.
fn field_entries(changes: &[Change], out: &mut Vec<SensitiveChange>) {
    for ch in changes.iter().filter(|c| c.action != ChangeKind::Delete) {
        for f in &ch.fields {
            let entry = match ch.resource.kind {
                ResourceKind::Integration if f.path == "base_url" => Some((
                    SensitiveKind::Endpoint,
                    "(platform default)",
                    "(platform default)",
                )),
                ResourceKind::Integration if f.sensitive => {
                    Some((SensitiveKind::CredentialReference, "(none)", "(removed)"))
                }
                ResourceKind::Integration => f
                    .path
                    .strip_prefix("credentials.")
                    .filter(|field| ch.platform.is_some_and(|p| decides_host(p, field)))
                    .map(|_| (SensitiveKind::Domain, "(none)", "(removed)")),
                ResourceKind::Registration if f.sensitive => Some((
                    SensitiveKind::WebhookSecret,
                    "(generated by the daemon)",
                    "(generated by the daemon)",
                )),
                _ => None,
            };
            if let Some((kind, none_before, none_after)) = entry {
                out.push(field_entry(kind, ch, f, none_before, none_after));
            }
        }
    }
}

/// How many other users of a shared reference an entry names before "N more" (a reference
/// shared by hundreds of integrations gives one short entry each, not a quadratic list).
const SHARERS_NAMED: usize = 3;

/// Who uses which reference: description → (resource, field) pairs.
type Users<'a> = BTreeMap<&'a str, BTreeSet<(&'a ResourceRef, String)>>;

fn users<'a>(resources: impl Iterator<Item = (&'a ResourceRef, &'a Resource)>) -> Users<'a> {
    let mut out: Users<'a> = BTreeMap::new();
    for (r, res) in resources {
        let leaves: Vec<(String, &Value)> = match r.kind {
            ResourceKind::Integration => res
                .summary
                .get("credentials")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (format!("credentials.{k}"), v))
                        .collect()
                })
                .unwrap_or_default(),
            ResourceKind::Registration => res
                .summary
                .get("secret")
                .map(|v| vec![("secret".to_owned(), v)])
                .unwrap_or_default(),
            ResourceKind::Rule => Vec::new(),
        };
        for (path, v) in leaves {
            if let Some(described) = v.as_str()
                && holds_reference(r.kind, res.platform, &path)
                && !described.starts_with(super::LEGACY_SENSITIVE)
                && described != UNRECORDED_REFERENCE
            {
                out.entry(described).or_default().insert((r, path));
            }
        }
    }
    out
}

/// Shared-reference entries: each (resource, field) that newly uses a reference another
/// integration uses too.
fn shared_entries<'a>(
    desired: &'a BTreeMap<ResourceRef, Resource>,
    current: impl Iterator<Item = (&'a ResourceRef, &'a Resource)>,
    out: &mut Vec<SensitiveChange>,
) {
    let now = users(desired.iter());
    let before = users(current);
    for (described, users_now) in &now {
        let integrations: BTreeSet<&str> = users_now.iter().map(|(r, _)| r.id.as_str()).collect();
        if integrations.len() < 2 {
            continue;
        }
        let users_before = before.get(described);
        for (r, path) in users_now {
            if users_before.is_some_and(|b| b.contains(&(*r, path.clone()))) {
                continue;
            }
            let mut others = users_now.iter().filter(|(o, _)| o.id != r.id);
            let mut named: Vec<String> = others
                .by_ref()
                .take(SHARERS_NAMED)
                .map(|(o, p)| {
                    format!(
                        "{} {} ({})",
                        o.kind.as_str(),
                        printable(&o.id),
                        printable(p)
                    )
                })
                .collect();
            let more = others.count();
            if more > 0 {
                named.push(format!("{more} more"));
            }
            let described = printable(described);
            out.push(SensitiveChange {
                kind: SensitiveKind::SharedReference,
                resource: (*r).clone(),
                field: path.clone(),
                before: None,
                detail: format!(
                    "{} = {described}, the same reference as {}",
                    printable(path),
                    named.join(", ")
                ),
                after: Some(described),
            });
        }
    }
}

/// The (trigger integration → action integration) pairs of an enabled, active rule's summary,
/// the two different, each with the first action's index. A shadow rule sends nothing (its
/// actions are recorded, not run), so switching one to `active` is a new destination.
fn destinations(summary: &Value) -> BTreeMap<(&str, &str), usize> {
    let mut out = BTreeMap::new();
    if summary.get("enabled").and_then(Value::as_bool) == Some(false)
        || summary.get("mode").and_then(Value::as_str) == Some("shadow")
    {
        return out;
    }
    let Some(trigger) = summary
        .pointer("/trigger/integration")
        .and_then(Value::as_str)
    else {
        return out;
    };
    let actions = summary.get("actions").and_then(Value::as_array);
    for (i, a) in actions.into_iter().flatten().enumerate() {
        if let Some(dest) = a.get("integration").and_then(Value::as_str)
            && dest != trigger
        {
            out.entry((trigger, dest)).or_insert(i);
        }
    }
    out
}

/// New-destination entries: per rule, the pairs its current version does not have.
fn destination_entries<'a>(
    desired: &'a BTreeMap<ResourceRef, Resource>,
    current: &BTreeMap<&'a ResourceRef, &'a Resource>,
    out: &mut Vec<SensitiveChange>,
) {
    for (r, res) in desired.iter().filter(|(r, _)| r.kind == ResourceKind::Rule) {
        let before = current.get(r).map(|c| destinations(&c.summary));
        for ((from, to), i) in destinations(&res.summary) {
            if before.as_ref().is_some_and(|b| b.contains_key(&(from, to))) {
                continue;
            }
            let (from, to) = (printable(from), printable(to));
            let detail = if before.is_some() {
                format!("now sends event data from {from} to {to}, which it did not before")
            } else {
                format!("new rule: sends event data from {from} to {to}")
            };
            out.push(SensitiveChange {
                kind: SensitiveKind::NewDestination,
                resource: r.clone(),
                field: format!("actions[{i}].integration"),
                before: None,
                after: Some(to),
                detail,
            });
        }
    }
}

/// The security-sensitive changes of `changes` (computed by [`super::diff`] from `desired` and
/// `current`), ordered by kind, resource and field.
pub fn review<'a>(
    changes: &[Change],
    desired: &'a BTreeMap<ResourceRef, Resource>,
    current: impl Iterator<Item = (&'a ResourceRef, &'a Resource)>,
) -> Vec<SensitiveChange> {
    let current: BTreeMap<&ResourceRef, &Resource> = current.collect();
    let mut out = Vec::new();
    field_entries(changes, &mut out);
    shared_entries(desired, current.iter().map(|(r, c)| (*r, *c)), &mut out);
    destination_entries(desired, &current, &mut out);
    out.sort_by(|a, b| {
        (a.kind, &a.resource, &a.field, &a.after).cmp(&(b.kind, &b.resource, &b.field, &b.after))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::source::{Contents, FileKind, RawFile};
    use crate::manifest::{self, Snapshot};
    use crate::plan::{Plan, desired, diff};

    const FRESHDESK: &str = r#"id = "fd-main"
platform = "freshdesk"
[credentials]
domain = "acme.freshdesk.com"
api_key = { env = "FRESHDESK_API_KEY" }
[webhook]
events = ["ticket_created"]
"#;

    const ZENDESK: &str = r#"id = "zd-main"
platform = "zendesk"
[credentials]
subdomain = "acme"
email = "ops@acme.example"
api_token = { env = "ZENDESK_API_TOKEN" }
"#;

    const SLACK: &str = r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = { env = "SLACK_BOT_TOKEN" }
signing_secret = { env = "SLACK_SIGNING_SECRET" }
"#;

    const NOTION: &str = r#"id = "notion-docs"
platform = "notion"
[credentials]
token = { env = "NOTION_TOKEN" }
"#;

    const RULE: &str = r##"id = "urgent"
[trigger]
integration = "fd-main"
event = "ticket_created"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#urgent"
message = "{{ ticket.subject }}"
"##;

    const NOTE_ON_SAME: &str = r##"
[[actions]]
integration = "fd-main"
action = "add_note"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
body = "posted"
"##;

    const TO_NOTION: &str = r##"
[[actions]]
integration = "notion-docs"
action = "create_page"
[actions.parameters]
title = "{{ ticket.subject }}"
"##;

    fn file(path: &str, text: &str) -> RawFile {
        let kind = if path.starts_with("integrations/") {
            FileKind::Integration
        } else {
            FileKind::Rule
        };
        RawFile {
            path: path.to_owned(),
            kind,
            contents: Contents::Bytes(text.as_bytes().to_vec()),
        }
    }

    fn resources(files: &[(&str, &str)]) -> BTreeMap<ResourceRef, Resource> {
        let files = files.iter().map(|(p, t)| file(p, t)).collect();
        let loaded = manifest::load(&Snapshot::in_memory(files));
        let rendered = loaded.diagnostics.render("");
        let set = loaded.set.unwrap_or_else(|| panic!("invalid: {rendered}"));
        desired(&set)
    }

    /// The base every test changes: Freshdesk → Slack, Zendesk and Notion on the side.
    fn base() -> Vec<(&'static str, String)> {
        vec![
            ("integrations/fd.toml", FRESHDESK.to_owned()),
            ("integrations/zd.toml", ZENDESK.to_owned()),
            ("integrations/slack.toml", SLACK.to_owned()),
            ("integrations/notion.toml", NOTION.to_owned()),
            ("rules/urgent.toml", RULE.to_owned()),
        ]
    }

    fn plan_of(before: &[(&str, String)], after: &[(&str, String)]) -> Plan {
        let load = |v: &[(&str, String)]| {
            let files: Vec<(&str, &str)> = v.iter().map(|(p, t)| (*p, t.as_str())).collect();
            resources(&files)
        };
        diff(&load(after), &load(before), "base".into(), "head".into())
    }

    /// The base with `path` replaced by `text` (or added).
    fn with(path: &'static str, text: &str) -> Vec<(&'static str, String)> {
        let mut files = base();
        files.retain(|(p, _)| *p != path);
        files.push((path, text.to_owned()));
        files
    }

    fn entries(plan: &Plan) -> Vec<(SensitiveKind, String, String)> {
        plan.security_sensitive
            .iter()
            .map(|s| (s.kind, s.resource.key(), s.detail.clone()))
            .collect()
    }

    #[test]
    fn an_endpoint_set_changed_or_removed_is_sensitive() {
        let evil = FRESHDESK.to_owned() + "[endpoint]\nbase_url = \"https://attacker.example\"\n";
        let plan = plan_of(&base(), &with("integrations/fd.toml", &evil));
        assert_eq!(
            entries(&plan),
            vec![(
                SensitiveKind::Endpoint,
                "integration/fd-main".to_owned(),
                "base_url: (platform default) → https://attacker.example".to_owned()
            )]
        );
        let s = &plan.security_sensitive[0];
        assert_eq!(s.field, "base_url");
        assert_eq!(s.before, None);
        assert_eq!(s.after.as_deref(), Some("https://attacker.example"));

        let back = plan_of(&with("integrations/fd.toml", &evil), &base());
        assert_eq!(
            back.security_sensitive[0].detail,
            "base_url: https://attacker.example → (platform default)"
        );
    }

    #[test]
    fn a_new_integration_lists_its_endpoint_domain_and_references() {
        let before: Vec<_> = base()
            .into_iter()
            .filter(|(p, _)| !p.ends_with("fd.toml") && !p.starts_with("rules/"))
            .collect();
        let evil = FRESHDESK.to_owned() + "[endpoint]\nbase_url = \"https://attacker.example\"\n";
        let mut after = before.clone();
        after.push(("integrations/fd.toml", evil));
        let plan = plan_of(&before, &after);
        assert_eq!(
            entries(&plan),
            vec![
                (
                    SensitiveKind::Endpoint,
                    "integration/fd-main".to_owned(),
                    "base_url: (platform default) → https://attacker.example".to_owned()
                ),
                (
                    SensitiveKind::Domain,
                    "integration/fd-main".to_owned(),
                    "credentials.domain: (none) → acme.freshdesk.com".to_owned()
                ),
                (
                    SensitiveKind::CredentialReference,
                    "integration/fd-main".to_owned(),
                    "credentials.api_key: (none) → env:FRESHDESK_API_KEY".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn freshdesk_domain_and_zendesk_subdomain_decide_the_host_other_plain_fields_do_not() {
        let fd = FRESHDESK.replace("acme.freshdesk.com", "support.attacker.example");
        let zd = ZENDESK
            .replace("subdomain = \"acme\"", "subdomain = \"attacker\"")
            .replace("ops@acme.example", "someone@acme.example");
        let mut after = with("integrations/fd.toml", &fd);
        after.retain(|(p, _)| !p.ends_with("zd.toml"));
        after.push(("integrations/zd.toml", zd));
        let plan = plan_of(&base(), &after);
        assert_eq!(
            entries(&plan),
            vec![
                (
                    SensitiveKind::Domain,
                    "integration/fd-main".to_owned(),
                    "credentials.domain: acme.freshdesk.com → support.attacker.example".to_owned()
                ),
                (
                    SensitiveKind::Domain,
                    "integration/zd-main".to_owned(),
                    "credentials.subdomain: acme → attacker".to_owned()
                ),
            ]
        );
        // The email changed too, but it decides no host: an ordinary change.
        assert!(
            plan.changes
                .iter()
                .any(|c| c.fields.iter().any(|f| f.path == "credentials.email"))
        );
    }

    #[test]
    fn every_plain_credential_field_of_every_platform_is_classified() {
        // A new platform or credential field must be looked at: does it decide the host?
        let mut plain = Vec::new();
        for p in PlatformKind::ALL {
            for c in p.descriptor().credentials.iter().filter(|c| !c.secret) {
                plain.push((p.as_str(), c.name, decides_host(p, c.name)));
            }
        }
        assert_eq!(
            plain,
            vec![
                ("freshdesk", "domain", true),
                ("zendesk", "subdomain", true),
                ("zendesk", "email", false),
                ("slack", "app_id", false),
                ("trello", "api_key", false),
                ("google_sheets", "spreadsheet_id", false),
            ]
        );
    }

    #[test]
    fn a_changed_credential_reference_shows_both_references() {
        let fd = FRESHDESK.replace(
            "{ env = \"FRESHDESK_API_KEY\" }",
            "{ file = \"shared-api.key\" }",
        );
        let slack = SLACK.replace("SLACK_BOT_TOKEN", "OPS_ADMIN_TOKEN");
        let mut after = with("integrations/fd.toml", &fd);
        after.retain(|(p, _)| !p.ends_with("slack.toml"));
        after.push(("integrations/slack.toml", slack));
        let plan = plan_of(&base(), &after);
        assert_eq!(
            entries(&plan),
            vec![
                (
                    SensitiveKind::CredentialReference,
                    "integration/fd-main".to_owned(),
                    "credentials.api_key: env:FRESHDESK_API_KEY → file:shared-api.key".to_owned()
                ),
                (
                    SensitiveKind::CredentialReference,
                    "integration/slack-main".to_owned(),
                    "credentials.bot_token: env:SLACK_BOT_TOKEN → env:OPS_ADMIN_TOKEN".to_owned()
                ),
            ]
        );
        // The field change carries the references too, and says the field holds a secret.
        let f = &plan.changes[0].fields[0];
        assert!(f.sensitive);
        assert_eq!(
            f.before,
            Some(Value::String("env:FRESHDESK_API_KEY".into()))
        );
        assert_eq!(f.after, Some(Value::String("file:shared-api.key".into())));
    }

    #[test]
    fn a_sealed_value_shows_as_a_short_hash_never_as_ciphertext() {
        let key = crate::secrets::SealKey::generate().expect("key");
        let id = crate::manifest::IntegrationId::parse("fd-main").expect("id");
        let sealed = crate::secrets::seal(&key, &id, "api_key", b"fd-real-api-key").expect("seal");
        let fd = FRESHDESK.replace(
            "{ env = \"FRESHDESK_API_KEY\" }",
            &format!("{{ sealed = \"{sealed}\" }}"),
        );
        let plan = plan_of(&base(), &with("integrations/fd.toml", &fd));
        let s = &plan.security_sensitive[0];
        assert_eq!(s.kind, SensitiveKind::CredentialReference);
        let after = s.after.as_deref().expect("after");
        assert!(
            after.starts_with("sealed:") && after.len() == "sealed:".len() + 12,
            "{after}"
        );
        let json = serde_json::to_string(&plan).expect("json");
        let body = sealed.trim_start_matches("sos1:");
        assert!(
            !json.contains(&body[..20]),
            "ciphertext in the plan: {json}"
        );
        assert!(!json.contains("fd-real-api-key"));
    }

    #[test]
    fn a_removed_reference_is_sensitive_a_deleted_integration_is_not() {
        let slack = SLACK.to_owned() + "user_token = { env = \"SLACK_USER_TOKEN\" }\n";
        let plan = plan_of(&with("integrations/slack.toml", &slack), &base());
        assert_eq!(
            entries(&plan),
            vec![(
                SensitiveKind::CredentialReference,
                "integration/slack-main".to_owned(),
                "credentials.user_token: env:SLACK_USER_TOKEN → (removed)".to_owned()
            )]
        );
        let mut after = base();
        after.retain(|(p, _)| !p.ends_with("zd.toml"));
        let plan = plan_of(&base(), &after);
        assert_eq!(plan.counts().delete, 1);
        assert!(
            plan.security_sensitive.is_empty(),
            "{:?}",
            plan.security_sensitive
        );
    }

    #[test]
    fn a_webhook_secret_reference_added_or_changed_is_sensitive() {
        let fd = FRESHDESK.to_owned() + "secret = { env = \"FD_WEBHOOK_SECRET\" }\n";
        let plan = plan_of(&base(), &with("integrations/fd.toml", &fd));
        assert_eq!(
            entries(&plan),
            vec![(
                SensitiveKind::WebhookSecret,
                "registration/fd-main".to_owned(),
                "secret: (generated by the daemon) → env:FD_WEBHOOK_SECRET".to_owned()
            )]
        );
        let fd2 = fd.replace("FD_WEBHOOK_SECRET", "FD_OTHER");
        let plan = plan_of(
            &with("integrations/fd.toml", &fd),
            &with("integrations/fd.toml", &fd2),
        );
        assert_eq!(
            plan.security_sensitive[0].detail,
            "secret: env:FD_WEBHOOK_SECRET → env:FD_OTHER"
        );
    }

    #[test]
    fn a_new_integration_reusing_a_reference_is_shown_with_the_other_user() {
        let copy = NOTION
            .replace("notion-docs", "notion-copy")
            .replace("NOTION_TOKEN", "FRESHDESK_API_KEY");
        let mut after = base();
        after.push(("integrations/copy.toml", copy));
        let plan = plan_of(&base(), &after);
        let shared: Vec<_> = entries(&plan)
            .into_iter()
            .filter(|e| e.0 == SensitiveKind::SharedReference)
            .collect();
        assert_eq!(
            shared,
            vec![(
                SensitiveKind::SharedReference,
                "integration/notion-copy".to_owned(),
                "credentials.token = env:FRESHDESK_API_KEY, the same reference as integration fd-main (credentials.api_key)"
                    .to_owned()
            )]
        );
        // And its reference itself, as a new integration's.
        assert!(
            entries(&plan)
                .iter()
                .any(|e| e.0 == SensitiveKind::CredentialReference
                    && e.2 == "credentials.token: (none) → env:FRESHDESK_API_KEY")
        );
    }

    #[test]
    fn a_reference_changed_to_another_integrations_is_shared_an_old_sharing_is_not_new() {
        let slack = SLACK.replace("SLACK_BOT_TOKEN", "NOTION_TOKEN");
        let shared = with("integrations/slack.toml", &slack);
        let plan = plan_of(&base(), &shared);
        assert!(
            entries(&plan).contains(&(
                SensitiveKind::SharedReference,
                "integration/slack-main".to_owned(),
                "credentials.bot_token = env:NOTION_TOKEN, the same reference as integration notion-docs (credentials.token)".to_owned()
            )),
            "{:?}",
            entries(&plan)
        );
        assert_eq!(plan.security_sensitive.len(), 2, "{:?}", entries(&plan));
        // Sharing that was there before is not news; two fields of one integration are no
        // sharing at all.
        let renamed = with(
            "integrations/slack.toml",
            &slack.replace("platform = \"slack\"", "platform = \"slack\"\nname = \"x\""),
        );
        let plan = plan_of(&shared, &renamed);
        assert!(plan.has_changes());
        assert!(plan.security_sensitive.is_empty(), "{:?}", entries(&plan));
        let twice = SLACK.replace("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN");
        let plan = plan_of(&base(), &with("integrations/slack.toml", &twice));
        assert_eq!(
            entries(&plan)
                .iter()
                .filter(|e| e.0 == SensitiveKind::SharedReference)
                .count(),
            0
        );
    }

    #[test]
    fn a_reference_shared_by_many_names_a_few_of_the_others() {
        let mut before = base();
        before.retain(|(p, _)| !p.starts_with("rules/"));
        let mut after = before.clone();
        for (i, path) in [
            "integrations/n0.toml",
            "integrations/n1.toml",
            "integrations/n2.toml",
            "integrations/n3.toml",
            "integrations/n4.toml",
            "integrations/n5.toml",
        ]
        .into_iter()
        .enumerate()
        {
            after.push((path, NOTION.replace("notion-docs", &format!("n{i}"))));
        }
        let plan = plan_of(&before, &after);
        let shared: Vec<String> = plan
            .security_sensitive
            .iter()
            .filter(|s| s.kind == SensitiveKind::SharedReference)
            .map(|s| format!("{}: {}", s.resource.id, s.detail))
            .collect();
        assert_eq!(shared.len(), 6, "{shared:?}");
        assert_eq!(
            shared[0],
            "n0: credentials.token = env:NOTION_TOKEN, the same reference as integration n1 (credentials.token), integration n2 (credentials.token), integration n3 (credentials.token), 3 more"
        );
    }

    #[test]
    fn a_rule_sending_to_an_integration_it_did_not_send_to_before_is_sensitive() {
        // An action added on another integration.
        let plan = plan_of(
            &base(),
            &with("rules/urgent.toml", &(RULE.to_owned() + TO_NOTION)),
        );
        assert_eq!(
            entries(&plan),
            vec![(
                SensitiveKind::NewDestination,
                "rule/urgent".to_owned(),
                "now sends event data from fd-main to notion-docs, which it did not before"
                    .to_owned()
            )]
        );
        assert_eq!(plan.security_sensitive[0].field, "actions[1].integration");

        // A new rule.
        let exfil = RULE.replace("id = \"urgent\"", "id = \"exfil\"");
        let mut after = base();
        after.push(("rules/exfil.toml", exfil));
        let plan = plan_of(&base(), &after);
        assert_eq!(
            entries(&plan),
            vec![(
                SensitiveKind::NewDestination,
                "rule/exfil".to_owned(),
                "new rule: sends event data from fd-main to slack-main".to_owned()
            )]
        );

        // The trigger moved to another integration: its data now reaches Slack.
        let zd = RULE
            .replace("integration = \"fd-main\"", "integration = \"zd-main\"")
            .replace("ticket_created", "ticket.created");
        let plan = plan_of(&base(), &with("rules/urgent.toml", &zd));
        assert_eq!(
            entries(&plan)[0].2,
            "now sends event data from zd-main to slack-main, which it did not before"
        );
    }

    #[test]
    fn same_account_actions_parameters_and_disabled_rules_are_not_new_destinations() {
        // An action on the trigger's own integration, and a changed message.
        let rule = RULE.replace("{{ ticket.subject }}", "{{ ticket.id }}") + NOTE_ON_SAME;
        let plan = plan_of(&base(), &with("rules/urgent.toml", &rule));
        assert!(plan.has_changes());
        assert!(plan.security_sensitive.is_empty(), "{:?}", entries(&plan));

        // A disabled rule sends nothing; enabling it does.
        let disabled =
            RULE.replace("id = \"urgent\"", "id = \"urgent\"\nenabled = false") + TO_NOTION;
        let plan = plan_of(&base(), &with("rules/urgent.toml", &disabled));
        assert!(plan.security_sensitive.is_empty(), "{:?}", entries(&plan));
        let enabled = RULE.to_owned() + TO_NOTION;
        let plan = plan_of(
            &with("rules/urgent.toml", &disabled),
            &with("rules/urgent.toml", &enabled),
        );
        assert_eq!(
            entries(&plan)
                .iter()
                .map(|e| e.2.as_str())
                .collect::<Vec<_>>(),
            vec![
                "now sends event data from fd-main to slack-main, which it did not before",
                "now sends event data from fd-main to notion-docs, which it did not before",
            ]
        );
    }

    #[test]
    fn entries_from_a_manifest_cannot_break_a_line_or_hide() {
        // A reference name is the one free text of an entry that validation lets through.
        let fd = FRESHDESK.replace(
            "{ env = \"FRESHDESK_API_KEY\" }",
            "{ env = \"FRESHDESK\\u202e_KEY\\nX\" }",
        );
        let plan = plan_of(&base(), &with("integrations/fd.toml", &fd));
        let detail = &plan.security_sensitive[0].detail;
        assert!(
            !detail.contains('\n') && !detail.contains('\u{202e}'),
            "{detail}"
        );
        assert!(
            detail.contains("\\u{202e}") && detail.contains("\\n"),
            "{detail}"
        );
    }
}
