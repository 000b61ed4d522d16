//! `supportopsd pin REV` / `unpin`: hold the daemon on one revision during an incident, so that
//! new commits do not race the people handling it. Through a running daemon's API when one
//! answers, else straight in the state. Only a commit the followed branch contains can be
//! pinned (SEC-06). Audited with who asked; shown in `status`.

use serde_json::json;

use super::{Exit, GlobalArgs, Target, api_call_with, state_dir, unexpected};
use crate::runtime::now_ms;
use crate::state::{State, Store};

/// `pin REV`.
#[derive(Debug, clap::Args)]
pub struct PinArgs {
    /// The revision to hold (a commit, tag or branch; resolved to a commit now, which the
    /// followed branch must contain).
    pub rev: String,
    /// Why (shown in status and the audit log).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Where the daemon answers.
    #[command(flatten)]
    pub target: Target,
}

/// `unpin`.
#[derive(Debug, clap::Args)]
pub struct UnpinArgs {
    /// Where the daemon answers.
    #[command(flatten)]
    pub target: Target,
}

/// The revision the daemon follows, as `run` reads it from the same environment:
/// `refs/heads/$SUPPORTOPSD_BRANCH`, else `$SUPPORTOPSD_REV`, else `HEAD`. Only commits it
/// contains can be pinned.
fn followed_rev() -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(branch) = env("SUPPORTOPSD_BRANCH") {
        return format!("refs/heads/{branch}");
    }
    env("SUPPORTOPSD_REV").unwrap_or_else(|| "HEAD".to_owned())
}

/// Who pinned, when it was written straight into the state (for the audit record).
fn offline() -> serde_json::Value {
    json!({"by": "command line, in the state (no daemon answered)"})
}

/// Runs `pin`.
pub fn pin(args: &PinArgs, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let base = args.target.base();
    let url = format!("{base}/api/pin");
    let body = json!({"revision": args.rev, "reason": args.reason});
    match api_call_with(reqwest::Method::POST, &url, Some(&body))? {
        Some((200, v)) => {
            println!(
                "Pinned to {} (daemon at {}).",
                v["pinned"].as_str().unwrap_or("?"),
                base
            );
            if let Some(why) = v["refused"].as_str() {
                println!("The pinned revision was refused: {why}");
                return Ok(Exit::Failure);
            }
            Ok(Exit::Ok)
        }
        Some((code, v)) => Err(unexpected(&base, code, &v, false)),
        None => {
            let followed = followed_rev();
            let commit = crate::manifest::source::resolve_on_branch(&g.repo, &args.rev, &followed)?;
            let store = Store::open(&state_dir(g))?;
            let store: &dyn State = &store;
            store.pin_revision(&commit, &args.reason, now_ms(), offline())?;
            println!(
                "Pinned to {commit} in the state (no daemon answered at {}); the daemon runs it when it starts.",
                base
            );
            Ok(Exit::Ok)
        }
    }
}

/// Runs `unpin`.
pub fn unpin(args: &UnpinArgs, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let base = args.target.base();
    let url = format!("{base}/api/pin");
    match api_call_with(reqwest::Method::DELETE, &url, None)? {
        Some((200, _)) => {
            println!("Unpinned (daemon at {base}).");
            Ok(Exit::Ok)
        }
        Some((code, v)) => Err(unexpected(&base, code, &v, false)),
        None => {
            let store = Store::open(&state_dir(g))?;
            let store: &dyn State = &store;
            if store.pin()?.is_none() {
                println!("Nothing was pinned.");
                return Ok(Exit::Failure);
            }
            store.unpin(now_ms(), offline())?;
            println!("Unpinned in the state (no daemon answered at {}).", base);
            Ok(Exit::Ok)
        }
    }
}
