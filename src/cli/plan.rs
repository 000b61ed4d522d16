//! `supportopsd plan`.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use anyhow::Context as _;
use clap::ValueEnum;

use super::{Exit, GlobalArgs, load_checked, load_or_report, state_dir};
use crate::plan::{self, render};
use crate::state::{State, Store};

/// Diff desired against current.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Desired revision (default: the working tree).
    #[arg(long, env = "SUPPORTOPSD_REV")]
    pub rev: Option<String>,
    /// Compare against this revision instead of the state (no state needed: the CI mode).
    #[arg(long, env = "SUPPORTOPSD_BASE")]
    pub base: Option<String>,
    /// Output format.
    #[arg(long, env = "SUPPORTOPSD_FORMAT", value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 2 when there are changes (0 none, 1 error).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Exit 3 when there are security-sensitive changes (endpoints, domains, credential and
    /// webhook secret references, shared references, new rule destinations); takes precedence
    /// over 2, not over 1.
    #[arg(long)]
    pub fail_on_sensitive: bool,
    /// Also ask the platforms for drift (needs credentials and network).
    #[arg(long)]
    pub refresh: bool,
    /// Accept a desired repository with no integrations and no rules (else an error: the
    /// wrong folder).
    #[arg(long)]
    pub allow_empty: bool,
    /// With `--base`: a running daemon to read the runtime holds (paused rules and
    /// integrations) from [default: $SUPPORTOPSD_URL when set; else they are not shown].
    /// Without `--base` they are read from the state.
    #[arg(long)]
    pub url: Option<String>,
}

/// Output format of `plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For a terminal (coloured when it is one).
    Text,
    /// Versioned JSON.
    Json,
    /// A pull-request comment.
    Markdown,
}

/// Runs `plan`.
pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    if args.refresh {
        eprintln!(
            "supportopsd plan --refresh: not available yet in this release (it needs the platform connectors)"
        );
        return Ok(Exit::Failure);
    }
    let Some(set) = load_checked(g, args.rev.as_deref(), false, args.allow_empty)? else {
        return Ok(Exit::Failure);
    };
    // On stderr, so that the plan itself (JSON, a pull-request comment) stays as it is.
    if let Some(note) = super::policy_note(&set) {
        eprintln!("{note}");
    }
    let desired = plan::desired(&set);
    let to = set.revision.to_string();
    drop(set);
    let (current, from, holds) = match &args.base {
        Some(base) => {
            let Some(base_set) = load_or_report(g, Some(base))? else {
                eprintln!("error: the base revision {base} does not validate");
                return Ok(Exit::Failure);
            };
            (
                plan::desired(&base_set),
                base_set.revision.to_string(),
                daemon_holds(args.url.as_deref()),
            )
        }
        None => {
            let dir = state_dir(g);
            match Store::open_existing(&dir)
                .with_context(|| format!("reading state at {}", dir.display()))?
            {
                None => (
                    BTreeMap::new(),
                    "empty state".to_owned(),
                    (Vec::new(), Some("state".to_owned())),
                ),
                Some(store) => {
                    let store: &dyn State = &store;
                    let holds = store.holds()?;
                    let holds = (
                        holds.iter().map(plan::RuntimeHold::of).collect(),
                        Some("state".to_owned()),
                    );
                    let applied = store.applied()?;
                    let label = match store.applied_revision()? {
                        Some(rev) => format!("state (applied {})", &rev[..12.min(rev.len())]),
                        None => "state (nothing applied)".to_owned(),
                    };
                    (plan::from_state(&applied), label, holds)
                }
            }
        }
    };
    let mut plan = plan::diff(&desired, &current, from, to);
    (plan.holds, plan.holds_from) = holds;
    let out = match args.format {
        Format::Text => render::text(&plan, std::io::stdout().is_terminal()),
        Format::Json => render::json(&plan),
        Format::Markdown => render::markdown(&plan),
    };
    super::emit(&out)?;
    Ok(exit_code(args, &plan))
}

/// The runtime holds of the daemon at `url` (else `$SUPPORTOPSD_URL`), read with
/// `GET /api/holds`; nothing (and `None`: not read) when neither is given or it does not
/// answer 200 (said on stderr).
fn daemon_holds(url: Option<&str>) -> (Vec<plan::RuntimeHold>, Option<String>) {
    let env = std::env::var("SUPPORTOPSD_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let Some(base) = url.map(str::to_owned).or(env) else {
        return (Vec::new(), None);
    };
    let base = super::daemon_url(Some(&base));
    let answer = super::api_call(reqwest::Method::GET, &format!("{base}/api/holds"));
    let Ok(Some((200, v))) = answer else {
        eprintln!("note: the runtime holds are not shown: the daemon at {base} did not answer");
        return (Vec::new(), None);
    };
    let holds = v["holds"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| plan::RuntimeHold {
            kind: h["kind"].as_str().unwrap_or_default().to_owned(),
            id: h["id"].as_str().unwrap_or_default().to_owned(),
            reason: h["reason"].as_str().unwrap_or_default().to_owned(),
            by: h["by"].as_str().unwrap_or_default().to_owned(),
            since_ms: h["since_ms"].as_u64().unwrap_or(0),
            since_at: h["since_at"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    (holds, Some(format!("daemon at {base}")))
}

/// What to run instead of `plan` against a state a running daemon holds (sled admits one
/// process at a time, readers included). The daemon's API has no applied resources to diff
/// against, but it names its applied revision, and `plan --base` diffs against that revision's
/// manifests: the exact command when the daemon at `url` answers, else how to find it.
pub(super) fn held_advice(url: &str) -> String {
    let applied = super::api_call(reqwest::Method::GET, &format!("{url}/api/status"))
        .ok()
        .flatten()
        .filter(|(code, _)| *code == 200)
        .and_then(|(_, v)| v["applied_revision"].as_str().map(str::to_owned))
        .filter(|rev| !rev.is_empty() && rev.bytes().all(|b| b.is_ascii_hexdigit()));
    match applied {
        Some(rev) => format!(
            "while the daemon runs, compare with the revision it applied (the daemon at {url} says {rev}): `supportopsd plan --base {rev}`; or stop the daemon to compare with the state itself"
        ),
        None => format!(
            "while the daemon runs, compare with the revision it applied: `supportopsd status --url {url}` names it (the daemon's listen address, from $SUPPORTOPSD_LISTEN or `run`'s default), then `supportopsd plan --base REV`; or stop the daemon to compare with the state itself"
        ),
    }
}

/// The exit code of a plan that was made: sensitive 3 > changes 2 > none 0 (an error, 1, never
/// gets here).
fn exit_code(args: &Args, plan: &plan::Plan) -> Exit {
    if args.fail_on_sensitive && !plan.security_sensitive.is_empty() {
        eprintln!(
            "supportopsd plan: {} security-sensitive change(s) (--fail-on-sensitive)",
            plan.security_sensitive.len()
        );
        Exit::SensitiveChanges
    } else if args.detailed_exitcode && plan.has_changes() {
        Exit::ChangesPresent
    } else {
        Exit::Ok
    }
}
