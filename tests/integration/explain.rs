//! Issue 18 item 4 (offline): `supportopsd explain` and the explanation `supportopsd test`
//! prints when an expected action did not happen; item 7: `test --case NAME`.

use crate::support::TestRepo;

#[test]
fn explain_names_the_failing_condition_and_the_value() {
    let repo = TestRepo::examples();
    let payload = repo.path().join("tests/fixtures/freshdesk-ticket-low.json");
    let payload = payload.to_str().unwrap();
    let args = [
        "explain",
        "--payload",
        payload,
        "--integration",
        "freshdesk-main",
        "--event",
        "ticket_created",
    ];
    let out = repo.run(&args);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // The real normalisation: "Low" is priority 1.
    assert!(
        out.stdout.contains(
            "rule urgent-freshdesk-to-slack (rules/urgent-freshdesk-to-slack.toml): no match: 1 condition did not hold\n    ✗ ticket.priority: expected 4, was 1\n"
        ),
        "{}",
        out.stdout
    );
    // Rules of the integration that listen to another event say so.
    assert!(
        out.stdout.contains(
            "rule resolved-vip-note (rules/resolved-vip-note.toml): listens to `ticket_resolved` on `freshdesk-main`, not to this event"
        ),
        "{}",
        out.stdout
    );
    let mut json_args = args.to_vec();
    json_args.extend(["--rule", "urgent-freshdesk-to-slack", "--json"]);
    let out = repo.run(&json_args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let rules = v["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["outcome"], "no_match");
    assert_eq!(rules[0]["conditions"]["path"], "ticket.priority");
    assert_eq!(rules[0]["conditions"]["observed"], 1);
    assert_eq!(
        rules[0]["failures"][0],
        "ticket.priority: expected 4, was 1"
    );

    // The urgent fixture matches.
    let urgent = repo
        .path()
        .join("tests/fixtures/freshdesk-ticket-urgent.json");
    let out = repo.run(&[
        "explain",
        "--payload",
        urgent.to_str().unwrap(),
        "--integration",
        "freshdesk-main",
        "--event",
        "ticket_created",
        "--rule",
        "urgent-freshdesk-to-slack",
    ]);
    assert!(
        out.stdout
            .contains("matched: its conditions held\n    ✓ ticket.priority: expected 4, was 4"),
        "{}",
        out.stdout
    );

    // A disabled rule says so.
    let rule = repo.read("rules/urgent-freshdesk-to-slack.toml");
    repo.file(
        "rules/urgent-freshdesk-to-slack.toml",
        &rule.replace("[trigger]", "enabled = false\n\n[trigger]"),
    );
    let out = repo.run(&args);
    assert!(
        out.stdout
            .contains("urgent-freshdesk-to-slack.toml): disabled (`enabled = false`): never runs"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn explain_refuses_unknown_names_with_a_suggestion() {
    let repo = TestRepo::examples();
    let payload = repo.path().join("tests/fixtures/freshdesk-ticket-low.json");
    let payload = payload.to_str().unwrap();
    let run = |integration: &str, event: &str, rule: &str| {
        repo.run(&[
            "explain",
            "--payload",
            payload,
            "--integration",
            integration,
            "--event",
            event,
            "--rule",
            rule,
        ])
    };
    let out = run(
        "freshdesk-mian",
        "ticket_created",
        "urgent-freshdesk-to-slack",
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("did you mean `freshdesk-main`?"),
        "{}",
        out.stderr
    );
    let out = run(
        "freshdesk-main",
        "ticket_create",
        "urgent-freshdesk-to-slack",
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("did you mean `ticket_created`?"),
        "{}",
        out.stderr
    );
    let out = run(
        "freshdesk-main",
        "ticket_created",
        "urgent-freshdesk-to-slak",
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("did you mean `urgent-freshdesk-to-slack`?"),
        "{}",
        out.stderr
    );
    // A payload that is not the event: the normalisation's error.
    repo.file("bad.json", "{\"hello\": 1}");
    let out = repo.run(&[
        "explain",
        "--payload",
        repo.path().join("bad.json").to_str().unwrap(),
        "--integration",
        "freshdesk-main",
        "--event",
        "ticket_created",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("the payload is not a valid `ticket_created` event"),
        "{}",
        out.stderr
    );
}

/// `supportopsd test` shows why an expected action did not happen.
#[test]
fn a_failing_case_explains_the_rule_that_did_not_run() {
    let repo = TestRepo::examples();
    let rule = repo.read("rules/urgent-freshdesk-to-slack.toml");
    repo.file(
        "rules/urgent-freshdesk-to-slack.toml",
        &rule.replace("priority = 4 ", "priority = 3 "),
    );
    let out = repo.run(&["test", "-q", "--case", "urgent ticket reaches slack"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("why `urgent-freshdesk-to-slack` did not run:"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("✗ ticket.priority: expected 3, was 4"),
        "{}",
        out.stdout
    );
    // Only the named case ran.
    assert!(
        out.stdout.contains("running 1 test case(s)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("0 passed, 1 failed"), "{}", out.stdout);
}

/// Issue 18 item 7: `test --case NAME` runs one case; an unknown name is a clear error naming
/// the cases there are.
#[test]
fn test_case_runs_one_case() {
    let repo = TestRepo::examples();
    let out = repo.run(&["test", "--case", "low priority ticket stays quiet"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("running 1 test case(s)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("1 passed, 0 failed"), "{}", out.stdout);
    let out = repo.run(&["test", "--case", "low priority ticket stay quiet"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "no test case `low priority ticket stay quiet`. Did you mean `low priority ticket stays quiet`? The cases are: "
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("urgent ticket reaches slack"),
        "{}",
        out.stderr
    );
}
