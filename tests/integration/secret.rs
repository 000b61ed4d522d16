//! `supportopsd secret`: keygen, seal, unseal, and the key lookup order.

use crate::support::TestRepo;

#[test]
fn seal_and_unseal_round_trip_through_the_cli() {
    let repo = TestRepo::new();
    let out = repo.run(&["secret", "keygen", "--out", "k.key"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Never overwritten.
    assert_eq!(repo.run(&["secret", "keygen", "--out", "k.key"]).code, 1);
    let key = repo.path().join("k.key");
    let key = key.to_str().unwrap();
    let sealed = repo.run_with(
        &[
            "secret",
            "seal",
            "--integration",
            "freshdesk-main",
            "--field",
            "api_key",
            "--key-file",
            key,
        ],
        &[],
        Some(b"top-secret-value\n"),
    );
    assert_eq!(sealed.code, 0, "{}", sealed.stderr);
    assert!(
        sealed.stdout.starts_with("{ sealed = \"sos1:"),
        "{}",
        sealed.stdout
    );
    assert!(!sealed.stdout.contains("top-secret-value"));

    // The key is found through SUPPORTOPSD_KEY_FILE too.
    let plain = repo.run_with(
        &[
            "secret",
            "unseal",
            "--integration",
            "freshdesk-main",
            "--field",
            "api_key",
        ],
        &[("SUPPORTOPSD_KEY_FILE", key)],
        Some(sealed.stdout.as_bytes()),
    );
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert_eq!(plain.stdout, "top-secret-value\n");

    // Bound to its place: another field or integration does not decrypt, and says nothing more.
    for (integration, field) in [("freshdesk-main", "domain"), ("freshdesk-other", "api_key")] {
        let out = repo.run_with(
            &[
                "secret",
                "unseal",
                "--integration",
                integration,
                "--field",
                field,
                "--key-file",
                key,
            ],
            &[],
            Some(sealed.stdout.as_bytes()),
        );
        assert_eq!(out.code, 1);
        assert!(!out.stderr.contains("top-secret"), "{}", out.stderr);
    }
}

#[test]
fn the_credentials_directory_is_the_last_place_for_the_key() {
    let repo = TestRepo::new();
    std::fs::create_dir(repo.path().join("creds")).unwrap();
    let out = repo.run(&["secret", "keygen", "--out", "creds/supportopsd.key"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let creds = repo.path().join("creds");
    let out = repo.run_with(
        &[
            "secret",
            "seal",
            "--integration",
            "slack-main",
            "--field",
            "bot_token",
        ],
        &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())],
        Some(b"xoxb-1"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Without any key: a clear error naming the places looked in.
    let out = repo.run_with(
        &[
            "secret",
            "seal",
            "--integration",
            "slack-main",
            "--field",
            "bot_token",
        ],
        &[],
        Some(b"x"),
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("SUPPORTOPSD_KEY_FILE"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_example_sealed_values_open_with_the_example_key() {
    let repo = TestRepo::examples();
    let key = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/example-sealing.key");
    let text = repo.read("integrations/slack-main.toml");
    let line = text
        .lines()
        .find(|l| l.starts_with("signing_secret"))
        .unwrap();
    let sealed = line.split('"').nth(1).unwrap();
    let out = repo.run_with(
        &[
            "secret",
            "unseal",
            "--integration",
            "slack-main",
            "--field",
            "signing_secret",
            "--key-file",
            key.to_str().unwrap(),
        ],
        &[],
        Some(sealed.as_bytes()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "slack-signing-secret-example\n");
}
