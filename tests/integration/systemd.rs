//! The systemd unit and the daemon's side of the notify protocol.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use crate::daemon_support::{BOT_TOKEN, repo, signal};

/// Whether `systemd-analyze` runs here; says so when it does not (`what` was then skipped).
fn systemd_analyze_present(what: &str) -> bool {
    match std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    {
        Ok(out) => {
            assert!(out.status.success());
            true
        }
        Err(_) => {
            eprintln!("systemd-analyze is not installed here: {what} was skipped");
            false
        }
    }
}

/// `systemd-analyze verify` of `unit` succeeds with no complaint on a line naming any of `ours`.
fn assert_verifies(unit: &Path, ours: &[&str]) {
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints = stderr
        .lines()
        .filter(|l| ours.iter().any(|o| l.contains(o)))
        .count();
    assert!(
        out.status.success() && complaints == 0,
        "systemd-analyze verify: {stderr}"
    );
}

#[test]
fn the_unit_file_verifies() {
    if !systemd_analyze_present("the unit check") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/supportopsd.service"),
    )
    .unwrap();
    // Verify against the binary this build made (the unit names its installed path).
    let unit = unit.replace(
        "/usr/local/bin/supportopsd",
        env!("CARGO_BIN_EXE_supportopsd"),
    );
    let path = dir.path().join("supportopsd.service");
    std::fs::write(&path, unit).unwrap();
    assert_verifies(&path, &["supportopsd.service"]);
}

/// The Debian package's drop-in (debian/supportopsd.service.d/package.conf) loads with the unit
/// without a complaint, and its commands are the ones systemd runs.
#[test]
fn the_packages_drop_in_verifies() {
    if !systemd_analyze_present("the drop-in check") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_supportopsd");
    // The unit as shipped, with a path that does not exist here: only the drop-in's override
    // of ExecStart and ExecReload can make it verify.
    let unit = std::fs::read_to_string(root.join("systemd/supportopsd.service"))
        .unwrap()
        .replace("/usr/local/bin/supportopsd", "/nonexistent/supportopsd");
    let path = dir.path().join("supportopsd.service");
    std::fs::write(&path, unit).unwrap();
    std::fs::create_dir(dir.path().join("supportopsd.service.d")).unwrap();
    let drop_in =
        std::fs::read_to_string(root.join("debian/supportopsd.service.d/package.conf")).unwrap();
    assert_eq!(drop_in.matches("=/usr/bin/supportopsd ").count(), 2);
    std::fs::write(
        dir.path().join("supportopsd.service.d/package.conf"),
        drop_in.replace("=/usr/bin/supportopsd ", &format!("={bin} ")),
    )
    .unwrap();
    assert_verifies(&path, &["supportopsd.service", "package.conf"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_reports_ready_and_stopping() {
    let fake = supportopsd::platforms::slack::fake::FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // The host policy comes as a credential, the way the unit passes it (LoadCredential=).
    let creds = tempfile::tempdir().unwrap();
    crate::daemon_support::loopback_policy(creds.path());
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .current_dir(repo.path())
        .args(["--repo", ".", "--state"])
        .arg(state.path())
        .args(["run", "--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .env_remove("SUPPORTOPSD_POLICY")
        .env("SUPPORTOPSD_LOG", "error")
        .env("SLACK_BOT_TOKEN", BOT_TOKEN)
        .env("SLACK_SIGNING_SECRET", "s")
        .env("ZD_WEBHOOK_SECRET", "z")
        .env("FD_WEBHOOK_SECRET", "f")
        .env("ZD_TOKEN", "t")
        .env("FD_KEY", "k")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed if an assertion below fails, so no daemon outlives the test.
    let mut child = KillOnDrop(child);
    let mut buf = [0u8; 4096];
    // The first reconcile pass may report a STATUS= line before READY=1.
    let mut before = Vec::new();
    let msg = loop {
        let n = sock.recv(&mut buf).expect("a notification");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.contains("READY=1") {
            break msg;
        }
        assert!(
            msg.lines().all(|l| l.starts_with("STATUS=")),
            "{msg} (after {before:?})"
        );
        before.push(msg);
    };
    assert!(msg.contains("STATUS=serving "), "{msg}");
    signal(child.0.id(), "TERM");
    // A reconcile pass that ends after READY reports its STATUS= line first; STOPPING=1 follows.
    let mut seen = Vec::new();
    loop {
        let n = sock.recv(&mut buf).expect("a notification");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if msg.contains("STOPPING=1") {
            break;
        }
        assert!(
            msg.lines().all(|l| l.starts_with("STATUS=")),
            "{msg} (after {seen:?})"
        );
        seen.push(msg);
    }
    assert!(child.0.wait().unwrap().success());
}

/// A child process killed when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
