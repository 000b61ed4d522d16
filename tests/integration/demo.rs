//! `supportopsd demo` as a user runs it: from the source tree, on `examples/repo`, against the
//! built-in fakes. It serves within 10 s; within 60 s an action of every platform has reached
//! its fake, a rate-limited action was retried and a job dead-lettered (read from the daemon's
//! metrics and operator API, at the address and with the token the demo printed); SIGINT
//! leaves no process and no temporary directory behind. And its clear refusals.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::daemon_support::signal;

/// A loopback port nothing listens on (as far as anyone can know).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The demo started from the crate's root (where `examples/repo` is), with its temporary
/// directory under `tmp`.
fn demo_command(tmp: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_supportopsd"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("demo")
        .args(args)
        .env("TMPDIR", tmp)
        .env_remove("SUPPORTOPSD_REPO")
        .env_remove("SUPPORTOPSD_STATE")
        .env_remove("SUPPORTOPSD_KEY_FILE")
        .env_remove("SUPPORTOPSD_ADMIN_TOKEN")
        .env_remove("SUPPORTOPSD_POLICY")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The processes whose command line names `needle` (the demo's daemon names its state under
/// the test's temporary directory).
fn processes_naming(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(pid);
        }
    }
    out
}

/// `supportopsd_actions_total` summed per (platform, outcome).
fn actions(metrics: &str) -> Vec<(String, String, f64)> {
    let label = |labels: &str, name: &str| {
        labels
            .split(',')
            .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
            .map(|v| v.trim_end_matches('"').to_owned())
            .unwrap_or_default()
    };
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("supportopsd_actions_total{"))
        .filter_map(|rest| rest.split_once("} "))
        .map(|(labels, value)| {
            (
                label(labels, "platform"),
                label(labels, "outcome"),
                value.trim().parse().unwrap_or(0.0),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_every_platform_a_retry_and_a_dead_letter_then_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}");
    let mut child = demo_command(tmp.path(), &["--listen", &listen, "--every", "2"])
        .spawn()
        .unwrap();
    let output = Arc::new(Mutex::new(String::new()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let sink = output.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let mut o = sink.lock().unwrap();
            o.push_str(&line);
            o.push('\n');
        }
    });
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let errors_sink = Arc::new(Mutex::new(String::new()));
    let e = errors_sink.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = errors.next_line().await {
            e.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    let client = reqwest::Client::new();
    let started = tokio::time::Instant::now();

    // Within 10 s the daemon serves.
    loop {
        if let Ok(r) = client.get(format!("{url}/healthz")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the demo's daemon did not serve within 10 s; stderr:\n{}",
            errors_sink.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its daemon runs from the temporary directory.
    let tmp_name = tmp.path().to_string_lossy().into_owned();
    assert!(
        !processes_naming(&format!("{tmp_name}/supportopsd-demo-")).is_empty(),
        "the daemon names its state under TMPDIR"
    );

    // The token it printed opens the operator API.
    let token = loop {
        let found = output.lock().unwrap().lines().find_map(|l| {
            l.split("SUPPORTOPSD_ADMIN_TOKEN=")
                .nth(1)
                .map(|t| t.trim().to_owned())
        });
        if let Some(t) = found {
            break t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no token printed:\n{}",
            output.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The console's address and both tokens are printed, and each signs in there.
    let printed = output.lock().unwrap().clone();
    assert!(
        printed.contains(&format!("console:         {url}/ui/")),
        "{printed}"
    );
    let read_token = printed
        .lines()
        .find_map(|l| l.split("SUPPORTOPSD_READ_TOKEN=").nth(1))
        .map(|t| t.trim().to_owned())
        .expect("a read-only token printed");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for t in [&token, &read_token] {
        let r = browser
            .post(format!("{url}/ui/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={t}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "signing in to the console");
        assert!(r.headers().contains_key("set-cookie"));
    }
    let r = client
        .get(format!("{url}/api/status"))
        .bearer_auth(&read_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the read-only token reads the API");

    // Within 60 s: every platform's fake got an action, one was retried, one dead-lettered.
    let platforms = [
        "freshdesk",
        "zendesk",
        "slack",
        "trello",
        "notion",
        "google_sheets",
    ];
    loop {
        let metrics = client
            .get(format!("{url}/metrics"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let counts = actions(&metrics);
        let done = |platform: &str| {
            counts
                .iter()
                .any(|(p, o, n)| p == platform && o == "succeeded" && *n > 0.0)
        };
        let retried = counts.iter().any(|(_, o, n)| o == "retried" && *n > 0.0);
        let dead: serde_json::Value = client
            .get(format!("{url}/api/jobs/dead"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let dead = dead["dead"].as_array().is_some_and(|d| !d.is_empty());
        if platforms.iter().all(|p| done(p)) && retried && dead {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "after 60 s: actions {counts:?}, retried {retried}, dead letter {dead}\n{}",
            output.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // What it printed says so: the registrations, a retry, a dead letter and how to replay it.
    let printed = loop {
        let o = output.lock().unwrap().clone();
        if o.contains("supportopsd events replay ") || started.elapsed() > Duration::from_secs(65) {
            break o;
        }
        drop(o);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        printed.contains(&format!("supportopsd status --url {url}")),
        "{printed}"
    );
    assert!(
        printed.contains("registrations the daemon made"),
        "{printed}"
    );
    assert!(printed.contains("retrying at"), "{printed}");
    assert!(printed.contains("dead-lettered"), "{printed}");
    assert!(printed.contains("supportopsd events replay "), "{printed}");
    for platform in platforms {
        assert!(
            printed.contains(&format!("← {platform}")),
            "no request to {platform} shown:\n{printed}"
        );
    }
    // The generated credentials are never shown (each is made with a recognisable prefix).
    for prefix in [
        "xoxb-demo-",
        "fd-demo-",
        "fd-hook-",
        "zd-demo-",
        "trello-demo-",
        "ntn_demo_",
    ] {
        assert!(!printed.contains(prefix), "{prefix} shown:\n{printed}");
    }

    // SIGINT: no process, no temporary directory left.
    signal(child.id().unwrap(), "INT");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the demo stopped in time")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(
        processes_naming(&format!("{tmp_name}/supportopsd-demo-")),
        Vec::<u32>::new()
    );
    assert!(
        client.get(format!("{url}/healthz")).send().await.is_err(),
        "the daemon still answers"
    );
}

#[tokio::test]
async fn the_demo_refuses_a_taken_port_and_a_folder_that_is_no_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = demo_command(tmp.path(), &["--listen", &addr])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("--listen {addr}: the address is in use")),
        "{stderr}"
    );

    let empty = tempfile::tempdir().unwrap();
    let out = demo_command(tmp.path(), &["--listen", "127.0.0.1:0"])
        .arg("--repo")
        .arg(empty.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a manifest repository (it has no integrations/ folder)"),
        "{stderr}"
    );
    // Nothing was made.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    // Manifests the daemon refuses: it says why at once, and cleans up.
    let bad = tempfile::tempdir().unwrap();
    std::fs::create_dir(bad.path().join("integrations")).unwrap();
    std::fs::write(
        bad.path().join("integrations/odd.toml"),
        "id = \"odd\"\nplatform = \"fax\"\n",
    )
    .unwrap();
    let port = free_port().to_string();
    let out = tokio::time::timeout(
        Duration::from_secs(45),
        demo_command(tmp.path(), &["--listen", &format!("127.0.0.1:{port}")])
            .arg("--repo")
            .arg(bad.path())
            .output(),
    )
    .await
    .expect("the demo gave up in time")
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the daemon refused the manifests"),
        "{stderr}"
    );
    assert!(stderr.contains("integrations/odd.toml"), "{stderr}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    assert_eq!(
        processes_naming(&format!("{}/supportopsd-demo-", tmp.path().display())),
        Vec::<u32>::new()
    );
}
