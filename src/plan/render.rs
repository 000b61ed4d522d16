//! Plan renderings: text (optionally coloured), JSON (versioned), markdown (a PR comment).
//! Deterministic: the same plan always renders to the same bytes. Each leads with the
//! security-sensitive changes, never collapsed; every string from a manifest is shown through
//! [`printable`] (and in markdown inside code spans), so that it cannot hide, break the layout
//! or reach a terminal as an escape sequence.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::behaviour::{ActionBehaviour, Behaviour, Counted, ParamExample, RenderFailure};
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
        if let Some(b) = &plan.behaviour {
            behaviour_text(b, &mut out, color);
        }
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
    if let Some(b) = &plan.behaviour {
        behaviour_text(b, &mut out, color);
    }
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
        let _ = writeln!(out, "**No changes.** The platforms match the manifests.\n");
        if let Some(b) = &plan.behaviour {
            behaviour_markdown(b, &mut out);
        }
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
    if let Some(b) = &plan.behaviour {
        behaviour_markdown(b, &mut out);
    }
    out
}

// === the behavioural plan ===

/// A value from the corpus or a rendering as one line of compact JSON (printable).
fn compact(v: &serde_json::Value) -> String {
    printable(&serde_json::to_string(v).unwrap_or_default())
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `slack-main send_message` (`#2` for a rule's third action of that name there).
fn action_name(a: &ActionBehaviour) -> String {
    let n = if a.occurrence > 0 {
        format!(" #{}", a.occurrence + 1)
    } else {
        String::new()
    };
    format!("{} {}{n}", printable(&a.integration), printable(&a.action))
}

/// `slack-main send_message` (`#2` for the rule's second action of that name there).
fn failure_action(f: &RenderFailure) -> String {
    let n = if f.occurrence > 0 {
        format!(" #{}", f.occurrence + 1)
    } else {
        String::new()
    };
    format!("{} {}{n}", printable(&f.integration), printable(&f.action))
}

fn failure_name(f: &RenderFailure) -> String {
    format!("rule {}: {}", printable(&f.rule), failure_action(f))
}

/// A list of rule ids, `(none)` when empty.
fn rule_list(ids: &[String]) -> String {
    if ids.is_empty() {
        "(none)".to_owned()
    } else {
        ids.join(", ")
    }
}

fn example_text(e: &ParamExample) -> String {
    match (&e.before, &e.after) {
        (Some(b), Some(a)) => format!("{}: {} → {}", printable(&e.event), compact(b), compact(a)),
        (Some(v), None) | (None, Some(v)) => format!("{}: {}", printable(&e.event), compact(v)),
        (None, None) => printable(&e.event),
    }
}

fn corpora_line(b: &Behaviour) -> String {
    b.corpora
        .iter()
        .map(|c| {
            format!(
                "{} {} ({}{})",
                c.kind,
                printable(&c.source),
                plural(c.events, "event", "events"),
                if c.scrub_text { ", text scrubbed" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn behaviour_heading(b: &Behaviour) -> String {
    format!(
        "Behaviour on {}",
        plural(b.events, "recorded event", "recorded events")
    )
}

fn totals_line(b: &Behaviour) -> String {
    let s = &b.summary;
    let unchanged = b.rules.iter().filter(|r| !r.changed).count();
    format!(
        "{} differently (actions: +{} added, −{} removed, ~{} changed); {} the same",
        plural(s.rules_changed as u64, "rule behaves", "rules behave"),
        s.actions_added,
        s.actions_removed,
        s.actions_changed,
        plural(unchanged as u64, "rule behaves", "rules behave"),
    )
}

/// The behavioural plan for a terminal, appended to `out`.
fn behaviour_text(b: &Behaviour, out: &mut String, color: bool) {
    let paint = |c: &str, s: &str| {
        if color {
            format!("{c}{s}{RESET}")
        } else {
            s.to_owned()
        }
    };
    let _ = writeln!(out, "\n{}", paint(BOLD, &behaviour_heading(b)));
    let _ = writeln!(out, "  replayed: {}", corpora_line(b));
    if !b.errors.is_empty() {
        let _ = writeln!(
            out,
            "\n  {}",
            paint(
                RED,
                &format!(
                    "✗ Rendering errors with the desired revision ({}):",
                    plural(b.summary.render_errors, "action", "actions")
                )
            )
        );
        for f in &b.errors {
            failure_line_text(f, out);
        }
    }
    let _ = writeln!(out, "\n  {}", totals_line(b));
    for r in b.rules.iter().filter(|r| r.changed) {
        let status = match r.status {
            "added" => " (new rule)",
            "removed" => " (rule removed)",
            _ => "",
        };
        let _ = writeln!(
            out,
            "  {} rule {}{status}: matched {} → {}",
            paint(YELLOW, "~"),
            printable(&r.rule),
            r.matched_before,
            r.matched_after
        );
        for f in b.errors.iter().filter(|f| f.rule == r.rule) {
            let _ = writeln!(
                out,
                "      {} {}: fails to render on {}",
                paint(RED, "✗"),
                failure_action(f),
                plural(f.count, "event", "events")
            );
        }
        for a in &r.actions {
            let kinds: [(&str, char, &Counted<ParamExample>); 3] = [
                ("added", '+', &a.added),
                ("removed", '-', &a.removed),
                ("changed", '~', &a.changed),
            ];
            for (what, sign, c) in kinds {
                if c.count == 0 {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "      {sign} {}: {what} on {}",
                    action_name(a),
                    plural(c.count, "event", "events")
                );
                for e in &c.examples {
                    let _ = writeln!(out, "          {}", example_text(e));
                }
            }
        }
    }
    if b.silenced.count > 0 {
        let _ = writeln!(
            out,
            "\n  {} rules before and nothing now:",
            plural(b.silenced.count, "event triggered", "events triggered")
        );
        for e in &b.silenced.examples {
            let rules: Vec<String> = e.rules_before.iter().map(|r| printable(r)).collect();
            let _ = writeln!(
                out,
                "      {} (was: {})",
                printable(&e.event),
                rules.join(", ")
            );
        }
    }
    if b.newly_triggering > 0 {
        let _ = writeln!(
            out,
            "\n  {} nothing before and rules now.",
            plural(b.newly_triggering, "event triggered", "events triggered")
        );
    }
    if !b.approximate.is_empty() {
        let _ = writeln!(
            out,
            "\n  Approximate (the condition reads a value the corpus holds as a stand-in):"
        );
        for a in &b.approximate {
            let _ = writeln!(
                out,
                "      rule {} reads {}: {} on {}",
                printable(&a.rule),
                printable(&a.field),
                a.stand_in.as_str(),
                plural(a.events, "event", "events")
            );
        }
    }
    if !b.already_failing.is_empty() {
        let _ = writeln!(out, "\n  Already failing with the base revision:");
        for f in &b.already_failing {
            failure_line_text(f, out);
        }
    }
    if b.not_normalised.count > 0 {
        let _ = writeln!(
            out,
            "\n  {} not normalise (not replayed):",
            plural(b.not_normalised.count, "event does", "events do")
        );
        for e in &b.not_normalised.examples {
            let _ = writeln!(
                out,
                "      {} ({} {}): {}",
                printable(&e.event),
                printable(&e.integration),
                printable(&e.name),
                printable(&e.error)
            );
        }
    }
    if b.unreadable.count > 0 {
        let _ = writeln!(
            out,
            "\n  {} of the corpus not a recorded delivery:",
            plural(b.unreadable.count, "line is", "lines are")
        );
        for e in &b.unreadable.examples {
            let _ = writeln!(
                out,
                "      {}: {}",
                printable(&e.source),
                printable(&e.error)
            );
        }
    }
    if b.enrichment_pending > 0 {
        let _ = writeln!(out, "\n  {}", pending_line(b.enrichment_pending));
    }
    if !b.unknown.is_empty() {
        let _ = writeln!(out, "\n  Not known to a revision:");
        for u in &b.unknown {
            let _ = writeln!(out, "      {}", unknown_line(u));
        }
    }
    if let Some(f) = &b.fidelity {
        let _ = writeln!(out, "\n  {}", fidelity_line(f));
        for d in &f.differ.examples {
            let _ = writeln!(
                out,
                "      {}: recorded {}, replayed {}",
                printable(&d.event),
                printable(&rule_list(&d.recorded)),
                printable(&rule_list(&d.replayed))
            );
        }
    }
}

fn failure_line_text(f: &RenderFailure, out: &mut String) {
    let _ = writeln!(
        out,
        "      {}: {} on {} (e.g. {})",
        failure_name(f),
        printable(&f.error),
        plural(f.count, "event", "events"),
        printable(&f.events.join(", "))
    );
}

fn pending_line(n: u64) -> String {
    format!(
        "{} exported before the daemon's enrichment step fetched their text: conditions and templates reading the enriched fields saw nothing there.",
        plural(n, "event was", "events were")
    )
}

fn unknown_line(u: &super::behaviour::Unknown) -> String {
    let what = match &u.event {
        Some(e) => format!("event {} of {}", printable(e), printable(&u.integration)),
        None => format!("integration {}", printable(&u.integration)),
    };
    format!(
        "{} revision: {what}: {} ({})",
        u.revision,
        printable(&u.reason),
        plural(u.count, "event", "events")
    )
}

fn fidelity_line(f: &super::behaviour::Fidelity) -> String {
    let rev = &f.revision[..12.min(f.revision.len())];
    if f.differ.count == 0 {
        format!(
            "Fidelity: the replay of {rev} matches what the daemon did on all {} it handled.",
            plural(f.compared, "event", "events")
        )
    } else {
        format!(
            "Fidelity: replay differs from what the daemon did on {} of the {} it handled with {rev}:",
            f.differ.count,
            plural(f.compared, "event", "events")
        )
    }
}

/// The behavioural plan as a pull-request comment's section, appended to `out`: the rendering
/// errors first (never collapsed), one table of the rules that behave differently, their
/// examples collapsed.
fn behaviour_markdown(b: &Behaviour, out: &mut String) {
    let _ = writeln!(out, "#### {}\n", behaviour_heading(b));
    let _ = writeln!(out, "Replayed: {}.\n", md_escape(&corpora_line(b)));
    if !b.errors.is_empty() {
        let _ = writeln!(
            out,
            "**✗ Rendering errors with the desired revision ({}):**\n",
            plural(b.summary.render_errors, "action", "actions")
        );
        for f in &b.errors {
            let _ = writeln!(out, "- {}", failure_markdown(f));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "**{}**\n", totals_line(b));
    let changed: Vec<_> = b.rules.iter().filter(|r| r.changed).collect();
    if !changed.is_empty() {
        let _ = writeln!(
            out,
            "| rule | matched before | after | actions +added | −removed | ~changed | ✗ errors |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        for r in &changed {
            let sum = |f: fn(&ActionBehaviour) -> u64| r.actions.iter().map(f).sum::<u64>();
            let status = match r.status {
                "added" => " (new)",
                "removed" => " (removed)",
                _ => "",
            };
            let _ = writeln!(
                out,
                "| {}{status} | {} | {} | +{} | −{} | ~{} | {} |",
                code(&r.rule),
                r.matched_before,
                r.matched_after,
                sum(|a| a.added.count),
                sum(|a| a.removed.count),
                sum(|a| a.changed.count),
                b.errors
                    .iter()
                    .filter(|f| f.rule == r.rule)
                    .map(|f| f.count)
                    .sum::<u64>()
            );
        }
        out.push('\n');
        for r in &changed {
            let lines: Vec<String> = r
                .actions
                .iter()
                .flat_map(|a| {
                    [('+', &a.added), ('−', &a.removed), ('~', &a.changed)]
                        .into_iter()
                        .filter(|(_, c)| c.count > 0)
                        .flat_map(move |(sign, c)| {
                            let head = format!(
                                "- {sign} {} ({})",
                                code(&action_name(a)),
                                plural(c.count, "event", "events")
                            );
                            std::iter::once(head).chain(
                                c.examples
                                    .iter()
                                    .map(|e| format!("  - {}", code(&example_text(e)))),
                            )
                        })
                })
                .collect();
            if lines.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "<details><summary>rule <code>{}</code>: examples</summary>\n\n{}\n\n</details>\n",
                md_escape(&r.rule),
                lines.join("\n")
            );
        }
    }
    if b.silenced.count > 0 {
        let examples: Vec<String> = b
            .silenced
            .examples
            .iter()
            .map(|e| {
                format!(
                    "{} (was {})",
                    code(&e.event),
                    code(&e.rules_before.join(", "))
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "**{} rules before and nothing now**, e.g. {}.\n",
            plural(b.silenced.count, "event triggered", "events triggered"),
            examples.join(", ")
        );
    }
    if b.newly_triggering > 0 {
        let _ = writeln!(
            out,
            "{} nothing before and rules now.\n",
            plural(b.newly_triggering, "event triggered", "events triggered")
        );
    }
    if !b.approximate.is_empty() {
        let _ = writeln!(
            out,
            "**Approximate:** these conditions read values the corpus holds as stand-ins, so their matches may differ on the real events:\n"
        );
        for a in &b.approximate {
            let _ = writeln!(
                out,
                "- rule {} reads {}: {} on {}",
                code(&a.rule),
                code(&a.field),
                a.stand_in.as_str(),
                plural(a.events, "event", "events")
            );
        }
        out.push('\n');
    }
    let mut notes = Vec::new();
    if !b.already_failing.is_empty() {
        notes.push(format!(
            "Already failing with the base revision:\n\n{}",
            b.already_failing
                .iter()
                .map(|f| format!("- {}", failure_markdown(f)))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    if b.not_normalised.count > 0 {
        notes.push(format!(
            "{} not normalise (not replayed): {}",
            plural(b.not_normalised.count, "event does", "events do"),
            b.not_normalised
                .examples
                .iter()
                .map(|e| format!("{} {}", code(&e.event), code(&e.error)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if b.unreadable.count > 0 {
        notes.push(format!(
            "{} of the corpus not a recorded delivery: {}",
            plural(b.unreadable.count, "line is", "lines are"),
            b.unreadable
                .examples
                .iter()
                .map(|e| code(&e.error))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if b.enrichment_pending > 0 {
        notes.push(pending_line(b.enrichment_pending));
    }
    if !b.unknown.is_empty() {
        notes.push(format!(
            "Not known to a revision:\n\n{}",
            b.unknown
                .iter()
                .map(|u| format!("- {}", code(&unknown_line(u))))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    if !notes.is_empty() {
        let _ = writeln!(
            out,
            "<details><summary>Notes on the replay</summary>\n\n{}\n\n</details>\n",
            notes.join("\n\n")
        );
    }
    if let Some(f) = &b.fidelity {
        let _ = writeln!(out, "{}", md_escape(&fidelity_line(f)));
        for d in &f.differ.examples {
            let _ = writeln!(
                out,
                "- {}: recorded {}, replayed {}",
                code(&d.event),
                code(&rule_list(&d.recorded)),
                code(&rule_list(&d.replayed))
            );
        }
        out.push('\n');
    }
}

fn failure_markdown(f: &RenderFailure) -> String {
    let n = if f.occurrence > 0 {
        format!(" #{}", f.occurrence + 1)
    } else {
        String::new()
    };
    format!(
        "rule {} action {} {}{n}: {} on {}, e.g. {}",
        code(&f.rule),
        code(&f.integration),
        code(&f.action),
        code(&f.error),
        plural(f.count, "event", "events"),
        f.events
            .iter()
            .map(|e| code(e))
            .collect::<Vec<_>>()
            .join(", ")
    )
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
            behaviour: None,
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
