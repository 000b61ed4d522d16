//! Plan renderings: text (optionally coloured), JSON (versioned), markdown (a PR comment).
//! Deterministic: the same plan always renders to the same bytes. Each leads with the
//! security-sensitive changes, never collapsed; every string from a manifest is shown through
//! [`printable`] (and in markdown inside code spans), so that it cannot hide, break the layout
//! or reach a terminal as an escape sequence.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::{Change, ChangeKind, Counts, FieldChange, Plan, RuntimeHold, printable};

const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const RED: &str = "\x1b[31m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

fn sign(k: ChangeKind) -> char {
    match k {
        ChangeKind::Create => '+',
        ChangeKind::Update => '~',
        ChangeKind::Delete => '-',
    }
}

fn colour(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Create => GREEN,
        ChangeKind::Update => YELLOW,
        ChangeKind::Delete => RED,
    }
}

/// A value as JSON; a secret field's reference (`env:NAME`) as it is.
fn show(v: &Value, reference: bool) -> String {
    match v {
        Value::String(s) if reference => printable(s),
        _ => printable(&serde_json::to_string(v).unwrap_or_default()),
    }
}

fn field_line(f: &FieldChange) -> (char, String) {
    let path = printable(&f.path);
    let show = |v| show(v, f.sensitive);
    match (&f.before, &f.after) {
        (None, Some(a)) => ('+', format!("{path} = {}", show(a))),
        (Some(b), None) => ('-', format!("{path} = {}", show(b))),
        (Some(b), Some(a)) => ('~', format!("{path}: {} → {}", show(b), show(a))),
        (None, None) => ('~', path),
    }
}

/// The heading of the security block.
fn sensitive_heading(plan: &Plan) -> String {
    format!(
        "⚠ Security-sensitive changes ({}): where credentials and event data go",
        plan.security_sensitive.len()
    )
}

/// What a reviewer should do about the block.
const SENSITIVE_ADVICE: &str =
    "Check each host, credential reference and data destination below before approving.";

fn summary_line(c: Counts) -> String {
    format!(
        "{} to create, {} to update, {} to delete",
        c.create, c.update, c.delete
    )
}

fn title(ch: &Change) -> String {
    let r = format!(
        "{} {}",
        ch.resource.kind.as_str(),
        printable(&ch.resource.id)
    );
    match ch.platform {
        Some(p) => format!("{r} ({p})"),
        None => r,
    }
}

/// The heading of the runtime holds.
fn holds_heading(plan: &Plan) -> String {
    format!(
        "⏸ Runtime holds ({}, from the {}): paused at run time, not changed by this plan",
        plan.holds.len(),
        plan.holds_from.as_deref().unwrap_or("state")
    )
}

/// One hold, its strings shown through `show` (printable, or a markdown code span).
fn hold_line(h: &RuntimeHold, show: &dyn Fn(&str) -> String) -> String {
    let effect = if h.kind == "rule" {
        "matches nothing"
    } else {
        "its actions wait in the queue"
    };
    format!(
        "{} {} — {effect} — since {}: {} (by {}; `supportopsd resume --{} {}`)",
        h.kind,
        show(&h.id),
        h.since_at,
        show(&h.reason),
        printable(&h.by),
        h.kind,
        printable(&h.id)
    )
}

/// Renders a plan for a terminal.
pub fn text(plan: &Plan, color: bool) -> String {
    let paint = |c: &str, s: &str| {
        if color {
            format!("{c}{s}{RESET}")
        } else {
            s.to_owned()
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "supportopsd plan: {} → {}", plan.from, plan.to);
    if !plan.holds.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            paint(YELLOW, &paint(BOLD, &holds_heading(plan)))
        );
        for h in &plan.holds {
            let _ = writeln!(out, "  {}", hold_line(h, &printable));
        }
    }
    if !plan.has_changes() {
        let _ = writeln!(out, "\nNo changes. The platforms match the manifests.");
        return out;
    }
    out.push('\n');
    if plan.security_sensitive.is_empty() {
        let _ = writeln!(out, "No security-sensitive changes.\n");
    } else {
        let _ = writeln!(
            out,
            "{}",
            paint(RED, &paint(BOLD, &sensitive_heading(plan)))
        );
        let _ = writeln!(out, "{SENSITIVE_ADVICE}");
        for s in &plan.security_sensitive {
            let _ = writeln!(
                out,
                "  [{}] {} {}: {}",
                s.kind,
                s.resource.kind.as_str(),
                printable(&s.resource.id),
                s.detail
            );
        }
        out.push('\n');
    }
    for ch in &plan.changes {
        let head = format!("{} {}", sign(ch.action), title(ch));
        let _ = writeln!(out, "  {}", paint(colour(ch.action), &head));
        for f in &ch.fields {
            let (s, line) = field_line(f);
            let s = if ch.action == ChangeKind::Update {
                s
            } else {
                sign(ch.action)
            };
            let _ = writeln!(out, "      {s} {line}");
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        paint(BOLD, &format!("Plan: {}.", summary_line(plan.counts())))
    );
    out
}

/// Renders a plan as JSON (with `format_version`).
pub fn json(plan: &Plan) -> String {
    /// The plan with its counts, serialised in one pass (no intermediate JSON tree: a plan of
    /// 20,000 changes is tens of megabytes).
    #[derive(Serialize)]
    struct WithSummary<'a> {
        #[serde(flatten)]
        plan: &'a Plan,
        summary: Counts,
    }
    let doc = WithSummary {
        plan,
        summary: plan.counts(),
    };
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

fn md_escape(s: &str) -> String {
    printable(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `s` as a markdown code span: printable, fenced with one backtick more than its longest run
/// of backticks (and padded when it starts or ends with one), so nothing in it is markup.
fn code(s: &str) -> String {
    let s = printable(s);
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    if s.starts_with('`') || s.ends_with('`') {
        format!("{fence} {s} {fence}")
    } else {
        format!("{fence}{s}{fence}")
    }
}

/// Renders a plan as a markdown pull-request comment: the security-sensitive changes (never
/// collapsed), counts per platform, then one collapsible section per change.
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### supportopsd plan\n");
    let _ = writeln!(
        out,
        "`{}` → `{}`\n",
        md_escape(&plan.from),
        md_escape(&plan.to)
    );
    if !plan.holds.is_empty() {
        let _ = writeln!(out, "#### {}\n", holds_heading(plan));
        for h in &plan.holds {
            let _ = writeln!(out, "- {}", hold_line(h, &code));
        }
        out.push('\n');
    }
    if !plan.has_changes() {
        let _ = writeln!(out, "**No changes.** The platforms match the manifests.");
        return out;
    }
    if plan.security_sensitive.is_empty() {
        let _ = writeln!(out, "No security-sensitive changes.\n");
    } else {
        let _ = writeln!(out, "#### {}\n", sensitive_heading(plan));
        let _ = writeln!(out, "{SENSITIVE_ADVICE}\n");
        for s in &plan.security_sensitive {
            let _ = writeln!(
                out,
                "- **{}** {} {}: {}",
                s.kind,
                s.resource.kind.as_str(),
                code(&s.resource.id),
                code(&s.detail)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "**{}**\n", summary_line(plan.counts()));
    let _ = writeln!(
        out,
        "| platform | create | update | delete |\n|---|---:|---:|---:|"
    );
    for (p, c) in plan.counts_by_platform() {
        let _ = writeln!(out, "| {p} | {} | {} | {} |", c.create, c.update, c.delete);
    }
    out.push('\n');
    for ch in &plan.changes {
        let _ = writeln!(
            out,
            "<details><summary><code>{}</code> {} <code>{}</code>{}</summary>\n",
            sign(ch.action),
            ch.resource.kind.as_str(),
            md_escape(&ch.resource.id),
            ch.platform.map(|p| format!(" ({p})")).unwrap_or_default()
        );
        let _ = writeln!(out, "```diff");
        for f in &ch.fields {
            let (s, line) = field_line(f);
            let s = match (ch.action, s) {
                (ChangeKind::Update, '~') => '!',
                (ChangeKind::Update, s) => s,
                (k, _) => sign(k),
            };
            let _ = writeln!(out, "{s} {line}");
        }
        let _ = writeln!(out, "```\n\n</details>\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plan::{FORMAT_VERSION, ResourceKind, ResourceRef, SensitiveChange, SensitiveKind};

    fn plan(detail: &str, id: &str) -> Plan {
        let resource = ResourceRef {
            kind: ResourceKind::Integration,
            id: id.to_owned(),
        };
        Plan {
            format_version: FORMAT_VERSION,
            from: "base".into(),
            to: "head".into(),
            security_sensitive: vec![SensitiveChange {
                kind: SensitiveKind::Endpoint,
                resource: resource.clone(),
                field: "base_url".into(),
                before: None,
                after: Some(detail.to_owned()),
                detail: detail.to_owned(),
            }],
            changes: vec![Change {
                resource,
                platform: None,
                action: ChangeKind::Update,
                fields: vec![FieldChange {
                    path: "credentials.api_key".into(),
                    before: Some(json!("env:A")),
                    after: Some(json!("file:b")),
                    sensitive: true,
                }],
            }],
            holds: Vec::new(),
            holds_from: None,
        }
    }

    #[test]
    fn every_format_leads_with_the_security_block() {
        let p = plan(
            "base_url: (platform default) → https://attacker.example",
            "fd",
        );
        let md = markdown(&p);
        let block = md.find("Security-sensitive changes (1)").unwrap();
        assert!(block < md.find("<details>").unwrap(), "{md}");
        assert!(md.contains(
            "- **endpoint** integration `fd`: `base_url: (platform default) → https://attacker.example`"
        ));
        assert!(md.contains("! credentials.api_key: env:A → file:b"), "{md}");
        let text = text(&p, false);
        let block = text.find("[endpoint] integration fd: base_url").unwrap();
        assert!(block < text.find("~ integration fd").unwrap(), "{text}");
        assert!(
            text.contains("~ credentials.api_key: env:A → file:b"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&p)).unwrap();
        assert_eq!(v["format_version"], "1.2");
        assert_eq!(v["holds"], json!([]));
        assert_eq!(v["security_sensitive"][0]["kind"], "endpoint");
        assert_eq!(v["security_sensitive"][0]["resource"]["id"], "fd");
        assert_eq!(v["changes"][0]["fields"][0]["after"], "file:b");
    }

    #[test]
    fn a_plan_without_sensitive_changes_says_so() {
        let mut p = plan("", "fd");
        p.security_sensitive.clear();
        assert!(markdown(&p).contains("No security-sensitive changes."));
        assert!(text(&p, false).contains("No security-sensitive changes."));
        let v: serde_json::Value = serde_json::from_str(&json(&p)).unwrap();
        assert_eq!(v["security_sensitive"], json!([]));
    }

    #[test]
    fn manifest_strings_stay_inside_their_code_span() {
        let p = plan("x`` </details>\n\n# injected `", "a`b");
        let md = markdown(&p);
        assert!(
            md.contains("integration ``a`b``: ``` x`` </details>\\n\\n# injected ` ```"),
            "{md}"
        );
        assert!(!md.contains("\n# injected"), "{md}");
        assert_eq!(code("plain"), "`plain`");
        assert_eq!(code("`x"), "`` `x ``");
    }

    #[test]
    fn runtime_holds_are_shown_in_every_format_even_without_changes() {
        let mut p = plan("", "fd");
        p.security_sensitive.clear();
        p.changes.clear();
        p.holds_from = Some("state".into());
        p.holds = vec![RuntimeHold {
            kind: "integration".into(),
            id: "slack".into(),
            reason: "loop `x` </details>\n# injected".into(),
            by: "operator API".into(),
            since_ms: 1_000,
            since_at: "1970-01-01T00:00:01Z".into(),
        }];
        let t = text(&p, false);
        assert!(t.contains("Runtime holds (1, from the state)"), "{t}");
        assert!(
            t.contains("integration slack — its actions wait in the queue — since 1970-01-01T00:00:01Z: loop `x` </details>\\n# injected (by operator API; `supportopsd resume --integration slack`)"),
            "{t}"
        );
        assert!(t.contains("No changes."), "{t}");
        let md = markdown(&p);
        assert!(
            md.contains("#### ⏸ Runtime holds (1, from the state)"),
            "{md}"
        );
        assert!(!md.contains("\n# injected"), "{md}");
        assert!(
            md.find("Runtime holds").unwrap() < md.find("No changes").unwrap(),
            "{md}"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&p)).unwrap();
        assert_eq!(v["holds"][0]["kind"], "integration");
        assert_eq!(v["holds"][0]["since_ms"], 1_000);
        assert_eq!(v["holds"][0]["since_at"], "1970-01-01T00:00:01Z");
        assert_eq!(v["holds_from"], "state");
    }
}
