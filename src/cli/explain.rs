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

/// Runs `events explain`: through the daemon's API, or from `--state` and `--repo` when no
/// daemon answers.
pub fn run_event(args: &EventArgs, g: &GlobalArgs) -> anyhow::Result<Exit> {
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
        None => offline(id, args.rule.as_deref(), g)?,
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

/// `events explain` without a daemon: the delivery from `--state`, the revisions (the one
/// recorded with it, the one the state last applied) from `--repo`. supportopsd's own
/// identities on the platforms are learned by a running daemon, so the loop guard for events
/// it caused is not evaluated here (a note says so).
fn offline(id: crate::state::EventId, rule: Option<&str>, g: &GlobalArgs) -> anyhow::Result<Value> {
    use crate::runtime::explain::{Revision, explain_event};
    let store = super::events::open_state(g)?;
    let (Some(meta), Some(event)) = (store.event_meta(id)?, store.event(id)?) else {
        bail!(
            "no stored event `{id}` in {} (retention may have removed it)",
            super::state_dir(g).display()
        );
    };
    let load = |rev: &str| -> Result<crate::manifest::ManifestSet, String> {
        let loaded = crate::manifest::load_source(&super::source(g, Some(rev)))
            .map_err(|e| e.to_string())?;
        loaded.set.ok_or_else(|| {
            format!(
                "its manifests have {} validation error(s)",
                loaded.diagnostics.error_count()
            )
        })
    };
    let recorded_set = match &meta.revision {
        Some(rev) => load(rev).map_err(|why| {
            format!(
                "the revision recorded with this event ({rev}) is not available in {}: {why}",
                g.repo.display()
            )
        }),
        None => Err("no revision was recorded with this event (stored before schema 4)".to_owned()),
    };
    let applied = store.applied_revision()?;
    let current_set = applied
        .as_deref()
        .filter(|a| meta.revision.as_deref() != Some(*a))
        .and_then(|a| load(a).ok());
    let recorded = match &recorded_set {
        Ok(set) => Ok(Revision {
            commit: meta.revision.as_deref(),
            set,
        }),
        Err(why) => Err(why.clone()),
    };
    let current = current_set.as_ref().map(|set| Revision {
        commit: applied.as_deref(),
        set,
    });
    let mut v =
        explain_event(&event, &meta, recorded, current, false, rule).map_err(anyhow::Error::msg)?;
    if let Some(notes) = v.get_mut("notes").and_then(Value::as_array_mut) {
        notes.push(Value::from(
            "no daemon answered: read from the state; whether supportopsd's own account caused the event is known only to a running daemon, so that part of the loop guard is not evaluated",
        ));
    }
    Ok(v)
}
