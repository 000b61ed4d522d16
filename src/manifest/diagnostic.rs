//! Diagnostics: every problem found in a manifest repository, collected across all files before
//! anything is reported. A diagnostic holds a byte span; line and column are computed only when
//! rendering `file:line:col: message`. Each diagnostic carries a stable [`Code`] naming its kind
//! (the rule id of SARIF, the check name of GitLab's Code Quality report).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use serde::Serialize;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The repository is invalid.
    Error,
    /// Worth a look; does not fail validation.
    Warning,
}

/// The kind of a diagnostic: a stable id that CI systems group and track findings by. The ids
/// never change meaning; a new kind gets a new id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// A file that cannot be read as a manifest: too large, a symbolic link, not UTF-8.
    FileUnreadable,
    /// TOML syntax.
    TomlSyntax,
    /// A field the schema does not allow, a missing required field, a value of the wrong type.
    Schema,
    /// A secret written in plain text.
    PlainSecret,
    /// A secret reference that is malformed or names one of the daemon's own secrets.
    SecretReference,
    /// Two integrations, rules or test cases with one id or name.
    DuplicateId,
    /// A reference to an integration, rule, event, action or result field that does not exist.
    UnknownReference,
    /// An endpoint override that no host policy can allow.
    Endpoint,
    /// What a platform cannot do: deliver an event, take a section, perform an action.
    Unsupported,
    /// A trigger condition that does not compile.
    Condition,
    /// A template that does not parse or names what the event does not have.
    Template,
    /// An action parameter that is unknown, missing or of the wrong type.
    Parameter,
    /// A test case that cannot run or asserts nothing.
    TestCase,
    /// A rule that can never fire (a warning; an error under `validate --strict`).
    NeverFires,
    /// Anything else about a manifest.
    Invalid,
    /// The folder holds no integrations and no rules (the wrong folder, most likely).
    EmptyRepository,
}

impl Code {
    /// Every code, in a fixed order (SARIF's `rules` array).
    pub const ALL: &'static [Code] = &[
        Code::FileUnreadable,
        Code::TomlSyntax,
        Code::Schema,
        Code::PlainSecret,
        Code::SecretReference,
        Code::DuplicateId,
        Code::UnknownReference,
        Code::Endpoint,
        Code::Unsupported,
        Code::Condition,
        Code::Template,
        Code::Parameter,
        Code::TestCase,
        Code::NeverFires,
        Code::Invalid,
        Code::EmptyRepository,
    ];

    /// The stable id (`toml-syntax`, `never-fires` …).
    pub fn id(self) -> &'static str {
        match self {
            Code::FileUnreadable => "file-unreadable",
            Code::TomlSyntax => "toml-syntax",
            Code::Schema => "schema",
            Code::PlainSecret => "plain-secret",
            Code::SecretReference => "secret-reference",
            Code::DuplicateId => "duplicate-id",
            Code::UnknownReference => "unknown-reference",
            Code::Endpoint => "endpoint",
            Code::Unsupported => "unsupported",
            Code::Condition => "condition",
            Code::Template => "template",
            Code::Parameter => "parameter",
            Code::TestCase => "test-case",
            Code::NeverFires => "never-fires",
            Code::Invalid => "invalid",
            Code::EmptyRepository => "empty-repository",
        }
    }

    /// One sentence on what the kind means.
    pub fn description(self) -> &'static str {
        match self {
            Code::FileUnreadable => {
                "A file that cannot be read as a manifest: too large, a symbolic link, or not UTF-8."
            }
            Code::TomlSyntax => "The file is not valid TOML.",
            Code::Schema => {
                "A field the schema does not allow, a missing required field or a value of the wrong type."
            }
            Code::PlainSecret => {
                "A secret written in plain text: seal it or reference it (env, file)."
            }
            Code::SecretReference => {
                "A secret reference that is malformed or names one of the daemon's own secrets."
            }
            Code::DuplicateId => "Two integrations, rules or test cases share an id or name.",
            Code::UnknownReference => {
                "A reference to an integration, rule, event, action or result field that does not exist."
            }
            Code::Endpoint => "An endpoint override that no host policy can allow.",
            Code::Unsupported => {
                "Something the platform cannot do: deliver this event, take this section, perform actions."
            }
            Code::Condition => "A trigger condition that does not compile.",
            Code::Template => {
                "A template that does not parse, or names a field the event does not have."
            }
            Code::Parameter => "An action parameter that is unknown, missing or of the wrong type.",
            Code::TestCase => "A test case that cannot run or asserts nothing.",
            Code::NeverFires => {
                "A rule that can never fire: its integration does not subscribe to its event."
            }
            Code::Invalid => "A manifest that is invalid in another way.",
            Code::EmptyRepository => {
                "No integrations and no rules where supportopsd looked: the wrong folder, most likely."
            }
        }
    }
}

/// One problem at one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Its kind.
    pub code: Code,
    /// File relative to the manifest root.
    pub file: String,
    /// Byte range in the file, when a place is known.
    pub span: Option<Range<usize>>,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong: lower-case, no trailing period.
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub help: Option<String>,
}

/// All diagnostics of one run, plus the text of every file (to compute line and column).
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
    texts: BTreeMap<String, String>,
}

/// A diagnostic with its position resolved, for JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct Located<'a> {
    /// Its kind's stable id.
    pub code: &'static str,
    /// File relative to the manifest root.
    pub file: &'a str,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters (Unicode scalar values).
    pub column: usize,
    /// 1-based line of the end of the span (the start's when no span is known).
    pub end_line: usize,
    /// 1-based column just past the span's end, in characters (exclusive, as SARIF's
    /// `endColumn`); the start's when no span is known.
    pub end_column: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong.
    pub message: &'a str,
    /// How to fix it.
    pub help: Option<&'a str>,
}

// === impl Diagnostic ===

impl Diagnostic {
    /// An error at `span` in `file`.
    pub fn error(file: &str, span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        Diagnostic {
            code: Code::Invalid,
            file: file.to_owned(),
            span,
            severity: Severity::Error,
            message: message.into(),
            help: None,
        }
    }

    /// A warning at `span` in `file`.
    pub fn warning(file: &str, span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, span, message)
        }
    }

    /// Names its kind.
    #[must_use]
    pub fn with_code(mut self, code: Code) -> Self {
        self.code = code;
        self
    }

    /// Adds a help line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a help line when there is one.
    #[must_use]
    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

// === impl Diagnostics ===

impl Diagnostics {
    /// Remembers a file's text so positions in it can be rendered.
    pub fn add_source(&mut self, file: &str, text: &str) {
        self.texts.insert(file.to_owned(), text.to_owned());
    }

    /// Adds a diagnostic. A message of several lines (a regex error with its caret diagram) is
    /// folded into one, so every diagnostic stays one `file:line:col: message` line.
    pub fn push(&mut self, mut d: Diagnostic) {
        if d.message.contains('\n') {
            let first = d
                .message
                .lines()
                .next()
                .unwrap_or_default()
                .trim_end_matches(':')
                .trim();
            let last = d.message.lines().last().unwrap_or_default().trim();
            let last = last.strip_prefix("error: ").unwrap_or(last);
            d.message = format!("{first}: {last}");
        }
        self.items.push(d);
    }

    /// Adds several.
    pub fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        for d in ds {
            self.push(d);
        }
    }

    /// Moves the other run's diagnostics and texts into this one.
    pub fn merge(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
        self.texts.extend(other.texts);
    }

    /// The files diagnostics are about.
    pub fn files(&self) -> std::collections::BTreeSet<String> {
        self.items.iter().map(|d| d.file.clone()).collect()
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }

    /// Turns every warning into an error (`--strict`).
    pub fn warnings_as_errors(&mut self) {
        for d in &mut self.items {
            d.severity = Severity::Error;
        }
    }

    /// Whether there are none at all.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The diagnostics, sorted by file, position and message.
    pub fn sorted(&self) -> Vec<&Diagnostic> {
        let mut v: Vec<&Diagnostic> = self.items.iter().collect();
        v.sort_by(|a, b| {
            (&a.file, a.span.as_ref().map(|s| s.start), &a.message).cmp(&(
                &b.file,
                b.span.as_ref().map(|s| s.start),
                &b.message,
            ))
        });
        v.dedup_by(|a, b| a == b);
        v
    }

    /// 1-based line and column (in characters) of a byte offset in `file`.
    pub fn line_col(&self, file: &str, offset: usize) -> (usize, usize) {
        let Some(text) = self.texts.get(file) else {
            return (1, 1);
        };
        line_col(text, offset)
    }

    /// Every diagnostic with its position resolved.
    pub fn located(&self) -> Vec<Located<'_>> {
        self.sorted()
            .into_iter()
            .map(|d| {
                let ((line, column), (end_line, end_column)) = match &d.span {
                    Some(span) => {
                        let start = self.line_col(&d.file, span.start);
                        let end = self.line_col(&d.file, span.end.max(span.start));
                        (start, end)
                    }
                    None => ((1, 1), (1, 1)),
                };
                Located {
                    code: d.code.id(),
                    file: &d.file,
                    line,
                    column,
                    end_line,
                    end_column,
                    severity: d.severity,
                    message: &d.message,
                    help: d.help.as_deref(),
                }
            })
            .collect()
    }

    /// Renders every diagnostic as `file:line:col: severity: message`, with an indented help
    /// line where there is one. `prefix` is prepended to file names (the `--path`, say).
    pub fn render(&self, prefix: &str) -> String {
        let mut out = String::new();
        for d in self.located() {
            let sev = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let _ = writeln!(
                out,
                "{prefix}{}:{}:{}: {sev}: {}",
                d.file, d.line, d.column, d.message
            );
            if let Some(help) = d.help {
                let _ = writeln!(out, "  help: {help}");
            }
        }
        out
    }
}

/// 1-based line and column (in characters) of a byte offset in `text`; offsets past the end or
/// inside a character are clamped.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The closest candidate to `word` by edit distance, when close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(word, c);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let limit = (word.chars().count().max(c.chars().count()) / 3).max(1);
    (d <= limit).then_some(c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let t = "a = 1\nbé = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 9), (2, 3));
        assert_eq!(line_col(t, 8), (2, 2)); // inside 'é': clamped to its start
        assert_eq!(line_col(t, 999), (3, 1));
    }

    #[test]
    fn suggestions() {
        let events = ["ticket_created", "ticket_updated", "note_created"];
        assert_eq!(
            did_you_mean("ticket_create", events),
            Some("ticket_created")
        );
        assert_eq!(did_you_mean("zzz", events), None);
    }

    #[test]
    fn render_sorts_and_dedups() {
        let mut ds = Diagnostics::default();
        ds.add_source("rules/a.toml", "id = \"x\"\nevent = 3\n");
        ds.push(Diagnostic::error(
            "rules/a.toml",
            Some(17..18),
            "expected a string",
        ));
        ds.push(Diagnostic::error("rules/a.toml", Some(0..2), "bad id").with_help("fix it"));
        ds.push(Diagnostic::error("rules/a.toml", Some(0..2), "bad id").with_help("fix it"));
        assert_eq!(
            ds.render(""),
            "rules/a.toml:1:1: error: bad id\n  help: fix it\nrules/a.toml:2:9: error: expected a string\n"
        );
    }
}
