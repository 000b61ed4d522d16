//! `supportopsd validate`: every diagnostic kind, as a user sees it.

use crate::support::TestRepo;

const FRESHDESK: &str = r#"id = "freshdesk-main"
platform = "freshdesk"
[credentials]
domain = "acme.freshdesk.com"
api_key = { env = "FD_KEY" }
[webhook]
events = ["ticket_created", "ticket_updated"]
"#;

const SLACK: &str = r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = { env = "SLACK_BOT" }
signing_secret = { env = "SLACK_SIGNING" }
"#;

const GOOD_RULE: &str = r##"id = "urgent"
[trigger]
integration = "freshdesk-main"
event = "ticket_created"
[trigger.conditions]
priority = 4
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#urgent"
message = "{{ ticket.subject }}"
"##;

fn base() -> TestRepo {
    let repo = TestRepo::new();
    repo.file("integrations/freshdesk.toml", FRESHDESK)
        .file("integrations/slack.toml", SLACK);
    repo
}

#[test]
fn the_example_repository_is_valid() {
    let out = TestRepo::examples().run(&["validate"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .starts_with("ok: 7 integrations, 11 rules, 17 test cases"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_broken_rule_in_a_copy_of_the_examples_fails_with_a_position() {
    let repo = TestRepo::examples();
    let rule = repo.read("rules/urgent-freshdesk-to-slack.toml");
    repo.file(
        "rules/urgent-freshdesk-to-slack.toml",
        &rule.replace("ticket_created", "ticket_create"),
    );
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 1);
    insta::assert_snapshot!(out.stdout, @r"
    rules/urgent-freshdesk-to-slack.toml:7:9: error: unknown event `ticket_create` for freshdesk
      help: did you mean `ticket_created`?
    1 error(s), 0 warning(s)
    ");
}

/// One repository with one of every kind of problem: all are reported in one run.
#[test]
fn every_diagnostic_kind_is_reported_in_one_run() {
    let repo = base();
    repo.file(
        "integrations/slack-second.toml",
        &SLACK.replace("slack-main", "slack-second"),
    )
    // TOML syntax
    .file(
        "rules/syntax.toml",
        "id = \"syntax\"\n[trigger\nevent = \"x\"\n",
    )
    // schema: unknown field, wrong type, bad id, unknown platform
    .file(
        "integrations/typo.toml",
        "id = \"Typo_Id\"\nplatform = \"jira\"\ncolour = \"red\"\n",
    )
    .file(
        "rules/types.toml",
        &GOOD_RULE.replace("id = \"urgent\"", "id = \"types\"\nenabled = \"yes\""),
    )
    // duplicate ids
    .file("integrations/freshdesk-copy.toml", FRESHDESK)
    .file("rules/urgent.toml", GOOD_RULE)
    .file("rules/urgent-again.toml", GOOD_RULE)
    // unknown references, ambiguous shorthand
    .file(
        "rules/references.toml",
        r#"id = "references"
[trigger]
integration = "freshdesk-mian"
event = "ticket_created"
[[actions]]
platform = "slack"
action = "send_message"
[actions.parameters]
message = "hi"
"#,
    )
    .file(
        "rules/names.toml",
        r#"id = "names"
[trigger]
integration = "freshdesk-main"
event = "ticket_create"
[[actions]]
integration = "slack-main"
action = "post_message"
"#,
    )
    // conditions: wrong type, unknown operator, bad regex, unknown field
    .file(
        "rules/conditions.toml",
        r#"id = "conditions"
[trigger]
integration = "freshdesk-main"
event = "ticket_created"
[trigger.conditions]
priority = { contains = 4 }
"ticket.subject" = { matchs = "x" }
"ticket.type" = { matches = "(unclosed" }
"ticket.subjekt" = "x"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
message = "hi"
"#,
    )
    // templates and parameters
    .file(
        "rules/templates.toml",
        r##"id = "templates"
[trigger]
integration = "freshdesk-main"
event = "ticket_created"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#x"
message = "{{ ticket.subject "
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
message = "{{ ticket.subjekt }} {{ actions[5].result.ts }}"
unfurl_links = "sometimes"
colour = "red"
[[actions]]
integration = "freshdesk-main"
action = "add_note"
[actions.parameters]
body = "no ticket id"
"##,
    )
    // a rule on an event the integration does not subscribe to (warning)
    .file(
        "rules/unsubscribed.toml",
        &GOOD_RULE
            .replace("id = \"urgent\"", "id = \"unsubscribed\"")
            .replace("ticket_created", "ticket_resolved"),
    )
    // plain-text secret, undeliverable event
    .file(
        "integrations/plain.toml",
        r#"id = "freshdesk-plain"
platform = "freshdesk"
[credentials]
domain = "acme.freshdesk.com"
api_key = "abcdef123456"
[webhook]
events = ["contact_created"]
"#,
    )
    .file(
        "integrations/undeliverable.toml",
        r#"id = "freshdesk-contacts"
platform = "freshdesk"
[credentials]
domain = "acme.freshdesk.com"
api_key = { sealed = "sos1:not-base64!" }
[webhook]
events = ["contact_created"]
"#,
    )
    // tests: missing fixture, escaping fixture, unknown rule, unknown action, contradiction
    .file(
        "tests/cases.toml",
        r#"[[case]]
name = "missing fixture"
integration = "freshdesk-main"
event = "ticket_created"
payload = "fixtures/nope.json"
expect_none = true

[[case]]
name = "escaping fixture"
integration = "freshdesk-main"
event = "ticket_created"
payload = "../outside.json"
expect_none = true

[[case]]
name = "unknown rule"
integration = "freshdesk-main"
event = "ticket_created"
payload = { freshdesk_webhook = { ticket_id = "1" } }
[[case.expect]]
rule = "urgnet"
action = "send_message"
[[case.expect]]
rule = "urgent"
action = "add_note"

[[case]]
name = "contradiction"
integration = "freshdesk-main"
event = "ticket_created"
payload = { freshdesk_webhook = { ticket_id = "1" } }
expect_none = true
[[case.expect]]
rule = "urgent"
action = "send_message"
"#,
    )
    .file("outside.json", "{}")
    // unreadable files
    .bytes("rules/latin1.toml", b"id = \"caf\xe9\"\n")
    .file(
        "rules/huge.toml",
        &format!("# {}\n", "x".repeat(1024 * 1024)),
    );
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    insta::assert_snapshot!(out.stdout);
}

#[test]
fn json_output_has_positions() {
    let repo = base();
    repo.file(
        "rules/bad.toml",
        &GOOD_RULE.replace("priority = 4", "priority = { gt = \"high\" }"),
    );
    let out = repo.run(&["validate", "--format", "json"]);
    assert_eq!(out.code, 1);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let d = &v[0];
    assert_eq!(d["file"], "rules/bad.toml");
    assert_eq!(d["line"], 6);
    assert_eq!(d["severity"], "error");
}

#[test]
fn a_git_revision_is_read_without_a_checkout() {
    let repo = base();
    repo.file("rules/urgent.toml", GOOD_RULE);
    let good = repo.commit("good");
    repo.file("rules/urgent.toml", "id = \"broken\n");
    assert_eq!(repo.run(&["validate"]).code, 1);
    let out = repo.run(&["validate", "--rev", "HEAD"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(repo.run(&["validate", "--rev", &good[..8]]).code, 0);
    // A broken commit is refused whole.
    repo.commit("broken");
    let out = repo.run(&["validate", "--rev", "HEAD"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.starts_with("rules/urgent.toml:1:"),
        "{}",
        out.stdout
    );
    // An unknown revision is an error, not a crash.
    let out = repo.run(&["validate", "--rev", "no-such-branch"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("resolve revision no-such-branch"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_manifest_folder_inside_the_repository() {
    let repo = TestRepo::new();
    repo.file("ops/integrations/freshdesk.toml", FRESHDESK)
        .file("ops/integrations/slack.toml", SLACK)
        .file("ops/rules/urgent.toml", GOOD_RULE)
        .file("README.md", "not a manifest\n");
    repo.commit("ops");
    assert_eq!(repo.run(&["--path", "ops", "validate"]).code, 0);
    let out = repo.run(&["--path", "ops", "validate", "--rev", "HEAD"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("2 integrations, 1 rules"),
        "{}",
        out.stdout
    );
    let out = repo.run(&["--path", "../elsewhere", "validate"]);
    assert_eq!(out.code, 1);
}

#[test]
fn secrets_never_appear_in_diagnostics() {
    let repo = base();
    repo.file(
        "integrations/leak.toml",
        "id = \"leak\"\nplatform = \"slack\"\n[credentials]\nbot_token = \"xoxb-super-secret-value\"\nsigning_secret = 12345678\n",
    );
    let out = repo.run(&["validate", "--format", "json"]);
    assert_eq!(out.code, 1);
    assert!(
        !out.stdout.contains("xoxb-super-secret-value"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("12345678"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("secret seal --integration leak --field bot_token"),
        "{}",
        out.stdout
    );
}

/// Issue 16, item 12 (Freshdesk): a custom helpdesk domain is most likely a CNAME, where
/// Freshdesk's API does not answer; `validate` says so next to the host-policy note.
#[test]
fn a_custom_freshdesk_domain_is_noted_as_a_cname_the_api_does_not_answer_on() {
    let repo = base();
    repo.file(
        "integrations/freshdesk.toml",
        &FRESHDESK.replace("acme.freshdesk.com", "support.acme.com"),
    );
    let out = repo.run(&["validate"]);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("support.acme.com") && all.contains("CNAME") && all.contains(".freshdesk.com"),
        "{all}"
    );
}

const ZENDESK: &str = r#"id = "zendesk-main"
platform = "zendesk"
[credentials]
subdomain = "acme"
email = "ops@acme.example"
api_token = { env = "ZD_TOKEN" }
[config]
ticket_events_via = "MODE"
[webhook]
events = ["ticket.created"]
"#;

const REQUESTER_RULE: &str = r##"id = "vip-requester"
[trigger]
integration = "zendesk-main"
event = "ticket.created"
[trigger.conditions]
"requester.email" = { matches = "@vip\\.example$" }
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#vip"
message = "{{ requester.name }}: {{ ticket.subject }}"
"##;

/// Zendesk's `ticket_events_via` modes deliver different fields: with triggers the requester's
/// name and email come from the enrichment step, but ticket event subscriptions never carry
/// them, so switching the mode is refused where a rule needs them, naming the field and the
/// mode (instead of a rule that silently stops matching).
#[test]
fn zendesk_fields_a_mode_never_delivers_are_refused() {
    let repo = base();
    repo.file(
        "integrations/zendesk.toml",
        &ZENDESK.replace("MODE", "trigger"),
    )
    .file("rules/vip-requester.toml", REQUESTER_RULE);
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    repo.file(
        "integrations/zendesk.toml",
        &ZENDESK.replace("MODE", "event_subscription"),
    );
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    for field in ["requester.email", "requester.name"] {
        assert!(
            out.stdout.contains(&format!(
                "field `{field}` of `ticket.created` is never delivered with `ticket_events_via = \"event_subscription\"`"
            )),
            "{field}: {}",
            out.stdout
        );
    }
    // The subject is in the event subscription's `detail`.
    assert!(!out.stdout.contains("ticket.subject"), "{}", out.stdout);
}

/// `ticket.closed` is refused with triggers (Zendesk's closing automation may never run a
/// trigger), with the way out; event subscriptions deliver it.
#[test]
fn zendesk_ticket_closed_is_refused_in_trigger_mode() {
    let repo = base();
    let integration = ZENDESK.replace(
        r#"events = ["ticket.created"]"#,
        r#"events = ["ticket.closed"]"#,
    );
    repo.file(
        "integrations/zendesk.toml",
        &integration.replace("MODE", "trigger"),
    );
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "zendesk cannot deliver `ticket.closed` with `ticket_events_via = \"trigger\"`"
        ),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("event_subscription"), "{}", out.stdout);
    repo.file(
        "integrations/zendesk.toml",
        &integration.replace("MODE", "event_subscription"),
    );
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}
