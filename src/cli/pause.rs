//! `supportopsd pause --rule R | --integration I --reason TEXT` / `resume`: the emergency
//! brakes. A paused rule matches nothing; a paused integration's actions wait in the queue
//! until it is resumed (then they run, or with `--drop-queued` are dropped). Through a running
//! daemon's API (admin token) when one answers, else straight in the state, which the daemon
//! reads when it starts. Audited with who asked and why; shown in `status` and `plan`.
//! What a hold does: `runtime::holds` and docs/daemon.md.

use anyhow::bail;
use serde_json::json;

use super::{Exit, GlobalArgs, Target, api_call_with, load_or_report, state_dir, unexpected};
use crate::runtime::holds::check_reason;
use crate::runtime::now_ms;
use crate::state::{AuditKind, AuditRecord, Hold, HoldKind, State, Store};

/// What to pause or resume: one rule or one integration.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Which {
    /// A rule (by id): it matches nothing while paused.
    #[arg(long, value_name = "RULE")]
    pub rule: Option<String>,
    /// An integration (by id): every action that calls it waits in the queue while paused.
    #[arg(long, value_name = "INTEGRATION")]
    pub integration: Option<String>,
}

impl Which {
    /// The flag as typed: `--rule R` or `--integration I`.
    pub fn flag(&self) -> String {
        let (kind, id) = self.get();
        format!("--{} {id}", kind.as_str())
    }

    fn get(&self) -> (HoldKind, &str) {
        match (&self.rule, &self.integration) {
            (Some(r), _) => (HoldKind::Rule, r.as_str()),
            (None, Some(i)) => (HoldKind::Integration, i.as_str()),
            // clap requires one of the two.
            (None, None) => (HoldKind::Rule, ""),
        }
    }
}

/// `pause`.
#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// What to pause.
    #[command(flatten)]
    pub which: Which,
    /// Why (required; one line, at most 500 characters; shown in status and the audit log).
    #[arg(long)]
    pub reason: String,
    /// Where the daemon answers.
    #[command(flatten)]
    pub target: Target,
}

/// `resume`.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// What to resume.
    #[command(flatten)]
    pub which: Which,
    /// Drop (dead-letter) the queued jobs the hold kept back instead of running them; each
    /// can still be replayed on its own. Needs the running daemon.
    #[arg(long)]
    pub drop_queued: bool,
    /// Where the daemon answers.
    #[command(flatten)]
    pub target: Target,
}

/// Who paused, when it was written straight into the state (for the audit record).
fn offline() -> serde_json::Value {
    json!({"by": "command line, in the state (no daemon answered)"})
}

/// The API path of a hold's route.
fn path(kind: HoldKind, id: &str, verb: &str) -> String {
    let id: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
    format!("/api/{}s/{id}/{verb}", kind.as_str())
}

/// Checks `id` against the manifests (no daemon answered): the same 404 the API gives.
fn check_offline(g: &GlobalArgs, kind: HoldKind, id: &str) -> anyhow::Result<bool> {
    let Some(set) = load_or_report(g, None)? else {
        return Ok(false);
    };
    let known: Vec<&str> = match kind {
        HoldKind::Rule => set.rules.keys().map(|r| r.as_str()).collect(),
        HoldKind::Integration => set.integrations.keys().map(|i| i.as_str()).collect(),
    };
    if known.contains(&id) {
        return Ok(true);
    }
    let hint = crate::manifest::diagnostic::did_you_mean(id, known.iter().copied())
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default();
    bail!("no {} `{id}` in the manifests{hint}", kind.as_str())
}

/// Runs `pause`.
pub fn pause(args: &PauseArgs, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let (kind, id) = args.which.get();
    let reason = check_reason(&args.reason).map_err(|e| anyhow::anyhow!(e))?;
    let base = args.target.base();
    let url = format!("{base}{}", path(kind, id, "pause"));
    match api_call_with(
        reqwest::Method::POST,
        &url,
        Some(&json!({ "reason": reason })),
    )? {
        Some((200, v)) => {
            let hold = &v["paused"];
            if v["already_paused"] == true {
                println!(
                    "The {} `{id}` was paused already, since {} ({}): nothing changed (daemon at {base}).",
                    kind.as_str(),
                    hold["since_at"].as_str().unwrap_or("?"),
                    hold["reason"].as_str().unwrap_or("")
                );
            } else {
                println!("Paused the {} `{id}` (daemon at {base}).", kind.as_str());
            }
            println!("{}", what_it_does(kind, id));
            Ok(Exit::Ok)
        }
        Some((code, v)) => Err(unexpected(&base, code, &v, false)),
        None => {
            if !check_offline(g, kind, id)? {
                return Ok(Exit::Failure);
            }
            let store = Store::open(&state_dir(g))?;
            let store: &dyn State = &store;
            let at_ms = now_ms();
            let by = offline();
            let hold = Hold {
                kind,
                id: id.to_owned(),
                reason: reason.clone(),
                at_ms,
                by: by["by"].as_str().unwrap_or_default().to_owned(),
            };
            let mut detail = by;
            detail["reason"] = json!(reason);
            let record = AuditRecord {
                at_ms,
                kind: AuditKind::Paused,
                resource_type: kind.as_str().to_owned(),
                resource_id: id.to_owned(),
                detail,
            };
            match store.place_hold(&hold, &record)? {
                Some(existing) => println!(
                    "The {} `{id}` was paused already ({}): nothing changed (in the state; no daemon answered at {base}).",
                    kind.as_str(),
                    existing.reason
                ),
                None => println!(
                    "Paused the {} `{id}` in the state (no daemon answered at {base}); the daemon holds it when it starts.",
                    kind.as_str()
                ),
            }
            println!("{}", what_it_does(kind, id));
            Ok(Exit::Ok)
        }
    }
}

/// One line on what the hold does, and how to take it off.
fn what_it_does(kind: HoldKind, id: &str) -> String {
    match kind {
        HoldKind::Rule => format!(
            "It matches nothing until `supportopsd resume --rule {id}` (deliveries are still stored; those that arrive meanwhile are not run on resume)."
        ),
        HoldKind::Integration => format!(
            "Its actions wait in the queue until `supportopsd resume --integration {id}` (they run then, or are dropped with --drop-queued)."
        ),
    }
}

/// Runs `resume`.
pub fn resume(args: &ResumeArgs, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let (kind, id) = args.which.get();
    let base = args.target.base();
    let url = format!("{base}{}", path(kind, id, "resume"));
    let body = json!({ "drop_queued": args.drop_queued });
    match api_call_with(reqwest::Method::POST, &url, Some(&body))? {
        Some((200, v)) => {
            if v["was_paused"] != true {
                println!(
                    "The {} `{id}` was not paused: nothing changed (daemon at {base}).",
                    kind.as_str()
                );
                return Ok(Exit::Failure);
            }
            println!("Resumed the {} `{id}` (daemon at {base}).", kind.as_str());
            let (woken, dropped) = (
                v["woken"].as_u64().unwrap_or(0),
                v["dropped"].as_u64().unwrap_or(0),
            );
            if args.drop_queued {
                println!(
                    "{dropped} queued job(s) dropped (dead-lettered; `supportopsd events replay ID` runs one again)."
                );
            }
            if woken > 0 {
                println!("{woken} queued job(s) run now.");
            }
            if kind == HoldKind::Rule {
                println!(
                    "Deliveries that arrived while it was paused are not run; `supportopsd events redeliver ID --rule {id}` runs one."
                );
            }
            Ok(Exit::Ok)
        }
        Some((code, v)) => Err(unexpected(&base, code, &v, false)),
        None => {
            if args.drop_queued {
                bail!(
                    "--drop-queued needs the running daemon (it knows which queued jobs call what); no daemon answered at {base}"
                );
            }
            let store = Store::open(&state_dir(g))?;
            let store: &dyn State = &store;
            let record = AuditRecord {
                at_ms: now_ms(),
                kind: AuditKind::Resumed { dropped: 0 },
                resource_type: kind.as_str().to_owned(),
                resource_id: id.to_owned(),
                detail: offline(),
            };
            if store.release_hold(kind, id, &record)?.is_none() {
                println!(
                    "The {} `{id}` was not paused: nothing changed (in the state; no daemon answered at {base}).",
                    kind.as_str()
                );
                return Ok(Exit::Failure);
            }
            println!(
                "Resumed the {} `{id}` in the state (no daemon answered at {base}); the jobs it kept back run within a minute of the daemon's start.",
                kind.as_str()
            );
            Ok(Exit::Ok)
        }
    }
}
