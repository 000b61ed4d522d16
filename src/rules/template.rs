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
use std::sync::{Arc, LazyLock, OnceLock};

use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, ErrorKind, Expression, UndefinedBehavior};
use regex::Regex;
use serde_json::Value;

use super::path::{FieldPath, Segment};
use super::{PathType, PathTypes};

/// The context root holding the results of the rule's earlier actions.
pub const ACTIONS_ROOT: &str = "actions";

/// The name under which a full template is stored in its own environment.
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
    /// Anything else: rendered to a string by its own environment, which owns the compiled
    /// template (a clone of the shared environment). Built on first render: validating a large
    /// repository parses every template but renders none, and must not pay for an environment
    /// per template.
    Full(OnceLock<Arc<Environment<'static>>>),
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
    /// Anything else (unknown filter, bad operand types…).
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
        /// Byte offset into the source, where known.
        offset: Option<usize>,
    },
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
            compiled: Compiled::Full(OnceLock::new()),
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
                    message: format!("the event never has field `{text}`"),
                    help: types.suggest(p).map(|s| format!("did you mean `{s}`?")),
                }
            })
            .collect()
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
                serde_json::to_value(&value).map_err(|e| RenderError::Failed {
                    message: format!("the value cannot be converted to JSON: {e}"),
                    offset: Some(*offset),
                })
            }
            Compiled::Full(cell) => self
                .full_env(cell)
                .map_err(|e| self.render_error(&e, 0))?
                .get_template(TEMPLATE_NAME)
                .and_then(|t| t.render(ctx.value.clone()))
                .map(Value::String)
                .map_err(|e| self.render_error(&e, 0)),
        }
    }

    /// The environment owning this full template, compiled on first use.
    fn full_env<'a>(
        &self,
        cell: &'a OnceLock<Arc<Environment<'static>>>,
    ) -> Result<&'a Arc<Environment<'static>>, minijinja::Error> {
        if let Some(env) = cell.get() {
            return Ok(env);
        }
        let mut own = ENV.clone();
        own.add_template_owned(TEMPLATE_NAME, self.source.clone())?;
        Ok(cell.get_or_init(|| Arc::new(own)))
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
            Compiled::Full(_) => "template",
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
