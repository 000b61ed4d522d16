//! `supportopsd apply`: one reconcile pass now, then exit — the plan against the state, then
//! what each change did on the platforms.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{Exit, GlobalArgs, state_dir};
use crate::reconcile;
use crate::runtime::pass::Cause;
use crate::runtime::{self, Options};

/// Run one reconcile pass now.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The revision to apply.
    #[arg(long, env = "SUPPORTOPSD_REV", default_value = "HEAD")]
    pub rev: String,
    /// The URL the platforms reach the daemon at (what gets registered).
    #[arg(long, env = "SUPPORTOPSD_PUBLIC_URL")]
    pub public_url: String,
    /// The sealing key file [default: $SUPPORTOPSD_KEY_FILE, then $CREDENTIALS_DIRECTORY/supportopsd.key].
    #[arg(long, env = "SUPPORTOPSD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// The host policy [default: $CREDENTIALS_DIRECTORY/policy.toml, then /etc/supportopsd/policy.toml; none found: no override honoured].
    #[arg(long, env = "SUPPORTOPSD_POLICY")]
    pub policy: Option<PathBuf>,
    /// Apply a revision with no integrations and no rules (removing everything registered);
    /// refused without it, as `plan` refuses it.
    #[arg(long)]
    pub allow_empty: bool,
}

/// Runs `apply`.
pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    // A policy that cannot be read stops everything, before the plan.
    let policy = super::run::load_policy(args.policy.as_deref())?;
    // The plan first, exactly as `plan --rev` shows it.
    let plan_args = super::plan::Args {
        rev: Some(args.rev.clone()),
        base: None,
        format: super::plan::Format::Text,
        detailed_exitcode: false,
        fail_on_sensitive: false,
        refresh: false,
        allow_empty: args.allow_empty,
        url: None,
        replay: Vec::new(),
    };
    if super::plan::run(&plan_args, g)? == Exit::Failure {
        return Ok(Exit::Failure);
    }
    let key = super::run::load_key(args.key_file.as_deref());
    let listen = "127.0.0.1:0".parse().context("listen address")?;
    let mut options = Options::new(
        listen,
        args.public_url.clone(),
        g.repo.clone(),
        state_dir(g),
    );
    options.subdir = g.path.clone();
    options.rev = args.rev.clone();
    options.policy = policy;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async move {
        let rt = runtime::open(options, key)
            .context("opening the state (is a daemon running? use its POST /api/sync instead)")?;
        let report = reconcile::pass(&rt, Cause::Api).await;
        if let Err(e) = rt.close_ingest().await {
            tracing::warn!(error = %e, "The ingest journal was not retired; the next start replays it.");
        }
        rt.store.flush()?;
        anyhow::Ok(report)
    })?;
    println!();
    match (&report.revision, &report.refused) {
        (_, Some(why)) => println!("Revision refused: {why}"),
        (Some(rev), None) => println!("Applied {}.", &rev[..rev.len().min(12)]),
        (None, None) => println!("Nothing applied."),
    }
    for r in &report.results {
        println!("  {}: {} — {}", r.integration, r.outcome, r.detail);
    }
    Ok(if report.failed() {
        Exit::Failure
    } else {
        Exit::Ok
    })
}
