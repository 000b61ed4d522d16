//! Notion property values built from rule parameters, and Notion's request limits checked
//! before anything is sent.
//!
//! A rule gives each property as a one-key table naming the property's type, with either a
//! plain value (turned into Notion's shape here) or Notion's own shape (passed through):
//!
//! | type | plain value | sent as |
//! |---|---|---|
//! | `title`, `rich_text` | text, or a list of texts | `[{"type": "text", "text": {"content": …}}]` |
//! | `number` | a number or numeric text; `null` clears | the number |
//! | `checkbox` | `true`/`false` (or that text) | the boolean |
//! | `select`, `status` | an option name; `null` clears | `{"name": …}` |
//! | `multi_select` | names, as a list or comma-separated | `[{"name": …}]` |
//! | `date` | an ISO-8601 date or date-time; `null` clears | `{"start": …}` |
//! | `people`, `relation` | ids, as a list or comma-separated | `[{"id": …}]` |
//! | `url`, `email`, `phone_number` | text; `null` clears | the text |
//! | `files` | external URLs, as a list or comma-separated | `[{"name", "type": "external", "external": {"url"}}]` |
//!
//! Limits (Notion's request limits; exceeding them is a `validation_error` at Notion, so they
//! are refused here with the offending place named): a text `content`, a link or any URL at
//! most 2,000 characters, an email or phone number at most 200, an equation at most 1,000, any
//! array at most 100 items, at most 1,000 blocks and 500 KB per request.

use serde_json::{Map, Value, json};

/// Most characters of a rich-text `content`, a link URL or a URL property.
pub const MAX_TEXT: usize = 2000;
/// Most characters of an email or phone number property.
pub const MAX_SHORT: usize = 200;
/// Most characters of an equation expression.
pub const MAX_EQUATION: usize = 1000;
/// Most items of any array.
pub const MAX_ITEMS: usize = 100;
/// Most blocks in one request.
pub const MAX_BLOCKS: usize = 1000;
/// Most bytes of one request body.
pub const MAX_BODY_BYTES: usize = 500 * 1000;

/// Property types [`property`] builds.
pub const TYPES: &[&str] = &[
    "title",
    "rich_text",
    "number",
    "checkbox",
    "select",
    "status",
    "multi_select",
    "date",
    "people",
    "relation",
    "url",
    "email",
    "phone_number",
    "files",
];

/// The rich-text array of one plain text (refused beyond [`MAX_TEXT`] characters).
pub fn rich_text(text: &str, at: &str) -> Result<Value, String> {
    check_len(text, MAX_TEXT, at)?;
    Ok(json!([{ "type": "text", "text": { "content": text } }]))
}

/// Builds the `properties` object of a request from the rule's `properties` table.
pub fn properties(given: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (name, v) in given {
        if name.trim().is_empty() {
            return Err("a property name is empty".into());
        }
        out.insert(name.clone(), property(name, v)?);
    }
    Ok(out)
}

/// One property value: `{"<type>": <plain value or Notion's shape>}`.
pub fn property(name: &str, v: &Value) -> Result<Value, String> {
    let at = format!("property `{name}`");
    let hint = || {
        format!(
            "{at}: give a table naming the property's type, e.g. {{ select = \"High\" }} (types: {})",
            TYPES.join(", ")
        )
    };
    let Some(m) = v.as_object() else {
        return Err(hint());
    };
    // Notion's own shape may carry `id`/`type` next to the value key.
    let keys: Vec<&String> = m.keys().filter(|k| *k != "id" && *k != "type").collect();
    let [ty] = keys.as_slice() else {
        return Err(hint());
    };
    let ty = ty.as_str();
    let value = &m[ty];
    let built = match ty {
        "title" | "rich_text" => texts(value, &format!("{at}.{ty}"))?,
        "number" => match value {
            Value::Null | Value::Number(_) => value.clone(),
            Value::String(s) => {
                let n: f64 = s
                    .trim()
                    .parse()
                    .map_err(|_| format!("{at}: `{s}` is not a number"))?;
                serde_json::Number::from_f64(n)
                    .map(Value::Number)
                    .ok_or_else(|| format!("{at}: `{s}` is not a finite number"))?
            }
            _ => return Err(format!("{at}: a number is expected")),
        },
        "checkbox" => match value {
            Value::Bool(_) => value.clone(),
            Value::String(s) if s.trim() == "true" => Value::Bool(true),
            Value::String(s) if s.trim() == "false" => Value::Bool(false),
            _ => return Err(format!("{at}: `true` or `false` is expected")),
        },
        "select" | "status" => match value {
            Value::Null | Value::Object(_) => value.clone(),
            Value::String(s) if !s.trim().is_empty() => {
                check_len(s, MAX_SHORT, &at)?;
                json!({ "name": s })
            }
            _ => return Err(format!("{at}: an option name is expected")),
        },
        "multi_select" => list(value, &at, |s| json!({ "name": s }))?,
        "people" | "relation" => list(value, &at, |s| json!({ "id": s }))?,
        "files" => list(value, &at, |s| {
            let name: String = s
                .rsplit('/')
                .next()
                .unwrap_or(s)
                .chars()
                .take(100)
                .collect();
            json!({ "name": name, "type": "external", "external": { "url": s } })
        })?,
        "date" => match value {
            Value::Null | Value::Object(_) => value.clone(),
            Value::String(s) if !s.trim().is_empty() => json!({ "start": s.trim() }),
            _ => return Err(format!("{at}: an ISO-8601 date is expected")),
        },
        "url" | "email" | "phone_number" => {
            let max = if ty == "url" { MAX_TEXT } else { MAX_SHORT };
            match value {
                Value::Null => Value::Null,
                Value::String(s) => {
                    check_len(s, max, &at)?;
                    Value::String(s.clone())
                }
                _ => return Err(format!("{at}: text is expected")),
            }
        }
        other => {
            return Err(format!(
                "{at}: unknown property type `{other}` (types: {})",
                TYPES.join(", ")
            ));
        }
    };
    let mut out = Map::new();
    out.insert(ty.to_owned(), built);
    Ok(Value::Object(out))
}

/// A rich-text array from text, a list of texts, or rich-text objects (passed through).
fn texts(v: &Value, at: &str) -> Result<Value, String> {
    match v {
        Value::String(s) => rich_text(s, at),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => {
                        check_len(s, MAX_TEXT, &format!("{at}[{i}]"))?;
                        out.push(json!({ "type": "text", "text": { "content": s } }));
                    }
                    Value::Object(_) => out.push(item.clone()),
                    _ => return Err(format!("{at}[{i}]: text or a rich-text object is expected")),
                }
            }
            Ok(Value::Array(out))
        }
        Value::Null => Ok(json!([])),
        _ => Err(format!("{at}: text is expected")),
    }
}

/// A list from a list of texts/objects or a comma-separated text, each text made by `make`.
fn list(v: &Value, at: &str, make: impl Fn(&str) -> Value) -> Result<Value, String> {
    let items: Vec<Value> = match v {
        Value::Null => Vec::new(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(&make)
            .collect(),
        Value::Array(a) => {
            let mut out = Vec::with_capacity(a.len());
            for (i, x) in a.iter().enumerate() {
                match x {
                    Value::String(s) if !s.trim().is_empty() => out.push(make(s.trim())),
                    Value::Object(_) => out.push(x.clone()),
                    _ => return Err(format!("{at}[{i}]: text or an object is expected")),
                }
            }
            out
        }
        _ => return Err(format!("{at}: a list is expected")),
    };
    Ok(Value::Array(items))
}

fn check_len(s: &str, max: usize, at: &str) -> Result<(), String> {
    let n = s.chars().count();
    if n > max {
        return Err(format!("{at}: {n} characters, Notion allows at most {max}"));
    }
    Ok(())
}

/// Checks a whole request body against Notion's limits: arrays, text contents, links, URLs,
/// equations, email and phone properties, the block count and the encoded size.
pub fn check_limits(body: &Value) -> Result<(), String> {
    walk(body, "body", None)?;
    let blocks = body.get("children").map_or(0, count_blocks);
    if blocks > MAX_BLOCKS {
        return Err(format!(
            "body: {blocks} blocks, Notion allows at most {MAX_BLOCKS} per request"
        ));
    }
    let size = serde_json::to_vec(body).map_or(0, |b| b.len());
    if size > MAX_BODY_BYTES {
        return Err(format!(
            "body: {size} bytes, Notion allows at most {MAX_BODY_BYTES}"
        ));
    }
    Ok(())
}

fn walk(v: &Value, at: &str, key: Option<&str>) -> Result<(), String> {
    match v {
        Value::Array(a) => {
            if a.len() > MAX_ITEMS {
                return Err(format!(
                    "{at}: {} items, Notion allows at most {MAX_ITEMS}",
                    a.len()
                ));
            }
            for (i, x) in a.iter().enumerate() {
                walk(x, &format!("{at}[{i}]"), None)?;
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                let here = format!("{at}.{k}");
                if let Value::String(s) = x {
                    let max = match (key, k.as_str()) {
                        (Some("text"), "content") | (_, "url") => Some(MAX_TEXT),
                        (_, "expression") => Some(MAX_EQUATION),
                        (_, "email" | "phone_number") => Some(MAX_SHORT),
                        _ => None,
                    };
                    if let Some(max) = max {
                        check_len(s, max, &here)?;
                    }
                }
                walk(x, &here, Some(k))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Blocks in a `children` array, nested children included.
fn count_blocks(children: &Value) -> usize {
    children.as_array().map_or(0, |a| {
        a.iter()
            .map(|b| {
                let nested = b
                    .as_object()
                    .and_then(|o| {
                        o.get("children").or_else(|| {
                            o.get("type")
                                .and_then(Value::as_str)
                                .and_then(|t| o.get(t))
                                .and_then(|inner| inner.get("children"))
                        })
                    })
                    .map_or(0, count_blocks);
                1 + nested
            })
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_become_notion_shapes() {
        let given = json!({
            "Name": {"title": "Ticket #123"},
            "Summary": {"rich_text": ["a", {"text": {"content": "b"}}]},
            "Priority": {"select": "High"},
            "State": {"status": "Open"},
            "Tags": {"multi_select": "billing, urgent"},
            "Count": {"number": "3"},
            "Done": {"checkbox": "false"},
            "Due": {"date": "2026-01-31"},
            "Owner": {"people": ["u1"]},
            "Related": {"relation": "p1,p2"},
            "Link": {"url": "https://example.com/t/1"},
            "Mail": {"email": null},
            "Attachment": {"files": ["https://example.com/a/report.pdf"]},
            "Shaped": {"id": "x", "type": "select", "select": {"id": "opt1"}},
        });
        let p = properties(given.as_object().expect("object")).expect("built");
        assert_eq!(
            p["Name"],
            json!({"title": [{"type": "text", "text": {"content": "Ticket #123"}}]})
        );
        assert_eq!(
            p["Summary"]["rich_text"][1],
            json!({"text": {"content": "b"}})
        );
        assert_eq!(p["Priority"], json!({"select": {"name": "High"}}));
        assert_eq!(p["State"], json!({"status": {"name": "Open"}}));
        assert_eq!(
            p["Tags"],
            json!({"multi_select": [{"name": "billing"}, {"name": "urgent"}]})
        );
        assert_eq!(p["Count"], json!({"number": 3.0}));
        assert_eq!(p["Done"], json!({"checkbox": false}));
        assert_eq!(p["Due"], json!({"date": {"start": "2026-01-31"}}));
        assert_eq!(p["Owner"], json!({"people": [{"id": "u1"}]}));
        assert_eq!(
            p["Related"],
            json!({"relation": [{"id": "p1"}, {"id": "p2"}]})
        );
        assert_eq!(p["Mail"], json!({"email": null}));
        assert_eq!(
            p["Attachment"]["files"][0],
            json!({"name": "report.pdf", "type": "external", "external": {"url": "https://example.com/a/report.pdf"}})
        );
        assert_eq!(p["Shaped"], json!({"select": {"id": "opt1"}}));
    }

    #[test]
    fn unusable_values_are_explained() {
        let cases = [
            (json!("High"), "give a table naming the property's type"),
            (json!({"select": "a", "number": 1}), "give a table"),
            (json!({"colour": "red"}), "unknown property type `colour`"),
            (json!({"number": "many"}), "`many` is not a number"),
            (json!({"checkbox": "yes"}), "`true` or `false`"),
            (json!({"title": 5}), "text is expected"),
            (json!({"people": [1]}), "text or an object"),
            (json!({"date": 3}), "ISO-8601"),
        ];
        for (v, want) in cases {
            let e = property("P", &v).expect_err("refused");
            assert!(e.contains("property `P`") && e.contains(want), "{e}");
        }
    }

    #[test]
    fn limits_are_enforced_with_the_place_named() {
        let long = "x".repeat(MAX_TEXT + 1);
        let e = property("Name", &json!({"title": long})).expect_err("too long");
        assert!(
            e.contains("2001 characters, Notion allows at most 2000"),
            "{e}"
        );
        assert!(rich_text(&"é".repeat(MAX_TEXT), "t").is_ok());
        let e = property("Mail", &json!({"email": "a".repeat(201)})).expect_err("long email");
        assert!(e.contains("at most 200"), "{e}");

        let many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
        let p = property("Tags", &json!({"multi_select": many})).expect("built");
        let e = check_limits(&json!({"properties": {"Tags": p}})).expect_err("101 items");
        assert_eq!(
            e,
            "body.properties.Tags.multi_select: 101 items, Notion allows at most 100"
        );
        let e = check_limits(
            &json!({"children": [{"paragraph": {"rich_text": [{"text": {"content": "y".repeat(2001)}}]}}]}),
        )
        .expect_err("long content in a block");
        assert!(
            e.contains("body.children[0].paragraph.rich_text[0].text.content"),
            "{e}"
        );
        let e = check_limits(&json!({"icon": {"external": {"url": "u".repeat(2001)}}}))
            .expect_err("long url");
        assert!(e.contains("icon.external.url"), "{e}");

        // 100 blocks of 10 nested children each: 1,100 blocks.
        let nested: Vec<Value> = (0..10)
            .map(|_| json!({"type": "paragraph", "paragraph": {}}))
            .collect();
        let blocks: Vec<Value> = (0..100)
            .map(|_| json!({"type": "toggle", "toggle": {"children": nested.clone()}}))
            .collect();
        let e = check_limits(&json!({"children": blocks})).expect_err("too many blocks");
        assert!(e.contains("1100 blocks"), "{e}");
        let big: Vec<Value> = (0..100)
            .map(|_| json!({"text": {"content": "z".repeat(1999)}}))
            .collect();
        let body = json!({"a": big.clone(), "b": big.clone(), "c": big.clone()});
        assert!(check_limits(&body).expect_err("too big").contains("bytes"));
        assert!(check_limits(&json!({"a": big})).is_ok());
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z ,0-9.-]{0,12}".prop_map(Value::String),
            prop::sample::select(TYPES.to_vec()).prop_map(|t| Value::String(t.to_owned())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        prop::sample::select(TYPES.to_vec()).prop_map(str::to_owned),
                        "[a-z_]{1,8}",
                    ],
                    inner,
                    0..4,
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn building_and_limits_never_panic(v in arb_json()) {
            let _ = property("P", &v);
            if let Some(m) = v.as_object() {
                let _ = properties(m);
            }
            let _ = check_limits(&v);
            let _ = check_limits(&json!({"children": v}));
        }
    }
}
