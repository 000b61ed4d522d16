//! Tests of the secrets module.

use std::collections::HashMap;
use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

fn id(s: &str) -> IntegrationId {
    IntegrationId::parse(s).unwrap()
}

fn key() -> SealKey {
    SealKey::generate().unwrap()
}

fn fake_env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn seal_unseal_round_trip() {
    let k = key();
    let s = seal(&k, &id("freshdesk-main"), "api_key", b"hunter2").unwrap();
    assert!(s.starts_with("sos1:"));
    assert!(!s.contains(['=', '+', '/']));
    check_sealed_format(&s).unwrap();
    let out = unseal(&k, &id("freshdesk-main"), "api_key", &s).unwrap();
    assert_eq!(out.expose(), b"hunter2");
    assert_eq!(out.expose_str().unwrap(), "hunter2");
}

#[test]
fn empty_plaintext_round_trips() {
    let k = key();
    let s = seal(&k, &id("a"), "f", b"").unwrap();
    assert_eq!(unseal(&k, &id("a"), "f", &s).unwrap().expose(), b"");
}

#[test]
fn wrong_aad_fails() {
    let k = key();
    let s = seal(&k, &id("freshdesk-main"), "api_key", b"v").unwrap();
    assert!(matches!(
        unseal(&k, &id("zendesk-main"), "api_key", &s),
        Err(Error::Unseal)
    ));
    assert!(matches!(
        unseal(&k, &id("freshdesk-main"), "password", &s),
        Err(Error::Unseal)
    ));
    // Component boundaries matter: "ab"+"c" is not "a"+"bc".
    let s = seal(&k, &id("ab"), "c", b"v").unwrap();
    assert!(matches!(unseal(&k, &id("a"), "bc", &s), Err(Error::Unseal)));
}

#[test]
fn wrong_key_fails() {
    let s = seal(&key(), &id("a"), "f", b"v").unwrap();
    assert!(matches!(
        unseal(&key(), &id("a"), "f", &s),
        Err(Error::Unseal)
    ));
}

#[test]
fn tampered_fails() {
    let k = key();
    let s = seal(&k, &id("a"), "f", b"some secret value").unwrap();
    let body = s.strip_prefix(SEALED_PREFIX).unwrap();
    let mut raw = b64d(body);
    for i in 0..raw.len() {
        raw[i] ^= 0x01;
        let t = format!("{SEALED_PREFIX}{}", b64e(&raw));
        assert!(
            matches!(unseal(&k, &id("a"), "f", &t), Err(Error::Unseal)),
            "byte {i}"
        );
        raw[i] ^= 0x01;
    }
    // Truncated and extended.
    let short = format!("{SEALED_PREFIX}{}", b64e(&raw[..raw.len() - 1]));
    assert!(matches!(
        unseal(&k, &id("a"), "f", &short),
        Err(Error::Unseal)
    ));
    let mut long = raw.clone();
    long.push(0);
    let long = format!("{SEALED_PREFIX}{}", b64e(&long));
    assert!(matches!(
        unseal(&k, &id("a"), "f", &long),
        Err(Error::Unseal)
    ));
}

fn b64d(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn b64e(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[test]
fn two_seals_differ() {
    let k = key();
    let a = seal(&k, &id("a"), "f", b"same").unwrap();
    let b = seal(&k, &id("a"), "f", b"same").unwrap();
    assert_ne!(a, b);
}

#[test]
fn sealed_format_checks() {
    let ok = format!("sos1:{}", b64e(&[0u8; 32]));
    check_sealed_format(&ok).unwrap();
    for bad in [
        String::new(),
        "sos1:".to_owned(),
        "sos2:AAAA".to_owned(),
        format!("sos1:{}", b64e(&[0u8; 31])),
        format!("{ok}="),
        format!("{ok} "),
        format!("sos1:{}", "!".repeat(50)),
        ok.replace("sos1:", "SOS1:"),
    ] {
        assert!(
            matches!(check_sealed_format(&bad), Err(Error::SealedFormat { .. })),
            "{bad:?}"
        );
    }
    // Format errors happen before any key check.
    assert!(matches!(
        unseal(&key(), &id("a"), "f", "sos1:xx"),
        Err(Error::SealedFormat { .. })
    ));
}

#[test]
fn secret_formatting_is_redacted() {
    let s = Secret::from("hunter2-very-secret".to_owned());
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(format!("{s}"), "***");
    assert_eq!(format!("{s:#?}"), "***");
    let wrapped = Some(s.clone());
    assert!(!format!("{wrapped:?}").contains("hunter2"));
    let bin = Secret::new(vec![0xff, 0xfe]);
    assert!(matches!(bin.expose_str(), Err(Error::NotUtf8)));
}

#[test]
fn seal_key_formatting_is_redacted() {
    let k = key();
    let b64 = k.to_base64();
    for out in [format!("{k:?}"), format!("{k}"), format!("{k:#?}")] {
        assert!(!out.contains(&b64[..16]), "{out}");
        assert!(out.contains("***"));
    }
    let ctx = ResolveContext {
        key: Some(&k),
        env: &|_| None,
        credentials_dir: None,
    };
    assert!(!format!("{ctx:?}").contains(&b64[..16]));
}

#[test]
fn key_base64_round_trip_and_validation() {
    let k = key();
    let b64 = k.to_base64();
    assert_eq!(b64.len(), 88);
    let k2 = SealKey::from_base64(&format!("{}\n", &*b64)).unwrap();
    assert_eq!(k.bytes(), k2.bytes());
    assert!(matches!(
        SealKey::from_base64("AAAA"),
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        SealKey::from_base64("not base64!"),
        Err(Error::InvalidKey { .. })
    ));
    let err = SealKey::from_base64(&b64[..80]).unwrap_err().to_string();
    assert!(!err.contains(&b64[..16]));
}

fn write_key(dir: &std::path::Path, name: &str) -> (PathBuf, Zeroizing<String>) {
    let k = key();
    let b64 = k.to_base64();
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", &*b64)).unwrap();
    (path, b64)
}

#[test]
fn key_lookup_order() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    let (explicit, b_explicit) = write_key(tmp.path(), "explicit.key");
    let (via_env, b_env) = write_key(tmp.path(), "env.key");
    let (via_creds, b_creds) = write_key(&creds, CREDENTIAL_KEY_NAME);
    let creds_s = creds.to_str().unwrap();
    let env_s = via_env.to_str().unwrap();

    let all = fake_env(&[(KEY_FILE_ENV, env_s), (CREDENTIALS_DIRECTORY_ENV, creds_s)]);
    let (k, from) = SealKey::load(Some(&explicit), &all).unwrap();
    assert_eq!((k.to_base64(), from), (b_explicit, explicit.clone()));

    let (k, from) = SealKey::load(None, &all).unwrap();
    assert_eq!((k.to_base64(), from), (b_env, via_env.clone()));

    let creds_only = fake_env(&[(KEY_FILE_ENV, ""), (CREDENTIALS_DIRECTORY_ENV, creds_s)]);
    let (k, from) = SealKey::load(None, &creds_only).unwrap();
    assert_eq!((k.to_base64(), from), (b_creds, via_creds));

    // Nothing configured, or a credentials directory without the key.
    let none = fake_env(&[]);
    let err = SealKey::load(None, &none).unwrap_err();
    assert!(matches!(err, Error::KeyNotFound));
    let msg = err.to_string();
    for place in [
        "--key-file",
        KEY_FILE_ENV,
        CREDENTIAL_KEY_NAME,
        "CREDENTIALS_DIRECTORY",
    ] {
        assert!(msg.contains(place), "{msg}");
    }
    let empty_creds = fake_env(&[(CREDENTIALS_DIRECTORY_ENV, tmp.path().to_str().unwrap())]);
    assert!(matches!(
        SealKey::load(None, &empty_creds),
        Err(Error::KeyNotFound)
    ));

    // A named but missing file is an error, not a fall-through.
    let missing = tmp.path().join("missing.key");
    assert!(matches!(
        SealKey::load(Some(&missing), &all),
        Err(Error::KeyFileRead { .. })
    ));
    let env_missing = fake_env(&[
        (KEY_FILE_ENV, missing.to_str().unwrap()),
        (CREDENTIALS_DIRECTORY_ENV, creds_s),
    ]);
    assert!(matches!(
        SealKey::load(None, &env_missing),
        Err(Error::KeyFileRead { .. })
    ));

    // Wrong length, and the error does not echo the content.
    let short = tmp.path().join("short.key");
    std::fs::write(&short, "c2VjcmV0LXNob3J0LWtleQ==\n").unwrap();
    let err = SealKey::load(Some(&short), &none).unwrap_err();
    assert!(matches!(err, Error::KeyFileInvalid { .. }));
    assert!(!err.to_string().contains("c2VjcmV0"));
}

#[test]
fn secret_ref_serde() {
    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    struct M {
        api_key: SecretRef,
    }
    let m: M = toml::from_str("api_key = { env = \"FRESHDESK_API_KEY\" }").unwrap();
    assert_eq!(m.api_key, SecretRef::Env("FRESHDESK_API_KEY".into()));
    let m: M = toml::from_str("api_key = { file = \"freshdesk_api_key\" }").unwrap();
    assert_eq!(m.api_key, SecretRef::File("freshdesk_api_key".into()));
    let sealed = seal(&key(), &id("a"), "api_key", b"x").unwrap();
    let m: M = toml::from_str(&format!("api_key = {{ sealed = \"{sealed}\" }}")).unwrap();
    assert_eq!(m.api_key, SecretRef::Sealed(sealed.clone()));

    let back = toml::to_string(&m).unwrap();
    let m2: M = toml::from_str(&back).unwrap();
    assert_eq!(m2.api_key, m.api_key);
    assert_eq!(
        serde_json::to_value(SecretRef::Env("X".into())).unwrap(),
        serde_json::json!({"env": "X"})
    );

    for bad in [
        "api_key = \"plain\"",
        "api_key = {}",
        "api_key = { env = \"A\", file = \"b\" }",
        "api_key = { vault = \"x\" }",
        "api_key = { env = \"A\", extra = 1 }",
        "api_key = { env = \"\" }",
        "api_key = { file = \"../etc/passwd\" }",
        "api_key = { file = \"a/b\" }",
        "api_key = { sealed = \"nope\" }",
    ] {
        assert!(toml::from_str::<M>(bad).is_err(), "{bad}");
    }
}

#[test]
fn describe_and_fingerprint() {
    assert_eq!(SecretRef::Env("X".into()).describe(), "env:X");
    assert_eq!(SecretRef::File("f".into()).describe(), "file:f");
    let d = SecretRef::Sealed("sos1:abc".into()).describe();
    assert!(d.starts_with("sealed:"));
    assert_eq!(d.len(), "sealed:".len() + 12);
    assert!(!d.contains("abc"));

    let a = SecretRef::Env("X".into()).fingerprint();
    assert_eq!(a.len(), 16);
    assert_eq!(a, SecretRef::Env("X".into()).fingerprint());
    assert_ne!(a, SecretRef::File("X".into()).fingerprint());
    assert_ne!(a, SecretRef::Env("Y".into()).fingerprint());
    assert_eq!(keyed_fingerprint(b"k", &[b"ab", b"c"]).len(), 64);
    assert_ne!(
        keyed_fingerprint(b"k", &[b"ab", b"c"]),
        keyed_fingerprint(b"k", &[b"a", b"bc"])
    );
}

#[test]
fn resolve_env() {
    let env = fake_env(&[("FD_KEY", "abc123"), ("EMPTY", "")]);
    let ctx = ResolveContext::new(None, &env);
    let i = id("fd");
    let s = SecretRef::Env("FD_KEY".into())
        .resolve(&i, "api_key", &ctx)
        .unwrap();
    assert_eq!(s.expose(), b"abc123");
    let err = SecretRef::Env("MISSING".into())
        .resolve(&i, "api_key", &ctx)
        .unwrap_err();
    assert!(matches!(err, Error::EnvNotSet { .. }));
    assert!(err.to_string().contains("MISSING"));
    assert!(matches!(
        SecretRef::Env("EMPTY".into()).resolve(&i, "api_key", &ctx),
        Err(Error::EnvEmpty { .. })
    ));
}

#[test]
fn resolve_file() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("fd_key"), "file-secret\n").unwrap();
    std::fs::write(creds.join("crlf"), "v\r\n").unwrap();
    std::fs::write(creds.join("empty"), "\n").unwrap();
    std::fs::write(tmp.path().join("outside"), "nope").unwrap();
    let env = fake_env(&[(CREDENTIALS_DIRECTORY_ENV, creds.to_str().unwrap())]);
    let ctx = ResolveContext::new(None, &env);
    assert_eq!(ctx.credentials_dir.as_deref(), Some(creds.as_path()));
    let i = id("fd");
    let r = |f: &str| SecretRef::File(f.into()).resolve(&i, "api_key", &ctx);
    assert_eq!(r("fd_key").unwrap().expose(), b"file-secret");
    assert_eq!(r("crlf").unwrap().expose(), b"v");
    assert!(matches!(r("empty"), Err(Error::BadFileSize { .. })));
    let err = r("missing").unwrap_err();
    assert!(matches!(err, Error::ReadFile { .. }));
    assert!(err.to_string().contains("missing"));
    for escape in ["../outside", "..", ".", "/etc/passwd", "a/b", "", "a\\b"] {
        assert!(
            matches!(r(escape), Err(Error::InvalidFileName { .. })),
            "{escape:?}"
        );
    }
    let no_dir_env = fake_env(&[]);
    let no_dir = ResolveContext::new(None, &no_dir_env);
    assert!(matches!(
        SecretRef::File("fd_key".into()).resolve(&i, "api_key", &no_dir),
        Err(Error::NoCredentialsDirectory { .. })
    ));
}

#[test]
fn resolve_sealed() {
    let k = key();
    let i = id("fd");
    let sealed = SecretRef::Sealed(seal(&k, &i, "api_key", b"sealed-secret").unwrap());
    let env = fake_env(&[]);
    let ctx = ResolveContext::new(Some(&k), &env);
    assert_eq!(
        sealed.resolve(&i, "api_key", &ctx).unwrap().expose(),
        b"sealed-secret"
    );
    assert!(matches!(
        sealed.resolve(&id("other"), "api_key", &ctx),
        Err(Error::Unseal)
    ));
    let no_key = ResolveContext::new(None, &env);
    let err = sealed.resolve(&i, "api_key", &no_key).unwrap_err();
    assert!(matches!(err, Error::NoKey { .. }));
    assert!(err.to_string().contains(&sealed.describe()));
}

proptest! {
    #[test]
    fn prop_round_trip(
        plaintext in proptest::collection::vec(any::<u8>(), 0..512),
        integration in "[a-z0-9][a-z0-9-]{0,20}",
        field in "[a-z_]{1,20}",
        other_field in "[a-z_]{1,20}",
    ) {
        let k = key();
        let i = id(&integration);
        let s = seal(&k, &i, &field, &plaintext).unwrap();
        prop_assert!(check_sealed_format(&s).is_ok());
        let out = unseal(&k, &i, &field, &s).unwrap();
        prop_assert_eq!(out.expose(), plaintext.as_slice());
        if other_field != field {
            prop_assert!(matches!(unseal(&k, &i, &other_field, &s), Err(Error::Unseal)));
        }
        let other = id(&format!("{integration}-x"));
        prop_assert!(matches!(unseal(&k, &other, &field, &s), Err(Error::Unseal)));
    }
}

#[test]
fn the_daemons_own_secrets_are_reserved() {
    for r in [
        SecretRef::Env("SUPPORTOPSD_ADMIN_TOKEN".into()),
        SecretRef::Env("SUPPORTOPSD_SYNC_SECRET".into()),
        SecretRef::Env("SUPPORTOPSD_REMOTE_CREDENTIALS".into()),
        SecretRef::Env("SUPPORTOPSD_READ_TOKEN".into()),
        SecretRef::Env("SUPPORTOPSD_KEY_FILE".into()),
        SecretRef::Env("Supportopsd_Admin_Token".into()),
        SecretRef::Env("CREDENTIALS_DIRECTORY".into()),
        SecretRef::Env("NOTIFY_SOCKET".into()),
        SecretRef::File("supportopsd.key".into()),
        SecretRef::File("SupportOpsD.KEY".into()),
        SecretRef::File("admin.token".into()),
        SecretRef::File("read.token".into()),
        SecretRef::File("sync.secret".into()),
        SecretRef::File("remote.credentials".into()),
        SecretRef::File("policy.toml".into()),
    ] {
        let e = r.check_reserved().expect_err(&r.describe());
        assert!(matches!(e, Error::Reserved { .. }), "{e}");
        assert!(e.to_string().starts_with(&r.describe()), "{e}");
    }
    for r in [
        SecretRef::Env("FRESHDESK_API_KEY".into()),
        SecretRef::Env("SUPPORTOPSD".into()),
        SecretRef::Env("MY_SUPPORTOPSD_TOKEN".into()),
        SecretRef::File("freshdesk_api_key".into()),
        SecretRef::File("supportopsd.key.bak".into()),
        SecretRef::Sealed("sos1:x".into()),
    ] {
        assert!(r.check_reserved().is_ok(), "{}", r.describe());
    }
}

#[test]
fn resolving_a_reserved_reference_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("supportopsd.key"), "the key").unwrap();
    let env = fake_env(&[("SUPPORTOPSD_ADMIN_TOKEN", "admin-token-s3cret")]);
    let mut ctx = ResolveContext::new(None, &env);
    ctx.credentials_dir = Some(dir.path().to_owned());
    for r in [
        SecretRef::Env("SUPPORTOPSD_ADMIN_TOKEN".into()),
        SecretRef::File("supportopsd.key".into()),
    ] {
        let e = r.resolve(&id("slack-main"), "bot_token", &ctx).unwrap_err();
        assert!(matches!(e, Error::Reserved { .. }), "{e}");
        let text = e.to_string();
        assert!(
            !text.contains("s3cret") && !text.contains("the key"),
            "{text}"
        );
    }
}

#[test]
fn credential_names_are_recognised_however_they_are_spelled() {
    for name in [
        "token",
        "api_token",
        "verification_token",
        "apiKey",
        "X-Api-Key",
        "api_key",
        "Authorization",
        "client_secret",
        "webhook.secret",
        "password",
        "db_passwd",
        "private_key",
        "privateKey",
        "credentials",
        "X-Hub-Signature-256",
        "session_cookie",
    ] {
        assert!(
            super::is_credential_name(name),
            "{name} should be a credential"
        );
    }
    for name in [
        "subject",
        "priority",
        "email",
        "author",
        "key",
        "description",
        "requester_id",
        "channel",
    ] {
        assert!(
            !super::is_credential_name(name),
            "{name} is not a credential"
        );
    }
}
