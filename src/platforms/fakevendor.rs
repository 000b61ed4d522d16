//! Reading the vendor's API descriptions for the fakes' request checks: test code only (built
//! with `test-support`, never shipped; `serde_yaml_ng` is only its dependency).
//!
//! The vendor documents are read at run time from `$SUPPORTOPSD_VENDOR_DIR` or
//! `../shared/vendor` next to the crate, and never copied into the repository. Where neither
//! exists the spec check is skipped, and the fake says so once on stderr
//! ([`ApiSpec::load`] returns `None`, and [`ApiSpec::is_loaded`] lets a test report it).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use super::fakekit::lock;
use super::fakespec::ApiSpec;

/// The environment variable naming the vendor directory (holding `openapi/…` and
/// `discovery/…`).
pub const VENDOR_DIR_ENV: &str = "SUPPORTOPSD_VENDOR_DIR";

/// The vendor file `rel` (e.g. `openapi/trello.openapi.json`), if it can be found.
pub fn vendor_file(rel: &str) -> Option<PathBuf> {
    let from_env = std::env::var_os(VENDOR_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vendor");
    from_env
        .into_iter()
        .chain([beside])
        .map(|d| d.join(rel))
        .find(|p| p.is_file())
}

impl ApiSpec {
    /// Loads (once per process) the vendor document `rel` (`openapi/….json|yaml` or
    /// `discovery/….json`). `None`, with one line on stderr, when it cannot be found or read.
    pub fn load(rel: &str) -> Option<&'static ApiSpec> {
        static CACHE: OnceLock<Mutex<HashMap<String, Option<&'static ApiSpec>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        if let Some(hit) = lock(cache).get(rel) {
            return *hit;
        }
        let loaded = vendor_file(rel).and_then(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let doc: Value = if rel.ends_with(".yaml") || rel.ends_with(".yml") {
                serde_yaml_ng::from_str(&text).ok()?
            } else {
                serde_json::from_str(&text).ok()?
            };
            Some(&*Box::leak(Box::new(ApiSpec::parse(rel, &doc))))
        });
        if loaded.is_none() {
            eprintln!(
                "fake platform: vendor document {rel} not found (set {VENDOR_DIR_ENV}); its spec check is skipped"
            );
        }
        lock(cache).insert(rel.to_owned(), loaded);
        loaded
    }

    /// Whether the vendor document `rel` can be loaded (for tests that report a skipped check).
    pub fn is_loaded(rel: &str) -> bool {
        ApiSpec::load(rel).is_some()
    }
}

#[cfg(test)]
mod vendor_tests {
    use http::Method;

    use super::*;

    /// The vendor documents the fakes use parse and describe the operations they cover.
    #[test]
    fn vendor_documents_describe_known_operations() {
        let cases: &[(&str, Method, &str)] = &[
            (
                "openapi/zendesk-support.openapi.yaml",
                Method::POST,
                "/api/v2/tickets",
            ),
            (
                "openapi/zendesk-support.openapi.yaml",
                Method::GET,
                "/api/v2/users/me",
            ),
            ("openapi/trello.openapi.json", Method::POST, "/1/cards"),
            ("openapi/trello.openapi.json", Method::POST, "/1/webhooks"),
            ("openapi/notion.openapi.json", Method::GET, "/v1/users/me"),
            (
                "discovery/sheets-v4.discovery.json",
                Method::POST,
                "/v4/spreadsheets/S/values/A1:append",
            ),
            (
                "discovery/drive-v3.discovery.json",
                Method::POST,
                "/drive/v3/files/F/watch",
            ),
        ];
        let mut skipped = Vec::new();
        for (rel, method, path) in cases {
            match ApiSpec::load(rel) {
                Some(spec) => assert!(spec.describes(method, path), "{rel}: {method} {path}"),
                None => skipped.push(*rel),
            }
        }
        if !skipped.is_empty() {
            eprintln!("spec check skipped (vendor documents not found): {skipped:?}");
        }
    }
}
