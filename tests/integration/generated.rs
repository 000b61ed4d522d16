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
