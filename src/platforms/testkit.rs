//! Test helpers and assertions every platform's `tests.rs` shares: building the event context,
//! checking fixtures against the catalogue, checking the catalogue itself, feeding `normalize`
//! junk, and (for `live_tests.rs`) checking that a connector performs every catalogued action.
//! Each platform keeps only its fixture list and its own decisions.

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::params::Params;
use super::{ActionCall, ActionSpec, Connector, Descriptor, EventSpec, Normalized, ParamType};
use crate::rules::ValueType;

/// `(event name, fixture label, body)`; the label is the file name under `fixtures/`.
pub(crate) type Fixture = (&'static str, &'static str, &'static str);

/// A `&[Fixture]` from `("event", "file.json")` pairs, reading `fixtures/<file>` relative to the
/// invoking file. `fixtures![named: "page.created", …]` uses `<event>.json` as the file.
macro_rules! fixtures {
    (named: $($event:literal),* $(,)?) => {
        &[$((
            $event,
            concat!($event, ".json"),
            include_str!(concat!("fixtures/", $event, ".json")),
        )),*]
    };
    ($(($event:literal, $file:literal)),* $(,)?) => {
        &[$(($event, $file, include_str!(concat!("fixtures/", $file)))),*]
    };
}
pub(crate) use fixtures;

/// The event called `name`, or a panic naming the platform.
pub(crate) fn event(desc: &Descriptor, name: &str) -> &'static EventSpec {
    desc.event(name)
        .unwrap_or_else(|| panic!("{}: no event `{name}`", desc.title))
}

/// The body of the fixture labelled `label`.
fn fixture_body(fixtures: &[Fixture], label: &str) -> &'static str {
    fixtures
        .iter()
        .find(|(_, l, _)| *l == label)
        .map(|&(_, _, body)| body)
        .unwrap_or_else(|| panic!("no fixture {label}"))
}

/// The body of the fixture labelled `label`, parsed.
pub(crate) fn fixture_json(fixtures: &[Fixture], label: &str) -> Value {
    parse(label, fixture_body(fixtures, label))
}

fn parse(label: &str, body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{label}: not JSON: {e}"))
}

/// Normalises `body` as `event_name`, panicking with the fixture label and the error on failure.
pub(crate) fn normalize_fixture(
    desc: &Descriptor,
    event_name: &str,
    label: &str,
    body: &str,
) -> Normalized {
    (desc.normalize)(event(desc, event_name), &parse(label, body))
        .unwrap_or_else(|e| panic!("{label}: does not normalise as `{event_name}`: {e}"))
}

/// Normalises the fixture labelled `label` as `event_name`.
pub(crate) fn normalized(
    desc: &Descriptor,
    fixtures: &[Fixture],
    event_name: &str,
    label: &str,
) -> Normalized {
    normalize_fixture(desc, event_name, label, fixture_body(fixtures, label))
}

/// The error message `normalize` gives for `payload` as `event_name`, if it fails.
pub(crate) fn normalize_error(
    desc: &Descriptor,
    event_name: &str,
    payload: &Value,
) -> Option<String> {
    (desc.normalize)(event(desc, event_name), payload)
        .err()
        .map(|e| e.0)
}

/// The context root `{ <objects…>, "changes": … }`.
pub(crate) fn context(n: &Normalized) -> Value {
    let mut root = n.objects.clone();
    root.insert("changes".into(), Value::Object(n.changes.clone()));
    Value::Object(root)
}

/// The value at a dotted path, if every segment exists (it may be `null`).
pub(crate) fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(root, |v, seg| v.as_object()?.get(seg))
}

/// Whether `v` may stand where the catalogue promises `ty` (`null` always may).
pub(crate) fn has_type(ty: ValueType, v: &Value) -> bool {
    match (ty, v) {
        (_, Value::Null) | (ValueType::Any, _) => true,
        (ValueType::String | ValueType::Timestamp, Value::String(_)) => true,
        (ValueType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (ValueType::Number, Value::Number(_)) => true,
        (ValueType::Bool, Value::Bool(_)) => true,
        (ValueType::StringList, Value::Array(a)) => a.iter().all(Value::is_string),
        (ValueType::List, Value::Array(_)) => true,
        (ValueType::Object, Value::Object(_)) => true,
        _ => false,
    }
}

/// `n` is a complete context for `spec`: the primary object is present, every catalogued field
/// is present (possibly `null`) with its type, and every reported change is catalogued.
pub(crate) fn assert_context_complete(spec: &EventSpec, label: &str, n: &Normalized) {
    let root = context(n);
    assert!(
        n.objects.contains_key(spec.primary),
        "{label}: no primary `{}`",
        spec.primary
    );
    for field in spec.fields {
        let value = lookup(&root, field.path)
            .unwrap_or_else(|| panic!("{label}: `{}` missing in {root:#}", field.path));
        assert!(
            has_type(field.ty, value),
            "{label}: `{}` = {value} is not {:?}",
            field.path,
            field.ty
        );
    }
    for key in n.changes.keys() {
        assert!(
            spec.changes.contains(&key.as_str()),
            "{label}: change `{key}` not catalogued for `{}`",
            spec.name
        );
    }
}

/// Normalises a fixture and checks it with [`assert_context_complete`].
pub(crate) fn assert_fixture_complete(
    desc: &Descriptor,
    event_name: &str,
    label: &str,
    body: &str,
) -> Normalized {
    let n = normalize_fixture(desc, event_name, label, body);
    assert_context_complete(event(desc, event_name), label, &n);
    n
}

/// [`assert_fixture_complete`] for every fixture; yields each fixture's label, event and context
/// so the caller can add its platform's envelope checks.
pub(crate) fn assert_every_fixture_complete(
    desc: &Descriptor,
    fixtures: &[Fixture],
) -> Vec<(&'static str, &'static EventSpec, Normalized)> {
    fixtures
        .iter()
        .map(|&(name, label, body)| {
            let n = assert_fixture_complete(desc, name, label, body);
            (label, event(desc, name), n)
        })
        .collect()
}

/// Every event the platform can deliver has at least one fixture.
pub(crate) fn assert_every_deliverable_event_has_a_fixture(
    desc: &Descriptor,
    fixtures: &[Fixture],
) {
    for e in desc.events.iter().filter(|e| e.deliverable) {
        assert!(
            fixtures.iter().any(|(n, _, _)| *n == e.name),
            "{}: no fixture for `{}`",
            desc.title,
            e.name
        );
    }
}

/// The catalogue is internally consistent: names unique (events, actions, params, result fields,
/// credentials, config keys), descriptions filled, field paths unique per event, the primary
/// object catalogued, `require_one_of` naming parameters and credential sets naming credentials.
pub(crate) fn assert_catalogue_sound(desc: &Descriptor) {
    let p = desc.title;
    assert!(!p.is_empty(), "{:?}: no title", desc.kind);
    let described = |what: String, description: &str| {
        assert!(!description.is_empty(), "{p}: {what} has no description");
    };
    assert_unique(desc.events.iter().map(|e| e.name), &format!("{p}: event"));
    for e in desc.events {
        described(format!("event {}", e.name), e.description);
        let fields = format!("{p}: {}: field", e.name);
        assert_unique(e.fields.iter().map(|f| f.path), &fields);
        assert!(
            e.fields
                .iter()
                .any(|f| f.path.starts_with(&format!("{}.", e.primary))),
            "{p}: {} has no field of its primary object",
            e.name
        );
    }
    assert_unique(desc.actions.iter().map(|a| a.name), &format!("{p}: action"));
    for a in desc.actions {
        described(format!("action {}", a.name), a.description);
        let params = format!("{p}: {}: param", a.name);
        assert_unique(a.params.iter().map(|param| param.name), &params);
        for param in a.params {
            described(
                format!("param {}.{}", a.name, param.name),
                param.description,
            );
        }
        for name in a.require_one_of.iter().flat_map(|group| group.iter()) {
            assert!(
                a.params.iter().any(|param| param.name == *name),
                "{p}: {} require_one_of names unknown `{name}`",
                a.name
            );
        }
        let results = format!("{p}: {}: result field", a.name);
        assert_unique(a.result.iter().map(|f| f.path), &results);
    }
    assert_unique(
        desc.credentials.iter().map(|c| c.name),
        &format!("{p}: credential"),
    );
    for c in desc.credentials {
        described(format!("credential {}", c.name), c.description);
    }
    for name in desc.credential_sets.iter().flat_map(|set| set.iter()) {
        assert!(
            desc.credential(name).is_some(),
            "{p}: credential set names unknown `{name}`"
        );
    }
    assert_unique(
        desc.config.iter().map(|c| c.name),
        &format!("{p}: config key"),
    );
    for c in desc.config {
        described(format!("config key {}", c.name), c.description);
    }
}

/// Parameters that pass the catalogue checks of `spec` ([`Params::check`]): every required
/// parameter, the first of each `require_one_of` group and every parameter `values` gives (a
/// table: `values[action][name]`, else `values[name]`); those not given are a plain value of
/// their type.
pub(crate) fn sample_parameters(spec: &ActionSpec, values: &Value) -> Value {
    let given = |name: &str| {
        values
            .get(spec.name)
            .and_then(|own| own.get(name))
            .or_else(|| values.get(name))
    };
    let first_of_groups: Vec<&str> = spec
        .require_one_of
        .iter()
        .filter_map(|g| g.first())
        .copied()
        .collect();
    let mut out = serde_json::Map::new();
    for p in spec.params {
        if !(p.required || first_of_groups.contains(&p.name) || given(p.name).is_some()) {
            continue;
        }
        let v = given(p.name).cloned().unwrap_or_else(|| match &p.ty {
            ParamType::String | ParamType::Any => json!("sample"),
            ParamType::Integer | ParamType::Number => json!(1),
            ParamType::Bool => json!(true),
            ParamType::StringList => json!(["sample"]),
            ParamType::Object => json!({}),
            ParamType::ObjectList => json!([{}]),
            ParamType::Enum(values) => json!(values.first()),
            ParamType::Code(codes) => json!(codes.first().map(|(_, code)| code)),
        });
        out.insert(p.name.to_owned(), v);
    }
    let out = Value::Object(out);
    if let Err(e) = Params::check(spec, &out) {
        panic!(
            "{}: the sample parameters fail the catalogue checks: {e}",
            spec.name
        );
    }
    out
}

/// Every catalogued action of `desc` reaches the platform through `connector`: called with
/// [`sample_parameters`] (given `values`), it sends at least one request, whatever the answer.
/// `requests` counts the requests the fake has received. An action missing from the
/// connector's dispatch `match` fails here.
pub(crate) async fn assert_every_action_reaches_the_platform(
    desc: &Descriptor,
    connector: &dyn Connector,
    values: &Value,
    requests: impl Fn() -> usize,
) {
    for spec in desc.actions {
        let call = ActionCall {
            action: spec.name.into(),
            parameters: sample_parameters(spec, values),
            idempotency_key: format!("sample/{}", spec.name),
        };
        let before = requests();
        let outcome = connector.execute(&call).await;
        assert!(
            requests() > before,
            "{}: `{}` sent no request (is it in the connector's `execute` match?): {outcome:?}",
            desc.title,
            spec.name
        );
    }
}

/// No name occurs twice among `names`; `what` says what they name, for the message.
fn assert_unique<'a>(names: impl IntoIterator<Item = &'a str>, what: &str) {
    let mut seen = HashSet::new();
    for name in names {
        assert!(seen.insert(name), "{what} `{name}` listed twice");
    }
}

/// Every change an event reports is also a catalogued field of its primary object (platforms
/// whose changes may name attributes the context does not carry, like Zendesk's, skip this).
pub(crate) fn assert_changes_are_catalogued_fields(desc: &Descriptor) {
    for e in desc.events {
        for c in e.changes {
            let path = format!("{}.{c}", e.primary);
            assert!(
                e.fields.iter().any(|f| f.path == path),
                "{}: change {c} of {} is not a catalogued field",
                desc.title,
                e.name
            );
        }
    }
}

/// Runs `normalize` for every event of the platform on `payload`; only a panic fails.
pub(crate) fn normalize_every_event(desc: &Descriptor, payload: &Value) {
    for e in desc.events {
        let _ = (desc.normalize)(e, payload);
    }
}

/// Every JSON pointer of a value's subtrees.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                pointers(child, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// Replaces each subtree of each fixture in turn with junk of every JSON kind and normalises
/// the result as every event: none may panic.
pub(crate) fn normalize_mutated_fixtures(desc: &Descriptor, fixtures: &[Fixture]) {
    let junk = [
        Value::Null,
        json!(true),
        json!(-1),
        json!(1.5),
        json!(""),
        json!("{x:{from:{to:"),
        json!([]),
        json!({}),
    ];
    let mut done = HashSet::new();
    for &(_, label, body) in fixtures {
        if !done.insert(label) {
            continue;
        }
        let original = parse(label, body);
        let mut ptrs = Vec::new();
        pointers(&original, String::new(), &mut ptrs);
        for ptr in &ptrs {
            for j in &junk {
                let mut v = original.clone();
                if let Some(slot) = v.pointer_mut(ptr) {
                    *slot = j.clone();
                }
                normalize_every_event(desc, &v);
            }
        }
    }
}

/// `normalize` refuses every one of `payloads` as `event_name` (with an error, not a panic).
pub(crate) fn assert_refused(desc: &Descriptor, event_name: &str, payloads: &[Value]) {
    let spec = event(desc, event_name);
    for j in payloads {
        assert!(
            (desc.normalize)(spec, j).is_err(),
            "{}: `{event_name}` accepted {j}",
            desc.title
        );
    }
}

/// The words a platform's payloads are made of, for [`arb_json`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vocabulary {
    /// String leaves that steer `normalize` (event types, states…), chosen among.
    pub(crate) words: &'static [&'static str],
    /// A regex for free string leaves.
    pub(crate) text: &'static str,
    /// Object keys the payloads use, chosen among.
    pub(crate) keys: &'static [&'static str],
    /// A regex for free object keys, weighted like one more key; `None` for only `keys`.
    pub(crate) free_key: Option<&'static str>,
    /// At most this many entries per object (exclusive).
    pub(crate) max_entries: usize,
}

/// Arbitrary JSON built from a platform's vocabulary: null, booleans, integers (signed and
/// unsigned), floats, free text and vocabulary words as leaves; arrays and objects with
/// vocabulary keys up to depth 4.
pub(crate) fn arb_json(vocab: Vocabulary) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        vocab.text.prop_map(Value::from),
        prop::sample::select(vocab.words).prop_map(Value::from),
    ];
    let keys = vocab.keys;
    let free = vocab.free_key;
    let max = vocab.max_entries;
    leaf.prop_recursive(4, 48, 6, move |inner| {
        let known = prop::sample::select(keys).prop_map(str::to_owned);
        let key = match free {
            Some(re) => {
                prop_oneof![u32::try_from(keys.len()).unwrap_or(u32::MAX) => known, 1 => re].boxed()
            }
            None => known.boxed(),
        };
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..max)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

// === inbound requests ===

/// Headers from name/value pairs (test values are valid header values).
pub(crate) fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            *name,
            http::HeaderValue::from_str(value).expect("header value"),
        );
    }
    map
}

/// Verification keys holding only a secret.
pub(crate) fn keys(secret: Option<&str>) -> crate::platforms::VerifyKeys {
    crate::platforms::VerifyKeys {
        secret: secret.map(|s| crate::secrets::Secret::from(s.to_owned())),
        ..crate::platforms::VerifyKeys::default()
    }
}

/// Property: `verify` and `parse` of `kind` never panic, whatever the headers (drawn from
/// `header_names` and `content-type`), body (random, or one of `bodies`), clock, keys and method.
pub(crate) fn assert_inbound_never_panics(
    kind: crate::platforms::PlatformKind,
    header_names: &[&'static str],
    bodies: &[&str],
) {
    use proptest::prelude::*;
    use proptest::test_runner::TestRunner;

    let mut names: Vec<&'static str> = header_names.to_vec();
    names.push("content-type");
    let mut known: Vec<Vec<u8>> = bodies.iter().map(|b| b.as_bytes().to_vec()).collect();
    known.push(Vec::new());
    let strategy = (
        proptest::collection::vec(
            (
                prop::sample::select(names),
                proptest::collection::vec(any::<u8>(), 0..80),
            ),
            0..8,
        ),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            prop::sample::select(known)
        ],
        any::<i64>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..48)),
        proptest::option::of(".{0,40}"),
        proptest::option::of(".{0,20}"),
        prop::sample::select(vec![
            http::Method::POST,
            http::Method::GET,
            http::Method::HEAD,
            http::Method::PUT,
        ]),
    );
    let mut runner = TestRunner::default();
    let result = runner.run(
        &strategy,
        |(pairs, body, now, secret, callback_url, channel_id, method)| {
            let mut headers = http::HeaderMap::new();
            for (name, value) in pairs {
                if let Ok(v) = http::HeaderValue::from_bytes(&value) {
                    headers.append(name, v);
                }
            }
            let req = crate::platforms::InboundRequest {
                method: &method,
                headers: &headers,
                body: &body,
                now_unix: now,
            };
            let keys = crate::platforms::VerifyKeys {
                secret: secret.map(crate::secrets::Secret::new),
                callback_url,
                channel_id,
            };
            let _ = crate::platforms::verify(kind, &req, &keys);
            let _ = crate::platforms::parse(kind, &req);
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{kind} inbound handling panicked: {e}");
    }
}

/// Performs `call` the way the executor does with one job step: sent again while the failure
/// says a retry may succeed ([`super::PlatformError::retryable`]), at most `attempts` times;
/// the last result. What a fake that loses answers ([`super::fakekit::FakeServer::lose_answers`])
/// checks a create against: a blind retry creates the thing twice.
pub(crate) async fn as_the_executor_would(
    connector: &dyn Connector,
    call: &ActionCall,
    attempts: usize,
) -> Result<super::ActionOutput, super::PlatformError> {
    let mut result = connector.execute(call).await;
    for _ in 1..attempts {
        match &result {
            Err(e) if e.retryable() => result = connector.execute(call).await,
            _ => break,
        }
    }
    result
}

/// Asserts that every action a platform's `resend` table names is catalogued, and that every
/// action whose name says it creates (`create_*`, `add_*`, `append_*`, `send_*`, `upload_*`)
/// is listed: a new creating action must decide how it may be sent again.
pub(crate) fn assert_resend_table_is_complete(d: &Descriptor) {
    for (name, _) in d.resend {
        assert!(
            d.action(name).is_some(),
            "{:?}: `{name}` is not an action",
            d.kind
        );
    }
    for a in d.actions {
        let creates = ["create_", "add_", "append_", "send_", "upload_"]
            .iter()
            .any(|p| a.name.starts_with(p));
        if creates {
            assert!(
                d.resend.iter().any(|(n, _)| *n == a.name),
                "{:?}: `{}` creates something; say in `RESEND` how it may be sent again",
                d.kind,
                a.name
            );
        }
    }
}

#[test]
fn every_creating_action_says_how_it_may_be_sent_again() {
    for kind in super::PlatformKind::ALL {
        assert_resend_table_is_complete(kind.descriptor());
    }
}
