//! `supportopsd events dead | replay ID`: the dead-letter queue, through a running daemon's API
//! (which holds the state), or straight from `--state` when no daemon answers.

use anyhow::{Context as _, bail};

use super::{Exit, GlobalArgs, state_dir};
use crate::state::{State, Store};

/// Dead-lettered deliveries.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List dead-lettered jobs.
    Dead(Target),
    /// Re-queue one dead-lettered job.
    Replay {
        /// The job id (from `events dead`).
        id: u64,
        /// Where to find the daemon.
        #[command(flatten)]
        target: Target,
    },
    /// Why each rule did or did not run on a stored delivery, against the revision recorded
    /// with it (and whether the revision in use now would decide differently).
    Explain(super::explain::EventArgs),
}

use super::Target;

fn print_dead(v: &serde_json::Value) {
    let items = v
        .get("dead")
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    if items.is_empty() {
        println!("no dead-lettered jobs");
        return;
    }
    for d in items {
        let job = d.get("job").unwrap_or(&d);
        println!(
            "{}\trule {}\tevent {} ({})\tattempts {}\t{}",
            job.get("id").unwrap_or(&serde_json::Value::Null),
            job.get("rule").and_then(|r| r.as_str()).unwrap_or("?"),
            job.get("event_key").and_then(|r| r.as_str()).unwrap_or("?"),
            job.get("event_id").and_then(|r| r.as_str()).unwrap_or("?"),
            job.get("attempts").unwrap_or(&serde_json::Value::Null),
            d.get("error")
                .or_else(|| job.get("last_error"))
                .and_then(|r| r.as_str())
                .unwrap_or(""),
        );
    }
}

/// Runs an `events` command.
pub fn run(cmd: &Command, g: &GlobalArgs) -> anyhow::Result<Exit> {
    match cmd {
        Command::Dead(t) => {
            let base = t.base();
            let url = format!("{base}/api/events/dead");
            let body = match super::api_call(reqwest::Method::GET, &url)? {
                Some((200, body)) => body,
                Some((code, body)) => return Err(super::unexpected(&base, code, &body, true)),
                None => {
                    let store = open_state(g)?;
                    serde_json::json!({ "dead": store.dead(10_000)? })
                }
            };
            print_dead(&body);
            Ok(Exit::Ok)
        }
        Command::Explain(args) => super::explain::run_event(args, g),
        Command::Replay { id, target } => {
            let base = target.base();
            let url = format!("{base}/api/events/{id}/replay");
            match super::api_call(reqwest::Method::POST, &url)? {
                Some((202, _)) => println!("job {id} re-queued"),
                Some((404, _)) => bail!("no dead-lettered job {id}"),
                Some((code, body)) => {
                    return Err(super::unexpected(&base, code, &body, false));
                }
                None => {
                    let store = open_state(g)?;
                    store
                        .replay(*id, crate::runtime::now_ms())
                        .with_context(|| format!("replaying job {id}"))?;
                    store.flush()?;
                    println!("job {id} re-queued (the daemon runs it when it next starts)");
                }
            }
            Ok(Exit::Ok)
        }
    }
}

pub(super) fn open_state(g: &GlobalArgs) -> anyhow::Result<Box<dyn State>> {
    let dir = state_dir(g);
    let store = Store::open_existing(&dir)?.with_context(|| {
        format!(
            "no daemon answered and there is no state at {}",
            dir.display()
        )
    })?;
    Ok(Box::new(store))
}
