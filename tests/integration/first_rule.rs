//! Issue 18 item 7: rough edges a new user hit writing a first rule — a condition value the
//! field never has, a duplicate id, a wrong action name in a rule's first action.

use crate::support::TestRepo;

const ZENDESK: &str = r#"id = "zendesk-main"
platform = "zendesk"
[credentials]
subdomain = "acme"
email = "ops@acme.example"
api_token = { env = "ZD_TOKEN" }
[webhook]
events = ["ticket.created"]
secret = { env = "ZD_WEBHOOK_SECRET" }
"#;

const FRESHDESK: &str = r#"id = "freshdesk-main"
platform = "freshdesk"
[credentials]
domain = "acme.freshdesk.com"
api_key = { env = "FD_KEY" }
[webhook]
events = ["ticket_created"]
"#;

const SLACK: &str = r#"id = "slack-main"
platform = "slack"
[credentials]
bot_token = { env = "SLACK_BOT" }
signing_secret = { env = "SLACK_SIGNING" }
"#;

fn repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.file("integrations/zendesk.toml", ZENDESK)
        .file("integrations/freshdesk.toml", FRESHDESK)
        .file("integrations/slack.toml", SLACK);
    repo
}

fn rule(id: &str, integration: &str, event: &str, conditions: &str, action: &str) -> String {
    format!(
        r##"id = "{id}"
[trigger]
integration = "{integration}"
event = "{event}"
[trigger.conditions]
{conditions}
[[actions]]
integration = "slack-main"
action = "{action}"
[actions.parameters]
channel = "#urgent"
message = "{{{{ ticket.subject }}}}"
"##
    )
}

/// `priority = "Urgent"` on Zendesk validated and never matched (the values are lower-case).
#[test]
fn a_condition_value_the_field_never_has_is_refused() {
    let repo = repo();
    repo.file(
        "rules/zendesk.toml",
        &rule(
            "zd",
            "zendesk-main",
            "ticket.created",
            "priority = \"Urgent\"\nstatus = { in = [\"open\", \"Pending\"] }\ntype = { ne = \"incident\" }",
            "send_message",
        ),
    );
    repo.file(
        "rules/freshdesk.toml",
        &rule(
            "fd",
            "freshdesk-main",
            "ticket_created",
            "priority = \"Urgent\"\nstatus = { not_in = [1] }\nsource = 3",
            "send_message",
        ),
    );
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stdout);
    let e = &out.stdout;
    assert!(
        e.contains("rules/zendesk.toml:6:1: error: `ticket.priority` never has the value \"Urgent\"\n  help: did you mean \"urgent\"? `ticket.priority` is one of \"low\", \"normal\", \"high\", \"urgent\""),
        "{e}"
    );
    assert!(
        e.contains("error: `ticket.status` never has the value \"Pending\"\n  help: did you mean \"pending\"?"),
        "{e}"
    );
    // A coded field compared with a name: the help names the code.
    assert!(
        e.contains("`ticket.priority` holds the numeric code: write `4` (urgent)"),
        "{e}"
    );
    // Not a Freshdesk status (codes 2-5, custom ones from 6).
    assert!(
        e.contains("`ticket.status` never has the value 1\n  help: `ticket.status` is one of 2 (open), 3 (pending), 4 (resolved), 5 (closed), or a custom code from 6 on"),
        "{e}"
    );
    // What is right stays quiet: `ne = "incident"`, `source = 3`.
    assert!(!e.contains("ticket.type"), "{e}");
    assert!(!e.contains("ticket.source"), "{e}");
    assert!(e.contains("4 error(s)"), "{e}");

    // The fixed values validate, a custom Freshdesk status too.
    repo.file(
        "rules/zendesk.toml",
        &rule(
            "zd",
            "zendesk-main",
            "ticket.created",
            "priority = \"urgent\"\nstatus = { in = [\"open\", \"pending\"] }",
            "send_message",
        ),
    );
    repo.file(
        "rules/freshdesk.toml",
        &rule(
            "fd",
            "freshdesk-main",
            "ticket_created",
            "priority = 4\nstatus = { in = [2, 7] }",
            "send_message",
        ),
    );
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stdout);
}

/// A duplicate id names both files, also when the first declaration has errors of its own.
#[test]
fn a_duplicate_id_names_both_files() {
    let repo = repo();
    repo.file(
        "rules/a.toml",
        &rule(
            "urgent",
            "zendesk-main",
            "ticket.created",
            "priority = \"high\"",
            "send_mesage",
        ),
    );
    repo.file(
        "rules/b.toml",
        &rule(
            "urgent",
            "zendesk-main",
            "ticket.created",
            "priority = \"urgent\"",
            "send_message",
        ),
    );
    repo.file("integrations/zendesk-copy.toml", ZENDESK);
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains(
            "rules/b.toml:1:6: error: duplicate rule id `urgent`: rules/a.toml declares it too"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "integrations/zendesk.toml:1:6: error: duplicate integration id `zendesk-main`: integrations/zendesk-copy.toml declares it too"
        ),
        "{}",
        out.stdout
    );
}

/// A wrong action name in a rule's first action is one clear error; a later action reading
/// `actions[0]` is not told that there is no earlier action.
#[test]
fn a_wrong_first_action_name_is_one_error() {
    let repo = repo();
    let mut text = rule(
        "two",
        "zendesk-main",
        "ticket.created",
        "priority = \"urgent\"",
        "send_mesage",
    );
    text.push_str(
        r##"[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#urgent"
message = "thread {{ actions[0].result.ts }}"
"##,
    );
    repo.file("rules/two.toml", &text);
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.contains(
            "error: unknown action `send_mesage` for slack\n  help: did you mean `send_message`?"
        ),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("actions[0]"), "{}", out.stdout);
    assert!(out.stdout.contains("1 error(s)"), "{}", out.stdout);
}
