//! `supportopsd state backup | restore | verify`: a consistent snapshot of the state in one
//! file (through the running daemon's API, or from a stopped daemon's state with `--state`),
//! restored into a new state directory, or checked. The file is written 0600 (created so) and
//! atomically (a temporary file beside it, renamed once complete and checked). The format and
//! what a backup holds: `docs/state-backup.md`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::{Exit, GlobalArgs, Target, state_dir, unexpected};
use crate::state::backup::{self, Checked, Contents};
use crate::state::journal::Journal;
use crate::state::{Store, Taken};

/// Backups of the state.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a consistent snapshot of the state to a file (mode 0600): through the running
    /// daemon's API (admin token), or, with --state (or $SUPPORTOPSD_STATE) and no --url, from
    /// a stopped daemon's state.
    Backup(BackupArgs),
    /// Restore a backup into a new state directory (--state DIR: missing or empty). The
    /// daemon then needs the same sealing key as the one the backup was taken from.
    Restore {
        /// The backup file.
        file: PathBuf,
    },
    /// Check a backup: its format and checksum, that it restores and opens (into a temporary
    /// directory); print what it holds. Exit 0 when it is good, 1 when not.
    Verify {
        /// The backup file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `state backup`'s arguments.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The file to write (replaced atomically if it exists).
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
    /// Where the daemon answers.
    #[command(flatten)]
    pub target: Target,
}

/// Runs a `state` command.
pub fn run(cmd: &Command, g: &GlobalArgs) -> anyhow::Result<Exit> {
    match cmd {
        Command::Backup(args) => backup(args, g),
        Command::Restore { file } => restore(file, g),
        Command::Verify { file, json } => verify(file, *json),
    }
}

fn backup(args: &BackupArgs, g: &GlobalArgs) -> anyhow::Result<Exit> {
    if args.target.url.is_none()
        && let Some(dir) = &g.state
    {
        return backup_offline(args, dir);
    }
    let base = args.target.base();
    let url = format!("{base}/api/state/backup");
    let written = write_atomically(
        &args.to,
        |file| stream_to(&Streaming::backup(&url, &base), file),
        check_backup,
    )?;
    let Some((_, contents)) = written else {
        bail!(
            "no daemon answered at {base}: start it, or back up a stopped daemon's state with `supportopsd state backup --to {} --state DIR`",
            args.to.display()
        );
    };
    println!(
        "Backed up the state of the daemon at {base} to {}: {}.",
        args.to.display(),
        describe(&contents)
    );
    Ok(Exit::Ok)
}

/// A stopped daemon's state: a leftover ingest journal (a crash) is folded into the database
/// first, as the daemon's start would.
fn backup_offline(args: &BackupArgs, dir: &Path) -> anyhow::Result<Exit> {
    let Some(store) = Store::open_existing(dir)? else {
        bail!("there is no state at {}", dir.display());
    };
    let (journal, restored) = Journal::open(&store)?;
    journal.close()?;
    if restored > 0 {
        eprintln!("Folded {restored} deliveries left in the ingest journal into the state first.");
    }
    let written = write_atomically(
        &args.to,
        |file| {
            let mut out = BufWriter::with_capacity(256 * 1024, file);
            let report = store.backup(&mut out, Taken::Offline)?;
            out.flush()?;
            Ok(Some(report))
        },
        check_backup,
    )?;
    let Some((report, _)) = written else {
        bail!("nothing was written to {}", args.to.display());
    };
    println!(
        "Backed up {} to {}: {} (writes waited {} ms).",
        dir.display(),
        args.to.display(),
        describe(&report.contents),
        report.quiesced.as_millis()
    );
    Ok(Exit::Ok)
}

fn describe(c: &Contents) -> String {
    format!(
        "{} bytes, {} records in {} trees, {} payload segment files",
        c.bytes, c.entries, c.trees, c.files
    )
}

/// Writes `to` through `fill` into a temporary file beside it, created 0600, then checks it
/// with `check` and renames it into place; the temporary file is removed on any failure, and
/// when `fill` gives `None` (nothing to write). Gives what `fill` gave and what `check` found
/// in the file. (`state backup`, `events export`.)
pub(super) fn write_atomically<R, C>(
    to: &Path,
    fill: impl FnOnce(&mut File) -> anyhow::Result<Option<R>>,
    check: impl FnOnce(&Path) -> anyhow::Result<C>,
) -> anyhow::Result<Option<(R, C)>> {
    let name = to
        .file_name()
        .with_context(|| format!("{} names no file", to.display()))?;
    let parent = match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let cleanup = Remove(&tmp);
    let Some(filled) = fill(&mut file)? else {
        return Ok(None);
    };
    file.sync_all()
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    let checked = check(&tmp)?;
    fs::rename(&tmp, to)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), to.display()))?;
    std::mem::forget(cleanup);
    // The rename is durable once the folder is.
    if let Ok(folder) = File::open(&parent) {
        let _ = folder.sync_all();
    }
    Ok(Some((filled, checked)))
}

/// [`write_atomically`]'s check of a backup.
fn check_backup(tmp: &Path) -> anyhow::Result<Contents> {
    let (_, contents) = backup::check(tmp).context("the backup written is not complete")?;
    Ok(contents)
}

/// Removes a temporary file when dropped.
struct Remove<'a>(&'a Path);

impl Drop for Remove<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}

/// A streamed answer to fetch: the backup (`POST`, admin token) or the events export (`GET`,
/// the read-only token when there is one).
pub(super) struct Streaming<'a> {
    /// The whole URL.
    pub url: &'a str,
    /// The daemon's base URL (for messages).
    pub base: &'a str,
    /// `POST` with `Content-Type: application/json` and the admin token, else `GET` with the
    /// read-only token (the admin token when there is none).
    pub change: bool,
    /// What is fetched, for messages (`the backup`).
    pub what: &'a str,
}

impl<'a> Streaming<'a> {
    fn backup(url: &'a str, base: &'a str) -> Self {
        Self {
            url,
            base,
            change: true,
            what: "the backup",
        }
    }
}

/// Streams an answer from the daemon into `file`; `None` when nothing answers there. Gives the
/// bytes written.
pub(super) fn stream_to(s: &Streaming<'_>, file: &mut File) -> anyhow::Result<Option<u64>> {
    let (url, base) = (s.url, s.base);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .tls_backend_rustls()
            .connect_timeout(std::time::Duration::from_secs(10))
            // The daemon reads its trees before the first byte; a stall after that is a failure.
            .read_timeout(std::time::Duration::from_secs(300))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let (mut req, token) = if s.change {
            (
                client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json"),
                super::run::admin_token(),
            )
        } else {
            (
                client.get(url),
                super::run::read_token().or_else(super::run::admin_token),
            )
        };
        if let Some(token) = token
            && let Ok(token) = token.expose_str()
        {
            req = req.header(reqwest::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let mut resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) if e.is_connect() => return Ok(None),
            Err(e) => bail!("asking the daemon at {base}: {e}"),
        };
        let code = resp.status().as_u16();
        if code != 200 {
            let body = resp
                .json::<serde_json::Value>()
                .await
                .unwrap_or(serde_json::Value::Null);
            return Err(unexpected(base, code, &body, !s.change));
        }
        let mut bytes = 0u64;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    file.write_all(&chunk)?;
                    bytes += chunk.len() as u64;
                }
                Ok(None) => break,
                Err(e) => bail!(
                    "the daemon at {base} stopped sending {} after {bytes} bytes ({e}); see its log",
                    s.what
                ),
            }
        }
        Ok(Some(bytes))
    })
}

fn restore(file: &Path, g: &GlobalArgs) -> anyhow::Result<Exit> {
    if g.state.is_none() {
        bail!("name the new state directory: `supportopsd state restore FILE --state DIR`");
    }
    let dir = state_dir(g);
    let checked = backup::restore(file, &dir)?;
    println!(
        "Restored {} into {}: {}.",
        file.display(),
        dir.display(),
        counts(&checked)
    );
    println!(
        "Start the daemon on it with the sealing key of the daemon the backup was taken from (its sealed secrets need it)."
    );
    Ok(Exit::Ok)
}

fn counts(c: &Checked) -> String {
    let n = &c.counts;
    format!(
        "{} events, {} jobs queued, {} dead letters, {} audit records, {} registrations",
        n.events, n.jobs_queued, n.dead_letters, n.audit_records, n.registrations
    )
}

fn verify(file: &Path, json: bool) -> anyhow::Result<Exit> {
    match backup::verify(file, &std::env::temp_dir()) {
        Ok(checked) => {
            if json {
                super::emit(&format!("{}\n", serde_json::to_string_pretty(&checked)?))?;
            } else {
                let h = &checked.header;
                super::emit(&format!(
                    "{}: good. Taken {} ({}) by supportopsd {}, schema version {}; {} bytes.\n{}.\n",
                    file.display(),
                    crate::platforms::supportopsd::events::rfc3339_ms(h.created_ms),
                    match h.taken {
                        Taken::Online => "online",
                        Taken::Offline => "offline",
                    },
                    h.supportopsd_version,
                    h.schema_version,
                    checked.contents.bytes,
                    counts(&checked)
                ))?;
            }
            Ok(Exit::Ok)
        }
        Err(e) => {
            eprintln!("{}: bad: {e}", file.display());
            Ok(Exit::Failure)
        }
    }
}
