//! The console in a real browser (headless Chromium through chromedriver, see
//! `support/browser.rs`), against a daemon with the fake platforms: signing in with the
//! keyboard, every integration on the overview, why a rule did not fire, replaying a dead
//! letter, the read-only token's pages and its refused POSTs, a POST without the CSRF token.
//!
//! Screenshots of every page at 1280 and 360 px go to `target/tmp/console-screenshots/` (printed
//! by the tests); at 360 px every page is checked for horizontal overflow. The README's pictures,
//! `docs/console-overview.png` and `docs/console-trace.png`, are taken from `supportopsd demo` by
//! an ignored test: `cargo test --test integration console_docs -- --ignored`.

use std::path::Path;
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use serde_json::Value;
use supportopsd::platforms::slack::fake::{Failure, FakeSlack};

use crate::daemon_support::{
    BOT_TOKEN, Daemon, FD_SECRET, SLACK_SIGNING, ZD_SECRET, post_freshdesk, post_zendesk, repo,
    zendesk_ticket,
};
use crate::support::TestRepo;
use crate::support::browser::{Browser, NARROW, WIDE};

const ADMIN: &str = "console-admin-token-0123456789abcdef";
const READ: &str = "console-read-token-fedcba9876543210";

/// A rule that never fires on the tests' tickets (they are `normal`): the trace says why.
const URGENT_RULE: &str = r##"id = "zendesk-urgent"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[trigger.conditions]
priority = "urgent"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#urgent"
message = "Urgent: {{ ticket.subject }}"
"##;

/// A daemon with the fakes and some history: a delivered ticket whose urgent rule did not fire,
/// a Freshdesk ticket, and a ticket whose Slack message dead-lettered (the fake answered 500
/// once, and answers again from then on).
struct Scene {
    fake: FakeSlack,
    _repo: TestRepo,
    _state: tempfile::TempDir,
    daemon: Daemon,
    /// The delivered ticket's event (`evt_…`).
    delivered: String,
    /// The dead-lettered job's id, and its event.
    dead_job: u64,
    dead_event: String,
}

impl Scene {
    async fn start() -> Scene {
        let fake = FakeSlack::start(BOT_TOKEN, None).await;
        let repo = repo(&fake.base_url());
        repo.file("rules/zendesk-urgent.toml", URGENT_RULE);
        repo.commit("an urgent-ticket rule");
        let state = tempfile::tempdir().unwrap();
        let daemon = Daemon::spawn_with_env(
            repo.path(),
            state.path(),
            &[],
            &[
                ("SUPPORTOPSD_ADMIN_TOKEN", ADMIN),
                ("SUPPORTOPSD_READ_TOKEN", READ),
            ],
        )
        .await;
        let client = reqwest::Client::new();
        let posted = |n: usize| {
            let fake = &fake;
            async move {
                for _ in 0..600 {
                    if fake.requests_to("chat.postMessage").len() >= n {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("{n} Slack messages were not posted");
            }
        };
        let status = post_zendesk(
            &client,
            &daemon,
            zendesk_ticket(101, "Printer on fire"),
            "inv-101",
        )
        .await;
        assert_eq!(status, 200);
        posted(1).await;
        assert_eq!(post_freshdesk(&client, &daemon.url, 7).await.unwrap(), 200);
        posted(2).await;
        fake.fail_next("chat.postMessage", Failure::ServerError, 1);
        let status = post_zendesk(
            &client,
            &daemon,
            zendesk_ticket(102, "Refund for order 5521"),
            "inv-102",
        )
        .await;
        assert_eq!(status, 200);
        let mut dead = Value::Null;
        for _ in 0..600 {
            dead = daemon.get_json("/api/jobs/dead").await;
            if dead["dead"].as_array().is_some_and(|d| !d.is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let dead_job = dead["dead"][0]["job"]["id"]
            .as_u64()
            .expect("a dead letter");
        let dead_event = dead["dead"][0]["job"]["event_id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| {
                dead["dead"][0]["job"]["event_id"]
                    .as_u64()
                    .map(|n| format!("evt_{n}"))
            })
            .unwrap_or_else(|| panic!("the dead letter's event: {dead}"));
        let events = daemon
            .get_json("/api/events?integration=zendesk-main&limit=10")
            .await;
        let delivered = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["outcome"] == "done")
            .and_then(|e| e["id"].as_str())
            .unwrap_or_else(|| panic!("the delivered ticket: {events}"))
            .to_owned();
        Scene {
            fake,
            _repo: repo,
            _state: state,
            daemon,
            delivered,
            dead_job,
            dead_event,
        }
    }

    /// A console URL.
    fn ui(&self, path: &str) -> String {
        format!("{}/ui/{path}", self.daemon.url)
    }

    /// The console's pages, named for their screenshots (every page of the navigation, one
    /// integration, one rule, one event's trace), each with an element that only it shows.
    fn pages(&self) -> Vec<(&'static str, String, String)> {
        let event = &self.delivered;
        [
            ("overview", String::new(), "table#integrations".to_owned()),
            (
                "integration",
                "integrations/slack-main".to_owned(),
                "a[href$=\"/ui/rules/slack-echo\"]".to_owned(),
            ),
            (
                "rules",
                "rules".to_owned(),
                "a[href$=\"/ui/rules/zendesk-urgent\"]".to_owned(),
            ),
            (
                "rule",
                "rules/zendesk-urgent".to_owned(),
                "a[href$=\"/ui/integrations/zendesk-main\"]".to_owned(),
            ),
            ("events", "events".to_owned(), "table#events".to_owned()),
            (
                "event-trace",
                format!("events/{event}"),
                "#trace-rules".to_owned(),
            ),
            (
                "dead-letters",
                "dead-letters".to_owned(),
                format!("table#dead-letters tr[data-job=\"{}\"]", self.dead_job),
            ),
            ("audit", "audit".to_owned(), "main#main table".to_owned()),
            ("api", "api".to_owned(), "main#main code".to_owned()),
        ]
        .into_iter()
        .map(|(name, path, shows)| (name, self.ui(&path), shows))
        .collect()
    }
}

/// Presses `keys` (characters, or [`Key`]s as characters) one after the other, on whatever has
/// the focus: the keyboard, not an element.
async fn press(browser: &Browser, keys: &str) {
    let mut actions = KeyActions::new("keyboard".to_owned());
    for key in keys.chars() {
        actions = actions
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
    }
    browser
        .client
        .perform_actions(actions)
        .await
        .expect("press keys");
}

/// The `id` of the focused element.
async fn focused(browser: &Browser) -> String {
    browser
        .script("return document.activeElement ? document.activeElement.id : ''")
        .await
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Presses Tab until the element with `id` has the focus (at most 20 times).
async fn tab_to(browser: &Browser, id: &str) {
    let mut tabs = 0;
    while focused(browser).await != id {
        tabs += 1;
        assert!(tabs <= 20, "Tab never reaches #{id}");
        press(browser, &Key::Tab.to_string()).await;
    }
}

/// Signs in on the login page by clicking, and waits for a console page.
async fn sign_in(browser: &Browser, base: &str, token: &str) {
    browser.open(&format!("{base}/ui/login")).await;
    browser
        .find("form#login #token")
        .await
        .send_keys(token)
        .await
        .unwrap();
    browser.find("#sign-in").await.click().await.unwrap();
    browser.find("nav#nav").await;
}

/// `POST path` from the page with `fetch` (the page's origin and cookies), its form body
/// `body`; the answer's status.
async fn post_from_page(browser: &Browser, path: &str, body: &str) -> u64 {
    let status = browser
        .client
        .execute_async(
            "const [path, body, done] = arguments;
             fetch(path, {method: 'POST', body, redirect: 'manual',
                          headers: {'content-type': 'application/x-www-form-urlencoded'}})
               .then(r => done(r.status), e => done(String(e)));",
            vec![Value::from(path), Value::from(body)],
        )
        .await
        .expect("fetch from the page");
    status
        .as_u64()
        .unwrap_or_else(|| panic!("POST {path}: {status}"))
}

/// The page's CSRF token (the sign-out form's).
async fn page_csrf(browser: &Browser) -> String {
    browser
        .find("form#sign-out input[type=hidden][name=csrf]")
        .await
        .attr("value")
        .await
        .unwrap()
        .expect("a csrf value")
}

/// Opens every page at both widths: each has `<main id="main">` and an `<h1>`, shows no secret
/// and, 360 px wide, no horizontal overflow; screenshots named `<prefix>-<page>-<width>.png`.
/// Returns the pages' HTML, and what overflows at 360 px (checked at the test's end, so that a
/// layout problem does not hide the rest).
async fn every_page(
    browser: &Browser,
    scene: &Scene,
) -> (Vec<(&'static str, String)>, Vec<String>) {
    let secrets = [
        ADMIN,
        READ,
        ZD_SECRET,
        FD_SECRET,
        SLACK_SIGNING,
        BOT_TOKEN,
        "zd-api-token",
        "fd-api-key",
    ];
    let session = browser
        .client
        .get_named_cookie("supportopsd_session")
        .await
        .expect("the session cookie");
    let mut sources = Vec::new();
    let mut overflows = Vec::new();
    for (name, url, shows) in scene.pages() {
        browser.open(&url).await;
        browser.find("main#main h1").await;
        let title = browser.text("main#main h1").await;
        assert!(
            !title.to_lowercase().contains("not found"),
            "{name} ({url}) is not there: {title}"
        );
        browser.find(&shows).await;
        let html = browser.client.source().await.unwrap();
        for secret in secrets.iter().copied().chain([session.value()]) {
            assert!(!html.contains(secret), "{name} shows a secret: {html}");
        }
        for width in [WIDE, NARROW] {
            browser.resize(width).await;
            let shot = browser.screenshot(name).await;
            if width == NARROW
                && let Some(overflow) = browser.overflows().await
            {
                overflows.push(format!("{name} ({}): {overflow}", shot.display()));
            }
        }
        browser.resize(WIDE).await;
        sources.push((name, html));
    }
    (sources, overflows)
}

/// Fails when a page was wider than the phone's viewport.
fn assert_no_overflow(overflows: &[String]) {
    assert!(
        overflows.is_empty(),
        "pages wider than {NARROW} px (a horizontal scroll bar):\n{}",
        overflows.join("\n")
    );
}

/// The admin: signs in with the keyboard alone, sees every integration, reads why a rule did
/// not fire, replays a dead letter and sees it succeed; a POST without (or with a wrong) CSRF
/// token is refused; every page is photographed at both widths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_admin_signs_in_by_keyboard_reads_why_a_rule_did_not_fire_and_replays_a_dead_letter()
 {
    let Some(browser) = Browser::start("admin").await else {
        return;
    };
    let scene = Scene::start().await;

    // Signed out, the console sends to the login page.
    browser.open(&scene.ui("")).await;
    browser.find("form#login").await;
    for width in [WIDE, NARROW] {
        browser.resize(width).await;
        if width == NARROW {
            let overflow = browser.overflows().await;
            assert_eq!(overflow, None, "the login page is wider than {NARROW} px");
        }
        browser.screenshot("login").await;
    }
    browser.resize(WIDE).await;

    // A wrong token is refused with a message, and the form is offered again.
    browser
        .find("#token")
        .await
        .send_keys("not-the-token")
        .await
        .unwrap();
    browser.find("#sign-in").await.click().await.unwrap();
    let error = browser.text("#login-error").await;
    assert!(!error.is_empty());
    assert!(
        !browser
            .client
            .source()
            .await
            .unwrap()
            .contains("not-the-token")
    );

    // Keyboard only: from nothing focused, Tab to the token field, type it, Tab to the button,
    // Enter.
    browser.open(&scene.ui("login")).await;
    browser.find("form#login").await;
    browser
        .script("document.activeElement && document.activeElement.blur(); return true")
        .await;
    tab_to(&browser, "token").await;
    press(&browser, ADMIN).await;
    tab_to(&browser, "sign-in").await;
    press(&browser, &Key::Enter.to_string()).await;
    browser.find("nav#nav").await;
    browser.find("table#integrations").await;

    // The session cookie: HttpOnly, SameSite=Strict.
    let cookie = browser
        .client
        .get_named_cookie("supportopsd_session")
        .await
        .expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert_eq!(
        format!("{:?}", cookie.same_site()),
        "Some(Strict)",
        "{cookie:?}"
    );

    // Every integration is on the overview, with its health and sync.
    let integrations = scene.daemon.get_json("/api/integrations").await;
    let ids: Vec<&str> = integrations["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{integrations}");
    for id in &ids {
        let row = format!("table#integrations tr[data-integration=\"{id}\"]");
        assert!(!browser.text(&format!("{row} .health")).await.is_empty());
        assert!(!browser.text(&format!("{row} .sync")).await.is_empty());
    }
    assert_eq!(
        browser
            .find_all("table#integrations tr[data-integration]")
            .await
            .len(),
        ids.len()
    );
    assert!(!browser.find_all("svg.chart").await.is_empty(), "no chart");

    // A POST without the CSRF token, or with another one, is refused and changes nothing.
    let test_path = "/ui/integrations/slack-main/test";
    assert_eq!(post_from_page(&browser, test_path, "").await, 403);
    assert_eq!(
        post_from_page(&browser, test_path, "csrf=forged-token").await,
        403
    );
    let replay_path = format!("/ui/dead-letters/{}/replay", scene.dead_job);
    assert_eq!(post_from_page(&browser, &replay_path, "").await, 403);
    let dead = scene.daemon.get_json("/api/jobs/dead").await;
    assert_eq!(dead["dead"].as_array().unwrap().len(), 1, "{dead}");

    // The integration page's "test connection" answers there.
    browser.open(&scene.ui("integrations/slack-main")).await;
    browser
        .find("#test-connection")
        .await
        .click()
        .await
        .unwrap();
    let result = browser.text("#test-result").await;
    assert!(!result.is_empty());

    // From the events list to the delivered ticket's trace: the urgent rule did not fire, and
    // the trace says which condition failed with the value it saw.
    browser.open(&scene.ui("events")).await;
    browser.find("form#event-filters").await;
    let row = format!("table#events tr[data-event=\"{}\"]", scene.delivered);
    browser
        .find(&format!(
            "{row} a[href$=\"/ui/events/{}\"]",
            scene.delivered
        ))
        .await
        .click()
        .await
        .unwrap();
    let why = browser
        .text("#trace-rules [data-rule=\"zendesk-urgent\"][data-verdict=\"no_match\"]")
        .await;
    assert!(
        why.contains("priority") && why.contains("urgent") && why.contains("normal"),
        "the explanation names the failing condition and the value seen: {why}"
    );
    browser
        .find("#trace-rules [data-rule=\"zendesk-to-slack\"][data-verdict=\"matched\"]")
        .await;
    browser.find("#trace-jobs").await;
    browser.find("#trace-audit").await;

    // Every page, at both widths (before the replay: the dead letter is on its page).
    let (pages, overflows) = every_page(&browser, &scene).await;
    let mutating = |name: &str| {
        pages
            .iter()
            .find(|(n, _)| *n == name)
            .is_some_and(|(_, html)| html.contains("data-mutates"))
    };
    assert!(mutating("integration") && mutating("dead-letters"));

    // The dead letter is replayed from its page, and succeeds.
    let before = scene.fake.requests_to("chat.postMessage").len();
    browser.open(&scene.ui("dead-letters")).await;
    browser
        .find(&format!(
            "table#dead-letters tr[data-job=\"{}\"] button.replay",
            scene.dead_job
        ))
        .await
        .click()
        .await
        .unwrap();
    assert!(!browser.text("#flash").await.is_empty());
    let mut outcome = Value::Null;
    for _ in 0..600 {
        let trace = scene
            .daemon
            .get_json("/api/events?integration=zendesk-main&limit=10")
            .await;
        outcome = trace["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == scene.dead_event.as_str())
            .map(|e| e["outcome"].clone())
            .unwrap_or(Value::Null);
        if outcome == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outcome, "done", "the replayed job did not succeed");
    assert_eq!(scene.fake.requests_to("chat.postMessage").len(), before + 1);
    // The console shows it: no dead letter left, and the event's job done.
    browser.open(&scene.ui("dead-letters")).await;
    browser.find("main#main h1").await;
    assert!(
        browser
            .find_all("table#dead-letters tr[data-job]")
            .await
            .is_empty(),
        "the replayed job is still listed"
    );
    browser
        .open(&scene.ui(&format!("events/{}", scene.dead_event)))
        .await;
    let jobs = browser.text("#trace-jobs").await;
    assert!(jobs.to_lowercase().contains("done"), "{jobs}");

    println!("console screenshots: {}", browser.shots().display());
    browser.close().await;
    scene.daemon.kill().await;
    assert_no_overflow(&overflows);
}

/// The read-only token: every page, no control that changes anything, and its forged POSTs
/// (with its own CSRF token) are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_read_only_token_sees_every_page_without_mutating_controls_and_its_posts_are_refused()
 {
    let Some(browser) = Browser::start("read-only").await else {
        return;
    };
    let scene = Scene::start().await;
    sign_in(&browser, &scene.daemon.url, READ).await;

    let (pages, overflows) = every_page(&browser, &scene).await;
    for (name, html) in &pages {
        assert!(
            !html.contains("data-mutates"),
            "the read-only token sees a mutating control on {name}"
        );
    }
    // Nothing on the dead letters page replays, but the dead letter is listed.
    browser.open(&scene.ui("dead-letters")).await;
    browser
        .find(&format!(
            "table#dead-letters tr[data-job=\"{}\"]",
            scene.dead_job
        ))
        .await;
    assert!(browser.find_all("button.replay").await.is_empty());

    // Forged POSTs, carrying the session's own CSRF token, are refused and change nothing.
    let csrf = page_csrf(&browser).await;
    let body = format!("csrf={csrf}");
    let replay = format!("/ui/dead-letters/{}/replay", scene.dead_job);
    for path in [
        replay.as_str(),
        "/ui/dead-letters/replay-all",
        "/ui/integrations/slack-main/test",
    ] {
        assert_eq!(post_from_page(&browser, path, &body).await, 403, "{path}");
    }
    // A real form POST, built in the page like a forged button would send it.
    browser
        .script(&format!(
            "const f = document.createElement('form');
             f.method = 'post'; f.action = '{replay}';
             const i = document.createElement('input');
             i.type = 'hidden'; i.name = 'csrf'; i.value = '{csrf}';
             f.appendChild(i); document.body.appendChild(f); f.submit(); return true;"
        ))
        .await;
    browser.find("main#main h1").await;
    let refused = browser.text("main#main").await;
    assert!(!refused.is_empty());
    let dead = scene.daemon.get_json("/api/jobs/dead").await;
    assert_eq!(dead["dead"].as_array().unwrap().len(), 1, "{dead}");
    assert_eq!(scene.fake.requests_to("chat.postMessage").len(), 3);

    // Signing out ends the session: the console sends to the login page again.
    browser.open(&scene.ui("")).await;
    browser
        .find("form#sign-out button")
        .await
        .click()
        .await
        .unwrap();
    browser.find("form#login").await;
    browser.open(&scene.ui("events")).await;
    browser.find("form#login").await;

    browser.close().await;
    scene.daemon.kill().await;
    assert_no_overflow(&overflows);
}

/// The README's pictures, from `supportopsd demo` (six platforms, a minute of its events):
/// the overview, and the trace of an event where one rule fired and another did not. Written to
/// `docs/`, then made smaller with Debian's `pngquant` and `optipng` when they are installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "rewrites docs/console-*.png from the demo: cargo test --test integration console_docs -- --ignored"]
async fn console_docs_screenshots_from_the_demo() {
    let Some(browser) = Browser::start("docs").await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut demo = tokio::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--every",
            "2",
        ])
        .env("TMPDIR", tmp.path())
        .env_remove("SUPPORTOPSD_ADMIN_TOKEN")
        .env_remove("SUPPORTOPSD_READ_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(demo.stdout.take().unwrap()));
    let token = loop {
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("the demo printed its token in time")
            .unwrap()
            .expect("the demo printed its token");
        if let Some(t) = line.split("SUPPORTOPSD_ADMIN_TOKEN=").nth(1) {
            break t.trim().to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let token = token.clone();
        let url = url.clone();
        async move {
            client
                .get(format!("{url}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    // Most of a minute of the demo (every platform's events, a retry and a dead letter), then
    // an event where a rule fired and another did not (else one where a rule did not fire).
    tokio::time::sleep(Duration::from_secs(40)).await;
    let mut traced = None;
    let mut seen = Value::Null;
    for _ in 0..10 {
        let events = get("/api/events?limit=100".to_owned()).await;
        let mut fallback = None;
        for event in events["events"].as_array().into_iter().flatten() {
            let Some(id) = event["id"].as_str() else {
                continue;
            };
            let explain = get(format!("/api/events/{id}/explain")).await;
            let outcomes: Vec<&str> = explain["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["outcome"].as_str())
                .collect();
            if outcomes.contains(&"no_match") {
                if outcomes.contains(&"matched") {
                    traced = Some(id.to_owned());
                    break;
                }
                fallback.get_or_insert_with(|| id.to_owned());
            }
            seen = explain;
        }
        traced = traced.or(fallback);
        if traced.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let traced = traced.unwrap_or_else(|| {
        let seen = seen.to_string();
        panic!(
            "no event with a rule that did not fire; the last explanation: {}",
            &seen[..seen.len().min(2000)]
        )
    });

    sign_in(&browser, &url, &token).await;
    browser.find("table#integrations").await;
    docs_screenshot(&browser, "console-overview.png").await;
    browser.open(&format!("{url}/ui/events/{traced}")).await;
    browser
        .find("#trace-rules [data-verdict=\"no_match\"]")
        .await;
    docs_screenshot(&browser, "console-trace.png").await;
    browser.close().await;
    daemon_support_signal(&demo, "INT");
    let _ = tokio::time::timeout(Duration::from_secs(30), demo.wait()).await;
}

/// Sends `signal` to a child process.
fn daemon_support_signal(child: &tokio::process::Child, signal: &str) {
    if let Some(pid) = child.id() {
        crate::daemon_support::signal(pid, signal);
    }
}

/// Writes the page (1280 px wide, at most 1600 high) as `docs/<name>`, made smaller with
/// `pngquant` and `optipng` when they are installed.
async fn docs_screenshot(browser: &Browser, name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    browser.resize(WIDE).await;
    browser.fit_height(1600).await;
    let png = browser.client.screenshot().await.expect("screenshot");
    browser.resize(WIDE).await;
    std::fs::write(&path, png).expect("write the docs screenshot");
    let quantized = std::process::Command::new("pngquant")
        .args(["--force", "--quality", "65-90", "--strip", "--output"])
        .arg(&path)
        .arg(&path)
        .status()
        .is_ok_and(|s| s.success());
    let optimised = std::process::Command::new("optipng")
        .args(["-quiet", "-o2"])
        .arg(&path)
        .status()
        .is_ok_and(|s| s.success());
    println!(
        "wrote {} ({} bytes{})",
        path.display(),
        std::fs::metadata(&path).unwrap().len(),
        if quantized && optimised {
            ""
        } else {
            "; install pngquant and optipng to make it smaller"
        }
    );
}
