//! The command line: one file per command, each owning its `Args` and a `run` function.
//! Exit codes follow the contract: 0 ok, 1 error, 2 changes present (`plan --detailed-exitcode`)
//! or, for `check-platform`, the probe could not run.

pub mod apply;
pub mod check_platform;
mod ci_output;
pub mod completions;
pub mod demo;
pub mod events;
pub mod explain;
pub mod export;
pub mod fixture;
pub mod history;
pub mod notion;
pub mod pause;
pub mod pin;
pub mod plan;
pub mod redeliver;
pub mod run;
pub mod schema;
pub mod secret;
pub mod state;
pub mod status;
pub mod sync;
pub mod test;
pub mod validate;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::manifest::{self, Loaded, Source};

/// supportopsd: support-operations integrations and rules as code.
#[derive(Debug, Parser)]
#[command(name = "supportopsd", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes. Each also reads `SUPPORTOPSD_<NAME>`.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// The manifest repository.
    #[arg(long, global = true, env = "SUPPORTOPSD_REPO", default_value = ".")]
    pub repo: PathBuf,
    /// Sub-folder of the repository that holds the manifests.
    #[arg(long, global = true, env = "SUPPORTOPSD_PATH")]
    pub path: Option<PathBuf>,
    /// State directory [default: $STATE_DIRECTORY under systemd, else ./.supportopsd].
    #[arg(long, global = true, env = "SUPPORTOPSD_STATE")]
    pub state: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, env = "SUPPORTOPSD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole loop on this machine: the real daemon on examples/repo (or --repo) against
    /// built-in fake platforms on loopback, an event every few seconds, what it did. Ctrl-C
    /// stops it and removes everything it made.
    Demo(demo::Args),
    /// Parse, schema-check and cross-check every manifest and test.
    Validate(validate::Args),
    /// Diff the manifests against the applied state, or against another revision (--base).
    Plan(plan::Args),
    /// Run one reconcile pass now, then exit.
    Apply(apply::Args),
    /// The daemon: serve webhooks and the API, run rules; SIGHUP reloads, SIGTERM stops.
    Run(Box<run::Args>),
    /// Run the rule test cases offline; nothing is sent anywhere.
    Test(test::Args),
    /// Why rules do or do not run on a payload (offline, the keys of a test case): each
    /// condition that failed and the value it saw, disabled rules, the loop guard.
    Explain(explain::Args),
    /// Show a daemon's status: revision, problems per integration, what to register by hand, queue.
    Status(status::Args),
    /// Key management and sealing of secrets.
    #[command(subcommand)]
    Secret(secret::Command),
    /// Stored deliveries: write them as rule tests; dead-lettered jobs: list them, re-queue.
    #[command(subcommand)]
    Events(events::Command),
    /// Notion's verification token: open a window for it, list what arrived, confirm one, reset.
    #[command(subcommand)]
    Notion(notion::Command),
    /// Backups of the state: write one (through the running daemon, or from a stopped
    /// daemon's state), restore one into a new state directory, check one.
    #[command(subcommand)]
    State(state::Command),
    /// Ask a running daemon for a reconcile pass now and wait for it (systemd's ExecReload).
    Sync(sync::Args),
    /// Hold the daemon on one revision during an incident.
    Pin(pin::PinArgs),
    /// Release a pin.
    Unpin(pin::UnpinArgs),
    /// Pause a rule (it matches nothing) or an integration (its actions wait in the queue),
    /// kept across restarts until resumed.
    Pause(pause::PauseArgs),
    /// Resume a paused rule or integration (its queued actions run, or are dropped with
    /// --drop-queued).
    Resume(pause::ResumeArgs),
    /// Probe a real platform account read-only: what matches the connector's assumptions and
    /// what does not (0 all match, 1 some differ, 2 could not run).
    CheckPlatform(check_platform::Args),
    /// Print a JSON Schema (integration, rule, test).
    Schema(schema::Args),
    /// Print shell completions.
    Completions(completions::Args),
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0.
    Ok,
    /// 1: an error, failed validation, failed tests.
    Failure,
    /// 2: `plan --detailed-exitcode` found changes.
    ChangesPresent,
    /// 3: `plan --fail-on-sensitive` found security-sensitive changes.
    SensitiveChanges,
    /// 4: `plan --replay`: the desired revision fails to render actions on recorded events.
    RenderErrors,
    /// 2: `check-platform` could not run its probes (bad configuration, connection or
    /// credentials refused).
    Unchecked,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        match e {
            Exit::Ok => ExitCode::SUCCESS,
            Exit::Failure => ExitCode::from(1),
            Exit::ChangesPresent => ExitCode::from(2),
            Exit::SensitiveChanges => ExitCode::from(3),
            Exit::RenderErrors => ExitCode::from(4),
            Exit::Unchecked => ExitCode::from(2),
        }
    }
}

/// Runs a parsed command line.
/// An error caused by a state held by a running daemon says what to run instead.
pub fn dispatch(cli: Cli) -> anyhow::Result<Exit> {
    let command = &cli.command;
    run_command(&cli).map_err(|e| {
        if state_held(&e) {
            anyhow::anyhow!("{e:#}\nhint: {}", held_advice(command))
        } else {
            e
        }
    })
}

fn run_command(cli: &Cli) -> anyhow::Result<Exit> {
    let g = &cli.global;
    match &cli.command {
        Command::Demo(args) => demo::run(args, g),
        Command::Validate(args) => validate::run(args, g),
        Command::Plan(args) => plan::run(args, g),
        Command::Test(args) => test::run(args, g),
        Command::Explain(args) => explain::run(args, g),
        Command::Secret(cmd) => secret::run(cmd),
        Command::Schema(args) => schema::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Apply(args) => apply::run(args, g),
        Command::Run(args) => run::run(args, g),
        Command::Status(args) => status::run(args, g),
        Command::Events(cmd) => events::run(cmd, g),
        Command::Notion(cmd) => notion::run(cmd),
        Command::Sync(args) => sync::run(args),
        Command::State(cmd) => state::run(cmd, g),
        Command::Pin(args) => pin::pin(args, g),
        Command::Unpin(args) => pin::unpin(args, g),
        Command::Pause(args) => pause::pause(args, g),
        Command::Resume(args) => pause::resume(args, g),
        Command::CheckPlatform(args) => check_platform::run(args, g),
    }
}

/// Initialises logging to stderr.
pub fn init_logging(g: &GlobalArgs) {
    let level = match (i16::from(g.verbose) - i16::from(g.quiet)).clamp(-2, 2) {
        -2 => "error",
        -1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUPPORTOPSD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match g.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

/// Where a running daemon answers (every command that talks to its API).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Target {
    /// A running daemon's address [default: $SUPPORTOPSD_URL, else http:// + $SUPPORTOPSD_LISTEN
    /// (the daemon's own listen address), else http://127.0.0.1:8080].
    #[arg(long)]
    pub url: Option<String>,
}

impl Target {
    /// The daemon's base URL (no trailing `/`): `--url`, else [`daemon_url`]'s defaults.
    pub fn base(&self) -> String {
        daemon_url(self.url.as_deref())
    }
}

/// The listen address `supportopsd run` uses without `--listen` or `$SUPPORTOPSD_LISTEN`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Where the daemon answers: `url`, else `$SUPPORTOPSD_URL`, else [`listen_url`].
pub fn daemon_url(url: Option<&str>) -> String {
    if let Some(u) = url {
        return u.trim_end_matches('/').to_owned();
    }
    match std::env::var("SUPPORTOPSD_URL")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None => listen_url(),
    }
}

/// The URL of the daemon's listen address as `run` reads it: `$SUPPORTOPSD_LISTEN` when it is
/// set (an unspecified address is reached on loopback), else [`DEFAULT_LISTEN`].
pub fn listen_url() -> String {
    let listen = std::env::var("SUPPORTOPSD_LISTEN")
        .ok()
        .filter(|v| !v.is_empty());
    let addr = listen
        .as_deref()
        .and_then(|l| l.parse::<std::net::SocketAddr>().ok());
    let Some(addr) = addr else {
        return format!("http://{DEFAULT_LISTEN}");
    };
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V4(ip) => ip.to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("http://{ip}:{}", addr.port())
}

/// Whether `e` is (or was caused by) the state being held by another process.
fn state_held(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<crate::state::Error>(),
            Some(crate::state::Error::Locked { .. })
        )
    })
}

/// What to run instead when `command` found the state held by a running daemon (sled admits
/// one process at a time, readers included): the same question through the daemon's API, at
/// its listen address — or, when the command already asked there and nothing answered, at the
/// address the daemon was given with `--listen`.
fn held_advice(command: &Command) -> String {
    let listen = listen_url();
    let tried = match command {
        Command::Status(args) => Some(args.target.base()),
        Command::Events(
            events::Command::Dead(t)
            | events::Command::Replay { target: t, .. }
            | events::Command::Fixture(fixture::Args { target: t, .. })
            | events::Command::Export(export::Args { target: t, .. }),
        ) => Some(t.base()),
        Command::Events(events::Command::List(a)) => Some(a.target.base()),
        Command::Events(events::Command::Show(a)) => Some(a.target.base()),
        Command::Events(events::Command::Explain(args)) => Some(args.target.base()),
        Command::Pin(args) => Some(args.target.base()),
        Command::Unpin(args) => Some(args.target.base()),
        Command::Pause(args) => Some(args.target.base()),
        Command::Resume(args) => Some(args.target.base()),
        _ => None,
    };
    let (url, nothing_there) = match tried {
        Some(t) if t == listen => ("http://ADDR".to_owned(), Some(t)),
        _ => (listen, None),
    };
    let through = |cmd: String| match &nothing_there {
        Some(t) => format!(
            "nothing answered at {t}: ask the daemon through its API at the address it listens on (its --listen ADDR): `{cmd}`"
        ),
        None => format!(
            "while the daemon runs, ask it through its API: `{cmd}` (the daemon's listen address, from $SUPPORTOPSD_LISTEN or `run`'s default; with SUPPORTOPSD_LISTEN or SUPPORTOPSD_URL set to it, `--url` can be left out)"
        ),
    };
    match command {
        Command::Plan(_) => plan::held_advice(&url),
        Command::Apply(_) => through(format!("supportopsd sync --url {url}")),
        Command::Run(_) => format!(
            "a daemon already runs on this state: `supportopsd status --url {url}` shows it; stop it before starting another"
        ),
        Command::Events(events::Command::Dead(_)) => {
            through(format!("supportopsd events dead --url {url}"))
        }
        Command::Events(events::Command::List(_)) => {
            through(format!("supportopsd events list --url {url}"))
        }
        Command::Events(events::Command::Show(a)) => {
            through(format!("supportopsd events show {} --url {url}", a.id))
        }
        Command::Events(events::Command::Replay { id: Some(id), .. }) => {
            through(format!("supportopsd events replay {id} --url {url}"))
        }
        Command::Events(events::Command::Replay { integration, .. }) => through(format!(
            "supportopsd events replay --all-dead{} --url {url}",
            integration
                .as_deref()
                .map_or_else(String::new, |i| format!(" --integration {i}"))
        )),
        Command::Events(events::Command::Fixture(args)) => through(format!(
            "supportopsd events fixture {} --to {} --url {url}",
            args.ids.join(" "),
            args.to.display()
        )),
        Command::Events(events::Command::Explain(args)) => through(format!(
            "supportopsd events explain {} --url {url}",
            args.id
        )),
        Command::Events(events::Command::Export(args)) => through(format!(
            "supportopsd events export --out {} --url {url}",
            args.out.display()
        )),
        Command::Pin(args) => through(format!("supportopsd pin {} --url {url}", args.rev)),
        Command::Unpin(_) => through(format!("supportopsd unpin --url {url}")),
        Command::Pause(args) => through(format!(
            "supportopsd pause {} --reason '…' --url {url}",
            args.which.flag()
        )),
        Command::Resume(args) => through(format!(
            "supportopsd resume {}{} --url {url}",
            args.which.flag(),
            if args.drop_queued {
                " --drop-queued"
            } else {
                ""
            }
        )),
        Command::State(state::Command::Backup(args)) => through(format!(
            "supportopsd state backup --to {} --url {url}",
            args.to.display()
        )),
        _ => through(format!("supportopsd status --url {url}")),
    }
}

/// Writes a command's output to stdout. A reader that went away (`supportopsd plan | head`) is
/// not an error: the output is simply not wanted any more (`print!` would panic there).
pub(crate) fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The manifest source the global flags name, at `rev` (working tree when `None`).
fn source(g: &GlobalArgs, rev: Option<&str>) -> Source {
    Source {
        repo: g.repo.clone(),
        subdir: g.path.clone(),
        rev: rev.map(str::to_owned),
    }
}

/// The state directory: `--state`, else `$STATE_DIRECTORY` (systemd), else `./.supportopsd`.
fn state_dir(g: &GlobalArgs) -> PathBuf {
    if let Some(s) = &g.state {
        return s.clone();
    }
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY") {
        // systemd may pass several, separated by ':'; the first is ours.
        if let Some(first) = dir.to_string_lossy().split(':').next()
            && !first.is_empty()
        {
            return PathBuf::from(first);
        }
    }
    PathBuf::from(".supportopsd")
}

/// Loads manifests, printing diagnostics to stderr; `None` when there were errors.
fn load_or_report(
    g: &GlobalArgs,
    rev: Option<&str>,
) -> anyhow::Result<Option<manifest::ManifestSet>> {
    Ok(load_reporting(g, rev)?.0)
}

/// [`load_or_report`], with the number of warnings printed.
fn load_reporting(
    g: &GlobalArgs,
    rev: Option<&str>,
) -> anyhow::Result<(Option<manifest::ManifestSet>, usize)> {
    let Loaded { set, diagnostics } = manifest::load_source(&source(g, rev))?;
    if !diagnostics.is_empty() {
        eprint!("{}", diagnostics.render(&prefix(g)));
    }
    if set.is_none() {
        eprintln!(
            "error: the manifests have {} error(s); fix them first (see `supportopsd validate`)",
            diagnostics.error_count()
        );
    }
    Ok((set, diagnostics.warning_count()))
}

/// Whether a repository holds nothing the daemon would act on: no integration and no rule.
/// Integrations alone are not empty: setting them up before the first rule is a real step.
fn is_empty(set: &manifest::ManifestSet) -> bool {
    set.integrations.is_empty() && set.rules.is_empty()
}

/// Why an empty repository is refused: the folder looked in and how to point elsewhere.
fn empty_message(g: &GlobalArgs, rev: Option<&str>) -> String {
    let mut folder = g.repo.clone();
    if let Some(sub) = &g.path {
        folder.push(sub);
    }
    let shown = std::fs::canonicalize(&folder).unwrap_or(folder);
    let at = rev.map_or_else(String::new, |r| format!(" at revision {r}"));
    format!(
        "no integrations and no rules in {}{at} (looked in its integrations/ and rules/ folders): run supportopsd in the manifest repository, or point it there with --repo PATH (and --path SUBDIR for a folder inside it; or SUPPORTOPSD_REPO, SUPPORTOPSD_PATH); --allow-empty accepts an empty repository",
        shown.display()
    )
}

/// Loads manifests for `test` and `plan`, printing diagnostics to stderr; `None`, after saying
/// why, when there were errors, when `strict` and there were warnings, or when the repository
/// is empty ([`is_empty`]) and `allow_empty` is not set.
fn load_checked(
    g: &GlobalArgs,
    rev: Option<&str>,
    strict: bool,
    allow_empty: bool,
) -> anyhow::Result<Option<manifest::ManifestSet>> {
    let (Some(set), warnings) = load_reporting(g, rev)? else {
        return Ok(None);
    };
    // The warnings were printed above, as warnings; `--strict` makes them fail.
    if strict && warnings > 0 {
        eprintln!("error: {warnings} warning(s), which --strict treats as errors");
        return Ok(None);
    }
    if !allow_empty && is_empty(&set) {
        eprintln!("error: {}", empty_message(g, rev));
        return Ok(None);
    }
    Ok(Some(set))
}

/// One line telling a reviewer what `validate` and `plan` (which run without the host policy)
/// leave to the daemon: the endpoint overrides outside the platforms' own hosts, which the
/// daemon refuses unless its host policy lists them. `None` when there are none.
fn policy_note(set: &manifest::ManifestSet) -> Option<String> {
    let overrides: Vec<String> = set
        .integrations
        .values()
        .flat_map(|i| {
            crate::platforms::connector::overrides(i)
                .into_iter()
                .map(move |(what, host)| {
                    // A custom Freshdesk domain is most likely a CNAME the API does not answer on.
                    let hint = if i.platform == crate::platforms::PlatformKind::Freshdesk
                        && what.contains("domain")
                    {
                        format!(" ({})", crate::platforms::freshdesk::connector::CNAME_HINT)
                    } else {
                        String::new()
                    };
                    format!("{} {what} → {host}{hint}", i.id)
                })
        })
        .collect();
    (!overrides.is_empty()).then(|| {
        format!(
            "note: endpoint overrides are allowed or refused by the daemon's host policy ([endpoints]), which is not checked here: {}",
            overrides.join(", ")
        )
    })
}

/// What diagnostics prefix file names with, so paths are relative to the current directory.
fn prefix(g: &GlobalArgs) -> String {
    let mut p = g.repo.clone();
    if let Some(sub) = &g.path {
        p.push(sub);
    }
    let s = p.to_string_lossy().to_string();
    if s == "." || s.is_empty() {
        String::new()
    } else {
        format!("{}/", s.trim_end_matches('/'))
    }
}

/// Asks a running daemon's operator API; `Ok(None)` when nothing listens at `url`. A `GET`
/// carries the admin token when there is one, else the read-only token
/// (`SUPPORTOPSD_READ_TOKEN` / `read.token`); anything else carries the admin token and
/// `Content-Type: application/json`, which the daemon requires of every change.
fn api_call(
    method: reqwest::Method,
    url: &str,
) -> anyhow::Result<Option<(u16, serde_json::Value)>> {
    api_call_with(method, url, None)
}

/// [`api_call`] with a JSON body.
fn api_call_with(
    method: reqwest::Method,
    url: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<Option<(u16, serde_json::Value)>> {
    let reads = method == reqwest::Method::GET;
    let token = if reads {
        run::admin_token().or_else(run::read_token)
    } else {
        run::admin_token()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = crate::platforms::http::client(std::time::Duration::from_secs(10))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut req = client.request(method, url);
        if let Some(body) = body {
            req = req.json(body);
        } else if !reads {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = token
            && let Ok(token) = token.expose_str()
        {
            req = req.header(reqwest::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or(serde_json::Value::Null);
                Ok(Some((status, body)))
            }
            Err(e) if e.is_connect() => Ok(None),
            Err(e) => Err(anyhow::anyhow!("asking the daemon at {url}: {e}")),
        }
    })
}

/// The error for an answer a command did not expect: the daemon's own message when it gave
/// one, else a hint at the token (`reads`: a read-only token would do).
fn unexpected(base: &str, code: u16, body: &serde_json::Value, reads: bool) -> anyhow::Error {
    let hint = match (code, reads) {
        (401, true) => " (set SUPPORTOPSD_ADMIN_TOKEN or SUPPORTOPSD_READ_TOKEN?)",
        (401 | 403, false) => " (this needs the admin token: set SUPPORTOPSD_ADMIN_TOKEN?)",
        _ => "",
    };
    match body.get("error").and_then(serde_json::Value::as_str) {
        Some(message) => anyhow::anyhow!("the daemon at {base} answered {code}: {message}"),
        None => anyhow::anyhow!("the daemon at {base} answered {code}{hint}"),
    }
}
