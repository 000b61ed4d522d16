//! The validated manifest model: what the rest of the crate sees. Everything here has been
//! checked: references resolve, events and actions exist, conditions are compiled and templates
//! parsed. Nothing downstream re-validates.

use std::collections::BTreeMap;
use std::ops::Range;

use serde_json::{Map, Value};

use super::{IntegrationId, Revision, RuleId};
use crate::platforms::{ActionSpec, EventSpec, PlatformKind};
use crate::rules::condition::Condition;
use crate::rules::template::{RenderContext, RenderError, Template};
use crate::secrets::SecretRef;

/// A whole, valid manifest repository at one revision.
#[derive(Debug)]
pub struct ManifestSet {
    /// Where it was read.
    pub revision: Revision,
    /// Integrations by id.
    pub integrations: BTreeMap<IntegrationId, Integration>,
    /// Rules by id.
    pub rules: BTreeMap<RuleId, Rule>,
    /// Rule test cases, in file order.
    pub tests: Vec<TestCase>,
}

/// One `[credentials]` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A non-secret value (a domain, an id).
    Plain(String),
    /// A reference to a secret.
    Secret(SecretRef),
}

/// An integration: one account on one platform.
#[derive(Debug)]
pub struct Integration {
    /// Its id.
    pub id: IntegrationId,
    /// Its platform.
    pub platform: PlatformKind,
    /// Display name.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// The file that declares it.
    pub file: String,
    /// `[credentials]`.
    pub credentials: BTreeMap<String, Credential>,
    /// `[config]`, checked against the platform's config keys.
    pub config: Map<String, Value>,
    /// `[webhook]`, when the daemon should register one.
    pub webhook: Option<Webhook>,
    /// `[endpoint] base_url`.
    pub base_url: Option<String>,
    /// `[limits]`.
    pub limits: Limits,
}

/// `[webhook]`: what the daemon registers on the platform and accepts back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Event names, as the platform names them.
    pub events: Vec<String>,
    /// The shared secret, where the platform uses one.
    pub secret: Option<SecretRef>,
}

/// `[limits]`: client-side overrides of the platform's published limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests per minute.
    pub requests_per_minute: Option<u32>,
    /// Requests in flight at once.
    pub concurrency: Option<u32>,
}

/// A rule: when an event matches, perform actions in order.
#[derive(Debug)]
pub struct Rule {
    /// Its id.
    pub id: RuleId,
    /// Display name.
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Disabled rules are validated but never fire.
    pub enabled: bool,
    /// `mode`: whether its actions run ([`Mode::Active`]) or are only recorded
    /// ([`Mode::Shadow`]).
    pub mode: Mode,
    /// `[limits]`.
    pub limits: RuleLimits,
    /// The file that declares it.
    pub file: String,
    /// What triggers it.
    pub trigger: Trigger,
    /// What it does, in order.
    pub actions: Vec<RuleAction>,
}

/// A rule's `mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Its actions run (the default).
    #[default]
    Active,
    /// It is evaluated on live deliveries and what it would have done is recorded (audit log,
    /// event history, metrics), but nothing runs: no job, no platform call.
    Shadow,
}

impl Mode {
    /// `active` or `shadow`, as manifests write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Active => "active",
            Mode::Shadow => "shadow",
        }
    }

    /// Parses `active` or `shadow`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "active" => Some(Mode::Active),
            "shadow" => Some(Mode::Shadow),
            _ => None,
        }
    }
}

/// A rule's `[limits]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleLimits {
    /// `max_actions_per_minute`: the rule's action budget; beyond it its new jobs are held
    /// until a later minute (the daemon's `--max-actions-per-minute` when unset).
    pub max_actions_per_minute: Option<u32>,
}

impl Rule {
    /// Whether the rule is in shadow mode.
    pub fn is_shadow(&self) -> bool {
        self.mode == Mode::Shadow
    }

    /// Renders every action's parameters against `ctx` (an event's context) without running
    /// anything: action `i` sees the earlier actions as `actions[N]` with placeholder results
    /// (`<actions[N].result.<field>>`, [`placeholder_result`]), since none has run. What
    /// `supportopsd test`, the behavioural plan and the daemon's shadow rules record. Stops at
    /// the first action whose parameters do not render, as the executor gives up the job: the
    /// actions rendered before it, and its index and error.
    pub fn render_offline(&self, ctx: &Value) -> (Vec<Rendered>, Option<(usize, RenderError)>) {
        self.render_offline_in(&mut ctx.clone())
    }

    /// [`Rule::render_offline`] on a context it may change while rendering: its `actions` key
    /// is set for each action and removed again at the end, so one context serves every rule
    /// of an event without a copy.
    pub fn render_offline_in(
        &self,
        ctx: &mut Value,
    ) -> (Vec<Rendered>, Option<(usize, RenderError)>) {
        let mut out = Vec::with_capacity(self.actions.len());
        let mut earlier = Vec::new();
        let mut failed = None;
        for (i, a) in self.actions.iter().enumerate() {
            if let Value::Object(m) = ctx {
                m.insert("actions".into(), Value::Array(earlier.clone()));
            }
            match a.parameters.render(ctx) {
                Ok(parameters) => out.push(Rendered {
                    action: a.action.name,
                    integration: a.integration.clone(),
                    parameters,
                }),
                Err(e) => {
                    failed = Some((i, e));
                    break;
                }
            }
            earlier.push(placeholder_result(i, a.action));
        }
        if let Value::Object(m) = ctx {
            m.remove("actions");
        }
        (out, failed)
    }
}

/// One action of a rule rendered offline ([`Rule::render_offline`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The action's name.
    pub action: &'static str,
    /// The integration that would perform it.
    pub integration: IntegrationId,
    /// Its rendered parameters.
    pub parameters: Value,
}

/// The result of action `index` when it has not run: each result field of `spec` as the text
/// `<actions[index].result.<field>>`, under `result` (what `actions[index]` holds in templates).
pub fn placeholder_result(index: usize, spec: &ActionSpec) -> Value {
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
    let mut result = Map::new();
    for f in spec.result {
        insert_path(
            &mut result,
            f.path,
            Value::String(format!("<actions[{index}].result.{}>", f.path)),
        );
    }
    let mut m = Map::new();
    m.insert("action".into(), Value::String(spec.name.to_owned()));
    m.insert("result".into(), Value::Object(result));
    Value::Object(m)
}

/// `[trigger]`.
#[derive(Debug)]
pub struct Trigger {
    /// The integration whose events trigger the rule.
    pub integration: IntegrationId,
    /// Its platform.
    pub platform: PlatformKind,
    /// The event.
    pub event: &'static EventSpec,
    /// `[trigger.conditions]` as written, compacted ([`Trigger::conditions_source`]): a table of
    /// tables held as JSON values costs a B-tree node (over 600 bytes) per table, for something
    /// only plans and the operator API read.
    pub(super) conditions: Compact,
    /// Compiled conditions; `None` when there are none.
    pub condition: Option<Condition>,
    /// Also fire on events caused by supportopsd's own actions.
    pub allow_self: bool,
}

/// One `[[actions]]` entry.
#[derive(Debug)]
pub struct RuleAction {
    /// The integration that performs it.
    pub integration: IntegrationId,
    /// Its platform.
    pub platform: PlatformKind,
    /// The action.
    pub action: &'static ActionSpec,
    /// Parameters with every string parsed as a template (the parameters as written are
    /// [`RuleAction::parameters_source`]).
    pub parameters: Params,
}

/// A parameter tree whose strings are templates.
#[derive(Debug)]
pub enum Params {
    /// A value with no template in it.
    Literal(Value),
    /// A template string.
    Template(Template),
    /// An array.
    List(Vec<Params>),
    /// A table.
    Table(Vec<(String, Params)>),
}

/// One `[[case]]` of a test file.
#[derive(Debug)]
pub struct TestCase {
    /// The test file.
    pub file: String,
    /// Byte span of the case's `name` value, for reports.
    pub span: Option<Range<usize>>,
    /// Its name.
    pub name: String,
    /// The integration the event arrives on.
    pub integration: IntegrationId,
    /// Its platform.
    pub platform: PlatformKind,
    /// The event.
    pub event: &'static EventSpec,
    /// The payload (loaded from the fixture, or inline).
    pub payload: Value,
    /// Expected actions, in order.
    pub expect: Vec<Expectation>,
    /// The event must trigger nothing.
    pub expect_none: bool,
}

/// One expected action.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// The rule that should fire.
    pub rule: RuleId,
    /// The action it should perform.
    pub action: String,
    /// The rendered parameters it should have (a subset check is not done: all must match).
    pub parameters: Option<Map<String, Value>>,
    /// `shadow = true`: the action is a shadow rule's, recorded and not run.
    pub shadow: bool,
}

/// A JSON value kept in as little memory as it takes: tables as boxed slices of entries (in
/// key order, as [`Map`] iterates), turned back into the same [`Value`] when read.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Compact {
    /// Any value but an array or a table.
    Scalar(Value),
    /// An array.
    Array(Box<[Compact]>),
    /// A table.
    Table(Box<[(Box<str>, Compact)]>),
}

// === impl Compact ===

impl Compact {
    /// Compacts a table.
    pub(super) fn table(m: &Map<String, Value>) -> Compact {
        Compact::Table(
            m.iter()
                .map(|(k, v)| (k.as_str().into(), Compact::new(v)))
                .collect(),
        )
    }

    fn new(v: &Value) -> Compact {
        match v {
            Value::Array(items) => Compact::Array(items.iter().map(Compact::new).collect()),
            Value::Object(m) => Compact::table(m),
            other => Compact::Scalar(other.clone()),
        }
    }

    fn value(&self) -> Value {
        match self {
            Compact::Scalar(v) => v.clone(),
            Compact::Array(items) => Value::Array(items.iter().map(Compact::value).collect()),
            Compact::Table(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.value()))
                    .collect(),
            ),
        }
    }
}

// === impl Trigger ===

impl Trigger {
    /// `[trigger.conditions]` as written (for plans and fingerprints).
    pub fn conditions_source(&self) -> Map<String, Value> {
        match self.conditions.value() {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

// === impl RuleAction ===

impl RuleAction {
    /// Parameters as written (for plans and fingerprints), rebuilt from the compiled tree.
    pub fn parameters_source(&self) -> Map<String, Value> {
        match self.parameters.source() {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

// === impl Params ===

impl Params {
    /// Parses every string of a parameter value as a template.
    pub fn compile(
        v: &Value,
    ) -> Result<Params, Vec<(String, crate::rules::template::TemplateError)>> {
        fn go(
            v: &Value,
            pointer: &str,
            errors: &mut Vec<(String, crate::rules::template::TemplateError)>,
        ) -> Params {
            match v {
                Value::String(s) => match Template::parse(s) {
                    Ok(t) if t.is_literal() => Params::Literal(v.clone()),
                    Ok(t) => Params::Template(t),
                    Err(e) => {
                        errors.push((pointer.to_owned(), e));
                        Params::Literal(Value::Null)
                    }
                },
                Value::Array(items) => Params::List(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, x)| go(x, &format!("{pointer}/{i}"), errors))
                        .collect(),
                ),
                Value::Object(m) => Params::Table(
                    m.iter()
                        .map(|(k, x)| {
                            let p = format!("{pointer}/{}", super::spanned::escape_token(k));
                            (k.clone(), go(x, &p, errors))
                        })
                        .collect(),
                ),
                other => Params::Literal(other.clone()),
            }
        }
        let mut errors = Vec::new();
        let p = go(v, "", &mut errors);
        if errors.is_empty() {
            Ok(p)
        } else {
            Err(errors)
        }
    }

    /// The value the tree was compiled from: template strings as written.
    pub fn source(&self) -> Value {
        match self {
            Params::Literal(v) => v.clone(),
            Params::Template(t) => Value::String(t.source().to_owned()),
            Params::List(items) => Value::Array(items.iter().map(Params::source).collect()),
            Params::Table(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, x)| (k.clone(), x.source()))
                    .collect(),
            ),
        }
    }

    /// Every template in the tree with its JSON pointer (relative to the tree).
    pub fn templates(&self) -> Vec<(String, &Template)> {
        fn go<'a>(p: &'a Params, pointer: String, out: &mut Vec<(String, &'a Template)>) {
            match p {
                Params::Literal(_) => {}
                Params::Template(t) => out.push((pointer, t)),
                Params::List(items) => {
                    for (i, x) in items.iter().enumerate() {
                        go(x, format!("{pointer}/{i}"), out);
                    }
                }
                Params::Table(entries) => {
                    for (k, x) in entries {
                        go(
                            x,
                            format!("{pointer}/{}", super::spanned::escape_token(k)),
                            out,
                        );
                    }
                }
            }
        }
        let mut out = Vec::new();
        go(self, String::new(), &mut out);
        out
    }

    /// Renders the tree against an event context, converted for the templates once for the
    /// whole tree (not once per template).
    pub fn render(&self, ctx: &Value) -> Result<Value, RenderError> {
        match self {
            Params::Literal(v) => Ok(v.clone()),
            _ => self.render_in(&RenderContext::new(ctx)),
        }
    }

    fn render_in(&self, ctx: &RenderContext<'_>) -> Result<Value, RenderError> {
        Ok(match self {
            Params::Literal(v) => v.clone(),
            Params::Template(t) => t.render_in(ctx)?,
            Params::List(items) => Value::Array(
                items
                    .iter()
                    .map(|x| x.render_in(ctx))
                    .collect::<Result<_, _>>()?,
            ),
            Params::Table(entries) => {
                let mut m = Map::new();
                for (k, x) in entries {
                    m.insert(k.clone(), x.render_in(ctx)?);
                }
                Value::Object(m)
            }
        })
    }
}

// === impl ManifestSet ===

impl ManifestSet {
    /// Rules triggered by `event` on `integration`, in id order (disabled ones excluded; shadow
    /// ones included: [`Rule::is_shadow`] tells them apart).
    pub fn rules_for<'a>(
        &'a self,
        integration: &'a IntegrationId,
        event: &'a str,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.values().filter(move |r| {
            r.enabled && r.trigger.integration == *integration && r.trigger.event.name == event
        })
    }
}
