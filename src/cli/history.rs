//! `supportopsd events list` and `events show ID`: the event history and one delivery's trace,
//! through a running daemon's API (`GET /api/events`, `GET /api/events/{id}`), or straight
//! from `--state` when no daemon answers (then the rules are those the delivery matched when
//! it was stored: no revision is loaded to evaluate them). Text for people (times in RFC 3339),
//! `--json` for scripts.

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::{Exit, GlobalArgs, Target, api_call, unexpected};
use crate::runtime::history::{self as view, ListQuery};
use crate::state::{EventId, Outcome};

/// `events list`'s filters.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only deliveries of this integration.
    #[arg(long)]
    pub integration: Option<String>,
    /// Only this event name (on every integration unless --integration is given).
    #[arg(long)]
    pub event: Option<String>,
    /// Only deliveries that matched this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Only this aggregate outcome: done, pending, retrying, dead, no_rules.
    #[arg(long)]
    pub outcome: Option<Outcome>,
    /// Received at or after: Unix milliseconds, or a time ago (`90s`, `15m`, `2h`, `7d`).
    #[arg(long)]
    pub since: Option<String>,
    /// Received at or before (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Deliveries per page (1 to 1000).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Continue from a page's `next` cursor.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print JSON (the API's answer).
    #[arg(long)]
    pub json: bool,
    /// Where the daemon answers.
    #[command(flatten)]
    pub target: Target,
}

/// `events show`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The event id (`evt_…`, from `events list`).
    pub id: String,
    /// Print JSON (the API's answer).
    #[arg(long)]
    pub json: bool,
    /// Where the daemon answers.
    #[command(flatten)]
    pub target: Target,
}

/// A `--since`/`--until` value as Unix milliseconds: milliseconds as given, or `now` minus a
/// duration (`90s`, `15m`, `2h`, `7d`).
fn when(value: &str, now_ms: u64) -> anyhow::Result<u64> {
    if let Ok(ms) = value.parse::<u64>() {
        return Ok(ms);
    }
    let (n, unit) = value.split_at(value.len().saturating_sub(1));
    let per = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => 0,
    };
    match n.parse::<u64>() {
        Ok(n) if per > 0 => Ok(now_ms.saturating_sub(n.saturating_mul(per))),
        _ => bail!(
            "{value:?} is not a time: give Unix milliseconds or a time ago like 90s, 15m, 2h, 7d"
        ),
    }
}

/// The listing's query string (the API's parameters), checked the way the API checks it.
fn query_of(a: &ListArgs, now_ms: u64) -> anyhow::Result<(String, ListQuery)> {
    let mut parts: Vec<String> = Vec::new();
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    for (k, v) in [
        ("integration", &a.integration),
        ("event", &a.event),
        ("rule", &a.rule),
        ("cursor", &a.cursor),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={}", enc(v)));
        }
    }
    if let Some(o) = a.outcome {
        parts.push(format!("outcome={o}"));
    }
    if let Some(s) = &a.since {
        parts.push(format!("since={}", when(s, now_ms)?));
    }
    if let Some(u) = &a.until {
        parts.push(format!("until={}", when(u, now_ms)?));
    }
    parts.push(format!("limit={}", a.limit));
    let query = parts.join("&");
    let parsed = view::parse_list_query(&query).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((query, parsed))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// At most `n` characters of `text`, `…` when cut (a long digest or error in a table line).
fn cut(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One job's state in a few words without its error: `done at …`, `retrying (2 failed
/// attempts), next at …`.
fn job_state_short(j: &Value) -> String {
    let o = &j["outcome"];
    match s(o, "state") {
        "retrying" => format!(
            "retrying ({} failed attempts), next at {}",
            o["attempts"],
            s(o, "due_at")
        ),
        "dead" => format!("DEAD-LETTERED at {}", s(o, "at_at")),
        _ => job_state(j),
    }
}

/// One job's state in a few words: `done at …`, `retrying (2 attempts) until …: error`.
fn job_state(j: &Value) -> String {
    let o = &j["outcome"];
    match s(o, "state") {
        "queued" => format!("queued, due {}", s(o, "due_at")),
        "running" => format!("running (lease until {})", s(o, "lease_until_at")),
        "retrying" => format!(
            "retrying ({} failed attempts), next at {}: {}",
            o["attempts"],
            s(o, "due_at"),
            s(o, "error")
        ),
        "done" => format!("done at {}", s(o, "at_at")),
        "dead" => format!("DEAD-LETTERED at {}: {}", s(o, "at_at"), s(o, "error")),
        other => other.to_owned(),
    }
}

/// The listing as text.
pub fn render_list(v: &Value, command: &str) -> String {
    let mut out = String::new();
    let events = v["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        out.push_str("no stored deliveries match\n");
    } else {
        out.push_str(&format!(
            "{:<14} {:<20} {:<20} {:<24} {:<14} {:<9} RULES\n",
            "ID", "RECEIVED", "INTEGRATION", "EVENT", "PLATFORM ID", "OUTCOME"
        ));
    }
    for e in &events {
        let rules: Vec<&str> = e["rules"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<14} {:<20} {:<20} {:<24} {:<14} {:<9} {}\n",
            s(e, "id"),
            s(e, "received_at"),
            s(e, "integration"),
            s(e, "event"),
            cut(s(e, "platform_event_id"), 14),
            s(e, "outcome"),
            if rules.is_empty() {
                "-".to_owned()
            } else {
                rules.join(", ")
            }
        ));
        for j in e["jobs"].as_array().into_iter().flatten() {
            let state = s(&j["outcome"], "state");
            if state != "done" {
                out.push_str(&format!(
                    "{:<14} job {} ({}): {}\n",
                    "",
                    j["job"],
                    s(j, "rule"),
                    cut(&job_state(j), 160)
                ));
            }
        }
    }
    if let Some(c) = v["next_cursor"].as_str() {
        out.push_str(&format!("more: {command} --cursor {c}\n"));
    }
    let r = &v["rejections"];
    let windows = r["windows"].as_array().cloned().unwrap_or_default();
    if !windows.is_empty() {
        out.push_str(&format!(
            "\nrefused deliveries {} .. {} (not stored; counted per integration, reason and minute):\n",
            s(r, "since_at"),
            s(r, "until_at")
        ));
        for w in windows {
            out.push_str(&format!(
                "  {}  {:<20} {} x{}\n",
                s(&w, "first_at"),
                s(&w, "integration"),
                s(&w, "reason"),
                w["count"]
            ));
        }
    }
    out
}

/// A delivery's trace as text: what it was, what each rule decided, what each job did, the
/// audit trail, then the event as conditions and templates see it.
pub fn render_trace(v: &Value) -> String {
    let mut out = String::new();
    let e = &v["event"];
    out.push_str(&format!(
        "{}  {} {} (platform id {})\n",
        s(e, "id"),
        s(e, "integration"),
        s(e, "event"),
        s(e, "platform_event_id")
    ));
    out.push_str(&format!(
        "received {}, {}, revision {}\n",
        s(e, "received_at"),
        s(e, "accepted"),
        e["revision"].as_str().unwrap_or("unknown")
    ));
    out.push_str(&format!("outcome: {}\n", s(e, "outcome")));

    let r = &v["rules"];
    if r["evaluated"].as_bool() == Some(true) {
        out.push_str(&format!(
            "\nRules on {} {} (evaluated now, revision {}):\n",
            s(e, "integration"),
            s(e, "event"),
            r["revision"].as_str().unwrap_or("working tree")
        ));
    } else {
        out.push_str(&format!("\nRules ({}):\n", s(r, "note")));
    }
    let rules = r["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() {
        out.push_str("  (no rule on this integration and event)\n");
    }
    for rule in rules {
        let mark = match s(&rule, "result") {
            "matched" => "MATCH   ",
            "no_match" => "no match",
            "disabled" => "disabled",
            "loop_guard" => "loop guard (supportopsd's own event)",
            "paused" => "PAUSED  ",
            other => other,
        };
        let ran = if rule["ran"].as_bool() == Some(true) {
            "  job created"
        } else if rule["mode"] == "shadow" {
            "  (shadow: recorded, not run)"
        } else {
            ""
        };
        out.push_str(&format!("  {:<28} {mark}{ran}\n", s(&rule, "rule")));
        // A runtime hold kept it from the delivery (`supportopsd pause`).
        if let Some(note) = rule["note"].as_str() {
            out.push_str(&format!("      {note}\n"));
        }
        // Why a rule did not match: the conditions that failed, with the values seen
        // (`events explain ID` shows the whole tree).
        if rule["matched"].as_bool() != Some(true) {
            for failure in rule["explanation"]["failures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(serde_json::Value::as_str)
            {
                out.push_str(&format!("      ✗ {failure}\n"));
            }
        }
    }

    let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
    out.push_str("\nJobs:\n");
    if jobs.is_empty() {
        out.push_str("  (none)\n");
    }
    for j in jobs {
        let steps = match j["steps"].as_u64() {
            Some(n) => format!("{}/{n} actions done", j["steps_done"]),
            None => format!("{} actions done", j["steps_done"]),
        };
        out.push_str(&format!(
            "  job {} rule {}: {} ({steps})\n",
            j["job"],
            s(&j, "rule"),
            job_state_short(&j)
        ));
        for a in j["attempts"].as_array().into_iter().flatten() {
            let mut line = format!(
                "    {} action {} `{}`",
                s(a, "started_at"),
                a["step"],
                a["action"].as_str().unwrap_or("?")
            );
            if let Some(n) = a["attempt"].as_u64() {
                line.push_str(&format!(" attempt {n}"));
            }
            line.push_str(&format!(": {}", s(a, "result")));
            if let Some(ms) = a["duration_ms"].as_u64() {
                line.push_str(&format!(" in {ms} ms"));
            }
            if let Some(c) = a["classification"].as_str() {
                line.push_str(&format!(" [{c}]"));
            }
            if a["dead_lettered"].as_bool() == Some(true) {
                line.push_str(" -> dead-lettered");
            }
            out.push_str(&line);
            out.push('\n');
            if let Some(p) = a.get("parameters").filter(|p| !p.is_null()) {
                out.push_str(&format!("      parameters: {p}\n"));
            }
            if let Some(ans) = a["answer"].as_str() {
                out.push_str(&format!("      answer: {ans}\n"));
            }
            if let Some(err) = a["error"].as_str() {
                out.push_str(&format!("      error: {err}\n"));
            }
            if let Some(due) = a["retry_due_at"].as_str() {
                out.push_str(&format!("      retry due {due}\n"));
            }
        }
    }

    // What the shadow rules would have done (nothing ran).
    let shadow = v["shadow"].as_array().cloned().unwrap_or_default();
    if !shadow.is_empty() {
        out.push_str("\nShadow rules (what they would have done; nothing ran):\n");
    }
    for r in shadow {
        out.push_str(&format!("  rule {}\n", s(&r, "rule")));
        for a in r["actions"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "    action {} `{}` on {}: parameters: {}\n",
                a["step"],
                a["action"].as_str().unwrap_or("?"),
                a["integration"].as_str().unwrap_or("?"),
                a["parameters"]
            ));
        }
        if let Some(e) = r.get("error").filter(|e| !e.is_null()) {
            out.push_str(&format!(
                "    action {}: could not be rendered: {}\n",
                e["step"],
                e["message"].as_str().unwrap_or("?")
            ));
        }
    }

    out.push_str("\nAudit (oldest first):\n");
    for a in v["audit"].as_array().into_iter().flatten() {
        let kind = &a["kind"];
        let mut what = s(kind, "type").to_owned();
        for key in ["rule", "step", "error", "reason"] {
            if let Some(x) = kind.get(key) {
                let x = x.as_str().map_or_else(|| x.to_string(), str::to_owned);
                what.push_str(&format!(" {key}={}", cut(&x, 60)));
            }
        }
        out.push_str(&format!(
            "  {}  {:<40} {} {}\n",
            s(a, "at"),
            what,
            s(a, "resource_type"),
            s(a, "resource_id")
        ));
    }
    if let Some(view) = v.get("view").filter(|x| !x.is_null()) {
        out.push_str(
            "\nThe event as conditions and templates see it (the raw `payload` too: --json):\n",
        );
        let mut view = view.clone();
        if let Some(m) = view.as_object_mut() {
            m.remove("payload");
        }
        let pretty = serde_json::to_string_pretty(&view).unwrap_or_default();
        for line in pretty.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    } else {
        out.push_str("\n(the payload is no longer stored)\n");
    }
    out
}

/// Runs `events list`.
pub fn list(a: &ListArgs, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let now = crate::runtime::now_ms();
    let (query, parsed) = query_of(a, now)?;
    let base = a.target.base();
    let url = format!("{base}/api/events?{query}");
    let body = match api_call(reqwest::Method::GET, &url)? {
        Some((200, body)) => body,
        Some((code, body)) => return Err(unexpected(&base, code, &body, true)),
        None => {
            let store = super::events::open_state(g)?;
            view::list_json(store.as_ref(), &parsed, now)?
        }
    };
    if a.json {
        super::emit(&format!("{}\n", serde_json::to_string_pretty(&body)?))?;
    } else {
        let mut command = String::from("supportopsd events list");
        for (flag, v) in [
            ("--integration", &a.integration),
            ("--event", &a.event),
            ("--rule", &a.rule),
        ] {
            if let Some(v) = v {
                command.push_str(&format!(" {flag} {v}"));
            }
        }
        if let Some(o) = a.outcome {
            command.push_str(&format!(" --outcome {o}"));
        }
        if let Some(s) = parsed.filter.since_ms {
            command.push_str(&format!(" --since {s}"));
        }
        if let Some(u) = parsed.filter.until_ms {
            command.push_str(&format!(" --until {u}"));
        }
        if a.limit != view::DEFAULT_LIMIT {
            command.push_str(&format!(" --limit {}", a.limit));
        }
        super::emit(&render_list(&body, &command))?;
    }
    Ok(Exit::Ok)
}

/// Runs `events show`.
pub fn show(a: &ShowArgs, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let id: EventId = a.id.parse()?;
    let base = a.target.base();
    let url = format!("{base}/api/events/{id}");
    let body = match api_call(reqwest::Method::GET, &url)? {
        Some((200, body)) => body,
        Some((404, _)) => bail!("no stored event {id} (never received, or removed by retention)"),
        Some((code, body)) => return Err(unexpected(&base, code, &body, true)),
        None => {
            let store = super::events::open_state(g)?;
            view::trace_json(
                store.as_ref(),
                id,
                |_: &crate::event::Event, _: &[crate::state::EventJob]| None,
            )?
            .with_context(|| {
                format!("no stored event {id} (never received, or removed by retention)")
            })?
        }
    };
    if a.json {
        super::emit(&format!("{}\n", serde_json::to_string_pretty(&body)?))?;
    } else {
        super::emit(&render_trace(&body))?;
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_milliseconds_or_a_time_ago() {
        assert_eq!(when("1700000000000", 5).unwrap(), 1_700_000_000_000);
        assert_eq!(when("2h", 10_000_000).unwrap(), 10_000_000 - 7_200_000);
        assert_eq!(when("90s", 100_000).unwrap(), 10_000);
        for bad in ["", "h", "2w", "yesterday", "-5m"] {
            assert!(when(bad, 1).is_err(), "{bad}");
        }
    }
}
