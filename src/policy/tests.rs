//! The host policy: parsing, host pattern matching (wildcards, ports, schemes, case, IP
//! normalisation), secret scopes, and where the file is looked for.

use std::path::Path;

use super::{Endpoint, Error, HostPattern, Policy, Scheme, glob};
use crate::manifest::id::IntegrationId;
use crate::platforms::PlatformKind;
use crate::secrets::SecretRef;

const FRESHDESK_OWN: &[&str] = &["*.freshdesk.com"];
const SLACK_OWN: &[&str] = &["slack.com"];

fn policy(text: &str) -> Policy {
    Policy::parse(text, Path::new("/etc/supportopsd/policy.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(text: &str) -> String {
    Policy::parse(text, Path::new("p.toml"))
        .expect_err("invalid")
        .to_string()
}

fn pattern_matches(pattern: &str, url: &str) -> bool {
    let p = HostPattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    let e = Endpoint::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    p.matches(&e)
}

fn id(s: &str) -> IntegrationId {
    IntegrationId::parse(s).unwrap()
}

#[test]
fn a_plain_host_matches_itself_on_the_default_port_only() {
    assert!(pattern_matches(
        "support.example.com",
        "https://support.example.com/api"
    ));
    assert!(pattern_matches(
        "support.example.com",
        "https://support.example.com:443/"
    ));
    assert!(!pattern_matches(
        "support.example.com",
        "https://support.example.com:8443/"
    ));
    assert!(!pattern_matches(
        "support.example.com",
        "https://evil.example.com/"
    ));
    assert!(!pattern_matches(
        "support.example.com",
        "https://support.example.com.evil.net/"
    ));
    assert!(!pattern_matches(
        "support.example.com",
        "https://example.com/"
    ));
    // http's default port is 80.
    assert!(pattern_matches("localhost", "http://localhost/"));
    assert!(!pattern_matches("localhost", "http://localhost:443/"));
}

#[test]
fn ports_are_exact_or_any() {
    assert!(pattern_matches(
        "127.0.0.1:18080",
        "http://127.0.0.1:18080/api"
    ));
    assert!(!pattern_matches(
        "127.0.0.1:18080",
        "http://127.0.0.1:18081/"
    ));
    assert!(!pattern_matches("127.0.0.1:18080", "http://127.0.0.1/"));
    assert!(pattern_matches("127.0.0.1:*", "http://127.0.0.1:9/"));
    assert!(pattern_matches("127.0.0.1:*", "https://127.0.0.1/"));
    assert!(!pattern_matches("127.0.0.1:*", "http://127.0.0.2:9/"));
    assert!(pattern_matches("[::1]:8080", "http://[::1]:8080/"));
    assert!(pattern_matches("[0:0:0:0:0:0:0:1]:*", "http://[::1]:1/"));
    assert!(!pattern_matches("[::1]:8080", "http://127.0.0.1:8080/"));
}

#[test]
fn wildcards_stand_for_the_labels_below_a_domain() {
    assert!(pattern_matches("*.example.com", "https://a.example.com/"));
    assert!(pattern_matches("*.example.com", "https://a.b.example.com/"));
    assert!(!pattern_matches("*.example.com", "https://example.com/"));
    assert!(!pattern_matches("*.example.com", "https://aexample.com/"));
    assert!(!pattern_matches(
        "*.example.com",
        "https://example.com.evil.net/"
    ));
    assert!(pattern_matches(
        "*.example.com:*",
        "https://a.example.com:8443/"
    ));
    assert!(!pattern_matches(
        "*.example.com",
        "https://a.example.com:8443/"
    ));
}

#[test]
fn hosts_compare_without_case_and_after_the_clients_normalisation() {
    assert!(pattern_matches(
        "Support.EXAMPLE.com",
        "https://support.example.com/"
    ));
    assert!(pattern_matches(
        "support.example.com",
        "HTTPS://SUPPORT.Example.COM/"
    ));
    assert!(pattern_matches("*.Example.com", "https://A.EXAMPLE.COM/"));
    // Other spellings of 127.0.0.1 are 127.0.0.1 to the client, and so to the policy.
    assert!(pattern_matches("127.0.0.1:9", "http://0x7f.1:9/"));
    assert!(pattern_matches("127.0.0.1:9", "http://2130706433:9/"));
    assert!(!pattern_matches("10.0.0.1:*", "http://0x7f.1:9/"));
}

#[test]
fn endpoints_parse_the_way_the_client_does() {
    let e = Endpoint::parse("https://support.example.com:8443/api/").unwrap();
    assert_eq!(e.scheme, Scheme::Https);
    assert_eq!(e.host, "support.example.com");
    assert_eq!(e.port, 8443);
    assert_eq!(e.authority(), "support.example.com:8443");
    assert!(!e.loopback && !e.ip);
    let e = Endpoint::parse("http://127.0.0.1:18080").unwrap();
    assert!(e.loopback && e.ip);
    assert_eq!(e.authority(), "127.0.0.1:18080");
    assert!(Endpoint::parse("http://[::1]:1/").unwrap().loopback);
    assert!(
        Endpoint::parse("http://[::ffff:127.0.0.1]:1/")
            .unwrap()
            .loopback
    );
    assert!(Endpoint::parse("http://localhost:1/").unwrap().loopback);
    // A parser differential would be a way around the policy: the host is what the client
    // connects to.
    let e = Endpoint::parse("https://evil.example#@support.example.com/").unwrap();
    assert_eq!(e.host, "evil.example");
    let e = Endpoint::parse("https://evil.example\\@support.example.com/").unwrap();
    assert_eq!(e.host, "evil.example");
}

#[test]
fn http_is_for_loopback_only_and_urls_carry_no_credentials() {
    for bad in [
        "http://support.example.com/",
        "http://10.0.0.5/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:8080/",
        "http://localhost.evil.net/",
    ] {
        let e = Endpoint::parse(bad).expect_err(bad);
        assert!(e.contains("only for a loopback host"), "{bad}: {e}");
    }
    for bad in [
        "https://user:pw@support.example.com/",
        "https://user@support.example.com/",
    ] {
        let e = Endpoint::parse(bad).expect_err(bad);
        assert!(e.contains("user name or password"), "{bad}: {e}");
        assert!(!e.contains("pw"), "{e}");
    }
    for bad in [
        "ftp://x.example/",
        "file:///etc/passwd",
        "support.example.com",
        "",
    ] {
        assert!(Endpoint::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn internal_addresses_are_recognised() {
    for internal in [
        "https://10.1.2.3/",
        "https://192.168.0.1/",
        "https://172.16.0.1/",
        "https://169.254.169.254/",
        "https://127.0.0.2/",
        "https://0.0.0.0/",
        "https://[fd00::1]/",
        "https://[fe80::1]/",
        "https://[::1]/",
    ] {
        assert!(
            Endpoint::parse(internal).unwrap().is_internal_ip(),
            "{internal}"
        );
    }
    assert!(
        !Endpoint::parse("https://8.8.8.8/")
            .unwrap()
            .is_internal_ip()
    );
    assert!(
        !Endpoint::parse("https://example.com/")
            .unwrap()
            .is_internal_ip()
    );
}

#[test]
fn host_patterns_that_are_too_broad_or_malformed_are_refused() {
    for bad in [
        "*",
        "*.com",
        "*:*",
        "*.*.example.com",
        "a.*.example.com",
        "*.10.0.0.1",
        "https://support.example.com",
        "support.example.com/api",
        "user@support.example.com",
        "::1",
        "[::1",
        "host:0",
        "host:65536",
        "host:http",
        "",
        "two words",
    ] {
        assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_policy_parses_and_names_its_mistakes() {
    let p = policy(
        r#"
[endpoints]
allow = ["127.0.0.1:18080"]
freshdesk = ["helpdesk.example.com"]

[secrets]
"fd-*" = { env = ["FRESHDESK_*"], file = ["freshdesk-*"] }
"#,
    );
    assert_eq!(p.source(), Some(Path::new("/etc/supportopsd/policy.toml")));
    assert_eq!(p.describe(), "host policy /etc/supportopsd/policy.toml");
    let e = parse_err("[endpoints]\nallow = [\"*\"]\n");
    assert!(
        e.contains("[endpoints] allow") && e.contains("p.toml"),
        "{e}"
    );
    let e = parse_err("[endpoints]\nfreshdsk = [\"x.example.com\"]\n");
    assert!(
        e.contains("unknown key `freshdsk`") && e.contains("freshdesk"),
        "{e}"
    );
    let e = parse_err("[endpoints]\nsupportopsd = [\"x.example.com\"]\n");
    assert!(e.contains("unknown key"), "{e}");
    let e = parse_err("[endpoint]\nallow = []\n");
    assert!(e.contains("unknown field"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    let e = parse_err("[secrets]\n\"FD\" = { env = [\"X\"] }\n");
    assert!(e.contains("integration id pattern"), "{e}");
    let e = parse_err("[secrets]\n\"fd\" = { env = [\"SUPPORTOPSD_ADMIN_TOKEN\"] }\n");
    assert!(e.contains("daemon's own secrets"), "{e}");
    let e = parse_err("[secrets]\n\"fd\" = { file = [\"../x\"] }\n");
    assert!(e.contains("inside $CREDENTIALS_DIRECTORY"), "{e}");
    let e = parse_err("[secrets]\n\"fd\" = { env = [\"X\"], sealed = true }\n");
    assert!(e.contains("unknown field"), "{e}");
    let e = parse_err("not toml = = =");
    assert!(e.starts_with("invalid host policy p.toml:"), "{e}");
}

#[test]
fn without_a_policy_only_the_platforms_own_hosts_are_allowed() {
    let none = Policy::none();
    assert_eq!(none.describe(), "no host policy");
    let fd = |url: &str| none.check_endpoint(PlatformKind::Freshdesk, FRESHDESK_OWN, "x", url);
    assert!(fd("https://acme.freshdesk.com/").is_ok());
    assert!(fd("https://ACME.Freshdesk.COM/api/v2").is_ok());
    // Own hosts are https on the default port.
    assert!(fd("https://acme.freshdesk.com:8443/").is_err());
    assert!(fd("https://freshdesk.com.evil.net/").is_err());
    let e = fd("https://support.example.com/").unwrap_err().to_string();
    assert!(
        e.contains("no host policy is loaded")
            && e.contains("[endpoints] allow = [\"support.example.com\"]"),
        "{e}"
    );
    let e = fd("http://127.0.0.1:18081/").unwrap_err().to_string();
    assert!(e.contains("127.0.0.1:18081 (an internal address)"), "{e}");
}

#[test]
fn a_policy_allows_what_it_lists_for_any_platform_or_one() {
    let p = policy(
        r#"
[endpoints]
allow = ["127.0.0.1:18080"]
freshdesk = ["helpdesk.example.com"]
"#,
    );
    let check = |kind, own, url: &str| p.check_endpoint(kind, own, "[endpoint] base_url", url);
    assert!(check(PlatformKind::Slack, SLACK_OWN, "http://127.0.0.1:18080/api").is_ok());
    assert!(
        check(
            PlatformKind::Freshdesk,
            FRESHDESK_OWN,
            "http://127.0.0.1:18080"
        )
        .is_ok()
    );
    assert!(
        check(
            PlatformKind::Freshdesk,
            FRESHDESK_OWN,
            "https://helpdesk.example.com/"
        )
        .is_ok()
    );
    let e = check(
        PlatformKind::Slack,
        SLACK_OWN,
        "https://helpdesk.example.com/",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("\"helpdesk.example.com\"")
            && e.contains("`[endpoints] allow`")
            && e.contains("`[endpoints] slack`")
            && e.contains("/etc/supportopsd/policy.toml"),
        "{e}"
    );
    let e = check(PlatformKind::Slack, SLACK_OWN, "http://127.0.0.1:18081/")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("[endpoint] base_url: host 127.0.0.1:18081"),
        "{e}"
    );
    // A listed host gets plain http only on loopback: no policy can allow it elsewhere.
    let p = policy("[endpoints]\nallow = [\"helpdesk.example.com:*\"]\n");
    let e = p
        .check_endpoint(
            PlatformKind::Slack,
            SLACK_OWN,
            "x",
            "http://helpdesk.example.com/",
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("only for a loopback host"), "{e}");
}

#[test]
fn references_to_the_daemons_own_secrets_are_refused_with_or_without_a_policy() {
    let scoped = policy("[secrets]\n\"*\" = { env = [\"*\"], file = [\"*\"] }\n");
    for p in [Policy::none(), scoped] {
        for r in [
            SecretRef::Env("SUPPORTOPSD_ADMIN_TOKEN".into()),
            SecretRef::Env("supportopsd_sync_secret".into()),
            SecretRef::Env("CREDENTIALS_DIRECTORY".into()),
            SecretRef::File("supportopsd.key".into()),
            SecretRef::File("Admin.Token".into()),
            SecretRef::File("policy.toml".into()),
        ] {
            let e = p
                .check_reference(&id("fd-main"), "api_key", &r)
                .expect_err(&r.describe())
                .to_string();
            assert!(e.contains("daemon's own secrets"), "{e}");
        }
    }
}

#[test]
fn secret_scopes_limit_env_and_file_references_per_integration() {
    let p = policy(
        r#"
[secrets]
"fd-*" = { env = ["FRESHDESK_*"], file = ["freshdesk-*"] }
"slack-main" = { env = ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"] }
"*" = { env = ["SHARED_*"] }
"#,
    );
    let ok = |i: &str, r: SecretRef| p.check_reference(&id(i), "api_key", &r).is_ok();
    assert!(ok("fd-main", SecretRef::Env("FRESHDESK_API_KEY".into())));
    assert!(ok("fd-main", SecretRef::File("freshdesk-main".into())));
    assert!(ok("fd-main", SecretRef::Env("SHARED_TOKEN".into())));
    assert!(ok("slack-main", SecretRef::Env("SLACK_BOT_TOKEN".into())));
    assert!(ok("fd-main", SecretRef::Sealed("sos1:anything".into())));
    assert!(!ok("fd-main", SecretRef::Env("SLACK_BOT_TOKEN".into())));
    assert!(
        !ok("fd-main", SecretRef::Env("freshdesk_api_key".into())),
        "case matters"
    );
    assert!(!ok("slack-main", SecretRef::File("freshdesk-main".into())));
    assert!(!ok("slack-other", SecretRef::Env("SLACK_BOT_TOKEN".into())));
    let e = p
        .check_reference(
            &id("fd-main"),
            "api_key",
            &SecretRef::Env("SLACK_BOT_TOKEN".into()),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`api_key` (env:SLACK_BOT_TOKEN)")
            && e.contains("adds \"SLACK_BOT_TOKEN\" to `env` of `[secrets] \"*\" or \"fd-*\"`"),
        "{e}"
    );
    // An integration no entry matches may name no env or file reference.
    let p = policy("[secrets]\n\"fd-*\" = { env = [\"FRESHDESK_*\"] }\n");
    let e = p
        .check_reference(
            &id("slack-main"),
            "bot_token",
            &SecretRef::Env("SLACK_BOT_TOKEN".into()),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no `[secrets]` entry")
            && e.contains("\"slack-main\" = { env = [\"SLACK_BOT_TOKEN\"] }"),
        "{e}"
    );
    // Without a [secrets] table, references are not scoped.
    let p = policy("[endpoints]\nallow = []\n");
    assert!(
        p.check_reference(
            &id("slack-main"),
            "bot_token",
            &SecretRef::Env("ANY".into())
        )
        .is_ok()
    );
}

#[test]
fn globs_match_runs_of_characters() {
    assert!(glob("*", ""));
    assert!(glob("*", "anything"));
    assert!(glob("fd-*", "fd-"));
    assert!(glob("fd-*", "fd-main"));
    assert!(!glob("fd-*", "xfd-main"));
    assert!(glob("*-main", "fd-main"));
    assert!(glob("a*b*c", "a-b-b-c"));
    assert!(!glob("a*b*c", "a-b-b-d"));
    assert!(glob("exact", "exact"));
    assert!(!glob("exact", "exactly"));
    assert!(glob("**", "x"));
}

#[test]
fn the_file_is_found_in_order_and_a_broken_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    let system = dir.path().join("system.toml");
    let creds_str = creds.to_str().unwrap().to_owned();
    let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| creds_str.clone());
    let no_env = |_: &str| None;
    // Nothing anywhere: no policy.
    let p = Policy::locate(None, &env, &system).unwrap();
    assert_eq!(p.source(), None);
    // The system file.
    std::fs::write(&system, "[endpoints]\nallow = []\n").unwrap();
    let p = Policy::locate(None, &env, &system).unwrap();
    assert_eq!(p.source(), Some(system.as_path()));
    // The credential wins over the system file.
    let cred = creds.join("policy.toml");
    std::fs::write(&cred, "").unwrap();
    let p = Policy::locate(None, &env, &system).unwrap();
    assert_eq!(p.source(), Some(cred.as_path()));
    // Without $CREDENTIALS_DIRECTORY, the system file.
    let p = Policy::locate(None, &no_env, &system).unwrap();
    assert_eq!(p.source(), Some(system.as_path()));
    // An explicit file wins, and must exist.
    let explicit = dir.path().join("explicit.toml");
    let e = Policy::locate(Some(&explicit), &env, &system).unwrap_err();
    assert!(matches!(e, Error::Read { .. }), "{e}");
    std::fs::write(&explicit, "[endpoints]\nallow = [\"127.0.0.1:*\"]\n").unwrap();
    let p = Policy::locate(Some(&explicit), &env, &system).unwrap();
    assert_eq!(p.source(), Some(explicit.as_path()));
    // A default file that is there but broken is an error, not "no policy".
    std::fs::write(&cred, "[endpoints]\nallow = \"x\"\n").unwrap();
    let e = Policy::locate(None, &env, &system).unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e}");
}

#[test]
fn the_shipped_example_parses_and_allows_nothing_beyond_the_platforms() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/policy.toml.example");
    let p = Policy::read(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        p.check_endpoint(
            PlatformKind::Slack,
            SLACK_OWN,
            "x",
            "https://slack.com/api/"
        )
        .is_ok()
    );
    assert!(
        p.check_endpoint(PlatformKind::Slack, SLACK_OWN, "x", "http://127.0.0.1:9/")
            .is_err()
    );
    // Its commented-out lines are valid too.
    let text = std::fs::read_to_string(&path).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest == "[secrets]"
                    || (rest.starts_with('"') && rest.contains("\" = {"))
                    || rest.split_once(" = [").is_some_and(|(k, _)| {
                        k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
            {
                rest
            }
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let p = Policy::parse(&uncommented, &path).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    assert!(
        p.check_endpoint(
            PlatformKind::Freshdesk,
            FRESHDESK_OWN,
            "x",
            "https://support.example.com/"
        )
        .is_ok()
    );
    assert!(
        p.check_reference(
            &id("slack-main"),
            "bot_token",
            &SecretRef::Env("FRESHDESK_API_KEY".into())
        )
        .is_err()
    );
}

#[test]
fn the_security_docs_example_parses() {
    let readme = include_str!("../../docs/security.md");
    let section = &readme[readme.find("## The host policy").expect("the section")..];
    let start = section.find("```toml\n").expect("the example") + 8;
    let end = start + section[start..].find("```").expect("its end");
    let p = policy(&section[start..end]);
    assert!(
        p.check_endpoint(
            PlatformKind::Freshdesk,
            FRESHDESK_OWN,
            "x",
            "https://support.example.com/"
        )
        .is_ok()
    );
    assert!(
        p.check_endpoint(
            PlatformKind::Slack,
            SLACK_OWN,
            "x",
            "https://support.example.com/"
        )
        .is_err()
    );
}
