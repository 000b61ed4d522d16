//! `supportopsd events list | show ID | dead | replay ID …`: the event history, one delivery's
//! trace (`history.rs`) and the dead-letter queue, through a running daemon's API (which holds
//! the state), or straight from `--state` when no daemon answers; `fixture` (real deliveries as
//! rule tests) lives in `fixture.rs`, `export` (an event corpus) in `export.rs`, `redeliver` in
//! `redeliver.rs`.

use anyhow::{Context as _, bail};

use super::{Exit, GlobalArgs, state_dir};
use crate::state::{State, Store};

/// Stored deliveries, their traces, and dead-lettered jobs.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List stored deliveries, newest first, with their rules and outcome (filters, pages).
    List(super::history::ListArgs),
    /// Show one delivery's trace: the event, each rule's decision, each job's attempts, the
    /// audit records.
    Show(super::history::ShowArgs),
    /// Write stored deliveries (or a saved raw one) as rule test fixtures, pseudonymised, each
    /// with a case asserting what the repository's rules do with it.
    Fixture(super::fixture::Args),
    /// Write stored deliveries (received since `--since`, default the last 7 days) as an event
    /// corpus for `plan --replay`, pseudonymised by the daemon (docs/corpus.md).
    Export(super::export::Args),
    /// Evaluate a stored delivery again against the revision in use: the rules that have not
    /// run for it yet get a job (`--rule R --force` re-runs one that did).
    Redeliver(super::redeliver::Args),
    /// List dead-lettered jobs.
    Dead(Target),
    /// Re-queue one dead-lettered job, or all of them (`--all-dead`).
    Replay {
        /// The job id (from `events dead`).
        #[arg(required_unless_present = "all_dead")]
        id: Option<u64>,
        /// Every dead-lettered job (of `--integration`'s deliveries when given).
        #[arg(long, conflicts_with = "id")]
        all_dead: bool,
        /// With `--all-dead`: only the jobs of this integration's deliveries.
        #[arg(long, value_name = "I", requires = "all_dead")]
        integration: Option<String>,
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
            "{}\t{}\trule {}\tevent {} ({})\tattempts {}\t{}",
            job.get("id").unwrap_or(&serde_json::Value::Null),
            d.get("dead_at_ms")
                .and_then(serde_json::Value::as_u64)
                .map_or_else(
                    || "?".to_owned(),
                    crate::platforms::supportopsd::events::rfc3339_ms
                ),
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
        Command::List(a) => super::history::list(a, g),
        Command::Show(a) => super::history::show(a, g),
        Command::Fixture(args) => super::fixture::run(args, g),
        Command::Export(args) => super::export::run(args, g),
        Command::Redeliver(args) => super::redeliver::run(args),
        Command::Dead(t) => {
            let base = t.base();
            let url = format!("{base}/api/jobs/dead");
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
        Command::Replay {
            all_dead: true,
            integration,
            target,
            ..
        } => replay_all(integration.as_deref(), target, g),
        Command::Replay { id: None, .. } => {
            bail!("give a job id (from `events dead`) or --all-dead")
        }
        Command::Replay {
            id: Some(id),
            target,
            ..
        } => {
            let base = target.base();
            let url = format!("{base}/api/jobs/{id}/replay");
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

/// `events replay --all-dead [--integration I]`: through the daemon
/// (`POST /api/jobs/replay-dead`, audited there), or in the state when no daemon answers.
fn replay_all(integration: Option<&str>, target: &Target, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let base = target.base();
    let url = format!("{base}/api/jobs/replay-dead");
    let body = serde_json::json!({ "integration": integration });
    let which = integration.map_or_else(String::new, |i| format!(" of {i}"));
    match super::api_call_with(reqwest::Method::POST, &url, Some(&body))? {
        Some((202, v)) => {
            let jobs = v
                .get("jobs")
                .and_then(|j| j.as_array())
                .cloned()
                .unwrap_or_default();
            for j in &jobs {
                println!(
                    "job {} re-queued\trule {}\tevent {}",
                    j.get("id").unwrap_or(&serde_json::Value::Null),
                    j.get("rule").and_then(|r| r.as_str()).unwrap_or("?"),
                    j.get("event").and_then(|r| r.as_str()).unwrap_or("?"),
                );
            }
            println!("{} dead-lettered job(s){which} re-queued", jobs.len());
        }
        Some((code, body)) => return Err(super::unexpected(&base, code, &body, false)),
        None => {
            if let Some(i) = integration {
                crate::manifest::IntegrationId::parse(i)
                    .map_err(|e| anyhow::anyhow!("--integration: {e}"))?;
            }
            let store = open_state(g)?;
            let prefix = integration.map(|i| format!("{i}/"));
            let now = crate::runtime::now_ms();
            let mut n = 0;
            for d in store.dead(usize::MAX)? {
                if prefix
                    .as_deref()
                    .is_some_and(|p| !d.job.event_key.starts_with(p))
                {
                    continue;
                }
                let job = store
                    .replay(d.job.id, now)
                    .with_context(|| format!("replaying job {}", d.job.id))?;
                println!(
                    "job {} re-queued\trule {}\tevent {}",
                    job.id, job.rule, job.event_id
                );
                n += 1;
            }
            store.flush()?;
            println!(
                "{n} dead-lettered job(s){which} re-queued (the daemon runs them when it next starts)"
            );
        }
    }
    Ok(Exit::Ok)
}

/// The state at `--state` (or its default), opened for a command no daemon answered.
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
