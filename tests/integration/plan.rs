//! `supportopsd plan`: renderings, exit codes, against the state and against another revision.

use supportopsd::manifest::{self, Source};
use supportopsd::plan;
use supportopsd::state::Store;

use crate::support::TestRepo;

const SLACK: &str = r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = { env = "SLACK_BOT" }
signing_secret = { env = "SLACK_SIGNING" }
"#;

const ZENDESK: &str = r#"id = "zendesk-main"
platform = "zendesk"
name = "Zendesk"
[credentials]
subdomain = "acme"
email = "ops@acme.example"
api_token = { env = "ZD_TOKEN" }
[webhook]
events = ["ticket.created"]
"#;

const RULE: &str = r##"id = "new-ticket"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#support"
message = "New: {{ ticket.subject }}"
"##;

fn small() -> TestRepo {
    let repo = TestRepo::new();
    repo.file("integrations/slack.toml", SLACK)
        .file("integrations/zendesk.toml", ZENDESK)
        .file("rules/new-ticket.toml", RULE);
    repo
}

/// Records the repository's current manifests as applied, as `apply` will.
fn apply_to_state(repo: &TestRepo, state: &std::path::Path) {
    let source = Source {
        repo: repo.path().to_path_buf(),
        subdir: None,
        rev: None,
    };
    let set = manifest::load_source(&source).unwrap().set.expect("valid");
    let store = Store::open(state).unwrap();
    let records = plan::to_state(plan::desired(&set));
    store
        .record_applied_set("0123456789abcdef0123456789abcdef01234567", &records)
        .unwrap();
}

#[test]
fn examples_on_an_empty_state_list_everything_and_exit_2() {
    let repo = TestRepo::examples();
    let out = repo.run(&["plan", "--detailed-exitcode", "--format", "json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["format_version"], "1.2");
    let changes = v["changes"].as_array().unwrap();
    let count = |kind: &str| {
        changes
            .iter()
            .filter(|c| c["resource"]["kind"] == kind && c["action"] == "create")
            .count()
    };
    assert_eq!(count("integration"), 7);
    assert_eq!(count("registration"), 6);
    assert_eq!(count("rule"), 11);
    // Without --detailed-exitcode, changes still exit 0; the state folder is not created.
    assert_eq!(repo.run(&["plan"]).code, 0);
    assert!(!repo.path().join(".supportopsd").exists());
}

#[test]
fn renderings_are_stable() {
    let repo = small();
    let text = repo.run(&["plan"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    insta::assert_snapshot!("plan_text_create", text.stdout);
    insta::assert_snapshot!(
        "plan_markdown_create",
        repo.run(&["plan", "--format", "markdown"]).stdout
    );
    insta::assert_snapshot!(
        "plan_json_create",
        repo.run(&["plan", "--format", "json"]).stdout
    );
}

#[test]
fn against_the_state_only_changes_show() {
    let repo = small();
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().to_str().unwrap();
    apply_to_state(&repo, state.path());
    let out = repo.run(&["--state", state_arg, "plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("No changes."), "{}", out.stdout);

    // Change a field, a secret reference, add a rule, remove the webhook.
    repo.file(
        "integrations/zendesk.toml",
        &ZENDESK
            .replace("name = \"Zendesk\"", "name = \"Zendesk EU\"")
            .replace("ZD_TOKEN", "ZD_TOKEN_2")
            .replace("[webhook]\nevents = [\"ticket.created\"]\n", ""),
    )
    .file(
        "rules/new-ticket.toml",
        &RULE.replace("New: ", "New ticket: "),
    );
    // The values behind the references are set: none may appear, the references must.
    let env = [
        ("ZD_TOKEN", "zd-old-value-1"),
        ("ZD_TOKEN_2", "zd-new-value-2"),
    ];
    let out = repo.run_with(
        &["--state", state_arg, "plan", "--detailed-exitcode"],
        &env,
        None,
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("~ credentials.api_token: env:ZD_TOKEN → env:ZD_TOKEN_2"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "[credential_reference] integration zendesk-main: credentials.api_token: env:ZD_TOKEN → env:ZD_TOKEN_2"
        ),
        "{}",
        out.stdout
    );
    for format in ["text", "json", "markdown"] {
        let out = repo.run_with(
            &["--state", state_arg, "plan", "--format", format],
            &env,
            None,
        );
        for (_, value) in env {
            assert!(
                !out.stdout.contains(value),
                "a secret value leaked: {}",
                out.stdout
            );
        }
    }
    insta::assert_snapshot!("plan_text_update", out.stdout);
    insta::assert_snapshot!(
        "plan_markdown_update",
        repo.run(&["--state", state_arg, "plan", "--format", "markdown"])
            .stdout
    );
    insta::assert_snapshot!(
        "plan_json_update",
        repo.run(&["--state", state_arg, "plan", "--format", "json"])
            .stdout
    );
}

#[test]
fn against_another_revision_no_state_is_needed() {
    let repo = small();
    let base = repo.commit("base");
    repo.remove("rules/new-ticket.toml");
    repo.commit("remove the rule");
    let out = repo.run(&[
        "plan",
        "--base",
        &base,
        "--rev",
        "HEAD",
        "--detailed-exitcode",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stdout.contains("- rule new-ticket"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("Plan: 0 to create, 0 to update, 1 to delete."),
        "{}",
        out.stdout
    );
    let same = repo.run(&["plan", "--base", "HEAD", "--detailed-exitcode"]);
    assert_eq!(same.code, 0, "{}{}", same.stdout, same.stderr);
}

#[test]
fn an_invalid_repository_makes_plan_fail_with_the_diagnostics() {
    let repo = small();
    repo.file(
        "rules/new-ticket.toml",
        &RULE.replace("ticket.created", "ticket.exploded"),
    );
    let out = repo.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("rules/new-ticket.toml:4:9: error: unknown event"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn a_state_held_by_a_running_daemon_is_a_clear_error() {
    let repo = small();
    let state = tempfile::tempdir().unwrap();
    let _held = Store::open(state.path()).unwrap();
    let out = repo.run(&["--state", state.path().to_str().unwrap(), "plan"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("in use by another supportopsd process"),
        "{}",
        out.stderr
    );
}
