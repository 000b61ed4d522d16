//! `supportopsd test`: pass, fail with a diff, coverage and `--fail-under`.

use crate::support::TestRepo;

#[test]
fn the_example_tests_pass_with_full_coverage() {
    let out = TestRepo::examples().run(&["test", "--fail-under", "100"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("17 passed, 0 failed"), "{}", out.stdout);
    assert!(
        out.stdout.contains("rule coverage: 11/11 rules (100.0%)"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_mismatch_fails_with_a_readable_diff() {
    let repo = TestRepo::examples();
    let tests = repo.read("tests/zendesk.toml");
    repo.file(
        "tests/zendesk.toml",
        &tests.replace(
            "Refund request 35437 (urgent)",
            "Refund request 35437 (high)",
        ),
    );
    let out = repo.run(&["test", "-q"]);
    assert_eq!(out.code, 1);
    insta::assert_snapshot!(out.stdout);
}

#[test]
fn coverage_below_the_bar_fails() {
    let repo = TestRepo::examples();
    repo.remove("tests/productivity.toml");
    let out = repo.run(&["test", "--fail-under", "80"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("rule coverage: 7/11 rules (63.6%)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("not exercised: notion-page-to-slack (rules/notion-page-to-slack.toml)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("is below --fail-under 80%"),
        "{}",
        out.stdout
    );
    assert_eq!(repo.run(&["test", "--fail-under", "60"]).code, 0);
}

#[test]
fn a_render_error_and_a_payload_that_does_not_fit_fail_their_case() {
    let repo = TestRepo::examples();
    let rule = repo.read("rules/urgent-freshdesk-to-slack.toml");
    repo.file(
        "rules/urgent-freshdesk-to-slack.toml",
        &rule.replace(
            "{{ requester.email | default('unknown') }}",
            "{{ payload.nope }}",
        ),
    );
    repo.file(
        "tests/extra.toml",
        r#"[[case]]
name = "not a zendesk body"
integration = "zendesk-main"
event = "ticket.created"
payload = { hello = "world" }
expect_none = true
"#,
    );
    let out = repo.run(&["test", "--json"]);
    assert_eq!(out.code, 1);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let failure = |name: &str| {
        v["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()["failure"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let f = failure("urgent ticket reaches slack");
    assert!(f.contains("`payload.nope` is missing"), "{f}");
    let f = failure("not a zendesk body");
    assert!(
        f.starts_with("the payload is not a valid `ticket.created` event"),
        "{f}"
    );
}

#[test]
fn an_invalid_repository_is_not_tested() {
    let repo = TestRepo::examples();
    repo.file("rules/broken.toml", "id = \n");
    let out = repo.run(&["test"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("rules/broken.toml:1:"),
        "{}",
        out.stderr
    );
}
