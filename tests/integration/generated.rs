//! Generated files stay fresh: `schema/*.schema.json` equal the schemas embedded in the binary,
//! and `docs/platforms.md` equals the reference rendered from the catalogue.
//! `SUPPORTOPSD_BLESS=1 cargo test` rewrites them.

use std::path::Path;

use supportopsd::manifest::schema::SchemaKind;

fn check(rel: &str, want: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if std::env::var_os("SUPPORTOPSD_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{rel} is stale: regenerate it with `SUPPORTOPSD_BLESS=1 cargo test` and commit the result"
    );
}

#[test]
fn committed_schemas_match_the_embedded_ones() {
    for kind in SchemaKind::ALL {
        check(&format!("schema/{}", kind.file_name()), &kind.render());
    }
}

#[test]
fn schema_command_prints_the_embedded_schema() {
    let repo = crate::support::TestRepo::new();
    for kind in SchemaKind::ALL {
        let out = repo.run(&["schema", kind.as_str()]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stdout, kind.render());
    }
}

#[test]
fn platform_reference_is_fresh() {
    check(
        "docs/platforms.md",
        &supportopsd::platforms::reference::markdown(),
    );
}

/// A reader that goes away early (`supportopsd schema rule | head`) ends the command quietly:
/// no panic, no error. The rule schema is larger than a pipe's buffer, so the write fails.
#[test]
fn output_into_a_closed_pipe_is_not_a_panic() {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_supportopsd"))
        .args(["schema", "rule"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
