//! An action's rendered parameters, checked against its catalogue entry before anything is
//! sent: anything other than a table, an unknown name (the error lists the known ones), a value
//! of the wrong type, a missing required parameter or an unmet `require_one_of` group is
//! [`PlatformError::Invalid`]. Rendered values are taken leniently where the meaning is plain,
//! because templates render text: `"true"`/`"false"` for a boolean, `"42"` for an integer, `"a,b"`
//! for a list of strings, a number where text is expected; `null` counts as absent.
//!
//! Every live connector uses this one [`Params`]; rules that belong to one platform (id shapes,
//! limits, custom status numbers, Notion property values…) stay in the platform, either through
//! [`Params::check_with`] or as helpers built on the accessors here.

use serde_json::{Map, Value};

use crate::platforms::catalog::{ActionSpec, Descriptor, ParamSpec, ParamType};
use crate::platforms::connector::PlatformError;

/// The catalogue entry of the action called `action` on `platform`; an action the platform
/// does not have is [`PlatformError::Invalid`].
pub(crate) fn action_spec(
    platform: &Descriptor,
    action: &str,
) -> Result<&'static ActionSpec, PlatformError> {
    platform.action(action).ok_or_else(|| {
        PlatformError::Invalid(format!("{} has no action `{action}`", platform.kind))
    })
}

/// Checked parameters of one action.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params<'a> {
    action: &'static str,
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Params<'a> {
    /// Checks names, types, required parameters and `require_one_of` groups.
    pub(crate) fn check(spec: &ActionSpec, v: &'a Value) -> Result<Self, PlatformError> {
        Self::check_with(spec, v, |_, _| None)
    }

    /// [`Params::check`] where `custom` may take over the type check of a present, non-null
    /// value: `None` keeps the generic check, `Some(Err(why))` rejects the value with
    /// "`<action>: parameter `<name>`: <why>`".
    pub(crate) fn check_with(
        spec: &ActionSpec,
        v: &'a Value,
        custom: impl Fn(&ParamSpec, &Value) -> Option<Result<(), String>>,
    ) -> Result<Self, PlatformError> {
        let action = spec.name;
        let map = match v {
            Value::Null => None,
            Value::Object(m) => Some(m),
            _ => {
                return Err(PlatformError::Invalid(format!(
                    "{action}: parameters must be a table"
                )));
            }
        };
        let p = Params { action, map };
        for (k, v) in map.into_iter().flatten() {
            let Some(ps) = spec.params.iter().find(|ps| ps.name == k) else {
                let known: Vec<&str> = spec.params.iter().map(|ps| ps.name).collect();
                return Err(PlatformError::Invalid(format!(
                    "{action}: unknown parameter `{k}` (known: {})",
                    known.join(", ")
                )));
            };
            if v.is_null() {
                continue;
            }
            match custom(ps, v) {
                Some(Ok(())) => {}
                Some(Err(why)) => {
                    return Err(PlatformError::Invalid(format!(
                        "{action}: parameter `{k}`: {why}"
                    )));
                }
                None if type_ok(&ps.ty, v) => {}
                None => {
                    return Err(PlatformError::Invalid(format!(
                        "{action}: parameter `{k}` should be {}{}, got {}",
                        type_name(&ps.ty),
                        allowed(&ps.ty),
                        json_kind(v)
                    )));
                }
            }
        }
        for ps in spec.params.iter().filter(|ps| ps.required) {
            if p.raw(ps.name).is_none() {
                return Err(p.missing(ps.name));
            }
        }
        for group in spec.require_one_of {
            if !group.iter().any(|n| p.raw(n).is_some()) {
                return Err(PlatformError::Invalid(format!(
                    "{action}: needs at least one of `{}`",
                    group.join("`, `")
                )));
            }
        }
        Ok(p)
    }

    /// The action these parameters are for.
    pub(crate) fn action(&self) -> &'static str {
        self.action
    }

    /// `PlatformError::Invalid("<action>: <why>")`.
    pub(crate) fn invalid(&self, why: impl std::fmt::Display) -> PlatformError {
        PlatformError::Invalid(format!("{}: {why}", self.action))
    }

    /// The error for a required parameter that is absent.
    pub(crate) fn missing(&self, name: &str) -> PlatformError {
        self.invalid(format_args!("missing required parameter `{name}`"))
    }

    /// The value of `name`, `null` counting as absent.
    pub(crate) fn raw(&self, name: &str) -> Option<&'a Value> {
        self.map?.get(name).filter(|v| !v.is_null())
    }

    /// A string parameter (numbers are written out).
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        match self.raw(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// A boolean parameter (`"true"` / `"false"` accepted).
    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.raw(name).and_then(bool_value)
    }

    /// An integer parameter (a numeric string accepted).
    pub(crate) fn int(&self, name: &str) -> Option<i64> {
        self.raw(name).and_then(int_value)
    }

    /// A list of strings (a comma-separated string accepted), each trimmed; blanks dropped.
    pub(crate) fn strings(&self, name: &str) -> Option<Vec<String>> {
        let items: Vec<String> = match self.raw(name)? {
            Value::Array(a) => a
                .iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.trim().to_owned()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            Value::String(s) => s.split(',').map(|x| x.trim().to_owned()).collect(),
            _ => return None,
        };
        Some(items.into_iter().filter(|s| !s.is_empty()).collect())
    }
}

/// `"true"` / `"false"` (surrounding blanks ignored).
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A boolean, or its text.
pub(crate) fn bool_value(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool(s),
        _ => None,
    }
}

/// A whole number, or its text.
pub(crate) fn int_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Whether a rendered value fits a parameter type (leniently, see the module docs). A code is
/// one of its names (case ignored) or numbers.
pub(crate) fn type_ok(ty: &ParamType, v: &Value) -> bool {
    match ty {
        ParamType::String => v.is_string() || v.is_number(),
        ParamType::Integer => int_value(v).is_some(),
        ParamType::Number => v.is_number(),
        ParamType::Bool => bool_value(v).is_some(),
        ParamType::StringList => {
            v.is_string()
                || v.as_array()
                    .is_some_and(|a| a.iter().all(|x| x.is_string() || x.is_number()))
        }
        ParamType::Object => v.is_object(),
        ParamType::ObjectList => v.as_array().is_some_and(|a| a.iter().all(Value::is_object)),
        ParamType::Any => true,
        ParamType::Enum(values) => v.as_str().is_some_and(|s| values.contains(&s)),
        ParamType::Code(codes) => match v {
            Value::String(s) => codes.iter().any(|(n, _)| n.eq_ignore_ascii_case(s)),
            Value::Number(n) => n
                .as_i64()
                .is_some_and(|n| codes.iter().any(|(_, c)| *c == n)),
            _ => false,
        },
    }
}

/// What a parameter type expects, in words ("a boolean").
pub(crate) fn type_name(ty: &ParamType) -> &'static str {
    match ty {
        ParamType::String => "a string",
        ParamType::Integer => "an integer",
        ParamType::Number => "a number",
        ParamType::Bool => "a boolean",
        ParamType::StringList => "a list of strings",
        ParamType::Object => "a table",
        ParamType::ObjectList => "a list of tables",
        ParamType::Any => "any value",
        ParamType::Enum(_) | ParamType::Code(_) => "one of the listed values",
    }
}

/// The listed values of an enum or code type, as " (a, b)"; empty for other types.
fn allowed(ty: &ParamType) -> String {
    match ty {
        ParamType::Enum(values) => format!(" ({})", values.join(", ")),
        ParamType::Code(codes) => {
            let names: Vec<&str> = codes.iter().map(|(n, _)| *n).collect();
            format!(" ({})", names.join(", "))
        }
        _ => String::new(),
    }
}

/// What kind of JSON value was given, in words ("a list").
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::platforms::catalog::params;

    static PARAMS: &[ParamSpec] = params![
        "name": String, required, "a name";
        "count": Integer, optional, "a count";
        "ratio": Number, optional, "a ratio";
        "flag": Bool, optional, "a flag";
        "tags": StringList, optional, "tags";
        "extra": Object, optional, "extra";
        "blocks": ObjectList, optional, "blocks";
        "anything": Any, optional, "anything";
        "mode": Enum(&["fast", "slow"]), optional, "mode";
        "priority": Code(&[("low", 1), ("high", 3)]), optional, "priority";
        "email": String, optional, "email";
        "phone": String, optional, "phone";
    ];
    static GROUPS: &[&[&str]] = &[&["email", "phone"]];

    fn spec() -> ActionSpec {
        ActionSpec {
            name: "do_thing",
            params: PARAMS,
            require_one_of: GROUPS,
            description: "does a thing",
            result: &[],
        }
    }

    fn err(v: Value) -> String {
        match Params::check(&spec(), &v) {
            Err(PlatformError::Invalid(m)) => m,
            other => panic!("expected Invalid for {v}, got {other:?}"),
        }
    }

    #[test]
    fn checks_shape_names_types_required_and_groups() {
        assert_eq!(err(json!(3)), "do_thing: parameters must be a table");
        let m = err(json!({"name": "a", "email": "e", "nope": 1}));
        assert!(
            m.starts_with("do_thing: unknown parameter `nope` (known: name, count,"),
            "{m}"
        );
        assert_eq!(
            err(json!({"name": "a", "email": "e", "flag": "yes"})),
            "do_thing: parameter `flag` should be a boolean, got a string"
        );
        assert_eq!(
            err(json!({"name": "a", "email": "e", "mode": "medium"})),
            "do_thing: parameter `mode` should be one of the listed values (fast, slow), got a string"
        );
        assert_eq!(
            err(json!({"name": "a", "email": "e", "priority": 2})),
            "do_thing: parameter `priority` should be one of the listed values (low, high), got a number"
        );
        assert_eq!(
            err(json!({"email": "e"})),
            "do_thing: missing required parameter `name`"
        );
        assert_eq!(
            err(json!({"name": null, "email": "e"})),
            "do_thing: missing required parameter `name`"
        );
        assert_eq!(
            err(json!({"name": "a"})),
            "do_thing: needs at least one of `email`, `phone`"
        );
        assert_eq!(
            err(json!({"name": "a", "phone": null})),
            "do_thing: needs at least one of `email`, `phone`"
        );
        assert_eq!(
            err(Value::Null),
            "do_thing: missing required parameter `name`"
        );
    }

    #[test]
    fn accepts_rendered_text_leniently() {
        let v = json!({
            "name": 42, "phone": "1", "count": " 7 ", "ratio": 0.5, "flag": " true ",
            "tags": "a, b,,c ", "extra": {}, "blocks": [{}], "anything": [1],
            "mode": "fast", "priority": "HIGH",
        });
        let p = Params::check(&spec(), &v).expect("valid");
        assert_eq!(p.action(), "do_thing");
        assert_eq!(p.string("name").as_deref(), Some("42"));
        assert_eq!(p.int("count"), Some(7));
        assert_eq!(p.bool("flag"), Some(true));
        assert_eq!(
            p.strings("tags"),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(p.raw("email"), None);
        assert_eq!(p.string("extra"), None);
        let v = json!({"name": "n", "email": "e", "tags": [" x ", 3, ""], "priority": 1, "flag": false});
        let p = Params::check(&spec(), &v).expect("valid");
        assert_eq!(p.strings("tags"), Some(vec!["x".into(), "3".into()]));
        assert_eq!(p.bool("flag"), Some(false));
    }

    #[test]
    fn custom_rules_take_over_the_type_check() {
        let v = json!({"name": "a", "email": "e", "priority": 9});
        let custom = |ps: &ParamSpec, v: &Value| {
            (ps.name == "priority").then(|| {
                if v.as_i64().is_some_and(|n| n >= 6) {
                    Ok(())
                } else {
                    Err(format!("expected 6 and above, got {v}"))
                }
            })
        };
        assert!(Params::check_with(&spec(), &v, custom).is_ok());
        assert!(Params::check(&spec(), &v).is_err());
        let v = json!({"name": "a", "email": "e", "priority": 2});
        match Params::check_with(&spec(), &v, custom) {
            Err(PlatformError::Invalid(m)) => assert_eq!(
                m,
                "do_thing: parameter `priority`: expected 6 and above, got 2"
            ),
            other => panic!("{other:?}"),
        }
        let v = json!({"name": "a", "email": "e"});
        let p = Params::check(&spec(), &v).expect("valid");
        assert_eq!(
            p.missing("x").to_string(),
            PlatformError::Invalid("do_thing: missing required parameter `x`".into()).to_string()
        );
    }

    #[test]
    fn actions_are_looked_up_in_the_catalogue() {
        let slack = &crate::platforms::slack::DESCRIPTOR;
        assert_eq!(
            action_spec(slack, "send_message").map(|s| s.name).ok(),
            Some("send_message")
        );
        match action_spec(&crate::platforms::google_sheets::DESCRIPTOR, "nope") {
            Err(PlatformError::Invalid(m)) => assert_eq!(m, "google_sheets has no action `nope`"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(parse_bool(" false"), Some(false));
        assert_eq!(parse_bool("True"), None);
        assert_eq!(int_value(&json!("-3")), Some(-3));
        assert_eq!(int_value(&json!(1.5)), None);
        assert_eq!(bool_value(&json!(1)), None);
        assert_eq!(json_kind(&json!([])), "a list");
        assert_eq!(type_name(&ParamType::ObjectList), "a list of tables");
        assert!(!type_ok(&ParamType::Number, &json!("1")));
        assert!(type_ok(&ParamType::Code(&[("low", 1)]), &json!("LOW")));
        assert!(!type_ok(&ParamType::StringList, &json!([{}])));
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
            prop_oneof![
                Just("name"),
                Just("count"),
                Just("flag"),
                Just("tags"),
                Just("priority"),
                Just("mode"),
                Just("true"),
                Just(" 12 "),
                Just("a,b"),
                Just("fast")
            ]
            .prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("name".to_owned()),
                            Just("count".to_owned()),
                            Just("flag".to_owned()),
                            Just("tags".to_owned()),
                            Just("priority".to_owned()),
                            Just("mode".to_owned()),
                            Just("email".to_owned()),
                            Just("blocks".to_owned()),
                            "[a-z]{1,6}"
                        ],
                        inner
                    ),
                    0..8
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn checking_never_panics(v in any_json()) {
            if let Ok(p) = Params::check(&spec(), &v) {
                for ps in PARAMS {
                    let _ = (p.raw(ps.name), p.string(ps.name), p.bool(ps.name));
                    let _ = (p.int(ps.name), p.strings(ps.name));
                    // whatever passed the check reads back under its type
                    match ps.ty {
                        ParamType::Bool if p.raw(ps.name).is_some() => {
                            prop_assert!(p.bool(ps.name).is_some());
                        }
                        ParamType::Integer if p.raw(ps.name).is_some() => {
                            prop_assert!(p.int(ps.name).is_some());
                        }
                        ParamType::StringList if p.raw(ps.name).is_some() => {
                            prop_assert!(p.strings(ps.name).is_some());
                        }
                        _ => {}
                    }
                }
                prop_assert!(p.raw("name").is_some());
            }
        }
    }
}
