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
    use supportopsd::platforms::freshdesk::registration::TICKET_UPDATES;

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
events = ["ticket_created", "ticket_updated"]
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
            &["ticket_created", "ticket_updated"],
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
            "type 1: `content_layout` is kept",
            "type 4: `content_layout` is kept",
            "type 4: the webhook content is echoed as sent",
            "type 1: the `x-supportopsd-token` custom header's value is echoed",
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
        // One rule of each type: paging cannot show.
        assert_eq!(verdict_of(&out, "type 4 listing pages"), "unchecked");

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
    async fn numbers_echoed_as_strings_and_a_hidden_header_differ() {
        let (fake, repo) = registered().await;
        let (_, rule) = fake
            .rules()
            .into_iter()
            .find(|(t, r)| {
                *t == TICKET_UPDATES && r["name"].as_str().unwrap().ends_with("ticket_updated")
            })
            .unwrap();
        let id = rule["id"].as_i64().unwrap();
        // What the review expects of the real API: numbers as strings, header values hidden.
        fake.edit_rule(TICKET_UPDATES, id, |r| {
            r["performer"]["type"] = json!("3");
            r["actions"][0]["custom_headers"]["x-supportopsd-token"] = json!("");
        });
        let out = check(&repo, &["freshdesk-main"], ENV).await;
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert_eq!(
            verdict_of(&out, "type 4: `performer.type` is echoed"),
            "differs"
        );
        assert!(out.stdout.contains("string \"3\""), "{}", out.stdout);
        assert_eq!(
            verdict_of(
                &out,
                "type 4: the `x-supportopsd-token` custom header's value"
            ),
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
        // Two more ticket-update rules someone made by hand: paging can show now.
        for n in 0..2 {
            fake.add_rule(
                TICKET_UPDATES,
                json!({"name": format!("By hand {n}"), "active": true}),
            );
        }
        let out = check(&repo, &["freshdesk-main"], ENV).await;
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert_eq!(verdict_of(&out, "type 4 listing pages"), "matches");
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
