//! Plan renderings: text (optionally coloured), JSON (versioned), markdown (a PR comment).
//! Deterministic: the same plan always renders to the same bytes.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::{Change, ChangeKind, Counts, FieldChange, Plan};

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

fn show(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn field_line(kind: ChangeKind, f: &FieldChange) -> (char, String) {
    match (&f.before, &f.after, f.sensitive) {
        (_, _, true) if kind == ChangeKind::Update => {
            ('~', format!("{} = (sensitive value changed)", f.path))
        }
        (_, _, true) => (sign(kind), format!("{} = (sensitive value)", f.path)),
        (None, Some(a), _) => ('+', format!("{} = {}", f.path, show(a))),
        (Some(b), None, _) => ('-', format!("{} = {}", f.path, show(b))),
        (Some(b), Some(a), _) => ('~', format!("{}: {} → {}", f.path, show(b), show(a))),
        (None, None, _) => ('~', f.path.clone()),
    }
}

fn summary_line(c: Counts) -> String {
    format!(
        "{} to create, {} to update, {} to delete",
        c.create, c.update, c.delete
    )
}

fn title(ch: &Change) -> String {
    match ch.platform {
        Some(p) => format!("{} ({p})", ch.resource),
        None => ch.resource.to_string(),
    }
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
    if !plan.has_changes() {
        let _ = writeln!(out, "\nNo changes. The platforms match the manifests.");
        return out;
    }
    out.push('\n');
    for ch in &plan.changes {
        let head = format!("{} {}", sign(ch.action), title(ch));
        let _ = writeln!(out, "  {}", paint(colour(ch.action), &head));
        for f in &ch.fields {
            let (s, line) = field_line(ch.action, f);
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
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders a plan as a markdown pull-request comment: counts per platform, then one collapsible
/// section per change.
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### supportopsd plan\n");
    let _ = writeln!(
        out,
        "`{}` → `{}`\n",
        md_escape(&plan.from),
        md_escape(&plan.to)
    );
    if !plan.has_changes() {
        let _ = writeln!(out, "**No changes.** The platforms match the manifests.");
        return out;
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
            let (s, line) = field_line(ch.action, f);
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
