//! `supportopsd explain` (offline: a payload file against the repository's rules, the keys of a
//! test case) and `supportopsd events explain ID` (a stored delivery, through a running
//! daemon's API): why each rule did or did not run — which condition failed and with what
//! value, disabled rules, the loop guard, rules listening to another event.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde_json::Value;

use super::{Exit, GlobalArgs, Target, load_or_report};
use crate::manifest::select::render_text;
use crate::testing;

/// Largest payload file read (the daemon's own body limit is smaller).
const MAX_PAYLOAD_BYTES: u64 = 16 * 1024 * 1024;

/// Explain which rules a payload triggers and why the others do not (offline).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The delivery's body (JSON), as a test case's fixture holds it.
    #[arg(long, value_name = "FILE")]
    pub payload: PathBuf,
    /// The integration it arrives on.
    #[arg(long)]
    pub integration: String,
    /// The event name, as the catalogue names it (`ticket_updated`).
    #[arg(long)]
    pub event: String,
    /// Explain only this rule (wherever it listens).
    #[arg(long)]
    pub rule: Option<String>,
    /// Read the rules at a git revision instead of the working tree.
    #[arg(long, env = "SUPPORTOPSD_REV")]
    pub rev: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `events explain ID`.
#[derive(Debug, clap::Args)]
pub struct EventArgs {
    /// The event id (`evt_<n>`, from `events list` or the audit log).
    pub id: String,
    /// Explain only this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
    /// Where to find the daemon.
    #[command(flatten)]
    pub target: Target,
}

/// Runs `explain`.
pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let size = std::fs::metadata(&args.payload)
        .with_context(|| format!("reading {}", args.payload.display()))?
        .len();
    if size > MAX_PAYLOAD_BYTES {
        bail!(
            "{} is {size} bytes; a payload file may have at most {MAX_PAYLOAD_BYTES}",
            args.payload.display()
        );
    }
    let bytes = std::fs::read(&args.payload)
        .with_context(|| format!("reading {}", args.payload.display()))?;
    let payload: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not JSON", args.payload.display()))?;
    let Some(set) = load_or_report(g, args.rev.as_deref())? else {
        return Ok(Exit::Failure);
    };
    let verdicts = testing::explain(
        &set,
        &args.integration,
        &args.event,
        &payload,
        args.rule.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    if args.json {
        let out = serde_json::json!({
            "integration": args.integration,
            "name": args.event,
            "revision": args.rev,
            "rules": verdicts,
        });
        super::emit(&(serde_json::to_string_pretty(&out)? + "\n"))?;
        return Ok(Exit::Ok);
    }
    let mut out = format!(
        "{} on {} ({}):\n",
        args.event,
        args.integration,
        args.rev.as_deref().unwrap_or("working tree")
    );
    push_rules(&mut out, &verdicts);
    super::emit(&out)?;
    Ok(Exit::Ok)
}

fn push_rules(out: &mut String, verdicts: &[Value]) {
    if verdicts.is_empty() {
        out.push_str("  no rule listens to this integration\n");
    }
    for v in verdicts {
        out.push_str(&render_text(v, 2));
    }
}

/// Runs `events explain`.
pub fn run_event(args: &EventArgs) -> anyhow::Result<Exit> {
    let id: crate::state::EventId = args
        .id
        .parse()
        .map_err(|e| anyhow::anyhow!("`{}` is not an event id: {e}", args.id))?;
    let base = args.target.base();
    let mut url = format!("{base}/api/events/{id}/explain");
    if let Some(rule) = &args.rule {
        url.push_str("?rule=");
        for b in rule.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                url.push(char::from(b));
            } else {
                url.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let body = match super::api_call(reqwest::Method::GET, &url)? {
        Some((200, body)) => body,
        Some((400 | 404, body)) => bail!(
            "{}",
            body.get("error")
                .and_then(Value::as_str)
                .unwrap_or("not found")
        ),
        Some((code, body)) => return Err(super::unexpected(&base, code, &body, true)),
        None => bail!(
            "no daemon answered at {base}; `events explain` needs the running daemon (it loads the revision recorded with the event from its repository)"
        ),
    };
    if args.json {
        super::emit(&(serde_json::to_string_pretty(&body)? + "\n"))?;
    } else {
        super::emit(&render_event(&body))?;
    }
    Ok(Exit::Ok)
}

/// The API's explanation of a stored delivery as text.
fn render_event(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?");
    let revision = v
        .get("revision")
        .and_then(Value::as_str)
        .unwrap_or("working tree");
    let mut out = format!(
        "{} {} on {} ({}), received {}\nevaluated against revision {revision}\n",
        s("event"),
        s("name"),
        s("integration"),
        s("platform"),
        s("received_at"),
    );
    let matched: Vec<&str> = v
        .get("matched_on_arrival")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str(&format!(
        "matched on arrival: {}\n",
        if matched.is_empty() {
            "no rule".to_owned()
        } else {
            matched.join(", ")
        }
    ));
    for note in v
        .get("notes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        out.push_str(&format!("note: {note}\n"));
    }
    push_rules(
        &mut out,
        v.get("rules").and_then(Value::as_array).map_or(&[], |a| a),
    );
    if let Some(current) = v.get("current").filter(|c| !c.is_null())
        && current
            .get("differs")
            .and_then(Value::as_array)
            .is_some_and(|d| !d.is_empty())
    {
        let rev = current
            .get("revision")
            .and_then(Value::as_str)
            .unwrap_or("working tree");
        out.push_str(&format!("\nwith the revision now in use ({rev}):\n"));
        let differing: Vec<&str> = current["differs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["rule"].as_str())
            .collect();
        let rules: Vec<Value> = current
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|r| r["rule"].as_str().is_some_and(|id| differing.contains(&id)))
            .cloned()
            .collect();
        push_rules(&mut out, &rules);
    }
    out
}
