//! The operator console over real HTTP against a daemon with the fake Slack: sign-in with the
//! admin, read-only and wrong tokens (audited, never the token); the cookie's attributes
//! (`Secure` with an https public URL); the redirect of a signed-out page; every page for both
//! tokens with its content and security headers; the read-only session sees no control that
//! changes anything and its POSTs are refused; a POST without or with a wrong CSRF token or
//! from a foreign origin is refused and changes nothing; a dead letter replayed through the
//! console runs again; no secret (credentials, tokens, session ids) on any page; hostile event
//! fields and ids are escaped; the tokenless loopback mode's sign-in.

use std::time::Duration;

use serde_json::Value;
use supportopsd::platforms::slack::fake::{Failure, FakeSlack};

use crate::daemon_support::*;

const ADMIN: &str = "console-admin-token-0123456789";
const READ: &str = "console-read-token-9876543210";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// `POST` of a form; returns the answer.
async fn post_form(
    client: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    pairs: &[(&str, &str)],
    origin: Option<&str>,
) -> reqwest::Response {
    let mut req = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(pairs));
    if let Some(c) = cookie {
        req = req.header("cookie", format!("supportopsd_session={c}"));
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.unwrap()
}

/// Signs in with `token`; returns the session id from the cookie and the whole `Set-Cookie`.
async fn sign_in(client: &reqwest::Client, daemon: &Daemon, token: &str) -> (String, String) {
    let r = post_form(
        client,
        &format!("{}/ui/login", daemon.url),
        None,
        &[("token", token), ("next", "/ui/events")],
        None,
    )
    .await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(r.headers()["location"], "/ui/events");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let id = set
        .strip_prefix("supportopsd_session=")
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 64, "{set}");
    (id, set)
}

/// `GET` of a console page with a session; returns the status, the headers and the body.
async fn page(
    client: &reqwest::Client,
    daemon: &Daemon,
    session: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let r = client
        .get(format!("{}{path}", daemon.url))
        .header("cookie", format!("supportopsd_session={session}"))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let headers = r.headers().clone();
    (code, headers, r.text().await.unwrap())
}

/// The value of the hidden `csrf` field on a page.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

async fn dead_jobs(daemon: &Daemon) -> Vec<Value> {
    daemon.get_json("/api/jobs/dead").await["dead"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn console_sign_in_pages_csrf_replay_and_no_secrets() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    // A rule whose name and description are hostile markup (anyone with commit access writes
    // manifests): every page that shows them escapes them.
    repo.file(
        "rules/hostile.toml",
        r##"id = "hostile-names"
name = "<script>alert('name')</script>"
description = "<img src=x onerror=alert(2)>"
enabled = false
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#support"
message = "<script>alert('param')</script>"
"##,
    );
    repo.commit("a rule with hostile names");
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn_with_env(
        repo.path(),
        state.path(),
        &["--retry-schedule", "1s"],
        &[
            ("SUPPORTOPSD_ADMIN_TOKEN", ADMIN),
            ("SUPPORTOPSD_READ_TOKEN", READ),
        ],
    )
    .await;
    let http = client();
    let api = reqwest::Client::new();

    // Some history: a delivered ticket with a hostile subject, and a dead letter.
    let hostile = "<script>alert('x')</script> & \"quoted\"";
    assert_eq!(
        post_zendesk(
            &api,
            &daemon,
            zendesk_ticket(101, hostile),
            "<img src=x onerror=alert(1)>"
        )
        .await,
        200
    );
    eventually(30, "the message", || {
        fake.requests_to("chat.postMessage").len() == 1
    })
    .await;
    fake.fail_next("chat.postMessage", Failure::ServerError, 1);
    assert_eq!(
        post_zendesk(&api, &daemon, zendesk_ticket(102, "Doomed"), "inv-2").await,
        200
    );
    for _ in 0..300 {
        if !dead_jobs(&daemon).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = dead_jobs(&daemon).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let job = dead[0]["job"]["id"].as_u64().unwrap();
    let events = daemon.get_json("/api/events").await;
    let hostile_event = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["outcome"] == "done")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Signed out: pages lead to the sign-in form, with where to come back to.
    let r = http
        .get(format!("{}/ui/events?outcome=dead", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/ui/login?next=%2Fui%2Fevents%3Foutcome%3Ddead"
    );
    let r = http.get(format!("{}/", daemon.url)).send().await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["location"].to_str().unwrap()
        ),
        (303, "/ui/")
    );
    let login = http
        .get(format!(
            "{}/ui/login?next=https://evil.example/",
            daemon.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let login = login.text().await.unwrap();
    assert!(login.contains("<form id=\"login\"") && login.contains("id=\"token\""));
    assert!(login.contains("id=\"sign-in\"") && !login.contains("evil.example"));
    assert!(
        !login.contains("without a token"),
        "an admin token is configured"
    );
    // A signed-out POST does nothing.
    let r = post_form(
        &http,
        &format!("{}/ui/dead-letters/{job}/replay", daemon.url),
        None,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status(), 403);

    // A wrong token: refused, said, audited without the token.
    let r = post_form(
        &http,
        &format!("{}/ui/login", daemon.url),
        None,
        &[("token", "guess-guess")],
        None,
    )
    .await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("id=\"login-error\""));

    let (admin, set) = sign_in(&http, &daemon, ADMIN).await;
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "the public URL is http: {set}");
    let (read, _) = sign_in(&http, &daemon, READ).await;
    assert_ne!(admin, read);

    let job_path = format!("/ui/dead-letters/{job}/replay");
    let pages = [
        "/ui/".to_owned(),
        "/ui/integrations/zendesk-main".to_owned(),
        "/ui/integrations/slack-main".to_owned(),
        "/ui/rules".to_owned(),
        "/ui/rules/zendesk-to-slack".to_owned(),
        "/ui/rules/hostile-names".to_owned(),
        "/ui/rules?q=hostile".to_owned(),
        "/ui/events".to_owned(),
        "/ui/events?integration=zendesk-main&outcome=dead".to_owned(),
        format!("/ui/events/{hostile_event}"),
        "/ui/dead-letters".to_owned(),
        "/ui/audit".to_owned(),
        "/ui/audit?resource_type=job".to_owned(),
        "/ui/api".to_owned(),
    ];
    let secrets = [
        ADMIN,
        READ,
        &admin,
        &read,
        BOT_TOKEN,
        SLACK_SIGNING,
        APP_CONFIG_TOKEN,
        ZD_SECRET,
        FD_SECRET,
        "zd-api-token",
        "fd-api-key",
        "ops@acme.example",
    ];
    for (session, admin_session) in [(&admin, true), (&read, false)] {
        for path in &pages {
            let (code, headers, html) = page(&http, &daemon, session, path).await;
            assert_eq!(code, 200, "{path}: {html}");
            assert!(
                html.contains("<main id=\"main\"") && html.contains("<h1>"),
                "{path}"
            );
            assert!(html.contains("<nav id=\"nav\""), "{path}");
            assert!(html.contains("<form id=\"sign-out\""), "{path}");
            let csp = headers["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
            assert!(!csp.contains("unsafe-inline"));
            assert_eq!(headers["x-frame-options"], "DENY");
            assert_eq!(headers["referrer-policy"], "same-origin");
            assert_eq!(headers["cache-control"], "no-store");
            assert!(
                headers["server-timing"]
                    .to_str()
                    .unwrap()
                    .starts_with("render;dur=")
            );
            for secret in secrets {
                // The API reference's example answers use the same made-up address as the
                // test repository's (plain, not secret) Zendesk e-mail credential.
                if path == "/ui/api" && secret == "ops@acme.example" {
                    continue;
                }
                assert!(!html.contains(secret), "{path} shows {secret}");
            }
            assert!(!html.contains("<script>alert"), "{path}");
            assert!(!html.contains("<img"), "{path}");
            // Every form that changes something carries the CSRF token; read-only sees none.
            if admin_session {
                if path.starts_with("/ui/dead-letters") || path.starts_with("/ui/integrations/") {
                    assert!(html.contains("data-mutates"), "{path}");
                }
            } else {
                let without_sign_out = html.replace("<form id=\"sign-out\"", "");
                assert!(!without_sign_out.contains("data-mutates"), "{path}");
                assert!(!html.contains("class=\"replay\""), "{path}");
                assert!(!html.contains("id=\"test-connection\""), "{path}");
            }
            for form in html.split("<form").skip(1) {
                let head = &form[..form.find('>').unwrap()];
                if head.contains("method=\"post\"") {
                    let body = &form[..form.find("</form>").unwrap()];
                    assert!(
                        body.contains("type=\"hidden\" name=\"csrf\""),
                        "{path}: {form}"
                    );
                }
            }
        }
    }

    // What each page shows.
    let (_, _, overview) = page(&http, &daemon, &admin, "/ui/").await;
    for id in ["zendesk-main", "freshdesk-main", "slack-main"] {
        assert!(
            overview.contains(&format!("data-integration=\"{id}\"")),
            "{id}"
        );
    }
    assert!(overview.contains("id=\"integrations\""));
    assert!(overview.contains("<svg class=\"chart\""));
    assert!(overview.contains("id=\"dead-count\">1<"), "one dead letter");
    assert!(
        overview.contains("<dd>a rule with hostile names</dd>"),
        "the applied commit's message"
    );
    let (_, _, trace) = page(
        &http,
        &daemon,
        &read,
        &format!("/ui/events/{hostile_event}"),
    )
    .await;
    assert!(trace.contains("id=\"trace-rules\"") && trace.contains("id=\"trace-jobs\""));
    assert!(trace.contains("id=\"trace-audit\""));
    assert!(trace.contains("data-rule=\"zendesk-to-slack\" data-verdict=\"matched\""));
    assert!(
        trace.contains("&lt;script&gt;alert("),
        "the subject, escaped"
    );
    let (_, _, list) = page(&http, &daemon, &read, "/ui/events").await;
    assert!(list.contains("id=\"events\""));
    assert!(list.contains(&format!("data-event=\"{hostile_event}\"")));
    assert!(list.contains(&format!("href=\"/ui/events/{hostile_event}\"")));
    assert!(list.contains("id=\"event-filters\""));
    let (_, _, rules) = page(&http, &daemon, &read, "/ui/rules").await;
    assert!(rules.contains("data-rule=\"zendesk-to-slack\""));
    assert!(
        rules.contains("&lt;script&gt;alert('name')"),
        "the hostile name, escaped"
    );
    // The rule in words: its trigger and its action.
    assert!(
        rules.contains("When ") && rules.contains("#support"),
        "{rules}"
    );
    let (_, _, integration) = page(&http, &daemon, &admin, "/ui/integrations/zendesk-main").await;
    assert!(integration.contains("id=\"test-connection\""));
    assert!(integration.contains("api_token") && integration.contains("(secret, set)"));
    let (_, _, reference) = page(&http, &daemon, &read, "/ui/api").await;
    assert!(
        reference.contains("/api/events/{id}") && reference.contains("/api/jobs/{job_id}/replay")
    );
    let (code, _, bad) = page(&http, &daemon, &admin, "/ui/events?since=tomorrow").await;
    assert_eq!(code, 400);
    assert!(bad.contains("cannot be used"));

    // Hostile ids in paths are never echoed unescaped.
    for path in [
        "/ui/rules/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/ui/integrations/%3Cimg%20src%3Dx%3E",
        "/ui/events/%3Cb%3E",
    ] {
        let (code, _, html) = page(&http, &daemon, &admin, path).await;
        assert_eq!(code, 404, "{path}");
        assert!(!html.contains("<script>alert") && !html.contains("<img") && !html.contains("<b>"));
    }

    // The dead letter's page: admin has a replay button with the CSRF token.
    let (_, _, dead_page) = page(&http, &daemon, &admin, "/ui/dead-letters").await;
    assert!(dead_page.contains(&format!("data-job=\"{job}\"")));
    assert!(dead_page.contains("class=\"replay\""));
    let csrf = csrf_of(&dead_page);
    let url = format!("{}{job_path}", daemon.url);
    // Refused, and nothing done: read-only (even with a CSRF token of its own), no token, a
    // wrong one, another session's, a foreign origin.
    let (_, _, read_page) = page(&http, &daemon, &read, "/ui/rules").await;
    let read_csrf = csrf_of(&read_page);
    for (session, token, origin) in [
        (&read, read_csrf.as_str(), None),
        (&admin, "", None),
        (&admin, "0000", None),
        (&admin, read_csrf.as_str(), None),
        (&admin, csrf.as_str(), Some("https://evil.example")),
        (&admin, csrf.as_str(), Some("null")),
    ] {
        let pairs: Vec<(&str, &str)> = if token.is_empty() {
            vec![]
        } else {
            vec![("csrf", token)]
        };
        let r = post_form(&http, &url, Some(session), &pairs, origin).await;
        assert_eq!(r.status(), 403, "{token} {origin:?}");
        let body = r.text().await.unwrap().to_lowercase();
        assert!(body.contains("nothing was changed"), "{body}");
    }
    let r = post_form(
        &http,
        &format!("{}/ui/dead-letters/replay-all", daemon.url),
        Some(&read),
        &[("csrf", &read_csrf)],
        None,
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = post_form(
        &http,
        &format!("{}/ui/integrations/zendesk-main/test", daemon.url),
        Some(&read),
        &[("csrf", &read_csrf)],
        None,
    )
    .await;
    assert_eq!(r.status(), 403);
    assert_eq!(dead_jobs(&daemon).await.len(), 1, "nothing was replayed");

    // The replay, as the page sends it (same origin): back to the list with a flash, and the
    // job runs again and succeeds.
    let r = post_form(
        &http,
        &url,
        Some(&admin),
        &[("csrf", &csrf)],
        Some(&daemon.url),
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui/dead-letters");
    let (_, _, after) = page(&http, &daemon, &admin, "/ui/dead-letters").await;
    assert!(after.contains("id=\"flash\""), "{after}");
    assert!(after.contains(&format!("Job {job}")));
    eventually(30, "the replayed message", || {
        fake.requests_to("chat.postMessage").len() >= 3
    })
    .await;
    for _ in 0..100 {
        if dead_jobs(&daemon).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dead_jobs(&daemon).await.is_empty());
    let (_, _, flashless) = page(&http, &daemon, &admin, "/ui/dead-letters").await;
    assert!(!flashless.contains("id=\"flash\""), "a flash is shown once");

    // Test connection: the result on the page.
    let (_, _, zd) = page(&http, &daemon, &admin, "/ui/integrations/slack-main").await;
    let r = post_form(
        &http,
        &format!("{}/ui/integrations/slack-main/test", daemon.url),
        Some(&admin),
        &[("csrf", &csrf_of(&zd))],
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let tested = r.text().await.unwrap();
    assert!(tested.contains("id=\"test-result\""), "{tested}");
    assert!(tested.contains("Connection works"), "{tested}");

    // Sign-ins, failures and the replay are audited with the console as the way in, never a
    // token; sign-out ends the session.
    let audit = daemon
        .get_json("/api/audit/logs?resource_type=console")
        .await;
    let text = audit.to_string();
    assert!(text.contains("console_signed_in") && text.contains("console_sign_in_failed"));
    assert!(!text.contains(ADMIN) && !text.contains(READ) && !text.contains("guess-guess"));
    let jobs = daemon.get_json("/api/audit/logs?resource_type=job").await;
    assert!(
        jobs["records"].as_array().unwrap().iter().any(|r| {
            r["kind"]["type"] == "job_replayed"
                && r["detail"]["by"] == "console"
                && r["detail"]["token"] == "admin"
        }),
        "{jobs}"
    );
    let (_, _, any) = page(&http, &daemon, &admin, "/ui/").await;
    let r = post_form(
        &http,
        &format!("{}/ui/logout", daemon.url),
        Some(&admin),
        &[("csrf", &csrf_of(&any))],
        None,
    )
    .await;
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (code, _, _) = page(&http, &daemon, &admin, "/ui/").await;
    assert_eq!(code, 303, "signed out");
    let audit = daemon
        .get_json("/api/audit/logs?resource_type=console")
        .await;
    assert!(audit.to_string().contains("console_signed_out"));

    // Assets: hashed names, cached for long, with an ETag.
    let at = overview.find("/ui/assets/console.").unwrap();
    let css = &overview[at..];
    let css = &css[..css.find('"').unwrap()];
    let r = http
        .get(format!("{}{css}", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let r = http
        .get(format!("{}{css}", daemon.url))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);

    // Failed sign-ins are limited per address.
    let mut limited = false;
    for _ in 0..10 {
        let r = post_form(
            &http,
            &format!("{}/ui/login", daemon.url),
            None,
            &[("token", "nope")],
            None,
        )
        .await;
        if r.status() == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "too many failures are refused");
}

#[tokio::test]
async fn the_cookie_is_secure_behind_https_and_tokenless_mode_signs_in_locally() {
    let fake = FakeSlack::start(BOT_TOKEN, None).await;
    let repo = repo(&fake.base_url());
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(
        repo.path(),
        state.path(),
        &["--public-url", "https://ops.example.com"],
    )
    .await;
    let http = client();
    let (_, set) = sign_in(&http, &daemon, TEST_ADMIN_TOKEN).await;
    assert!(set.contains("; Secure"), "{set}");
    drop(daemon);

    // No admin token: a local browser may sign in without one.
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::spawn(repo.path(), state.path(), &[]).await;
    assert!(daemon.token.is_none());
    let login = http
        .get(format!("{}/ui/login", daemon.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.contains("Sign in without a token"));
    // Not from a forwarded request.
    let r = http
        .post(format!("{}/ui/login", daemon.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", "203.0.113.9")
        .body("local=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = post_form(
        &http,
        &format!("{}/ui/login", daemon.url),
        None,
        &[("local", "1")],
        None,
    )
    .await;
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let id = set
        .strip_prefix("supportopsd_session=")
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let (code, _, html) = page(&http, &daemon, &id, "/ui/dead-letters").await;
    assert_eq!(code, 200);
    assert!(html.contains("Signed in locally"));
    // A refused newest revision is on the overview, with why; the applied one keeps running.
    repo.file(
        "rules/broken.toml",
        "id = \"broken\"\n[trigger]\nintegration = \"nowhere\"\n",
    );
    repo.commit("a <b>broken</b> rule");
    let r = daemon
        .api(&reqwest::Client::new(), reqwest::Method::POST, "/api/sync")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let (code, _, overview) = page(&http, &daemon, &id, "/ui/").await;
    assert_eq!(code, 200);
    assert!(overview.contains("id=\"refused\""), "{overview}");
    assert!(overview.contains("The newest revision was refused"));
    assert!(
        overview.contains("Author") && overview.contains("<dd>initial</dd>"),
        "the applied commit"
    );

    // The session is not usable through a non-loopback Host (DNS rebinding).
    let r = http
        .get(format!("{}/ui/", daemon.url))
        .header("cookie", format!("supportopsd_session={id}"))
        .header("host", "rebind.attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}
