//! `supportopsd plan`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::ValueEnum;

use super::{Exit, GlobalArgs, load_checked, load_or_report, state_dir};
use crate::event::corpus::{self, Record};
use crate::manifest::{ManifestSet, Revision};
use crate::plan::behaviour::{self, Behaviour, Input, Pending};
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
    /// The behavioural plan: replay these recorded events against --base and the desired
    /// revision (an `events export` corpus file, or a folder of rule tests such as `tests/`,
    /// whose cases count as events); repeatable. Needs --base.
    #[arg(long, value_name = "CORPUS", requires = "base")]
    pub replay: Vec<PathBuf>,
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
    let to = set.revision.to_string();
    // The behavioural plan first, while both revisions are loaded; each set is dropped once
    // its resources are taken (the peak is two sets, not two sets and their resources).
    let (desired, current, from, holds, behaviour) = match &args.base {
        Some(base) => {
            let Some(base_set) = load_or_report(g, Some(base))? else {
                eprintln!("error: the base revision {base} does not validate");
                return Ok(Exit::Failure);
            };
            let behaviour = if args.replay.is_empty() {
                None
            } else {
                match replay(g, &args.replay, &base_set, &set) {
                    Ok(b) => Some(b),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return Ok(Exit::Failure);
                    }
                }
            };
            let desired = plan::desired(&set);
            drop(set);
            (
                desired,
                plan::desired(&base_set),
                base_set.revision.to_string(),
                daemon_holds(args.url.as_deref()),
                behaviour,
            )
        }
        None => {
            let desired = plan::desired(&set);
            drop(set);
            let dir = state_dir(g);
            let (current, from, holds) = match Store::open_existing(&dir)
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
            };
            (desired, current, from, holds, None)
        }
    };
    let mut plan = plan::diff(&desired, &current, from, to);
    (plan.holds, plan.holds_from) = holds;
    plan.behaviour = behaviour;
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

/// The exit code of a plan that was made: rendering errors of the desired revision on recorded
/// events 4 > sensitive 3 > changes (of the configuration or of the behaviour) 2 > none 0 (an
/// error, 1, never gets here).
fn exit_code(args: &Args, plan: &plan::Plan) -> Exit {
    if let Some(b) = plan.behaviour.as_ref().filter(|b| !b.errors.is_empty()) {
        eprintln!(
            "supportopsd plan: the desired revision fails to render {} action(s) on recorded events (--replay)",
            b.summary.render_errors
        );
        Exit::RenderErrors
    } else if args.fail_on_sensitive && !plan.security_sensitive.is_empty() {
        eprintln!(
            "supportopsd plan: {} security-sensitive change(s) (--fail-on-sensitive)",
            plan.security_sensitive.len()
        );
        Exit::SensitiveChanges
    } else if args.detailed_exitcode
        && (plan.has_changes() || plan.behaviour.as_ref().is_some_and(Behaviour::has_changes))
    {
        Exit::ChangesPresent
    } else {
        Exit::Ok
    }
}

/// Replays the corpora at `paths` against `base` and `desired`: each path a corpus file
/// (`events export`) read line by line, or a folder of the manifests' rule tests whose cases
/// (as the desired revision declares them) count as events.
fn replay(
    g: &GlobalArgs,
    paths: &[PathBuf],
    base: &ManifestSet,
    desired: &ManifestSet,
) -> anyhow::Result<Behaviour> {
    type Records = Box<dyn Iterator<Item = Result<Pending, String>>>;
    let mut corpora = Vec::new();
    let mut streams: Vec<Records> = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        if path.is_dir() {
            let records = test_cases(g, path, desired)?;
            corpora.push((shown, "tests", false));
            streams.push(Box::new(
                records
                    .into_iter()
                    .map(|r| Ok(Pending::Record(Box::new(r)))),
            ));
        } else {
            let file = std::fs::File::open(path)
                .with_context(|| format!("reading the corpus {}", path.display()))?;
            let reader = corpus::Reader::new(std::io::BufReader::with_capacity(1 << 16, file))
                .with_context(|| format!("{}", path.display()))?;
            corpora.push((shown, "corpus", reader.header().scrub_text));
            // Lines, parsed by the replay's workers.
            let mut reader = reader;
            streams.push(Box::new(std::iter::from_fn(move || {
                Some(match reader.next_line()? {
                    Ok((line, text)) => Ok(Pending::Line(line, text)),
                    Err(e) => Err(e.to_string()),
                })
            })));
        }
    }
    let inputs = streams
        .into_iter()
        .enumerate()
        .flat_map(|(corpus, s)| s.map(move |record| (corpus, record)))
        .enumerate()
        .map(|(seq, (corpus, record))| Input {
            seq: seq as u64,
            record,
            corpus,
        });
    let base_commit = match &base.revision {
        Revision::Commit { id, .. } => Some(id.as_str()),
        Revision::WorkTree => None,
    };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    Ok(behaviour::replay(
        base,
        desired,
        &corpora,
        inputs,
        behaviour::Options {
            base_commit,
            workers,
        },
    ))
}

/// The rule test cases under `dir` (the manifests' `tests/` folder or one inside it) as
/// recorded events: the cases the desired revision declares, named `file: case`.
fn test_cases(g: &GlobalArgs, dir: &Path, desired: &ManifestSet) -> anyhow::Result<Vec<Record>> {
    let root = match &g.path {
        Some(p) => g.repo.join(p),
        None => g.repo.clone(),
    };
    let root = root
        .canonicalize()
        .with_context(|| format!("reading {}", root.display()))?;
    let dir_abs = dir
        .canonicalize()
        .with_context(|| format!("reading {}", dir.display()))?;
    let Ok(rel) = dir_abs.strip_prefix(&root) else {
        anyhow::bail!(
            "{} is a folder outside the manifests ({}): --replay takes a corpus file, or the manifests' tests/ folder (or one inside it), whose cases count as events",
            dir.display(),
            root.display()
        );
    };
    let rel = rel.to_string_lossy().replace('\\', "/");
    let under = |file: &str| rel.is_empty() || file == rel || file.starts_with(&format!("{rel}/"));
    let records: Vec<Record> = desired
        .tests
        .iter()
        .filter(|c| under(&c.file))
        .map(|c| Record {
            id: format!("{}: {}", c.file, c.name),
            received_ms: None,
            received_at: None,
            integration: c.integration.to_string(),
            platform: c.platform.as_str().to_owned(),
            event: c.event.name.to_owned(),
            revision: None,
            rules: Vec::new(),
            enrichment_pending: false,
            replaced: None,
            payload: c.payload.clone(),
        })
        .collect();
    if records.is_empty() {
        anyhow::bail!(
            "{} holds no rule test cases of the desired revision (cases are read from the manifests' tests/*.toml)",
            dir.display()
        );
    }
    Ok(records)
}
