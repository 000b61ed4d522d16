//! `supportopsd status`: a running daemon's view (through its API), or what the state on disk
//! says when no daemon answers.

use anyhow::bail;

use super::{Exit, GlobalArgs, api_call, state_dir};
use crate::state::Store;

/// Show a daemon's status.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A running daemon's address.
    #[arg(long, env = "SUPPORTOPSD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn lines(v: &serde_json::Value, key: &str, field: &str) -> Vec<String> {
    v.get(key)
        .and_then(|p| p.as_array())
        .map(|items| {
            items
                .iter()
                .map(|p| {
                    format!(
                        "  {}: {}",
                        p["integration"].as_str().unwrap_or("?"),
                        p[field].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `status`.
pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let url = format!("{}/api/status", args.url.trim_end_matches('/'));
    let (source, v) = match api_call(reqwest::Method::GET, &url)? {
        Some((200, body)) => (format!("daemon at {}", args.url), body),
        Some((code, _)) => bail!(
            "the daemon at {} answered {code} (set SUPPORTOPSD_ADMIN_TOKEN?)",
            args.url
        ),
        None => {
            let dir = state_dir(g);
            let Some(store) = Store::open_existing(&dir)? else {
                bail!(
                    "no daemon answered at {} and there is no state at {}",
                    args.url,
                    dir.display()
                );
            };
            let v = serde_json::json!({
                "applied_revision": store.applied_revision()?,
                "queue_depth": store.queue_depth(),
                "dead_letters": store.dead_depth(),
            });
            (
                format!(
                    "state at {} (no daemon answered at {})",
                    dir.display(),
                    args.url
                ),
                v,
            )
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Exit::Ok);
    }
    println!("supportopsd: {source}");
    let revision = v["applied_revision"]
        .as_str()
        .map_or("none applied".to_owned(), |r| {
            r[..r.len().min(12)].to_owned()
        });
    println!("revision: {revision}");
    if let Some(why) = v["refused"].as_str() {
        println!("newest revision refused: {why}");
    }
    println!(
        "queue: {} job(s), {} dead letter(s)",
        v["queue_depth"].as_u64().unwrap_or(0),
        v["dead_letters"].as_u64().unwrap_or(0)
    );
    let problems = lines(&v, "problems", "problem");
    if !problems.is_empty() {
        println!("problems:");
        for l in problems {
            println!("{l}");
        }
    }
    let notes = lines(&v, "notes", "note");
    if !notes.is_empty() {
        println!("to do by hand:");
        for l in notes {
            println!("{l}");
        }
    }
    Ok(Exit::Ok)
}
