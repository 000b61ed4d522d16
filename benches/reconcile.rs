//! Reconcile time for many integrations against fake platforms (`benches/reconcile.sh` runs it
//! with the release build).
//!
//! Starts `FAKES` fake Zendesk accounts (`supportopsd::platforms::zendesk::fake`, on loopback),
//! generates a git repository of `INTEGRATIONS` Zendesk integrations spread over them, each
//! declaring a webhook (`ticket.created`: a webhook plus a trigger on the account), opens a
//! daemon runtime the way `supportopsd apply` does and times three `reconcile::pass`es:
//!
//! 1. the first (every registration created),
//! 2. a second (every registration unchanged; also timed without the connection checks),
//! 3. one after 10% of the webhooks were deleted at the fakes behind the daemon's back
//!    (repaired).
//!
//! Each pass also checks every integration's connection (`GET /api/v2/users/me`). The fakes'
//! per-minute request budget is lifted: the figure is the daemon's and the fakes' work, not
//! Zendesk's rate limit. Prints wall times, requests served by the fakes and outcome counts;
//! exits non-zero if a pass does not do what it should.
//!
//! usage: `cargo run --release --features test-support --example reconcile -- [INTEGRATIONS] [FAKES]`

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};
use supportopsd::manifest::IntegrationId;
use supportopsd::platforms::zendesk::fake::{AGENT_EMAIL, FakeZendesk};
use supportopsd::policy::Policy;
use supportopsd::reconcile;
use supportopsd::runtime::pass::{Cause, PassReport};
use supportopsd::runtime::{self, Options, Runtime};
use supportopsd::secrets::{self, SealKey};
use tokio::time::Instant;

/// The API token every fake account accepts (sealed into the manifests, never printed).
const API_TOKEN: &str = "bench-zendesk-api-token";

fn arg(n: usize, default: usize) -> anyhow::Result<usize> {
    match std::env::args().nth(n) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .with_context(|| format!("argument {n} `{s}` is not a number")),
    }
}

fn git(repo: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.invalid",
        ])
        .args(args)
        .status()
        .context("running git")?;
    if !status.success() {
        bail!("git {args:?} failed: {status}");
    }
    Ok(())
}

/// Writes and commits the repository: integration `zd-<i>` on fake `i % fakes`.
fn generate(repo: &Path, key: &SealKey, fakes: &[FakeZendesk], n: usize) -> anyhow::Result<()> {
    let dir = repo.join("integrations");
    std::fs::create_dir_all(&dir)?;
    for i in 0..n {
        let id = format!("zd-{i}");
        let iid = IntegrationId::parse(&id).map_err(|e| anyhow::anyhow!("{e}"))?;
        let sealed = secrets::seal(key, &iid, "api_token", API_TOKEN.as_bytes())?;
        let base_url = fakes[i % fakes.len()].base_url();
        std::fs::write(
            dir.join(format!("{id}.toml")),
            format!(
                r#"id = "{id}"
platform = "zendesk"
[credentials]
subdomain = "acme{i}"
email = "{AGENT_EMAIL}"
api_token = {{ sealed = "{sealed}" }}
[webhook]
events = ["ticket.created"]
[endpoint]
base_url = "{base_url}"
"#
            ),
        )?;
    }
    git(repo, &["init", "-q"])?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-qm", "bench"])?;
    Ok(())
}

fn served(fakes: &[FakeZendesk]) -> usize {
    fakes.iter().map(|f| f.requests().len()).sum()
}

fn outcomes(report: &PassReport) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for r in &report.results {
        *m.entry(r.outcome.as_str()).or_insert(0) += 1;
    }
    m
}

/// Runs one full pass, prints its figures, and checks every result is `expect` except
/// `others` of them, which must be `other`.
async fn timed_pass(
    name: &str,
    rt: &Runtime,
    fakes: &[FakeZendesk],
    expect: &str,
    other: Option<(&str, usize)>,
) -> anyhow::Result<()> {
    let before = served(fakes);
    let started = Instant::now();
    let report = reconcile::pass(rt, Cause::Api).await;
    let took = started.elapsed();
    let requests = served(fakes) - before;
    let counts = outcomes(&report);
    println!(
        "{name}: {:.3} s, {requests} requests to the fakes ({:.0}/s), outcomes {counts:?}",
        took.as_secs_f64(),
        requests as f64 / took.as_secs_f64().max(1e-9),
    );
    if let Some(why) = &report.refused {
        bail!("the revision was refused: {why}");
    }
    let n = report.results.len();
    let (other_name, other_n) = other.unwrap_or(("", 0));
    if counts.get(expect).copied().unwrap_or(0) != n - other_n
        || counts.get(other_name).copied().unwrap_or(0) != other_n
    {
        let failed: Vec<_> = report
            .results
            .iter()
            .filter(|r| r.outcome == "failed")
            .take(3)
            .map(|r| format!("{}: {}", r.integration, r.detail))
            .collect();
        bail!(
            "{name}: expected {expect} (and {other_n} {other_name}), got {counts:?}; e.g. {failed:?}"
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = arg(1, 1000)?;
    let n_fakes = arg(2, 10)?.max(1);
    let mut fakes = Vec::with_capacity(n_fakes);
    for _ in 0..n_fakes {
        let fake = FakeZendesk::start(AGENT_EMAIL, API_TOKEN, None).await;
        fake.set_rate_limit_remaining(u64::MAX);
        fakes.push(fake);
    }
    let dir = tempfile::tempdir()?;
    let repo = dir.path().join("repo");
    let key = SealKey::generate()?;
    generate(&repo, &key, &fakes, n)?;
    println!(
        "{n} Zendesk integrations with a webhook, on {n_fakes} fake account(s); {} worker threads",
        std::thread::available_parallelism().map_or(1, usize::from)
    );

    let mut options = Options::new(
        "127.0.0.1:0".parse()?,
        "https://ops.example.com".to_owned(),
        repo,
        dir.path().join("state"),
    );
    // The fakes listen on loopback: only a host policy lets the integrations reach them.
    options.policy = std::sync::Arc::new(Policy::parse(
        "[endpoints]\nallow = [\"127.0.0.1:*\"]\n",
        Path::new("benches/reconcile.rs"),
    )?);
    let rt = runtime::open(options, Some(key))?;

    timed_pass("first pass (created)", &rt, &fakes, "created", None).await?;
    timed_pass("second pass (unchanged)", &rt, &fakes, "unchanged", None).await?;

    // The registrations alone, without the connection checks of a full pass.
    let before = served(&fakes);
    let started = Instant::now();
    let mut report = PassReport::default();
    reconcile::sync_registrations(&rt, &mut report).await;
    let took = started.elapsed();
    println!(
        "registrations only (unchanged): {:.3} s, {} requests to the fakes, outcomes {:?}",
        took.as_secs_f64(),
        served(&fakes) - before,
        outcomes(&report)
    );

    // 10% of the webhooks deleted behind the daemon's back (their triggers go with them).
    let mut deleted = 0;
    for fake in &fakes {
        for w in fake.webhooks() {
            let name = w["name"].as_str().unwrap_or_default();
            let Some(i) = name
                .strip_prefix("supportopsd:zd-")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            if i % 10 == 0
                && let Some(id) = w["id"].as_str()
            {
                fake.delete_webhook(id);
                deleted += 1;
            }
        }
    }
    println!("deleted {deleted} webhooks at the fakes");
    timed_pass(
        "third pass (10% repaired)",
        &rt,
        &fakes,
        "unchanged",
        Some(("repaired", deleted)),
    )
    .await?;
    rt.store.flush()?;
    Ok(())
}
