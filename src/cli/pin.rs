//! `supportopsd pin REV` / `unpin`: hold the daemon on one revision during an incident, so that
//! new commits do not race the people handling it. Through a running daemon's API when one
//! answers, else straight in the state. Audited; shown in `status`.

use anyhow::bail;
use serde_json::json;

use super::{Exit, GlobalArgs, api_call_with, state_dir};
use crate::daemon::now_ms;
use crate::state::{AuditKind, AuditRecord, Pin, Store};

/// `pin REV`.
#[derive(Debug, clap::Args)]
pub struct PinArgs {
    /// The revision to hold (a commit, tag or branch; resolved to a commit now).
    pub rev: String,
    /// Why (shown in status and the audit log).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// A running daemon's address.
    #[arg(long, env = "SUPPORTOPSD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
}

/// `unpin`.
#[derive(Debug, clap::Args)]
pub struct UnpinArgs {
    /// A running daemon's address.
    #[arg(long, env = "SUPPORTOPSD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
}

/// Runs `pin`.
pub fn pin(args: &PinArgs, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let url = format!("{}/api/pin", args.url.trim_end_matches('/'));
    let body = json!({"revision": args.rev, "reason": args.reason});
    match api_call_with(reqwest::Method::POST, &url, Some(&body))? {
        Some((200, v)) => {
            println!(
                "Pinned to {} (daemon at {}).",
                v["pinned"].as_str().unwrap_or("?"),
                args.url
            );
            if let Some(why) = v["refused"].as_str() {
                println!("The pinned revision was refused: {why}");
                return Ok(Exit::Failure);
            }
            Ok(Exit::Ok)
        }
        Some((code, v)) => bail!(
            "the daemon at {} answered {code}: {}",
            args.url,
            v["error"]
                .as_str()
                .unwrap_or("(set SUPPORTOPSD_ADMIN_TOKEN?)")
        ),
        None => {
            let commit = crate::manifest::source::resolve_commit(&g.repo, &args.rev)?;
            let store = Store::open(&state_dir(g))?;
            set_pin(&store, &commit, &args.reason)?;
            println!(
                "Pinned to {commit} in the state (no daemon answered at {}); the daemon runs it when it starts.",
                args.url
            );
            Ok(Exit::Ok)
        }
    }
}

/// Runs `unpin`.
pub fn unpin(args: &UnpinArgs, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let url = format!("{}/api/pin", args.url.trim_end_matches('/'));
    match api_call_with(reqwest::Method::DELETE, &url, None)? {
        Some((200, _)) => {
            println!("Unpinned (daemon at {}).", args.url);
            Ok(Exit::Ok)
        }
        Some((code, v)) => bail!(
            "the daemon at {} answered {code}: {}",
            args.url,
            v["error"]
                .as_str()
                .unwrap_or("(set SUPPORTOPSD_ADMIN_TOKEN?)")
        ),
        None => {
            let store = Store::open(&state_dir(g))?;
            if store.pin()?.is_none() {
                println!("Nothing was pinned.");
                return Ok(Exit::Failure);
            }
            clear_pin(&store)?;
            println!(
                "Unpinned in the state (no daemon answered at {}).",
                args.url
            );
            Ok(Exit::Ok)
        }
    }
}

/// Pins `commit` and audits it.
pub fn set_pin(store: &Store, commit: &str, reason: &str) -> Result<(), crate::state::Error> {
    let at_ms = now_ms();
    store.append_audit(&AuditRecord {
        at_ms,
        kind: AuditKind::Pinned,
        resource_type: "revision".to_owned(),
        resource_id: commit.to_owned(),
        detail: json!({"reason": reason}),
    })?;
    store.set_pin(Some(&Pin {
        revision: commit.to_owned(),
        at_ms,
        reason: reason.to_owned(),
    }))
}

/// Releases the pin and audits it.
pub fn clear_pin(store: &Store) -> Result<(), crate::state::Error> {
    let previous = store.pin()?.map(|p| p.revision).unwrap_or_default();
    store.append_audit(&AuditRecord {
        at_ms: now_ms(),
        kind: AuditKind::Unpinned,
        resource_type: "revision".to_owned(),
        resource_id: previous,
        detail: json!({}),
    })?;
    store.set_pin(None)
}
