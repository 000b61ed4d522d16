//! `supportopsd demo`: the whole loop on one machine. Starts the built-in fake platforms on
//! loopback (`platforms::*::fake`), copies the manifest repository (`examples/repo`, or
//! `--repo`) into a temporary directory (mode 0700) with every integration pointed at its fake
//! and its credentials generated, and runs the real daemon on it — this same executable's
//! `run`, as a child process, under a host policy allowing only the fakes' addresses, with a
//! generated sealing key, admin token and state in that directory. The daemon does not know it
//! is a demo. Then it plays the platforms' side — an event every few seconds, delivered the
//! way each platform delivers it (through the registrations the daemon made, signed as the
//! platform signs) — with an injected 429 and an injected failure, and prints what happened
//! as read back from the daemon's operator API and the fakes' request logs. SIGINT or SIGTERM
//! stops the daemon and the fakes and removes the temporary directory.
//!
//! This is the only module outside test code that may name the fakes (`tests/layers.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{Exit, GlobalArgs};
use crate::platforms::fakekit::Recorded;
use crate::platforms::freshdesk::fake::{self as fd, FakeFreshdesk};
use crate::platforms::google_sheets::fake::{self as gs, FakeGoogle};
use crate::platforms::notion::fake::{self as nt, FakeNotion};
use crate::platforms::slack::fake::{self as sl, FakeSlack};
use crate::platforms::supportopsd::events::rfc3339_ms;
use crate::platforms::trello::fake::{self as tr, FakeTrello};
use crate::platforms::zendesk::fake::{self as zd, FakeZendesk};
use crate::secrets::{SealKey, random_hex};

/// `supportopsd demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the daemon listens (loopback only).
    #[arg(long, default_value = super::DEFAULT_LISTEN)]
    pub listen: String,
    /// Seconds between two events.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub every: u64,
}

/// The repository the demo runs when `--repo` is not given: `examples/repo` under the
/// working directory (a clone of supportopsd).
const EXAMPLES: &str = "examples/repo";

pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let repo = pick_repo(&g.repo)?;
    let listen: std::net::SocketAddr = args.listen.parse().map_err(|_| {
        anyhow!(
            "--listen {}: not an address (ip:port, e.g. 127.0.0.1:8080)",
            args.listen
        )
    })?;
    if !listen.ip().is_loopback() {
        bail!(
            "--listen {listen}: the demo listens on loopback only (e.g. 127.0.0.1:{})",
            listen.port()
        );
    }
    // A taken port is found here, with a clear message, rather than in the daemon's log.
    match std::net::TcpListener::bind(listen) {
        Ok(probe) => drop(probe),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "--listen {listen}: the address is in use (another supportopsd?); pick a free port with --listen 127.0.0.1:PORT"
        ),
        Err(e) => bail!("--listen {listen}: cannot listen there: {e}"),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let scratch = Scratch::create()?;
    let result = rt.block_on(demo(args, &repo, listen, &scratch));
    drop(scratch);
    result
}

/// The manifest repository: `--repo` when given, else `examples/repo`.
fn pick_repo(given: &Path) -> anyhow::Result<PathBuf> {
    let repo = if given == Path::new(".") && !Path::new("integrations").is_dir() {
        PathBuf::from(EXAMPLES)
    } else {
        given.to_path_buf()
    };
    if !repo.join("integrations").is_dir() {
        if repo == Path::new(EXAMPLES) {
            bail!(
                "no manifest repository here: run the demo from a clone of supportopsd (it runs {EXAMPLES}), or name one with --repo DIR"
            );
        }
        bail!(
            "--repo {}: not a manifest repository (it has no integrations/ folder)",
            repo.display()
        );
    }
    Ok(repo)
}

/// The temporary directory (mode 0700): the repository copy, the state, the key, the policy,
/// the daemon's log. Removed when dropped.
#[derive(Debug)]
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn create() -> anyhow::Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt as _;
        let random = random_hex(8).map_err(|e| anyhow!("random: {e}"))?;
        let path =
            std::env::temp_dir().join(format!("supportopsd-demo-{}-{random}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A random secret for a credential.
fn secret(prefix: &str) -> anyhow::Result<String> {
    let random = random_hex(16).map_err(|e| anyhow!("random: {e}"))?;
    Ok(format!("{prefix}{random}"))
}

/// The generated credentials, one set per platform (every integration of a platform talks to
/// the same fake).
#[derive(Debug)]
struct Creds {
    fd_key: String,
    fd_webhook: String,
    zd_email: String,
    zd_token: String,
    slack_bot: String,
    slack_signing: String,
    trello_key: String,
    trello_token: String,
    trello_secret: String,
    notion_token: String,
}

/// The fakes, one per platform.
struct Fakes {
    freshdesk: FakeFreshdesk,
    zendesk: FakeZendesk,
    slack: FakeSlack,
    trello: FakeTrello,
    notion: FakeNotion,
    google: FakeGoogle,
    /// The Zendesk end user who writes in (a ticket by our own agent would be our own change,
    /// which the loop guard drops).
    customer: u64,
}

impl std::fmt::Debug for Fakes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fakes")
    }
}

impl Fakes {
    async fn start(c: &Creds) -> anyhow::Result<Fakes> {
        let bind = |what: &str| format!("starting the fake {what} on loopback");
        let google = FakeGoogle::try_start().await.context(bind("Google"))?;
        google.set_rows("Solved", vec![vec![json!("Ticket"), json!("Subject")]]);
        let zendesk = FakeZendesk::try_start(&c.zd_email, &c.zd_token, None)
            .await
            .context(bind("Zendesk"))?;
        let customer = zendesk.add_user("Priya Raman", "priya.raman@example.com");
        Ok(Fakes {
            freshdesk: FakeFreshdesk::try_start(&c.fd_key)
                .await
                .context(bind("Freshdesk"))?,
            zendesk,
            slack: FakeSlack::try_start(&c.slack_bot, None)
                .await
                .context(bind("Slack"))?,
            trello: FakeTrello::try_start(&c.trello_key, &c.trello_token, &c.trello_secret)
                .await
                .context(bind("Trello"))?,
            notion: FakeNotion::try_start(&c.notion_token)
                .await
                .context(bind("Notion"))?,
            google,
            customer,
        })
    }

    /// Each fake's name and its request log.
    fn logs(&self) -> [(&'static str, Vec<Recorded>); 6] {
        [
            ("freshdesk", self.freshdesk.requests()),
            ("zendesk", self.zendesk.requests()),
            (
                "slack",
                self.slack.requests().iter().map(slack_recorded).collect(),
            ),
            ("trello", self.trello.requests()),
            ("notion", self.notion.requests()),
            ("google_sheets", self.google.requests()),
        ]
    }

    /// The fakes' addresses (for the host policy).
    fn origins(&self) -> Vec<String> {
        [
            self.freshdesk.base_url(),
            self.zendesk.base_url(),
            self.slack.base_url(),
            self.trello.base_url(),
            self.notion.base_url(),
            self.google.base_url(),
        ]
        .iter()
        .map(|u| {
            u.trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
    }
}

/// The Slack fake's own record as the kit's (method, path, body).
fn slack_recorded(r: &sl::Recorded) -> Recorded {
    Recorded {
        method: r.method.clone(),
        path: r.path.clone(),
        query: Vec::new(),
        headers: r.headers.clone(),
        body: bytes::Bytes::from(r.body.clone()),
    }
}

/// Reads `repo/integrations/*.toml` (as TOML tables, by file name).
fn read_integrations(repo: &Path) -> anyhow::Result<BTreeMap<String, toml::Table>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(repo.join("integrations"))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| anyhow!("{}: not a valid manifest: {}", path.display(), e.message()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.insert(name, table);
    }
    Ok(out)
}

fn platform_of(t: &toml::Table) -> &str {
    t.get("platform")
        .and_then(toml::Value::as_str)
        .unwrap_or("")
}

fn literal<'a>(t: &'a toml::Table, table: &str, field: &str) -> Option<&'a str> {
    t.get(table)?.get(field)?.as_str()
}

/// The generated credentials; the literal ones the manifests fix (Zendesk's email, Trello's
/// public key) are kept.
fn generate(integrations: &BTreeMap<String, toml::Table>) -> anyhow::Result<Creds> {
    let first = |platform: &str, field: &str| {
        integrations
            .values()
            .filter(|t| platform_of(t) == platform)
            .find_map(|t| literal(t, "credentials", field).map(str::to_owned))
    };
    Ok(Creds {
        fd_key: secret("fd-demo-")?,
        fd_webhook: secret("fd-hook-")?,
        zd_email: first("zendesk", "email").unwrap_or_else(|| "ops@acme.example".to_owned()),
        zd_token: secret("zd-demo-")?,
        slack_bot: secret("xoxb-demo-")?,
        slack_signing: secret("")?,
        trello_key: match first("trello", "api_key") {
            Some(k) => k,
            None => secret("")?,
        },
        trello_token: secret("trello-demo-")?,
        trello_secret: secret("")?,
        notion_token: secret("ntn_demo_")?,
    })
}

/// The value of credential `field` of a `platform` integration (`None`: keep what the
/// manifest says).
fn credential(c: &Creds, platform: &str, field: &str, google_key: &str) -> Option<String> {
    Some(match (platform, field) {
        ("freshdesk", "api_key") => c.fd_key.clone(),
        ("zendesk", "api_token") => c.zd_token.clone(),
        ("slack", "bot_token") => c.slack_bot.clone(),
        ("slack", "signing_secret") => c.slack_signing.clone(),
        ("trello", "api_key") => c.trello_key.clone(),
        ("trello", "token") => c.trello_token.clone(),
        ("trello", "app_secret") => c.trello_secret.clone(),
        ("notion", "token") => c.notion_token.clone(),
        ("google_sheets", "service_account_key") => google_key.to_owned(),
        _ => return None,
    })
}

/// The environment variable the copy names for a credential: the manifest's own `env` name,
/// else one made up from the integration and field.
fn env_name(id: &str, field: &str, value: &toml::Value) -> String {
    match value.get("env").and_then(toml::Value::as_str) {
        Some(name) => name.to_owned(),
        None => format!("DEMO_{id}_{field}")
            .to_ascii_uppercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
    }
}

/// Rewrites one integration for the fakes: its endpoint, its credentials (each secret a
/// generated value in an environment variable), the ids the fake world has. Returns the
/// environment it needs.
fn point_at_fakes(
    t: &mut toml::Table,
    creds: &Creds,
    fakes: &Fakes,
    google_key: &str,
) -> Vec<(String, String)> {
    let platform = platform_of(t).to_owned();
    let id = t
        .get("id")
        .and_then(toml::Value::as_str)
        .unwrap_or("")
        .to_owned();
    let base = match platform.as_str() {
        "freshdesk" => fakes.freshdesk.base_url(),
        "zendesk" => fakes.zendesk.base_url(),
        "slack" => fakes.slack.base_url(),
        "trello" => fakes.trello.base_url(),
        "notion" => fakes.notion.base_url(),
        "google_sheets" => fakes.google.base_url(),
        _ => return Vec::new(),
    };
    let mut env = Vec::new();
    let mut endpoint = toml::Table::new();
    endpoint.insert("base_url".into(), toml::Value::String(base));
    t.insert("endpoint".into(), toml::Value::Table(endpoint));
    if let Some(toml::Value::Table(c)) = t.get_mut("credentials") {
        for (field, value) in c.iter_mut() {
            let Some(generated) = credential(creds, &platform, field, google_key) else {
                continue;
            };
            if value.is_str() && platform == "trello" {
                continue; // Trello's public key: the fake was started with it
            }
            let name = env_name(&id, field, value);
            let mut r = toml::Table::new();
            r.insert("env".into(), toml::Value::String(name.clone()));
            *value = toml::Value::Table(r);
            env.push((name, generated));
        }
        match platform.as_str() {
            "zendesk" => {
                c.insert("email".into(), toml::Value::String(creds.zd_email.clone()));
            }
            "google_sheets" => {
                c.insert(
                    "spreadsheet_id".into(),
                    toml::Value::String(gs::SPREADSHEET_ID.into()),
                );
            }
            _ => {}
        }
    }
    if let Some(toml::Value::Table(w)) = t.get_mut("webhook")
        && let Some(value) = w.get_mut("secret")
    {
        let name = env_name(&id, "webhook_secret", value);
        let mut r = toml::Table::new();
        r.insert("env".into(), toml::Value::String(name.clone()));
        *value = toml::Value::Table(r);
        let generated = if platform == "freshdesk" {
            creds.fd_webhook.clone()
        } else {
            creds.slack_signing.clone()
        };
        env.push((name, generated));
    }
    let config = t
        .entry("config")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(config) = config {
        match platform.as_str() {
            "freshdesk" if config.contains_key("default_group_id") => {
                config.insert(
                    "default_group_id".into(),
                    toml::Value::Integer(fd::GROUPS[0]),
                );
            }
            "notion" => {
                config.insert(
                    "default_parent_page".into(),
                    toml::Value::String(nt::PARENT_PAGE.into()),
                );
            }
            "google_sheets" => {
                // Rows are found by polling: every 5 s here, so the demo shows them.
                config.insert("poll_interval_seconds".into(), toml::Value::Integer(5));
                config.insert("push_notifications".into(), toml::Value::Boolean(false));
            }
            _ => {}
        }
    }
    env
}

/// The Slack channels the rules name by `#name` (`channel = "#urgent-tickets"`): the fake
/// workspace gets them, as the real one has them.
fn rule_channels(repo: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(dir) = std::fs::read_dir(repo.join("rules")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(rule) = toml::from_str::<toml::Table>(&text) else {
            continue;
        };
        for action in rule
            .get("actions")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = action
                .get("parameters")
                .and_then(|p| p.get("channel"))
                .and_then(toml::Value::as_str)
                .and_then(|c| c.strip_prefix('#'))
                .filter(|c| !c.contains("{{"))
            {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// Copies `from` into `to` (without `.git`), then writes the rewritten integrations over it and
/// commits the copy.
fn write_copy(
    from: &Path,
    to: &Path,
    integrations: &BTreeMap<String, toml::Table>,
) -> anyhow::Result<()> {
    copy_dir(from, to)?;
    for (name, table) in integrations {
        let text = toml::to_string(table).map_err(|e| anyhow!("writing {name}: {e}"))?;
        std::fs::write(to.join("integrations").join(name), text)?;
    }
    let repo = git2::Repository::init(to)?;
    let mut index = repo.index()?;
    index.add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)?;
    index.write()?;
    let tree = repo.find_tree(index.write_tree()?)?;
    let sig = git2::Signature::now("supportopsd demo", "demo@supportopsd.invalid")?;
    repo.commit(
        Some("HEAD"),
        &sig,
        &sig,
        "the demo's copy, pointed at the fakes",
        &tree,
        &[],
    )?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        if entry.file_name() == ".git" || entry.file_name() == ".supportopsd" {
            continue;
        }
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// The running daemon.
#[derive(Debug)]
struct Daemon {
    child: Child,
    url: String,
    token: String,
    /// The read-only token (printed for the console's read-only view).
    read_token: String,
    http: reqwest::Client,
    log: PathBuf,
}

impl Daemon {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("GET {path}: {status} {v}");
        }
        Ok(v)
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path}: {status} {v}");
        }
        Ok(v)
    }

    async fn metrics(&self) -> String {
        match self
            .http
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The last lines of the daemon's log (for an error).
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 10 s.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

async fn demo(
    args: &Args,
    repo: &Path,
    listen: std::net::SocketAddr,
    scratch: &Scratch,
) -> anyhow::Result<Exit> {
    let mut integrations = read_integrations(repo)?;
    let creds = generate(&integrations)?;
    let fakes = Fakes::start(&creds).await?;
    let google_key = gs::key_json("https://oauth2.googleapis.com/token");
    let mut env = Vec::new();
    for table in integrations.values_mut() {
        env.extend(point_at_fakes(table, &creds, &fakes, &google_key));
    }
    for channel in rule_channels(repo) {
        fakes.slack.add_channel(&channel);
    }
    let copy = scratch.path.join("repo");
    write_copy(repo, &copy, &integrations)?;
    let policy = scratch.path.join("policy.toml");
    std::fs::write(
        &policy,
        crate::platforms::fakekit::loopback_policy(&fakes.origins()),
    )?;
    let key = scratch.path.join("sealing.key");
    let sealing = SealKey::generate().map_err(|e| anyhow!("a sealing key: {e}"))?;
    write_private(&key, sealing.to_base64().as_bytes())?;
    let token = secret("demo-admin-")?;
    let read_token = secret("demo-read-")?;
    let log = scratch.path.join("daemon.log");
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut child = Command::new(exe)
        .arg("--repo")
        .arg(&copy)
        .arg("--state")
        .arg(scratch.path.join("state"))
        .arg("run")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--policy")
        .arg(&policy)
        .env_remove("SUPPORTOPSD_POLICY")
        .env_remove("SUPPORTOPSD_PATH")
        .env_remove("SUPPORTOPSD_PUBLIC_URL")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("STATE_DIRECTORY")
        .env_remove("NOTIFY_SOCKET")
        .env("SUPPORTOPSD_KEY_FILE", &key)
        .env("SUPPORTOPSD_ADMIN_TOKEN", &token)
        .env("SUPPORTOPSD_READ_TOKEN", &read_token)
        .env("SUPPORTOPSD_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&log)?))
        .kill_on_drop(true)
        .spawn()
        .context("starting the daemon")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("the daemon's output"))?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    let addr = match first {
        Ok(Ok(Some(line))) => line
            .strip_prefix("supportopsd listening on ")
            .map(str::to_owned),
        _ => None,
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let http = crate::platforms::http::client(Duration::from_secs(10))
        .map_err(|e| anyhow!("an HTTP client: {e}"))?;
    let daemon = Daemon {
        child,
        url: format!("http://{}", addr.as_deref().unwrap_or("")),
        token,
        read_token,
        http,
        log,
    };
    if addr.is_none() {
        let tail = daemon.log_tail();
        daemon.stop().await;
        bail!("the daemon did not start:\n{tail}");
    }
    let outcome = tokio::select! {
        r = show(args, &daemon, &fakes, &creds) => r,
        () = stopped() => Ok(()),
    };
    println!(
        "\nstopping: the daemon, the fakes, and {}",
        scratch.path.display()
    );
    let tail = outcome.as_ref().err().map(|_| daemon.log_tail());
    daemon.stop().await;
    drop(fakes);
    match outcome {
        Ok(()) => Ok(Exit::Ok),
        Err(e) => Err(anyhow!(
            "{e:#}\nthe daemon's last log lines:\n{}",
            tail.unwrap_or_default()
        )),
    }
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    Ok(())
}

/// Until SIGINT or SIGTERM.
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// What the demo has printed so far.
#[derive(Debug, Default)]
struct Seen {
    /// Requests of each fake already shown.
    requests: HashMap<&'static str, usize>,
    /// Deliveries already shown.
    events: HashSet<String>,
    /// Each job's last state shown.
    jobs: HashMap<u64, String>,
}

/// Waits until the daemon is ready, prints how to reach it, then plays the platforms.
async fn show(args: &Args, daemon: &Daemon, fakes: &Fakes, creds: &Creds) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = daemon
            .http
            .get(format!("{}/readyz", daemon.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        // A repository the daemon refuses stays refused: say why now, not after a minute.
        let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("No valid revision to start with"))
        {
            bail!(
                "the daemon refused the manifests (fix them, `supportopsd validate` shows every problem):\n{line}"
            );
        }
        if tokio::time::Instant::now() > deadline {
            let status = daemon.get("/api/status").await.unwrap_or(Value::Null);
            bail!(
                "the daemon did not apply the manifests within 60 s: {}",
                status.get("problems").unwrap_or(&status)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let url = &daemon.url;
    println!("supportopsd demo: the real daemon on {url}, six fake platforms on loopback");
    println!("  console:         {url}/ui/  (sign in with one of these tokens)");
    println!(
        "  operator token:  SUPPORTOPSD_ADMIN_TOKEN={}",
        daemon.token
    );
    println!(
        "  read-only token: SUPPORTOPSD_READ_TOKEN={}",
        daemon.read_token
    );
    println!("  try (in another terminal, with that token exported):");
    println!("    supportopsd status --url {url}");
    println!("    supportopsd events list --url {url}");
    println!("    curl -s {url}/metrics | grep supportopsd_actions_total");
    println!("  Ctrl-C stops the daemon and the fakes and removes the temporary directory.");
    println!();
    let mut seen = Seen::default();
    // The registrations the daemon made at start.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !registered(fakes) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("registrations the daemon made on the fakes:");
    for (kind, hook) in registrations(fakes) {
        println!("  {kind:<10} {hook}");
    }
    // The requests that made them are what the list above shows: not shown again.
    for (name, log) in fakes.logs() {
        seen.requests.insert(name, log.len());
    }
    observe(daemon, fakes, &mut seen).await;
    let notion = notion_subscription(daemon, fakes).await?;
    let slack = integration_of(daemon, "slack").await;
    observe(daemon, fakes, &mut seen).await;
    let every = Duration::from_secs(args.every);
    let mut cycle = 0u64;
    loop {
        cycle += 1;
        for step in 0..STEPS {
            let what = play(
                step,
                cycle,
                daemon,
                fakes,
                creds,
                (slack.as_deref(), notion.as_deref()),
            )
            .await;
            println!("\n▶ {what}");
            let until = tokio::time::Instant::now() + every;
            while tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(500)).await;
                observe(daemon, fakes, &mut seen).await;
            }
        }
        summary(daemon).await;
    }
}

fn registered(f: &Fakes) -> bool {
    !f.zendesk.webhooks().is_empty()
        && !f.freshdesk.rules().is_empty()
        && !f.trello.webhooks().is_empty()
}

fn registrations(f: &Fakes) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for w in f.zendesk.webhooks() {
        out.push((
            "zendesk",
            format!(
                "webhook {} → {}",
                w["id"],
                w["endpoint"].as_str().unwrap_or("")
            ),
        ));
    }
    for t in f.zendesk.triggers() {
        out.push((
            "zendesk",
            format!(
                "trigger {} “{}”",
                t["id"],
                t["title"].as_str().unwrap_or("")
            ),
        ));
    }
    for (ty, r) in f.freshdesk.rules() {
        out.push((
            "freshdesk",
            format!(
                "automation rule {} (type {ty}) “{}”",
                r["id"],
                r["name"].as_str().unwrap_or("")
            ),
        ));
    }
    for w in f.trello.webhooks() {
        out.push((
            "trello",
            format!(
                "webhook {} on board {} → {}",
                w.id, w.id_model, w.callback_url
            ),
        ));
    }
    out
}

/// The id of the first integration of `platform` the daemon runs (`GET /api/status`).
async fn integration_of(daemon: &Daemon, platform: &str) -> Option<String> {
    let status = daemon.get("/api/status").await.ok()?;
    status["integrations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["platform"] == platform)
        .and_then(|i| i["id"].as_str())
        .map(str::to_owned)
}

/// Plays the operator's part of Notion's webhook set-up (SEC-04): opens a verification window,
/// creates the subscription at the fake, confirms the token the daemon received. The
/// subscription's id, `None` when the repository has no Notion integration.
async fn notion_subscription(daemon: &Daemon, f: &Fakes) -> anyhow::Result<Option<String>> {
    let Some(id) = integration_of(daemon, "notion").await else {
        return Ok(None);
    };
    println!("notion     the operator's part (Notion has no API for subscriptions):");
    daemon
        .post(
            &format!("/api/integrations/{id}/notion/expect-verification"),
            json!({}),
        )
        .await?;
    let url = format!("{}/api/webhooks/notion/{id}", daemon.url);
    let (sub, _) = f
        .notion
        .create_subscription(&url, &["page.created"], "2025-09-03")
        .await;
    let status = daemon.get("/api/status").await?;
    let token_id = status["verification_tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["integration"] == id.as_str())
        .and_then(|p| p["tokens"][0]["token_id"].as_u64())
        .ok_or_else(|| anyhow!("the daemon kept no Notion verification token"))?;
    daemon
        .post(
            &format!("/api/integrations/{id}/notion/confirm-verification"),
            json!({ "token_id": token_id }),
        )
        .await?;
    let token = f
        .notion
        .subscriptions()
        .into_iter()
        .find(|s| s.id == sub)
        .map(|s| s.token)
        .unwrap_or_default();
    f.notion.verify_subscription(&sub, &token);
    println!(
        "             subscription {sub} → {url}: verification token received and confirmed (supportopsd notion confirm-verification)"
    );
    Ok(Some(sub))
}

const STEPS: usize = 8;

/// Plays step `step` of `cycle`; what it did.
async fn play(
    step: usize,
    cycle: u64,
    daemon: &Daemon,
    f: &Fakes,
    c: &Creds,
    (slack, notion): (Option<&str>, Option<&str>),
) -> String {
    let fd_ticket = fd::SEEDED_TICKETS[usize::try_from(cycle).unwrap_or(0) % 3];
    match step {
        0 => {
            f.freshdesk
                .fire(fd::Happening::Priority {
                    ticket: fd_ticket,
                    to: 1,
                    by: fd::By::Agent,
                })
                .await;
            let answers = f
                .freshdesk
                .fire(fd::Happening::Priority {
                    ticket: fd_ticket,
                    to: 4,
                    by: fd::By::Agent,
                })
                .await;
            format!(
                "Freshdesk: an agent raises ticket #{fd_ticket} to urgent (the automation rule posts it: {answers:?})"
            )
        }
        1 => {
            let answers = f
                .freshdesk
                .fire(fd::Happening::Created { ticket: fd_ticket })
                .await;
            format!("Freshdesk: urgent ticket #{fd_ticket} created (answers {answers:?})")
        }
        2 => {
            let ts = now_secs();
            let body = json!({
                "token": "unused-verification-token",
                "team_id": sl::TEAM_ID,
                "api_app_id": sl::APP_ID,
                "type": "event_callback",
                "event_id": format!("Ev{cycle:04}DEMO{ts}"),
                "event_time": ts,
                "event": {
                    "type": "app_mention",
                    "user": sl::USER_ID,
                    "text": format!("<@{}> open a ticket: the invoice page times out", sl::BOT_USER_ID),
                    "ts": format!("{ts}.000100"),
                    "channel": sl::SUPPORT,
                    "event_ts": format!("{ts}.000100"),
                },
                "authorizations": [{"team_id": sl::TEAM_ID, "user_id": sl::BOT_USER_ID, "is_bot": true}],
            })
            .to_string();
            let Some(slack) = slack else {
                return "Slack: no Slack integration in this repository".to_owned();
            };
            let status = post_slack(daemon, c, slack, &body).await;
            format!(
                "Slack: someone mentions the bot: “open a ticket: the invoice page times out” (signed delivery answered {status})"
            )
        }
        3 => {
            if cycle == 1 {
                f.slack.fail_next(
                    "chat.postMessage",
                    sl::Failure::RateLimited {
                        retry_after_secs: 2,
                    },
                    1,
                );
            }
            let id = f.zendesk.add_ticket(json!({
                "subject": "Refund for a double charge",
                "priority": "high",
                "tags": ["billing", "vip"],
                "requester_id": f.customer,
                "submitter_id": f.customer,
            }));
            let answer = f.zendesk.fire_trigger("ticket.created", id).await;
            format!(
                "Zendesk: VIP refund request, ticket {id} (trigger delivery answered {}){}",
                answer.map_or_else(|e| e, |s| s.to_string()),
                if cycle == 1 {
                    "; the fake Slack will answer its next chat.postMessage 429 with Retry-After: 2"
                } else {
                    ""
                }
            )
        }
        4 => {
            let Some(card) = f
                .trello
                .add_card(tr::LIST_INBOX, "Customer cannot reset password")
            else {
                return "Trello: the board has no inbox list".to_owned();
            };
            let card_id = card.get("id").and_then(Value::as_str).unwrap_or("");
            let mut action = f.trello.action("updateCard", card_id, None);
            action["data"]["card"]["idList"] = json!(tr::LIST_DOING);
            action["data"]["old"] = json!({"idList": tr::LIST_INBOX});
            action["data"]["listBefore"] = json!({"id": tr::LIST_INBOX, "name": "Inbox"});
            action["data"]["listAfter"] = json!({"id": tr::LIST_DOING, "name": "Doing"});
            let mut statuses = Vec::new();
            for hook in f.trello.webhooks() {
                statuses.push(f.trello.deliver(&hook.id, action.clone()).await);
            }
            format!(
                "Trello: Grace moves card “Customer cannot reset password” from Inbox to Doing (answers {statuses:?})"
            )
        }
        5 => {
            let Some(sub) = notion else {
                return "Notion: no Notion integration in this repository".to_owned();
            };
            let rows = f.notion.add_rows(1);
            let mut status = None;
            for row in rows {
                status = f
                    .notion
                    .deliver(sub, "page.created", &row, nt::PERSON_ID)
                    .await;
            }
            let answered = status.map_or_else(|| "no answer".to_owned(), |s| s.to_string());
            format!(
                "Notion: a page is added to the escalations database (delivery answered {answered})"
            )
        }
        6 => {
            let id = f
                .zendesk
                .add_ticket(json!({"subject": "Password reset email never arrives"}));
            // Kim, an agent (not the daemon's own user), solves it.
            f.zendesk.touch_ticket(
                id,
                json!({
                    "status": "solved",
                    "assignee_id": zd::OTHER_AGENT_ID,
                    "submitter_id": zd::OTHER_AGENT_ID,
                }),
            );
            let answer = f.zendesk.fire_trigger("ticket.solved", id).await;
            format!(
                "Zendesk: ticket {id} solved (trigger delivery answered {}); the Google Sheets poller will find the row it adds",
                answer.map_or_else(|e| e, |s| s.to_string())
            )
        }
        _ => {
            let other = fd::SEEDED_TICKETS[(usize::try_from(cycle).unwrap_or(0) + 1) % 3];
            if cycle == 1 {
                f.slack
                    .fail_next("chat.postMessage", sl::Failure::ServerError, 1);
            }
            f.freshdesk
                .fire(fd::Happening::Priority {
                    ticket: other,
                    to: 4,
                    by: fd::By::Agent,
                })
                .await;
            let answers = f
                .freshdesk
                .fire(fd::Happening::Created { ticket: other })
                .await;
            format!(
                "Freshdesk: urgent ticket #{other} created (answers {answers:?}){}",
                if cycle == 1 {
                    "; the fake Slack will answer its next chat.postMessage 500: the message may have been posted, so the daemon does not post it twice"
                } else {
                    ""
                }
            )
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Posts a Slack Events API delivery, signed as Slack signs.
async fn post_slack(daemon: &Daemon, c: &Creds, integration: &str, body: &str) -> String {
    let ts = now_secs().to_string();
    let sig = sl::sign(&c.slack_signing, &ts, body.as_bytes());
    match daemon
        .http
        .post(format!("{}/api/webhooks/slack/{integration}", daemon.url))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", sig)
        .body(body.to_owned())
        .send()
        .await
    {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) => format!("no answer: {e}"),
    }
}

/// Prints what happened since the last call: new deliveries and the rules they fired, the
/// requests each fake received (the daemon's actions and registrations), job outcomes.
async fn observe(daemon: &Daemon, fakes: &Fakes, seen: &mut Seen) {
    let page = daemon
        .get("/api/events?limit=50")
        .await
        .unwrap_or(Value::Null);
    let mut outcomes = Vec::new();
    let mut events: Vec<&Value> = page["events"].as_array().into_iter().flatten().collect();
    events.reverse(); // oldest first
    for e in events {
        let id = e["id"].as_str().unwrap_or("").to_owned();
        if seen.events.insert(id.clone()) {
            let rules: Vec<&str> = e["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!(
                "  ◆ {id} {} {}/{} ({}): {}",
                e["received_at"].as_str().unwrap_or(""),
                e["integration"].as_str().unwrap_or(""),
                e["event"].as_str().unwrap_or(""),
                e["accepted"].as_str().unwrap_or(""),
                if rules.is_empty() {
                    "no rule matched".to_owned()
                } else {
                    format!("fired {}", rules.join(", "))
                }
            );
            if rules.is_empty() && e["platform"] != "supportopsd" {
                why_not(daemon, &id).await;
            }
        }
        for j in e["jobs"].as_array().into_iter().flatten() {
            let Some(job) = j["job"].as_u64() else {
                continue;
            };
            let state = j["outcome"]["state"].as_str().unwrap_or("").to_owned();
            if seen.jobs.get(&job) == Some(&state) || state == "queued" || state == "running" {
                continue;
            }
            let rule = j["rule"].as_str().unwrap_or("");
            let line = match state.as_str() {
                "done" => format!(
                    "  ✓ {id} job {job} (rule {rule}): done, {} action(s)",
                    j["steps_done"]
                ),
                "retrying" => format!(
                    "  ↻ {id} job {job} (rule {rule}): retrying at {} (attempt {}): {}",
                    j["outcome"]["due_at"].as_str().unwrap_or("?"),
                    j["outcome"]["attempts"],
                    short(j["outcome"]["error"].as_str().unwrap_or(""), 140)
                ),
                "dead" => format!(
                    "  ✗ {id} job {job} (rule {rule}): dead-lettered: {}\n    replay it: supportopsd events replay {job} --url {}   (or POST /api/jobs/{job}/replay)",
                    short(j["outcome"]["error"].as_str().unwrap_or(""), 160),
                    daemon.url
                ),
                other => format!("  · {id} job {job} (rule {rule}): {other}"),
            };
            outcomes.push(line);
            seen.jobs.insert(job, state);
        }
    }
    for (name, log) in fakes.logs() {
        let from = seen.requests.get(name).copied().unwrap_or(0);
        for r in log.iter().skip(from) {
            if r.method == http::Method::GET || r.method == http::Method::HEAD {
                continue; // reads (checks, polls) would drown the rest
            }
            println!("    ← {name:<13} {} {} {}", r.method, r.path, summary_of(r));
        }
        seen.requests.insert(name, log.len());
    }
    for line in outcomes {
        println!("{line}");
    }
}

/// Why no rule of a delivery's integration and event ran (`GET /api/events/{id}`).
async fn why_not(daemon: &Daemon, id: &str) {
    let Ok(trace) = daemon.get(&format!("/api/events/{id}")).await else {
        return;
    };
    for r in trace["rules"]["rules"].as_array().into_iter().flatten() {
        let failures: Vec<&str> = r["explanation"]["failures"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "      rule {}: {}{}",
            r["rule"].as_str().unwrap_or(""),
            r["result"].as_str().unwrap_or(""),
            if failures.is_empty() {
                String::new()
            } else {
                format!(" ({})", short(&failures.join("; "), 120))
            }
        );
    }
}

/// A short, credential-free summary of a request: the fields a reader recognises (a message,
/// a subject, a name, tags, values), never headers or tokens.
fn summary_of(r: &Recorded) -> String {
    const KEYS: [&str; 9] = [
        "text", "subject", "name", "title", "tags", "values", "body", "desc", "url",
    ];
    let json = r.json();
    let form: BTreeMap<String, String> = r.form().into_iter().collect();
    let query: BTreeMap<String, String> = r.query.iter().cloned().collect();
    let mut parts = Vec::new();
    if let Some(channel) = form
        .get("channel")
        .or(json["channel"].as_str().map(ToOwned::to_owned).as_ref())
    {
        parts.push(channel.clone());
    }
    for key in KEYS {
        let found = json
            .get(key)
            .or_else(|| json.get("ticket").and_then(|t| t.get(key)))
            .or_else(|| json.get("webhook").and_then(|t| t.get(key)))
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .or_else(|| form.get(key).cloned())
            .or_else(|| query.get(key).cloned());
        if let Some(v) = found {
            parts.push(short(&v, 90));
            break;
        }
    }
    if parts.is_empty()
        && let Some(title) = json
            .pointer("/properties/title/title/0/text/content")
            .and_then(Value::as_str)
    {
        parts.push(short(title, 90));
    }
    parts.join("  ")
}

fn short(s: &str, max: usize) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() <= max {
        return s;
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

/// One line from the daemon's metrics and dead letters, at the end of a cycle.
async fn summary(daemon: &Daemon) {
    let text = daemon.metrics().await;
    let mut by_outcome: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("supportopsd_actions_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let outcome = labels
            .split(',')
            .find_map(|l| l.strip_prefix("outcome=\""))
            .map(|o| o.trim_end_matches('"').to_owned())
            .unwrap_or_default();
        *by_outcome.entry(outcome).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    let dead = daemon
        .get("/api/jobs/dead")
        .await
        .ok()
        .and_then(|v| v["dead"].as_array().map(Vec::len))
        .unwrap_or(0);
    let counts: Vec<String> = by_outcome.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "\n■ {} metrics: actions {}; dead letters now {dead} (supportopsd events dead --url {})",
        rfc3339_ms(
            u64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
            )
            .unwrap_or(0)
        ),
        counts.join(", "),
        daemon.url
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(method: http::Method, path: &str, body: &str, query: &[(&str, &str)]) -> Recorded {
        Recorded {
            method,
            path: path.to_owned(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn a_request_summary_shows_what_a_reader_recognises_and_never_a_credential() {
        let slack = recorded(
            http::Method::POST,
            "/api/chat.postMessage",
            "token=xoxb-demo-secret&channel=%23billing&text=Refund+request+7",
            &[],
        );
        assert_eq!(summary_of(&slack), "#billing  Refund request 7");
        let trello = recorded(
            http::Method::POST,
            "/1/cards",
            "",
            &[
                ("key", "public"),
                ("token", "trello-demo-secret"),
                ("name", "VIP: x"),
            ],
        );
        assert_eq!(summary_of(&trello), "VIP: x");
        let zendesk = recorded(
            http::Method::PUT,
            "/api/v2/tickets/7/tags",
            r#"{"tags": ["refund-review"], "api_token": "zd-demo-secret"}"#,
            &[],
        );
        assert_eq!(summary_of(&zendesk), r#"["refund-review"]"#);
        let nothing = recorded(
            http::Method::POST,
            "/token",
            "grant_type=jwt&assertion=eyJsecret",
            &[],
        );
        assert_eq!(summary_of(&nothing), "");
    }

    #[test]
    fn a_credential_keeps_its_variable_name_or_gets_one() {
        let env: toml::Value = toml::from_str::<toml::Table>("v = { env = \"SLACK_BOT_TOKEN\" }")
            .unwrap()["v"]
            .clone();
        assert_eq!(env_name("slack-main", "bot_token", &env), "SLACK_BOT_TOKEN");
        let sealed: toml::Value =
            toml::from_str::<toml::Table>("v = { sealed = \"sos1:x\" }").unwrap()["v"].clone();
        assert_eq!(
            env_name("freshdesk-main", "webhook_secret", &sealed),
            "DEMO_FRESHDESK_MAIN_WEBHOOK_SECRET"
        );
    }
}
