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
    /// Time allowed for a request's headers, and then for its whole body (408 beyond); a
    /// connection whose answer can't be written for this long (a client that does not read)
    /// is closed.
    #[arg(long, env = "SUPPORTOPSD_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub read_timeout: std::time::Duration,
    /// Connections served at once.
    #[arg(long, env = "SUPPORTOPSD_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Outbox depth past which webhooks are answered 503 with Retry-After.
    #[arg(long, env = "SUPPORTOPSD_MAX_QUEUE", default_value_t = 100_000)]
    pub max_queue: usize,
    /// How long platform event ids are remembered to drop redeliveries (Freshdesk's window is
    /// 2h, or this if shorter: its ids are body digests).
    #[arg(long, env = "SUPPORTOPSD_DEDUPE_TTL", default_value = "72h", value_parser = duration)]
    pub dedupe_ttl: std::time::Duration,
    /// Actions a rule may perform per minute unless its `[limits] max_actions_per_minute` says
    /// otherwise; beyond it the rule's new jobs are held until a later minute (and
    /// `rule.throttled` is emitted once).
    #[arg(long, env = "SUPPORTOPSD_MAX_ACTIONS_PER_MINUTE", default_value_t = crate::runtime::budget::DEFAULT_MAX_ACTIONS_PER_MINUTE, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_actions_per_minute: u32,
    /// Ceilings of the waits between attempts of a failed action [default: 5s,5m,30m,2h,5h,10h,10h].
    #[arg(long, env = "SUPPORTOPSD_RETRY_SCHEDULE")]
    pub retry_schedule: Option<String>,
    /// Jobs run at once.
    #[arg(long, env = "SUPPORTOPSD_WORKERS", default_value_t = 32)]
    pub workers: usize,
    /// How long audit records are kept.
    #[arg(long, env = "SUPPORTOPSD_AUDIT_RETENTION", default_value = "30d", value_parser = duration)]
    pub audit_retention: std::time::Duration,
    /// How many audit records are kept at most; the oldest beyond are removed (housekeeping).
    #[arg(
        long,
        env = "SUPPORTOPSD_AUDIT_MAX_RECORDS",
        default_value_t = 1_000_000
    )]
    pub audit_max_records: u64,
    /// How long the per-minute counts (events, rule matches, actions by outcome) behind
    /// `status` and GET /api/rollups are kept.
    #[arg(long, env = "SUPPORTOPSD_ROLLUP_RETENTION", default_value = "35d", value_parser = duration)]
    pub rollup_retention: std::time::Duration,
    /// How long stored deliveries (payloads) are kept; a delivery whose job is unfinished or
    /// dead-lettered is kept until that job is done.
    #[arg(long, env = "SUPPORTOPSD_EVENT_RETENTION", default_value = "3d", value_parser = duration)]
    pub event_retention: std::time::Duration,
    /// The state directory's size (payloads, database, journal) that retention keeps under by
    /// dropping the oldest deliveries first (500MB, 20GB, 1TB; KiB/MiB/GiB also accepted).
    #[arg(long, env = "SUPPORTOPSD_MAX_STATE_SIZE", default_value = "20GB", value_parser = byte_size)]
    pub max_state_size: u64,
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
    /// Who may read GET /metrics: `open` (anyone who reaches the listener) or `token` (the read or admin token, like GET /api/*). Its labels name integrations, rules and the applied revision.
    #[arg(
        long,
        env = "SUPPORTOPSD_METRICS_AUTH",
        value_enum,
        default_value = "open"
    )]
    pub metrics_auth: runtime::MetricsAuth,
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    parse_duration(s).ok_or_else(|| format!("invalid duration `{s}` (use 30s, 5m, 2h, 1d)"))
}

/// A size in bytes: a number and a unit (B, KB, MB, GB, TB: powers of 1000; KiB, MiB, GiB,
/// TiB: powers of 1024), e.g. `500MB`, `20GB`.
pub(crate) fn byte_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size `{s}` (use e.g. 500MB, 20GB, 1TB)");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let factor: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        "TB" | "T" => 1_000_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        "TIB" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(factor).ok_or_else(bad)
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

/// The operator API's admin token: `SUPPORTOPSD_ADMIN_TOKEN`, else
/// `$CREDENTIALS_DIRECTORY/admin.token`.
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

/// The operator API's read-only token: `SUPPORTOPSD_READ_TOKEN`, else
/// `$CREDENTIALS_DIRECTORY/read.token`.
pub(crate) fn read_token() -> Option<Secret> {
    env_or_credential("SUPPORTOPSD_READ_TOKEN", "read.token")
}

/// How the placeholder in `systemd/supportopsd.env.example` begins: a token that still does is
/// refused, so that the example never runs with a token everyone can read.
pub const PLACEHOLDER_TOKEN_PREFIX: &str = "CHANGE-ME";

/// How to make a token, for error messages.
const GENERATE: &str = "generate one with `openssl rand -hex 32`";

/// Whether the URL's host is loopback (`localhost` or a loopback address); an unparseable URL
/// is not.
fn loopback_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .is_some_and(|h| daemon::auth::is_loopback_authority(&h))
}

/// The operator API's tokens, checked before anything starts (SEC-05): an admin token is
/// required unless both the listen address and the public URL are loopback (a reverse proxy on
/// the same host would otherwise make every request look local); neither token may be the
/// example's placeholder; the two must differ.
fn check_tokens(
    listen: SocketAddr,
    public_url: Option<&str>,
    admin: Option<&Secret>,
    read: Option<&Secret>,
) -> anyhow::Result<()> {
    for (token, name) in [
        (admin, "SUPPORTOPSD_ADMIN_TOKEN (or admin.token)"),
        (read, "SUPPORTOPSD_READ_TOKEN (or read.token)"),
    ] {
        if token.is_some_and(|t| {
            t.expose()
                .get(..PLACEHOLDER_TOKEN_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(PLACEHOLDER_TOKEN_PREFIX.as_bytes()))
        }) {
            anyhow::bail!(
                "refusing to start: {name} still holds the example's placeholder; {GENERATE} and put it there"
            );
        }
    }
    if let (Some(a), Some(r)) = (admin, read)
        && crate::secrets::constant_time_eq(a.expose(), r.expose())
    {
        anyhow::bail!(
            "refusing to start: the read-only token (SUPPORTOPSD_READ_TOKEN / read.token) is the admin token; give it its own value ({GENERATE})"
        );
    }
    if admin.is_some() {
        return Ok(());
    }
    let exposed = match public_url {
        Some(url) if !loopback_url(url) => Some(format!("--public-url {url} is not loopback")),
        _ if !listen.ip().is_loopback() => Some(format!("--listen {listen} is not loopback")),
        _ => None,
    };
    if let Some(why) = exposed {
        anyhow::bail!(
            "refusing to start without an admin token: {why}, so the operator API can be reached \
             from beyond this machine (a reverse proxy makes every request look local). Set \
             SUPPORTOPSD_ADMIN_TOKEN, or provide $CREDENTIALS_DIRECTORY/admin.token \
             (LoadCredential=admin.token:/etc/supportopsd/admin.token); {GENERATE}"
        );
    }
    Ok(())
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
    options.max_actions_per_minute = args.max_actions_per_minute;
    options.retry = retry;
    options.workers = args.workers;
    options.lease = args.lease;
    options.audit_retention = args.audit_retention;
    options.audit_max_records = args.audit_max_records;
    options.rollup_retention = args.rollup_retention;
    options.event_retention = args.event_retention;
    options.max_state_size = args.max_state_size;
    options.poll_interval = args
        .poll_interval
        .max(std::time::Duration::from_millis(100));
    options.resync_interval = args.resync_interval.max(std::time::Duration::from_secs(1));
    options.watch = !args.no_watch;
    options.policy = policy;
    options.metrics_auth = args.metrics_auth;
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
    options.read_token = read_token();
    check_tokens(
        args.listen,
        args.public_url.as_deref(),
        options.admin_token.as_ref(),
        options.read_token.as_ref(),
    )?;
    options.sync_secret = env_or_credential("SUPPORTOPSD_SYNC_SECRET", "sync.secret");
    if options.admin_token.is_none() {
        tracing::info!(
            "No admin token: the operator API answers requests without a token only from loopback, addressed to a loopback host, and not relayed by a proxy."
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::from(s.to_owned())
    }

    #[test]
    fn sizes_parse_with_their_units_and_bad_ones_are_refused() {
        for (text, bytes) in [
            ("20GB", 20_000_000_000),
            ("500MB", 500_000_000),
            ("500mb", 500_000_000),
            ("1TB", 1_000_000_000_000),
            ("2GiB", 2 << 30),
            ("4096", 4096),
            ("10 KB", 10_000),
        ] {
            assert_eq!(byte_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "GB", "-1GB", "1.5GB", "20XB", "99999999999TB"] {
            let e = byte_size(bad).unwrap_err();
            assert!(e.contains("invalid size") && e.contains("20GB"), "{e}");
        }
    }

    #[test]
    fn an_admin_token_is_required_unless_everything_is_loopback() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        for (listen, url) in [
            (local, None),
            (local, Some("http://127.0.0.1:8080")),
            (local, Some("http://localhost:8080/")),
            (local, Some("http://[::1]:8080")),
        ] {
            assert!(
                check_tokens(listen, url, None, None).is_ok(),
                "{listen} {url:?}"
            );
        }
        for (listen, url) in [
            (local, Some("https://ops.example.com")),
            (local, Some("not a url")),
            (any, None),
            (any, Some("http://127.0.0.1:8080")),
        ] {
            let e = check_tokens(listen, url, None, Some(&secret("r")))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("SUPPORTOPSD_ADMIN_TOKEN") && e.contains("admin.token"),
                "{e}"
            );
            let admin = secret("a-real-token");
            assert!(check_tokens(listen, url, Some(&admin), None).is_ok());
        }
    }

    #[test]
    fn the_placeholder_and_a_shared_token_are_refused() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let placeholder = secret("CHANGE-ME-generate-with-openssl-rand-hex-32");
        let e = check_tokens(local, None, Some(&placeholder), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("placeholder") && e.contains("SUPPORTOPSD_ADMIN_TOKEN"),
            "{e}"
        );
        let e = check_tokens(local, None, Some(&secret("x")), Some(&placeholder))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SUPPORTOPSD_READ_TOKEN"), "{e}");
        let e = check_tokens(local, None, Some(&secret("same")), Some(&secret("same")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("read-only token") && !e.contains("same"), "{e}");
    }
}
