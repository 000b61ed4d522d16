//! The condition language of `[trigger.conditions]`: compile a JSON table into a [`Condition`],
//! then evaluate it against event contexts.
//!
//! Guarantees:
//!
//! - [`compile`] never panics, whatever JSON it is given, and reports *every* problem it finds
//!   (not just the first), each with an RFC 6901 pointer into the conditions table.
//! - A compiled [`Condition`] is self-contained: bare keys are already resolved against the
//!   primary object and `changed`/`changed_to` already know their `changes` key, so
//!   [`Condition::eval`] needs nothing but the context.
//! - [`Condition::eval`] is total: it never panics and never errors; a field that is missing
//!   (or JSON `null`) simply makes tests false, except `exists = false`, `ne` and `not_in`.
//! - Compiled conditions nest at most [`MAX_DEPTH`] groups deep, so evaluation cannot exhaust
//!   the stack.
//!
//! Semantics, in short (see the item docs for detail):
//!
//! - every key of a table must hold; `any = [ {…} ]`, `all = [ {…} ]` and `not = {…}` are groups;
//!   `all = []` holds and `any = []` does not (both are compile errors when written explicitly);
//! - any other key is a field path ([`resolve_key`]); a plain value means equality (a plain
//!   array means equality with that array); a table holds operators, all of which must hold;
//! - equality is JSON equality except that numbers compare numerically (`4 == 4.0`), also inside
//!   arrays and objects;
//! - `gt`/`gte`/`lt`/`lte` compare numbers numerically and strings lexicographically, except that
//!   two strings that are both RFC 3339 timestamps (or `YYYY-MM-DD` dates) compare
//!   chronologically; mismatched types never hold;
//! - `changed`, `changed_to` read `changes[<key>]` where the key is the path relative to the
//!   primary object (`status` for `ticket.status`), or the full dotted path when the field is not
//!   under the primary object. A change is an entry whose `from` differs from its `to` (a missing
//!   `from`/`to` counts as `null`). They do not look at the field itself.

use std::cmp::Ordering;
use std::fmt;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Number, Value};

use super::path::{FieldPath, Root, resolve_key};
use super::{PathType, PathTypes, ValueType};

/// How deep groups (`any`/`all`/`not`) may nest before compile refuses the table.
pub const MAX_DEPTH: usize = 32;

/// The operator names, as written in conditions.
pub const OPERATORS: &[&str] = &[
    "eq",
    "ne",
    "in",
    "not_in",
    "gt",
    "gte",
    "lt",
    "lte",
    "contains",
    "matches",
    "exists",
    "changed",
    "changed_to",
];

/// A compiled condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Every condition holds (`all([])` holds).
    All(Vec<Condition>),
    /// At least one condition holds (`any([])` does not hold).
    Any(Vec<Condition>),
    /// The condition does not hold.
    Not(Box<Condition>),
    /// A test of one field.
    Test {
        /// The field, from the context root.
        path: FieldPath,
        /// What must hold of it.
        op: Op,
    },
}

/// A test applied to one field.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Equal (numbers numerically).
    Eq(Value),
    /// Not equal; holds when the field is missing.
    Ne(Value),
    /// Equal to one of these.
    In(Vec<Value>),
    /// Equal to none of these; holds when the field is missing.
    NotIn(Vec<Value>),
    /// Greater than.
    Gt(Value),
    /// Greater than or equal.
    Gte(Value),
    /// Less than.
    Lt(Value),
    /// Less than or equal.
    Lte(Value),
    /// Substring of a string field, or element of an array field.
    Contains(Value),
    /// The string field matches this regular expression (anywhere; anchor with `^…$`).
    Matches(Pattern),
    /// `true`: the field is present and not `null`; `false`: it is missing or `null`.
    Exists(bool),
    /// Whether `changes[key]` reports a change (`from != to`).
    Changed {
        /// `true` for `changed = true`.
        expected: bool,
        /// The key in `changes` (see [`change_key`]).
        key: String,
    },
    /// `changes[key]` reports a change whose `to` equals `value`.
    ChangedTo {
        /// The new value.
        value: Value,
        /// The key in `changes` (see [`change_key`]).
        key: String,
    },
}

/// A group of a condition, as [`Observer::enter`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// `all = [...]` (also a table of several keys).
    All,
    /// `any = [...]`.
    Any,
    /// `not = {...}`.
    Not,
}

/// What a [`Condition::walk`] reports besides its result. Every method does nothing by
/// default.
pub trait Observer<'c> {
    /// Whether a group stops at the first member that decides it ([`Condition::eval`] does; an
    /// explanation evaluates every member, to name each one that failed).
    const SHORT_CIRCUIT: bool;

    /// A group is entered; its members follow, then [`Observer::leave`].
    #[inline]
    fn enter(&mut self, group: Group) {
        let _ = group;
    }

    /// The group entered last is left, with its result.
    #[inline]
    fn leave(&mut self, held: bool) {
        let _ = held;
    }

    /// A field test was evaluated: the field's value (`None`: missing or `null`) and the result.
    #[inline]
    fn test<R: Root + ?Sized>(
        &mut self,
        path: &'c FieldPath,
        op: &'c Op,
        field: Option<&Value>,
        ctx: &R,
        held: bool,
    ) {
        let _ = (path, op, field, ctx, held);
    }
}

/// The observer of [`Condition::eval`]: records nothing, stops as soon as a group is decided.
#[derive(Debug, Clone, Copy)]
struct Silent;

impl Observer<'_> for Silent {
    const SHORT_CIRCUIT: bool = true;
}

/// A regular expression that compares (and prints) by its source.
///
/// Its syntax is checked when the condition is compiled; the matcher itself is built on first
/// use. Building matchers is the expensive part (a repository of 10,000 rules with a pattern
/// each took seconds and hundreds of megabytes to validate), and `validate`, `plan` and most
/// rules never need it.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: OnceLock<Option<Regex>>,
}

/// One problem in a conditions table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct ConditionError {
    /// RFC 6901 JSON pointer, relative to the conditions table, at the offending key or value
    /// (`/ticket.subject/matches`, `/any/1/priority`; `""` is the table itself).
    pub pointer: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub help: Option<String>,
}

// === impl Pattern ===

impl Pattern {
    /// Checks the syntax of `source` (the matcher is built on first use).
    pub fn new(source: &str) -> Result<Self, String> {
        regex_syntax::Parser::new()
            .parse(source)
            .map_err(|e| e.to_string())?;
        Ok(Pattern {
            source: source.to_owned(),
            regex: OnceLock::new(),
        })
    }

    /// The source of the expression.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `text` contains a match. A pattern whose syntax is valid but whose matcher
    /// exceeds the regex engine's size limit matches nothing (and says so in the log once).
    pub fn is_match(&self, text: &str) -> bool {
        let regex = self.regex.get_or_init(|| match Regex::new(&self.source) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(pattern = %self.source, error = %e, "Regular expression cannot be built; it matches nothing.");
                None
            }
        });
        regex.as_ref().is_some_and(|r| r.is_match(text))
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.as_str()).finish()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

// === impl Condition ===

impl Condition {
    /// The condition that always holds (an empty `All`).
    pub fn always() -> Self {
        Condition::All(Vec::new())
    }

    /// Whether the condition holds in the event context `ctx` (layout: see [`crate::rules`]).
    ///
    /// The walk with an observer that records nothing ([`Condition::walk`]); an explanation
    /// ([`crate::rules::explain`]) is the same walk with an observer that records.
    #[inline]
    pub fn eval<R: Root + ?Sized>(&self, ctx: &R) -> bool {
        self.walk(ctx, &mut Silent)
    }

    /// Evaluates the condition in `ctx`, telling `observer` about every group entered and left
    /// and every field test with the value it saw. The one evaluator: [`Condition::eval`] and
    /// the explanations are both this walk, so they cannot disagree. With
    /// [`Observer::SHORT_CIRCUIT`] a group stops at the first member that decides it; without,
    /// every member is evaluated (the result is the same: tests have no side effects).
    pub fn walk<'c, R: Root + ?Sized, O: Observer<'c>>(
        &'c self,
        ctx: &R,
        observer: &mut O,
    ) -> bool {
        match self {
            Condition::All(conditions) => {
                observer.enter(Group::All);
                let mut held = true;
                for c in conditions {
                    if !c.walk(ctx, observer) {
                        held = false;
                        if O::SHORT_CIRCUIT {
                            break;
                        }
                    }
                }
                observer.leave(held);
                held
            }
            Condition::Any(conditions) => {
                observer.enter(Group::Any);
                let mut held = false;
                for c in conditions {
                    if c.walk(ctx, observer) {
                        held = true;
                        if O::SHORT_CIRCUIT {
                            break;
                        }
                    }
                }
                observer.leave(held);
                held
            }
            Condition::Not(condition) => {
                observer.enter(Group::Not);
                let held = !condition.walk(ctx, observer);
                observer.leave(held);
                held
            }
            Condition::Test { path, op } => {
                let field = path.lookup_in(ctx).filter(|v| !v.is_null());
                let held = op.eval(field, ctx);
                observer.test(path, op, field, ctx, held);
                held
            }
        }
    }

    /// Every field path the condition tests, in order, duplicates included.
    pub fn paths(&self) -> Vec<&FieldPath> {
        fn walk<'a>(c: &'a Condition, out: &mut Vec<&'a FieldPath>) {
            match c {
                Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| walk(c, out)),
                Condition::Not(c) => walk(c, out),
                Condition::Test { path, .. } => out.push(path),
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }
}

// === impl Op ===

impl Op {
    /// The operator's name as written in conditions (`not_in`).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Eq(_) => "eq",
            Op::Ne(_) => "ne",
            Op::In(_) => "in",
            Op::NotIn(_) => "not_in",
            Op::Gt(_) => "gt",
            Op::Gte(_) => "gte",
            Op::Lt(_) => "lt",
            Op::Lte(_) => "lte",
            Op::Contains(_) => "contains",
            Op::Matches(_) => "matches",
            Op::Exists(_) => "exists",
            Op::Changed { .. } => "changed",
            Op::ChangedTo { .. } => "changed_to",
        }
    }

    /// Whether the test holds for `field` (`None`: missing or `null`) in `ctx`.
    pub fn eval<R: Root + ?Sized>(&self, field: Option<&Value>, ctx: &R) -> bool {
        match self {
            Op::Eq(v) => field.is_some_and(|f| json_eq(f, v)),
            Op::Ne(v) => !field.is_some_and(|f| json_eq(f, v)),
            Op::In(vs) => field.is_some_and(|f| vs.iter().any(|v| json_eq(f, v))),
            Op::NotIn(vs) => !field.is_some_and(|f| vs.iter().any(|v| json_eq(f, v))),
            Op::Gt(v) => field.and_then(|f| compare(f, v)) == Some(Ordering::Greater),
            Op::Gte(v) => matches!(
                field.and_then(|f| compare(f, v)),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Op::Lt(v) => field.and_then(|f| compare(f, v)) == Some(Ordering::Less),
            Op::Lte(v) => matches!(
                field.and_then(|f| compare(f, v)),
                Some(Ordering::Less | Ordering::Equal)
            ),
            Op::Contains(v) => match field {
                Some(Value::String(s)) => v.as_str().is_some_and(|needle| s.contains(needle)),
                Some(Value::Array(items)) => items.iter().any(|item| json_eq(item, v)),
                _ => false,
            },
            Op::Matches(p) => field.and_then(Value::as_str).is_some_and(|s| p.is_match(s)),
            Op::Exists(expected) => field.is_some() == *expected,
            Op::Changed { expected, key } => change_to(ctx, key).is_some() == *expected,
            Op::ChangedTo { value, key } => {
                change_to(ctx, key).is_some_and(|to| json_eq(to, value))
            }
        }
    }
}

impl Op {
    /// What the test looked at: the field's value for most operators, the reported change
    /// `changes[key]` for `changed`/`changed_to` (`None`: missing or `null`).
    pub fn observed<'a, R: Root + ?Sized>(
        &self,
        field: Option<&'a Value>,
        ctx: &'a R,
    ) -> Option<&'a Value> {
        match self {
            Op::Changed { key, .. } | Op::ChangedTo { key, .. } => ctx
                .get_root("changes")
                .and_then(|c| c.get(key))
                .filter(|v| !v.is_null()),
            _ => field,
        }
    }

    /// The operand as JSON (a pattern's source, `exists`'s and `changed`'s boolean).
    pub fn operand(&self) -> Value {
        match self {
            Op::Eq(v)
            | Op::Ne(v)
            | Op::Gt(v)
            | Op::Gte(v)
            | Op::Lt(v)
            | Op::Lte(v)
            | Op::Contains(v)
            | Op::ChangedTo { value: v, .. } => v.clone(),
            Op::In(vs) | Op::NotIn(vs) => Value::Array(vs.clone()),
            Op::Matches(p) => Value::String(p.as_str().to_owned()),
            Op::Exists(b) | Op::Changed { expected: b, .. } => Value::Bool(*b),
        }
    }
}

/// The key under `changes` for `path`: the path relative to the primary object
/// (`ticket.status` → `status`), or the whole dotted path when it is not under the primary
/// object (`requester.email`) or is the primary object itself.
pub fn change_key(path: &FieldPath, primary: &str) -> String {
    match path.strip_prefix(&FieldPath::key(primary)) {
        Some(rest) if !rest.is_empty() && rest.root_key().is_some() => rest.to_string(),
        _ => path.to_string(),
    }
}

/// The new value of a reported change at `changes[key]`, if `from != to`.
fn change_to<'a, R: Root + ?Sized>(ctx: &'a R, key: &str) -> Option<&'a Value> {
    let change = ctx.get_root("changes")?.get(key)?;
    let from = change.get("from").unwrap_or(&Value::Null);
    let to = change.get("to").unwrap_or(&Value::Null);
    (!json_eq(from, to)).then_some(to)
}

/// JSON equality, except that numbers compare numerically (also nested).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => cmp_numbers(x, y) == Ordering::Equal,
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| json_eq(x, y)))
        }
        _ => a == b,
    }
}

/// Orders two numbers: exactly when both are integers, as `f64` otherwise.
fn cmp_numbers(a: &Number, b: &Number) -> Ordering {
    fn int(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    match (int(a), int(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => {
            let x = a.as_f64().unwrap_or(f64::NAN);
            let y = b.as_f64().unwrap_or(f64::NAN);
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
    }
}

/// Orders a field value against an operand for `gt`/`gte`/`lt`/`lte`; `None` when they do not
/// compare.
fn compare(field: &Value, operand: &Value) -> Option<Ordering> {
    match (field, operand) {
        (Value::Number(a), Value::Number(b)) => Some(cmp_numbers(a, b)),
        (Value::String(a), Value::String(b)) => match (parse_timestamp(a), parse_timestamp(b)) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => Some(a.cmp(b)),
        },
        _ => None,
    }
}

/// Parses an RFC 3339 timestamp (`2024-05-01T10:00:00.5+02:00`; `T` may be `t` or a space) or a
/// date (`2024-05-01`, midnight UTC) into (seconds since the epoch, nanoseconds).
pub fn parse_timestamp(text: &str) -> Option<(i64, u32)> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        digits
            .iter()
            .try_fold(0i64, |acc, d| Some(acc * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if b.len() == 10 {
        return Some((days * 86_400, 0));
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    if b.get(16) != Some(&b':') {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut pos = 19;
    let mut nanos: u32 = 0;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while b.get(pos).is_some_and(u8::is_ascii_digit) {
            if pos - start < 9 {
                nanos = nanos * 10 + u32::from(b[pos] - b'0');
            }
            pos += 1;
        }
        let used = (pos - start).min(9);
        if used == 0 {
            return None;
        }
        nanos *= 10u32.pow(u32::try_from(9 - used).ok()?);
    }
    let offset = match b.get(pos) {
        Some(b'Z' | b'z') if b.len() == pos + 1 => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == pos + 6 && b.get(pos + 3) == Some(&b':') => {
            let (oh, om) = (num(pos + 1..pos + 3)?, num(pos + 4..pos + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let minutes = oh * 60 + om;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset * 60;
    Some((seconds, nanos))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// === compile ===

/// Compiles a `[trigger.conditions]` table (already converted to JSON) for an event whose static
/// shape is `types`. Returns every problem found.
pub fn compile(
    table: &Map<String, Value>,
    types: &dyn PathTypes,
) -> Result<Condition, Vec<ConditionError>> {
    let mut compiler = Compiler {
        types,
        errors: Vec::new(),
    };
    let condition = compiler.table(table, "", 0);
    if compiler.errors.is_empty() {
        Ok(condition)
    } else {
        Err(compiler.errors)
    }
}

/// Escapes one reference token of a JSON pointer (RFC 6901): `~` → `~0`, `/` → `~1`.
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

struct Compiler<'t> {
    types: &'t dyn PathTypes,
    errors: Vec<ConditionError>,
}

/// Whether `v` suits a field of type `ty`, for equality-like operators; the problem otherwise.
fn literal_mismatch(ty: ValueType, path: &FieldPath, v: &Value) -> Option<(String, String)> {
    let fits = match ty {
        ValueType::String | ValueType::Timestamp => v.is_string(),
        ValueType::Integer | ValueType::Number => v.is_number(),
        ValueType::Bool => v.is_boolean(),
        ValueType::StringList => v
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string)),
        ValueType::List => v.is_array(),
        ValueType::Object | ValueType::Any => true,
    };
    if fits {
        return None;
    }
    let message = format!(
        "`{path}` is {}, but {} is {}",
        describe_type(ty),
        show(v),
        describe_value(v)
    );
    let help = match (ty, v) {
        (ValueType::Integer | ValueType::Number, Value::String(s)) => {
            if s.trim().parse::<f64>().is_ok() {
                format!("write the number without quotes: {}", s.trim())
            } else {
                "compare with the field's numeric value (codes such as statuses are numbers)"
                    .to_owned()
            }
        }
        (ValueType::String | ValueType::Timestamp, Value::Number(n)) => {
            format!("quote it: \"{n}\"")
        }
        (ValueType::StringList | ValueType::List, _) => {
            "to test membership use `{ contains = … }`".to_owned()
        }
        _ => format!("compare with {}", describe_type(ty)),
    };
    Some((message, help))
}

fn describe_type(ty: ValueType) -> &'static str {
    match ty {
        ValueType::String => "a string",
        ValueType::Integer => "an integer",
        ValueType::Number => "a number",
        ValueType::Bool => "a boolean",
        ValueType::Timestamp => "a timestamp",
        ValueType::StringList => "a list of strings",
        ValueType::List => "a list",
        ValueType::Object => "an object",
        ValueType::Any => "any value",
    }
}

fn describe_value(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

/// A short rendering of a value for messages.
fn show(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 40 {
        let short: String = text.chars().take(37).collect();
        format!("{short}…")
    } else {
        text
    }
}

/// Levenshtein distance, for "did you mean".
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The operator an unknown name probably meant.
fn suggest_operator(name: &str) -> Option<&'static str> {
    const ALIASES: &[(&str, &str)] = &[
        ("=", "eq"),
        ("==", "eq"),
        ("equals", "eq"),
        ("is", "eq"),
        ("!=", "ne"),
        ("<>", "ne"),
        ("neq", "ne"),
        ("not_eq", "ne"),
        (">", "gt"),
        (">=", "gte"),
        ("ge", "gte"),
        ("<", "lt"),
        ("<=", "lte"),
        ("le", "lte"),
        ("nin", "not_in"),
        ("not in", "not_in"),
        ("one_of", "in"),
        ("regex", "matches"),
        ("match", "matches"),
        ("like", "matches"),
        ("includes", "contains"),
        ("has", "contains"),
    ];
    let lower = name.to_ascii_lowercase();
    if let Some(op) = OPERATORS.iter().find(|op| **op == lower) {
        return Some(op);
    }
    if let Some((_, op)) = ALIASES.iter().find(|(alias, _)| *alias == lower) {
        return Some(op);
    }
    OPERATORS
        .iter()
        .map(|op| (edit_distance(&lower, op), *op))
        .filter(|(d, op)| *d <= 2 && *d < op.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, op)| op)
}

impl Compiler<'_> {
    fn error(&mut self, pointer: &str, message: impl Into<String>, help: Option<String>) {
        self.errors.push(ConditionError {
            pointer: pointer.to_owned(),
            message: message.into(),
            help,
        });
    }

    /// A table: every key must hold.
    fn table(&mut self, table: &Map<String, Value>, pointer: &str, depth: usize) -> Condition {
        if depth > MAX_DEPTH {
            self.error(
                pointer,
                format!("conditions nest more than {MAX_DEPTH} groups deep"),
                Some("flatten the groups".to_owned()),
            );
            return Condition::always();
        }
        let mut parts = Vec::new();
        for (key, value) in table {
            let ptr = format!("{pointer}/{}", escape_pointer_token(key));
            match key.as_str() {
                "any" | "all" => {
                    if let Some(group) = self.group(key, value, &ptr, depth) {
                        parts.push(group);
                    }
                }
                "not" => match value {
                    Value::Object(inner) if inner.is_empty() => self.error(
                        &ptr,
                        "empty `not` group",
                        Some("put the conditions that must not hold inside `not = { … }`".into()),
                    ),
                    Value::Object(inner) => {
                        let inner = self.table(inner, &ptr, depth + 1);
                        parts.push(Condition::Not(Box::new(inner)));
                    }
                    other => self.error(
                        &ptr,
                        format!("`not` must be a table of conditions, not {}", describe_value(other)),
                        Some("write `not = { status = 5 }`; for a field named `not`, write its full path (`ticket.not`)".into()),
                    ),
                },
                _ => parts.extend(self.field(key, value, &ptr)),
            }
        }
        if parts.len() == 1 {
            parts.pop().unwrap_or_else(Condition::always)
        } else {
            Condition::All(parts)
        }
    }

    /// `any = [ … ]` / `all = [ … ]`.
    fn group(
        &mut self,
        name: &str,
        value: &Value,
        pointer: &str,
        depth: usize,
    ) -> Option<Condition> {
        let Value::Array(items) = value else {
            self.error(
                pointer,
                format!(
                    "`{name}` must be an array of condition tables, not {}",
                    describe_value(value)
                ),
                Some(format!(
                    "write `{name} = [ {{ priority = 4 }}, {{ status = 2 }} ]`; for a field named `{name}`, write its full path (`ticket.{name}`)"
                )),
            );
            return None;
        };
        if items.is_empty() {
            let help = if name == "any" {
                "an empty `any` never holds; list at least one condition table or remove it"
            } else {
                "an empty `all` always holds; list at least one condition table or remove it"
            };
            self.error(pointer, format!("empty `{name}` group"), Some(help.into()));
            return None;
        }
        let mut children = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ptr = format!("{pointer}/{i}");
            match item {
                Value::Object(t) if t.is_empty() => self.error(
                    &ptr,
                    format!("empty condition table in `{name}`"),
                    Some("remove it or add a condition".into()),
                ),
                Value::Object(t) => children.push(self.table(t, &ptr, depth + 1)),
                other => self.error(
                    &ptr,
                    format!(
                        "each element of `{name}` must be a table of conditions, not {}",
                        describe_value(other)
                    ),
                    None,
                ),
            }
        }
        Some(if name == "any" {
            Condition::Any(children)
        } else {
            Condition::All(children)
        })
    }

    /// A field key with a plain value or an operator table.
    fn field(&mut self, key: &str, value: &Value, pointer: &str) -> Vec<Condition> {
        let primary = self.types.primary();
        let path = match resolve_key(key, primary) {
            Ok(path) => path,
            Err(err) => {
                self.error(
                    pointer,
                    format!("`{key}` is not a field path: {}", err.message),
                    Some("paths look like `priority`, `ticket.requester.email` or `ticket.tags[0]`; quote odd keys as `payload[\"Ticket ID\"]`".into()),
                );
                return Vec::new();
            }
        };
        let ty = match self.types.type_of(&path) {
            PathType::Known(ty) => Some(ty),
            PathType::Open => None,
            PathType::Missing => {
                let help = self
                    .types
                    .suggest(&path)
                    .map(|s| format!("did you mean `{s}`?"));
                let message = self
                    .types
                    .never_delivered(&path)
                    .unwrap_or_else(|| format!("the event never has field `{path}`"));
                self.error(pointer, message, help);
                // Keep checking operators so that all problems are reported at once.
                None
            }
        };
        match value {
            Value::Object(ops) if ops.is_empty() => {
                self.error(
                    pointer,
                    "empty operator table",
                    Some(
                        "write an operator such as `{ eq = … }`, or compare with a plain value"
                            .into(),
                    ),
                );
                Vec::new()
            }
            Value::Object(ops) => ops
                .iter()
                .filter_map(|(name, operand)| {
                    let ptr = format!("{pointer}/{}", escape_pointer_token(name));
                    self.op(&path, ty, name, operand, &ptr)
                        .map(|op| Condition::Test {
                            path: path.clone(),
                            op,
                        })
                })
                .collect(),
            plain => {
                self.check_literal(ty, &path, plain, pointer);
                vec![Condition::Test {
                    path,
                    op: Op::Eq(plain.clone()),
                }]
            }
        }
    }

    fn check_literal(&mut self, ty: Option<ValueType>, path: &FieldPath, v: &Value, ptr: &str) {
        let allowed = self.types.allowed(path);
        if let Some((message, help)) = ty.and_then(|ty| literal_mismatch(ty, path, v)) {
            // A coded field compared with a name: say which code the name is.
            let help = match allowed.and_then(|a| a.suggest(v)) {
                Some(code) if matches!(allowed, Some(super::Allowed::Codes { .. })) => {
                    format!("`{path}` holds the numeric code: write {code}")
                }
                _ => help,
            };
            self.error(ptr, message, Some(help));
            return;
        }
        if let Some(a) = allowed
            && !a.admits(v)
        {
            let help = match a.suggest(v) {
                Some(s) => format!("did you mean {s}? `{path}` is one of {}", a.describe()),
                None => format!("`{path}` is one of {}", a.describe()),
            };
            self.error(
                ptr,
                format!("`{path}` never has the value {}", show(v)),
                Some(help),
            );
        }
    }

    fn check_changes(&mut self, path: &FieldPath, name: &str, ptr: &str) {
        if self.types.reports_changes(path) == Some(false) {
            self.error(
                ptr,
                format!(
                    "the event does not report changes of `{path}`, so `{name}` can never hold"
                ),
                None,
            );
        }
    }

    fn op(
        &mut self,
        path: &FieldPath,
        ty: Option<ValueType>,
        name: &str,
        operand: &Value,
        ptr: &str,
    ) -> Option<Op> {
        let types = self.types;
        let key = || change_key(path, types.primary());
        match name {
            "eq" | "ne" => {
                self.check_literal(ty, path, operand, ptr);
                Some(if name == "eq" {
                    Op::Eq(operand.clone())
                } else {
                    Op::Ne(operand.clone())
                })
            }
            "in" | "not_in" => {
                let Value::Array(items) = operand else {
                    self.error(
                        ptr,
                        format!(
                            "`{name}` needs an array of values, not {}",
                            describe_value(operand)
                        ),
                        Some(format!("write `{name} = [{}]`", show(operand))),
                    );
                    return None;
                };
                for (i, item) in items.iter().enumerate() {
                    self.check_literal(ty, path, item, &format!("{ptr}/{i}"));
                }
                Some(if name == "in" {
                    Op::In(items.clone())
                } else {
                    Op::NotIn(items.clone())
                })
            }
            "gt" | "gte" | "lt" | "lte" => {
                if !(operand.is_number() || operand.is_string()) {
                    self.error(
                        ptr,
                        format!(
                            "`{name}` needs a number or a timestamp string, not {}",
                            describe_value(operand)
                        ),
                        None,
                    );
                    return None;
                }
                match ty {
                    Some(ValueType::Integer | ValueType::Number) if !operand.is_number() => {
                        self.error(
                            ptr,
                            format!("`{path}` is a number, but {} is a string", show(operand)),
                            Some("write the number without quotes".into()),
                        );
                    }
                    Some(ValueType::Timestamp)
                        if operand.as_str().and_then(parse_timestamp).is_none() =>
                    {
                        self.error(
                            ptr,
                            format!(
                                "`{path}` is a timestamp, but {} is not an RFC 3339 timestamp",
                                show(operand)
                            ),
                            Some("write e.g. \"2024-05-01T09:00:00Z\" or \"2024-05-01\"".into()),
                        );
                    }
                    Some(
                        t @ (ValueType::String
                        | ValueType::Bool
                        | ValueType::StringList
                        | ValueType::List),
                    ) => {
                        self.error(
                            ptr,
                            format!(
                                "`{name}` compares numbers and timestamps, but `{path}` is {}",
                                describe_type(t)
                            ),
                            None,
                        );
                    }
                    _ => {}
                }
                let v = operand.clone();
                Some(match name {
                    "gt" => Op::Gt(v),
                    "gte" => Op::Gte(v),
                    "lt" => Op::Lt(v),
                    _ => Op::Lte(v),
                })
            }
            "contains" => {
                match ty {
                    Some(ValueType::String | ValueType::StringList) if !operand.is_string() => {
                        self.error(
                            ptr,
                            format!(
                                "`{path}` is {}, so `contains` needs a string, not {}",
                                describe_type(ty.unwrap_or(ValueType::String)),
                                describe_value(operand)
                            ),
                            operand
                                .is_number()
                                .then(|| format!("quote it: \"{}\"", show(operand))),
                        );
                    }
                    Some(
                        t @ (ValueType::Integer
                        | ValueType::Number
                        | ValueType::Bool
                        | ValueType::Timestamp),
                    ) => {
                        self.error(
                            ptr,
                            format!(
                                "`contains` needs a string or a list, but `{path}` is {}",
                                describe_type(t)
                            ),
                            Some("compare with `eq`, `in` or `gt`…".into()),
                        );
                    }
                    _ => {}
                }
                Some(Op::Contains(operand.clone()))
            }
            "matches" => {
                let Some(source) = operand.as_str() else {
                    self.error(
                        ptr,
                        format!(
                            "`matches` needs a regular expression string, not {}",
                            describe_value(operand)
                        ),
                        None,
                    );
                    return None;
                };
                if let Some(t) = ty.filter(|t| {
                    !matches!(t, ValueType::String | ValueType::Any | ValueType::Object)
                }) {
                    self.error(
                        ptr,
                        format!(
                            "`matches` needs a string field, but `{path}` is {}",
                            describe_type(t)
                        ),
                        matches!(t, ValueType::StringList | ValueType::List)
                            .then(|| "to test membership use `{ contains = … }`".into()),
                    );
                }
                match Pattern::new(source) {
                    Ok(p) => Some(Op::Matches(p)),
                    Err(err) => {
                        self.error(ptr, format!("invalid regular expression: {err}"), None);
                        None
                    }
                }
            }
            "exists" | "changed" => {
                let Some(b) = operand.as_bool() else {
                    self.error(
                        ptr,
                        format!(
                            "`{name}` needs `true` or `false`, not {}",
                            describe_value(operand)
                        ),
                        None,
                    );
                    return None;
                };
                if name == "exists" {
                    Some(Op::Exists(b))
                } else {
                    self.check_changes(path, name, ptr);
                    Some(Op::Changed {
                        expected: b,
                        key: key(),
                    })
                }
            }
            "changed_to" => {
                self.check_literal(ty, path, operand, ptr);
                self.check_changes(path, name, ptr);
                Some(Op::ChangedTo {
                    value: operand.clone(),
                    key: key(),
                })
            }
            unknown => {
                let help = if matches!(unknown, "any" | "all" | "not") {
                    format!(
                        "groups go beside fields, not inside an operator table: `{unknown} = …` at the level of `{}`",
                        path
                    )
                } else {
                    match suggest_operator(unknown) {
                        Some(op) => format!("did you mean `{op}`?"),
                        None => format!("operators are: {}", OPERATORS.join(", ")),
                    }
                };
                self.error(ptr, format!("unknown operator `{unknown}`"), Some(help));
                None
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A small catalogue for a Freshdesk-like `ticket_created` event.
    struct Types;

    const FIELDS: &[(&str, ValueType)] = &[
        ("event", ValueType::Object),
        ("ticket", ValueType::Object),
        ("ticket.subject", ValueType::String),
        ("ticket.priority", ValueType::Integer),
        ("ticket.status", ValueType::Integer),
        ("ticket.score", ValueType::Number),
        ("ticket.spam", ValueType::Bool),
        ("ticket.tags", ValueType::StringList),
        ("ticket.attachments", ValueType::List),
        ("ticket.created_at", ValueType::Timestamp),
        ("ticket.custom_fields", ValueType::Object),
        ("ticket.extra", ValueType::Any),
        ("requester", ValueType::Object),
        ("requester.email", ValueType::String),
    ];

    impl PathTypes for Types {
        fn type_of(&self, path: &FieldPath) -> PathType {
            let text = path.to_string();
            if let Some((_, ty)) = FIELDS.iter().find(|(p, _)| *p == text) {
                return PathType::Known(*ty);
            }
            if ["payload", "ticket.custom_fields", "changes"]
                .iter()
                .any(|open| path.starts_with(&FieldPath::parse(open).unwrap()))
            {
                return PathType::Open;
            }
            PathType::Missing
        }

        fn primary(&self) -> &str {
            "ticket"
        }

        fn suggest(&self, path: &FieldPath) -> Option<String> {
            let text = path.to_string();
            FIELDS
                .iter()
                .map(|(p, _)| (edit_distance(&text, p), *p))
                .filter(|(d, _)| *d <= 3)
                .min_by_key(|(d, _)| *d)
                .map(|(_, p)| p.to_owned())
        }

        fn reports_changes(&self, path: &FieldPath) -> Option<bool> {
            Some(["ticket.status", "ticket.priority"].contains(&path.to_string().as_str()))
        }
    }

    /// Types that know nothing: every path is open; bare keys are the ticket's.
    pub(crate) struct OpenTypes;

    impl PathTypes for OpenTypes {
        fn type_of(&self, _: &FieldPath) -> PathType {
            PathType::Open
        }
        fn primary(&self) -> &str {
            "ticket"
        }
    }

    fn table(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not a table"),
        }
    }

    fn ok(v: Value) -> Condition {
        compile(&table(v), &Types).unwrap()
    }

    fn errs(v: Value) -> Vec<ConditionError> {
        compile(&table(v), &Types).unwrap_err()
    }

    fn path(s: &str) -> FieldPath {
        FieldPath::parse(s).unwrap()
    }

    fn ctx() -> Value {
        json!({
            "event": { "platform": "freshdesk", "name": "ticket_created" },
            "ticket": {
                "subject": "Please REFUND me",
                "priority": 4,
                "status": 2,
                "score": 2.5,
                "spam": false,
                "tags": ["vip", "billing"],
                "created_at": "2024-05-01T10:00:00+02:00",
                "group_id": null,
                "custom_fields": { "cf_region": "emea" }
            },
            "requester": { "email": "a@example.com" },
            "changes": {
                "status": { "from": 2, "to": 4 },
                "priority": { "from": 1, "to": 1.0 },
                "requester.email": { "from": "x@y", "to": "a@example.com" }
            },
        })
    }

    #[test]
    fn contract_example() {
        let c = ok(json!({
            "priority": 4,
            "ticket.tags": { "contains": "vip" },
            "ticket.subject": { "matches": "(?i)refund" },
        }));
        assert!(c.eval(&ctx()));
        let mut other = ctx();
        other["ticket"]["priority"] = json!(3);
        assert!(!c.eval(&other));
    }

    #[test]
    fn bare_keys_resolve_against_the_primary_object() {
        assert_eq!(
            ok(json!({ "priority": 4 })),
            Condition::Test {
                path: path("ticket.priority"),
                op: Op::Eq(json!(4))
            }
        );
        assert_eq!(
            ok(json!({ "requester.email": "a@example.com" })),
            Condition::Test {
                path: path("requester.email"),
                op: Op::Eq(json!("a@example.com"))
            }
        );
    }

    #[test]
    fn several_operators_in_one_table_all_hold() {
        let c = ok(json!({ "priority": { "gte": 2, "lt": 5, "ne": 3 } }));
        assert!(matches!(&c, Condition::All(parts) if parts.len() == 3));
        assert!(c.eval(&ctx()));
        let mut other = ctx();
        other["ticket"]["priority"] = json!(3);
        assert!(!c.eval(&other));
    }

    #[test]
    fn equality_is_numeric_aware() {
        assert!(ok(json!({ "priority": 4.0 })).eval(&ctx()));
        assert!(ok(json!({ "score": { "eq": 2.5 } })).eval(&ctx()));
        assert!(ok(json!({ "priority": { "in": [1, 4.0] } })).eval(&ctx()));
        assert!(json_eq(&json!([1, {"a": 2}]), &json!([1.0, {"a": 2.0}])));
        assert!(!json_eq(&json!([1]), &json!([1, 2])));
        assert!(!json_eq(&json!({"a": 1}), &json!({"b": 1})));
        assert!(!json_eq(&json!("4"), &json!(4)));
        assert!(json_eq(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!json_eq(&json!(-1), &json!(u64::MAX)));
    }

    #[test]
    fn plain_array_means_equality_with_the_array() {
        let c = ok(json!({ "ticket.tags": ["vip", "billing"] }));
        assert_eq!(
            c,
            Condition::Test {
                path: path("ticket.tags"),
                op: Op::Eq(json!(["vip", "billing"]))
            }
        );
        assert!(c.eval(&ctx()));
        assert!(!ok(json!({ "ticket.tags": ["vip"] })).eval(&ctx()));
    }

    #[test]
    fn missing_and_null_fields() {
        let cases = [
            (json!({ "ticket.custom_fields.cf_x": "a" }), false),
            (json!({ "ticket.custom_fields.cf_x": { "ne": "a" } }), true),
            (
                json!({ "ticket.custom_fields.cf_x": { "in": ["a"] } }),
                false,
            ),
            (
                json!({ "ticket.custom_fields.cf_x": { "not_in": ["a"] } }),
                true,
            ),
            (json!({ "ticket.custom_fields.cf_x": { "gt": 1 } }), false),
            (json!({ "ticket.custom_fields.cf_x": { "lte": 1 } }), false),
            (
                json!({ "ticket.custom_fields.cf_x": { "contains": "a" } }),
                false,
            ),
            (
                json!({ "ticket.custom_fields.cf_x": { "matches": "" } }),
                false,
            ),
            (
                json!({ "ticket.custom_fields.cf_x": { "exists": true } }),
                false,
            ),
            (
                json!({ "ticket.custom_fields.cf_x": { "exists": false } }),
                true,
            ),
            (
                json!({ "ticket.custom_fields.cf_region": { "exists": true } }),
                true,
            ),
            (json!({ "payload.group_id": { "exists": false } }), true),
            (json!({ "ticket.extra": { "exists": false } }), true),
        ];
        for (table, expected) in cases {
            assert_eq!(ok(table.clone()).eval(&ctx()), expected, "{table}");
        }
        // null counts as missing
        let c = compile(
            &table(json!({ "group_id": { "exists": false } })),
            &OpenTypes,
        )
        .unwrap();
        assert!(c.eval(&ctx()));
        let c = compile(&table(json!({ "group_id": { "ne": 1 } })), &OpenTypes).unwrap();
        assert!(c.eval(&ctx()));
    }

    #[test]
    fn contains() {
        assert!(ok(json!({ "ticket.tags": { "contains": "vip" } })).eval(&ctx()));
        assert!(!ok(json!({ "ticket.tags": { "contains": "vi" } })).eval(&ctx()));
        assert!(ok(json!({ "subject": { "contains": "REFUND" } })).eval(&ctx()));
        assert!(!ok(json!({ "subject": { "contains": "refund" } })).eval(&ctx()));
        let c = compile(&table(json!({ "nums": { "contains": 1 } })), &OpenTypes).unwrap();
        assert!(c.eval(&json!({ "ticket": { "nums": [1.0, 2] } })));
        assert!(!c.eval(&json!({ "ticket": { "nums": 1 } })));
        assert!(!c.eval(&json!({ "ticket": { "nums": "1" } })));
    }

    #[test]
    fn ordering() {
        assert!(ok(json!({ "priority": { "gt": 3 } })).eval(&ctx()));
        assert!(!ok(json!({ "priority": { "gt": 4 } })).eval(&ctx()));
        assert!(ok(json!({ "priority": { "gte": 4.0 } })).eval(&ctx()));
        assert!(ok(json!({ "score": { "lt": 3 } })).eval(&ctx()));
        assert!(ok(json!({ "score": { "lte": 2.5 } })).eval(&ctx()));
        // timestamps compare chronologically, even across offsets
        assert!(ok(json!({ "created_at": { "gt": "2024-05-01T07:59:59Z" } })).eval(&ctx()));
        assert!(!ok(json!({ "created_at": { "gt": "2024-05-01T08:00:00Z" } })).eval(&ctx()));
        assert!(ok(json!({ "created_at": { "gte": "2024-05-01T08:00:00Z" } })).eval(&ctx()));
        assert!(ok(json!({ "created_at": { "lt": "2024-05-02" } })).eval(&ctx()));
        // other strings lexicographically; mismatched types never hold
        let open = |t: Value| compile(&table(t), &OpenTypes).unwrap();
        assert!(open(json!({ "subject": { "gt": "Please" } })).eval(&ctx()));
        assert!(!open(json!({ "subject": { "gt": 1 } })).eval(&ctx()));
        assert!(!open(json!({ "priority": { "lt": "9" } })).eval(&ctx()));
        assert!(!open(json!({ "tags": { "lt": 9 } })).eval(&ctx()));
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(parse_timestamp("1970-01-01"), Some((0, 0)));
        assert_eq!(parse_timestamp("1970-01-01T01:00:00+01:00"), Some((0, 0)));
        assert_eq!(parse_timestamp("1969-12-31T23:00:00-01:00"), Some((0, 0)));
        assert_eq!(
            parse_timestamp("2000-03-01T00:00:00Z"),
            Some((951_868_800, 0))
        );
        assert_eq!(
            parse_timestamp("2024-05-01 10:00:00.25z"),
            Some((1_714_557_600, 250_000_000))
        );
        assert_eq!(
            parse_timestamp("2024-05-01T10:00:00.1234567891Z"),
            Some((1_714_557_600, 123_456_789))
        );
        assert_eq!(parse_timestamp("2024-02-29"), Some((1_709_164_800, 0)));
        for bad in [
            "",
            "2024",
            "2023-02-29",
            "2024-13-01",
            "2024-05-01T10:00:00",
            "2024-05-01T25:00:00Z",
            "2024-05-01T10:00Z",
            "2024-05-01T10:00:00.Z",
            "2024-05-01T10:00:00+0200",
            "2024-05-01T10:00:00Zx",
            "2024-05-01x",
            "２024-05-01",
            "+024-05-01",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn matches() {
        assert!(ok(json!({ "subject": { "matches": "(?i)refund" } })).eval(&ctx()));
        assert!(!ok(json!({ "subject": { "matches": "^refund" } })).eval(&ctx()));
        assert!(!ok(json!({ "requester.email": { "matches": "@other" } })).eval(&ctx()));
    }

    #[test]
    fn changed_and_changed_to() {
        let c = ok(json!({ "status": { "changed": true } }));
        assert_eq!(
            c,
            Condition::Test {
                path: path("ticket.status"),
                op: Op::Changed {
                    expected: true,
                    key: "status".into()
                }
            }
        );
        assert!(c.eval(&ctx()));
        assert!(!ok(json!({ "status": { "changed": false } })).eval(&ctx()));
        // from == to (numerically) is no change
        assert!(!ok(json!({ "priority": { "changed": true } })).eval(&ctx()));
        assert!(ok(json!({ "priority": { "changed": false } })).eval(&ctx()));
        assert!(ok(json!({ "status": { "changed_to": 4.0 } })).eval(&ctx()));
        assert!(!ok(json!({ "status": { "changed_to": 2 } })).eval(&ctx()));
        assert!(!ok(json!({ "priority": { "changed_to": 1 } })).eval(&ctx()));
        // no `changes` at all
        assert!(!ok(json!({ "status": { "changed": true } })).eval(&json!({})));
        assert!(ok(json!({ "status": { "changed": false } })).eval(&json!({})));
        // paths not under the primary object use the full dotted path
        let open = compile(
            &table(json!({ "requester.email": { "changed_to": "a@example.com" } })),
            &OpenTypes,
        )
        .unwrap();
        assert!(open.eval(&ctx()));
        // missing from/to count as null
        let c = compile(&table(json!({ "x": { "changed": true } })), &OpenTypes).unwrap();
        assert!(c.eval(&json!({ "changes": { "x": { "to": 1 } } })));
        assert!(!c.eval(&json!({ "changes": { "x": {} } })));
        assert!(!c.eval(&json!({ "changes": { "x": 5 } })));
    }

    #[test]
    fn change_keys() {
        assert_eq!(change_key(&path("ticket.status"), "ticket"), "status");
        assert_eq!(
            change_key(&path("ticket.custom_fields.cf_x"), "ticket"),
            "custom_fields.cf_x"
        );
        assert_eq!(
            change_key(&path("requester.email"), "ticket"),
            "requester.email"
        );
        assert_eq!(change_key(&path("ticket"), "ticket"), "ticket");
        assert_eq!(change_key(&path("ticket[0]"), "ticket"), "ticket[0]");
    }

    #[test]
    fn groups() {
        let c = ok(json!({
            "any": [ { "priority": 1 }, { "ticket.tags": { "contains": "vip" } } ],
            "not": { "spam": true },
            "all": [ { "status": 2 }, { "requester.email": { "matches": "@example\\.com$" } } ],
        }));
        assert!(c.eval(&ctx()));
        let mut spam = ctx();
        spam["ticket"]["spam"] = json!(true);
        assert!(!c.eval(&spam));
        let mut no_vip = ctx();
        no_vip["ticket"]["tags"] = json!([]);
        assert!(!c.eval(&no_vip));
    }

    #[test]
    fn empty_table_always_holds() {
        let c = ok(json!({}));
        assert_eq!(c, Condition::always());
        assert!(c.eval(&json!(null)));
        assert!(Condition::All(vec![]).eval(&ctx()));
        assert!(!Condition::Any(vec![]).eval(&ctx()));
    }

    #[test]
    fn paths_lists_tested_fields() {
        let c =
            ok(json!({ "priority": 4, "any": [ { "status": 2 }, { "requester.email": "x" } ] }));
        let paths: Vec<String> = c.paths().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            paths,
            ["ticket.status", "requester.email", "ticket.priority"]
        );
    }

    fn one(v: Value) -> ConditionError {
        let mut e = errs(v);
        assert_eq!(e.len(), 1, "{e:#?}");
        e.remove(0)
    }

    #[test]
    fn error_unknown_operator_with_suggestion() {
        let e = one(json!({ "priority": { "gte": 1, "gtee": 2 } }));
        assert_eq!(e.pointer, "/priority/gtee");
        assert_eq!(e.message, "unknown operator `gtee`");
        assert_eq!(e.help.as_deref(), Some("did you mean `gte`?"));
        assert_eq!(
            one(json!({ "priority": { ">=": 2 } })).help.as_deref(),
            Some("did you mean `gte`?")
        );
        assert_eq!(
            one(json!({ "subject": { "regex": "x" } })).help.as_deref(),
            Some("did you mean `matches`?")
        );
        assert_eq!(
            one(json!({ "subject": { "EQ": "x" } })).help.as_deref(),
            Some("did you mean `eq`?")
        );
        let e = one(json!({ "priority": { "frobnicate": 2 } }));
        assert!(e.help.unwrap().starts_with("operators are: eq, ne"));
        let e = one(json!({ "priority": { "any": [] } }));
        assert!(e.help.unwrap().contains("groups go beside fields"));
    }

    #[test]
    fn error_operand_shapes() {
        let e = one(json!({ "priority": { "in": 4 } }));
        assert_eq!(e.pointer, "/priority/in");
        assert!(e.message.contains("needs an array"), "{}", e.message);
        assert_eq!(e.help.as_deref(), Some("write `in = [4]`"));
        assert!(
            one(json!({ "priority": { "not_in": "4" } }))
                .message
                .contains("needs an array")
        );
        assert!(
            one(json!({ "priority": { "exists": "yes" } }))
                .message
                .contains("`exists` needs `true` or `false`")
        );
        assert!(
            one(json!({ "status": { "changed": 1 } }))
                .message
                .contains("`changed` needs `true` or `false`")
        );
        assert!(
            one(json!({ "subject": { "matches": 1 } }))
                .message
                .contains("needs a regular expression string")
        );
        assert!(
            one(json!({ "priority": { "gt": true } }))
                .message
                .contains("needs a number or a timestamp")
        );
        assert!(
            one(json!({ "priority": {} }))
                .message
                .contains("empty operator table")
        );
    }

    #[test]
    fn error_invalid_regex() {
        let e = one(json!({ "ticket.subject": { "matches": "(unclosed" } }));
        assert_eq!(e.pointer, "/ticket.subject/matches");
        assert!(e.message.starts_with("invalid regular expression: "));
        assert!(e.message.contains("unclosed group"), "{}", e.message);
    }

    #[test]
    fn error_missing_field_with_suggestion() {
        let e = one(json!({ "ticket.subjekt": { "contains": "x" } }));
        assert_eq!(e.pointer, "/ticket.subjekt");
        assert_eq!(e.message, "the event never has field `ticket.subjekt`");
        assert_eq!(e.help.as_deref(), Some("did you mean `ticket.subject`?"));
        let e = one(json!({ "zzzzzzzzzzzz": 1 }));
        assert_eq!(e.message, "the event never has field `ticket.zzzzzzzzzzzz`");
        assert_eq!(e.help, None);
        // operator problems on a missing field are reported too
        let e = errs(json!({ "ticket.subjekt": { "matches": "(" } }));
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn error_wrong_types() {
        let e = one(json!({ "status": "resolved" }));
        assert_eq!(e.pointer, "/status");
        assert_eq!(
            e.message,
            "`ticket.status` is an integer, but \"resolved\" is a string"
        );
        assert!(e.help.unwrap().contains("numeric"));
        assert_eq!(
            one(json!({ "status": "4" })).help.as_deref(),
            Some("write the number without quotes: 4")
        );
        let e = one(json!({ "status": { "in": [2, "open"] } }));
        assert_eq!(e.pointer, "/status/in/1");
        assert_eq!(
            one(json!({ "subject": 4 })).help.as_deref(),
            Some("quote it: \"4\"")
        );
        assert!(
            one(json!({ "spam": "no" }))
                .message
                .contains("is a boolean")
        );
        assert!(
            one(json!({ "ticket.tags": "vip" }))
                .help
                .unwrap()
                .contains("contains")
        );
        assert!(
            one(json!({ "subject": { "gt": "a" } }))
                .message
                .contains("compares numbers and timestamps")
        );
        assert!(
            one(json!({ "priority": { "gt": "3" } }))
                .message
                .contains("is a number")
        );
        assert!(
            one(json!({ "created_at": { "gt": "yesterday" } }))
                .message
                .contains("not an RFC 3339")
        );
        assert!(
            one(json!({ "priority": { "contains": "4" } }))
                .message
                .contains("needs a string or a list")
        );
        assert!(
            one(json!({ "ticket.tags": { "contains": 4 } }))
                .message
                .contains("needs a string")
        );
        assert!(
            one(json!({ "priority": { "matches": "4" } }))
                .message
                .contains("needs a string field")
        );
        assert!(
            one(json!({ "ticket.tags": { "matches": "4" } }))
                .help
                .unwrap()
                .contains("contains")
        );
        assert!(
            one(json!({ "status": { "changed_to": "closed" } }))
                .message
                .contains("is an integer")
        );
        // Any / Object / Open accept everything
        for t in [
            json!({ "extra": { "gt": 1, "contains": "x", "matches": "x", "eq": "s" } }),
            json!({ "custom_fields": { "contains": "x", "eq": 1 } }),
            json!({ "ticket.custom_fields.cf_x": { "gt": "a", "matches": "x", "in": [1, "a"] } }),
            json!({ "payload.anything": { "lt": 3, "contains": 1 } }),
            json!({ "ticket.attachments": { "contains": { "name": "a" } } }),
            json!({ "score": 2 }),
        ] {
            assert!(compile(&table(t.clone()), &Types).is_ok(), "{t}");
        }
    }

    #[test]
    fn error_changes_not_reported() {
        let e = one(json!({ "subject": { "changed": true } }));
        assert_eq!(e.pointer, "/subject/changed");
        assert!(
            e.message
                .contains("does not report changes of `ticket.subject`")
        );
    }

    #[test]
    fn error_groups() {
        let e = one(json!({ "any": [] }));
        assert_eq!(
            (e.pointer.as_str(), e.message.as_str()),
            ("/any", "empty `any` group")
        );
        assert!(
            one(json!({ "all": [] }))
                .help
                .unwrap()
                .contains("always holds")
        );
        assert_eq!(one(json!({ "not": {} })).message, "empty `not` group");
        assert!(
            one(json!({ "not": [] }))
                .message
                .contains("`not` must be a table")
        );
        assert!(
            one(json!({ "any": { "priority": 1 } }))
                .message
                .contains("must be an array")
        );
        assert_eq!(
            one(json!({ "any": [ { "priority": 1 }, 3 ] })).pointer,
            "/any/1"
        );
        assert_eq!(one(json!({ "all": [ {} ] })).pointer, "/all/0");
    }

    #[test]
    fn error_bad_keys() {
        let e = one(json!({ "ticket..subject": 1 }));
        assert_eq!(e.pointer, "/ticket..subject");
        assert!(
            e.message
                .starts_with("`ticket..subject` is not a field path")
        );
    }

    #[test]
    fn errors_are_all_collected_with_pointers() {
        let e = errs(json!({
            "any": [
                { "priority": { "gt": 1 } },
                { "priority": "high", "a/b~c": { "eq": 1 } },
            ],
            "not": { "subject": { "matches": "[" } },
            "status": { "in": 2, "bogus": 1 },
        }));
        let pointers: Vec<&str> = e.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/any/1/a~1b~0c",
                "/any/1/priority",
                "/not/subject/matches",
                "/status/bogus",
                "/status/in",
            ]
        );
        assert!(
            e[0].to_string()
                .starts_with("/any/1/a~1b~0c: `a/b~c` is not a field path"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn depth_is_limited() {
        let mut t = json!({ "priority": 1 });
        for _ in 0..(MAX_DEPTH + 5) {
            t = json!({ "not": t });
        }
        let e = errs(t);
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("nest more than"));
        let mut t = json!({ "priority": 4 });
        for _ in 0..MAX_DEPTH {
            t = json!({ "not": { "not": t } });
        }
        // 64 levels is too deep as well; 16 double negations are fine
        assert!(compile(&table(t), &Types).is_err());
        let mut t = json!({ "priority": 4 });
        for _ in 0..(MAX_DEPTH / 2) {
            t = json!({ "not": { "not": t } });
        }
        assert!(ok(t).eval(&ctx()));
    }

    #[test]
    fn pattern_compares_by_source() {
        assert_eq!(Pattern::new("a+").unwrap(), Pattern::new("a+").unwrap());
        assert_ne!(Pattern::new("a+").unwrap(), Pattern::new("a*").unwrap());
        assert_eq!(
            format!("{:?}", Pattern::new("a+").unwrap()),
            "Pattern(\"a+\")"
        );
        assert_eq!(Op::NotIn(vec![]).name(), "not_in");
    }

    // === property tests ===

    fn arb_json() -> BoxedStrategy<Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-5i64..10).prop_map(Value::from),
            (-5.0f64..10.0).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            prop_oneof![
                Just("vip"),
                Just("a"),
                Just(""),
                Just("2024-05-01T10:00:00Z"),
                Just("2024-05-02")
            ]
            .prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("priority".to_owned()),
                        Just("tags".to_owned()),
                        Just("status".to_owned()),
                        Just("from".to_owned()),
                        Just("to".to_owned()),
                        "[a-z]{1,3}",
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
    }

    /// Contexts shaped like events, with random field values.
    pub(crate) fn arb_ctx() -> impl Strategy<Value = Value> {
        (arb_json(), arb_json(), arb_json(), arb_json(), arb_json()).prop_map(
            |(priority, tags, status, changes, subject)| {
                json!({
                    "ticket": { "priority": priority, "tags": tags, "status": status, "subject": subject },
                    "changes": { "status": changes, "priority": { "from": 1, "to": priority } },
                })
            },
        )
    }

    fn arb_test() -> impl Strategy<Value = Condition> {
        let paths = prop_oneof![
            Just("ticket.priority"),
            Just("ticket.tags"),
            Just("ticket.status"),
            Just("ticket.subject"),
            Just("ticket.nope"),
            Just("ticket.tags[0]"),
        ];
        let key = prop_oneof![Just("priority"), Just("status"), Just("nope")];
        let val = arb_json();
        let op = prop_oneof![
            val.clone().prop_map(Op::Eq),
            val.clone().prop_map(Op::Ne),
            proptest::collection::vec(val.clone(), 0..4).prop_map(Op::In),
            proptest::collection::vec(val.clone(), 0..4).prop_map(Op::NotIn),
            val.clone().prop_map(Op::Gt),
            val.clone().prop_map(Op::Gte),
            val.clone().prop_map(Op::Lt),
            val.clone().prop_map(Op::Lte),
            val.clone().prop_map(Op::Contains),
            prop_oneof![Just("^a"), Just("vip"), Just("(?i)A"), Just("")]
                .prop_map(|p| Op::Matches(Pattern::new(p).unwrap())),
            any::<bool>().prop_map(Op::Exists),
            (any::<bool>(), key.clone()).prop_map(|(expected, key)| Op::Changed {
                expected,
                key: key.to_owned()
            }),
            (val, key).prop_map(|(value, key)| Op::ChangedTo {
                value,
                key: key.to_owned()
            }),
        ];
        (paths, op).prop_map(|(p, op)| Condition::Test {
            path: FieldPath::parse(p).unwrap(),
            op,
        })
    }

    pub(crate) fn arb_condition() -> impl Strategy<Value = Condition> {
        arb_test().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Condition::All),
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Condition::Any),
                inner.prop_map(|c| Condition::Not(Box::new(c))),
            ]
        })
    }

    /// Arbitrary condition tables: mostly plausible keys and operators, some garbage.
    fn arb_table() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("priority".to_owned()),
            Just("ticket.subject".to_owned()),
            Just("ticket.tags".to_owned()),
            Just("ticket.created_at".to_owned()),
            Just("payload.x".to_owned()),
            Just("any".to_owned()),
            Just("all".to_owned()),
            Just("not".to_owned()),
            Just("a..b".to_owned()),
            any::<String>(),
        ];
        let op = prop_oneof![
            proptest::sample::select(OPERATORS).prop_map(str::to_owned),
            any::<String>(),
        ];
        let operand = prop_oneof![
            arb_json(),
            Just(json!("(")),
            Just(json!("[a-z]+")),
            Just(json!([1, "a"])),
        ];
        let ops = proptest::collection::btree_map(op, operand.clone(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()));
        let leaf = prop_oneof![operand, ops];
        leaf.prop_recursive(4, 40, 5, move |inner| {
            prop_oneof![
                proptest::collection::btree_map(key.clone(), inner.clone(), 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                proptest::collection::vec(inner, 0..4).prop_map(Value::Array),
            ]
        })
    }

    proptest! {
        #[test]
        fn prop_double_negation(c in arb_condition(), ctx in arb_ctx()) {
            let nn = Condition::Not(Box::new(Condition::Not(Box::new(c.clone()))));
            prop_assert_eq!(nn.eval(&ctx), c.eval(&ctx));
        }

        #[test]
        fn prop_singleton_groups(c in arb_condition(), ctx in arb_ctx()) {
            prop_assert_eq!(Condition::All(vec![c.clone()]).eval(&ctx), c.eval(&ctx));
            prop_assert_eq!(Condition::Any(vec![c.clone()]).eval(&ctx), c.eval(&ctx));
        }

        #[test]
        fn prop_empty_groups(ctx in arb_json()) {
            // documented: all([]) holds, any([]) does not
            prop_assert!(Condition::All(vec![]).eval(&ctx));
            prop_assert!(!Condition::Any(vec![]).eval(&ctx));
        }

        #[test]
        fn prop_de_morgan(a in arb_condition(), b in arb_condition(), ctx in arb_ctx()) {
            let not = |c: Condition| Condition::Not(Box::new(c));
            let lhs = not(Condition::All(vec![a.clone(), b.clone()]));
            let rhs = Condition::Any(vec![not(a.clone()), not(b.clone())]);
            prop_assert_eq!(lhs.eval(&ctx), rhs.eval(&ctx));
            let lhs = not(Condition::Any(vec![a.clone(), b.clone()]));
            let rhs = Condition::All(vec![not(a), not(b)]);
            prop_assert_eq!(lhs.eval(&ctx), rhs.eval(&ctx));
        }

        #[test]
        fn prop_negated_ops_are_complements(v in arb_json(), vs in proptest::collection::vec(arb_json(), 0..3), ctx in arb_ctx()) {
            for p in ["ticket.priority", "ticket.tags", "ticket.nope"] {
                let path = FieldPath::parse(p).unwrap();
                let t = |op| Condition::Test { path: path.clone(), op };
                prop_assert_eq!(t(Op::Eq(v.clone())).eval(&ctx), !t(Op::Ne(v.clone())).eval(&ctx));
                prop_assert_eq!(t(Op::In(vs.clone())).eval(&ctx), !t(Op::NotIn(vs.clone())).eval(&ctx));
                prop_assert_eq!(t(Op::Exists(true)).eval(&ctx), !t(Op::Exists(false)).eval(&ctx));
            }
        }

        #[test]
        fn prop_eval_never_panics(c in arb_condition(), ctx in arb_json()) {
            let _ = c.eval(&ctx);
        }

        #[test]
        fn prop_compile_never_panics(t in arb_table(), ctx in arb_ctx()) {
            if let Value::Object(map) = t {
                for types in [&Types as &dyn PathTypes, &OpenTypes] {
                    match compile(&map, types) {
                        Ok(c) => { let _ = c.eval(&ctx); }
                        Err(errors) => {
                            prop_assert!(!errors.is_empty());
                            for e in errors {
                                prop_assert!(e.pointer.starts_with('/'));
                            }
                        }
                    }
                }
            }
        }

        #[test]
        fn prop_json_eq_is_reflexive_and_symmetric(a in arb_json(), b in arb_json()) {
            prop_assert!(json_eq(&a, &a));
            prop_assert_eq!(json_eq(&a, &b), json_eq(&b, &a));
        }

        #[test]
        fn prop_parse_timestamp_never_panics(s in any::<String>(), t in "[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?([Zz]|[+-][0-9]{2}:[0-9]{2}))?") {
            let _ = parse_timestamp(&s);
            let _ = parse_timestamp(&t);
        }
    }
}
