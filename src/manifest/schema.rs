//! JSON Schemas for integration, rule and test files, generated from the platform catalogue (the
//! one source of truth), embedded in the binary, and used to validate every manifest with the
//! `jsonschema` crate. `schema/*.schema.json` in the repository are these documents, committed for
//! editors; a test fails when they differ.

use std::sync::LazyLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::{Map, Value, json};

use crate::platforms::{ActionSpec, Descriptor, ParamSpec, ParamType, PlatformKind, WebhookSecret};

/// The schemas supportopsd ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    /// `integrations/*.toml`
    Integration,
    /// `rules/*.toml`
    Rule,
    /// `tests/*.toml`
    Test,
}

/// The regular expression every id must match.
pub const ID_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";

/// A template string: anything containing `{{` or `{%`.
const TEMPLATE_PATTERN: &str = "\\{[{%]";

/// One schema violation, in terms the diagnostics module can place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer of the offending value (or of the key, when `at_key`).
    pub pointer: String,
    /// Point at the key rather than the value (unknown fields).
    pub at_key: bool,
    /// Message.
    pub message: String,
    /// Help line.
    pub help: Option<String>,
}

// === impl SchemaKind ===

impl SchemaKind {
    /// Every kind.
    pub const ALL: [SchemaKind; 3] = [SchemaKind::Integration, SchemaKind::Rule, SchemaKind::Test];

    /// The name used by `supportopsd schema KIND` and in file names.
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaKind::Integration => "integration",
            SchemaKind::Rule => "rule",
            SchemaKind::Test => "test",
        }
    }

    /// Parses a kind name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The file name under `schema/`.
    pub fn file_name(self) -> String {
        format!("{}.schema.json", self.as_str())
    }

    /// The schema document.
    pub fn document(self) -> &'static Value {
        &COMPILED.get(self).0
    }

    /// The schema as committed: pretty JSON with a trailing newline.
    pub fn render(self) -> String {
        let mut s = serde_json::to_string_pretty(self.document()).unwrap_or_default();
        s.push('\n');
        s
    }
}

struct Compiled {
    integration: (Value, jsonschema::Validator),
    rule: (Value, jsonschema::Validator),
    test: (Value, jsonschema::Validator),
}

impl Compiled {
    fn get(&self, kind: SchemaKind) -> &(Value, jsonschema::Validator) {
        match kind {
            SchemaKind::Integration => &self.integration,
            SchemaKind::Rule => &self.rule,
            SchemaKind::Test => &self.test,
        }
    }
}

fn compile(doc: Value) -> (Value, jsonschema::Validator) {
    // Invariant: the generated schemas are valid; `schemas_compile` tests it for every kind.
    #[allow(clippy::expect_used)]
    let validator = jsonschema::validator_for(&doc).expect("generated schema compiles");
    (doc, validator)
}

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| Compiled {
    integration: compile(integration_schema()),
    rule: compile(rule_schema()),
    test: compile(test_schema()),
});

// === generation ===

fn header(kind: SchemaKind, title: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    m.insert(
        "$id".into(),
        json!(format!("urn:supportopsd:schema:{}", kind.as_str())),
    );
    m.insert("title".into(), json!(title));
    m
}

fn secret_ref_schema() -> Value {
    let one = |key: &str, desc: &str, extra: Value| {
        let mut prop = json!({"type": "string", "minLength": 1, "description": desc});
        if let (Value::Object(p), Value::Object(e)) = (&mut prop, extra) {
            p.extend(e);
        }
        json!({"type": "object", "required": [key], "additionalProperties": false,
               "properties": {key: prop}})
    };
    json!({
        "description": "A secret reference: never a plain string.",
        "oneOf": [
            one("env", "Name of an environment variable of the daemon.", json!({})),
            one("file", "Name of a file in $CREDENTIALS_DIRECTORY (systemd LoadCredential).",
                json!({"pattern": "^[^/]+$"})),
            one("sealed", "AES-256-SIV ciphertext from `supportopsd secret seal`.",
                json!({"pattern": "^sos1:"})),
        ]
    })
}

fn template_string() -> Value {
    json!({"type": "string", "pattern": TEMPLATE_PATTERN, "description": "a template"})
}

/// The JSON Schema of one parameter type (templates allowed for every non-string type).
pub fn param_type_schema(ty: &ParamType) -> Value {
    let plain = match ty {
        ParamType::String => return json!({"type": "string"}),
        ParamType::Any => return json!({}),
        ParamType::Integer => json!({"type": "integer"}),
        ParamType::Number => json!({"type": "number"}),
        ParamType::Bool => json!({"type": "boolean"}),
        ParamType::StringList => json!({"type": "array", "items": {"type": "string"}}),
        ParamType::Object => json!({"type": "object"}),
        ParamType::ObjectList => json!({"type": "array", "items": {"type": "object"}}),
        ParamType::Enum(values) => json!({"type": "string", "enum": values}),
        ParamType::Code(codes) => {
            let names: Vec<&str> = codes.iter().map(|(n, _)| *n).collect();
            let numbers: Vec<i64> = codes.iter().map(|(_, c)| *c).collect();
            return json!({"anyOf": [
                {"type": "integer", "enum": numbers},
                {"type": "string", "enum": names},
                template_string(),
            ]});
        }
    };
    json!({"anyOf": [plain, template_string()]})
}

fn params_schema(params: &[ParamSpec], require_one_of: &[&[&str]]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for p in params {
        let mut s = param_type_schema(&p.ty);
        if let Value::Object(m) = &mut s {
            m.insert("description".into(), json!(p.description));
        }
        props.insert(p.name.into(), s);
        if p.required {
            required.push(p.name);
        }
    }
    let mut schema = json!({"type": "object", "additionalProperties": false,
                            "properties": props, "required": required});
    if !require_one_of.is_empty()
        && let Value::Object(m) = &mut schema
    {
        let groups: Vec<Value> = require_one_of
            .iter()
            .map(|g| json!({"anyOf": g.iter().map(|f| json!({"required": [f]})).collect::<Vec<_>>()}))
            .collect();
        m.insert("allOf".into(), Value::Array(groups));
    }
    schema
}

/// The parameter schema of one action.
pub fn action_schema(action: &ActionSpec) -> Value {
    let mut s = params_schema(action.params, action.require_one_of);
    if let Value::Object(m) = &mut s {
        m.insert("description".into(), json!(action.description));
    }
    s
}

fn credentials_schema(d: &Descriptor) -> Value {
    let mut props = Map::new();
    for c in d.credentials {
        let s = if c.secret {
            json!({"$ref": "#/$defs/secret_ref", "description": c.description})
        } else {
            json!({"type": "string", "minLength": 1, "description": c.description})
        };
        props.insert(c.name.into(), s);
    }
    let mut schema = json!({"type": "object", "additionalProperties": false, "properties": props});
    if let Value::Object(m) = &mut schema {
        if d.credential_sets.is_empty() {
            let required: Vec<&str> = d
                .credentials
                .iter()
                .filter(|c| c.required)
                .map(|c| c.name)
                .collect();
            m.insert("required".into(), json!(required));
        } else {
            let sets: Vec<Value> = d
                .credential_sets
                .iter()
                .map(|s| json!({"required": s}))
                .collect();
            m.insert("anyOf".into(), Value::Array(sets));
        }
    }
    schema
}

fn webhook_schema(d: &Descriptor) -> Value {
    let events: Vec<&str> = d.events.iter().map(|e| e.name).collect();
    let mut props = Map::new();
    props.insert(
        "events".into(),
        json!({"type": "array", "items": {"enum": events}, "uniqueItems": true,
               "description": "Events the daemon registers for and accepts."}),
    );
    if d.webhook_secret == WebhookSecret::Optional {
        props.insert(
            "secret".into(),
            json!({"$ref": "#/$defs/secret_ref",
                   "description": "Shared secret the platform authenticates deliveries with."}),
        );
    }
    json!({"type": "object", "additionalProperties": false, "properties": props})
}

fn integration_schema() -> Value {
    let platforms: Vec<&str> = PlatformKind::ALL.iter().map(|k| k.as_str()).collect();
    let mut s = header(SchemaKind::Integration, "supportopsd integration");
    s.insert("type".into(), json!("object"));
    s.insert("required".into(), json!(["id", "platform"]));
    s.insert("additionalProperties".into(), json!(false));
    s.insert(
        "properties".into(),
        json!({
            "id": {"type": "string", "pattern": ID_PATTERN, "description": "Unique id of the integration."},
            "platform": {"enum": platforms},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "credentials": {"type": "object"},
            "config": {"type": "object"},
            "webhook": {"type": "object"},
            "endpoint": {"type": "object", "additionalProperties": false,
                         "properties": {"base_url": {"type": "string", "pattern": "^https?://"}},
                         "required": ["base_url"]},
            "limits": {"type": "object", "additionalProperties": false, "properties": {
                "requests_per_minute": {"type": "integer", "minimum": 1},
                "concurrency": {"type": "integer", "minimum": 1}}},
        }),
    );
    let branches: Vec<Value> = PlatformKind::ALL
        .iter()
        .map(|k| {
            let d = k.descriptor();
            if k.is_builtin() {
                // Nothing to reach and nothing to register: no credentials, webhook, endpoint
                // or limits.
                return json!({
                    "if": {"properties": {"platform": {"const": k.as_str()}}, "required": ["platform"]},
                    "then": {"properties": {
                        "credentials": credentials_schema(d),
                        "config": params_schema(d.config, &[]),
                    }}
                });
            }
            json!({
                "if": {"properties": {"platform": {"const": k.as_str()}}, "required": ["platform"]},
                "then": {"properties": {
                    "credentials": credentials_schema(d),
                    "config": params_schema(d.config, &[]),
                    "webhook": webhook_schema(d),
                }, "required": ["credentials"]}
            })
        })
        .collect();
    s.insert("allOf".into(), Value::Array(branches));
    s.insert("$defs".into(), json!({"secret_ref": secret_ref_schema()}));
    Value::Object(s)
}

fn target_props() -> Value {
    let platforms: Vec<&str> = PlatformKind::ALL.iter().map(|k| k.as_str()).collect();
    json!({
        "integration": {"type": "string", "pattern": ID_PATTERN},
        "platform": {"enum": platforms, "description": "Shorthand: the only integration of this platform."},
    })
}

fn rule_schema() -> Value {
    let mut s = header(SchemaKind::Rule, "supportopsd rule");
    let mut trigger_props = target_props();
    let mut action_props = target_props();
    if let Value::Object(m) = &mut trigger_props {
        m.insert("event".into(), json!({"type": "string", "minLength": 1}));
        m.insert("conditions".into(), json!({"type": "object"}));
        m.insert(
            "allow_self".into(),
            json!({"type": "boolean", "description": "Also trigger on events caused by supportopsd's own actions."}),
        );
    }
    if let Value::Object(m) = &mut action_props {
        m.insert("action".into(), json!({"type": "string", "minLength": 1}));
        m.insert("parameters".into(), json!({"type": "object"}));
    }
    let mut defs = Map::new();
    let mut branches = Vec::new();
    for k in PlatformKind::ALL {
        let d = k.descriptor();
        let mut per = Map::new();
        for a in d.actions {
            per.insert(a.name.into(), action_schema(a));
            branches.push(json!({
                "if": {"properties": {"platform": {"const": k.as_str()}, "action": {"const": a.name}},
                       "required": ["platform", "action"]},
                "then": {"properties": {"parameters": {"$ref": format!("#/$defs/{}/{}", k.as_str(), a.name)}}}
            }));
        }
        defs.insert(k.as_str().into(), Value::Object(per));
    }
    let mut action_item = json!({"type": "object", "additionalProperties": false,
                                 "required": ["action"], "properties": action_props});
    if !branches.is_empty()
        && let Value::Object(m) = &mut action_item
    {
        m.insert("allOf".into(), Value::Array(branches));
    }
    s.insert("type".into(), json!("object"));
    s.insert("required".into(), json!(["id", "trigger"]));
    s.insert("additionalProperties".into(), json!(false));
    s.insert(
        "properties".into(),
        json!({
            "id": {"type": "string", "pattern": ID_PATTERN},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "enabled": {"type": "boolean"},
            "mode": {"enum": ["active", "shadow"], "description": "`shadow`: evaluated on live deliveries, what it would do recorded, nothing run. Default `active`."},
            "limits": {"type": "object", "additionalProperties": false, "properties": {
                "max_actions_per_minute": {"type": "integer", "minimum": 1, "description": "The rule's action budget: beyond it its new jobs are held until a later minute."}}},
            "trigger": {"type": "object", "additionalProperties": false, "required": ["event"],
                        "properties": trigger_props},
            "actions": {"type": "array", "items": action_item},
        }),
    );
    s.insert("$defs".into(), Value::Object(defs));
    Value::Object(s)
}

fn test_schema() -> Value {
    let mut s = header(SchemaKind::Test, "supportopsd rule tests");
    let mut case_props = target_props();
    if let Value::Object(m) = &mut case_props {
        m.insert("name".into(), json!({"type": "string", "minLength": 1}));
        m.insert("event".into(), json!({"type": "string", "minLength": 1}));
        m.insert(
            "payload".into(),
            json!({"description": "A fixture path relative to tests/, or an inline table.",
                   "anyOf": [{"type": "string", "minLength": 1}, {"type": "object"}]}),
        );
        m.insert(
            "expect".into(),
            json!({"type": "array", "items": {"type": "object", "additionalProperties": false,
                "required": ["rule", "action"], "properties": {
                    "rule": {"type": "string", "pattern": ID_PATTERN},
                    "action": {"type": "string", "minLength": 1},
                    "parameters": {"type": "object"},
                    "shadow": {"type": "boolean", "description": "The action is a shadow rule's (recorded, not run)."}}}}),
        );
        m.insert("expect_none".into(), json!({"type": "boolean"}));
    }
    s.insert("type".into(), json!("object"));
    s.insert("additionalProperties".into(), json!(false));
    s.insert(
        "properties".into(),
        json!({"case": {"type": "array", "items": {"type": "object", "additionalProperties": false,
            "required": ["name", "event", "payload"], "properties": case_props}}}),
    );
    Value::Object(s)
}

// === validation ===

/// Validates a document against a schema. Messages never quote the offending value (it could be
/// a secret pasted in the wrong place).
pub fn validate(kind: SchemaKind, instance: &Value) -> Vec<Violation> {
    let validator = &COMPILED.get(kind).1;
    if validator.is_valid(instance) {
        return Vec::new();
    }
    let mut out: Vec<Violation> = validator
        .iter_errors(instance)
        .map(|e| describe(&e))
        .collect();
    out.dedup();
    out
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a float",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

fn type_name(t: &jsonschema::JsonType) -> &'static str {
    match t.to_string().as_str() {
        "array" => "an array",
        "boolean" => "a boolean",
        "integer" => "an integer",
        "null" => "nothing",
        "number" => "a number",
        "object" => "a table",
        _ => "a string",
    }
}

fn describe(e: &jsonschema::ValidationError<'_>) -> Violation {
    let pointer = e.instance_path().as_str().to_owned();
    let field = pointer
        .rsplit('/')
        .next()
        .unwrap_or("")
        .replace("~1", "/")
        .replace("~0", "~");
    let mut v = Violation {
        pointer: pointer.clone(),
        at_key: false,
        message: String::new(),
        help: None,
    };
    v.message = match e.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let key = unexpected.first().cloned().unwrap_or_default();
            v.pointer = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
            v.at_key = true;
            if unexpected.len() == 1 {
                format!("unknown field `{key}`")
            } else {
                format!(
                    "unknown fields {}",
                    unexpected
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
        ValidationErrorKind::Required { property } => {
            format!(
                "missing required field `{}`",
                property.as_str().unwrap_or_default()
            )
        }
        ValidationErrorKind::Type { kind } => {
            let want = match kind {
                TypeKind::Single(t) => type_name(t).to_owned(),
                TypeKind::Multiple(ts) => ts
                    .iter()
                    .map(|t| type_name(&t))
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            format!("expected {want}, found {}", json_type(e.instance()))
        }
        ValidationErrorKind::Enum { .. } if field == "platform" => {
            let names: Vec<&str> = PlatformKind::ALL.iter().map(|k| k.as_str()).collect();
            v.help = Some(format!("platforms: {}", names.join(", ")));
            match e.instance().as_str() {
                Some(name) => format!("unknown platform `{name}`"),
                None => "unknown platform".into(),
            }
        }
        ValidationErrorKind::Enum { options } => {
            let opts: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(|o| o.to_string()).collect())
                .unwrap_or_default();
            format!("must be one of {}", opts.join(", "))
        }
        ValidationErrorKind::Constant { expected_value } => format!("must be {expected_value}"),
        ValidationErrorKind::Pattern { pattern } if pattern == ID_PATTERN => {
            v.help = Some(
                "ids are 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit"
                    .into(),
            );
            "invalid id".into()
        }
        ValidationErrorKind::Pattern { pattern } => {
            format!("does not match the pattern `{pattern}`")
        }
        ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::OneOfMultipleValid { .. }
            if e.schema_path().as_str().contains("secret_ref")
                || pointer.contains("/credentials/")
                || field == "secret" =>
        {
            v.help = Some(
                "write `{ env = \"NAME\" }`, `{ file = \"NAME\" }` or `{ sealed = \"sos1:…\" }`"
                    .into(),
            );
            "expected a secret reference".into()
        }
        ValidationErrorKind::AnyOf { .. }
            if pointer.contains("/credentials") && !pointer.contains("/credentials/") =>
        {
            "credentials are incomplete for this platform".into()
        }
        ValidationErrorKind::AnyOf { .. } => {
            format!("`{field}` has a value this field does not accept")
        }
        ValidationErrorKind::UniqueItems => "items must be unique".into(),
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::MinLength { .. } => "must not be empty".into(),
        other => format!("invalid value ({} check failed)", other.keyword()),
    };
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_compile() {
        for k in SchemaKind::ALL {
            assert!(k.document().is_object());
            assert!(k.render().ends_with("}\n"));
        }
    }

    #[test]
    fn integration_violations_point_at_fields() {
        let bad = json!({"id": "Bad_Id", "platform": "slack", "credentials": {}, "colour": 1});
        let v = validate(SchemaKind::Integration, &bad);
        assert!(
            v.iter().any(|v| v.pointer == "/colour"
                && v.at_key
                && v.message == "unknown field `colour`"),
            "{v:?}"
        );
        assert!(
            v.iter()
                .any(|v| v.pointer == "/id" && v.message == "invalid id"),
            "{v:?}"
        );
    }

    #[test]
    fn code_params_accept_names_numbers_and_templates() {
        let s = param_type_schema(&ParamType::Code(&[("open", 2), ("pending", 3)]));
        let val = jsonschema::validator_for(&s).unwrap();
        assert!(val.is_valid(&json!(2)));
        assert!(val.is_valid(&json!("open")));
        assert!(val.is_valid(&json!("{{ ticket.status }}")));
        assert!(!val.is_valid(&json!(9)));
        assert!(!val.is_valid(&json!("closed")));
    }
}
