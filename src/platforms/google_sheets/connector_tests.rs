//! The Google Sheets connector against the fake Google ([`super::fake`]): the token
//! exchange, the exact requests each action sends, channel registration and renewal, the row
//! poller, the classification of failures, and that no key or token ever leaks into an error.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::client::{Claims, SCOPES};
use super::connector::{GoogleSheetsConnector, RowCursor, channel_prefix, connect, connect_sheets};
use super::fake::{self, FakeGoogle};
use crate::manifest::model::{Credential, Limits};
use crate::manifest::{Integration, IntegrationId};
use crate::platforms::connector::{
    ActionCall, ConnectError, Connector, PlatformError, Registration, RegistrationOutcome,
    WebhookSync, WebhookTarget,
};
use crate::platforms::fakekit::{ApiSpec, Failure};
use crate::platforms::testkit;
use crate::platforms::{PlatformKind, http};
use crate::secrets::{ResolveContext, Secret};

const HOUR_MS: u64 = 3_600_000;
const URL: &str = "https://supportopsd.example.com/api/webhooks/google_sheets/sheets-main";

fn no_env(_: &str) -> Option<String> {
    None
}

fn integration(
    base_url: Option<String>,
    key: &str,
    spreadsheet: &str,
    config: Value,
) -> Integration {
    let mut credentials = BTreeMap::new();
    credentials.insert(
        "service_account_key".to_owned(),
        Credential::Plain(key.to_owned()),
    );
    credentials.insert(
        "spreadsheet_id".to_owned(),
        Credential::Plain(spreadsheet.to_owned()),
    );
    Integration {
        id: IntegrationId::parse("sheets-main").expect("id"),
        platform: PlatformKind::GoogleSheets,
        name: None,
        description: None,
        file: "integrations/sheets-main.toml".into(),
        credentials,
        config: config.as_object().cloned().unwrap_or_default(),
        webhook: None,
        base_url,
        limits: Limits::default(),
    }
}

fn connector_with(f: &FakeGoogle, config: Value) -> GoogleSheetsConnector {
    let i = integration(
        Some(f.base_url()),
        &fake::key_json(&f.token_uri()),
        fake::SPREADSHEET_ID,
        config,
    );
    connect_sheets(&i, &ResolveContext::new(None, &no_env), f.clock()).expect("connect")
}

async fn setup(config: Value) -> (FakeGoogle, GoogleSheetsConnector) {
    let f = FakeGoogle::start().await;
    let c = connector_with(&f, config);
    (f, c)
}

fn call(action: &str, parameters: Value) -> ActionCall {
    ActionCall {
        action: action.into(),
        parameters,
        idempotency_key: "job-1/step-0".into(),
    }
}

fn target(previous: Option<Registration>) -> WebhookTarget {
    WebhookTarget {
        integration: IntegrationId::parse("sheets-main").expect("id"),
        url: URL.into(),
        events: vec!["file_changed".into(), "row_added".into()],
        secret: None,
        previous,
    }
}

/// The key material that must never show.
fn assert_no_secret(text: &str) {
    let pem_body: Vec<&str> = fake::TEST_ONLY_PRIVATE_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for line in pem_body {
        assert!(!text.contains(line), "private key leaked: {text}");
    }
    assert!(!text.contains("ya29."), "access token leaked: {text}");
}

/// API requests (not the token exchange) carry the token in the header only.
fn api_requests(f: &FakeGoogle) -> Vec<crate::platforms::fakekit::Recorded> {
    f.requests()
        .into_iter()
        .filter(|r| r.path != "/token")
        .collect()
}

fn registered(s: WebhookSync) -> (RegistrationOutcome, Registration) {
    match s {
        WebhookSync::Registered {
            outcome,
            registration,
        } => (outcome, registration),
        WebhookSync::Manual(m) => panic!("manual: {m}"),
    }
}

// === auth and check ===

#[tokio::test]
async fn check_signs_in_with_a_jwt_and_reads_the_title() {
    let (f, c) = setup(json!({})).await;
    let h = c.check().await.expect("check");
    assert_eq!(h.identity.as_deref(), Some(fake::CLIENT_EMAIL));
    assert!(h.detail.contains(fake::SPREADSHEET_TITLE), "{}", h.detail);
    let reqs = f.requests();
    assert_eq!(reqs.len(), 2);
    let t = &reqs[0];
    assert_eq!((t.method.as_str(), t.path.as_str()), ("POST", "/token"));
    assert_eq!(
        t.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = t.form();
    assert_eq!(
        form[0],
        ("grant_type".into(), super::client::JWT_BEARER_GRANT.into())
    );
    // The assertion: RS256, our kid, and the claims Google requires.
    let assertion = &form[1].1;
    let header = jsonwebtoken::decode_header(assertion).expect("header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some(fake::KEY_ID));
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(fake::TEST_ONLY_PUBLIC_KEY_PEM.as_bytes())
        .expect("public key");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[f.token_uri()]);
    let claims = jsonwebtoken::decode::<Claims>(assertion, &key, &v)
        .expect("valid signature")
        .claims;
    assert_eq!(claims.iss, fake::CLIENT_EMAIL);
    assert_eq!(claims.scope, SCOPES);
    assert_eq!(claims.exp - claims.iat, 3600);

    let g = &reqs[1];
    assert_eq!(g.method.as_str(), "GET");
    assert_eq!(g.path, format!("/v4/spreadsheets/{}", fake::SPREADSHEET_ID));
    assert_eq!(
        g.query_param("fields"),
        Some("spreadsheetId,properties.title")
    );
    let auth = g.header("authorization").expect("auth");
    assert!(auth.starts_with("Bearer ya29.fake-"), "{auth}");
    assert_eq!(g.header("user-agent"), Some(http::USER_AGENT));
    assert!(f.spec_errors().is_empty(), "{:?}", f.spec_errors());
}

#[tokio::test]
async fn tokens_are_cached_until_shortly_before_expiry() {
    let (f, c) = setup(json!({})).await;
    c.check().await.expect("check");
    c.check().await.expect("check");
    assert_eq!(f.tokens_issued(), 1);
    // 54 minutes on: still more than the 5-minute margin left.
    f.advance(54 * 60_000);
    c.check().await.expect("check");
    assert_eq!(f.tokens_issued(), 1);
    // 56 minutes on: within the margin, so a new assertion is signed first.
    f.advance(2 * 60_000);
    c.check().await.expect("check");
    assert_eq!(f.tokens_issued(), 2);
    let posts = f.requests().iter().filter(|r| r.path == "/token").count();
    assert_eq!(posts, 2);
}

#[tokio::test]
async fn a_revoked_token_is_replaced_and_the_call_made_again() {
    let (f, c) = setup(json!({})).await;
    c.check().await.expect("check");
    f.revoke_tokens();
    f.clear_requests();
    // The cached token is refused (401): a new one is signed for and the call repeated.
    c.check().await.expect("check after re-auth");
    assert_eq!(f.tokens_issued(), 2);
    let paths: Vec<String> = f.requests().iter().map(|r| r.path.clone()).collect();
    let get = format!("/v4/spreadsheets/{}", fake::SPREADSHEET_ID);
    assert_eq!(paths, vec![get.clone(), "/token".to_owned(), get]);
}

#[tokio::test]
async fn a_refused_new_token_is_unauthorized() {
    let (f, c) = setup(json!({})).await;
    // Every token is revoked as soon as it is issued: the fresh one is refused too.
    f.revoke_each_token();
    let e = c.check().await.expect_err("refused");
    assert!(matches!(e, PlatformError::Unauthorized { .. }), "{e:?}");
    assert_no_secret(&format!("{e} {e:?}"));
    assert_eq!(f.tokens_issued(), 1, "no loop of sign-ins");
}

#[tokio::test]
async fn bad_credentials_are_unauthorized() {
    let f = FakeGoogle::start().await;
    // Another service account (the fake knows only its own).
    let key = fake::key_json(&f.token_uri())
        .replace(fake::CLIENT_EMAIL, "intruder@x.iam.gserviceaccount.com");
    let i = integration(Some(f.base_url()), &key, fake::SPREADSHEET_ID, json!({}));
    let c = connect_sheets(&i, &ResolveContext::new(None, &no_env), f.clock()).expect("connect");
    let e = c.check().await.expect_err("unknown account");
    match &e {
        PlatformError::Unauthorized { detail } => {
            assert!(detail.contains("invalid_grant"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_no_secret(&format!("{e} {e:?}"));

    // A disabled account, with the right key.
    let c = connector_with(&f, json!({}));
    f.disable_account();
    assert!(matches!(
        c.check().await,
        Err(PlatformError::Unauthorized { .. })
    ));
    // No API call was attempted without a token.
    assert!(api_requests(&f).is_empty());
}

#[tokio::test]
async fn a_clock_far_off_is_refused_by_the_token_endpoint() {
    let f = FakeGoogle::start().await;
    let i = integration(
        Some(f.base_url()),
        &fake::key_json(&f.token_uri()),
        fake::SPREADSHEET_ID,
        json!({}),
    );
    let fake_now = f.clock();
    // The daemon's clock two hours behind the platform's: the assertion has expired.
    let skewed: super::client::Clock =
        std::sync::Arc::new(move || fake_now().saturating_sub(2 * HOUR_MS));
    let c = connect_sheets(&i, &ResolveContext::new(None, &no_env), skewed).expect("connect");
    let e = c.check().await.expect_err("skewed");
    assert!(
        matches!(&e, PlatformError::Unauthorized { detail } if detail.contains("iat and exp")),
        "{e:?}"
    );
}

#[tokio::test]
async fn unknown_spreadsheet_is_not_found_and_unshared_is_unauthorized() {
    let f = FakeGoogle::start().await;
    let i = integration(
        Some(f.base_url()),
        &fake::key_json(&f.token_uri()),
        "1NoSuchSheet",
        json!({}),
    );
    let c = connect_sheets(&i, &ResolveContext::new(None, &no_env), f.clock()).expect("connect");
    assert!(matches!(
        c.check().await,
        Err(PlatformError::NotFound { .. })
    ));

    let c = connector_with(&f, json!({}));
    f.unshare();
    match c.check().await {
        Err(PlatformError::Unauthorized { detail }) => {
            assert!(detail.contains("PERMISSION_DENIED"), "{detail}");
            assert!(detail.contains("client_email"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn network_failure_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let base = format!("http://{addr}");
    let i = integration(
        Some(base.clone()),
        &fake::key_json(&format!("{base}/token")),
        fake::SPREADSHEET_ID,
        json!({}),
    );
    let c = connect(&i, &ResolveContext::new(None, &no_env)).expect("connect");
    let e = c.check().await.expect_err("nothing listens");
    assert!(matches!(e, PlatformError::NotPerformed { .. }), "{e:?}");
    assert!(e.retryable());
}

#[tokio::test]
async fn rate_limits_and_outages_are_classified() {
    let (f, c) = setup(json!({})).await;
    f.fail_next(
        "values.append",
        Failure::RateLimited {
            retry_after_secs: 30,
        },
        1,
    );
    let e = c
        .execute(&call("append_row", json!({"values": ["a"]})))
        .await
        .expect_err("429");
    assert_eq!(
        e,
        PlatformError::RateLimited {
            retry_after: Some(Duration::from_secs(30))
        }
    );
    f.fail_next("spreadsheets.get", Failure::ServerError, 1);
    let e = c.check().await.expect_err("500");
    assert!(
        matches!(
            &e,
            PlatformError::Transient {
                retry_after: None,
                ..
            }
        ),
        "{e:?}"
    );
    f.fail_next(
        "token",
        Failure::Unavailable {
            retry_after_secs: 5,
        },
        1,
    );
    // A fresh connector must sign in, and the token endpoint is down.
    let c2 = connector_with(&f, json!({}));
    let e = c2.check().await.expect_err("503");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
    assert!(matches!(e, PlatformError::Transient { .. }));
    // And the operations recover afterwards.
    c2.check().await.expect("recovered");
}

#[test]
fn drive_quota_reasons_are_rate_limits() {
    let body = json!({"error": {"errors": [{"domain": "usageLimits", "reason": "userRateLimitExceeded",
        "message": "User Rate Limit Exceeded"}], "code": 403, "message": "User Rate Limit Exceeded"}});
    let e = super::client::classify(
        ::http::StatusCode::FORBIDDEN,
        None,
        body.to_string().as_bytes(),
    );
    assert_eq!(e, PlatformError::RateLimited { retry_after: None });
    let body = json!({"error": {"code": 401, "message": "Unauthorized WebHook callback channel: https://x.example.com/h"}});
    let e = super::client::classify(
        ::http::StatusCode::UNAUTHORIZED,
        None,
        body.to_string().as_bytes(),
    );
    assert!(
        matches!(&e, PlatformError::Unauthorized { detail } if detail.contains("verify")),
        "{e:?}"
    );
}

// === connect ===

#[test]
fn bad_keys_are_refused_at_connect_without_showing_them() {
    let ctx = ResolveContext::new(None, &no_env);
    let broken_pem = fake::key_json("https://oauth2.googleapis.com/token").replace("MII", "XXX");
    for key in [
        "not json".to_owned(),
        json!({"type": "authorized_user", "client_email": "a@b"}).to_string(),
        json!({"type": "service_account", "private_key": fake::TEST_ONLY_PRIVATE_KEY_PEM})
            .to_string(),
        json!({"type": "service_account", "client_email": "a@b"}).to_string(),
        broken_pem,
    ] {
        let i = integration(None, &key, fake::SPREADSHEET_ID, json!({}));
        match connect(&i, &ctx) {
            Err(e @ ConnectError::Client(_)) => {
                let text = format!("{e} {e:?}");
                assert!(text.contains("service_account_key"), "{text}");
                assert_no_secret(&text);
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    let i = integration(None, &fake::key_json("x"), " ", json!({}));
    assert!(matches!(connect(&i, &ctx), Err(ConnectError::Missing(f)) if f == "spreadsheet_id"));
    let i = integration(
        None,
        &fake::key_json("x"),
        fake::SPREADSHEET_ID,
        json!({"channel_expiration_seconds": 90_000}),
    );
    assert!(matches!(connect(&i, &ctx), Err(ConnectError::Client(_))));
    // Issue 16 item 12: a 300-second channel lapsed between two 5-minute passes.
    for short in [300, 1_799] {
        let i = integration(
            None,
            &fake::key_json("x"),
            fake::SPREADSHEET_ID,
            json!({"channel_expiration_seconds": short}),
        );
        assert!(
            matches!(connect(&i, &ctx), Err(ConnectError::Client(m)) if m.contains("1800")),
            "{short}"
        );
    }
}

#[tokio::test]
async fn debug_output_hides_the_key_and_token() {
    let (_f, c) = setup(json!({})).await;
    c.check().await.expect("check");
    let text = format!("{c:?}");
    assert!(text.contains(fake::CLIENT_EMAIL));
    assert_no_secret(&text);
    assert!(text.contains("***"));
    let key =
        super::client::ServiceAccountKey::parse(&Secret::from(fake::key_json("x"))).expect("key");
    assert_no_secret(&format!("{key:?}"));
}

// === actions ===

/// Adding an action to the catalogue without its request code (an arm of `execute`'s `match`)
/// fails here.
#[tokio::test]
async fn every_catalogued_action_reaches_the_platform() {
    let (fake, c) = setup(json!({})).await;
    // What the request code checks beyond the catalogue (the rest are plain samples).
    let values = json!({
        "values": ["sample"],
        "data": [{ "range": "A1", "values": [["sample"]] }],
    });
    testkit::assert_every_action_reaches_the_platform(&super::DESCRIPTOR, &c, &values, || {
        fake.requests().len()
    })
    .await;
}

#[tokio::test]
async fn append_row_with_values() {
    let (f, c) = setup(json!({})).await;
    f.set_rows(
        fake::FIRST_SHEET,
        vec![
            vec![json!("Ticket"), json!("Customer")],
            vec![json!("1"), json!("a.io")],
        ],
    );
    let out = c
        .execute(&call(
            "append_row",
            json!({"values": ["4411", "acme.io", "=1+2", null, true]}),
        ))
        .await
        .expect("append");
    let r = out.result;
    assert_eq!(r["spreadsheet_id"], fake::SPREADSHEET_ID);
    assert_eq!(r["table_range"], "Tickets!A1:B2");
    assert_eq!(r["updated_range"], "Tickets!A3:E3");
    assert_eq!(r["updated_rows"], 1);
    assert_eq!(r["updated_cells"], 4);
    assert_eq!(r["row_number"], 3);
    let reqs = api_requests(&f);
    assert_eq!(reqs.len(), 1);
    let a = &reqs[0];
    assert_eq!(a.method.as_str(), "POST");
    // No sheet configured: `A1` is the first sheet.
    assert_eq!(
        a.path,
        format!("/v4/spreadsheets/{}/values/A1:append", fake::SPREADSHEET_ID)
    );
    assert_eq!(a.query_param("valueInputOption"), Some("USER_ENTERED"));
    assert_eq!(a.query_param("insertDataOption"), Some("INSERT_ROWS"));
    assert_eq!(
        a.json(),
        json!({"majorDimension": "ROWS", "values": [["4411", "acme.io", "=1+2", null, true]]})
    );
    // USER_ENTERED: numbers parsed, the formula kept as entered.
    let sheet = f.sheet(fake::FIRST_SHEET).expect("sheet");
    assert_eq!(sheet.rows[2][0], json!(4411));
    assert_eq!(sheet.rows[2][2], json!("=1+2"));
    assert!(f.spec_errors().is_empty(), "{:?}", f.spec_errors());
}

#[tokio::test]
async fn append_row_with_fields_places_cells_by_header() {
    let (f, c) = setup(json!({"sheet": "Escalations log", "value_input_option": "RAW"})).await;
    f.set_rows(
        "Escalations log",
        vec![vec![json!("Ticket"), json!("Customer"), json!("Priority")]],
    );
    let out = c
        .execute(&call(
            "append_row",
            json!({"fields": {"Priority": 3, "Ticket": "4411"}, "insert_data_option": "OVERWRITE"}),
        ))
        .await
        .expect("append");
    assert_eq!(out.result["row_number"], 2);
    let reqs = api_requests(&f);
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].path,
        format!(
            "/v4/spreadsheets/{}/values/%27Escalations%20log%27!1:1",
            fake::SPREADSHEET_ID
        )
    );
    let a = &reqs[1];
    assert!(
        a.path.ends_with("/values/%27Escalations%20log%27:append"),
        "{}",
        a.path
    );
    assert_eq!(a.query_param("valueInputOption"), Some("RAW"));
    assert_eq!(a.query_param("insertDataOption"), Some("OVERWRITE"));
    assert_eq!(a.json()["values"], json!([["4411", null, 3]]));
    let sheet = f.sheet("Escalations log").expect("sheet");
    assert_eq!(sheet.rows[1], vec![json!("4411"), Value::Null, json!(3)]);

    // An unknown header is an error naming the headers; nothing is written.
    f.clear_requests();
    let e = c
        .execute(&call("append_row", json!({"fields": {"Nope": 1}})))
        .await
        .expect_err("unknown header");
    assert!(
        matches!(&e, PlatformError::Invalid(m) if m.contains("Nope") && m.contains("Ticket, Customer, Priority")),
        "{e:?}"
    );
    assert!(api_requests(&f).iter().all(|r| r.method.as_str() == "GET"));
}

#[tokio::test]
async fn update_row_by_number_and_by_range() {
    let (f, c) = setup(json!({"sheet": "Tickets"})).await;
    f.set_rows(
        "Tickets",
        vec![
            vec![json!("Ticket"), json!("Status")],
            vec![json!("1"), json!("open")],
        ],
    );
    let out = c
        .execute(&call(
            "update_row",
            json!({"row_number": "2", "values": ["1", "closed"], "value_input_option": "RAW"}),
        ))
        .await
        .expect("update");
    for k in [
        "spreadsheet_id",
        "updated_range",
        "updated_rows",
        "updated_columns",
        "updated_cells",
    ] {
        assert!(out.result.get(k).is_some(), "{k}");
    }
    assert_eq!(out.result["updated_range"], "Tickets!A2:B2");
    assert_eq!(out.result["updated_cells"], 2);
    let reqs = api_requests(&f);
    let u = reqs.last().expect("update");
    assert_eq!(u.method.as_str(), "PUT");
    assert_eq!(
        u.path,
        format!(
            "/v4/spreadsheets/{}/values/%27Tickets%27!A2:B2",
            fake::SPREADSHEET_ID
        )
    );
    assert_eq!(u.query_param("valueInputOption"), Some("RAW"));
    assert_eq!(
        u.json(),
        json!({"range": "'Tickets'!A2:B2", "majorDimension": "ROWS", "values": [["1", "closed"]]})
    );
    assert_eq!(
        f.sheet("Tickets").expect("sheet").rows[1][1],
        json!("closed")
    );

    // By fields: the header row first.
    c.execute(&call(
        "update_row",
        json!({"row_number": 2, "fields": {"Status": "pending"}}),
    ))
    .await
    .expect("update by fields");
    assert_eq!(
        f.sheet("Tickets").expect("sheet").rows[1][1],
        json!("pending")
    );

    // By range, unqualified: the configured sheet is prefixed.
    let out = c
        .execute(&call(
            "update_row",
            json!({"range": "B2", "values": ["done"]}),
        ))
        .await
        .expect("update by range");
    assert_eq!(out.result["updated_range"], "Tickets!B2:B2");
    assert_eq!(f.sheet("Tickets").expect("sheet").rows[1][1], json!("done"));
    assert!(f.spec_errors().is_empty(), "{:?}", f.spec_errors());
}

#[tokio::test]
async fn read_range_passes_render_options() {
    let (f, c) = setup(json!({})).await;
    f.set_rows(
        "Tickets",
        vec![
            vec![json!("Ticket"), json!("Total")],
            vec![json!(7), json!("=A2*2")],
        ],
    );
    let out = c
        .execute(&call(
            "read_range",
            json!({"range": "Tickets!A1:B5", "value_render_option": "FORMULA",
                   "major_dimension": "ROWS", "date_time_render_option": "FORMATTED_STRING"}),
        ))
        .await
        .expect("read");
    assert_eq!(out.result["range"], "Tickets!A1:B5");
    assert_eq!(out.result["major_dimension"], "ROWS");
    assert_eq!(
        out.result["values"],
        json!([["Ticket", "Total"], [7, "=A2*2"]])
    );
    assert_eq!(out.result["row_count"], 2);
    let r = api_requests(&f).pop().expect("get");
    assert_eq!(r.query_param("valueRenderOption"), Some("FORMULA"));
    assert_eq!(r.query_param("majorDimension"), Some("ROWS"));
    assert_eq!(
        r.query_param("dateTimeRenderOption"),
        Some("FORMATTED_STRING")
    );
    // Default rendering is formatted text, and an empty range has no `values`.
    let out = c
        .execute(&call("read_range", json!({"range": "Tickets!A2:A2"})))
        .await
        .expect("read");
    assert_eq!(out.result["values"], json!([["7"]]));
    let out = c
        .execute(&call("read_range", json!({"range": "Tickets!D9:E9"})))
        .await
        .expect("read empty");
    assert_eq!(out.result["values"], json!([]));
    assert_eq!(out.result["row_count"], 0);
    // An unknown sheet is Google's 400.
    let e = c
        .execute(&call("read_range", json!({"range": "Nope!A1"})))
        .await
        .expect_err("bad range");
    assert!(
        matches!(&e, PlatformError::Rejected { status: 400, detail } if detail.contains("Unable to parse range")),
        "{e:?}"
    );
}

#[tokio::test]
async fn create_sheet_with_headers() {
    let (f, c) = setup(json!({})).await;
    let out = c
        .execute(&call(
            "create_sheet",
            json!({"title": "Weekly report", "index": 0, "frozen_row_count": 1,
                   "row_count": 100, "column_count": 5, "headers": ["Week", "Tickets"]}),
        ))
        .await
        .expect("create");
    assert_eq!(out.result["title"], "Weekly report");
    assert_eq!(out.result["index"], 0);
    assert!(out.result["sheet_id"].is_i64());
    let reqs = api_requests(&f);
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[0].path,
        format!("/v4/spreadsheets/{}:batchUpdate", fake::SPREADSHEET_ID)
    );
    assert_eq!(
        reqs[0].json(),
        json!({"requests": [{"addSheet": {"properties": {"title": "Weekly report", "index": 0,
            "gridProperties": {"rowCount": 100, "columnCount": 5, "frozenRowCount": 1}}}}]})
    );
    assert_eq!(reqs[1].method.as_str(), "PUT");
    assert_eq!(reqs[1].query_param("valueInputOption"), Some("RAW"));
    let sheet = f.sheet("Weekly report").expect("sheet");
    assert_eq!(sheet.rows[0], vec![json!("Week"), json!("Tickets")]);
    assert_eq!(sheet.frozen_rows, 1);
    // A second sheet of the same name is Google's 400.
    let e = c
        .execute(&call("create_sheet", json!({"title": "Weekly report"})))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(&e, PlatformError::Rejected { status: 400, detail } if detail.contains("already exists")),
        "{e:?}"
    );
    assert!(f.spec_errors().is_empty(), "{:?}", f.spec_errors());
}

#[tokio::test]
async fn batch_update_writes_ranges_with_formulas_and_formats() {
    let (f, c) = setup(json!({})).await;
    let bold_header = json!({"repeatCell": {
        "range": {"sheetId": fake::FIRST_SHEET_ID, "startRowIndex": 0, "endRowIndex": 1},
        "cell": {"userEnteredFormat": {"textFormat": {"bold": true}}},
        "fields": "userEnteredFormat.textFormat.bold"}});
    let number_format = json!({"repeatCell": {
        "range": {"sheetId": fake::FIRST_SHEET_ID, "startColumnIndex": 1, "endColumnIndex": 2},
        "cell": {"userEnteredFormat": {"numberFormat": {"type": "NUMBER", "pattern": "#,##0.00"}}},
        "fields": "userEnteredFormat.numberFormat"}});
    let out = c
        .execute(&call(
            "batch_update",
            json!({
                "value_input_option": "USER_ENTERED",
                "data": [
                    {"range": "Tickets!A1:B1", "values": [["Ticket", "Amount"]]},
                    {"range": "Tickets!A2", "values": [["4411", "12.5"], ["Total", "=SUM(B2:B2)"]]},
                    {"range": "Tickets!D1", "values": [["x", "y"]], "major_dimension": "COLUMNS"},
                ],
                "requests": [bold_header, number_format],
            }),
        ))
        .await
        .expect("batch");
    let r = &out.result;
    assert_eq!(r["total_updated_cells"], 8);
    assert_eq!(r["total_updated_sheets"], 1);
    assert_eq!(r["responses"].as_array().map(Vec::len), Some(3));
    assert_eq!(r["replies"], json!([{}, {}]));
    for k in [
        "spreadsheet_id",
        "total_updated_rows",
        "total_updated_columns",
    ] {
        assert!(r.get(k).is_some(), "{k}");
    }
    let reqs = api_requests(&f);
    assert_eq!(reqs.len(), 2);
    assert!(reqs[0].path.ends_with(":batchUpdate") && !reqs[0].path.contains("values"));
    assert_eq!(reqs[0].json()["requests"][0], bold_header);
    assert!(reqs[1].path.ends_with("/values:batchUpdate"));
    let body = reqs[1].json();
    assert_eq!(body["valueInputOption"], "USER_ENTERED");
    assert_eq!(body["data"][2]["majorDimension"], "COLUMNS");
    let sheet = f.sheet("Tickets").expect("sheet");
    assert_eq!(sheet.rows[1][1], json!(12.5));
    assert_eq!(sheet.rows[2][1], json!("=SUM(B2:B2)"));
    assert_eq!(sheet.rows[1][3], json!("y"));
    assert_eq!(sheet.formatting, vec![bold_header, number_format]);
    assert!(f.spec_errors().is_empty(), "{:?}", f.spec_errors());

    // Only requests: one call.
    f.clear_requests();
    c.execute(&call(
        "batch_update",
        json!({"requests": [{"updateSheetProperties": {"properties": {"sheetId": 0, "gridProperties": {"frozenRowCount": 1}}, "fields": "gridProperties.frozenRowCount"}}]}),
    ))
    .await
    .expect("requests only");
    assert_eq!(api_requests(&f).len(), 1);
    assert_eq!(f.sheet("Tickets").expect("sheet").frozen_rows, 1);
}

#[tokio::test]
async fn invalid_parameters_send_nothing() {
    let (f, c) = setup(json!({})).await;
    let cases = [
        ("append_row", json!({}), "needs at least one of"),
        (
            "append_row",
            json!({"values": ["a"], "colour": "red"}),
            "unknown parameter `colour`",
        ),
        ("append_row", json!({"values": [["nested"]]}), "flat list"),
        ("append_row", json!({"values": []}), "empty"),
        (
            "append_row",
            json!({"values": ["a"], "fields": {"A": 1}}),
            "not both",
        ),
        (
            "append_row",
            json!({"values": ["a"], "value_input_option": "PARSED"}),
            "RAW, USER_ENTERED",
        ),
        (
            "update_row",
            json!({"values": ["a"]}),
            "needs at least one of `row_number`, `range`",
        ),
        (
            "update_row",
            json!({"row_number": 0, "values": ["a"]}),
            "1 or more",
        ),
        (
            "update_row",
            json!({"row_number": 2, "range": "A2", "values": ["a"]}),
            "not both",
        ),
        (
            "update_row",
            json!({"range": "A2", "fields": {"A": 1}}),
            "needs `row_number`",
        ),
        (
            "read_range",
            json!({}),
            "missing required parameter `range`",
        ),
        ("read_range", json!({"range": " "}), "empty"),
        ("create_sheet", json!({"title": ""}), "empty"),
        (
            "create_sheet",
            json!({"title": "x", "index": -1}),
            "0 or more",
        ),
        ("batch_update", json!({"data": []}), "both empty"),
        (
            "batch_update",
            json!({"data": [{"values": [[1]]}]}),
            "needs a `range`",
        ),
        (
            "batch_update",
            json!({"data": [{"range": "A1", "values": [1]}]}),
            "list of cells",
        ),
        (
            "batch_update",
            json!({"data": [{"range": "A1", "values": [[1]], "extra": 1}]}),
            "unknown key",
        ),
        (
            "batch_update",
            json!({"requests": [{"repeatCell": {}, "addSheet": {}}]}),
            "exactly one",
        ),
        ("no_such_action", json!({}), "no action"),
        ("append_row", json!([1]), "must be a table"),
    ];
    for (action, params, needle) in cases {
        match c.execute(&call(action, params.clone())).await {
            Err(PlatformError::Invalid(m)) => assert!(m.contains(needle), "{action} {params}: {m}"),
            other => panic!("{action} {params}: {other:?}"),
        }
    }
    assert!(f.requests().is_empty(), "{:?}", f.requests());
}

// === the spec check ===

#[tokio::test]
async fn the_fake_refuses_what_the_discovery_document_does_not_allow() {
    if !ApiSpec::is_loaded(fake::SHEETS_SPEC) || !ApiSpec::is_loaded(fake::DRIVE_SPEC) {
        eprintln!("skipped: the Sheets/Drive discovery documents are not available");
        return;
    }
    let (f, c) = setup(json!({})).await;
    // A request kind Sheets does not have, passed through by batch_update.
    let e = c
        .execute(&call(
            "batch_update",
            json!({"requests": [{"makeItPretty": {"sheetId": 0}}]}),
        ))
        .await
        .expect_err("unknown request kind");
    match &e {
        PlatformError::Rejected {
            status: 400,
            detail,
        } => {
            assert!(detail.contains("Invalid JSON payload"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        f.spec_errors().iter().any(|e| e.contains("makeItPretty")),
        "{:?}",
        f.spec_errors()
    );
    // A query parameter `values.append` does not take, sent by hand with a valid token.
    c.check().await.expect("token");
    let token = f
        .requests()
        .iter()
        .rev()
        .find_map(|r| r.header("authorization").map(str::to_owned))
        .expect("bearer");
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/v4/spreadsheets/{}/values/A1:append?valueInputOption=RAW&overwriteEverything=true",
            f.base_url(),
            fake::SPREADSHEET_ID
        ))
        .header("authorization", token)
        .json(&json!({"values": [["a"]]}))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    assert!(
        f.spec_errors()
            .iter()
            .any(|e| e.contains("overwriteEverything")),
        "{:?}",
        f.spec_errors()
    );
    // Nothing was appended by either.
    assert!(f.sheet(fake::FIRST_SHEET).expect("sheet").rows.is_empty());
}

// === channels ===

#[tokio::test]
async fn channel_create_renew_drift_repair_and_remove() {
    let (f, c) = setup(json!({})).await;

    // Created: a channel whose id carries the marker, with a random token.
    let (outcome, reg) = registered(c.sync_webhook(&target(None)).await.expect("create"));
    assert_eq!(outcome, RegistrationOutcome::Created);
    let chans = f.channels();
    assert_eq!(chans.len(), 1);
    let ch = &chans[0];
    let prefix = format!(
        "{}-",
        channel_prefix(&IntegrationId::parse("sheets-main").expect("id"))
    );
    assert!(ch.id.starts_with(&prefix), "{}", ch.id);
    assert!(ch.id.len() <= 64);
    assert_eq!(reg.ids, vec![ch.id.clone(), fake::RESOURCE_ID.to_owned()]);
    assert_eq!(ch.address, URL);
    let token = reg
        .secret
        .as_ref()
        .expect("token")
        .expose_str()
        .expect("text")
        .to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(ch.token.as_deref(), Some(token.as_str()));
    assert_eq!(reg.expires_at_ms, Some(ch.expiration_ms));
    let watch = api_requests(&f).pop().expect("watch");
    assert_eq!(
        watch.path,
        format!("/drive/v3/files/{}/watch", fake::SPREADSHEET_ID)
    );
    assert_eq!(watch.query_param("supportsAllDrives"), Some("true"));
    assert_eq!(watch.json()["type"], "web_hook");
    assert!(watch.json()["expiration"].is_string());
    // A day, as asked (the default), within a second of now.
    assert!(ch.expiration_ms.abs_diff(f.now_ms() + 24 * HOUR_MS) < 60_000);

    // Unchanged: nothing sent.
    f.clear_requests();
    let (outcome, same) = registered(
        c.sync_webhook(&target(Some(reg.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Unchanged);
    assert_eq!(same, reg);
    assert!(f.requests().is_empty());

    // 22 h on: still more than the hour's margin left.
    f.advance(22 * HOUR_MS);
    let (outcome, _) = registered(
        c.sync_webhook(&target(Some(reg.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Unchanged);

    // 23 h 30 on: renewed — a new channel and token, the old one stopped.
    f.advance(90 * 60_000);
    let (outcome, renewed) = registered(
        c.sync_webhook(&target(Some(reg.clone())))
            .await
            .expect("renew"),
    );
    assert_eq!(outcome, RegistrationOutcome::Renewed);
    assert_ne!(renewed.ids[0], reg.ids[0]);
    assert_ne!(renewed.secret, reg.secret);
    assert!(renewed.expires_at_ms > reg.expires_at_ms);
    let chans = f.channels();
    assert_eq!(chans.len(), 1, "{chans:?}");
    assert_eq!(chans[0].id, renewed.ids[0]);
    let paths: Vec<String> = api_requests(&f).iter().map(|r| r.path.clone()).collect();
    let watch_at = paths
        .iter()
        .position(|p| p.ends_with("/watch"))
        .expect("watch");
    let stop_at = paths
        .iter()
        .position(|p| p.ends_with("/channels/stop"))
        .expect("stop");
    assert!(watch_at < stop_at, "the successor comes first: {paths:?}");
    let stop = api_requests(&f)
        .into_iter()
        .find(|r| r.path.ends_with("/stop"))
        .expect("stop");
    assert_eq!(
        stop.json(),
        json!({"id": reg.ids[0], "resourceId": fake::RESOURCE_ID})
    );

    // Drift: Drive dropped the channel and its time ran out (the daemon was down).
    assert!(f.drop_channel(&renewed.ids[0]));
    f.advance(25 * HOUR_MS);
    let (outcome, repaired) = registered(
        c.sync_webhook(&target(Some(renewed.clone())))
            .await
            .expect("repair"),
    );
    assert_eq!(outcome, RegistrationOutcome::Repaired);
    assert_eq!(f.channels().len(), 1);
    let (outcome, _) = registered(
        c.sync_webhook(&target(Some(repaired.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Unchanged);

    // The state lost the token: unusable record, replaced.
    let mut lost = repaired.clone();
    lost.secret = None;
    let (outcome, fixed) = registered(c.sync_webhook(&target(Some(lost))).await.expect("repair"));
    assert_eq!(outcome, RegistrationOutcome::Repaired);
    assert_eq!(f.channels().len(), 1);

    // A new URL: updated.
    let mut moved = target(Some(fixed.clone()));
    moved.url = "https://new.example.com/api/webhooks/google_sheets/sheets-main".into();
    let (outcome, updated) = registered(c.sync_webhook(&moved).await.expect("update"));
    assert_eq!(outcome, RegistrationOutcome::Updated);
    assert_eq!(f.channels()[0].address, moved.url);

    // Removed: the channel is stopped; again, nothing left.
    assert_eq!(
        c.remove_webhook(&target(Some(updated.clone())))
            .await
            .expect("remove"),
        1
    );
    assert!(f.channels().is_empty());
    assert_eq!(
        c.remove_webhook(&target(Some(updated)))
            .await
            .expect("again"),
        0
    );
    assert!(f.spec_errors().is_empty(), "{:?}", f.spec_errors());
}

#[tokio::test]
async fn only_our_channels_are_stopped() {
    let (f, c) = setup(json!({})).await;
    let foreign = Registration {
        ids: vec!["someone-elses-channel".into(), fake::RESOURCE_ID.into()],
        url: URL.into(),
        events: vec!["file_changed".into(), "row_added".into()],
        expires_at_ms: Some(f.now_ms() + 10 * HOUR_MS),
        secret: Some(Secret::from("t".to_owned())),
    };
    assert_eq!(
        c.remove_webhook(&target(Some(foreign.clone())))
            .await
            .expect("remove"),
        0
    );
    // A sync replaces the foreign record with our own channel without stopping it.
    let (outcome, reg) = registered(c.sync_webhook(&target(Some(foreign))).await.expect("sync"));
    assert_eq!(outcome, RegistrationOutcome::Repaired);
    assert!(reg.ids[0].starts_with("supportopsd-sheets-main-"));
    assert!(api_requests(&f).iter().all(|r| !r.path.ends_with("/stop")));
    assert_eq!(
        c.remove_webhook(&target(None))
            .await
            .expect("nothing recorded"),
        0
    );
}

#[tokio::test]
async fn no_channel_without_file_changed_or_with_push_off() {
    let (f, c) = setup(json!({})).await;
    let mut t = target(None);
    t.events = vec!["row_added".into()];
    assert!(matches!(c.sync_webhook(&t).await, Ok(WebhookSync::Manual(m)) if m.contains("poller")));
    let c = connector_with(&f, json!({"push_notifications": false}));
    assert!(matches!(
        c.sync_webhook(&target(None)).await,
        Ok(WebhookSync::Manual(_))
    ));
    assert!(f.requests().is_empty());
}

#[tokio::test]
async fn a_failed_watch_is_classified_and_records_nothing() {
    let (f, c) = setup(json!({})).await;
    f.fail_next(
        "files.watch",
        Failure::RateLimited {
            retry_after_secs: 7,
        },
        1,
    );
    let e = c.sync_webhook(&target(None)).await.expect_err("429");
    assert_eq!(
        e,
        PlatformError::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(f.channels().is_empty());
    // Drive refuses plain HTTP callbacks.
    let mut t = target(None);
    t.url = "http://insecure.example.com/hook".into();
    let e = c.sync_webhook(&t).await.expect_err("http");
    assert!(
        matches!(&e, PlatformError::Rejected { status: 400, detail } if detail.contains("HTTPS")),
        "{e:?}"
    );
}

// === the row poller ===

#[tokio::test]
async fn the_poller_reports_appended_rows_once() {
    let (f, c) = setup(json!({"sheet": "Escalations log"})).await;
    f.set_rows(
        "Escalations log",
        vec![
            vec![json!("Ticket"), json!("Customer")],
            vec![json!("1"), json!("old.io")],
        ],
    );
    // First poll: the baseline, nothing reported.
    let first = c.poll_rows(None).await.expect("baseline");
    assert!(first.rows.is_empty());
    assert_eq!(first.cursor.sheet, "Escalations log");
    assert_eq!(first.cursor.last_row, 2);
    assert!(first.cursor.sheet_id.is_some());

    // Two rows appended (one by supportopsd itself), one blank between them by hand.
    c.execute(&call("append_row", json!({"values": ["4411", "acme.io"]})))
        .await
        .expect("append");
    f.set_rows(
        "Escalations log",
        vec![
            vec![json!("Ticket"), json!("Customer")],
            vec![json!("1"), json!("old.io")],
            vec![json!(4411), json!("acme.io")],
            vec![],
            vec![json!("4412"), json!("globex.io")],
        ],
    );
    f.clear_requests();
    let polled = c.poll_rows(Some(&first.cursor)).await.expect("poll");
    assert_eq!(polled.cursor.last_row, 5);
    assert_eq!(polled.rows.len(), 2);
    let reqs = api_requests(&f);
    assert_eq!(reqs.len(), 1, "one read per poll");
    assert!(reqs[0].path.ends_with("/values:batchGet"));
    let ranges: Vec<&str> = reqs[0]
        .query
        .iter()
        .filter(|(k, _)| k == "ranges")
        .map(|(_, v)| v.as_str())
        .collect();
    // The header row, the rows below the last one seen, and that row again (to notice a
    // sheet that got shorter).
    assert_eq!(
        ranges,
        vec![
            "'Escalations log'!1:1",
            "'Escalations log'!3:502",
            "'Escalations log'!2:2"
        ]
    );

    // Each payload is a `row_added` event the catalogue normalises.
    let event = super::DESCRIPTOR.event("row_added").expect("event");
    let n = (super::DESCRIPTOR.normalize)(event, &polled.rows[0]).expect("normalises");
    assert_eq!(n.objects["row"]["row_number"], 3);
    assert_eq!(n.objects["row"]["fields"]["Customer"], "acme.io");
    assert_eq!(n.objects["row"]["range"], "'Escalations log'!A3:B3");
    assert_eq!(n.objects["spreadsheet"]["id"], fake::SPREADSHEET_ID);
    assert!(n.time.is_some());
    let n = (super::DESCRIPTOR.normalize)(event, &polled.rows[1]).expect("normalises");
    assert_eq!(n.objects["row"]["row_number"], 5);
    assert_eq!(n.objects["row"]["fields"]["Ticket"], "4412");

    // Nothing new: nothing reported, the cursor stays.
    let again = c.poll_rows(Some(&polled.cursor)).await.expect("poll");
    assert!(again.rows.is_empty());
    assert_eq!(again.cursor, polled.cursor);
    // The cursor survives a restart (it is serialisable).
    let saved = serde_json::to_string(&again.cursor).expect("json");
    let back: RowCursor = serde_json::from_str(&saved).expect("parse");
    assert_eq!(back, again.cursor);
    assert!(f.spec_errors().is_empty(), "{:?}", f.spec_errors());
}

#[tokio::test]
async fn the_poller_defaults_to_the_first_sheet_and_reports_a_missing_one() {
    let (f, c) = setup(json!({})).await;
    let first = c.poll_rows(None).await.expect("baseline");
    assert_eq!(first.cursor.sheet, fake::FIRST_SHEET);
    assert_eq!(first.cursor.sheet_id, Some(fake::FIRST_SHEET_ID));
    // Below the header row only.
    assert_eq!(first.cursor.last_row, 1);
    let c = connector_with(&f, json!({"sheet": "Gone"}));
    assert!(matches!(
        c.poll_rows(None).await,
        Err(PlatformError::NotFound { .. })
    ));
}

// === notifications: what a channel delivers, verified with what the sync recorded ===

#[tokio::test]
async fn channel_notifications_verify_with_the_recorded_token() {
    use crate::platforms::{Inbound, InboundRequest, VerifyError, VerifyKeys};
    let (f, c) = setup(json!({})).await;
    let (_, reg) = registered(c.sync_webhook(&target(None)).await.expect("create"));
    let keys = |r: &Registration| VerifyKeys {
        secret: r.secret.clone(),
        callback_url: None,
        channel_id: r.ids.first().cloned(),
    };
    let deliver = |n: &super::fake::Notification, k: &VerifyKeys| {
        let req = InboundRequest {
            method: &::http::Method::POST,
            headers: &n.headers,
            body: b"",
            now_unix: 1_777_885_923,
        };
        super::webhook::verify(&req, k).map(|()| super::webhook::parse(&req))
    };
    // The channel's first message is `sync`: acknowledged.
    let sent = f.take_notifications();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].url, URL);
    assert_eq!(sent[0].state, "sync");
    assert!(matches!(
        deliver(&sent[0], &keys(&reg)),
        Ok(Ok(Inbound::Acknowledge))
    ));

    // Two writes: Drive coalesces them into one `update`.
    for v in ["a", "b"] {
        c.execute(&call("append_row", json!({"values": [v]})))
            .await
            .expect("append");
    }
    let sent = f.take_notifications();
    assert_eq!(sent.len(), 1, "{sent:?}");
    match deliver(&sent[0], &keys(&reg)) {
        Ok(Ok(Inbound::Event {
            event, normalized, ..
        })) => {
            assert_eq!(event.name, "file_changed");
            assert_eq!(normalized.objects["file"]["id"], fake::SPREADSHEET_ID);
            assert_eq!(normalized.objects["file"]["resource_state"], "update");
            assert_eq!(normalized.objects["file"]["changed"], json!(["content"]));
            assert_eq!(normalized.objects["channel"]["id"], json!(reg.ids[0]));
        }
        other => panic!("{other:?}"),
    }
    // Reads do not notify.
    c.check().await.expect("check");
    assert!(f.take_notifications().is_empty());

    // After renewal the old channel's deliveries no longer verify against the new record.
    let old = sent[0].clone();
    f.advance(23 * HOUR_MS + 30 * 60_000);
    let (outcome, renewed) = registered(c.sync_webhook(&target(Some(reg))).await.expect("renew"));
    assert_eq!(outcome, RegistrationOutcome::Renewed);
    assert!(matches!(
        deliver(&old, &keys(&renewed)),
        Err(VerifyError::Mismatch)
    ));
    let sent = f.take_notifications();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].channel_id, renewed.ids[0]);
    assert!(matches!(
        deliver(&sent[0], &keys(&renewed)),
        Ok(Ok(Inbound::Acknowledge))
    ));
}

// === the fake token endpoint ===

#[tokio::test]
async fn the_fake_token_endpoint_checks_signature_and_claims() {
    let f = FakeGoogle::start().await;
    let key =
        super::client::ServiceAccountKey::parse(&Secret::from(fake::key_json(&f.token_uri())))
            .expect("key");
    let now = f.now_ms() / 1000;
    let post = |assertion: String| {
        let url = f.token_uri();
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(crate::platforms::slack::client::form_encode(&[
                    (
                        "grant_type".to_owned(),
                        super::client::JWT_BEARER_GRANT.to_owned(),
                    ),
                    ("assertion".to_owned(), assertion),
                ]))
                .send()
                .await
                .expect("send");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Good.
    let (status, body) = post(key.assertion(&f.token_uri(), now).expect("sign")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 3000));
    // A tampered signature.
    // One character in the middle of the signature changed (the last one may only carry
    // padding bits).
    let good = key.assertion(&f.token_uri(), now).expect("sign");
    let at = good.len() - 20;
    let swapped = if good.as_bytes()[at] == b'A' {
        "B"
    } else {
        "A"
    };
    let bad = format!("{}{swapped}{}", &good[..at], &good[at + 1..]);
    let (status, body) = post(bad).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(body["error_description"], "Invalid JWT Signature.");
    // A tampered payload under the original signature.
    let good = key.assertion(&f.token_uri(), now).expect("sign");
    let parts: Vec<&str> = good.split('.').collect();
    let forged_claims = Claims {
        iss: "someone-else@x.iam.gserviceaccount.com".into(),
        scope: SCOPES.into(),
        aud: f.token_uri(),
        iat: now,
        exp: now + 3600,
    };
    use base64::Engine as _;
    let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&forged_claims).expect("json"));
    let (status, body) = post(format!("{}.{forged_payload}.{}", parts[0], parts[2])).await;
    assert_eq!(status, 400);
    assert_eq!(body["error_description"], "Invalid JWT Signature.");
    // Another audience.
    let (status, body) = post(
        key.assertion("https://oauth2.googleapis.com/token", now)
            .expect("sign"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or("")
            .contains("audience"),
        "{body}"
    );
    // Issued in the future, or expired.
    for at in [now + 600, now - 7200] {
        let (status, body) = post(key.assertion(&f.token_uri(), at).expect("sign")).await;
        assert_eq!(status, 400);
        assert!(
            body["error_description"]
                .as_str()
                .unwrap_or("")
                .contains("iat and exp"),
            "{body}"
        );
    }
    // Not the JWT bearer grant.
    let resp = reqwest::Client::new()
        .post(f.token_uri())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(f.tokens_issued(), 1);
}

#[tokio::test]
async fn the_poller_follows_a_renamed_sheet_and_a_shorter_one() {
    let (f, c) = setup(json!({"sheet": "Log"})).await;
    let header = vec![json!("Ticket"), json!("Customer")];
    let r = |t: &str| vec![json!(t), json!("x.io")];
    f.set_rows("Log", vec![header.clone(), r("1"), r("2"), r("3")]);
    let first = c.poll_rows(None).await.expect("baseline");
    assert_eq!(first.cursor.last_row, 4);

    // Renamed: found again by its id, and new rows are still reported.
    f.rename_sheet("Log", "Log 2026");
    f.set_rows(
        "Log 2026",
        vec![header.clone(), r("1"), r("2"), r("3"), r("4")],
    );
    let polled = c.poll_rows(Some(&first.cursor)).await.expect("renamed");
    assert_eq!(polled.cursor.sheet, "Log 2026");
    assert_eq!(polled.cursor.sheet_id, first.cursor.sheet_id);
    assert_eq!(polled.rows.len(), 1);
    assert_eq!(polled.rows[0]["row_number"], 5);
    assert_eq!(polled.rows[0]["sheet"], "Log 2026");

    // Rows cleared from the bottom: the cursor moves back, and the next appended row (which
    // Sheets places right below the table) is reported.
    f.set_rows("Log 2026", vec![header.clone(), r("1"), r("2")]);
    let shrunk = c.poll_rows(Some(&polled.cursor)).await.expect("shrunk");
    assert!(shrunk.rows.is_empty());
    assert_eq!(shrunk.cursor.last_row, 3);
    c.execute(&call(
        "append_row",
        json!({"sheet": "Log 2026", "values": ["9", "new.io"]}),
    ))
    .await
    .expect("append");
    let after = c.poll_rows(Some(&shrunk.cursor)).await.expect("after");
    assert_eq!(after.rows.len(), 1);
    assert_eq!(after.rows[0]["row_number"], 4);

    // Rows deleted so that the last row seen is past the grid: started again from its end.
    f.set_row_count("Log 2026", 2);
    let deleted = c.poll_rows(Some(&after.cursor)).await.expect("deleted");
    assert!(deleted.rows.is_empty());
    assert_eq!(deleted.cursor.last_row, 2);

    // A deleted sheet is reported as such.
    f.rename_sheet("Log 2026", "x");
    let c2 = connector_with(&f, json!({}));
    let gone = RowCursor {
        sheet: "Nope".into(),
        sheet_id: Some(123_456),
        last_row: 2,
    };
    assert!(matches!(
        c2.poll_rows(Some(&gone)).await,
        Err(PlatformError::NotFound { .. })
    ));
}

#[tokio::test]
async fn renewal_survives_a_failed_stop_of_the_old_channel() {
    let (f, c) = setup(json!({"channel_expiration_seconds": 3600})).await;
    let (_, reg) = registered(c.sync_webhook(&target(None)).await.expect("create"));
    // An hour's channel is renewed in its last quarter.
    f.advance(40 * 60_000);
    let (outcome, _) = registered(
        c.sync_webhook(&target(Some(reg.clone())))
            .await
            .expect("sync"),
    );
    assert_eq!(outcome, RegistrationOutcome::Unchanged);
    f.advance(6 * 60_000);
    f.fail_next("channels.stop", Failure::ServerError, 1);
    let (outcome, renewed) = registered(
        c.sync_webhook(&target(Some(reg.clone())))
            .await
            .expect("renew"),
    );
    assert_eq!(outcome, RegistrationOutcome::Renewed);
    assert_ne!(renewed.ids[0], reg.ids[0]);
    // The old one is left to expire: both are live for now, and the new one is recorded.
    assert_eq!(f.channels().len(), 2);
    f.advance(15 * 60_000);
    let live = f.channels();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, renewed.ids[0]);
}

/// Issue 16 item 9: an appended row whose answer was lost (appended, then a 504) is not
/// appended again; a sheet title is unique (a second `addSheet` is refused), so `create_sheet`
/// is retried. The old code appended the row twice.
#[tokio::test]
async fn a_create_whose_answer_is_lost_is_not_sent_again() {
    let (f, c) = setup(json!({})).await;
    let rows = |f: &FakeGoogle| f.sheet(fake::FIRST_SHEET).map_or(0, |s| s.rows.len());
    let seed = call(
        "append_row",
        json!({"values": ["seed"], "sheet": fake::FIRST_SHEET}),
    );
    c.execute(&seed).await.expect("seed row");
    let before = rows(&f);
    let path = f
        .requests()
        .iter()
        .rev()
        .find(|r| r.path.ends_with(":append"))
        .map(|r| r.path.clone())
        .expect("an append");
    f.lose_answers(::http::Method::POST, &path, 1);
    let e = testkit::as_the_executor_would(
        &c,
        &call(
            "append_row",
            json!({"values": ["once"], "sheet": fake::FIRST_SHEET}),
        ),
        3,
    )
    .await
    .expect_err("answer lost");
    assert!(matches!(e, PlatformError::OutcomeUnknown { .. }), "{e:?}");
    assert!(!e.retryable());
    assert_eq!(rows(&f), before + 1, "appended exactly once");
}

/// Issue 16 item 12: the first poll of a large sheet records where it ends without reading
/// it all: column A, then the (empty) block below. A sheet of 900 rows × 26 columns is 23 400
/// cells; the old code read every one of them.
#[tokio::test]
async fn the_first_poll_reads_little_of_a_large_sheet() {
    let (f, c) = setup(json!({"sheet": "Big"})).await;
    let wide = |i: usize| -> Vec<Value> { (0..26).map(|c| json!(format!("r{i}c{c}"))).collect() };
    let mut rows: Vec<Vec<Value>> = (0..900).map(wide).collect();
    // Two rows whose column A is empty, past the last value in A.
    rows.push(vec![Value::Null, json!("only in B")]);
    rows.push(vec![Value::Null, Value::Null, json!("only in C")]);
    f.set_row_count("Big", 2_000);
    f.set_rows("Big", rows);
    let before = f.cells_served();
    let first = c.poll_rows(None).await.expect("baseline");
    assert!(first.rows.is_empty());
    assert_eq!(
        first.cursor.last_row, 902,
        "rows past column A's last value count"
    );
    let read = f.cells_served() - before;
    assert!(read < 1_000, "the first poll read {read} cells");

    // The next poll reports only what is appended after it.
    c.execute(&call(
        "append_row",
        json!({"values": ["new"], "sheet": "Big"}),
    ))
    .await
    .expect("append");
    let next = c.poll_rows(Some(&first.cursor)).await.expect("poll");
    assert_eq!(next.rows.len(), 1, "{:?}", next.rows);
}
