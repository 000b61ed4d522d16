//! `supportopsd check-platform ID`: the real binary probes each platform's fake on loopback.
//! Every test checks the output, that the fake received nothing but reads, and that no secret
//! is printed; a fake made to differ from the connector's assumptions gives `differs` and
//! exit 1, a refused credential exit 2.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use supportopsd::manifest::IntegrationId;
use supportopsd::manifest::model::{Credential, Limits};
use supportopsd::platforms::PlatformKind;
use supportopsd::platforms::connector::{Connector, WebhookSync, WebhookTarget};
use supportopsd::secrets::{ResolveContext, Secret};

use crate::daemon_support::loopback_policy;
use crate::support::{Output, TestRepo};

/// Where the probes are told the daemon is reached (`--public-url`).
const PUBLIC: &str = "https://ops.example.com";

/// Runs `supportopsd --repo REPO check-platform ARGS… --policy <loopback>` with `env`.
async fn check(repo: &TestRepo, args: &[&str], env: &[(&str, &str)]) -> Output {
    let policy_dir = tempfile::tempdir().unwrap();
    let policy = loopback_policy(policy_dir.path());
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_supportopsd"));
    cmd.current_dir(repo.path())
        .arg("--repo")
        .arg(".")
        .arg("check-platform")
        .args(args)
        .arg("--policy")
        .arg(&policy)
        .env_remove("SUPPORTOPSD_KEY_FILE")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("SUPPORTOPSD_PUBLIC_URL")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("run supportopsd");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// No secret in what the command printed.
fn assert_no_secret(out: &Output, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !out.stdout.contains(s) && !out.stderr.contains(s),
            "secret printed:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
}

/// The verdict lines of the text output: `(verdict, assumption)`.
fn verdicts(out: &Output) -> Vec<(String, String)> {
    out.stdout
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("  ")?;
            let (v, rest) = l.split_once(' ')?;
            matches!(v, "matches" | "differs" | "unchecked")
                .then(|| (v.to_owned(), rest.trim().to_owned()))
        })
        .collect()
}

/// The verdict of the one assumption containing `needle`.
fn verdict_of(out: &Output, needle: &str) -> String {
    let found: Vec<String> = verdicts(out)
        .into_iter()
        .filter(|(_, a)| a.contains(needle))
        .map(|(v, _)| v)
        .collect();
    assert_eq!(found.len(), 1, "`{needle}` in:\n{}", out.stdout);
    found[0].clone()
}

fn integration(
    id: &str,
    platform: PlatformKind,
    credentials: &[(&str, &str)],
    base_url: String,
) -> supportopsd::manifest::Integration {
    supportopsd::manifest::Integration {
        id: IntegrationId::parse(id).unwrap(),
        platform,
        name: None,
        description: None,
        file: format!("integrations/{id}.toml"),
        credentials: credentials
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Credential::Plain((*v).to_owned())))
            .collect::<BTreeMap<_, _>>(),
        config: serde_json::Map::new(),
        webhook: None,
        base_url: Some(base_url),
        limits: Limits::default(),
    }
}

/// Registers `events` for `id` through the connector, as the daemon would.
async fn register(
    c: &dyn Connector,
    id: &str,
    platform: &str,
    events: &[&str],
    secret: Option<&str>,
) {
    let target = WebhookTarget {
        integration: IntegrationId::parse(id).unwrap(),
        url: format!("{PUBLIC}/api/webhooks/{platform}/{id}"),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        secret: secret.map(|s| Secret::from(s.to_owned())),
        previous: None,
    };
    let sync = c.sync_webhook(&target).await.unwrap();
    assert!(matches!(sync, WebhookSync::Registered { .. }), "{sync:?}");
}

fn no_env(_: &str) -> Option<String> {
    None
}

mod freshdesk {
    use super::*;
    use supportopsd::platforms::freshdesk::connector::connect_freshdesk;
    use supportopsd::platforms::freshdesk::fake::FakeFreshdesk;
    use supportopsd::platforms::freshdesk::registration::{TICKET_CREATION, TICKET_UPDATES};

    const KEY: &str = "fd-probe-api-key-77c1";
    const SECRET: &str = "fd-probe-shared-secret-41aa";

    fn repo(base: &str) -> TestRepo {
        let repo = TestRepo::new();
        repo.file(
            "integrations/freshdesk.toml",
            &format!(
                r#"id = "freshdesk-main"
platform = "freshdesk"
[credentials]
domain = "acme.freshdesk.com"
api_key = {{ env = "FD_KEY" }}
[webhook]
events = ["ticket_created", "ticket_resolved", "ticket_updated"]
secret = {{ env = "FD_WEBHOOK_SECRET" }}
[endpoint]
base_url = "{base}"
"#
            ),
        );
        repo
    }

    async fn registered() -> (FakeFreshdesk, TestRepo) {
        let fake = FakeFreshdesk::start(KEY).await;
        let i = integration(
            "freshdesk-main",
            PlatformKind::Freshdesk,
            &[("domain", "acme.freshdesk.com"), ("api_key", KEY)],
            fake.base_url(),
        );
        let c = connect_freshdesk(&i, &ResolveContext::new(None, &no_env)).unwrap();
        register(
            &c,
            "freshdesk-main",
            "freshdesk",
            &["ticket_created", "ticket_resolved", "ticket_updated"],
            Some(SECRET),
        )
        .await;
        fake.clear_requests();
        let repo = repo(&fake.base_url());
        (fake, repo)
    }

    fn only_reads(fake: &FakeFreshdesk) {
        let requests = fake.requests();
        assert!(!requests.is_empty());
        for r in requests {
            assert_eq!(r.method, reqwest::Method::GET, "{} {}", r.method, r.path);
        }
    }

    const ENV: &[(&str, &str)] = &[("FD_KEY", KEY), ("FD_WEBHOOK_SECRET", SECRET)];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_account_as_the_connector_assumes_matches_read_only() {
        let (fake, repo) = registered().await;
        let out = check(&repo, &["freshdesk-main", "--public-url", PUBLIC], ENV).await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        only_reads(&fake);
        assert_no_secret(&out, &[KEY, SECRET]);
        assert!(out.stdout.contains("nothing was changed"), "{}", out.stdout);
        for needle in [
            "belongs to an agent",
            "type 4 rules are listed as a JSON array",
            "type 4: `performer.type` is echoed",
            "type 1: `conditions[0].properties[0].value[0]` is echoed",
            "type 4: `events[0].to` is echoed",
            "type 1: `content_layout` is kept",
            "type 4: `content_layout` is kept",
            "type 4: the webhook content is echoed as sent",
            "type 1: the `x-supportopsd-token` custom header is kept",
            "type 4: the rule posts to this daemon",
            "type 1: the drift check sees this unchanged rule as unchanged",
            "type 4: the drift check sees this unchanged rule as unchanged",
        ] {
            assert_eq!(
                verdict_of(&out, needle),
                "matches",
                "{needle}\n{}",
                out.stdout
            );
        }
        // One ticket-creation rule: paging cannot show; two ticket-update rules: it does.
        assert_eq!(verdict_of(&out, "type 1 listing pages"), "unchecked");
        assert_eq!(verdict_of(&out, "type 4 listing pages"), "matches");

        // JSON: the same findings, counted.
        let out = check(&repo, &["freshdesk-main", "--format", "json"], ENV).await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["platform"], "freshdesk");
        assert_eq!(v["summary"]["differs"], 0);
        assert!(v["summary"]["matches"].as_u64().unwrap() >= 7, "{v}");
        let findings = v["findings"].as_array().unwrap();
        assert!(findings.iter().all(|f| f["verdict"] != "differs"));
        assert!(
            findings
                .iter()
                .any(|f| f["request"] == "GET /api/v2/agents/me")
        );
        only_reads(&fake);
        assert_no_secret(&out, &[KEY, SECRET]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn strings_for_numbers_and_a_hidden_header_match_and_an_edited_rule_differs() {
        let (fake, repo) = registered().await;
        // The fake already echoes numbers as strings and hides header values, as the review
        // expects of the real API: the drift check reads that as unchanged.
        let out = check(&repo, &["freshdesk-main"], ENV).await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("string \"3\""), "{}", out.stdout);
        for needle in [
            "type 4: `performer.type` is echoed",
            "type 4: `events[0].to` is echoed",
            "type 4: the `x-supportopsd-token` custom header is kept",
            "type 4: the drift check sees this unchanged rule as unchanged",
        ] {
            assert_eq!(
                verdict_of(&out, needle),
                "matches",
                "{needle}\n{}",
                out.stdout
            );
        }
        // Someone edits our resolved rules in the UI: the performer is now "agent" only.
        let resolved: Vec<i64> = fake
            .rules()
            .into_iter()
            .filter(|(t, r)| {
                *t == TICKET_UPDATES && r["name"].as_str().unwrap().contains(" ticket_resolved")
            })
            .map(|(_, r)| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(resolved.len(), 2, "a person rule and a System rule");
        for id in resolved {
            fake.edit_rule(TICKET_UPDATES, id, |r| {
                r["performer"]["type"] = json!("1");
            });
        }
        let out = check(&repo, &["freshdesk-main"], ENV).await;
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert_eq!(
            verdict_of(&out, "type 4: `performer.type` is echoed"),
            "differs"
        );
        assert_eq!(
            verdict_of(
                &out,
                "type 4: the drift check sees this unchanged rule as unchanged"
            ),
            "differs"
        );
        // The ticket-creation rule was left as registered.
        assert_eq!(
            verdict_of(
                &out,
                "type 1: the drift check sees this unchanged rule as unchanged"
            ),
            "matches"
        );
        only_reads(&fake);
        assert_no_secret(&out, &[KEY, SECRET]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paging_shows_with_two_rules_or_more() {
        let (fake, repo) = registered().await;
        // A ticket-creation rule someone made by hand: paging can show for type 1 now.
        fake.add_rule(
            TICKET_CREATION,
            json!({"name": "Route VIPs", "active": true, "position": 2}),
        );
        let out = check(&repo, &["freshdesk-main"], ENV).await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert_eq!(verdict_of(&out, "type 1 listing pages"), "matches");
        // Where ours sits among them is reported (the execution mode is not readable).
        assert_eq!(
            verdict_of(&out, "our ticket-creation rule runs whatever"),
            "unchecked"
        );
        assert!(
            out.stdout.contains("position 1 of 2 rule(s)"),
            "{}",
            out.stdout
        );
        only_reads(&fake);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_key_or_an_unknown_integration_cannot_run() {
        let (fake, repo) = registered().await;
        let out = check(
            &repo,
            &["freshdesk-main"],
            &[("FD_KEY", "wrong-key-0000"), ("FD_WEBHOOK_SECRET", SECRET)],
        )
        .await;
        assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains("could not run"), "{}", out.stderr);
        assert_no_secret(&out, &["wrong-key-0000", SECRET]);
        only_reads(&fake);

        let out = check(&repo, &["freshdesk-mian"], ENV).await;
        assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains("did you mean `freshdesk-main`"),
            "{}",
            out.stderr
        );

        // A missing credential: the connector cannot be built.
        let out = check(&repo, &["freshdesk-main", "--format", "json"], &[]).await;
        assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["ran"], false);
        assert!(v["error"].as_str().unwrap().contains("FD_KEY"), "{v}");
    }
}

mod slack {
    use super::*;
    use supportopsd::platforms::fakekit::{FakeServer, json_response};
    use supportopsd::platforms::slack::fake::{self, FakeSlack};

    const BOT: &str = "xoxb-probe-bot-token-5521";
    const CONFIG: &str = "xoxe.xoxp-probe-app-config-token-88";
    const SIGNING: &str = "slack-probe-signing-secret-1f";

    fn repo(base: &str) -> TestRepo {
        let repo = TestRepo::new();
        repo.file(
            "integrations/slack.toml",
            &format!(
                r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = {{ env = "SLACK_BOT_TOKEN" }}
signing_secret = {{ env = "SLACK_SIGNING_SECRET" }}
app_config_token = {{ env = "SLACK_APP_CONFIG_TOKEN" }}
app_id = "{}"
[webhook]
events = ["app_mention", "message"]
[endpoint]
base_url = "{base}"
"#,
                fake::APP_ID
            ),
        );
        repo
    }

    const ENV: &[(&str, &str)] = &[
        ("SLACK_BOT_TOKEN", BOT),
        ("SLACK_SIGNING_SECRET", SIGNING),
        ("SLACK_APP_CONFIG_TOKEN", CONFIG),
    ];

    /// Only `auth.test` and `apps.manifest.export`: Slack's reads.
    fn only_reads(methods: Vec<String>) {
        assert!(!methods.is_empty());
        for m in methods {
            assert!(
                m == "auth.test" || m == "apps.manifest.export",
                "a probe called {m}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_registered_app_matches_and_a_fresh_one_differs() {
        let fake = FakeSlack::start(BOT, None).await;
        fake.accept_app_config_token(CONFIG);
        let repo = repo(&fake.base_url());

        // Before registration: the app's manifest still points elsewhere.
        let out = check(&repo, &["slack-main", "--public-url", PUBLIC], ENV).await;
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert_eq!(
            verdict_of(&out, "names the bot user and the bot"),
            "matches"
        );
        assert_eq!(
            verdict_of(&out, "app configuration token is accepted"),
            "matches"
        );
        assert_eq!(verdict_of(&out, "request URL is this daemon's"), "differs");
        assert_eq!(
            verdict_of(&out, "bot events the integration needs"),
            "differs"
        );
        // The sync merges: the app's own `app_home_opened` stays.
        assert_eq!(
            verdict_of(&out, "keeps the app's other bot events"),
            "matches"
        );
        assert!(
            out.stdout.contains("none would be removed"),
            "{}",
            out.stdout
        );
        assert_eq!(verdict_of(&out, "bot scopes its events need"), "matches");
        only_reads(
            fake.requests()
                .iter()
                .map(|r| r.api_method().to_owned())
                .collect(),
        );
        assert_no_secret(&out, &[BOT, CONFIG, SIGNING]);

        // Registered as the daemon does it: everything checked matches.
        let i = integration(
            "slack-main",
            PlatformKind::Slack,
            &[
                ("bot_token", BOT),
                ("app_config_token", CONFIG),
                ("app_id", fake::APP_ID),
            ],
            fake.base_url(),
        );
        let c = supportopsd::platforms::slack::connector::connect(
            &i,
            &ResolveContext::new(None, &no_env),
        )
        .unwrap();
        register(
            c.as_ref(),
            "slack-main",
            "slack",
            &["app_mention", "message"],
            None,
        )
        .await;
        let before = fake.manifest();
        let n = fake.requests().len();
        let out = check(
            &repo,
            &["slack-main", "--public-url", PUBLIC, "--format", "json"],
            ENV,
        )
        .await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["summary"]["differs"], 0, "{v}");
        assert_eq!(fake.manifest(), before);
        only_reads(
            fake.requests()[n..]
                .iter()
                .map(|r| r.api_method().to_owned())
                .collect(),
        );
        assert_no_secret(&out, &[BOT, CONFIG, SIGNING]);
    }

    /// An expired app configuration token (Slack's `token_expired`, 12 hours after it was
    /// issued) differs, with the rotation hint; the bot token still works.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_app_configuration_token_differs_with_the_rotation_hint() {
        let server = FakeServer::start(|r| {
            let answer = if r.path.ends_with("/auth.test") {
                json!({"ok": true, "user_id": fake::BOT_USER_ID, "bot_id": fake::BOT_ID,
                       "team": fake::TEAM_NAME, "user": "supportopsd"})
            } else {
                json!({"ok": false, "error": "token_expired"})
            };
            json_response(reqwest::StatusCode::OK, &answer)
        })
        .await;
        let repo = repo(&format!("{}/api/", server.origin()));
        let out = check(&repo, &["slack-main"], ENV).await;
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert_eq!(
            verdict_of(&out, "app configuration token is accepted"),
            "differs"
        );
        assert!(
            out.stdout.contains("token_expired") && out.stdout.contains("tooling.tokens.rotate"),
            "{}",
            out.stdout
        );
        let methods: Vec<String> = server
            .requests()
            .iter()
            .map(|r| r.path.rsplit('/').next().unwrap_or("").to_owned())
            .collect();
        only_reads(methods);
        assert_no_secret(&out, &[BOT, CONFIG, SIGNING]);

        // With a refresh token the daemon rotates the pair and keeps the current one in its
        // state: the configured token being spent is expected, not a difference, and the
        // probe does not rotate (that would spend the daemon's refresh token).
        const REFRESH: &str = "xoxe-1-probe-refresh-token-77";
        let toml = std::fs::read_to_string(repo.path().join("integrations/slack.toml")).unwrap();
        repo.file(
            "integrations/slack.toml",
            &toml.replace(
                "app_id =",
                "app_config_refresh_token = { env = \"SLACK_APP_CONFIG_REFRESH\" }\napp_id =",
            ),
        );
        let mut env = ENV.to_vec();
        env.push(("SLACK_APP_CONFIG_REFRESH", REFRESH));
        let out = check(&repo, &["slack-main"], &env).await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert_eq!(
            verdict_of(&out, "app configuration token is accepted"),
            "unchecked"
        );
        assert!(out.stdout.contains("rotated"), "{}", out.stdout);
        assert!(
            server
                .requests()
                .iter()
                .all(|r| !r.path.contains("tooling.tokens")),
            "the probe never rotates"
        );
        assert_no_secret(&out, &[BOT, CONFIG, SIGNING, REFRESH]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_bot_token_cannot_run() {
        let fake = FakeSlack::start(BOT, None).await;
        let repo = repo(&fake.base_url());
        let out = check(
            &repo,
            &["slack-main"],
            &[
                ("SLACK_BOT_TOKEN", "xoxb-wrong-0000"),
                ("SLACK_SIGNING_SECRET", SIGNING),
                ("SLACK_APP_CONFIG_TOKEN", CONFIG),
            ],
        )
        .await;
        assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains("invalid_auth"), "{}", out.stderr);
        assert_no_secret(&out, &["xoxb-wrong-0000", CONFIG, SIGNING]);
    }
}

mod zendesk {
    use super::*;
    use supportopsd::platforms::zendesk::fake::{AGENT_EMAIL, FakeZendesk};

    const TOKEN: &str = "zd-probe-api-token-6b2e";

    fn repo(base: &str) -> TestRepo {
        let repo = TestRepo::new();
        repo.file(
            "integrations/zendesk.toml",
            &format!(
                r#"id = "zendesk-main"
platform = "zendesk"
[credentials]
subdomain = "acme"
email = "{AGENT_EMAIL}"
api_token = {{ env = "ZD_TOKEN" }}
[webhook]
events = ["comment.created", "ticket.created", "user.created"]
[endpoint]
base_url = "{base}"
"#
            ),
        );
        repo
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registered_webhooks_and_triggers_match_and_an_edited_webhook_differs() {
        let fake = FakeZendesk::start(AGENT_EMAIL, TOKEN, None).await;
        let i = integration(
            "zendesk-main",
            PlatformKind::Zendesk,
            &[
                ("subdomain", "acme"),
                ("email", AGENT_EMAIL),
                ("api_token", TOKEN),
            ],
            fake.base_url(),
        );
        let c = supportopsd::platforms::zendesk::connector::connect(
            &i,
            &ResolveContext::new(None, &no_env),
        )
        .unwrap();
        let events = ["comment.created", "ticket.created", "user.created"];
        register(c.as_ref(), "zendesk-main", "zendesk", &events, None).await;
        fake.clear_requests();
        let repo = repo(&fake.base_url());
        let env = [("ZD_TOKEN", TOKEN)];
        let secrets: Vec<String> = fake
            .webhooks()
            .iter()
            .filter_map(|w| fake.secret_of(w["id"].as_str().unwrap()))
            .collect();
        assert_eq!(secrets.len(), 2);

        let out = check(&repo, &["zendesk-main", "--public-url", PUBLIC], &env).await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        for needle in [
            "an agent's or an admin's",
            "`webhooks` with cursor paging",
            "a webhook `supportopsd:zendesk-main events` is listed",
            "`supportopsd:zendesk-main tickets` reads back active",
            "`supportopsd:zendesk-main events` delivers to this daemon",
            "`supportopsd:zendesk-main tickets`'s signing secret is readable",
            "both webhooks share one signing secret",
            "`triggers` with offset paging",
            "`supportopsd:zendesk-main comment.created`: conditions read back as sent",
            "`supportopsd:zendesk-main ticket.created`: the webhook body reads back as sent",
            "`supportopsd:zendesk-main ticket.created`: notifies our `tickets` webhook",
        ] {
            assert_eq!(
                verdict_of(&out, needle),
                "matches",
                "{needle}\n{}",
                out.stdout
            );
        }
        // The trigger bodies hold ids and enums only: no free text whose escaping matters.
        assert!(
            !out.stdout.contains("JSON-escapes free-text placeholders"),
            "{}",
            out.stdout
        );
        let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        assert_no_secret(&out, &secret_refs);
        assert_no_secret(&out, &[TOKEN]);
        for r in fake.requests() {
            assert_eq!(r.method, reqwest::Method::GET, "{} {}", r.method, r.path);
        }

        // A webhook switched off behind our back differs.
        let tickets = fake
            .webhooks()
            .into_iter()
            .find(|w| w["name"].as_str().unwrap().ends_with(" tickets"))
            .unwrap();
        fake.edit_webhook(
            tickets["id"].as_str().unwrap(),
            json!({"status": "inactive"}),
        );
        let out = check(&repo, &["zendesk-main"], &env).await;
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert_eq!(
            verdict_of(&out, "`supportopsd:zendesk-main tickets` reads back active"),
            "differs"
        );
        assert!(out.stdout.contains("inactive POST json"), "{}", out.stdout);
        assert_no_secret(&out, &secret_refs);
        for r in fake.requests() {
            assert_eq!(r.method, reqwest::Method::GET, "{} {}", r.method, r.path);
        }
    }
}

mod trello {
    use super::*;
    use supportopsd::platforms::trello::fake::{self, FakeTrello};

    const KEY: &str = "trello-probe-key-0001";
    const TOKEN: &str = "trello-probe-token-9c3d";
    const APP_SECRET: &str = "trello-probe-app-secret-e4";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn our_webhook_matches_and_a_missing_board_differs() {
        let fake = FakeTrello::start(KEY, TOKEN, APP_SECRET).await;
        let url = format!("{PUBLIC}/api/webhooks/trello/trello-main");
        fake.add_webhook(fake::BOARD_ID, &url, "supportopsd:trello-main", TOKEN);
        let repo = TestRepo::new();
        let manifest = |boards: &str| {
            format!(
                r#"id = "trello-main"
platform = "trello"
[credentials]
api_key = "{KEY}"
token = {{ env = "TRELLO_TOKEN" }}
app_secret = {{ env = "TRELLO_APP_SECRET" }}
[config]
boards = [{boards}]
[webhook]
events = ["createCard"]
[endpoint]
base_url = "{}"
"#,
                fake.base_url()
            )
        };
        repo.file(
            "integrations/trello.toml",
            &manifest(&format!("\"{}\"", fake::BOARD_ID)),
        );
        let env = [("TRELLO_TOKEN", TOKEN), ("TRELLO_APP_SECRET", APP_SECRET)];
        let out = check(&repo, &["trello-main", "--public-url", PUBLIC], &env).await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert_eq!(verdict_of(&out, "24-hex id"), "matches");
        assert_eq!(verdict_of(&out, "listed as a JSON array"), "matches");
        assert_eq!(
            verdict_of(&out, "an active webhook of ours watches board"),
            "matches"
        );
        assert_eq!(verdict_of(&out, "posts to this daemon"), "matches");
        assert!(
            out.stdout.contains("/1/tokens/{token}/webhooks"),
            "{}",
            out.stdout
        );
        assert_no_secret(&out, &[TOKEN, APP_SECRET]);

        // A board the token cannot read differs.
        repo.file(
            "integrations/trello.toml",
            &manifest(&format!(
                "\"{}\", \"aaaaaaaaaaaaaaaaaaaaaaaa\"",
                fake::BOARD_ID
            )),
        );
        let out = check(&repo, &["trello-main"], &env).await;
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert_eq!(
            verdict_of(&out, "board `aaaaaaaaaaaaaaaaaaaaaaaa` is readable"),
            "differs"
        );
        assert_no_secret(&out, &[TOKEN, APP_SECRET]);
        for r in fake.requests() {
            assert_eq!(r.method, reqwest::Method::GET, "{} {}", r.method, r.path);
        }
    }
}

mod notion {
    use super::*;
    use supportopsd::platforms::notion::fake::{self, FakeNotion};

    const TOKEN: &str = "ntn_probe_token_1234abcd";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bot_and_the_version_match_and_the_subscription_is_unchecked() {
        let fake = FakeNotion::start(TOKEN).await;
        let repo = TestRepo::new();
        repo.file(
            "integrations/notion.toml",
            &format!(
                r#"id = "notion-main"
platform = "notion"
[credentials]
token = {{ env = "NOTION_TOKEN" }}
[config]
notion_version = "2025-09-03"
[webhook]
events = ["page.created"]
[endpoint]
base_url = "{}"
"#,
                fake.base_url()
            ),
        );
        let out = check(&repo, &["notion-main"], &[("NOTION_TOKEN", TOKEN)]).await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert_eq!(
            verdict_of(&out, "Notion-Version 2025-09-03 is accepted"),
            "matches"
        );
        assert_eq!(verdict_of(&out, "an integration's bot"), "matches");
        assert!(out.stdout.contains(fake::BOT_ID), "{}", out.stdout);
        assert_eq!(
            verdict_of(&out, "webhook subscription delivers"),
            "unchecked"
        );
        assert_no_secret(&out, &[TOKEN]);
        for r in fake.requests() {
            assert_eq!(r.method, reqwest::Method::GET, "{} {}", r.method, r.path);
        }
        let out = check(
            &repo,
            &["notion-main"],
            &[("NOTION_TOKEN", "ntn_wrong_0000")],
        )
        .await;
        assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
        assert_no_secret(&out, &["ntn_wrong_0000"]);
    }
}

mod google_sheets {
    use super::*;
    use supportopsd::platforms::google_sheets::fake::{self, FakeGoogle};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_spreadsheet_and_the_drive_file_are_read_and_a_missing_sheet_differs() {
        let fake = FakeGoogle::start().await;
        let key = fake::key_json(&fake.token_uri());
        let repo = TestRepo::new();
        let manifest = |sheet: &str| {
            format!(
                r#"id = "sheets-log"
platform = "google_sheets"
[credentials]
service_account_key = {{ env = "GS_SERVICE_ACCOUNT_KEY" }}
spreadsheet_id = "{}"
[config]
sheet = "{sheet}"
[endpoint]
base_url = "{}"
"#,
                fake::SPREADSHEET_ID,
                fake.base_url()
            )
        };
        repo.file("integrations/sheets.toml", &manifest(fake::FIRST_SHEET));
        let env = [("GS_SERVICE_ACCOUNT_KEY", key.as_str())];
        let out = check(&repo, &["sheets-log"], &env).await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert_eq!(
            verdict_of(&out, "gets a token and reads the spreadsheet"),
            "matches"
        );
        assert_eq!(verdict_of(&out, "of `[config] sheet` exists"), "matches");
        assert_eq!(
            verdict_of(&out, "drive.readonly scope reads the file"),
            "matches"
        );
        assert!(
            out.stdout.contains(fake::SPREADSHEET_TITLE),
            "{}",
            out.stdout
        );
        assert_no_secret(&out, &["PRIVATE KEY"]);

        repo.file("integrations/sheets.toml", &manifest("No such tab"));
        let out = check(&repo, &["sheets-log"], &env).await;
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert_eq!(verdict_of(&out, "of `[config] sheet` exists"), "differs");
        // Reads only, besides the token exchange at the key's token_uri.
        let token_path = reqwest::Url::parse(&fake.token_uri())
            .unwrap()
            .path()
            .to_owned();
        for r in fake.requests() {
            assert!(
                r.method == reqwest::Method::GET
                    || (r.method == reqwest::Method::POST && r.path == token_path),
                "{} {}",
                r.method,
                r.path
            );
        }
    }
}
