//! Jinja-style templates for action parameters (`"Urgent ticket: {{ ticket.subject }}"`), on top of
//! `minijinja`.
//!
//! Guarantees:
//!
//! - A string without `{{`, `{%` or `{#` is a literal: parsing it allocates one string and never
//!   touches minijinja, and rendering returns it unchanged.
//! - A template is compiled once, in [`Template::parse`]; rendering never re-parses it.
//! - A template whose whole source is one expression (`{{ expr }}`, whitespace around allowed)
//!   renders to the expression's typed JSON value (a number stays a number, a list a list);
//!   any other template renders to a JSON string.
//! - Missing values are errors, never silently empty: printing, iterating or filtering an
//!   undefined value fails with [`RenderError::Missing`] naming the path, while
//!   `| default(…)`, `is defined` and `{% if x %}` (false) work. (minijinja's `SemiStrict`
//!   undefined behaviour.)
//! - Output is never HTML-escaped.
//! - Parsing and rendering never panic on any input.
//! - Rendering is bounded (see [`limits`]): one render does at most [`limits::FUEL`] units of
//!   work (minijinja's fuel: an instruction, or 64 bytes of data created or processed, each cost
//!   one; an allocation of known size, such as `"x" * n`, is refused before it happens when the
//!   fuel left cannot pay for it), and its output, a string or a value's JSON, is at most
//!   [`limits::MAX_OUTPUT`] bytes. A render that hits either fails with [`RenderError::Limit`].
//!   Wall-clock time is the caller's to bound (the executor renders off the async threads under
//!   [`limits::RENDER_TIME`]); fuel makes sure the render ends soon after anyway.
//! - [`Template::static_limits`] reports what can be seen without rendering: a constant
//!   `range()` over minijinja's bound, and nested constant `range` loops that must run out of
//!   fuel.
//!
//! Paths: [`Template::paths`] lists what the template reads from the context, as
//! [`FieldPath`]s. minijinja only reports dotted attribute chains, so `actions[0].result.id`
//! would be reported as bare `actions`; this module recovers `actions[N].a.b` references by
//! scanning the source for them, so the caller can check that action `N` runs earlier and has
//! result field `a`. [`Template::check`] checks every other path against the event's
//! [`PathTypes`] and leaves the `actions` root to the caller ([`Template::action_refs`]).
//! Template-local names (`{% set %}`, loop variables, `loop`) are never reported, and neither
//! are minijinja's global functions (`range`, `dict`, `namespace`, `debug`).
//!
//! Filters: minijinja's builtins (`default`/`d`, `upper`, `lower`, `title`, `capitalize`,
//! `trim`, `replace`, `join`, `length`, `first`, `last`, `list`, `sort`, `unique`, `map`,
//! `select`, `reject`, `round`, `abs`, `int`, `float`, `string`, `format`, `indent`, `items`,
//! `batch`, `slice`, …) plus `tojson` (compact JSON). There is no `truncate` in minijinja's
//! core set; use `s[:n]`.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, LazyLock};

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, ErrorKind, Expression, UndefinedBehavior};
use regex::Regex;
use serde_json::Value;

use super::path::{FieldPath, Segment};
use super::{PathType, PathTypes};

/// The context root holding the results of the rule's earlier actions.
pub const ACTIONS_ROOT: &str = "actions";

/// What one render may do.
pub mod limits {
    use std::time::Duration;

    /// The fuel of one render (one parameter's template): about this many instructions, or
    /// 64 times as many bytes of data created or processed. A Slack message looping over 1,000
    /// tags uses a few tens of thousands.
    pub const FUEL: u64 = 250_000;

    /// The largest rendered output of one parameter, in bytes (a string's length, or the size
    /// of a value's JSON).
    pub const MAX_OUTPUT: usize = 256 * 1024;

    /// How long rendering one action's parameters may take on the executor's blocking pool.
    pub const RENDER_TIME: Duration = Duration::from_secs(2);

    /// The most elements minijinja's `range()` gives (it fails beyond).
    pub const MAX_RANGE: u64 = 100_000;
}

/// Which rendering limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The render used up its fuel ([`limits::FUEL`]).
    Fuel,
    /// The output is larger than [`limits::MAX_OUTPUT`].
    Output,
    /// Rendering took longer than [`limits::RENDER_TIME`] (reported by the caller that timed
    /// it).
    Time,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Fuel => write!(
                f,
                "the template does more work than one render may (its fuel of {} ran out)",
                limits::FUEL
            ),
            Limit::Output => write!(
                f,
                "the template renders more than {} KiB",
                limits::MAX_OUTPUT / 1024
            ),
            Limit::Time => write!(
                f,
                "rendering took longer than {} s",
                limits::RENDER_TIME.as_secs_f64()
            ),
        }
    }
}

/// The name under which a full template is stored in the environment cloned for its render.
const TEMPLATE_NAME: &str = "template";

/// The shared environment every template is compiled against.
static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    // Needed for error messages that name the undefined expression.
    env.set_debug(true);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Parameters are data, not HTML pages: a trailing newline the author wrote is kept.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    // A platform's `null` (an unset group, an empty cell) prints as nothing rather than
    // Python's `none`; `{{ x or "fallback" }}` gives it a visible default.
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.add_filter("tojson", tojson);
    env.set_fuel(Some(limits::FUEL));
    env
});

/// The global names of [`ENV`] (functions such as `range`), which are not context paths.
static GLOBALS: LazyLock<BTreeSet<String>> =
    LazyLock::new(|| ENV.globals().map(|(name, _)| name.to_owned()).collect());

/// `actions[N]` followed by attribute names.
static ACTION_REF: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"\bactions\s*\[\s*([0-9]+)\s*\]((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)*)").ok()
});

/// The `tojson` filter: compact JSON. Undefined values are an error (use `default` first).
fn tojson(value: &minijinja::Value) -> Result<String, minijinja::Error> {
    if value.is_undefined() {
        return Err(minijinja::Error::new(
            ErrorKind::UndefinedError,
            "`tojson` was given an undefined value",
        ));
    }
    serde_json::to_string(value)
        .map_err(|e| minijinja::Error::new(ErrorKind::BadSerialization, e.to_string()))
}

/// A parsed template.
#[derive(Clone)]
pub struct Template {
    source: String,
    compiled: Compiled,
    paths: Vec<FieldPath>,
}

#[derive(Clone)]
enum Compiled {
    /// No template syntax at all.
    Literal,
    /// Exactly one `{{ expr }}`: evaluated to a typed value.
    Expression {
        expr: Arc<Expression<'static, 'static>>,
        /// Byte offset of the expression text in the source.
        offset: usize,
    },
    /// Anything else: rendered to a string, compiled at each render into a clone of the shared
    /// environment that lives as long as the render. Nothing is kept between renders: keeping
    /// an environment per template (as before) held about 190 MB for the 10,000-rule
    /// behavioural plan benchmark and saved no time (`benches/behaviour_plan.sh`: 6.9 s and
    /// 587 MB kept, 4.7 s and 395 MB compiled each time; docs/benchmarks.md).
    Full,
}

/// A problem found when parsing or checking a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// Byte offset into the source where the problem is, where known.
    pub offset: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub help: Option<String>,
}

/// Why rendering failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template read a value the context does not have.
    #[error("`{path}` is missing; give a fallback with `| default(...)`")]
    Missing {
        /// The missing expression, usually a path (`ticket.nope`, `actions[3]`).
        path: String,
        /// Byte offset into the source, where known.
        offset: Option<usize>,
    },
    /// A rendering limit was hit: the template, not the event, is at fault, so rendering it
    /// again does not help.
    #[error("rendering stopped: {0}")]
    Limit(Limit),
    /// Anything else (unknown filter, bad operand types…).
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
        /// Byte offset into the source, where known.
        offset: Option<usize>,
    },
}

/// A render's output: refuses to grow past [`limits::MAX_OUTPUT`] (and remembers that it did).
#[derive(Default)]
struct Capped {
    buf: Vec<u8>,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > limits::MAX_OUTPUT {
            self.over = true;
            return Err(std::io::Error::other("the output cap was reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An event context converted once for rendering many templates.
#[derive(Debug)]
pub struct RenderContext<'a> {
    json: &'a Value,
    value: minijinja::Value,
}

impl<'a> RenderContext<'a> {
    /// Converts `ctx` (the event context, plus `actions` when there are earlier results).
    pub fn new(ctx: &'a Value) -> Self {
        RenderContext {
            json: ctx,
            value: minijinja::Value::from(Serde(ctx)),
        }
    }
}

/// Whether `source` contains template syntax.
fn has_syntax(source: &str) -> bool {
    source.contains("{{") || source.contains("{%") || source.contains("{#")
}

/// When `source` is exactly one `{{ expr }}` (whitespace around allowed), the expression text and
/// its byte offset.
fn single_expression(source: &str) -> Option<(usize, &str)> {
    let start = source.len() - source.trim_start().len();
    let body = source.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let (lead, body) = match body.strip_prefix(['-', '+']) {
        Some(rest) => (1, rest),
        None => (0, body),
    };
    let body = body.strip_suffix(['-', '+']).unwrap_or(body);
    if ["{{", "}}", "{%", "%}", "{#", "#}"]
        .iter()
        .any(|t| body.contains(t))
    {
        return None;
    }
    Some((start + 2 + lead, body))
}

/// A `{% for … %}` or `{% endfor %}` tag (group 1: the keyword, group 2: the rest).
static LOOP_TAG: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\{%[-+]?\s*(for|endfor)\b((?s:.*?))[-+]?%\}").ok());

/// A call of `range` whose arguments are integer literals (groups 1 to 3).
static CONST_RANGE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"\brange\s*\(\s*(-?[0-9]+)\s*(?:,\s*(-?[0-9]+)\s*)?(?:,\s*(-?[0-9]+)\s*)?\)").ok()
});

/// A comment, whose text is not code.
static COMMENT: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"(?s)\{#.*?#\}").ok());

/// How many elements `range(a[, b[, c]])` gives, with minijinja's meaning of the arguments;
/// `None` when the arguments are not integers or the step is 0 (minijinja refuses it).
fn range_len(caps: &regex::Captures<'_>) -> Option<u64> {
    let arg = |i: usize| caps.get(i).map(|m| m.as_str().parse::<i128>());
    let (start, end) = match (arg(1)?.ok()?, arg(2).transpose().ok()?) {
        (end, None) => (0, end),
        (start, Some(end)) => (start, end),
    };
    let step = arg(3).transpose().ok()?.unwrap_or(1);
    let len = match step {
        0 => return None,
        s if s > 0 => (end - start + s - 1).div_euclid(s),
        s => (start - end - s - 1).div_euclid(-s),
    };
    u64::try_from(len.max(0)).ok()
}

/// The text between the first pair of backticks.
fn backticked(text: &str) -> Option<&str> {
    let start = text.find('`')? + 1;
    let len = text.get(start..)?.find('`')?;
    text.get(start..start + len)
}

/// A `TemplateError` from a minijinja compile error, with offsets shifted by `base`.
fn syntax_error(err: &minijinja::Error, base: usize) -> TemplateError {
    let message = match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    };
    TemplateError {
        offset: err.range().map(|r| r.start + base),
        message,
        help: None,
    }
}

/// Turns minijinja's undeclared variables into context paths (see the module docs).
fn collect_paths(source: &str, vars: impl IntoIterator<Item = String>) -> Vec<FieldPath> {
    let mut out = BTreeSet::new();
    for var in vars {
        let root = var.split('.').next().unwrap_or_default();
        if GLOBALS.contains(root) {
            continue;
        }
        if var == ACTIONS_ROOT {
            let refs = action_refs_in(source);
            if !refs.is_empty() {
                out.extend(refs);
                continue;
            }
        }
        if let Ok(path) = FieldPath::parse(&var) {
            out.insert(path);
        }
    }
    out.into_iter().collect()
}

/// `actions[N].a.b` references in `source`.
fn action_refs_in(source: &str) -> Vec<FieldPath> {
    let Some(re) = ACTION_REF.as_ref() else {
        return Vec::new();
    };
    re.captures_iter(source)
        .filter_map(|caps| {
            let index = caps.get(1)?.as_str().parse::<usize>().ok()?;
            let mut path = FieldPath::key(ACTIONS_ROOT).index(index);
            for attr in caps.get(2)?.as_str().split('.') {
                let attr = attr.trim();
                if !attr.is_empty() {
                    path = path.child(attr);
                }
            }
            Some(path)
        })
        .collect()
}

// === impl Template ===

impl Template {
    /// Parses and compiles `source`.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        if !has_syntax(source) {
            return Ok(Template {
                source: source.to_owned(),
                compiled: Compiled::Literal,
                paths: Vec::new(),
            });
        }
        let env: &'static Environment<'static> = &ENV;
        if let Some((offset, body)) = single_expression(source)
            && let Ok(expr) = env.compile_expression_owned(body.to_owned())
        {
            let paths = collect_paths(source, expr.undeclared_variables(true));
            return Ok(Template {
                source: source.to_owned(),
                compiled: Compiled::Expression {
                    expr: Arc::new(expr),
                    offset,
                },
                paths,
            });
        }
        // Full template (also used to report syntax errors of a failed single expression
        // with offsets into the whole source).
        let vars = env
            .template_from_str(source)
            .map(|t| t.undeclared_variables(true))
            .map_err(|e| syntax_error(&e, 0))?;
        Ok(Template {
            paths: collect_paths(source, vars),
            source: source.to_owned(),
            compiled: Compiled::Full,
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the source has no template syntax (renders to itself).
    pub fn is_literal(&self) -> bool {
        matches!(self.compiled, Compiled::Literal)
    }

    /// Whether the source is one `{{ expr }}` (renders to a typed value).
    pub fn is_single_expression(&self) -> bool {
        matches!(self.compiled, Compiled::Expression { .. })
    }

    /// The context paths the template reads, sorted and deduplicated (see the module docs for
    /// `actions[N]`).
    pub fn paths(&self) -> &[FieldPath] {
        &self.paths
    }

    /// The `actions[N]…` references: `(N, the path after actions[N])`, e.g. `(0, result.id)`.
    /// A bare `actions` (used without a literal index) is not listed.
    pub fn action_refs(&self) -> Vec<(usize, FieldPath)> {
        self.paths
            .iter()
            .filter(|p| p.root_key() == Some(ACTIONS_ROOT))
            .filter_map(|p| match p.segments() {
                [_, Segment::Index(n), rest @ ..] => {
                    Some((*n, FieldPath::from_segments(rest.to_vec())))
                }
                _ => None,
            })
            .collect()
    }

    /// Checks every path read (except those under `actions`) against the event's shape: one error
    /// per path the event can never have.
    pub fn check(&self, types: &dyn PathTypes) -> Vec<TemplateError> {
        self.paths
            .iter()
            .filter(|p| p.root_key() != Some(ACTIONS_ROOT))
            .filter(|p| types.type_of(p) == PathType::Missing)
            .map(|p| {
                let text = p.to_string();
                let offset = self
                    .source
                    .find(&text)
                    .or_else(|| p.root_key().and_then(|root| self.source.find(root)));
                TemplateError {
                    offset,
                    message: types
                        .never_delivered(p)
                        .unwrap_or_else(|| format!("the event never has field `{text}`")),
                    help: types.suggest(p).map(|s| format!("did you mean `{s}`?")),
                }
            })
            .collect()
    }

    /// What can be seen of the rendering limits without rendering: a `range()` with constant
    /// arguments over minijinja's bound (it always fails), and `for` loops over constant
    /// `range()`s nested so deep that their iterations alone use up the fuel (each iteration
    /// costs at least one). Loops over event data, or over a range whose bound is computed,
    /// are not judged: the limits stop them when they render.
    pub fn static_limits(&self) -> Vec<TemplateError> {
        let (Some(loop_tag), Some(const_range), Some(comment)) =
            (LOOP_TAG.as_ref(), CONST_RANGE.as_ref(), COMMENT.as_ref())
        else {
            return Vec::new();
        };
        if !matches!(self.compiled, Compiled::Full | Compiled::Expression { .. }) {
            return Vec::new();
        }
        // Comments blanked out, keeping offsets.
        let code = comment.replace_all(&self.source, |c: &regex::Captures<'_>| {
            " ".repeat(c.get(0).map_or(0, |m| m.len()))
        });
        let mut errors = Vec::new();
        for caps in const_range.captures_iter(&code) {
            if let Some(len) = range_len(&caps)
                && len > limits::MAX_RANGE
            {
                errors.push(TemplateError {
                    offset: caps.get(0).map(|m| m.start()),
                    message: format!(
                        "`{}` has {len} elements; `range` gives at most {}, so rendering always fails",
                        caps.get(0).map_or("", |m| m.as_str()),
                        limits::MAX_RANGE
                    ),
                    help: None,
                });
            }
        }
        // The iteration count of each open loop (1 when it is not a constant range).
        let mut open: Vec<u64> = Vec::new();
        let mut reported = false;
        for caps in loop_tag.captures_iter(&code) {
            let keyword = caps.get(1).map_or("", |m| m.as_str());
            if keyword == "endfor" {
                open.pop();
                continue;
            }
            let rest = caps.get(2).map_or("", |m| m.as_str());
            let count = rest
                .split_once(" in ")
                .and_then(|(_, iterable)| {
                    let iterable = iterable.trim_start();
                    const_range
                        .captures(iterable)
                        .filter(|c| c.get(0).is_some_and(|m| m.start() == 0))
                })
                .and_then(|c| range_len(&c))
                .unwrap_or(1);
            open.push(count);
            let total = open.iter().fold(1u64, |acc, n| acc.saturating_mul(*n));
            if !reported && open.len() > 1 && total > limits::FUEL {
                reported = true;
                errors.push(TemplateError {
                    offset: caps.get(0).map(|m| m.start()),
                    message: format!(
                        "nested `range` loops run {total} times, more than one render may do (its fuel is {})",
                        limits::FUEL
                    ),
                    help: Some(
                        "loop over fewer items: the action would fail with a rendering limit and be dead-lettered"
                            .to_owned(),
                    ),
                });
            }
        }
        errors.sort_by_key(|e| e.offset);
        errors
    }

    /// Renders against the context `ctx` (see [`Template::render_in`]).
    pub fn render(&self, ctx: &Value) -> Result<Value, RenderError> {
        match self.compiled {
            Compiled::Literal => Ok(Value::String(self.source.clone())),
            _ => self.render_in(&RenderContext::new(ctx)),
        }
    }

    /// Renders against a converted context: the typed value of a single expression, otherwise a
    /// string.
    pub fn render_in(&self, ctx: &RenderContext<'_>) -> Result<Value, RenderError> {
        match &self.compiled {
            Compiled::Literal => Ok(Value::String(self.source.clone())),
            Compiled::Expression { expr, offset } => {
                let value = expr
                    .eval(ctx.value.clone())
                    .map_err(|e| self.render_error(&e, *offset))?;
                if value.is_undefined() {
                    return Err(RenderError::Missing {
                        path: self.missing_path(ctx.json),
                        offset: Some(*offset),
                    });
                }
                // The value's JSON is written through the cap: fuel bounds what the value
                // holds, the cap what it may become.
                let mut out = Capped::default();
                if let Err(e) = serde_json::to_writer(&mut out, &value) {
                    if out.over {
                        return Err(RenderError::Limit(Limit::Output));
                    }
                    return Err(RenderError::Failed {
                        message: format!("the value cannot be converted to JSON: {e}"),
                        offset: Some(*offset),
                    });
                }
                serde_json::from_slice(&out.buf).map_err(|e| RenderError::Failed {
                    message: format!("the value cannot be converted to JSON: {e}"),
                    offset: Some(*offset),
                })
            }
            Compiled::Full => {
                let mut own = ENV.clone();
                own.add_template_owned(TEMPLATE_NAME, self.source.as_str())
                    .map_err(|e| self.render_error(&e, 0))?;
                let template = own
                    .get_template(TEMPLATE_NAME)
                    .map_err(|e| self.render_error(&e, 0))?;
                let mut out = Capped::default();
                let rendered = template.render_captured_to(ctx.value.clone(), &mut out);
                if out.over {
                    return Err(RenderError::Limit(Limit::Output));
                }
                rendered.map_err(|e| self.render_error(&e, 0))?;
                String::from_utf8(out.buf)
                    .map(Value::String)
                    .map_err(|_| RenderError::Failed {
                        message: "the output is not valid UTF-8".into(),
                        offset: None,
                    })
            }
        }
    }

    /// The first path read that `ctx` does not have, or the expression text.
    fn missing_path(&self, ctx: &Value) -> String {
        self.paths
            .iter()
            .find(|p| p.lookup(ctx).is_none())
            .map(ToString::to_string)
            .or_else(|| single_expression(&self.source).map(|(_, body)| body.trim().to_owned()))
            .unwrap_or_else(|| self.source.clone())
    }

    fn render_error(&self, err: &minijinja::Error, base: usize) -> RenderError {
        if err.kind() == ErrorKind::OutOfFuel {
            return RenderError::Limit(Limit::Fuel);
        }
        let offset = err.range().map(|r| r.start + base);
        let detail = err.detail().unwrap_or_default();
        if err.kind() == ErrorKind::UndefinedError {
            let path = backticked(detail)
                .map(str::to_owned)
                .unwrap_or_else(|| self.missing_path(&Value::Null));
            return RenderError::Missing { path, offset };
        }
        let message = if detail.is_empty() {
            err.kind().to_string()
        } else {
            format!("{}: {detail}", err.kind())
        };
        RenderError::Failed { message, offset }
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.compiled {
            Compiled::Literal => "literal",
            Compiled::Expression { .. } => "expression",
            Compiled::Full => "template",
        };
        f.debug_struct("Template")
            .field("kind", &kind)
            .field("source", &self.source)
            .field("paths", &self.paths)
            .finish()
    }
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Template {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::ValueType;
    use proptest::prelude::*;
    use serde_json::json;

    fn t(source: &str) -> Template {
        Template::parse(source).unwrap()
    }

    fn ctx() -> Value {
        json!({
            "event": { "name": "ticket_created", "integration": "freshdesk-main" },
            "ticket": {
                "id": 42,
                "subject": "Refund <please> & thanks",
                "priority": 4,
                "score": 2.5,
                "tags": ["vip", "billing"],
                "group_id": null,
                "requester": { "email": "a@example.com", "name": "Ann" }
            },
            "actions": [ { "result": { "id": "C123", "ts": 1.5 } } ]
        })
    }

    fn render(source: &str) -> Result<Value, RenderError> {
        t(source).render(&ctx())
    }

    #[test]
    fn literals_are_cheap_and_unchanged() {
        for source in [
            "",
            "hello",
            "#urgent-tickets",
            "a { b } c",
            "50% {off}",
            "{ {x} }",
        ] {
            let tpl = t(source);
            assert!(tpl.is_literal(), "{source}");
            assert!(tpl.paths().is_empty());
            assert_eq!(tpl.render(&ctx()).unwrap(), json!(source));
            assert_eq!(tpl.render(&json!(null)).unwrap(), json!(source));
        }
        assert!(!t("{{ x }}").is_literal());
        assert!(!t("a {% if true %}b{% endif %}").is_literal());
        assert!(!t("a {# comment #}").is_literal());
        assert_eq!(render("a {# comment #}b").unwrap(), json!("a b"));
    }

    #[test]
    fn single_expressions_are_typed() {
        assert!(t("{{ ticket.priority }}").is_single_expression());
        assert_eq!(render("{{ ticket.priority }}").unwrap(), json!(4));
        assert_eq!(render("  {{ticket.priority}}\n").unwrap(), json!(4));
        assert_eq!(render("{{- ticket.priority -}}").unwrap(), json!(4));
        assert_eq!(render("{{ ticket.score }}").unwrap(), json!(2.5));
        assert_eq!(
            render("{{ ticket.tags }}").unwrap(),
            json!(["vip", "billing"])
        );
        assert_eq!(
            render("{{ ticket.requester }}").unwrap(),
            json!({ "email": "a@example.com", "name": "Ann" })
        );
        assert_eq!(
            render("{{ ticket.subject }}").unwrap(),
            json!("Refund <please> & thanks")
        );
        assert_eq!(render("{{ ticket.priority + 1 }}").unwrap(), json!(5));
        assert_eq!(render("{{ ticket.priority > 3 }}").unwrap(), json!(true));
        assert_eq!(render("{{ ticket.group_id }}").unwrap(), json!(null));
        assert_eq!(render("{{ ticket.tags | length }}").unwrap(), json!(2));
        assert_eq!(render("{{ [ticket.id, 'x'] }}").unwrap(), json!([42, "x"]));
        // more than one expression, or text around: a string
        assert_eq!(
            render("{{ ticket.priority }}{{ ticket.priority }}").unwrap(),
            json!("44")
        );
        assert_eq!(render("P{{ ticket.priority }}").unwrap(), json!("P4"));
        assert!(!t("{{ '}}' }}").is_single_expression());
        assert_eq!(render("{{ '}}' }}").unwrap(), json!("}}"));
    }

    #[test]
    fn strings_are_never_escaped() {
        assert_eq!(
            render("Urgent ticket: {{ticket.subject}}").unwrap(),
            json!("Urgent ticket: Refund <please> & thanks")
        );
        assert_eq!(render("{{ '<b>' }} {{ '&' }}").unwrap(), json!("<b> &"));
    }

    #[test]
    fn filters() {
        assert_eq!(
            render("{{ ticket.subject | upper }}").unwrap(),
            json!("REFUND <PLEASE> & THANKS")
        );
        assert_eq!(
            render("{{ ticket.requester.name | lower }}").unwrap(),
            json!("ann")
        );
        assert_eq!(render("{{ '  x ' | trim }}").unwrap(), json!("x"));
        assert_eq!(
            render("{{ ticket.tags | join(', ') }}").unwrap(),
            json!("vip, billing")
        );
        assert_eq!(render("{{ ticket.tags | first }}").unwrap(), json!("vip"));
        assert_eq!(
            render("{{ ticket.tags | last }}").unwrap(),
            json!("billing")
        );
        assert_eq!(
            render("{{ ticket.subject | replace('Refund', 'Return') }}").unwrap(),
            json!("Return <please> & thanks")
        );
        assert_eq!(render("{{ ticket.subject[:6] }}").unwrap(), json!("Refund"));
        assert_eq!(
            render("{{ ticket.tags | tojson }}").unwrap(),
            json!("[\"vip\",\"billing\"]")
        );
        assert_eq!(
            render("x={{ ticket.requester | tojson }}").unwrap(),
            json!("x={\"email\":\"a@example.com\",\"name\":\"Ann\"}")
        );
        assert_eq!(
            render("{% for t in ticket.tags %}{{ loop.index }}:{{ t }} {% endfor %}").unwrap(),
            json!("1:vip 2:billing ")
        );
        assert!(matches!(
            render("{{ ticket.nope | tojson }}"),
            Err(RenderError::Missing { .. })
        ));
    }

    #[test]
    fn missing_values_are_errors() {
        let err = render("{{ ticket.nope }}").unwrap_err();
        assert_eq!(
            err,
            RenderError::Missing {
                path: "ticket.nope".into(),
                offset: Some(2)
            }
        );
        assert_eq!(
            err.to_string(),
            "`ticket.nope` is missing; give a fallback with `| default(...)`"
        );
        let err = render("Hello {{ ticket.nope }}!").unwrap_err();
        assert_eq!(
            err,
            RenderError::Missing {
                path: "ticket.nope".into(),
                offset: Some(9)
            }
        );
        assert!(
            matches!(render("{{ nope.deeper }}"), Err(RenderError::Missing { path, .. }) if path == "nope")
        );
        assert!(
            matches!(render("x {{ ticket.nope.deeper }}"), Err(RenderError::Missing { path, .. }) if path == "ticket.nope")
        );
        assert!(
            matches!(render("{{ ticket.nope | upper }}"), Err(RenderError::Missing { path, .. }) if path == "ticket.nope")
        );
        assert!(
            matches!(render("{% for x in ticket.nope %}{% endfor %}"), Err(RenderError::Missing { path, .. }) if path == "ticket.nope")
        );
    }

    #[test]
    fn defaults_and_definedness() {
        assert_eq!(
            render("{{ ticket.nope | default('n/a') }}").unwrap(),
            json!("n/a")
        );
        assert_eq!(render("{{ ticket.nope | default(3) }}").unwrap(), json!(3));
        assert_eq!(
            render("Group: {{ ticket.nope | d('none') }}").unwrap(),
            json!("Group: none")
        );
        assert_eq!(
            render("{% if ticket.x is defined %}y{% else %}n{% endif %}").unwrap(),
            json!("n")
        );
        assert_eq!(
            render("{% if ticket.x %}y{% else %}n{% endif %}").unwrap(),
            json!("n")
        );
        assert_eq!(render("{{ ticket.id is defined }}").unwrap(), json!(true));
    }

    #[test]
    fn actions_results() {
        let tpl = t("{{actions[0].result.id}}");
        assert_eq!(tpl.render(&ctx()).unwrap(), json!("C123"));
        assert_eq!(
            tpl.paths(),
            &[FieldPath::parse("actions[0].result.id").unwrap()]
        );
        assert_eq!(
            tpl.action_refs(),
            vec![(0, FieldPath::parse("result.id").unwrap())]
        );
        assert_eq!(
            render("ts={{ actions[0].result.ts }}").unwrap(),
            json!("ts=1.5")
        );
        let err = render("{{ actions[3].result.id }}").unwrap_err();
        assert!(
            matches!(err, RenderError::Missing { ref path, .. } if path == "actions[3]"),
            "{err:?}"
        );
        let err = render("see {{ actions[3].result.id }}").unwrap_err();
        assert!(
            matches!(err, RenderError::Missing { ref path, .. } if path == "actions[3]"),
            "{err:?}"
        );
        // a bare `actions` is kept
        let tpl = t("{{ actions | length }}");
        assert_eq!(tpl.paths(), &[FieldPath::key("actions")]);
        assert!(tpl.action_refs().is_empty());
        assert_eq!(tpl.render(&ctx()).unwrap(), json!(1));
    }

    #[test]
    fn paths_are_collected() {
        let tpl = t(
            "{{ ticket.subject }} by {{ ticket.requester.email }} {% for t in ticket.tags %}{{ t }}{{ loop.index }}{% endfor %}{% set x = event.name %}{{ x }}{{ range(2) | list }} {{ actions[1].result.id }} {{ actions[0] }}",
        );
        let paths: Vec<String> = tpl.paths().iter().map(ToString::to_string).collect();
        assert_eq!(
            paths,
            [
                "actions[0]",
                "actions[1].result.id",
                "event.name",
                "ticket.requester.email",
                "ticket.subject",
                "ticket.tags",
            ]
        );
        assert_eq!(
            t("{{ ticket['subject'] }}").paths(),
            &[FieldPath::key("ticket")]
        );
        assert_eq!(
            t("{{ ticket.tags[0] }}").paths(),
            &[FieldPath::parse("ticket.tags").unwrap()]
        );
    }

    #[test]
    fn syntax_errors_have_offsets() {
        let err = Template::parse("a {{ ticket.subject ").unwrap_err();
        assert_eq!(err.offset, Some(12));
        assert!(
            err.message
                .starts_with("syntax error: unexpected end of input"),
            "{}",
            err.message
        );
        let err = Template::parse("ab {% if %}").unwrap_err();
        assert_eq!(err.offset, Some(9));
        let err = Template::parse("{{ ticket.subject | }}").unwrap_err();
        assert!(err.message.starts_with("syntax error"));
        assert!(err.offset.is_some_and(|o| o >= 18), "{err:?}");
        let err = Template::parse("{% if x %}open").unwrap_err();
        assert!(err.message.contains("syntax error"));
        assert!(Template::parse("{{}}").is_err());
        assert!(Template::parse("{% endfor %}").is_err());
    }

    #[test]
    fn runtime_failures() {
        let err = render("{{ ticket.subject | bogus }}").unwrap_err();
        assert!(
            matches!(err, RenderError::Failed { ref message, offset: Some(_) } if message.contains("unknown filter")),
            "{err:?}"
        );
        let err = render("x{{ ticket.subject + 1 }}").unwrap_err();
        assert!(matches!(err, RenderError::Failed { .. }), "{err:?}");
    }

    struct Types;

    impl PathTypes for Types {
        fn type_of(&self, path: &FieldPath) -> PathType {
            match path.to_string().as_str() {
                "ticket" | "event" => PathType::Known(ValueType::Object),
                "ticket.subject" | "event.name" => PathType::Known(ValueType::String),
                "ticket.tags" => PathType::Known(ValueType::StringList),
                _ if path.root_key() == Some("payload") => PathType::Open,
                _ => PathType::Missing,
            }
        }
        fn primary(&self) -> &str {
            "ticket"
        }
        fn suggest(&self, path: &FieldPath) -> Option<String> {
            (path.to_string() == "ticket.subjekt").then(|| "ticket.subject".to_owned())
        }
    }

    #[test]
    fn check_reports_missing_paths() {
        let tpl = t(
            "Hi {{ ticket.subjekt }} {{ ticket.subject }} {{ payload.x.y }} {{ actions[0].result.id }} {% for t in ticket.tags %}{{ t }}{% endfor %} {{ requester.name | default('') }}",
        );
        let errors = tpl.check(&Types);
        assert_eq!(
            errors,
            vec![
                TemplateError {
                    offset: tpl.source().find("requester.name"),
                    message: "the event never has field `requester.name`".into(),
                    help: None,
                },
                TemplateError {
                    offset: Some(6),
                    message: "the event never has field `ticket.subjekt`".into(),
                    help: Some("did you mean `ticket.subject`?".into()),
                },
            ]
        );
        assert!(
            t("{{ ticket.subject }} {{ range(3) | list }}")
                .check(&Types)
                .is_empty()
        );
        assert!(t("literal").check(&Types).is_empty());
    }

    #[test]
    fn render_context_is_reusable() {
        let value = ctx();
        let rc = RenderContext::new(&value);
        assert_eq!(t("{{ ticket.id }}").render_in(&rc).unwrap(), json!(42));
        assert_eq!(t("#{{ ticket.id }}").render_in(&rc).unwrap(), json!("#42"));
        assert_eq!(t("plain").render_in(&rc).unwrap(), json!("plain"));
    }

    #[test]
    fn templates_are_shareable() {
        fn assert_send_sync<T: Send + Sync + Clone + fmt::Debug>() {}
        assert_send_sync::<Template>();
        let tpl = t("a {{ ticket.id }}");
        let copy = tpl.clone();
        assert_eq!(tpl, copy);
        assert_eq!(copy.render(&ctx()).unwrap(), json!("a 42"));
        assert!(format!("{tpl:?}").contains("template"));
    }

    #[test]
    fn plain_strings_take_the_literal_path() {
        // Speed is measured by benches/, not asserted here: what matters is that a plain string
        // never reaches minijinja.
        for s in ["channel-1", "#urgent", "a { b } c", "50% off", ""] {
            let tpl = Template::parse(s).unwrap();
            assert!(tpl.is_literal(), "{s:?}");
            assert!(tpl.paths().is_empty());
            assert_eq!(tpl.render(&ctx()).unwrap(), json!(s));
        }
    }

    proptest! {
        #[test]
        fn prop_parse_and_render_never_panic(source in any::<String>()) {
            if let Ok(tpl) = Template::parse(&source) {
                let _ = tpl.render(&ctx());
                let _ = tpl.check(&Types);
            }
        }

        #[test]
        fn prop_jinja_like_sources_never_panic(source in r"(\{\{|\}\}|\{%|%\}|\{#|#\}| |ticket|\.|subject|actions|\[0\]|\||default|\(|\)|'x'|if|for|in|endif|endfor|[a-z])*") {
            if let Ok(tpl) = Template::parse(&source) {
                let _ = tpl.render(&ctx());
                let _ = tpl.check(&Types);
                let _ = tpl.action_refs();
            }
        }

        #[test]
        fn prop_literals_render_to_themselves(source in "[^{]*") {
            let tpl = Template::parse(&source).unwrap();
            prop_assert!(tpl.is_literal());
            prop_assert_eq!(tpl.render(&ctx()).unwrap(), Value::String(source));
        }

        #[test]
        fn prop_single_expressions_keep_types(v in prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            "[a-z <>&]{0,10}".prop_map(Value::from),
            proptest::collection::vec(any::<i32>().prop_map(Value::from), 0..4).prop_map(Value::Array),
        ]) {
            let tpl = Template::parse("{{ ticket.v }}").unwrap();
            prop_assert_eq!(tpl.render(&json!({ "ticket": { "v": v.clone() } })).unwrap(), v);
        }
    }
}

#[cfg(test)]
mod limit_tests {
    //! SEC-09: what a template may make one render do.

    use serde_json::{Value, json};

    use super::{Limit, RenderError, Template, limits};

    fn render(source: &str, ctx: &Value) -> Result<Value, RenderError> {
        Template::parse(source).unwrap().render(ctx)
    }

    /// The review's template: 2·10⁹ iterations. Without fuel it renders until killed.
    const NESTED: &str =
        "{% for i in range(100000) %}{% for j in range(20000) %}x{% endfor %}{% endfor %}";

    #[test]
    fn nested_loops_run_out_of_fuel() {
        // Without fuel this render runs for hours; with it, it ends in milliseconds.
        let err = render(NESTED, &json!({})).unwrap_err();
        assert_eq!(err, RenderError::Limit(Limit::Fuel));
        assert!(err.to_string().contains("fuel of 250000 ran out"), "{err}");
        // The bound hidden in a variable, and loops over event data, stop the same way.
        let hidden = "{% set n = 20000 %}{% for i in range(100000) %}{% for j in range(n) %}x{% endfor %}{% endfor %}";
        assert_eq!(
            render(hidden, &json!({})),
            Err(RenderError::Limit(Limit::Fuel))
        );
        let tags: Vec<String> = (0..2000).map(|i| format!("t{i}")).collect();
        assert_eq!(
            render(
                "{% for a in ticket.tags %}{% for b in ticket.tags %}.{% endfor %}{% endfor %}",
                &json!({"ticket": {"tags": tags}})
            ),
            Err(RenderError::Limit(Limit::Fuel))
        );
    }

    #[test]
    fn huge_allocations_are_refused_before_they_happen() {
        // 100 MB: refused by the fuel check before the string exists, as a single expression
        // and inside a larger template.
        for source in [
            "{{ 'x' * 100000000 }}",
            "a{{ 'x' * 100000000 }}",
            "{{ ('x' * 10000000) ~ ('y' * 10000000) }}",
            "{% set s = 'x' * 100000000 %}{{ s | length }}",
        ] {
            assert_eq!(
                render(source, &json!({})),
                Err(RenderError::Limit(Limit::Fuel)),
                "{source}"
            );
        }
    }

    #[test]
    fn output_is_capped_per_parameter() {
        // Under the fuel (1 MB is about 16,000 fuel) but over the output cap.
        let big = "{{ 'x' * 300000 }}!";
        assert_eq!(
            render(big, &json!({})),
            Err(RenderError::Limit(Limit::Output))
        );
        assert_eq!(
            render("{{ 'x' * 300000 }}", &json!({})),
            Err(RenderError::Limit(Limit::Output))
        );
        assert_eq!(
            render(
                "{{ ticket.body }}",
                &json!({"ticket": {"body": "y".repeat(300_000)}})
            ),
            Err(RenderError::Limit(Limit::Output))
        );
        assert_eq!(
            render(
                "{% for i in range(30000) %}0123456789{% endfor %}",
                &json!({})
            ),
            Err(RenderError::Limit(Limit::Output))
        );
        assert!(
            RenderError::Limit(Limit::Output)
                .to_string()
                .contains("more than 256 KiB")
        );
        // Just under the cap renders.
        let ok = render(
            &format!("{{{{ 'x' * {} }}}}!", limits::MAX_OUTPUT - 1),
            &json!({}),
        )
        .unwrap();
        assert_eq!(ok.as_str().map(str::len), Some(limits::MAX_OUTPUT));
    }

    #[test]
    fn real_templates_render_within_the_limits() {
        // A Slack message looping over 1,000 tags, with a condition and a filter per tag.
        let tags: Vec<String> = (0..1000).map(|i| format!("customer-tag-{i}")).collect();
        let ctx = json!({"ticket": {"id": 7, "subject": "Refund", "tags": tags}});
        let source = "*{{ ticket.subject }}* (#{{ ticket.id }})\n{% for t in ticket.tags %}{% if not loop.first %}, {% endif %}`{{ t | upper }}`{% endfor %}\n{{ ticket.tags | length }} tags";
        let out = render(source, &ctx).unwrap();
        assert!(out.as_str().unwrap().contains("`CUSTOMER-TAG-999`"));
        assert!(out.as_str().unwrap().ends_with("1000 tags"));
        // The whole list as JSON, joined, sorted.
        render("{{ ticket.tags | tojson }}", &ctx).unwrap();
        render("{{ ticket.tags | sort | join(', ') }}", &ctx).unwrap();
        render("{{ ticket.tags }}", &ctx).unwrap();
        // A loop over a range of 10,000.
        render("{% for i in range(10000) %}{{ i }}{% endfor %}", &json!({})).unwrap();
    }

    fn static_messages(source: &str) -> Vec<String> {
        Template::parse(source)
            .unwrap()
            .static_limits()
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[test]
    fn static_limits_see_constant_ranges() {
        let errors = Template::parse(NESTED).unwrap().static_limits();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].message,
            "nested `range` loops run 2000000000 times, more than one render may do (its fuel is 250000)"
        );
        assert_eq!(errors[0].offset, NESTED.find("{% for j"));
        assert_eq!(
            static_messages("{{ range(200000) | list }}"),
            [
                "`range(200000)` has 200000 elements; `range` gives at most 100000, so rendering always fails"
            ]
        );
        assert_eq!(
            static_messages("{% for i in range(0, 300000, 2) %}{% endfor %}"),
            [
                "`range(0, 300000, 2)` has 150000 elements; `range` gives at most 100000, so rendering always fails"
            ]
        );
        // Three loops, each small, whose product is not.
        assert_eq!(
            static_messages(
                "{%- for a in range(100) -%}{% for b in range(100) %}{% for c in range(100) %}.{% endfor %}{% endfor %}{% endfor %}"
            ),
            [
                "nested `range` loops run 1000000 times, more than one render may do (its fuel is 250000)"
            ]
        );
    }

    #[test]
    fn static_limits_leave_what_they_cannot_judge() {
        for source in [
            // not nested: a single loop is left to the fuel
            "{% for i in range(100000) %}{% endfor %}",
            "{% for i in range(400) %}{% for j in range(400) %}{% endfor %}{% endfor %}",
            // sequential, not nested
            "{% for i in range(100000) %}{% endfor %}{% for j in range(100000) %}{% endfor %}",
            // bounds the check cannot see
            "{% set n = 20000 %}{% for i in range(100000) %}{% for j in range(n) %}x{% endfor %}{% endfor %}",
            "{% for t in ticket.tags %}{% for u in ticket.tags %}{% endfor %}{% endfor %}",
            // comments are not code
            "{# {% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %} #}x{{ y }}",
            "{{ range(10, 5) | list }} {{ range(5, 0, -1) | list }} {{ range(1, 2, 0) }}",
            "literal text",
        ] {
            assert!(static_messages(source).is_empty(), "{source}");
        }
    }

    #[test]
    fn what_static_limits_report_does_fail_when_rendered() {
        // The static check claims certainty: what it reports must fail when rendered.
        for source in [
            NESTED,
            "{% for a in range(100) %}{% for b in range(100) %}{% for c in range(100) %}.{% endfor %}{% endfor %}{% endfor %}",
            "{% for a in range(600) %}{% for b in range(600) %}{% endfor %}{% endfor %}",
            "{{ range(200000) | list }}",
        ] {
            assert!(!static_messages(source).is_empty(), "{source}");
            assert!(render(source, &json!({})).is_err(), "{source}");
        }
    }
}

#[cfg(test)]
mod formatting_tests {
    use serde_json::json;

    use super::Template;

    #[test]
    fn null_prints_as_nothing_and_trailing_newlines_stay() {
        let ctx = json!({"row": {"notes": null, "name": "a"}});
        let t = Template::parse("notes: {{ row.notes }}|{{ row.notes or 'none' }}\n").unwrap();
        assert_eq!(t.render(&ctx).unwrap(), json!("notes: |none\n"));
    }
}
