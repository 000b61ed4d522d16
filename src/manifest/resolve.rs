//! Files → [`ManifestSet`]: decode, parse, schema-check, then cross-check every reference.
//! All problems of all files are collected; a set is returned only when there are no errors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::diagnostic::{Code, Diagnostic, Diagnostics, did_you_mean};
use super::model::{
    Compact, Credential, Expectation, Integration, Limits, ManifestSet, Mode, Params, Rule,
    RuleAction, RuleLimits, TestCase, Trigger, Webhook,
};
use super::schema::{self, SchemaKind};
use super::source::{Contents, FileKind, RawFile, Snapshot};
use super::spanned::{self, Spans, escape_token};
use super::{IntegrationId, RuleId};
use crate::platforms::context::EventShape;
use crate::platforms::{ActionSpec, EventSpec, ParamType, PlatformKind};
use crate::policy::Endpoint;
use crate::rules::condition;
use crate::secrets::SecretRef;

/// The outcome of loading: the set when valid, and every diagnostic either way.
#[derive(Debug)]
pub struct Loaded {
    /// The manifest set; `None` when there is any error.
    pub set: Option<ManifestSet>,
    /// Everything found, errors and warnings.
    pub diagnostics: Diagnostics,
}

// --- raw shapes (after schema validation, so these deserialize) ---

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntegration {
    id: String,
    platform: String,
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    credentials: Map<String, Value>,
    #[serde(default)]
    config: Map<String, Value>,
    webhook: Option<RawWebhook>,
    endpoint: Option<RawEndpoint>,
    limits: Option<RawLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    #[serde(default)]
    events: Vec<String>,
    secret: Option<SecretRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    base_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    requests_per_minute: Option<u32>,
    concurrency: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    name: Option<String>,
    description: Option<String>,
    enabled: Option<bool>,
    mode: Option<String>,
    limits: Option<RawRuleLimits>,
    trigger: RawTrigger,
    #[serde(default)]
    actions: Vec<RawAction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleLimits {
    max_actions_per_minute: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    integration: Option<String>,
    platform: Option<String>,
    event: String,
    #[serde(default)]
    conditions: Map<String, Value>,
    #[serde(default)]
    allow_self: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    integration: Option<String>,
    platform: Option<String>,
    action: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTestFile {
    #[serde(default)]
    case: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    integration: Option<String>,
    platform: Option<String>,
    event: String,
    payload: Value,
    #[serde(default)]
    expect: Vec<RawExpect>,
    #[serde(default)]
    expect_none: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    rule: String,
    action: String,
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    shadow: bool,
}

/// A parsed file. Positions are computed only when a diagnostic needs one (by parsing the text
/// again with spans recorded): a valid repository never pays for them.
struct Parsed<'a, T> {
    file: String,
    text: &'a str,
    spans: OnceLock<Spans>,
    raw: T,
}

impl<T> Parsed<'_, T> {
    fn spans(&self) -> &Spans {
        self.spans
            .get_or_init(|| spanned::parse_spanned(self.text).spans)
    }

    fn value_span(&self, pointer: &str) -> Option<Range<usize>> {
        self.spans().value(pointer)
    }

    fn key_span(&self, pointer: &str) -> Option<Range<usize>> {
        self.spans().key(pointer)
    }

    fn error(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(&self.file, self.value_span(pointer), message)
    }
}

/// What the first, per-file phase makes of one file.
enum FileOutcome<'a> {
    Integration(Parsed<'a, RawIntegration>),
    Rule(Parsed<'a, RawRule>),
    Test(Parsed<'a, RawTestFile>),
    /// Unusable; its diagnostics are reported, and its id (when known) is remembered so that
    /// references to it are not reported again.
    Broken(Option<String>),
}

/// Decodes, parses and schema-checks one file. Independent of every other file, so the files
/// of a repository are processed in parallel.
fn parse_file<'a>(file: &'a RawFile, ds: &mut Vec<Diagnostic>) -> FileOutcome<'a> {
    let bytes = match &file.contents {
        Contents::Bytes(b) => b,
        Contents::TooLarge(n) => {
            ds.push(
                Diagnostic::error(
                    &file.path,
                    None,
                    format!("file is {n} bytes; manifests are limited to 1 MiB"),
                )
                .with_help("split it, or move large payloads into tests/fixtures/")
                .with_code(Code::FileUnreadable),
            );
            return FileOutcome::Broken(None);
        }
        Contents::Symlink => {
            ds.push(
                Diagnostic::error(
                    &file.path,
                    None,
                    "symbolic links are not followed; commit the file itself",
                )
                .with_code(Code::FileUnreadable),
            );
            return FileOutcome::Broken(None);
        }
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            ds.push(
                Diagnostic::error(
                    &file.path,
                    Some(e.valid_up_to()..e.valid_up_to() + 1),
                    "file is not valid UTF-8",
                )
                .with_code(Code::FileUnreadable),
            );
            return FileOutcome::Broken(None);
        }
    };
    let id_of = |v: &Value| v.get("id").and_then(Value::as_str).map(str::to_owned);
    let (mut value, syntax) = spanned::parse(text);
    if !syntax.is_empty() {
        for e in syntax {
            ds.push(Diagnostic::error(&file.path, e.span, e.message).with_code(Code::TomlSyntax));
        }
        return FileOutcome::Broken(id_of(&value));
    }
    let kind = match file.kind {
        FileKind::Integration => SchemaKind::Integration,
        FileKind::Rule => SchemaKind::Rule,
        FileKind::Test => SchemaKind::Test,
    };
    let spans: OnceLock<Spans> = OnceLock::new();
    let spans_of = || spans.get_or_init(|| spanned::parse_spanned(text).spans);
    let mut reported = Vec::new();
    if file.kind == FileKind::Integration {
        reported = check_plain_secrets(&file.path, &value, spans_of, ds);
    }
    let mut schema_ok = true;
    for v in schema::validate(kind, &value) {
        if reported
            .iter()
            .any(|p: &String| v.pointer.starts_with(p.as_str()))
        {
            continue;
        }
        schema_ok = false;
        let span = if v.at_key {
            spans_of().key(&v.pointer)
        } else {
            spans_of().value(&v.pointer)
        };
        ds.push(
            Diagnostic::error(&file.path, span, v.message)
                .with_help_opt(v.help)
                .with_code(Code::Schema),
        );
    }
    if !schema_ok {
        return FileOutcome::Broken(id_of(&value));
    }
    // Plain-text secrets were reported; drop them so the rest of the file is still checked.
    for pointer in &reported {
        if let Some((parent, key)) = pointer.rsplit_once('/')
            && let Some(Value::Object(m)) = value.pointer_mut(parent)
        {
            m.remove(&key.replace("~1", "/").replace("~0", "~"));
        }
    }
    let id = id_of(&value);
    let path = file.path.clone();
    let outcome = match file.kind {
        FileKind::Integration => serde_json::from_value(value).map(|raw| {
            FileOutcome::Integration(Parsed {
                file: path,
                text,
                spans,
                raw,
            })
        }),
        FileKind::Rule => serde_json::from_value(value).map(|raw| {
            FileOutcome::Rule(Parsed {
                file: path,
                text,
                spans,
                raw,
            })
        }),
        FileKind::Test => serde_json::from_value(value).map(|raw| {
            FileOutcome::Test(Parsed {
                file: path,
                text,
                spans,
                raw,
            })
        }),
    };
    outcome.unwrap_or_else(|e| {
        ds.push(Diagnostic::error(&file.path, None, e.to_string()).with_code(Code::Schema));
        FileOutcome::Broken(id)
    })
}

/// Loads and validates everything in a snapshot.
pub fn load(snapshot: &Snapshot) -> Loaded {
    // Phase 1, per file and in parallel: decode, parse, schema-check.
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8);
    let chunk = snapshot.files.len().div_ceil(threads).max(1);
    let results: Vec<(Vec<FileOutcome<'_>>, Vec<Diagnostic>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = snapshot
            .files
            .chunks(chunk)
            .map(|files| {
                scope.spawn(move || {
                    let mut ds = Vec::new();
                    let outcomes = files.iter().map(|f| parse_file(f, &mut ds)).collect();
                    (outcomes, ds)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut ds = Diagnostics::default();
    let mut integrations = Vec::new();
    let mut rules = Vec::new();
    let mut tests = Vec::new();
    // Ids declared by files that failed: references to them are not reported again.
    let mut broken_ids = BTreeSet::new();
    for (outcomes, diagnostics) in results {
        ds.extend(diagnostics);
        for outcome in outcomes {
            match outcome {
                FileOutcome::Integration(p) => integrations.push(p),
                FileOutcome::Rule(p) => rules.push(p),
                FileOutcome::Test(p) => tests.push(p),
                FileOutcome::Broken(id) => broken_ids.extend(id),
            }
        }
    }

    let mut cx = Resolver {
        ds,
        broken_ids,
        integrations: BTreeMap::new(),
    };
    // Ids are unique across the repository: a second file declaring one is an error naming
    // both files, whether or not the first one has errors of its own.
    let mut integration_files: HashMap<&str, &str> = HashMap::new();
    for p in &integrations {
        if let Some(first) = integration_files.get(p.raw.id.as_str()) {
            let d = p
                .error(
                    "/id",
                    format!(
                        "duplicate integration id `{}`: {first} declares it too",
                        p.raw.id
                    ),
                )
                .with_help("integration ids are unique across the repository: rename one")
                .with_code(Code::DuplicateId);
            cx.ds.push(d);
            continue;
        }
        integration_files.insert(&p.raw.id, &p.file);
        cx.integration(p);
    }
    let mut rule_set = BTreeMap::new();
    let mut rule_files: HashMap<String, String> = HashMap::new();
    // By value: each raw rule is freed as soon as it is resolved.
    for p in rules {
        let p = &p;
        if let Some(first) = rule_files.get(&p.raw.id) {
            let d = Diagnostic::error(
                &p.file,
                p.value_span("/id"),
                format!("duplicate rule id `{}`: {first} declares it too", p.raw.id),
            )
            .with_help("rule ids are unique across the repository: rename one")
            .with_code(Code::DuplicateId);
            cx.ds.push(d);
            // Its own problems are reported all the same; it is not used.
            let _ = cx.rule(p);
            continue;
        }
        rule_files.insert(p.raw.id.clone(), p.file.clone());
        if let Some(rule) = cx.rule(p) {
            rule_set.insert(rule.id.clone(), rule);
        } else {
            // Its errors are reported; tests naming it should not add "unknown rule".
            cx.broken_ids.insert(p.raw.id.clone());
        }
    }
    let mut cases = Vec::new();
    for p in &tests {
        cx.test_file(p, snapshot, &rule_set, &mut cases);
    }

    let Resolver {
        mut ds,
        integrations,
        ..
    } = cx;
    // Positions are rendered from the text of the files that have diagnostics, and only those.
    let mentioned = ds.files();
    for file in &snapshot.files {
        if let Contents::Bytes(bytes) = &file.contents
            && mentioned.contains(file.path.as_str())
        {
            ds.add_source(&file.path, &String::from_utf8_lossy(bytes));
        }
    }
    let set = (!ds.has_errors()).then(|| ManifestSet {
        revision: snapshot.revision.clone(),
        integrations,
        rules: rule_set,
        tests: cases,
    });
    Loaded {
        set,
        diagnostics: ds,
    }
}

/// Secret fields holding plain strings: one precise diagnostic each, with the command that
/// fixes it. Returns the pointers reported, so the schema's vaguer errors there are dropped.
fn check_plain_secrets<'s>(
    file: &str,
    value: &Value,
    spans: impl Fn() -> &'s Spans,
    ds: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let mut reported = Vec::new();
    let Some(platform) = value
        .get("platform")
        .and_then(Value::as_str)
        .and_then(PlatformKind::parse)
    else {
        return reported;
    };
    let id = value.get("id").and_then(Value::as_str).unwrap_or("ID");
    let d = platform.descriptor();
    let mut check = |pointer: String, field: &str, v: Option<&Value>| {
        if let Some(Value::String(_)) = v {
            ds.push(
                Diagnostic::error(file, spans().value(&pointer), format!("`{field}` is a secret and must not be written in plain text"))
                    .with_help(format!(
                        "seal it: `supportopsd secret seal --integration {id} --field {field}` (value on stdin), then write `{field} = {{ sealed = \"sos1:…\" }}`; or use `{{ env = \"NAME\" }}` / `{{ file = \"NAME\" }}`"
                    ))
                    .with_code(Code::PlainSecret),
            );
            reported.push(pointer);
        }
    };
    if let Some(creds) = value.get("credentials").and_then(Value::as_object) {
        for c in d.credentials.iter().filter(|c| c.secret) {
            check(
                format!("/credentials/{}", escape_token(c.name)),
                c.name,
                creds.get(c.name),
            );
        }
    }
    if let Some(w) = value.get("webhook") {
        check("/webhook/secret".into(), "webhook_secret", w.get("secret"));
    }
    reported
}

struct Resolver {
    ds: Diagnostics,
    broken_ids: BTreeSet<String>,
    integrations: BTreeMap<IntegrationId, Integration>,
}

/// Stands for an action that did not resolve (unknown integration or action name) among a
/// rule's earlier actions: later actions' `actions[N]` references to it are neither "not an
/// earlier action" nor checked field by field (its result is unknown), so the one error about
/// its name is the only one.
static UNRESOLVED_ACTION: ActionSpec = ActionSpec {
    name: "(unresolved)",
    description: "",
    params: &[],
    require_one_of: &[],
    result: &[],
};

impl Resolver {
    fn integration(&mut self, p: &Parsed<'_, RawIntegration>) {
        let raw = &p.raw;
        let (Ok(id), Some(platform)) = (
            IntegrationId::parse(&raw.id),
            PlatformKind::parse(&raw.platform),
        ) else {
            return; // the schema already said why
        };
        let d = platform.descriptor();
        if platform.is_builtin() {
            let help = format!(
                "rules trigger on these events with `integration = \"{id}\"`; nothing needs registering or reaching"
            );
            for (pointer, what) in [
                ("/webhook", "`[webhook]`"),
                ("/endpoint", "`[endpoint]`"),
                ("/limits", "`[limits]`"),
            ] {
                let present = match pointer {
                    "/webhook" => raw.webhook.is_some(),
                    "/endpoint" => raw.endpoint.is_some(),
                    _ => raw.limits.is_some(),
                };
                if present {
                    self.ds.push(
                        Diagnostic::error(
                            &p.file,
                            p.key_span(pointer),
                            format!("the built-in {platform} platform takes no {what}: supportopsd emits its events itself"),
                        )
                        .with_help(help.clone())
                        .with_code(Code::Unsupported),
                    );
                }
            }
        }
        if let Some(endpoint) = &raw.endpoint
            && let Err(why) = Endpoint::parse(&endpoint.base_url)
        {
            self.ds.push(p.error("/endpoint/base_url", why).with_help(
                "an endpoint override may use http:// only for a loopback host; which hosts it may name at all is the daemon's host policy (`[endpoints] allow`), not the repository's",
            ).with_code(Code::Endpoint));
        }
        let mut credentials = BTreeMap::new();
        for (name, value) in &raw.credentials {
            let pointer = format!("/credentials/{}", escape_token(name));
            let secret = d.credential(name).is_some_and(|c| c.secret);
            let cred = if secret {
                // Deserializing checks the reference, a sealed value's format included.
                match serde_json::from_value::<SecretRef>(value.clone()) {
                    Ok(r) => {
                        self.check_reserved(p, &pointer, name, &r);
                        Credential::Secret(r)
                    }
                    Err(e) => {
                        self.ds.push(
                            p.error(&pointer, format!("invalid secret reference: {e}")).with_help(
                                "seal it again with `supportopsd secret seal`, or use `{ env = \"NAME\" }` / `{ file = \"NAME\" }`",
                            ).with_code(Code::SecretReference),
                        );
                        continue;
                    }
                }
            } else {
                match value {
                    Value::String(s) => Credential::Plain(s.clone()),
                    _ => continue,
                }
            };
            credentials.insert(name.clone(), cred);
        }
        let webhook = raw.webhook.as_ref().map(|w| {
            for (i, e) in w.events.iter().enumerate() {
                if let Some(spec) = d.event(e)
                    && !spec.deliverable
                {
                    self.ds.push(
                        p.error(
                            &format!("/webhook/events/{i}"),
                            format!("{platform} cannot deliver `{e}` to a webhook"),
                        )
                        .with_help(spec.description)
                        .with_code(Code::Unsupported),
                    );
                }
                if let Some(spec) = d.event(e)
                    && let Some(delivery) = platform.delivery(spec, &raw.config)
                    && let Some(why) = delivery.refused
                {
                    self.ds.push(
                        p.error(
                            &format!("/webhook/events/{i}"),
                            format!("{platform} cannot deliver `{e}` with {}", delivery.mode),
                        )
                        .with_help(why)
                        .with_code(Code::Unsupported),
                    );
                }
            }
            if let Some(r) = &w.secret {
                self.check_reserved(p, "/webhook/secret", "webhook_secret", r);
            }
            Webhook {
                events: w.events.clone(),
                secret: w.secret.clone(),
            }
        });
        let integration = Integration {
            id: id.clone(),
            platform,
            name: raw.name.clone(),
            description: raw.description.clone(),
            file: p.file.clone(),
            credentials,
            config: raw.config.clone(),
            webhook,
            base_url: raw.endpoint.as_ref().map(|e| e.base_url.clone()),
            limits: raw.limits.as_ref().map_or(Limits::default(), |l| Limits {
                requests_per_minute: l.requests_per_minute,
                concurrency: l.concurrency,
            }),
        };
        self.integrations.insert(id, integration);
    }

    /// Reports a reference to one of the daemon's own secrets (refused always, whatever the
    /// host policy says).
    fn check_reserved(
        &mut self,
        p: &Parsed<'_, RawIntegration>,
        pointer: &str,
        field: &str,
        r: &SecretRef,
    ) {
        if let Err(e) = r.check_reserved() {
            self.ds.push(p.error(pointer, format!("`{field}`: {e}")).with_help(
                "give the integration a secret of its own: `{ env = \"NAME\" }`, `{ file = \"NAME\" }` (a LoadCredential= of its own) or a sealed value",
            ).with_code(Code::SecretReference));
        }
    }

    /// Resolves `integration = …` / `platform = …` at `pointer` (a trigger, an action, a case).
    fn target<T>(
        &mut self,
        p: &Parsed<'_, T>,
        pointer: &str,
        integration: Option<&str>,
        platform: Option<&str>,
    ) -> Option<(IntegrationId, PlatformKind)> {
        match (integration, platform) {
            (Some(_), Some(_)) => {
                self.ds.push(
                    p.error(
                        &format!("{pointer}/platform"),
                        "give either `integration` or `platform`, not both",
                    )
                    .with_code(Code::Schema),
                );
                None
            }
            (None, None) => {
                self.ds.push(
                    Diagnostic::error(
                        &p.file,
                        p.key_span(pointer),
                        "missing `integration` (or the `platform` shorthand)",
                    )
                    .with_code(Code::Schema),
                );
                None
            }
            (Some(id), None) => {
                let ptr = format!("{pointer}/integration");
                let parsed = IntegrationId::parse(id).ok()?;
                if let Some(i) = self.integrations.get(&parsed) {
                    return Some((parsed, i.platform));
                }
                if !self.broken_ids.contains(id) {
                    let help =
                        did_you_mean(id, self.integrations.keys().map(IntegrationId::as_str))
                            .map(|s| format!("did you mean `{s}`?"));
                    self.ds.push(
                        p.error(&ptr, format!("unknown integration `{id}`"))
                            .with_help_opt(help)
                            .with_code(Code::UnknownReference),
                    );
                }
                None
            }
            (None, Some(name)) => {
                let ptr = format!("{pointer}/platform");
                let kind = PlatformKind::parse(name)?;
                let matching: Vec<&IntegrationId> = self
                    .integrations
                    .values()
                    .filter(|i| i.platform == kind)
                    .map(|i| &i.id)
                    .collect();
                match matching.as_slice() {
                    [only] => Some(((*only).clone(), kind)),
                    [] => {
                        if !self.broken_ids.is_empty() {
                            return None;
                        }
                        self.ds.push(
                            p.error(&ptr, format!("no {kind} integration is defined"))
                                .with_code(Code::UnknownReference),
                        );
                        None
                    }
                    many => {
                        let ids: Vec<String> = many.iter().map(|i| format!("`{i}`")).collect();
                        self.ds.push(
                            p.error(&ptr, format!("`platform = \"{kind}\"` is ambiguous: {} integrations match ({})", many.len(), ids.join(", ")))
                                .with_help("name one with `integration = \"…\"`"),
                        );
                        None
                    }
                }
            }
        }
    }

    fn event<T>(
        &mut self,
        p: &Parsed<'_, T>,
        pointer: &str,
        kind: PlatformKind,
        name: &str,
    ) -> Option<&'static EventSpec> {
        let d = kind.descriptor();
        match d.event(name) {
            Some(e) => Some(e),
            None => {
                let help = did_you_mean(name, d.events.iter().map(|e| e.name))
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| {
                        Some(format!(
                            "{kind} events: {}",
                            names(d.events.iter().map(|e| e.name))
                        ))
                    });
                self.ds.push(
                    p.error(pointer, format!("unknown event `{name}` for {kind}"))
                        .with_help_opt(help)
                        .with_code(Code::UnknownReference),
                );
                None
            }
        }
    }

    fn rule(&mut self, p: &Parsed<'_, RawRule>) -> Option<Rule> {
        let raw = &p.raw;
        let id = RuleId::parse(&raw.id).ok()?;
        let t = &raw.trigger;
        let mut ok = true;
        let trigger = self
            .target(p, "/trigger", t.integration.as_deref(), t.platform.as_deref())
            .and_then(|(integration, platform)| {
                let event = self.event(p, "/trigger/event", platform, &t.event)?;
                if !event.deliverable {
                    self.ds.push(
                        p.error("/trigger/event", format!("{platform} cannot deliver `{}` to supportopsd", event.name))
                            .with_help(event.description)
                            .with_code(Code::Unsupported),
                    );
                }
                let delivery = self
                    .integrations
                    .get(&integration)
                    .and_then(|i| platform.delivery(event, &i.config));
                if let Some(d) = delivery
                    && let Some(why) = d.refused
                {
                    self.ds.push(
                        p.error("/trigger/event", format!("{platform} cannot deliver `{}` with {}", event.name, d.mode))
                            .with_help(why)
                            .with_code(Code::Unsupported),
                    );
                }
                if let Some(w) = self.integrations.get(&integration).and_then(|i| i.webhook.as_ref())
                    && !w.events.iter().any(|e| e == event.name)
                {
                    self.ds.push(
                        Diagnostic::warning(&p.file, p.value_span("/trigger/event"), format!("integration `{integration}` does not subscribe to `{}`: this rule never fires", event.name))
                            .with_help(format!("add \"{}\" to `[webhook] events` in {}", event.name, self.integrations[&integration].file))
                            .with_code(Code::NeverFires),
                    );
                }
                Some((integration, platform, event, delivery))
            });
        let condition = trigger.as_ref().and_then(|(_, platform, event, delivery)| {
            if t.conditions.is_empty() {
                return None;
            }
            let shape = EventShape::new(event)
                .delivered(*delivery)
                .valued(*platform);
            match condition::compile(&t.conditions, &shape) {
                Ok(c) => Some(c),
                Err(errors) => {
                    ok = false;
                    for e in errors {
                        let ptr = format!("/trigger/conditions{}", e.pointer);
                        let d = Diagnostic::error(
                            &p.file,
                            p.key_span(&ptr)
                                .filter(|_| e.pointer.matches('/').count() == 1)
                                .or_else(|| p.value_span(&ptr)),
                            e.message,
                        );
                        self.ds
                            .push(d.with_help_opt(e.help).with_code(Code::Condition));
                    }
                    None
                }
            }
        });
        let mut actions = Vec::new();
        let mut earlier: Vec<&'static ActionSpec> = Vec::new();
        for (i, a) in raw.actions.iter().enumerate() {
            let ptr = format!("/actions/{i}");
            let Some((integration, platform)) =
                self.target(p, &ptr, a.integration.as_deref(), a.platform.as_deref())
            else {
                ok = false;
                earlier.push(&UNRESOLVED_ACTION);
                continue;
            };
            let d = platform.descriptor();
            let Some(spec) = d.action(&a.action) else {
                if d.actions.is_empty() {
                    self.ds.push(
                        p.error(
                            &format!("{ptr}/action"),
                            format!("the built-in {platform} platform performs no actions (it only emits supportopsd's own events)"),
                        )
                        .with_help("trigger on its events, and act on another integration (e.g. `send_message` on Slack)")
                        .with_code(Code::Unsupported),
                    );
                    ok = false;
                    earlier.push(&UNRESOLVED_ACTION);
                    continue;
                }
                let help = did_you_mean(&a.action, d.actions.iter().map(|x| x.name))
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| {
                        Some(format!(
                            "{platform} actions: {}",
                            names(d.actions.iter().map(|x| x.name))
                        ))
                    });
                self.ds.push(
                    p.error(
                        &format!("{ptr}/action"),
                        format!("unknown action `{}` for {platform}", a.action),
                    )
                    .with_help_opt(help)
                    .with_code(Code::UnknownReference),
                );
                ok = false;
                earlier.push(&UNRESOLVED_ACTION);
                continue;
            };
            self.check_params(
                p,
                &format!("{ptr}/parameters"),
                platform,
                spec,
                &a.parameters,
            );
            let params = match Params::compile(&Value::Object(a.parameters.clone())) {
                Ok(params) => params,
                Err(errors) => {
                    for (rel, e) in errors {
                        let ptr = format!("{ptr}/parameters{rel}");
                        let span = p.value_span(&ptr).map(|s| offset_span(s, e.offset));
                        self.ds.push(
                            Diagnostic::error(
                                &p.file,
                                span,
                                format!(
                                    "template syntax error: {}",
                                    e.message
                                        .strip_prefix("syntax error: ")
                                        .unwrap_or(&e.message)
                                ),
                            )
                            .with_code(Code::Template),
                        );
                    }
                    ok = false;
                    earlier.push(spec);
                    continue;
                }
            };
            for (rel, t) in params.templates() {
                let tptr = format!("{ptr}/parameters{rel}");
                for e in t.static_limits() {
                    let span = p.value_span(&tptr).map(|s| offset_span(s, e.offset));
                    self.ds.push(
                        Diagnostic::error(&p.file, span, e.message)
                            .with_help_opt(e.help)
                            .with_code(Code::Template),
                    );
                }
            }
            if let Some((_, _, event, delivery)) = &trigger {
                let shape = EventShape::with_actions(event, earlier.clone()).delivered(*delivery);
                for (rel, t) in params.templates() {
                    let tptr = format!("{ptr}/parameters{rel}");
                    for e in t.check(&shape) {
                        let help = e.help.clone().or_else(|| shape_help(&shape, &e.message));
                        self.ds.push(
                            Diagnostic::error(&p.file, p.value_span(&tptr), e.message)
                                .with_help_opt(help)
                                .with_code(Code::Template),
                        );
                    }
                    for (n, rest) in t.action_refs() {
                        self.check_action_ref(p, &tptr, i, n, &rest.to_string(), &earlier);
                    }
                }
            }
            earlier.push(spec);
            actions.push(RuleAction {
                integration,
                platform,
                action: spec,
                parameters: params,
            });
        }
        let (integration, platform, event, _) = trigger?;
        if !ok {
            return None;
        }
        Some(Rule {
            id,
            name: raw.name.clone(),
            description: raw.description.clone(),
            enabled: raw.enabled.unwrap_or(true),
            // The schema allows only `active` and `shadow`.
            mode: raw
                .mode
                .as_deref()
                .and_then(Mode::parse)
                .unwrap_or_default(),
            limits: RuleLimits {
                max_actions_per_minute: raw.limits.as_ref().and_then(|l| l.max_actions_per_minute),
            },
            file: p.file.clone(),
            trigger: Trigger {
                integration,
                platform,
                event,
                conditions: Compact::table(&t.conditions),
                condition,
                allow_self: t.allow_self,
            },
            actions,
        })
    }

    /// Checks `actions[n].<rest>` in a template of action `i`: `n` must be an earlier action and
    /// `rest` one of its result fields.
    fn check_action_ref(
        &mut self,
        p: &Parsed<'_, RawRule>,
        pointer: &str,
        i: usize,
        n: usize,
        rest: &str,
        earlier: &[&'static ActionSpec],
    ) {
        let Some(spec) = earlier.get(n) else {
            let help = if earlier.is_empty() {
                "this is the rule's first action: no earlier result exists".to_owned()
            } else {
                let list: Vec<String> = (0..earlier.len())
                    .map(|k| format!("`actions[{k}]`"))
                    .collect();
                format!("earlier actions: {}", list.join(", "))
            };
            self.ds.push(
                p.error(
                    pointer,
                    format!(
                        "`actions[{n}]` is not an earlier action of this rule (this is action {i})"
                    ),
                )
                .with_help(help)
                .with_code(Code::UnknownReference),
            );
            return;
        };
        let field = match rest.strip_prefix("result.") {
            Some(f) => f,
            None if rest == "result" || rest.is_empty() => return,
            None => {
                self.ds.push(
                    p.error(pointer, format!("`actions[{n}].{rest}` does not exist"))
                        .with_help(format!(
                            "an earlier action's output is `actions[{n}].result.<field>`"
                        ))
                        .with_code(Code::UnknownReference),
                );
                return;
            }
        };
        if spec.result.is_empty() || lookup_result(spec, field) {
            return;
        }
        let fields = spec.result.iter().map(|f| f.path);
        let help = did_you_mean(field, fields.clone())
            .map(|s| format!("did you mean `actions[{n}].result.{s}`?"))
            .unwrap_or_else(|| format!("{} results: {}", spec.name, names(fields)));
        self.ds.push(
            p.error(
                pointer,
                format!("`{}` has no result field `{field}`", spec.name),
            )
            .with_help(help)
            .with_code(Code::UnknownReference),
        );
    }

    fn check_params(
        &mut self,
        p: &Parsed<'_, RawRule>,
        pointer: &str,
        platform: PlatformKind,
        spec: &ActionSpec,
        params: &Map<String, Value>,
    ) {
        for (name, value) in params {
            let ptr = format!("{pointer}/{}", escape_token(name));
            let Some(ps) = spec.params.iter().find(|x| x.name == name) else {
                let help = did_you_mean(name, spec.params.iter().map(|x| x.name))
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| {
                        Some(format!(
                            "parameters of {platform} {}: {}",
                            spec.name,
                            names(spec.params.iter().map(|x| x.name))
                        ))
                    });
                self.ds.push(
                    Diagnostic::error(
                        &p.file,
                        p.key_span(&ptr),
                        format!("unknown parameter `{name}` for {platform} {}", spec.name),
                    )
                    .with_help_opt(help)
                    .with_code(Code::Parameter),
                );
                continue;
            };
            if let Err(msg) = check_param(&ps.ty, value) {
                self.ds.push(
                    p.error(&ptr, format!("parameter `{name}`: {msg}"))
                        .with_code(Code::Parameter),
                );
            }
        }
        for ps in spec.params.iter().filter(|x| x.required) {
            if !params.contains_key(ps.name) {
                self.ds.push(
                    Diagnostic::error(
                        &p.file,
                        p.key_span(pointer).or_else(|| p.value_span(pointer)),
                        format!(
                            "missing required parameter `{}` for {platform} {}",
                            ps.name, spec.name
                        ),
                    )
                    .with_help(ps.description)
                    .with_code(Code::Parameter),
                );
            }
        }
        for group in spec.require_one_of {
            if !group.iter().any(|g| params.contains_key(*g)) {
                self.ds.push(
                    Diagnostic::error(
                        &p.file,
                        p.key_span(pointer).or_else(|| p.value_span(pointer)),
                        format!(
                            "{platform} {} needs one of {}",
                            spec.name,
                            names(group.iter().copied())
                        ),
                    )
                    .with_code(Code::Parameter),
                );
            }
        }
    }

    fn test_file(
        &mut self,
        p: &Parsed<'_, RawTestFile>,
        snapshot: &Snapshot,
        rules: &BTreeMap<RuleId, Rule>,
        out: &mut Vec<TestCase>,
    ) {
        let mut seen = BTreeSet::new();
        for (i, c) in p.raw.case.iter().enumerate() {
            let ptr = format!("/case/{i}");
            if !seen.insert(c.name.clone()) {
                self.ds.push(
                    p.error(
                        &format!("{ptr}/name"),
                        format!("duplicate test case name `{}`", c.name),
                    )
                    .with_code(Code::DuplicateId),
                );
            }
            let target = self.target(p, &ptr, c.integration.as_deref(), c.platform.as_deref());
            let event = target.as_ref().and_then(|(_, platform)| {
                self.event(p, &format!("{ptr}/event"), *platform, &c.event)
            });
            let payload = match &c.payload {
                Value::String(path) => match snapshot.read_fixture(path) {
                    Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                        Ok(v) => Some(v),
                        Err(e) => {
                            self.ds.push(
                                p.error(
                                    &format!("{ptr}/payload"),
                                    format!("fixture `{path}` is not valid JSON: {e}"),
                                )
                                .with_code(Code::TestCase),
                            );
                            None
                        }
                    },
                    Err(e) => {
                        self.ds.push(p.error(&format!("{ptr}/payload"), e.to_string()).with_help("fixture paths are relative to the tests/ folder, e.g. \"fixtures/ticket.json\"").with_code(Code::TestCase));
                        None
                    }
                },
                other => Some(other.clone()),
            };
            let mut expect = Vec::new();
            for (j, e) in c.expect.iter().enumerate() {
                let eptr = format!("{ptr}/expect/{j}");
                let Ok(rule_id) = RuleId::parse(&e.rule) else {
                    continue;
                };
                match rules.get(&rule_id) {
                    None if !self.broken_ids.contains(&e.rule) => {
                        let help = did_you_mean(&e.rule, rules.keys().map(RuleId::as_str))
                            .map(|s| format!("did you mean `{s}`?"));
                        self.ds.push(
                            p.error(
                                &format!("{eptr}/rule"),
                                format!("unknown rule `{}`", e.rule),
                            )
                            .with_help_opt(help)
                            .with_code(Code::UnknownReference),
                        );
                    }
                    Some(rule) if !rule.actions.iter().any(|a| a.action.name == e.action) => {
                        let have = names(rule.actions.iter().map(|a| a.action.name));
                        self.ds.push(
                            p.error(
                                &format!("{eptr}/action"),
                                format!("rule `{}` has no action `{}`", e.rule, e.action),
                            )
                            .with_help(format!("its actions: {have}"))
                            .with_code(Code::UnknownReference),
                        );
                    }
                    None | Some(_) => {}
                }
                expect.push(Expectation {
                    rule: rule_id,
                    action: e.action.clone(),
                    parameters: e.parameters.clone(),
                    shadow: e.shadow,
                });
            }
            if c.expect_none && !c.expect.is_empty() {
                self.ds.push(
                    p.error(
                        &format!("{ptr}/expect_none"),
                        "`expect_none = true` contradicts the `expect` entries",
                    )
                    .with_code(Code::TestCase),
                );
            }
            if !c.expect_none && c.expect.is_empty() {
                self.ds.push(
                    Diagnostic::error(&p.file, p.value_span(&format!("{ptr}/name")), format!("test case `{}` expects nothing", c.name))
                        .with_help("add `[[case.expect]]` entries, or `expect_none = true` if the event must trigger nothing")
                        .with_code(Code::TestCase),
                );
            }
            if let (Some((integration, platform)), Some(event), Some(payload)) =
                (target, event, payload)
            {
                out.push(TestCase {
                    file: p.file.clone(),
                    span: p.value_span(&format!("{ptr}/name")),
                    name: c.name.clone(),
                    integration,
                    platform,
                    event,
                    payload,
                    expect,
                    expect_none: c.expect_none,
                });
            }
        }
    }
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    it.map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// Moves a value span to a position inside the string (past the opening quote).
fn offset_span(span: Range<usize>, offset: Option<usize>) -> Range<usize> {
    match offset {
        Some(o) => {
            let start = span.start + 1 + o;
            start.min(span.end)..span.end
        }
        None => span,
    }
}

fn shape_help(shape: &EventShape, message: &str) -> Option<String> {
    let path = message.split('`').nth(1)?;
    did_you_mean(path, shape.known_paths()).map(|s| format!("did you mean `{s}`?"))
}

/// Whether `field` (dotted, indexes allowed) is a result field of `spec`, or lies beneath one.
fn lookup_result(spec: &ActionSpec, field: &str) -> bool {
    let field = field.split('[').next().unwrap_or(field);
    spec.result.iter().any(|f| {
        field == f.path
            || field
                .strip_prefix(f.path)
                .is_some_and(|r| r.starts_with('.'))
            || f.path
                .strip_prefix(field)
                .is_some_and(|r| r.starts_with('.'))
    })
}

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Checks a parameter value against its type. Template strings pass: they are checked when
/// rendered.
pub(crate) fn check_param(ty: &ParamType, v: &Value) -> Result<(), String> {
    if let Value::String(s) = v
        && is_template(s)
    {
        return Ok(());
    }
    let ok = match ty {
        ParamType::String => v.is_string(),
        ParamType::Integer => v.is_i64() || v.is_u64(),
        ParamType::Number => v.is_number(),
        ParamType::Bool => v.is_boolean(),
        ParamType::StringList => v
            .as_array()
            .is_some_and(|a| a.iter().all(|x| x.is_string())),
        ParamType::Object => v.is_object(),
        ParamType::ObjectList => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
        ParamType::Any => true,
        ParamType::Enum(values) => {
            return match v.as_str() {
                Some(s) if values.contains(&s) => Ok(()),
                _ => Err(format!("expected one of {}", names(values.iter().copied()))),
            };
        }
        ParamType::Code(codes) => {
            let ok = match v {
                Value::String(s) => codes.iter().any(|(n, _)| n.eq_ignore_ascii_case(s)),
                Value::Number(n) => n
                    .as_i64()
                    .is_some_and(|n| codes.iter().any(|(_, c)| *c == n)),
                _ => false,
            };
            if ok {
                return Ok(());
            }
            let list: Vec<String> = codes.iter().map(|(n, c)| format!("{c} ({n})")).collect();
            return Err(format!("expected one of {}", list.join(", ")));
        }
    };
    if ok {
        Ok(())
    } else {
        let want = match ty {
            ParamType::String => "a string",
            ParamType::Integer => "an integer",
            ParamType::Number => "a number",
            ParamType::Bool => "a boolean",
            ParamType::StringList => "a list of strings",
            ParamType::Object => "a table",
            ParamType::ObjectList => "a list of tables",
            _ => "a different value",
        };
        Err(format!("expected {want} (or a template)"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::manifest::source::{FOLDERS, RawFile};

    /// The example repository's manifests, in memory.
    fn example_files() -> Vec<RawFile> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/repo");
        let mut files = Vec::new();
        for (folder, kind) in FOLDERS {
            let Ok(entries) = std::fs::read_dir(root.join(folder)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".toml") {
                    let bytes = std::fs::read(e.path()).unwrap();
                    files.push(RawFile {
                        path: format!("{folder}/{name}"),
                        kind,
                        contents: Contents::Bytes(bytes),
                    });
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Delete(usize, usize),
        Insert(usize, Vec<u8>),
        Duplicate(usize, usize),
        Flip(usize, u8),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let tokens = prop::sample::select(vec![
            &b"\""[..],
            b"'",
            b"[",
            b"]",
            b"{",
            b"}",
            b"=",
            b"\n",
            b"[[actions]]\n",
            b"{{",
            b"}}",
            b"[trigger.conditions]\n",
            b"any = [",
            b"\xff",
            b"1e999",
            b"0x",
            b"\\u",
            b"#",
            b".",
        ]);
        prop_oneof![
            (any::<usize>(), 0..40usize).prop_map(|(a, n)| Mutation::Delete(a, n)),
            (any::<usize>(), tokens.prop_map(<[u8]>::to_vec))
                .prop_map(|(a, t)| Mutation::Insert(a, t)),
            (any::<usize>(), prop::collection::vec(any::<u8>(), 0..12))
                .prop_map(|(a, t)| Mutation::Insert(a, t)),
            (any::<usize>(), 0..80usize).prop_map(|(a, n)| Mutation::Duplicate(a, n)),
            (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Flip(a, b)),
        ]
    }

    fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
        if bytes.is_empty() {
            return;
        }
        let at = |a: usize| a % bytes.len();
        match m {
            Mutation::Delete(a, n) => {
                let start = at(*a);
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
            Mutation::Insert(a, t) => {
                let pos = at(*a);
                bytes.splice(pos..pos, t.iter().copied());
            }
            Mutation::Duplicate(a, n) => {
                let start = at(*a);
                let end = (start + n).min(bytes.len());
                let chunk = bytes[start..end].to_vec();
                bytes.splice(end..end, chunk);
            }
            Mutation::Flip(a, b) => {
                let i = at(*a);
                bytes[i] ^= *b;
            }
        }
    }

    #[test]
    fn the_examples_load() {
        let loaded = load(&Snapshot::in_memory(example_files()));
        // Fixtures are not readable from memory; everything else must be clean.
        let others: Vec<_> = loaded
            .diagnostics
            .sorted()
            .into_iter()
            .filter(|d| !d.message.contains("fixture"))
            .cloned()
            .collect();
        assert!(others.is_empty(), "{others:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// The loader never panics: mutated real manifests (syntax and structure damaged in
        /// every way the mutations reach) give diagnostics, and a set only when there are none.
        #[test]
        fn mutated_manifests_never_panic(
            which in any::<prop::sample::Index>(),
            mutations in prop::collection::vec(mutation(), 1..6),
        ) {
            let mut files = example_files();
            let i = which.index(files.len());
            if let Contents::Bytes(b) = &mut files[i].contents {
                for m in &mutations {
                    apply(b, m);
                }
            }
            let loaded = load(&Snapshot::in_memory(files));
            prop_assert_eq!(loaded.set.is_some(), !loaded.diagnostics.has_errors());
            let _ = loaded.diagnostics.render("");
        }

        /// Arbitrary bytes in any kind of file.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), kind in 0..3usize) {
            let (folder, kind) = FOLDERS[kind];
            let files = vec![RawFile { path: format!("{folder}/x.toml"), kind, contents: Contents::Bytes(bytes) }];
            let loaded = load(&Snapshot::in_memory(files));
            let _ = loaded.diagnostics.render("");
        }
    }
}
