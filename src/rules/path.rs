//! Field paths (`ticket.requester.email`, `actions[0].result.id`).
//!
//! Guarantees:
//!
//! - [`FieldPath::parse`] accepts `key(.key | [index] | ["quoted key"])*` where a plain key is
//!   ASCII letters, digits, `_` and `-`; it never panics and reports the byte offset of the
//!   first problem.
//! - `Display` round-trips: `FieldPath::parse(&p.to_string()) == Ok(p)` for every non-empty path,
//!   including keys that need quoting (they are printed as `["…"]`).
//! - [`FieldPath::lookup`] never panics: a key only matches an object member, an index only an
//!   array element.
//! - [`resolve_key`] implements the rule for condition keys: a key without `.` or `[` is a
//!   field of the primary object, anything else is a path from the context root.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// Where a field path starts: the top-level entries of a rule context. A context object
/// (`Value`) is one; [`crate::event::ContextView`] reads an event's parts in place instead of
/// copying them into one.
pub trait Root {
    /// The value under a top-level key.
    fn get_root(&self, key: &str) -> Option<&Value>;
}

impl Root for Value {
    fn get_root(&self, key: &str) -> Option<&Value> {
        self.as_object()?.get(key)
    }
}

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    /// An object member (`.email`, or `["Ticket ID"]` for keys that are not plain).
    Key(String),
    /// An array element (`[0]`).
    Index(usize),
}

/// A parsed field path: a sequence of [`Segment`]s from the context root.
///
/// Paths produced by [`FieldPath::parse`] are never empty and start with a key; the empty path
/// ([`FieldPath::root`]) denotes the root itself and is what [`FieldPath::strip_prefix`] returns
/// for equal paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

/// Why a string is not a field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field path `{path}` at byte {offset}: {message}")]
pub struct PathError {
    /// The text that was parsed.
    pub path: String,
    /// Byte offset of the problem in `path`.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// Whether `c` may appear in a plain (unquoted) key.
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Whether `key` can be printed without quoting.
fn is_plain_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(is_key_char)
}

// === impl FieldPath ===

impl FieldPath {
    /// The empty path (the context root itself).
    pub fn root() -> Self {
        Self::default()
    }

    /// A path made of these segments.
    pub fn from_segments(segments: Vec<Segment>) -> Self {
        Self { segments }
    }

    /// A one-segment path naming the object member `key`.
    pub fn key(key: impl Into<String>) -> Self {
        Self {
            segments: vec![Segment::Key(key.into())],
        }
    }

    /// Parses `ticket.requester.email`, `actions[0].result.id`, `payload["Ticket ID"]`.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        Parser { text, pos: 0 }.parse()
    }

    /// The segments, first to last.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The first segment, if any.
    pub fn first(&self) -> Option<&Segment> {
        self.segments.first()
    }

    /// The first segment when it is a key (`ticket` for `ticket.subject`).
    pub fn root_key(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// The number of segments.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Whether this is the empty (root) path.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Whether `prefix`'s segments are the first segments of `self` (every path starts with the
    /// empty path and with itself).
    pub fn starts_with(&self, prefix: &FieldPath) -> bool {
        self.segments.starts_with(&prefix.segments)
    }

    /// The rest of `self` after `prefix`, or `None` when `self` does not start with `prefix`.
    /// Equal paths give the empty path.
    pub fn strip_prefix(&self, prefix: &FieldPath) -> Option<FieldPath> {
        self.segments
            .strip_prefix(prefix.segments.as_slice())
            .map(|rest| FieldPath::from_segments(rest.to_vec()))
    }

    /// `self` followed by `other`.
    pub fn join(&self, other: &FieldPath) -> FieldPath {
        let mut segments = self.segments.clone();
        segments.extend(other.segments.iter().cloned());
        FieldPath { segments }
    }

    /// `self` followed by the member `key`.
    pub fn child(&self, key: impl Into<String>) -> FieldPath {
        let mut segments = self.segments.clone();
        segments.push(Segment::Key(key.into()));
        FieldPath { segments }
    }

    /// `self` followed by the element `index`.
    pub fn index(&self, index: usize) -> FieldPath {
        let mut segments = self.segments.clone();
        segments.push(Segment::Index(index));
        FieldPath { segments }
    }

    /// `self` without its last segment (`None` for the empty path).
    pub fn parent(&self) -> Option<FieldPath> {
        self.segments
            .split_last()
            .map(|(_, rest)| FieldPath::from_segments(rest.to_vec()))
    }

    /// The value at this path under a [`Root`] (a context object, or an event read in place),
    /// if there is one. The empty path yields nothing.
    pub fn lookup_in<'a, R: Root + ?Sized>(&self, root: &'a R) -> Option<&'a Value> {
        let (Segment::Key(first), rest) = self.segments.split_first()? else {
            return None;
        };
        descend(root.get_root(first)?, rest)
    }

    /// The value at this path in `root`, if there is one. The empty path yields `root`.
    pub fn lookup<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        descend(root, &self.segments)
    }
}

/// The value `segments` lead to from `current`, if there is one.
fn descend<'a>(mut current: &'a Value, segments: &[Segment]) -> Option<&'a Value> {
    for segment in segments {
        current = match (segment, current) {
            (Segment::Key(k), Value::Object(map)) => map.get(k)?,
            (Segment::Index(i), Value::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(current)
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Key(k) if is_plain_key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Key(k) => {
                    f.write_str("[\"")?;
                    for c in k.chars() {
                        if c == '"' || c == '\\' {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"]")?;
                }
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl FromStr for FieldPath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for FieldPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for FieldPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        FieldPath::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Resolves a condition key: a key without `.` or `[` is a field of the primary object
/// (`priority` → `ticket.priority`); anything else is a path from the context root.
pub fn resolve_key(key: &str, primary: &str) -> Result<FieldPath, PathError> {
    let path = FieldPath::parse(key)?;
    if key.contains(['.', '[']) {
        Ok(path)
    } else {
        Ok(FieldPath::key(primary).join(&path))
    }
}

/// A recursive-descent parser over the bytes of a path.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, offset: usize, message: impl Into<String>) -> PathError {
        PathError {
            path: self.text.to_owned(),
            offset,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn parse(mut self) -> Result<FieldPath, PathError> {
        if self.text.is_empty() {
            return Err(self.error(0, "the path is empty"));
        }
        let mut segments = Vec::new();
        match self.peek() {
            Some('[') => {
                // A quoted key may start a path (`["Ticket ID"]`); an index may not.
                let segment = self.bracket()?;
                if let Segment::Index(_) = segment {
                    return Err(self.error(0, "a path must start with a key, not an index"));
                }
                segments.push(segment);
            }
            _ => segments.push(Segment::Key(self.plain_key()?)),
        }
        while let Some(c) = self.peek() {
            match c {
                '.' => {
                    self.pos += 1;
                    segments.push(Segment::Key(self.plain_key()?));
                }
                '[' => segments.push(self.bracket()?),
                other => {
                    return Err(self.error(
                        self.pos,
                        format!("unexpected `{other}`; expected `.`, `[` or the end"),
                    ));
                }
            }
        }
        Ok(FieldPath { segments })
    }

    fn plain_key(&mut self) -> Result<String, PathError> {
        let start = self.pos;
        let rest = self.text.get(start..).unwrap_or_default();
        let len = rest
            .char_indices()
            .find(|&(_, c)| !is_key_char(c))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 {
            return Err(match rest.chars().next() {
                None => self.error(start, "expected a key after `.`"),
                Some(c) => self.error(
                    start,
                    format!(
                        "unexpected `{c}`; keys are letters, digits, `_` and `-` (quote others as `[\"…\"]`)"
                    ),
                ),
            });
        }
        self.pos += len;
        Ok(rest[..len].to_owned())
    }

    /// Parses `[123]` or `["key"]`, starting at `[`.
    fn bracket(&mut self) -> Result<Segment, PathError> {
        let open = self.pos;
        self.pos += 1; // `[`
        let segment = match self.peek() {
            Some('"') => {
                self.pos += 1;
                let mut key = String::new();
                loop {
                    match self.peek() {
                        None => return Err(self.error(open, "unterminated quoted key")),
                        Some('"') => {
                            self.pos += 1;
                            break;
                        }
                        Some('\\') => {
                            self.pos += 1;
                            match self.peek() {
                                Some(c @ ('"' | '\\')) => {
                                    key.push(c);
                                    self.pos += c.len_utf8();
                                }
                                _ => {
                                    return Err(self.error(
                                        self.pos,
                                        "only `\\\"` and `\\\\` may be escaped in a quoted key",
                                    ));
                                }
                            }
                        }
                        Some(c) => {
                            key.push(c);
                            self.pos += c.len_utf8();
                        }
                    }
                }
                Segment::Key(key)
            }
            Some(c) if c.is_ascii_digit() => {
                let start = self.pos;
                let rest = self.text.get(start..).unwrap_or_default();
                let len = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                let digits = &rest[..len];
                if digits.len() > 1 && digits.starts_with('0') {
                    return Err(self.error(start, "an index has no leading zeros"));
                }
                let n = digits
                    .parse::<usize>()
                    .map_err(|_| self.error(start, "the index is too large"))?;
                self.pos += len;
                Segment::Index(n)
            }
            _ => {
                return Err(self.error(
                    self.pos,
                    "expected an index (`[0]`) or a quoted key (`[\"key\"]`) after `[`",
                ));
            }
        };
        if self.peek() == Some(']') {
            self.pos += 1;
            Ok(segment)
        } else {
            Err(self.error(self.pos, "expected `]`"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn p(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }

    #[test]
    fn parses_dotted_paths() {
        assert_eq!(
            p("ticket.requester.email").segments(),
            &[
                Segment::Key("ticket".into()),
                Segment::Key("requester".into()),
                Segment::Key("email".into()),
            ]
        );
    }

    #[test]
    fn parses_indexes() {
        assert_eq!(
            p("actions[0].result.id").segments(),
            &[
                Segment::Key("actions".into()),
                Segment::Index(0),
                Segment::Key("result".into()),
                Segment::Key("id".into()),
            ]
        );
        assert_eq!(
            p("a[1][22]").segments(),
            &[
                Segment::Key("a".into()),
                Segment::Index(1),
                Segment::Index(22)
            ]
        );
    }

    #[test]
    fn keys_may_hold_dashes_underscores_digits() {
        assert_eq!(
            p("ticket.cf_my-field2.3d").segments(),
            &[
                Segment::Key("ticket".into()),
                Segment::Key("cf_my-field2".into()),
                Segment::Key("3d".into()),
            ]
        );
    }

    #[test]
    fn quoted_keys() {
        let path = p(r#"payload["Ticket ID"]["a\"b\\c"].x"#);
        assert_eq!(
            path.segments(),
            &[
                Segment::Key("payload".into()),
                Segment::Key("Ticket ID".into()),
                Segment::Key("a\"b\\c".into()),
                Segment::Key("x".into()),
            ]
        );
        assert_eq!(path.to_string(), r#"payload["Ticket ID"]["a\"b\\c"].x"#);
        assert_eq!(p(r#"["a b"]"#).root_key(), Some("a b"));
    }

    #[test]
    fn rejects_malformed_paths() {
        for (text, offset) in [
            ("", 0),
            (".a", 0),
            ("a.", 2),
            ("a..b", 2),
            ("a[", 2),
            ("a[x]", 2),
            ("a[1", 3),
            ("a[01]", 2),
            ("a b", 1),
            ("a[99999999999999999999999]", 2),
            ("[0]", 0),
            (r#"a["x"#, 1),
            (r#"a["\n"]"#, 4),
            ("a]", 1),
            ("a.é", 2),
        ] {
            let err = FieldPath::parse(text).unwrap_err();
            assert_eq!(err.offset, offset, "{text:?}: {err}");
            assert!(err.to_string().contains("invalid field path"));
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "ticket",
            "ticket.requester.email",
            "actions[0].result.id",
            "a[1][2].b",
        ] {
            assert_eq!(p(text).to_string(), text);
        }
    }

    #[test]
    fn lookup_finds_values() {
        let ctx = json!({
            "ticket": { "requester": { "email": "a@b.c" }, "tags": ["x", "y"] },
            "actions": [ { "result": { "id": 7 } } ]
        });
        assert_eq!(
            p("ticket.requester.email").lookup(&ctx),
            Some(&json!("a@b.c"))
        );
        assert_eq!(p("ticket.tags[1]").lookup(&ctx), Some(&json!("y")));
        assert_eq!(p("actions[0].result.id").lookup(&ctx), Some(&json!(7)));
        assert_eq!(p("actions[1].result.id").lookup(&ctx), None);
        assert_eq!(p("ticket.tags.x").lookup(&ctx), None);
        assert_eq!(p("ticket[0]").lookup(&ctx), None);
        assert_eq!(p("nope").lookup(&ctx), None);
        assert_eq!(FieldPath::root().lookup(&ctx), Some(&ctx));
    }

    #[test]
    fn helpers() {
        let path = p("ticket.requester.email");
        assert_eq!(path.first(), Some(&Segment::Key("ticket".into())));
        assert_eq!(path.root_key(), Some("ticket"));
        assert_eq!(path.len(), 3);
        assert!(!path.is_empty());
        assert_eq!(path.strip_prefix(&p("ticket")), Some(p("requester.email")));
        assert_eq!(path.strip_prefix(&path), Some(FieldPath::root()));
        assert_eq!(path.strip_prefix(&p("requester")), None);
        assert_eq!(path.strip_prefix(&p("ticket.requester.email.x")), None);
        assert!(path.starts_with(&p("ticket.requester")));
        assert_eq!(p("ticket").join(&p("requester.email")), path);
        assert_eq!(p("ticket").child("requester").child("email"), path);
        assert_eq!(
            p("actions").index(0).child("result"),
            p("actions[0].result")
        );
        assert_eq!(path.parent(), Some(p("ticket.requester")));
        assert_eq!(FieldPath::root().parent(), None);
        assert_eq!(FieldPath::root().first(), None);
        assert_eq!(p("x[0]").strip_prefix(&p("x")).unwrap().root_key(), None);
    }

    #[test]
    fn resolve_key_uses_the_primary_object_for_bare_keys() {
        assert_eq!(
            resolve_key("priority", "ticket").unwrap(),
            p("ticket.priority")
        );
        assert_eq!(resolve_key("cf-x_1", "card").unwrap(), p("card.cf-x_1"));
        assert_eq!(
            resolve_key("ticket.subject", "ticket").unwrap(),
            p("ticket.subject")
        );
        assert_eq!(
            resolve_key("requester.email", "ticket").unwrap(),
            p("requester.email")
        );
        assert_eq!(resolve_key("tags[0]", "ticket").unwrap(), p("tags[0]"));
        assert!(resolve_key("", "ticket").is_err());
        assert!(resolve_key("a b", "ticket").is_err());
    }

    #[test]
    fn serde_as_string() {
        let path = p("actions[0].result.id");
        assert_eq!(
            serde_json::to_value(&path).unwrap(),
            json!("actions[0].result.id")
        );
        let back: FieldPath = serde_json::from_value(json!("actions[0].result.id")).unwrap();
        assert_eq!(back, path);
        assert!(serde_json::from_value::<FieldPath>(json!("a..b")).is_err());
        assert_eq!("a.b".parse::<FieldPath>().unwrap(), p("a.b"));
    }

    fn segment() -> impl Strategy<Value = Segment> {
        prop_oneof![
            "[a-zA-Z0-9_-]{1,8}".prop_map(Segment::Key),
            any::<String>().prop_map(Segment::Key),
            (0usize..100_000).prop_map(Segment::Index),
        ]
    }

    fn field_path() -> impl Strategy<Value = FieldPath> {
        (
            prop_oneof!["[a-z_][a-z0-9_-]{0,8}", any::<String>()],
            proptest::collection::vec(segment(), 0..6),
        )
            .prop_map(|(first, rest)| {
                let mut segments = vec![Segment::Key(first)];
                segments.extend(rest);
                FieldPath::from_segments(segments)
            })
    }

    proptest! {
        #[test]
        fn prop_display_round_trips(path in field_path()) {
            prop_assert_eq!(FieldPath::parse(&path.to_string()), Ok(path));
        }

        #[test]
        fn prop_parse_never_panics(text in any::<String>()) {
            if let Ok(path) = FieldPath::parse(&text) {
                // whatever parses prints back to something that parses the same
                prop_assert_eq!(FieldPath::parse(&path.to_string()), Ok(path));
            }
        }

        #[test]
        fn prop_parse_never_panics_on_pathlike(text in r#"[a-z0-9_.\[\]"\\-]{0,20}"#) {
            let _ = FieldPath::parse(&text);
        }

        #[test]
        fn prop_join_strip_prefix(a in field_path(), b in field_path()) {
            let joined = a.join(&b);
            prop_assert!(joined.starts_with(&a));
            prop_assert_eq!(joined.strip_prefix(&a), Some(b));
        }

        #[test]
        fn prop_lookup_finds_what_was_built(path in field_path(), leaf in any::<i64>()) {
            // Build a value that has `leaf` exactly at `path`.
            let mut value = Value::from(leaf);
            for segment in path.segments().iter().rev() {
                value = match segment {
                    Segment::Key(k) => {
                        let mut map = serde_json::Map::new();
                        map.insert(k.clone(), value);
                        Value::Object(map)
                    }
                    Segment::Index(i) => {
                        let mut items = vec![Value::Null; *i % 5];
                        items.push(value);
                        Value::Array(items)
                    }
                };
            }
            // Index segments were shrunk modulo 5 above; look up with the same shrinking.
            let shrunk = FieldPath::from_segments(path.segments().iter().map(|s| match s {
                Segment::Index(i) => Segment::Index(*i % 5),
                k => k.clone(),
            }).collect());
            prop_assert_eq!(shrunk.lookup(&value), Some(&Value::from(leaf)));
        }
    }
}
