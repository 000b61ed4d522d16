//! A fake Google (token endpoint, Sheets v4, Drive v3 channels) for tests: one
//! [`FakeServer`] on `127.0.0.1:0` that the connector reaches through `[endpoint] base_url`
//! (`<base>token`, `<base>v4/…`, `<base>drive/v3/…`).
//!
//! - **Token endpoint** (`POST /token`): form `grant_type` must be the JWT bearer grant; the
//!   `assertion` must be an RS256 JWT signed by [`TEST_ONLY_PRIVATE_KEY_PEM`] (checked with its
//!   public key), `kid` [`KEY_ID`] when present, `iss` [`CLIENT_EMAIL`], `aud` `<origin>/token`,
//!   a `scope` list, `iat` not in the future (a minute of skew allowed) and `exp` after now and at
//!   most an hour after `iat`. Failures answer Google's `{"error": "invalid_grant",
//!   "error_description": …}` with 400. A good one gets `ya29.fake-…` valid for an hour.
//! - **APIs**: `Authorization: Bearer <issued token>` is required (401 `UNAUTHENTICATED`
//!   otherwise), and the token's scopes must cover the API (403 `PERMISSION_DENIED`,
//!   `ACCESS_TOKEN_SCOPE_INSUFFICIENT`). A spreadsheet not shared with the service account
//!   answers 403 `PERMISSION_DENIED` ([`FakeGoogle::unshare`]); an unknown one 404.
//! - **Spec check**: every API request is checked against `discovery/sheets-v4.discovery.json`
//!   or `discovery/drive-v3.discovery.json` ([`crate::platforms::fakekit::ApiSpec`]): an unknown method or path, an unknown
//!   query parameter or an unknown body property is answered 400 `INVALID_ARGUMENT` (`Invalid
//!   JSON payload received. Unknown name …`) the way Google does, and recorded
//!   ([`FakeGoogle::spec_errors`]). Skipped (with a line on stderr) when the documents are absent.
//! - **Sheets**: `spreadsheets.get`, `spreadsheets.batchUpdate` (`addSheet`,
//!   `updateSheetProperties`, `updateSpreadsheetProperties` applied; other kinds recorded and
//!   acknowledged; all-or-nothing), `values.get`, `values.batchGet`, `values.update`,
//!   `values.append`, `values.batchUpdate`, on sheets kept in memory. `USER_ENTERED` turns
//!   numeric text into numbers and `TRUE`/`FALSE` into booleans and keeps formulas as entered;
//!   the fake does not evaluate formulas (every render option shows them as entered).
//!   `FORMATTED_VALUE` (the default) renders numbers as text, like Sheets.
//! - **Drive**: `files.watch` (HTTPS address, unique id, expiration capped at a day, an hour when
//!   absent) and `channels.stop` (404 for an unknown channel), channels kept in memory;
//!   [`FakeGoogle::drop_channel`] makes one vanish (drift), and channels past their expiration
//!   are gone; `files.get` of a spreadsheet (id, name, MIME type).
//! - **Notifications**: what Drive would POST to a channel's address, with its `X-Goog-*`
//!   headers and the channel token ([`FakeGoogle::take_notifications`]): `sync` (message 1) for
//!   each new channel, then one `update` per channel after writes, coalesced while undelivered.
//! - **Time**: the fake's clock is the system clock plus an offset that [`FakeGoogle::advance`]
//!   moves; [`FakeGoogle::clock`] hands the same clock to a connector.
//! - **Failures**: [`FakeGoogle::fail_next`] scripts 429 (`RESOURCE_EXHAUSTED` with
//!   `Retry-After`), 500 or 503 for a route (`token`, `spreadsheets.get`, `values.append`…).

#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::client::{Claims, Clock, JWT_BEARER_GRANT};
use super::events::{column_letters, sheet_ref};
use crate::platforms::fakekit::{
    Failure, Failures, FakeServer, Recorded, Resp, empty_response, json_response, lock,
    vendor_spec, with_header,
};

/// A throwaway RSA key made for these tests only (it signs nothing anywhere else).
pub const TEST_ONLY_PRIVATE_KEY_PEM: &str =
    include_str!("fixtures/test_only_service_account_key.pem");
/// Its public half, which the fake token endpoint verifies assertions with.
pub const TEST_ONLY_PUBLIC_KEY_PEM: &str =
    include_str!("fixtures/test_only_service_account_key.pub.pem");
/// The fake service account.
pub const CLIENT_EMAIL: &str = "supportopsd-test@fake-project.iam.gserviceaccount.com";
/// The fake key id.
pub const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";
/// The spreadsheet the fake starts with.
pub const SPREADSHEET_ID: &str = "1FakeSheetZx8vB3nK0pL7mR2sT5uW9yA4cD6eF8gH0j";
/// Its title.
pub const SPREADSHEET_TITLE: &str = "Support escalations";
/// Its first sheet.
pub const FIRST_SHEET: &str = "Tickets";
/// The first sheet's id.
pub const FIRST_SHEET_ID: i64 = 0;
/// The Drive resource id of the spreadsheet file.
pub const RESOURCE_ID: &str = "fake-resource-7Yq2Lw";
/// Sheets vendor document.
pub const SHEETS_SPEC: &str = "discovery/sheets-v4.discovery.json";
/// Drive vendor document.
pub const DRIVE_SPEC: &str = "discovery/drive-v3.discovery.json";
/// Longest lifetime of a file channel.
const MAX_CHANNEL_MS: u64 = 86_400_000;

/// A service-account JSON key file for the fake (`token_uri` pointing at it).
pub fn key_json(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "fake-project",
        "private_key_id": KEY_ID,
        "private_key": TEST_ONLY_PRIVATE_KEY_PEM,
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "universe_domain": "googleapis.com"
    })
    .to_string()
}

/// One sheet (tab).
#[derive(Debug, Clone, PartialEq)]
pub struct Sheet {
    /// `sheetId`.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Position.
    pub index: i64,
    /// Cells, row-major from A1 (rows may be ragged; `Null` is an empty cell).
    pub rows: Vec<Vec<Value>>,
    /// Grid rows.
    pub row_count: i64,
    /// Grid columns.
    pub column_count: i64,
    /// Frozen rows.
    pub frozen_rows: i64,
    /// Requests other than the structural ones applied to this spreadsheet (formatting…).
    pub formatting: Vec<Value>,
}

impl Sheet {
    fn new(id: i64, title: &str, index: i64) -> Sheet {
        Sheet {
            id,
            title: title.to_owned(),
            index,
            rows: Vec::new(),
            row_count: 1000,
            column_count: 26,
            frozen_rows: 0,
            formatting: Vec::new(),
        }
    }

    fn properties(&self) -> Value {
        json!({
            "sheetId": self.id, "title": self.title, "index": self.index, "sheetType": "GRID",
            "gridProperties": {"rowCount": self.row_count, "columnCount": self.column_count,
                               "frozenRowCount": self.frozen_rows}
        })
    }

    /// The number of the last row holding a value (0 when empty).
    fn last_row(&self) -> usize {
        self.rows
            .iter()
            .rposition(|r| r.iter().any(|c| !c.is_null() && c.as_str() != Some("")))
            .map_or(0, |i| i + 1)
    }

    fn set(&mut self, row: usize, col: usize, v: Value) {
        if self.rows.len() < row {
            self.rows.resize(row, Vec::new());
        }
        let r = &mut self.rows[row - 1];
        if r.len() < col {
            r.resize(col, Value::Null);
        }
        r[col - 1] = v;
        self.row_count = self.row_count.max(i64::try_from(row).unwrap_or(i64::MAX));
        self.column_count = self
            .column_count
            .max(i64::try_from(col).unwrap_or(i64::MAX));
    }

    fn get(&self, row: usize, col: usize) -> Value {
        self.rows
            .get(row - 1)
            .and_then(|r| r.get(col - 1))
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// A Drive push channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Channel id.
    pub id: String,
    /// Watched file.
    pub file_id: String,
    /// Delivery address.
    pub address: String,
    /// The token echoed in `X-Goog-Channel-Token`.
    pub token: Option<String>,
    /// Expiration, ms since the epoch.
    pub expiration_ms: u64,
    /// The last message number sent.
    pub message_number: u64,
}

/// A notification Drive would POST to a channel's address: an empty body, everything in the
/// `X-Goog-*` headers (the channel token echoed in `X-Goog-Channel-Token`).
#[derive(Debug, Clone)]
pub struct Notification {
    /// The channel's address.
    pub url: String,
    /// The channel it belongs to.
    pub channel_id: String,
    /// `x-goog-resource-state` (`sync`, `update`…).
    pub state: String,
    /// The request headers.
    pub headers: http::HeaderMap,
}

#[derive(Debug)]
struct Spreadsheet {
    title: String,
    sheets: Vec<Sheet>,
    shared: bool,
}

#[derive(Debug)]
struct IssuedToken {
    expires_ms: u64,
    scopes: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    spreadsheets: HashMap<String, Spreadsheet>,
    channels: HashMap<String, Channel>,
    tokens: HashMap<String, IssuedToken>,
    tokens_issued: usize,
    failures: Failures,
    spec_errors: Vec<String>,
    account_disabled: bool,
    revoke_each: bool,
    next_sheet_id: i64,
    /// Cells sent back by `values.get` and `values.batchGet` so far (what a read costs).
    cells_served: usize,
    notifications: Vec<Notification>,
}

/// The fake Google.
#[derive(Debug)]
pub struct FakeGoogle {
    server: FakeServer,
    state: Arc<Mutex<State>>,
    offset: Arc<AtomicI64>,
}

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn now_with(offset: &AtomicI64) -> u64 {
    system_ms().saturating_add_signed(offset.load(Ordering::SeqCst))
}

impl FakeGoogle {
    /// [`FakeGoogle::try_start`], for the tests: a failure to bind loopback fails the test.
    #[cfg(any(test, feature = "test-support"))]
    #[allow(clippy::expect_used)]
    pub async fn start() -> FakeGoogle {
        FakeGoogle::try_start()
            .await
            .expect("bind 127.0.0.1:0 for the fake")
    }

    /// Starts the fake with [`SPREADSHEET_ID`] holding one empty sheet [`FIRST_SHEET`], shared
    /// with [`CLIENT_EMAIL`].
    pub async fn try_start() -> std::io::Result<FakeGoogle> {
        let mut state = State {
            next_sheet_id: 1_000_001,
            cells_served: 0,
            ..State::default()
        };
        state.spreadsheets.insert(
            SPREADSHEET_ID.to_owned(),
            Spreadsheet {
                title: SPREADSHEET_TITLE.to_owned(),
                sheets: vec![Sheet::new(FIRST_SHEET_ID, FIRST_SHEET, 0)],
                shared: true,
            },
        );
        let state = Arc::new(Mutex::new(state));
        let offset = Arc::new(AtomicI64::new(0));
        let origin: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
        let (s, o, org) = (state.clone(), offset.clone(), origin.clone());
        let server = FakeServer::try_start(move |r: &Recorded| {
            let now = now_with(&o);
            let origin = lock(&org).clone();
            handle(&mut lock(&s), r, now, &origin)
        })
        .await?;
        *lock(&origin) = server.origin();
        Ok(FakeGoogle {
            server,
            state,
            offset,
        })
    }

    /// `http://127.0.0.1:<port>`: the `[endpoint] base_url` to use.
    pub fn base_url(&self) -> String {
        self.server.origin()
    }

    /// The token endpoint (`<origin>/token`).
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.server.origin())
    }

    /// Every request received.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// Forgets the requests received.
    pub fn clear_requests(&self) {
        self.server.clear_requests();
    }

    /// The fake's now (ms since the epoch).
    pub fn now_ms(&self) -> u64 {
        now_with(&self.offset)
    }

    /// Moves the fake's clock (and that of connectors given [`Self::clock`]) forward.
    pub fn advance(&self, ms: u64) {
        self.offset
            .fetch_add(i64::try_from(ms).unwrap_or(i64::MAX), Ordering::SeqCst);
    }

    /// The fake's clock, for a connector.
    pub fn clock(&self) -> Clock {
        let o = self.offset.clone();
        Arc::new(move || now_with(&o))
    }

    /// The next `times` calls of `route` fail with `failure`.
    pub fn fail_next(&self, route: &str, failure: Failure, times: usize) {
        lock(&self.state).failures.push(route, failure, times);
    }

    /// Performs the next `times` requests `method path` (path without the query, e.g.
    /// `/1/cards`), then answers them with a 504 instead: the platform acted, and its answer
    /// was lost ([`crate::platforms::fakekit::FakeServer::lose_answers`]).
    pub fn lose_answers(&self, method: http::Method, path: &str, times: usize) {
        self.server.lose_answers(method, path, times);
    }

    /// Cells sent back by `values.get` and `values.batchGet` so far.
    pub fn cells_served(&self) -> usize {
        lock(&self.state).cells_served
    }

    /// Requests the vendor spec refused so far.
    pub fn spec_errors(&self) -> Vec<String> {
        lock(&self.state).spec_errors.clone()
    }

    /// How many access tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> usize {
        lock(&self.state).tokens_issued
    }

    /// Revokes every issued access token (the next API call gets 401).
    pub fn revoke_tokens(&self) {
        lock(&self.state).tokens.clear();
    }

    /// Makes every token invalid as soon as it is issued (a key Google no longer honours).
    pub fn revoke_each_token(&self) {
        lock(&self.state).revoke_each = true;
    }

    /// Makes the token endpoint refuse the service account (deleted or disabled).
    pub fn disable_account(&self) {
        lock(&self.state).account_disabled = true;
    }

    /// Stops sharing [`SPREADSHEET_ID`] with the service account (403 from then on).
    pub fn unshare(&self) {
        if let Some(s) = lock(&self.state).spreadsheets.get_mut(SPREADSHEET_ID) {
            s.shared = false;
        }
    }

    /// A copy of a sheet of [`SPREADSHEET_ID`].
    pub fn sheet(&self, title: &str) -> Option<Sheet> {
        lock(&self.state)
            .spreadsheets
            .get(SPREADSHEET_ID)?
            .sheets
            .iter()
            .find(|s| s.title == title)
            .cloned()
    }

    /// Renames a sheet of [`SPREADSHEET_ID`].
    pub fn rename_sheet(&self, from: &str, to: &str) {
        let mut st = lock(&self.state);
        if let Some(s) = st
            .spreadsheets
            .get_mut(SPREADSHEET_ID)
            .and_then(|b| b.sheets.iter_mut().find(|s| s.title == from))
        {
            s.title = to.to_owned();
        }
    }

    /// Sets a sheet's grid size in rows (cells below it are dropped, as when rows are deleted).
    pub fn set_row_count(&self, title: &str, rows: i64) {
        let mut st = lock(&self.state);
        if let Some(s) = st
            .spreadsheets
            .get_mut(SPREADSHEET_ID)
            .and_then(|b| b.sheets.iter_mut().find(|s| s.title == title))
        {
            s.row_count = rows;
            s.rows.truncate(usize::try_from(rows).unwrap_or(0));
        }
    }

    /// Sets the rows of a sheet of [`SPREADSHEET_ID`] (from A1), adding the sheet if needed.
    pub fn set_rows(&self, title: &str, rows: Vec<Vec<Value>>) {
        let mut st = lock(&self.state);
        let next = st.next_sheet_id;
        let Some(book) = st.spreadsheets.get_mut(SPREADSHEET_ID) else {
            return;
        };
        let index = i64::try_from(book.sheets.len()).unwrap_or(0);
        let at = match book.sheets.iter().position(|s| s.title == title) {
            Some(i) => i,
            None => {
                book.sheets.push(Sheet::new(next, title, index));
                book.sheets.len() - 1
            }
        };
        let sheet = &mut book.sheets[at];
        sheet.rows = Vec::new();
        for (r, row) in rows.into_iter().enumerate() {
            for (c, v) in row.into_iter().enumerate() {
                sheet.set(r + 1, c + 1, v);
            }
        }
        st.next_sheet_id += 1;
    }

    /// The live channels (expired ones are gone).
    pub fn channels(&self) -> Vec<Channel> {
        let now = self.now_ms();
        let mut st = lock(&self.state);
        st.channels.retain(|_, c| c.expiration_ms > now);
        let mut v: Vec<Channel> = st.channels.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Takes the notifications Drive would have sent since the last call: a `sync` for each new
    /// channel, and one (coalesced) `update` per channel after the spreadsheet's values or
    /// sheets changed.
    pub fn take_notifications(&self) -> Vec<Notification> {
        std::mem::take(&mut lock(&self.state).notifications)
    }

    /// Makes a channel vanish, as if Drive had dropped it.
    pub fn drop_channel(&self, id: &str) -> bool {
        lock(&self.state).channels.remove(id).is_some()
    }
}

/// Queues the notification Drive sends on channel `id` for `state`. Changes are coalesced like
/// Drive does: an `update` while one is still undelivered on the channel adds nothing.
fn notify(st: &mut State, id: &str, state: &str, now: u64) {
    let Some(ch) = st.channels.get_mut(id).filter(|c| c.expiration_ms > now) else {
        return;
    };
    if state == "update"
        && st
            .notifications
            .iter()
            .any(|n| n.channel_id == id && n.state == "update")
    {
        return;
    }
    // The first message is number 1; later ones grow, not necessarily by one.
    ch.message_number += if ch.message_number == 0 { 1 } else { 3 };
    let mut h = http::HeaderMap::new();
    let mut put = |k: &'static str, v: &str| {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    put(
        "user-agent",
        "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
    );
    put("x-goog-channel-id", &ch.id);
    put("x-goog-message-number", &ch.message_number.to_string());
    put("x-goog-resource-id", RESOURCE_ID);
    put("x-goog-resource-state", state);
    put(
        "x-goog-resource-uri",
        &format!(
            "https://www.googleapis.com/drive/v3/files/{}?alt=json&supportsAllDrives=true",
            ch.file_id
        ),
    );
    if state == "update" {
        put("x-goog-changed", "content");
    }
    if let Some(t) = &ch.token {
        put("x-goog-channel-token", t);
    }
    let n = Notification {
        url: ch.address.clone(),
        channel_id: ch.id.clone(),
        state: state.to_owned(),
        headers: h,
    };
    st.notifications.push(n);
}

/// Queues an `update` on every live channel watching `file_id`.
fn file_changed(st: &mut State, file_id: &str, now: u64) {
    let ids: Vec<String> = st
        .channels
        .values()
        .filter(|c| c.file_id == file_id)
        .map(|c| c.id.clone())
        .collect();
    for id in ids {
        notify(st, &id, "update", now);
    }
}

fn google_error(status: StatusCode, message: &str, state: &str) -> Resp {
    json_response(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message, "status": state}}),
    )
}

fn drive_error(status: StatusCode, reason: &str, message: &str) -> Resp {
    json_response(
        status,
        &json!({"error": {
            "errors": [{"domain": "global", "reason": reason, "message": message}],
            "code": status.as_u16(), "message": message
        }}),
    )
}

fn failure_response(f: &Failure) -> Resp {
    match f {
        Failure::RateLimited { retry_after_secs } => with_header(
            json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({"error": {"code": 429,
                    "message": "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per user' of service 'sheets.googleapis.com' for consumer 'project_number:100000000001'.",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                 "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
                                 "metadata": {"quota_limit_value": "60"}}]}}),
            ),
            "retry-after",
            &retry_after_secs.to_string(),
        ),
        Failure::ServerError => google_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error encountered.",
            "INTERNAL",
        ),
        Failure::Unavailable { retry_after_secs } => with_header(
            google_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is currently unavailable.",
                "UNAVAILABLE",
            ),
            "retry-after",
            &retry_after_secs.to_string(),
        ),
    }
}

/// Percent-decodes a path.
fn decode_path(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(st: &mut State, r: &Recorded, now: u64, origin: &str) -> Resp {
    if r.method == Method::POST && r.path == "/token" {
        if let Some(f) = st.failures.take("token") {
            return failure_response(&f);
        }
        return token(st, r, now, origin);
    }
    let path = decode_path(&r.path);
    let route = route(&r.method, &path);
    let Some((route, api)) = route else {
        return google_error(
            StatusCode::NOT_FOUND,
            &format!("The requested URL {} was not found on this server.", r.path),
            "NOT_FOUND",
        );
    };
    // Authentication first, like Google.
    let bearer = r
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    let Some(tok) = st.tokens.get(bearer).filter(|t| t.expires_ms > now) else {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            "UNAUTHENTICATED",
        );
    };
    let scoped = tok.scopes.iter().any(|s| match api {
        "sheets" => s.starts_with("https://www.googleapis.com/auth/spreadsheets"),
        _ => s.starts_with("https://www.googleapis.com/auth/drive"),
    });
    if !scoped {
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": {"code": 403, "message": "Request had insufficient authentication scopes.",
                "status": "PERMISSION_DENIED",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                             "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}]}}),
        );
    }
    let body = if r.body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(&r.body) {
            Ok(v) => Some(v),
            Err(_) => {
                return google_error(
                    StatusCode::BAD_REQUEST,
                    "Invalid JSON payload received. Unexpected token.",
                    "INVALID_ARGUMENT",
                );
            }
        }
    };
    let spec = vendor_spec(if api == "sheets" {
        SHEETS_SPEC
    } else {
        DRIVE_SPEC
    });
    if let Some(spec) = spec
        && let Err(errors) = spec.check(&r.method, &r.path, &r.query, body.as_ref(), &[])
    {
        let message = format!("Invalid JSON payload received. {}", errors.join("; "));
        st.spec_errors.extend(errors);
        return google_error(StatusCode::BAD_REQUEST, &message, "INVALID_ARGUMENT");
    }
    if let Some(f) = st.failures.take(route) {
        return failure_response(&f);
    }
    let body = body.unwrap_or(Value::Null);
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if api == "drive" {
        return match route {
            "files.watch" => watch(st, seg.get(3).copied().unwrap_or(""), &body, now),
            "files.get" => file_get(st, seg.get(3).copied().unwrap_or("")),
            _ => stop(st, &body, now),
        };
    }
    // v4 / spreadsheets / {id}[:batchUpdate] [/ values / {range}[:append]]
    let id_part = seg.get(2).copied().unwrap_or("");
    let id = id_part.split(':').next().unwrap_or("");
    let Some(book) = st.spreadsheets.get_mut(id) else {
        return google_error(
            StatusCode::NOT_FOUND,
            "Requested entity was not found.",
            "NOT_FOUND",
        );
    };
    if !book.shared {
        return google_error(
            StatusCode::FORBIDDEN,
            "The caller does not have permission",
            "PERMISSION_DENIED",
        );
    }
    let range_seg = seg.get(4).copied().unwrap_or("");
    let q = |k: &str| r.query_param(k).map(str::to_owned);
    let result = match route {
        "spreadsheets.get" => Ok(spreadsheet_json(id, book)),
        "spreadsheets.batchUpdate" => batch_update(id, book, &body, &mut st.next_sheet_id),
        "values.get" => get_values(
            book,
            range_seg,
            q("valueRenderOption").as_deref(),
            q("majorDimension").as_deref(),
        ),
        "values.batchGet" => {
            let mut ranges = Vec::new();
            for (k, v) in &r.query {
                if k == "ranges" {
                    match get_values(
                        book,
                        v,
                        q("valueRenderOption").as_deref(),
                        q("majorDimension").as_deref(),
                    ) {
                        Ok(vr) => ranges.push(vr),
                        Err(e) => return e,
                    }
                }
            }
            Ok(json!({"spreadsheetId": id, "valueRanges": ranges}))
        }
        "values.update" => {
            let range = range_seg.to_owned();
            if let Some(b) = body.get("range").and_then(Value::as_str)
                && b != range
            {
                return google_error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "Requested writing within range [{range}], but tried writing to [{b}]"
                    ),
                    "INVALID_ARGUMENT",
                );
            }
            input_option(q("valueInputOption")).and_then(|opt| write(id, book, &range, &body, opt))
        }
        "values.append" => input_option(q("valueInputOption")).and_then(|opt| {
            append(
                id,
                book,
                range_seg.trim_end_matches(":append"),
                &body,
                opt,
                q("insertDataOption").as_deref(),
            )
        }),
        _ => values_batch_update(id, book, &body),
    };
    match result {
        Ok(v) => {
            if route != "spreadsheets.get"
                && !route.starts_with("values.get")
                && route != "values.batchGet"
            {
                file_changed(st, id, now);
            } else {
                st.cells_served += cells_in(&v);
            }
            json_response(StatusCode::OK, &v)
        }
        Err(e) => e,
    }
}

/// `(route name, api)` of a request.
fn route(method: &Method, path: &str) -> Option<(&'static str, &'static str)> {
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method.as_str(), seg.as_slice()) {
        ("POST", ["drive", "v3", "files", _, "watch"]) => Some(("files.watch", "drive")),
        ("POST", ["drive", "v3", "channels", "stop"]) => Some(("channels.stop", "drive")),
        ("GET", ["drive", "v3", "files", _]) => Some(("files.get", "drive")),
        ("GET", ["v4", "spreadsheets", id]) if !id.contains(':') => {
            Some(("spreadsheets.get", "sheets"))
        }
        ("POST", ["v4", "spreadsheets", id]) if id.ends_with(":batchUpdate") => {
            Some(("spreadsheets.batchUpdate", "sheets"))
        }
        ("GET", ["v4", "spreadsheets", _, "values:batchGet"]) => {
            Some(("values.batchGet", "sheets"))
        }
        ("POST", ["v4", "spreadsheets", _, "values:batchUpdate"]) => {
            Some(("values.batchUpdate", "sheets"))
        }
        ("GET", ["v4", "spreadsheets", _, "values", _]) => Some(("values.get", "sheets")),
        ("PUT", ["v4", "spreadsheets", _, "values", _]) => Some(("values.update", "sheets")),
        ("POST", ["v4", "spreadsheets", _, "values", r]) if r.ends_with(":append") => {
            Some(("values.append", "sheets"))
        }
        _ => None,
    }
}

fn invalid_grant(description: &str) -> Resp {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": "invalid_grant", "error_description": description}),
    )
}

fn token(st: &mut State, r: &Recorded, now: u64, origin: &str) -> Resp {
    let form = r.form();
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    if field("grant_type") != JWT_BEARER_GRANT {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "unsupported_grant_type",
                    "error_description": format!("Invalid grant_type: {}", field("grant_type"))}),
        );
    }
    let assertion = field("assertion");
    let Ok(header) = jsonwebtoken::decode_header(assertion) else {
        return invalid_grant("Invalid JWT: not a JWT.");
    };
    if header.alg != jsonwebtoken::Algorithm::RS256 {
        return invalid_grant("Invalid JWT: the algorithm must be RS256.");
    }
    if header.kid.as_deref().is_some_and(|k| k != KEY_ID) {
        return invalid_grant("Invalid JWT Signature.");
    }
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(TEST_ONLY_PUBLIC_KEY_PEM.as_bytes())
    else {
        return invalid_grant("Invalid JWT Signature.");
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // Time and audience are checked below against the fake's own clock and origin.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let claims = match jsonwebtoken::decode::<Claims>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            return match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    invalid_grant("Invalid JWT Signature.")
                }
                _ => invalid_grant("Invalid JWT: the claims are malformed."),
            };
        }
    };
    if claims.iss != CLIENT_EMAIL || st.account_disabled {
        return invalid_grant("Invalid grant: account not found");
    }
    let expected_aud = format!("{origin}/token");
    if claims.aud != expected_aud {
        return invalid_grant(&format!(
            "Invalid JWT: Failed audience check. The expected audience is {expected_aud}."
        ));
    }
    let now_secs = now / 1000;
    if claims.iat > now_secs + 60
        || claims.exp <= now_secs
        || claims.exp < claims.iat
        || claims.exp - claims.iat > 3600
    {
        return invalid_grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    let scopes: Vec<String> = claims
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "invalid_scope", "error_description": "Invalid OAuth scope or ID token audience provided."}),
        );
    }
    st.tokens_issued += 1;
    let access = format!("ya29.fake-{}-{}", st.tokens_issued, now);
    if !st.revoke_each {
        st.tokens.insert(
            access.clone(),
            IssuedToken {
                expires_ms: now + 3_600_000,
                scopes,
            },
        );
    }
    json_response(
        StatusCode::OK,
        &json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer"}),
    )
}

/// Drive `files.get` of a spreadsheet (`check-platform` reads it): its id, name and Google
/// Sheets MIME type; a file not shared with the service account is a 404, as Drive answers
/// for files the caller cannot see (drive-v3 discovery document, `files.get`; the `fields`
/// parameter is not applied, the three fields are all there is).
fn file_get(st: &State, file_id: &str) -> Resp {
    match st.spreadsheets.get(file_id).filter(|b| b.shared) {
        Some(book) => json_response(
            StatusCode::OK,
            &json!({"id": file_id, "name": book.title,
                    "mimeType": "application/vnd.google-apps.spreadsheet"}),
        ),
        None => google_error(
            StatusCode::NOT_FOUND,
            &format!("File not found: {file_id}."),
            "NOT_FOUND",
        ),
    }
}

fn spreadsheet_json(id: &str, book: &Spreadsheet) -> Value {
    json!({
        "spreadsheetId": id,
        "properties": {"title": book.title, "locale": "en_US", "timeZone": "Etc/GMT"},
        "sheets": book.sheets.iter().map(|s| json!({"properties": s.properties()})).collect::<Vec<_>>(),
        "spreadsheetUrl": format!("https://docs.google.com/spreadsheets/d/{id}/edit"),
    })
}

fn bad_request(message: &str) -> Resp {
    google_error(StatusCode::BAD_REQUEST, message, "INVALID_ARGUMENT")
}

fn batch_update(
    id: &str,
    book: &mut Spreadsheet,
    body: &Value,
    next_id: &mut i64,
) -> Result<Value, Resp> {
    let requests = body
        .get("requests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if requests.is_empty() {
        return Err(bad_request("Must specify at least one request."));
    }
    // All or nothing: apply to a copy.
    let mut sheets = book.sheets.clone();
    let mut title = book.title.clone();
    let mut replies = Vec::new();
    for (i, req) in requests.iter().enumerate() {
        let Some((kind, inner)) = req
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next())
        else {
            return Err(bad_request(&format!(
                "Invalid requests[{i}]: exactly one kind of request must be set."
            )));
        };
        match kind.as_str() {
            "addSheet" => {
                let props = inner.get("properties").cloned().unwrap_or(Value::Null);
                let t = props
                    .get("title")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("Sheet{}", sheets.len() + 1), str::to_owned);
                if sheets.iter().any(|s| s.title.eq_ignore_ascii_case(&t)) {
                    return Err(bad_request(&format!(
                        "Invalid requests[{i}].addSheet: A sheet with the name \"{t}\" already exists. Please enter another name."
                    )));
                }
                let count = i64::try_from(sheets.len()).unwrap_or(0);
                let index = props
                    .get("index")
                    .and_then(Value::as_i64)
                    .unwrap_or(count)
                    .clamp(0, count);
                let sheet_id = props
                    .get("sheetId")
                    .and_then(Value::as_i64)
                    .unwrap_or_else(|| {
                        *next_id += 1;
                        *next_id
                    });
                let mut s = Sheet::new(sheet_id, &t, index);
                if let Some(g) = props.get("gridProperties") {
                    let n = |k: &str| g.get(k).and_then(Value::as_i64);
                    s.row_count = n("rowCount").unwrap_or(s.row_count);
                    s.column_count = n("columnCount").unwrap_or(s.column_count);
                    s.frozen_rows = n("frozenRowCount").unwrap_or(0);
                }
                for other in &mut sheets {
                    if other.index >= index {
                        other.index += 1;
                    }
                }
                replies.push(json!({"addSheet": {"properties": s.properties()}}));
                sheets.push(s);
            }
            "updateSheetProperties" => {
                let props = inner.get("properties").cloned().unwrap_or(Value::Null);
                let sid = props.get("sheetId").and_then(Value::as_i64).unwrap_or(0);
                let Some(s) = sheets.iter_mut().find(|s| s.id == sid) else {
                    return Err(bad_request(&format!(
                        "Invalid requests[{i}].updateSheetProperties: No grid with id: {sid}"
                    )));
                };
                if let Some(t) = props.get("title").and_then(Value::as_str) {
                    s.title = t.to_owned();
                }
                if let Some(n) = props
                    .pointer("/gridProperties/frozenRowCount")
                    .and_then(Value::as_i64)
                {
                    s.frozen_rows = n;
                }
                replies.push(json!({}));
            }
            "updateSpreadsheetProperties" => {
                if let Some(t) = inner.pointer("/properties/title").and_then(Value::as_str) {
                    title = t.to_owned();
                }
                replies.push(json!({}));
            }
            _ => {
                // Formatting and the rest: must name an existing sheet where they name one.
                let sid = inner
                    .pointer("/range/sheetId")
                    .or_else(|| inner.pointer("/rule/ranges/0/sheetId"))
                    .and_then(Value::as_i64);
                let target = match sid {
                    Some(sid) => match sheets.iter_mut().find(|s| s.id == sid) {
                        Some(s) => s,
                        None => {
                            return Err(bad_request(&format!(
                                "Invalid requests[{i}].{kind}: No grid with id: {sid}"
                            )));
                        }
                    },
                    None => match sheets.first_mut() {
                        Some(s) => s,
                        None => return Err(bad_request("The spreadsheet has no sheet.")),
                    },
                };
                target.formatting.push(req.clone());
                replies.push(json!({}));
            }
        }
    }
    book.sheets = sheets;
    book.title = title;
    Ok(json!({"spreadsheetId": id, "replies": replies}))
}

/// A parsed A1 range: the sheet index and the 1-based bounds (`None` = open).
struct A1 {
    sheet: usize,
    c1: Option<usize>,
    r1: Option<usize>,
    c2: Option<usize>,
    r2: Option<usize>,
    /// One cell (`A2`): a write starts there and is not bounded by it.
    single: bool,
}

fn col_number(letters: &str) -> Option<usize> {
    if letters.is_empty() {
        return None;
    }
    letters.chars().try_fold(0usize, |acc, c| {
        c.is_ascii_alphabetic()
            .then(|| acc * 26 + usize::from(c.to_ascii_uppercase() as u8 - b'A' + 1))
    })
}

/// `A5`, `A`, `5` → (col, row).
fn cell(s: &str) -> Option<(Option<usize>, Option<usize>)> {
    let letters: String = s.chars().take_while(char::is_ascii_alphabetic).collect();
    let digits = &s[letters.len()..];
    if s.is_empty() || letters.len() > 3 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let row = if digits.is_empty() {
        None
    } else {
        Some(digits.parse::<usize>().ok().filter(|r| *r >= 1)?)
    };
    Some((col_number(&letters), row))
}

fn parse_a1(book: &Spreadsheet, range: &str) -> Result<A1, Resp> {
    let bad = || bad_request(&format!("Unable to parse range: {range}"));
    let (sheet_name, cells) = if let Some(rest) = range.strip_prefix('\'') {
        // 'It''s'!A1
        let mut name = String::new();
        let mut chars = rest.char_indices().peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().map(|(_, n)| *n) == Some('\'') {
                    name.push('\'');
                    chars.next();
                } else {
                    end = Some(i + 1);
                    break;
                }
            } else {
                name.push(c);
            }
        }
        let after = &rest[end.ok_or_else(bad)?..];
        let cells = match after.strip_prefix('!') {
            Some(c) => Some(c),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        (Some(name), cells)
    } else if let Some((s, c)) = range.split_once('!') {
        (Some(s.to_owned()), Some(c))
    } else if !book.sheets.iter().any(|s| s.title == range)
        && range.split(':').all(|p| cell(p).is_some())
        && range.split(':').count() <= 2
    {
        (None, Some(range))
    } else {
        (Some(range.to_owned()), None)
    };
    let sheet = match &sheet_name {
        Some(n) => book
            .sheets
            .iter()
            .position(|s| &s.title == n)
            .ok_or_else(bad)?,
        None => book
            .sheets
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.index)
            .map(|(i, _)| i)
            .ok_or_else(bad)?,
    };
    let Some(cells) = cells else {
        return Ok(A1 {
            sheet,
            c1: None,
            r1: None,
            c2: None,
            r2: None,
            single: false,
        });
    };
    let mut parts = cells.split(':');
    let (c1, r1) = parts.next().and_then(cell).ok_or_else(bad)?;
    let (c2, r2, single) = match parts.next() {
        Some(p) => {
            let (c, r) = cell(p).ok_or_else(bad)?;
            (c, r, false)
        }
        None => (c1, r1, c1.is_some() && r1.is_some()),
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(A1 {
        sheet,
        c1,
        r1,
        c2,
        r2,
        single,
    })
}

fn render(v: &Value, option: Option<&str>) -> Value {
    match (v, option.unwrap_or("FORMATTED_VALUE")) {
        (Value::Number(n), "FORMATTED_VALUE") => Value::String(n.to_string()),
        (Value::Bool(b), "FORMATTED_VALUE") => {
            Value::String(if *b { "TRUE" } else { "FALSE" }.into())
        }
        (Value::Null, _) => Value::String(String::new()),
        (v, _) => v.clone(),
    }
}

/// The cells of a `ValueRange` or a `values.batchGet` answer.
fn cells_in(v: &Value) -> usize {
    let of = |vr: &Value| {
        vr.get("values")
            .and_then(Value::as_array)
            .map_or(0, |rows| {
                rows.iter().map(|r| r.as_array().map_or(0, Vec::len)).sum()
            })
    };
    match v.get("valueRanges").and_then(Value::as_array) {
        Some(ranges) => ranges.iter().map(of).sum(),
        None => of(v),
    }
}

/// `values.get`: the cells of `range`, trailing empty cells and rows (or, with
/// `majorDimension=COLUMNS`, columns) left out, as Sheets does ("Empty trailing rows and
/// columns are omitted", the ValueRange reference; `majorDimension` in the sheets-v4
/// discovery document).
fn get_values(
    book: &Spreadsheet,
    range: &str,
    option: Option<&str>,
    major: Option<&str>,
) -> Result<Value, Resp> {
    let a = parse_a1(book, range)?;
    let sheet = &book.sheets[a.sheet];
    let r1 = a.r1.unwrap_or(1);
    let c1 = a.c1.unwrap_or(1);
    let last = usize::try_from(sheet.row_count).unwrap_or(0);
    if r1 > last {
        return Err(bad_request(&format!(
            "Range ({range}) exceeds grid limits. Max rows: {last}, max columns: {}",
            sheet.column_count
        )));
    }
    let width = usize::try_from(sheet.column_count).unwrap_or(0);
    let r2 = a.r2.unwrap_or(last).min(last.max(r1));
    let c2 = a.c2.unwrap_or(width).min(width.max(c1));
    let columns = major == Some("COLUMNS");
    let mut values = Vec::new();
    let (outer, inner) = if columns {
        ((c1..=c2), (r1..=r2))
    } else {
        ((r1..=r2), (c1..=c2))
    };
    for o in outer {
        let mut row: Vec<Value> = inner
            .clone()
            .map(|i| {
                if columns {
                    sheet.get(i, o)
                } else {
                    sheet.get(o, i)
                }
            })
            .collect();
        while row
            .last()
            .is_some_and(|v| v.is_null() || v.as_str() == Some(""))
        {
            row.pop();
        }
        values.push(Value::Array(
            row.iter().map(|v| render(v, option)).collect(),
        ));
    }
    while values
        .last()
        .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty))
    {
        values.pop();
    }
    let name = sheet_ref(&sheet.title);
    let mut out = json!({
        "range": format!("{name}!{}{r1}:{}{r2}", column_letters(c1), column_letters(c2)),
        "majorDimension": if columns { "COLUMNS" } else { "ROWS" },
    });
    if !values.is_empty() {
        out["values"] = Value::Array(values);
    }
    Ok(out)
}

fn input_option(v: Option<String>) -> Result<bool, Resp> {
    match v.as_deref() {
        Some("RAW") => Ok(false),
        Some("USER_ENTERED") => Ok(true),
        Some(other) => Err(bad_request(&format!(
            "Invalid value at 'value_input_option' (TYPE_ENUM), \"{other}\""
        ))),
        None => Err(bad_request(
            "'valueInputOption' is required but not specified",
        )),
    }
}

fn entered(v: &Value, user_entered: bool) -> Value {
    match v {
        Value::String(s) if user_entered => {
            let t = s.trim();
            if let Ok(n) = t.parse::<i64>() {
                json!(n)
            } else if let Some(n) = t.parse::<f64>().ok().filter(|f| f.is_finite()) {
                json!(n)
            } else if t.eq_ignore_ascii_case("true") {
                json!(true)
            } else if t.eq_ignore_ascii_case("false") {
                json!(false)
            } else {
                v.clone()
            }
        }
        other => other.clone(),
    }
}

/// Writes `body.values` at the range's top-left; the UpdateValuesResponse.
fn write(
    id: &str,
    book: &mut Spreadsheet,
    range: &str,
    body: &Value,
    user: bool,
) -> Result<Value, Resp> {
    let a = parse_a1(book, range)?;
    let r1 = a.r1.unwrap_or(1);
    let c1 = a.c1.unwrap_or(1);
    let rows = body
        .get("values")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let columns = body.get("majorDimension").and_then(Value::as_str) == Some("COLUMNS");
    let sheet = &mut book.sheets[a.sheet];
    let (mut max_r, mut max_c, mut cells) = (0usize, 0usize, 0usize);
    for (i, row) in rows.iter().enumerate() {
        for (j, v) in row.as_array().into_iter().flatten().enumerate() {
            let (dr, dc) = if columns { (j, i) } else { (i, j) };
            if !a.single
                && let (Some(rb), Some(cb)) = (a.r2, a.c2)
                && (r1 + dr > rb || c1 + dc > cb)
            {
                return Err(bad_request(&format!(
                    "Requested writing within range [{range}], but tried writing to row [{}]",
                    r1 + dr
                )));
            }
            max_r = max_r.max(dr + 1);
            max_c = max_c.max(dc + 1);
            if v.is_null() {
                continue;
            }
            sheet.set(r1 + dr, c1 + dc, entered(v, user));
            cells += 1;
        }
    }
    let name = sheet_ref(&sheet.title);
    Ok(json!({
        "spreadsheetId": id,
        "updatedRange": format!("{name}!{}{r1}:{}{}", column_letters(c1), column_letters(c1 + max_c.max(1) - 1), r1 + max_r.max(1) - 1),
        "updatedRows": max_r,
        "updatedColumns": max_c,
        "updatedCells": cells,
    }))
}

fn append(
    id: &str,
    book: &mut Spreadsheet,
    range: &str,
    body: &Value,
    user: bool,
    insert: Option<&str>,
) -> Result<Value, Resp> {
    if let Some(o) = insert
        && !matches!(o, "INSERT_ROWS" | "OVERWRITE")
    {
        return Err(bad_request(&format!(
            "Invalid value at 'insert_data_option' (TYPE_ENUM), \"{o}\""
        )));
    }
    let a = parse_a1(book, range)?;
    let sheet = &book.sheets[a.sheet];
    let last = sheet.last_row();
    let c1 = a.c1.unwrap_or(1);
    let name = sheet_ref(&sheet.title);
    let width = sheet.rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let table = (last > 0).then(|| format!("{name}!A1:{}{last}", column_letters(width)));
    let target = format!("{name}!{}{}", column_letters(c1), last + 1);
    let updates = write(id, book, &target, body, user)?;
    let mut out = json!({"spreadsheetId": id, "updates": updates});
    if let Some(t) = table {
        out["tableRange"] = json!(t);
    }
    Ok(out)
}

fn values_batch_update(id: &str, book: &mut Spreadsheet, body: &Value) -> Result<Value, Resp> {
    let user = input_option(
        body.get("valueInputOption")
            .and_then(Value::as_str)
            .map(str::to_owned),
    )?;
    let data = body
        .get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // All ranges must parse before anything is written.
    for d in &data {
        parse_a1(book, d.get("range").and_then(Value::as_str).unwrap_or(""))?;
    }
    let mut responses = Vec::new();
    let (mut rows, mut cols, mut cells) = (0, 0, 0);
    let mut sheets = std::collections::HashSet::new();
    for d in &data {
        let range = d.get("range").and_then(Value::as_str).unwrap_or("");
        let resp = write(id, book, range, d, user)?;
        rows += resp["updatedRows"].as_u64().unwrap_or(0);
        cols = cols.max(resp["updatedColumns"].as_u64().unwrap_or(0));
        cells += resp["updatedCells"].as_u64().unwrap_or(0);
        if let Ok(a) = parse_a1(book, range) {
            sheets.insert(a.sheet);
        }
        responses.push(resp);
    }
    Ok(json!({
        "spreadsheetId": id,
        "totalUpdatedRows": rows,
        "totalUpdatedColumns": cols,
        "totalUpdatedCells": cells,
        "totalUpdatedSheets": sheets.len(),
        "responses": responses,
    }))
}

fn watch(st: &mut State, file_id: &str, body: &Value, now: u64) -> Resp {
    match st.spreadsheets.get(file_id) {
        Some(b) if b.shared => {}
        _ => {
            return drive_error(
                StatusCode::NOT_FOUND,
                "notFound",
                &format!("File not found: {file_id}."),
            );
        }
    }
    let s = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    let id = s("id");
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_+/=".contains(c))
    {
        return drive_error(StatusCode::BAD_REQUEST, "invalid", "Invalid channel id.");
    }
    if !matches!(s("type"), "web_hook" | "webhook") {
        return drive_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Invalid value for type.",
        );
    }
    if !s("address").starts_with("https://") {
        return drive_error(
            StatusCode::BAD_REQUEST,
            "push.webhookUrlNotHttps",
            &format!("WebHook callback must be HTTPS: {}", s("address")),
        );
    }
    if s("token").len() > 256 {
        return drive_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Channel token too long.",
        );
    }
    st.channels.retain(|_, c| c.expiration_ms > now);
    if st.channels.contains_key(id) {
        return drive_error(
            StatusCode::BAD_REQUEST,
            "channelIdNotUnique",
            &format!("Channel id {id} not unique"),
        );
    }
    let expiration = match body.get("expiration") {
        None | Some(Value::Null) => now + 3_600_000,
        Some(Value::String(t)) => match t.parse::<u64>() {
            Ok(v) => v,
            Err(_) => {
                return drive_error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "Invalid ttl value for channel",
                );
            }
        },
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) => v,
            None => {
                return drive_error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "Invalid ttl value for channel",
                );
            }
        },
        Some(_) => {
            return drive_error(
                StatusCode::BAD_REQUEST,
                "invalid",
                "Invalid ttl value for channel",
            );
        }
    };
    if expiration <= now {
        return drive_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Invalid ttl value for channel",
        );
    }
    let expiration = expiration.min(now + MAX_CHANNEL_MS);
    let token = Some(s("token").to_owned()).filter(|t| !t.is_empty());
    st.channels.insert(
        id.to_owned(),
        Channel {
            id: id.to_owned(),
            file_id: file_id.to_owned(),
            address: s("address").to_owned(),
            token: token.clone(),
            expiration_ms: expiration,
            message_number: 0,
        },
    );
    notify(st, id, "sync", now);
    let mut out = json!({
        "kind": "api#channel",
        "id": id,
        "resourceId": RESOURCE_ID,
        "resourceUri": format!("https://www.googleapis.com/drive/v3/files/{file_id}?alt=json&supportsAllDrives=true"),
        "expiration": expiration.to_string(),
    });
    if let Some(t) = token {
        out["token"] = json!(t);
    }
    json_response(StatusCode::OK, &out)
}

fn stop(st: &mut State, body: &Value, now: u64) -> Resp {
    st.channels.retain(|_, c| c.expiration_ms > now);
    let id = body.get("id").and_then(Value::as_str).unwrap_or("");
    let resource = body.get("resourceId").and_then(Value::as_str).unwrap_or("");
    match st.channels.get(id) {
        Some(_) if resource == RESOURCE_ID => {
            st.channels.remove(id);
            empty_response(StatusCode::NO_CONTENT)
        }
        _ => drive_error(
            StatusCode::NOT_FOUND,
            "notFound",
            &format!("Channel '{id}' not found for project '100000000001'"),
        ),
    }
}
