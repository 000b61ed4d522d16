//! Operator commands while the daemon runs: `--state` commands say what to run instead (the
//! daemon holds the state), `--url` defaults to `$SUPPORTOPSD_LISTEN`, and a clean stop leaves
//! no ingest journal for the next start to replay or report as torn.

use std::path::Path;
use std::time::Duration;

use supportopsd::platforms::slack::fake::FakeSlack;

use crate::daemon_support::{
    BOT_TOKEN, Daemon, eventually, post_zendesk, repo, setup, status, zendesk_ticket,
};

/// Runs `supportopsd --repo REPO --state STATE ARGS…` with `env` and without any daemon
/// address or token from the test's own environment.
fn cli(repo: &Path, state: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .current_dir(repo)
        .arg("--repo")
        .arg(repo)
        .arg("--state")
        .arg(state)
        .args(args)
        .env_remove("SUPPORTOPSD_URL")
        .env_remove("SUPPORTOPSD_LISTEN")
        .env_remove("SUPPORTOPSD_ADMIN_TOKEN")
        .env_remove("SUPPORTOPSD_READ_TOKEN")
        .env_remove("SUPPORTOPSD_STATE")
        .env_remove("STATE_DIRECTORY")
        .envs(env.iter().copied())
        .output()
        .expect("run supportopsd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn state_commands_against_a_running_daemon_name_the_url_to_use() {
    let (_fake, repo, state, daemon, _client) = setup(&[]).await;
    let listen = daemon.url.strip_prefix("http://").unwrap().to_owned();
    let with_listen = [("SUPPORTOPSD_LISTEN", listen.as_str())];
    // Nothing answers at --url, so status reads the state, which the daemon holds.
    let out = cli(
        repo.path(),
        state.path(),
        &["status", "--url", "http://127.0.0.1:9"],
        &with_listen,
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("in use by another supportopsd process"),
        "{err}"
    );
    assert!(
        err.contains(&format!("`supportopsd status --url {}`", daemon.url)),
        "{err}"
    );
    // Without $SUPPORTOPSD_LISTEN, the daemon's default listen address is named.
    let out = cli(
        repo.path(),
        state.path(),
        &["status", "--url", "http://127.0.0.1:9"],
        &[],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`supportopsd status --url http://127.0.0.1:8080`"),
        "{err}"
    );
    // Where nothing answered is not suggested again: the daemon's --listen address is asked for.
    let out = cli(
        repo.path(),
        state.path(),
        &["status"],
        &[("SUPPORTOPSD_LISTEN", "127.0.0.1:9")],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("nothing answered at http://127.0.0.1:9"),
        "{err}"
    );
    assert!(
        err.contains("`supportopsd status --url http://ADDR`"),
        "{err}"
    );
    // plan compares with the state: it names the revision the daemon applied, for --base.
    let applied = status(&daemon).await["applied_revision"]
        .as_str()
        .expect("an applied revision")
        .to_owned();
    let out = cli(repo.path(), state.path(), &["plan"], &with_listen);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("in use by another supportopsd process"),
        "{err}"
    );
    assert!(
        err.contains(&format!("`supportopsd plan --base {applied}`")),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no plan printed: {}",
        text(&out.stdout)
    );
    // ... and the plan it names runs while the daemon holds the state.
    let out = cli(
        repo.path(),
        state.path(),
        &["plan", "--base", &applied, "--detailed-exitcode"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The commands that write the state name their API counterpart.
    let out = cli(
        repo.path(),
        state.path(),
        &["unpin", "--url", "http://127.0.0.1:9"],
        &with_listen,
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("`supportopsd unpin --url {}`", daemon.url)),
        "{err}"
    );
}

#[tokio::test]
async fn commands_reach_the_daemon_at_supportopsd_listen() {
    let (_fake, repo, state, daemon, _client) = setup(&[]).await;
    let listen = daemon.url.strip_prefix("http://").unwrap().to_owned();
    let env = [("SUPPORTOPSD_LISTEN", listen.as_str())];
    let out = cli(repo.path(), state.path(), &["status"], &env);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("supportopsd: daemon at {}", daemon.url)),
        "{stdout}"
    );
    let out = cli(repo.path(), state.path(), &["events", "dead"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("no dead-lettered jobs"));
    // An unspecified listen address is reached on loopback.
    let port = listen.rsplit(':').next().unwrap();
    let any = format!("0.0.0.0:{port}");
    let out = cli(
        repo.path(),
        state.path(),
        &["status", "--json"],
        &[("SUPPORTOPSD_LISTEN", any.as_str())],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // $SUPPORTOPSD_URL, then --url, win over it.
    let out = cli(
        repo.path(),
        state.path(),
        &["events", "dead"],
        &[
            ("SUPPORTOPSD_LISTEN", listen.as_str()),
            ("SUPPORTOPSD_URL", "http://127.0.0.1:9"),
        ],
    );
    let err = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("in use by another supportopsd process"),
        "{err}"
    );
}

/// The ingest journal files in a state directory (what the next start replays).
fn journals(state: &Path) -> Vec<String> {
    std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".journal"))
        .collect()
}

#[tokio::test]
async fn a_clean_stop_leaves_no_journal_to_replay_or_report_torn() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let env = [("SUPPORTOPSD_LOG", "info")];
    // Three runs. The first outlasts a checkpoint (every 5 s), which rotates the journal and
    // keeps the old file as the spare; the second starts over that spare and stops before a
    // checkpoint, so its journal file still holds the first run's older records after its own;
    // the third starts over what the second left.
    let mut expected = 0;
    for (run, deliveries, past_checkpoint) in [(0u64, 8u64, true), (1, 1, false), (2, 0, false)] {
        let daemon = Daemon::start_logged(repo.path(), state.path(), &[], &env).await;
        let mut ids: Vec<u64> = (0..deliveries).map(|i| run * 100 + i).collect();
        if past_checkpoint {
            ids.push(run * 100 + 50);
        }
        for (n, id) in ids.iter().enumerate() {
            if past_checkpoint && n + 1 == ids.len() {
                tokio::time::sleep(Duration::from_secs(6)).await;
            }
            let code = post_zendesk(
                &client,
                &daemon,
                zendesk_ticket(*id, "A ticket"),
                &format!("inv-{id}"),
            )
            .await;
            assert_eq!(code, 200);
        }
        expected += ids.len();
        eventually(30, "every delivery's rule ran", || {
            fake.requests_to("chat.postMessage").len() >= expected
        })
        .await;
        let (exit, log) = daemon.terminate_with_log().await;
        assert!(exit.success(), "{log}");
        assert!(!log.contains("Torn record"), "run {run}: {log}");
        assert!(
            !log.contains("restored from the ingest journal"),
            "run {run}: {log}"
        );
        assert!(!log.contains("journal was not retired"), "run {run}: {log}");
        assert_eq!(journals(state.path()), Vec::<String>::new(), "run {run}");
    }
    // Each delivery ran its rule once: nothing was replayed as new.
    assert_eq!(fake.requests_to("chat.postMessage").len(), expected);
}
