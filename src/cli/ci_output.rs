//! CI-native renderings: `validate`'s diagnostics as GitHub Actions workflow commands, SARIF
//! 2.1.0 and GitLab Code Quality JSON; `test`'s report as JUnit XML. Positions are 1-based lines
//! and columns counted in Unicode characters (code points), the end column exclusive (SARIF's
//! `endColumn`); file paths are relative to the current directory (the repository root when CI
//! runs the command there) and use `/`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::manifest::diagnostic::{Code, Located, Severity};
use crate::testing::Report;

/// SARIF's schema, by its canonical URI (named, never fetched).
const SARIF_SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// The prefix of file names (`--repo` and `--path`) as CI wants it, relative to the current
/// directory, without a leading `./`: an absolute `--repo` inside it loses the directory's part.
pub(super) fn relative_prefix(prefix: &str) -> String {
    let mut relative = prefix;
    while let Some(rest) = relative.strip_prefix("./") {
        relative = rest;
    }
    let path = std::path::Path::new(relative);
    if !path.is_absolute() {
        return relative.to_owned();
    }
    let Some(rel) = std::env::current_dir().ok().and_then(|cwd| {
        path.strip_prefix(&cwd)
            .ok()
            .map(std::path::Path::to_path_buf)
    }) else {
        return prefix.to_owned();
    };
    let rel = rel.to_string_lossy();
    if rel.is_empty() {
        String::new()
    } else {
        format!("{}/", rel.trim_end_matches('/'))
    }
}

/// GitHub's escaping of a workflow command's message (`%`, CR, LF), as its toolkit does.
pub(super) fn github_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// GitHub's escaping of a workflow command's property value: the message's, plus `:` and `,`.
pub(super) fn github_property(s: &str) -> String {
    github_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// The message with its help line, when there is one.
fn full_message(d: &Located<'_>) -> String {
    match d.help {
        Some(help) => format!("{}\nhelp: {help}", d.message),
        None => d.message.to_owned(),
    }
}

/// One `::error …::message` (or `::warning`) line per diagnostic. A diagnostic without a file
/// (an empty repository) has no position properties.
pub(super) fn github(ds: &[Located<'_>], prefix: &str) -> String {
    let mut out = String::new();
    for d in ds {
        let command = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut props = Vec::new();
        if !d.file.is_empty() {
            props.push(format!(
                "file={}",
                github_property(&format!("{prefix}{}", d.file))
            ));
            props.push(format!("line={}", d.line));
            props.push(format!("col={}", d.column));
            props.push(format!("endLine={}", d.end_line));
            props.push(format!("endColumn={}", d.end_column));
        }
        props.push(format!(
            "title={}",
            github_property(&format!("supportopsd {}", d.code))
        ));
        let _ = writeln!(
            out,
            "::{command} {}::{}",
            props.join(","),
            github_data(&full_message(d))
        );
    }
    out
}

/// A relative path as a URI reference: every byte outside RFC 3986's unreserved characters
/// and `/` percent-encoded.
fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// The default level of a kind: warnings for what does not fail `validate` without `--strict`.
fn default_severity(code: Code) -> Severity {
    match code {
        Code::NeverFires => Severity::Warning,
        _ => Severity::Error,
    }
}

/// A SARIF 2.1.0 log with one run: the tool with every diagnostic kind as a rule, and one result
/// per diagnostic.
pub(super) fn sarif(ds: &[Located<'_>], prefix: &str) -> Value {
    let index: BTreeMap<&str, usize> = Code::ALL
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id(), i))
        .collect();
    let rules: Vec<Value> = Code::ALL
        .iter()
        .map(|c| {
            json!({
                "id": c.id(),
                "shortDescription": { "text": c.description() },
                "defaultConfiguration": { "level": sarif_level(default_severity(*c)) },
            })
        })
        .collect();
    let results: Vec<Value> = ds
        .iter()
        .map(|d| {
            let mut r = json!({
                "ruleId": d.code,
                "level": sarif_level(d.severity),
                "message": { "text": full_message(d) },
            });
            if let Some(i) = index.get(d.code) {
                r["ruleIndex"] = json!(i);
            }
            r["locations"] = if d.file.is_empty() {
                json!([])
            } else {
                json!([{
                    "physicalLocation": {
                        "artifactLocation": {
                            "uri": uri_path(&format!("{prefix}{}", d.file)),
                            "uriBaseId": "%SRCROOT%",
                        },
                        "region": {
                            "startLine": d.line,
                            "startColumn": d.column,
                            "endLine": d.end_line,
                            "endColumn": d.end_column,
                        },
                    }
                }])
            };
            r
        })
        .collect();
    let mut driver = json!({
        "name": "supportopsd",
        "version": env!("CARGO_PKG_VERSION"),
        "semanticVersion": env!("CARGO_PKG_VERSION"),
        "rules": rules,
    });
    // The package's home, when it names one (SARIF wants an absolute URI or nothing).
    let home = option_env!("CARGO_PKG_HOMEPAGE")
        .filter(|s| !s.is_empty())
        .or(option_env!("CARGO_PKG_REPOSITORY").filter(|s| !s.is_empty()));
    if let Some(home) = home {
        driver["informationUri"] = json!(home);
    }
    json!({
        "version": "2.1.0",
        "$schema": SARIF_SCHEMA,
        "runs": [{
            "tool": { "driver": driver },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    })
}

/// GitLab's severity of a diagnostic: a secret in plain text is critical, other errors major,
/// warnings minor.
fn gitlab_severity(d: &Located<'_>) -> &'static str {
    match d.severity {
        Severity::Warning => "minor",
        Severity::Error if d.code == Code::PlainSecret.id() => "critical",
        Severity::Error => "major",
    }
}

/// A GitLab Code Quality report: one issue per diagnostic. The fingerprint is the SHA-256 of
/// the kind, the path, the message and the number of identical issues before it, not of the
/// line: an issue keeps its fingerprint when lines above it move.
pub(super) fn gitlab(ds: &[Located<'_>], prefix: &str) -> Value {
    let mut seen: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let issues: Vec<Value> = ds
        .iter()
        .map(|d| {
            let path = if d.file.is_empty() {
                // No file: the folder that was looked in, relative to the current directory.
                let folder = prefix.trim_end_matches('/');
                if folder.is_empty() { "." } else { folder }.to_owned()
            } else {
                format!("{prefix}{}", d.file)
            };
            let key = (d.code.to_owned(), path.clone(), d.message.to_owned());
            let n = seen.entry(key).or_insert(0);
            let mut hash = Sha256::new();
            for part in [d.code, path.as_str(), d.message, &n.to_string()] {
                hash.update(part.as_bytes());
                hash.update([0]);
            }
            *n += 1;
            let fingerprint: String = hash.finalize().iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            });
            json!({
                "type": "issue",
                "description": full_message(d),
                "check_name": d.code,
                "fingerprint": fingerprint,
                "severity": gitlab_severity(d),
                "location": { "path": path, "lines": { "begin": d.line } },
            })
        })
        .collect();
    Value::Array(issues)
}

/// Escapes text for an XML attribute value. Characters XML 1.0 cannot carry at all (controls
/// other than tab, LF and CR — a terminal colour code, say) become `\u{…}` text.
pub(super) fn xml_escape(s: &str) -> String {
    escape(s, true)
}

/// Escapes text for XML element content: as [`xml_escape`], but line breaks and tabs stay as
/// they are (a diff stays readable in the raw file); CR is written as a reference, since XML
/// would turn a literal one into LF.
pub(super) fn xml_text(s: &str) -> String {
    escape(s, false)
}

fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\'' if attribute => out.push_str("&apos;"),
            // In attributes, literal newlines and tabs would be normalised to spaces.
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\r' => out.push_str("&#13;"),
            '\n' | '\t' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn seconds(d: Duration) -> String {
    format!("{:.6}", d.as_secs_f64())
}

/// What `--fail-under` asked of the coverage, for JUnit: its own suite with one case.
#[derive(Debug, Clone, Copy)]
pub(super) struct CoverageBar {
    /// The bar, in percent.
    pub(super) min: f64,
    /// Whether the run fell below it (or had no rules to cover).
    pub(super) failed: bool,
}

/// The report as JUnit XML: one `testsuite` per test file, one `testcase` per case (its class
/// name the file), a `failure` with the diff for a failed case; with `--fail-under`, a suite
/// `rule coverage` whose one case fails when coverage is below the bar.
pub(super) fn junit(report: &Report, coverage: Option<CoverageBar>) -> String {
    let mut files: Vec<(&str, Vec<&crate::testing::CaseResult>)> = Vec::new();
    for c in &report.cases {
        match files.iter_mut().find(|(f, _)| *f == c.file) {
            Some((_, cases)) => cases.push(c),
            None => files.push((&c.file, vec![c])),
        }
    }
    let total: Duration = report.cases.iter().map(|c| c.duration).sum();
    let coverage_failed = coverage.is_some_and(|c| c.failed);
    let tests = report.cases.len() + usize::from(coverage.is_some());
    let failures = report.failed() + usize::from(coverage_failed);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"supportopsd test\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{}\">",
        seconds(total)
    );
    for (file, cases) in &files {
        let failed = cases.iter().filter(|c| !c.passed).count();
        let time: Duration = cases.iter().map(|c| c.duration).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\" time=\"{}\">",
            xml_escape(file),
            cases.len(),
            seconds(time)
        );
        for c in cases {
            let open = format!(
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" time=\"{}\"",
                xml_escape(file),
                xml_escape(&c.name),
                xml_escape(file),
                seconds(c.duration)
            );
            match (&c.failure, c.passed) {
                (Some(text), false) => {
                    let first = text.lines().next().unwrap_or("failed");
                    let _ = writeln!(
                        out,
                        "{open}>\n      <failure message=\"{}\" type=\"failure\">{}</failure>\n    </testcase>",
                        xml_escape(first),
                        xml_text(text)
                    );
                }
                (None, false) => {
                    let _ = writeln!(
                        out,
                        "{open}>\n      <failure message=\"failed\" type=\"failure\"/>\n    </testcase>"
                    );
                }
                _ => {
                    let _ = writeln!(out, "{open}/>");
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    if let Some(bar) = coverage {
        let _ = writeln!(
            out,
            "  <testsuite name=\"rule coverage\" tests=\"1\" failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"0\">",
            usize::from(bar.failed)
        );
        let name = format!("at least {}% of enabled rules exercised", bar.min);
        let open = format!(
            "    <testcase classname=\"rule coverage\" name=\"{}\" time=\"0\"",
            xml_escape(&name)
        );
        if bar.failed {
            let message = coverage_line(report);
            let mut detail = message.clone();
            for (id, file) in &report.uncovered {
                let _ = write!(detail, "\nnot exercised: {id} ({file})");
            }
            let _ = writeln!(
                out,
                "{open}>\n      <failure message=\"{}\" type=\"coverage\">{}</failure>\n    </testcase>",
                xml_escape(&message),
                xml_text(&detail)
            );
        } else {
            let _ = writeln!(out, "{open}/>");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// `rule coverage: 3/4 rules (75.0%)`, or that there are no rules to cover.
pub(super) fn coverage_line(report: &Report) -> String {
    if report.rules_total == 0 {
        "rule coverage: no rules to cover".to_owned()
    } else {
        format!(
            "rule coverage: {}/{} rules ({:.1}%)",
            report.rules_exercised,
            report.rules_total,
            report.coverage()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_escapes_data_and_properties_as_its_toolkit_does() {
        assert_eq!(github_data("50% a\r\nb"), "50%25 a%0D%0Ab");
        assert_eq!(github_property("a:b,c%"), "a%3Ab%2Cc%25");
        assert_eq!(github_property("x\ny"), "x%0Ay");
    }

    #[test]
    fn xml_escaping_covers_markup_quotes_and_controls() {
        assert_eq!(
            xml_escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;"
        );
        assert_eq!(xml_escape("a\nb\tc"), "a&#10;b&#9;c");
        assert_eq!(xml_text("a\n\"b\"\r\t<c>"), "a\n\"b\"&#13;\t&lt;c&gt;");
        assert_eq!(xml_escape("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(xml_escape("é ✓"), "é ✓");
    }

    #[test]
    fn prefixes_are_relative_without_a_leading_dot() {
        assert_eq!(relative_prefix("./ops/"), "ops/");
        assert_eq!(relative_prefix(""), "");
        assert_eq!(relative_prefix("manifests/"), "manifests/");
        let cwd = std::env::current_dir().unwrap_or_default();
        assert_eq!(relative_prefix(&format!("{}/ops/", cwd.display())), "ops/");
        assert_eq!(relative_prefix(&format!("{}/", cwd.display())), "");
    }

    #[test]
    fn uri_paths_are_percent_encoded() {
        assert_eq!(uri_path("rules/a b.toml"), "rules/a%20b.toml");
        assert_eq!(uri_path("rules/é.toml"), "rules/%C3%A9.toml");
        assert_eq!(uri_path("ops/rules/x-1_2.toml"), "ops/rules/x-1_2.toml");
    }

    #[test]
    fn every_code_has_a_distinct_id() {
        let ids: std::collections::BTreeSet<&str> = Code::ALL.iter().map(|c| c.id()).collect();
        assert_eq!(ids.len(), Code::ALL.len());
    }

    fn located<'a>(file: &'a str, message: &'a str, code: Code) -> Located<'a> {
        Located {
            code: code.id(),
            file,
            line: 3,
            column: 5,
            end_line: 3,
            end_column: 9,
            severity: Severity::Error,
            message,
            help: Some("fix, it: now"),
        }
    }

    #[test]
    fn gitlab_fingerprints_are_stable_and_distinct() {
        let a = located("rules/a.toml", "unknown event `x`", Code::UnknownReference);
        let mut moved = a.clone();
        moved.line = 30;
        let first = gitlab(&[a.clone(), a.clone()], "");
        let again = gitlab(&[moved], "");
        assert_eq!(first[0]["fingerprint"], again[0]["fingerprint"]);
        assert_ne!(first[0]["fingerprint"], first[1]["fingerprint"]);
        assert_eq!(first[0]["fingerprint"].as_str().map(str::len), Some(64));
        assert_eq!(first[0]["location"]["lines"]["begin"], 3);
    }

    #[test]
    fn a_github_message_with_newlines_stays_on_one_line() {
        let out = github(
            &[located("rules/a,b.toml", "bad: 100%", Code::Schema)],
            "ops/",
        );
        assert_eq!(
            out,
            "::error file=ops/rules/a%2Cb.toml,line=3,col=5,endLine=3,endColumn=9,title=supportopsd schema::bad: 100%25%0Ahelp: fix, it: now\n"
        );
    }
}
