//! `supportopsd events redeliver ID [--rule R] [--force]`: a stored delivery evaluated again
//! against the revision the daemon has in use (`POST /api/events/{id}/redeliver`), so a rule
//! fixed by a commit runs for a delivery it missed. By default only the rules that have not
//! already run for it get a job; `--rule R --force` re-runs one that did. Only through a
//! running daemon: it holds the revision in use and runs the jobs.

use anyhow::bail;
use serde_json::{Value, json};

use super::{Exit, Target};
use crate::state::EventId;

/// Evaluate a stored delivery again against the revision in use.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The delivery (`evt_<n>`).
    pub id: String,
    /// Only this rule (it must match the delivery under the revision in use).
    #[arg(long, value_name = "R")]
    pub rule: Option<String>,
    /// Re-run `--rule` although it already ran for this delivery (it may send a duplicate).
    #[arg(long, requires = "rule")]
    pub force: bool,
    /// Where to find the daemon.
    #[command(flatten)]
    pub target: Target,
}

/// Runs `events redeliver`.
pub fn run(args: &Args) -> anyhow::Result<Exit> {
    let id: EventId = args.id.parse()?;
    let base = args.target.base();
    let url = format!("{base}/api/events/{id}/redeliver");
    let body = json!({"rule": args.rule, "force": args.force});
    let answer = match super::api_call_with(reqwest::Method::POST, &url, Some(&body))? {
        Some((202, v)) => v,
        Some((code, body)) => return Err(super::unexpected(&base, code, &body, false)),
        None => bail!(
            "no daemon answered at {base}: a redelivery runs in the daemon (it holds the revision in use); start it, or name it with --url"
        ),
    };
    let revision = answer["revision"].as_str().unwrap_or("none");
    let short = revision.get(..12).unwrap_or(revision);
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let created = list(&answer["redelivered"]);
    let skipped = list(&answer["skipped"]);
    let matched = list(&answer["matched"]);
    println!(
        "{id} evaluated against revision {short}: {}",
        if matched.is_empty() {
            "no rule matches".to_owned()
        } else {
            format!(
                "matches {}",
                matched
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    for c in &created {
        println!(
            "  run      {}\tjob {}",
            c["rule"].as_str().unwrap_or("?"),
            c["job"]
        );
    }
    for s in &skipped {
        println!(
            "  skipped  {}\t{}",
            s["rule"].as_str().unwrap_or("?"),
            s["reason"].as_str().unwrap_or("")
        );
    }
    if created.is_empty() {
        println!("nothing redelivered");
    }
    Ok(Exit::Ok)
}
