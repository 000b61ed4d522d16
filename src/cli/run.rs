//! `supportopsd run`: the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use super::{Exit, GlobalArgs, state_dir};
use crate::daemon;
use crate::policy::{Policy, SYSTEM_POLICY_PATH};
use crate::runtime::retry::{RetryPolicy, parse_duration};
use crate::runtime::{self, Options};
use crate::secrets::{SealKey, Secret};

/// Serve webhooks, run rules, reload on SIGHUP, stop on SIGTERM.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "SUPPORTOPSD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The URL the platforms reach this daemon at [default: http://LISTEN].
    #[arg(long, env = "SUPPORTOPSD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The revision of the repository to run.
    #[arg(long, env = "SUPPORTOPSD_REV", default_value = "HEAD")]
    pub rev: String,
    /// The sealing key file [default: $SUPPORTOPSD_KEY_FILE, then $CREDENTIALS_DIRECTORY/supportopsd.key].
    #[arg(long, env = "SUPPORTOPSD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Largest webhook body, in bytes.
    #[arg(long, env = "SUPPORTOPSD_MAX_BODY", default_value_t = 1024 * 1024)]
    pub max_body: usize,
    /// Time allowed for a request's headers, and then for its body.
    #[arg(long, env = "SUPPORTOPSD_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub read_timeout: std::time::Duration,
    /// Connections served at once.
    #[arg(long, env = "SUPPORTOPSD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Outbox depth past which webhooks are answered 503 with Retry-After.
    #[arg(long, env = "SUPPORTOPSD_MAX_QUEUE", default_value_t = 100_000)]
    pub max_queue: usize,
    /// How long platform event ids are remembered to drop redeliveries.
    #[arg(long, env = "SUPPORTOPSD_DEDUPE_TTL", default_value = "72h", value_parser = duration)]
    pub dedupe_ttl: std::time::Duration,
    /// Ceilings of the waits between attempts of a failed action [default: 5s,5m,30m,2h,5h,10h,10h].
    #[arg(long, env = "SUPPORTOPSD_RETRY_SCHEDULE")]
    pub retry_schedule: Option<String>,
    /// Jobs run at once.
    #[arg(long, env = "SUPPORTOPSD_WORKERS", default_value_t = 32)]
    pub workers: usize,
    /// How long audit records are kept.
    #[arg(long, env = "SUPPORTOPSD_AUDIT_RETENTION", default_value = "30d", value_parser = duration)]
    pub audit_retention: std::time::Duration,
    /// How long a job in flight stays reserved; after a crash it runs again once this passes.
    #[arg(long, env = "SUPPORTOPSD_LEASE", default_value = "2m", value_parser = duration)]
    pub lease: std::time::Duration,
    /// How often the repository is polled for a new commit (beside the file watcher).
    #[arg(long, env = "SUPPORTOPSD_POLL_INTERVAL", default_value = "30s", value_parser = duration)]
    pub poll_interval: std::time::Duration,
    /// How often live state is re-checked: drift repaired, registrations renewed, connections checked.
    #[arg(long, env = "SUPPORTOPSD_RESYNC_INTERVAL", default_value = "5m", value_parser = duration)]
    pub resync_interval: std::time::Duration,
    /// Follow a remote repository: cloned into the state directory and fetched every
    /// --poll-interval (and on SIGHUP and POST /api/sync) with the system's git; --repo is then
    /// not used. HTTPS credentials (`user:token`) from $SUPPORTOPSD_REMOTE_CREDENTIALS or
    /// $CREDENTIALS_DIRECTORY/remote.credentials.
    #[arg(long, env = "SUPPORTOPSD_REMOTE")]
    pub remote: Option<String>,
    /// The branch to follow (with --remote, or in --repo instead of --rev).
    #[arg(long, env = "SUPPORTOPSD_BRANCH")]
    pub branch: Option<String>,
    /// Do not watch the repository for new commits (poll only).
    #[arg(long, env = "SUPPORTOPSD_NO_WATCH")]
    pub no_watch: bool,
    /// The host policy: which hosts endpoint overrides may name, which secrets each integration may reference [default: $CREDENTIALS_DIRECTORY/policy.toml, then /etc/supportopsd/policy.toml; none found: no override honoured].
    #[arg(long, env = "SUPPORTOPSD_POLICY")]
    pub policy: Option<PathBuf>,
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    parse_duration(s).ok_or_else(|| format!("invalid duration `{s}` (use 30s, 5m, 2h, 1d)"))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A secret from the environment variable `var`, else the file `$CREDENTIALS_DIRECTORY/file`.
pub(crate) fn env_or_credential(var: &str, file: &str) -> Option<Secret> {
    if let Some(t) = env(var).filter(|t| !t.is_empty()) {
        return Some(Secret::from(t));
    }
    let dir = env("CREDENTIALS_DIRECTORY")?;
    let text = std::fs::read_to_string(PathBuf::from(dir).join(file)).ok()?;
    let t = text.trim().to_owned();
    (!t.is_empty()).then(|| Secret::from(t))
}

/// The operator API token: `SUPPORTOPSD_ADMIN_TOKEN`, else `$CREDENTIALS_DIRECTORY/admin.token`.
pub(crate) fn admin_token() -> Option<Secret> {
    env_or_credential("SUPPORTOPSD_ADMIN_TOKEN", "admin.token")
}

/// The host policy: `--policy`, else `$CREDENTIALS_DIRECTORY/policy.toml`, else
/// `/etc/supportopsd/policy.toml`, else none. A file that is named or found but cannot be read
/// or parsed stops the command.
pub(crate) fn load_policy(explicit: Option<&std::path::Path>) -> anyhow::Result<Arc<Policy>> {
    let policy = Policy::locate(explicit, &env, std::path::Path::new(SYSTEM_POLICY_PATH))?;
    tracing::info!(policy = %policy.describe(), "Host policy loaded.");
    Ok(Arc::new(policy))
}

/// The sealing key, when one is found (logged either way).
pub(crate) fn load_key(file: Option<&std::path::Path>) -> Option<SealKey> {
    match SealKey::load(file, &env) {
        Ok((key, from)) => {
            tracing::info!(key = %from.display(), "Sealing key loaded.");
            Some(key)
        }
        Err(e) => {
            tracing::warn!(error = %e, "No sealing key: sealed credentials cannot be used, and secrets learned at registration or verification cannot be kept.");
            None
        }
    }
}

/// Runs the daemon.
pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let retry = match &args.retry_schedule {
        Some(s) => RetryPolicy::parse(s)?,
        None => RetryPolicy::default(),
    };
    let policy = load_policy(args.policy.as_deref())?;
    let key = load_key(args.key_file.as_deref());
    // Without --public-url, the address actually bound (known once listening) is used.
    let public_url = args.public_url.clone().unwrap_or_default();
    let mut options = Options::new(args.listen, public_url, g.repo.clone(), state_dir(g));
    options.subdir = g.path.clone();
    options.rev = args.rev.clone();
    options.max_body = args.max_body;
    options.read_timeout = args.read_timeout;
    options.max_connections = args.max_connections;
    options.max_queue = args.max_queue;
    options.dedupe_ttl = args.dedupe_ttl;
    options.retry = retry;
    options.workers = args.workers;
    options.lease = args.lease;
    options.audit_retention = args.audit_retention;
    options.poll_interval = args
        .poll_interval
        .max(std::time::Duration::from_millis(100));
    options.resync_interval = args.resync_interval.max(std::time::Duration::from_secs(1));
    options.watch = !args.no_watch;
    options.policy = policy;
    if let Some(branch) = &args.branch {
        options.rev = format!("refs/heads/{branch}");
    }
    if let Some(url) = &args.remote {
        let remote = crate::runtime::remote::Remote {
            url: url.clone(),
            branch: args.branch.clone().unwrap_or_else(|| "main".to_owned()),
            dir: options.state.join("repo.git"),
            credentials: env_or_credential("SUPPORTOPSD_REMOTE_CREDENTIALS", "remote.credentials"),
        };
        options.repo = remote.dir.clone();
        options.rev = remote.rev();
        options.remote = Some(remote);
    }
    options.admin_token = admin_token();
    options.sync_secret = env_or_credential("SUPPORTOPSD_SYNC_SECRET", "sync.secret");
    if options.admin_token.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!("No admin token: the operator API answers loopback clients only.");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .with_context(|| format!("listening on {}", options.listen))?;
        let addr = listener.local_addr()?;
        let mut options = options;
        if options.public_url.is_empty() {
            options.public_url = format!("http://{addr}");
        }
        let rt = runtime::open(options, key).context("opening the state")?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
        spawn_signals(shutdown.clone(), reload_tx)?;
        // A stable line for scripts and tests: where the daemon listens.
        println!("supportopsd listening on {addr}");
        tracing::info!(%addr, "Listening.");
        daemon::run(rt, listener, shutdown, reload_rx).await
    })?;
    Ok(Exit::Ok)
}

#[cfg(unix)]
fn spawn_signals(
    shutdown: tokio_util::sync::CancellationToken,
    reload: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: draining."); crate::telemetry::systemd::stopping(); shutdown.cancel(); break; }
                _ = int.recv() => { tracing::info!("SIGINT: draining."); crate::telemetry::systemd::stopping(); shutdown.cancel(); break; }
                _ = hup.recv() => { tracing::info!("SIGHUP: reloading."); let _ = reload.try_send(()); }
            }
        }
    });
    Ok(())
}
