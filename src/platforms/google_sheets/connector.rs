//! The live Google Sheets connector: the spreadsheet's title for checks, the five catalogued
//! actions ([`super::actions`]) on Sheets v4, Drive `files.watch` channels for `file_changed`,
//! and the row poller behind `row_added`.
//!
//! | action | calls |
//! |---|---|
//! | `append_row` | (`values.get` of the header row when `fields` is given) → `values.append` |
//! | `update_row` | (`values.get` of the header row when `fields` is given) → `values.update` |
//! | `read_range` | `values.get` |
//! | `create_sheet` | `spreadsheets.batchUpdate` (`addSheet`) → `values.update` of row 1 when `headers` is given |
//! | `batch_update` | `spreadsheets.batchUpdate` with `requests`, then `values.batchUpdate` with `data` |
//!
//! Parameters are checked against the catalogue before anything is sent: an unknown name, a
//! missing required one or a value of the wrong type is [`PlatformError::Invalid`].
//!
//! **Channels.** Drive has no call that lists or reads channels, so what is live is what the
//! state recorded (`previous`: ids `[channel id, resource id]`, the channel token as secret, and
//! the expiration). Each channel id starts with [`channel_prefix`] (the integration's marker in
//! the characters Drive allows) and ends in random hex; the token is 32 random bytes in hex.
//! [`Connector::sync_webhook`] creates a channel when none is recorded (`Created`), replaces one
//! that lapsed or whose record is unusable (`Repaired`) or whose URL or events changed
//! (`Updated`), replaces one expiring within [`renewal_margin_ms`] (`Renewed`: at least two
//! default resync intervals before expiry, so a 5-minute pass never misses it), and otherwise
//! changes nothing (`Unchanged`). A replaced channel is stopped (`channels.stop`) after its
//! successor exists; one already gone is fine.
//!
//! **Polling.** [`GoogleSheetsConnector::poll_rows`] is what the daemon calls every
//! `poll_interval_seconds`: the first call records how many rows the sheet has; each later call
//! reads the header row and the rows below the last one seen (one `values.batchGet`) and
//! returns a `row_added` payload per non-empty new row.

use std::sync::Arc;

use ::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::client::{Api, BadKey, Clock, GoogleClient, ServiceAccountKey, encode_segment};
use super::events::column_letters;
use crate::manifest::{Integration, IntegrationId};
use crate::platforms::connector::before_create;
use crate::platforms::connector::{
    ActionCall, ActionOutput, ConnectError, Connector, Health, PlatformError, Polled, Registration,
    RegistrationOutcome, WebhookSync, WebhookTarget,
};
use crate::platforms::http;
use crate::platforms::params::{self, Params};
use crate::platforms::slack::events::rfc3339_from_unix;
use crate::secrets::{ResolveContext, Secret};

/// Timeout of one HTTP request.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest lifetime Drive gives a file channel, and the default asked for.
pub const MAX_CHANNEL_LIFETIME_SECS: u64 = 86_400;
/// Shortest channel lifetime accepted from `[config] channel_expiration_seconds`: long enough
/// that the renewal margin ([`MIN_RENEWAL_MARGIN_MS`]) is at most a third of it.
pub const MIN_CHANNEL_LIFETIME_SECS: u64 = 1_800;
/// At most this long before expiry a channel is renewed.
pub const MAX_RENEWAL_MARGIN_MS: u64 = 3_600_000;
/// At least this long before expiry a channel is renewed: two default resync intervals (the
/// daemon's `--resync-interval`, 5 minutes), so that a pass always falls inside the margin
/// even when one runs late. A `--resync-interval` longer than the margin lets channels lapse
/// (Drive stops delivering until the next pass re-creates them as `Repaired`).
pub const MIN_RENEWAL_MARGIN_MS: u64 = 600_000;
/// Rows read per poll below the last one seen.
pub const POLL_BATCH_ROWS: i64 = 500;
/// The event a channel delivers.
const FILE_CHANGED: &str = "file_changed";

/// Builds the Google Sheets connector of `integration`.
pub fn connect(
    integration: &Integration,
    ctx: &ResolveContext<'_>,
) -> Result<Arc<dyn Connector>, ConnectError> {
    Ok(Arc::new(connect_sheets(
        integration,
        ctx,
        super::client::system_clock(),
    )?))
}

/// [`connect`], keeping the type (for [`GoogleSheetsConnector::poll_rows`]) and taking the
/// clock (milliseconds since the epoch) that token and channel expiry are measured with.
pub fn connect_sheets(
    integration: &Integration,
    ctx: &ResolveContext<'_>,
    clock: Clock,
) -> Result<GoogleSheetsConnector, ConnectError> {
    let key = http::required_credential(integration, "service_account_key", ctx)?;
    let key =
        ServiceAccountKey::parse(&key).map_err(|e: BadKey| ConnectError::Client(e.to_string()))?;
    let spreadsheet_id = http::credential(integration, "spreadsheet_id", ctx)?
        .and_then(|s| s.expose_str().ok().map(|v| v.trim().to_owned()))
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConnectError::Missing("spreadsheet_id".into()))?;
    let config = &integration.config;
    let int = |k: &str| config.get(k).and_then(Value::as_i64);
    let header_row = int("header_row").unwrap_or(1);
    if header_row < 1 {
        return Err(ConnectError::Client(
            "config `header_row` must be 1 or more".into(),
        ));
    }
    let lifetime = int("channel_expiration_seconds")
        .map_or(MAX_CHANNEL_LIFETIME_SECS, |s| u64::try_from(s).unwrap_or(0));
    if !(MIN_CHANNEL_LIFETIME_SECS..=MAX_CHANNEL_LIFETIME_SECS).contains(&lifetime) {
        return Err(ConnectError::Client(format!(
            "config `channel_expiration_seconds` must be between {MIN_CHANNEL_LIFETIME_SECS} and {MAX_CHANNEL_LIFETIME_SECS} (Drive's limit for file channels)"
        )));
    }
    let http_client = http::client(REQUEST_TIMEOUT)?;
    let base = integration
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| format!("{}/", b.trim_end_matches('/')));
    if base.is_none() && !is_google_token_uri(&key.token_uri) {
        // The signed assertion goes to the token endpoint: only ever to Google.
        return Err(ConnectError::Client(format!(
            "credential `service_account_key`: its `token_uri` must be a Google host over https (such as {}); the assertion is not sent anywhere else",
            super::client::DEFAULT_TOKEN_URI
        )));
    }
    Ok(GoogleSheetsConnector {
        client: GoogleClient::new(http_client, base, key, clock),
        integration: integration.id.clone(),
        spreadsheet_id,
        sheet: config
            .get("sheet")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        header_row,
        push_notifications: config
            .get("push_notifications")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        poll_interval: int("poll_interval_seconds")
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map(std::time::Duration::from_secs),
        channel_lifetime_ms: lifetime * 1000,
        value_input_option: config
            .get("value_input_option")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// Whether a key file's `token_uri` is on one of Google's own hosts, over https on the default
/// port.
fn is_google_token_uri(uri: &str) -> bool {
    crate::policy::Endpoint::parse(uri).is_ok_and(|e| {
        e.scheme == crate::policy::Scheme::Https
            && e.port == 443
            && !e.ip
            && super::DESCRIPTOR.hosts.iter().any(|own| {
                own.strip_prefix('*')
                    .map_or(e.host == *own, |suffix| e.host.ends_with(suffix))
            })
    })
}

/// The start of every Drive channel id of `integration`: its marker in the characters Drive
/// allows in a channel id (`supportopsd-<integration id>`; a long id is shortened and a digest
/// of it appended), at most 38 characters, followed by `-` and random hex.
pub fn channel_prefix(integration: &IntegrationId) -> String {
    let id = integration.as_str();
    if id.len() <= 26 {
        format!("supportopsd-{id}")
    } else {
        let digest = hex(&Sha256::digest(id.as_bytes()));
        format!("supportopsd-{}-{}", &id[..17], &digest[..8])
    }
}

/// How long before expiry a channel of `lifetime_ms` is renewed: a quarter of its lifetime,
/// at least [`MIN_RENEWAL_MARGIN_MS`] (two resync intervals) and at most an hour, and never
/// more than half the lifetime (a channel is not renewed as soon as it is made).
pub fn renewal_margin_ms(lifetime_ms: u64) -> u64 {
    (lifetime_ms / 4)
        .clamp(MIN_RENEWAL_MARGIN_MS, MAX_RENEWAL_MARGIN_MS)
        .min(lifetime_ms / 2)
}

/// Where the row poller stands: the sheet and the last row it has seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCursor {
    /// The sheet (tab) title.
    pub sheet: String,
    /// The sheet's id.
    pub sheet_id: Option<i64>,
    /// The last row number seen (1-based); rows below it are new.
    pub last_row: i64,
}

/// What one poll found.
#[derive(Debug, Clone, PartialEq)]
pub struct RowPoll {
    /// `row_added` payloads (the JSON shape [`super::events`] documents), in row order.
    pub rows: Vec<Value>,
    /// The cursor to hand to the next poll.
    pub cursor: RowCursor,
}

/// The live Google Sheets connector.
#[derive(Debug)]
pub struct GoogleSheetsConnector {
    client: GoogleClient,
    integration: IntegrationId,
    spreadsheet_id: String,
    sheet: Option<String>,
    header_row: i64,
    push_notifications: bool,
    poll_interval: Option<std::time::Duration>,
    channel_lifetime_ms: u64,
    value_input_option: Option<String>,
}

#[async_trait::async_trait]
impl Connector for GoogleSheetsConnector {
    /// `[config] poll_interval_seconds`, when set.
    fn poll_interval(&self) -> Option<std::time::Duration> {
        self.poll_interval
    }

    /// [`GoogleSheetsConnector::poll_rows`]: `row_added` events, the cursor as JSON.
    async fn poll(&self, cursor: Option<&Value>) -> Result<Polled, PlatformError> {
        let cursor: Option<RowCursor> = cursor.and_then(|c| serde_json::from_value(c.clone()).ok());
        let found = self.poll_rows(cursor.as_ref()).await?;
        Ok(Polled {
            events: found
                .rows
                .into_iter()
                .map(|row| ("row_added".to_owned(), row))
                .collect(),
            cursor: serde_json::to_value(&found.cursor).unwrap_or(Value::Null),
        })
    }

    async fn probe(
        &self,
        target: &crate::platforms::probe::ProbeTarget,
    ) -> Result<Vec<crate::platforms::probe::Finding>, PlatformError> {
        super::probe::run(
            &self.client,
            &self.spreadsheet_id,
            self.sheet.as_deref(),
            self.push_notifications,
            target,
        )
        .await
    }

    async fn check(&self) -> Result<Health, PlatformError> {
        let a = self
            .client
            .call(
                Api::Sheets,
                Method::GET,
                &self.spreadsheet_path(""),
                &[("fields", "spreadsheetId,properties.title".to_owned())],
                None,
            )
            .await?;
        let title = a
            .pointer("/properties/title")
            .and_then(Value::as_str)
            .unwrap_or("?");
        Ok(Health {
            // Drive and the poller never name who made a change, so the loop guard has nothing
            // to compare this with; it names the service account for `status`.
            identity: Some(self.client.client_email().to_owned()),
            detail: format!(
                "spreadsheet {title:?} ({}) readable by {}",
                self.spreadsheet_id,
                self.client.client_email()
            ),
        })
    }

    async fn execute(&self, call: &ActionCall) -> Result<ActionOutput, PlatformError> {
        // What a failure that may have reached the platform becomes for an action that
        // creates something (`RESEND` in actions.rs): never a blind retry.
        let outcome: Result<ActionOutput, PlatformError> = async {
            let spec = params::action_spec(&super::DESCRIPTOR, &call.action)?;
            let p = Params::check(spec, &call.parameters)?;
            let result = match spec.name {
                "append_row" => self.append_row(&p).await?,
                "update_row" => self.update_row(&p).await?,
                "read_range" => self.read_range(&p).await?,
                "create_sheet" => self.create_sheet(&p).await?,
                "batch_update" => self.batch_update(&p).await?,
                other => {
                    return Err(PlatformError::Invalid(format!(
                        "the google_sheets connector cannot perform `{other}`"
                    )));
                }
            };
            Ok(ActionOutput { result })
        }
        .await;
        crate::platforms::connector::guard_resend(super::DESCRIPTOR.kind, &call.action, outcome)
    }

    async fn sync_webhook(&self, target: &WebhookTarget) -> Result<WebhookSync, PlatformError> {
        if !self.push_notifications {
            return Ok(WebhookSync::Manual(
                "push notifications are off (`push_notifications = false`): nothing is registered on Drive; `row_added` comes from the poller".into(),
            ));
        }
        if !target.events.iter().any(|e| e == FILE_CHANGED) {
            return Ok(WebhookSync::Manual(format!(
                "nothing to register on Drive: only `{FILE_CHANGED}` comes from a push channel; `row_added` comes from the poller"
            )));
        }
        let now = self.client.now_ms();
        let Some(prev) = &target.previous else {
            let registration = self.watch(target, now).await?;
            return Ok(WebhookSync::Registered {
                outcome: RegistrationOutcome::Created,
                registration,
            });
        };
        let recorded = self.owned_channel(prev);
        let outcome = match (&recorded, prev.secret.as_ref(), prev.expires_at_ms) {
            _ if prev.url != target.url || prev.events != target.events => {
                RegistrationOutcome::Updated
            }
            // Unusable record (no token to verify deliveries with, foreign ids): replace it.
            (None, _, _) | (_, None, _) | (_, _, None) => RegistrationOutcome::Repaired,
            // Lapsed: Drive has dropped it already.
            (Some(_), Some(_), Some(exp)) if exp <= now => RegistrationOutcome::Repaired,
            (Some(_), Some(_), Some(exp))
                if exp - now <= renewal_margin_ms(self.channel_lifetime_ms) =>
            {
                RegistrationOutcome::Renewed
            }
            _ => {
                return Ok(WebhookSync::Registered {
                    outcome: RegistrationOutcome::Unchanged,
                    registration: prev.clone(),
                });
            }
        };
        // The successor first, so that no change goes unnotified; then the old one.
        let registration = self.watch(target, now).await?;
        // A failure to stop it is not the sync's failure: the new channel is what the state
        // must record, and the old one stops by itself at its expiration.
        if let Some((id, resource)) = recorded
            && let Err(e) = self.stop_channel(&id, &resource).await
        {
            tracing::warn!(
                integration = %self.integration,
                channel = %id,
                error = %e,
                "could not stop the replaced Drive channel; it expires on its own"
            );
        }
        Ok(WebhookSync::Registered {
            outcome,
            registration,
        })
    }

    async fn remove_webhook(&self, target: &WebhookTarget) -> Result<usize, PlatformError> {
        let Some((id, resource)) = target.previous.as_ref().and_then(|p| self.owned_channel(p))
        else {
            return Ok(0);
        };
        Ok(usize::from(self.stop_channel(&id, &resource).await?))
    }
}

impl GoogleSheetsConnector {
    /// The spreadsheet id this integration works on.
    pub fn spreadsheet_id(&self) -> &str {
        &self.spreadsheet_id
    }

    /// `v4/spreadsheets/<id><suffix>`.
    fn spreadsheet_path(&self, suffix: &str) -> String {
        format!(
            "v4/spreadsheets/{}{suffix}",
            encode_segment(&self.spreadsheet_id)
        )
    }

    /// `v4/spreadsheets/<id>/values/<range><suffix>`.
    fn values_path(&self, range: &str, suffix: &str) -> String {
        self.spreadsheet_path(&format!("/values/{}{suffix}", encode_segment(range)))
    }

    /// The recorded channel `(id, resource id)` when it carries this integration's prefix.
    fn owned_channel(&self, prev: &Registration) -> Option<(String, String)> {
        let [id, resource] = prev.ids.as_slice() else {
            return None;
        };
        let prefix = format!("{}-", channel_prefix(&self.integration));
        (id.starts_with(&prefix) && !resource.is_empty()).then(|| (id.clone(), resource.clone()))
    }

    /// `files.watch` on the spreadsheet: a new channel with a random id and token.
    async fn watch(&self, target: &WebhookTarget, now: u64) -> Result<Registration, PlatformError> {
        let id = format!("{}-{}", channel_prefix(&self.integration), random_hex(12)?);
        let token = random_hex(32)?;
        let expiration = now.saturating_add(self.channel_lifetime_ms);
        let body = json!({
            "id": id,
            "type": "web_hook",
            "address": target.url,
            "token": token,
            "expiration": expiration.to_string(),
        });
        let a = self
            .client
            .call(
                Api::Drive,
                Method::POST,
                &format!(
                    "drive/v3/files/{}/watch",
                    encode_segment(&self.spreadsheet_id)
                ),
                &[("supportsAllDrives", "true".to_owned())],
                Some(&body),
            )
            .await?;
        let resource_id = a
            .get("resourceId")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .ok_or_else(|| PlatformError::Rejected {
                status: 200,
                detail: "files.watch: the answer has no `resourceId`".into(),
            })?;
        let expires = match a.get("expiration") {
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        }
        // Without one in the answer, Drive's default lifetime is an hour.
        .unwrap_or(now.saturating_add(3_600_000));
        Ok(Registration {
            ids: vec![id, resource_id.to_owned()],
            url: target.url.clone(),
            events: target.events.clone(),
            expires_at_ms: Some(expires),
            secret: Some(Secret::from(token)),
        })
    }

    /// `channels.stop`; whether the channel existed.
    async fn stop_channel(&self, id: &str, resource_id: &str) -> Result<bool, PlatformError> {
        let body = json!({"id": id, "resourceId": resource_id});
        match self
            .client
            .call(
                Api::Drive,
                Method::POST,
                "drive/v3/channels/stop",
                &[],
                Some(&body),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(PlatformError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `value_input_option`, else `[config] value_input_option`, else `USER_ENTERED`.
    fn value_input(&self, p: &Params<'_>) -> String {
        p.string("value_input_option")
            .or_else(|| self.value_input_option.clone())
            .unwrap_or_else(|| "USER_ENTERED".to_owned())
    }

    /// The sheet of an action: its `sheet` parameter, else `[config] sheet`.
    fn sheet(&self, p: &Params<'_>) -> Option<String> {
        p.string("sheet")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| self.sheet.clone())
    }

    /// `range` qualified with `sheet` when it names cells only (`A2:D2`).
    fn qualify(range: &str, sheet: Option<&str>) -> String {
        let range = range.trim();
        match sheet {
            Some(s) if !range.contains('!') && is_cell_range(range) => {
                format!("{}!{range}", quoted(s))
            }
            _ => range.to_owned(),
        }
    }

    /// The row a `values`/`fields` parameter pair describes.
    async fn row(
        &self,
        p: &Params<'_>,
        action: &str,
        sheet: Option<&str>,
    ) -> Result<Vec<Value>, PlatformError> {
        match (p.raw("values"), p.raw("fields")) {
            (Some(_), Some(_)) => Err(PlatformError::Invalid(format!(
                "{action}: give `values` or `fields`, not both"
            ))),
            (Some(v), None) => cells(action, v),
            (None, Some(Value::Object(fields))) => {
                self.row_from_fields(action, sheet, fields).await
            }
            _ => Err(PlatformError::Invalid(format!(
                "{action}: needs `values` or `fields`"
            ))),
        }
    }

    /// Places `fields` (header → value) by the header row.
    async fn row_from_fields(
        &self,
        action: &str,
        sheet: Option<&str>,
        fields: &Map<String, Value>,
    ) -> Result<Vec<Value>, PlatformError> {
        if fields.is_empty() {
            return Err(PlatformError::Invalid(format!(
                "{action}: `fields` is empty"
            )));
        }
        for (k, v) in fields {
            if !is_cell(v) {
                return Err(PlatformError::Invalid(format!(
                    "{action}: `fields.{k}` must be a string, number, boolean or null"
                )));
            }
        }
        let headers = self.header_row(sheet).await?;
        let mut row: Vec<Value> = Vec::new();
        for (k, v) in fields {
            let Some(i) = headers.iter().position(|h| h == k.trim()) else {
                return Err(PlatformError::Invalid(format!(
                    "{action}: no column is headed `{k}` in row {} (headers: {})",
                    self.header_row,
                    headers.join(", ")
                )));
            };
            if row.len() <= i {
                row.resize(i + 1, Value::Null);
            }
            row[i] = v.clone();
        }
        Ok(row)
    }

    /// The header row's cells, trimmed.
    async fn header_row(&self, sheet: Option<&str>) -> Result<Vec<String>, PlatformError> {
        let h = self.header_row;
        let range = match sheet {
            Some(s) => format!("{}!{h}:{h}", quoted(s)),
            None => format!("{h}:{h}"),
        };
        let a = self
            .client
            .call(
                Api::Sheets,
                Method::GET,
                &self.values_path(&range, ""),
                &[],
                None,
            )
            .await?;
        Ok(a.pointer("/values/0")
            .and_then(Value::as_array)
            .map(|r| r.iter().map(cell_text).collect())
            .unwrap_or_default())
    }

    async fn append_row(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let sheet = self.sheet(p);
        let row = self
            .row(p, "append_row", sheet.as_deref())
            .await
            .map_err(before_create)?;
        let range = match (p.string("range"), &sheet) {
            (Some(r), s) if !r.trim().is_empty() => Self::qualify(&r, s.as_deref()),
            (_, Some(s)) => quoted(s),
            (_, None) => "A1".to_owned(),
        };
        let insert = p
            .string("insert_data_option")
            .unwrap_or_else(|| "INSERT_ROWS".to_owned());
        let a = self
            .client
            .call(
                Api::Sheets,
                Method::POST,
                &self.values_path(&range, ":append"),
                &[
                    ("valueInputOption", self.value_input(p)),
                    ("insertDataOption", insert),
                ],
                Some(&json!({"majorDimension": "ROWS", "values": [row]})),
            )
            .await?;
        let updated_range = a
            .pointer("/updates/updatedRange")
            .and_then(Value::as_str)
            .unwrap_or("");
        Ok(json!({
            "spreadsheet_id": a.get("spreadsheetId").cloned().unwrap_or_else(|| json!(self.spreadsheet_id)),
            "table_range": a.get("tableRange").cloned().unwrap_or(Value::Null),
            "updated_range": updated_range,
            "updated_rows": a.pointer("/updates/updatedRows").cloned().unwrap_or(json!(0)),
            "updated_cells": a.pointer("/updates/updatedCells").cloned().unwrap_or(json!(0)),
            "row_number": first_row(updated_range).map_or(Value::Null, Value::from),
        }))
    }

    async fn update_row(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let sheet = self.sheet(p);
        let row_number = match p.raw("row_number") {
            None => None,
            Some(_) => Some(p.int("row_number").filter(|n| *n >= 1).ok_or_else(|| {
                PlatformError::Invalid("update_row: `row_number` must be 1 or more".into())
            })?),
        };
        let range = match (row_number, p.string("range")) {
            (Some(_), Some(_)) => {
                return Err(PlatformError::Invalid(
                    "update_row: give `row_number` or `range`, not both".into(),
                ));
            }
            (None, Some(_)) if p.raw("fields").is_some() => {
                return Err(PlatformError::Invalid(
                    "update_row: `fields` places cells by the header row, so it needs `row_number`, not `range`".into(),
                ));
            }
            (None, Some(r)) if r.trim().is_empty() => {
                return Err(PlatformError::Invalid(
                    "update_row: `range` is empty".into(),
                ));
            }
            (None, Some(r)) => Some(Self::qualify(&r, sheet.as_deref())),
            (_, None) => None,
        };
        let row = self.row(p, "update_row", sheet.as_deref()).await?;
        if row.is_empty() {
            return Err(PlatformError::Invalid(
                "update_row: the row has no cell".into(),
            ));
        }
        let range = match (range, row_number) {
            (Some(r), _) => r,
            (None, Some(n)) => {
                let cells = format!("A{n}:{}{n}", column_letters(row.len()));
                match &sheet {
                    Some(s) => format!("{}!{cells}", quoted(s)),
                    None => cells,
                }
            }
            (None, None) => {
                return Err(PlatformError::Invalid(
                    "update_row: needs `row_number` or `range`".into(),
                ));
            }
        };
        let a = self
            .client
            .call(
                Api::Sheets,
                Method::PUT,
                &self.values_path(&range, ""),
                &[("valueInputOption", self.value_input(p))],
                Some(&json!({"range": range, "majorDimension": "ROWS", "values": [row]})),
            )
            .await?;
        Ok(json!({
            "spreadsheet_id": a.get("spreadsheetId").cloned().unwrap_or_else(|| json!(self.spreadsheet_id)),
            "updated_range": a.get("updatedRange").cloned().unwrap_or(json!(range)),
            "updated_rows": a.get("updatedRows").cloned().unwrap_or(json!(0)),
            "updated_columns": a.get("updatedColumns").cloned().unwrap_or(json!(0)),
            "updated_cells": a.get("updatedCells").cloned().unwrap_or(json!(0)),
        }))
    }

    async fn read_range(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let range = p.string("range").unwrap_or_default();
        if range.trim().is_empty() {
            return Err(PlatformError::Invalid(
                "read_range: `range` is empty".into(),
            ));
        }
        let range = Self::qualify(&range, self.sheet.as_deref());
        let mut query = Vec::new();
        for (param, api) in [
            ("major_dimension", "majorDimension"),
            ("value_render_option", "valueRenderOption"),
            ("date_time_render_option", "dateTimeRenderOption"),
        ] {
            if let Some(v) = p.string(param) {
                query.push((api, v));
            }
        }
        let a = self
            .client
            .call(
                Api::Sheets,
                Method::GET,
                &self.values_path(&range, ""),
                &query,
                None,
            )
            .await?;
        let values = a.get("values").cloned().unwrap_or_else(|| json!([]));
        let count = values.as_array().map_or(0, Vec::len);
        Ok(json!({
            "range": a.get("range").cloned().unwrap_or(json!(range)),
            "major_dimension": a.get("majorDimension").cloned().unwrap_or(json!("ROWS")),
            "values": values,
            "row_count": count,
        }))
    }

    async fn create_sheet(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let title = p.string("title").unwrap_or_default().trim().to_owned();
        if title.is_empty() {
            return Err(PlatformError::Invalid(
                "create_sheet: `title` is empty".into(),
            ));
        }
        let mut grid = Map::new();
        for (param, api) in [
            ("row_count", "rowCount"),
            ("column_count", "columnCount"),
            ("frozen_row_count", "frozenRowCount"),
        ] {
            if p.raw(param).is_some() {
                let n = p.int(param).filter(|n| *n >= 0).ok_or_else(|| {
                    PlatformError::Invalid(format!("create_sheet: `{param}` must be 0 or more"))
                })?;
                grid.insert(api.into(), json!(n));
            }
        }
        let mut properties = Map::new();
        properties.insert("title".into(), json!(title));
        if p.raw("index").is_some() {
            let n = p.int("index").filter(|n| *n >= 0).ok_or_else(|| {
                PlatformError::Invalid("create_sheet: `index` must be 0 or more".into())
            })?;
            properties.insert("index".into(), json!(n));
        }
        if !grid.is_empty() {
            properties.insert("gridProperties".into(), Value::Object(grid));
        }
        let headers = header_cells(p, "headers").unwrap_or_default();
        let a = self
            .batch_requests(json!([{"addSheet": {"properties": properties}}]))
            .await?;
        let props = a
            .pointer("/replies/0/addSheet/properties")
            .cloned()
            .unwrap_or(Value::Null);
        let title = props
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or(&title)
            .to_owned();
        if !headers.is_empty() {
            let range = format!("{}!A1:{}1", quoted(&title), column_letters(headers.len()));
            self.client
                .call(
                    Api::Sheets,
                    Method::PUT,
                    &self.values_path(&range, ""),
                    &[("valueInputOption", "RAW".to_owned())],
                    Some(&json!({"range": range, "majorDimension": "ROWS", "values": [headers]})),
                )
                .await?;
        }
        Ok(json!({
            "sheet_id": props.get("sheetId").cloned().unwrap_or(Value::Null),
            "title": title,
            "index": props.get("index").cloned().unwrap_or(Value::Null),
        }))
    }

    /// `POST spreadsheets/{id}:batchUpdate` with these structural `requests`.
    async fn batch_requests(&self, requests: Value) -> Result<Value, PlatformError> {
        self.client
            .call(
                Api::Sheets,
                Method::POST,
                &self.spreadsheet_path(":batchUpdate"),
                &[],
                Some(&json!({ "requests": requests })),
            )
            .await
    }

    async fn batch_update(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let data = match p.raw("data") {
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, d)| value_range(i, d, self.sheet.as_deref()))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            _ => None,
        };
        let requests = match p.raw("requests") {
            Some(Value::Array(items)) => {
                for (i, r) in items.iter().enumerate() {
                    let kinds = r.as_object().map_or(0, Map::len);
                    if kinds != 1 {
                        return Err(PlatformError::Invalid(format!(
                            "batch_update: `requests[{i}]` must hold exactly one request kind (`repeatCell`, `addSheet`…), it has {kinds}"
                        )));
                    }
                }
                Some(items.clone())
            }
            _ => None,
        };
        if data.as_ref().is_none_or(Vec::is_empty) && requests.as_ref().is_none_or(Vec::is_empty) {
            return Err(PlatformError::Invalid(
                "batch_update: `data` and `requests` are both empty".into(),
            ));
        }
        let mut out = json!({
            "spreadsheet_id": self.spreadsheet_id,
            "total_updated_rows": 0,
            "total_updated_columns": 0,
            "total_updated_cells": 0,
            "total_updated_sheets": 0,
            "responses": [],
            "replies": [],
        });
        // Structural requests first: data may write into a sheet they add.
        if let Some(requests) = requests.filter(|r| !r.is_empty()) {
            let a = self.batch_requests(json!(requests)).await?;
            out["replies"] = a.get("replies").cloned().unwrap_or_else(|| json!([]));
        }
        if let Some(data) = data.filter(|d| !d.is_empty()) {
            let a = self
                .client
                .call(
                    Api::Sheets,
                    Method::POST,
                    &self.spreadsheet_path("/values:batchUpdate"),
                    &[],
                    Some(&json!({"valueInputOption": self.value_input(p), "data": data})),
                )
                .await?;
            for (k, api) in [
                ("total_updated_rows", "totalUpdatedRows"),
                ("total_updated_columns", "totalUpdatedColumns"),
                ("total_updated_cells", "totalUpdatedCells"),
                ("total_updated_sheets", "totalUpdatedSheets"),
            ] {
                out[k] = a.get(api).cloned().unwrap_or(json!(0));
            }
            out["responses"] = a.get("responses").cloned().unwrap_or_else(|| json!([]));
        }
        Ok(out)
    }

    /// The sheets of the spreadsheet: `(title, sheet id, index)`.
    async fn sheets(&self) -> Result<Vec<(String, Option<i64>, i64)>, PlatformError> {
        let a = self
            .client
            .call(
                Api::Sheets,
                Method::GET,
                &self.spreadsheet_path(""),
                &[(
                    "fields",
                    "sheets.properties(sheetId,title,index)".to_owned(),
                )],
                None,
            )
            .await?;
        Ok(a.get("sheets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("properties"))
            .map(|p| {
                (
                    p.get("title")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    p.get("sheetId").and_then(Value::as_i64),
                    p.get("index").and_then(Value::as_i64).unwrap_or(0),
                )
            })
            .collect())
    }

    /// The sheet the poller watches: `[config] sheet`, else the first sheet, with its id.
    async fn poll_sheet(&self) -> Result<(String, Option<i64>), PlatformError> {
        let sheets = self.sheets().await?;
        let found = match &self.sheet {
            Some(name) => sheets.into_iter().find(|(t, _, _)| t == name),
            None => sheets.into_iter().min_by_key(|(_, _, i)| *i),
        };
        found
            .map(|(t, id, _)| (t, id))
            .ok_or_else(|| PlatformError::NotFound {
                detail: match &self.sheet {
                    Some(name) => format!("the spreadsheet has no sheet {name:?}"),
                    None => "the spreadsheet has no sheet".into(),
                },
            })
    }

    /// How many rows `sheet` has (the last one holding a value), at least the header row,
    /// without reading the whole sheet: column A alone, column-major (one cell per row, down
    /// to its last value: Sheets omits trailing empty cells), then blocks of
    /// [`POLL_BATCH_ROWS`] rows below it until one is empty, for rows whose column A is empty.
    /// On a sheet whose column A is filled that is two small reads, whatever its width.
    async fn sheet_length(&self, sheet: &str) -> Result<i64, PlatformError> {
        let name = quoted(sheet);
        let a = self
            .client
            .call(
                Api::Sheets,
                Method::GET,
                &self.values_path(&format!("{name}!A:A"), ""),
                &[("majorDimension", "COLUMNS".to_owned())],
                None,
            )
            .await?;
        let in_a = a
            .pointer("/values/0")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let mut last = i64::try_from(in_a).unwrap_or(i64::MAX);
        // Bounded: a sheet holds at most 10 million cells.
        for _ in 0..20_000 {
            let from = last.saturating_add(1);
            let to = from.saturating_add(POLL_BATCH_ROWS - 1);
            let block = self
                .client
                .call(
                    Api::Sheets,
                    Method::GET,
                    &self.values_path(&format!("{name}!{from}:{to}"), ""),
                    &[],
                    None,
                )
                .await;
            let block = match block {
                Ok(b) => b,
                // Past the sheet's grid: nothing below.
                Err(PlatformError::Rejected {
                    status: 400,
                    detail,
                }) if detail.contains("exceeds grid limits") => {
                    break;
                }
                Err(e) => return Err(e),
            };
            let rows = block
                .get("values")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if rows == 0 {
                break;
            }
            last = from
                .saturating_add(i64::try_from(rows).unwrap_or(i64::MAX))
                .saturating_sub(1);
        }
        Ok(last.max(self.header_row))
    }

    /// One `values.batchGet` of the header row, the rows from `from`, and (when `check` is
    /// given) the row `check`.
    async fn poll_read(
        &self,
        sheet: &str,
        from: i64,
        check: Option<i64>,
    ) -> Result<Value, PlatformError> {
        let name = quoted(sheet);
        let h = self.header_row;
        let to = from.saturating_add(POLL_BATCH_ROWS - 1);
        let mut ranges = vec![format!("{name}!{h}:{h}"), format!("{name}!{from}:{to}")];
        if let Some(c) = check {
            ranges.push(format!("{name}!{c}:{c}"));
        }
        let query: Vec<(&str, String)> = ranges.into_iter().map(|r| ("ranges", r)).collect();
        self.client
            .call(
                Api::Sheets,
                Method::GET,
                &self.spreadsheet_path("/values:batchGet"),
                &query,
                None,
            )
            .await
    }

    /// Looks for rows appended below `cursor.last_row` (see the module docs). Without a cursor
    /// (the first poll) it records where the sheet ends and reports nothing. Rows above or on
    /// the header row are never reported; blank rows are skipped but counted.
    pub async fn poll_rows(&self, cursor: Option<&RowCursor>) -> Result<RowPoll, PlatformError> {
        let Some(cursor) = cursor else {
            let (sheet, sheet_id) = self.poll_sheet().await?;
            let last_row = self.sheet_length(&sheet).await?;
            return Ok(RowPoll {
                rows: Vec::new(),
                cursor: RowCursor {
                    sheet,
                    sheet_id,
                    last_row,
                },
            });
        };
        let h = self.header_row;
        let from = cursor.last_row.max(h).saturating_add(1);
        // The last row seen is read again: empty now means rows were deleted or cleared.
        let check = (cursor.last_row > h).then_some(cursor.last_row);
        let mut cursor = cursor.clone();
        let a = match self.poll_read(&cursor.sheet, from, check).await {
            Ok(a) => a,
            // The rows asked for lie past the sheet's grid: it is full to its last row, or
            // rows were deleted. Start again from where it ends now.
            Err(PlatformError::Rejected {
                status: 400,
                detail,
            }) if detail.contains("exceeds grid limits") => {
                cursor.last_row = self.sheet_length(&cursor.sheet).await?;
                return Ok(RowPoll {
                    rows: Vec::new(),
                    cursor,
                });
            }
            // The sheet's name no longer parses: renamed? Find it again by id.
            Err(PlatformError::Rejected { status: 400, .. }) if cursor.sheet_id.is_some() => {
                let renamed = self
                    .sheets()
                    .await?
                    .into_iter()
                    .find(|(_, id, _)| *id == cursor.sheet_id)
                    .ok_or_else(|| PlatformError::NotFound {
                        detail: format!(
                            "the sheet {:?} (id {}) is gone from the spreadsheet",
                            cursor.sheet,
                            cursor.sheet_id.unwrap_or_default()
                        ),
                    })?;
                cursor.sheet = renamed.0;
                self.poll_read(&cursor.sheet, from, check).await?
            }
            Err(e) => return Err(e),
        };
        let block_empty = a
            .pointer("/valueRanges/1/values")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        let check_empty = a
            .pointer("/valueRanges/2/values")
            .and_then(Value::as_array)
            .is_none_or(|rows| {
                rows.iter()
                    .all(|r| r.as_array().is_none_or(|c| c.iter().all(blank)))
            });
        if check.is_some() && block_empty && check_empty {
            // The sheet got shorter: start again from where it ends now, so that the rows
            // appended next (which Sheets places there) are reported.
            cursor.last_row = self.sheet_length(&cursor.sheet).await?;
            return Ok(RowPoll {
                rows: Vec::new(),
                cursor,
            });
        }
        let headers: Vec<Value> = a
            .pointer("/valueRanges/0/values/0")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let block = a.pointer("/valueRanges/1");
        let start = block
            .and_then(|b| b.get("range"))
            .and_then(Value::as_str)
            .and_then(first_row)
            .unwrap_or(from);
        let rows: Vec<Value> = block
            .and_then(|b| b.get("values"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let detected_at = i64::try_from(self.client.now_ms() / 1000)
            .ok()
            .and_then(rfc3339_from_unix);
        let mut out = Vec::new();
        let mut last_row = cursor.last_row.max(h);
        for (i, row) in rows.iter().enumerate() {
            let number = start.saturating_add(i64::try_from(i).unwrap_or(i64::MAX));
            last_row = last_row.max(number);
            let values = row.as_array().cloned().unwrap_or_default();
            if values.iter().all(blank) {
                continue;
            }
            let digest = hex(&Sha256::digest(
                Value::Array(values.clone()).to_string().as_bytes(),
            ));
            out.push(json!({
                "spreadsheet_id": self.spreadsheet_id,
                "sheet": cursor.sheet,
                "sheet_id": cursor.sheet_id,
                "row_number": number,
                "headers": headers,
                "values": values,
                "detected_at": detected_at,
                "id": format!("{}:{}:{number}:{}", self.spreadsheet_id, cursor.sheet, &digest[..16]),
            }));
        }
        Ok(RowPoll {
            rows: out,
            cursor: RowCursor {
                sheet: cursor.sheet.clone(),
                sheet_id: cursor.sheet_id,
                last_row,
            },
        })
    }
}

/// One `data` entry of `batch_update` as a Sheets ValueRange.
fn value_range(i: usize, d: &Value, sheet: Option<&str>) -> Result<Value, PlatformError> {
    let bad = |why: &str| PlatformError::Invalid(format!("batch_update: `data[{i}]` {why}"));
    let m = d.as_object().ok_or_else(|| bad("must be a table"))?;
    for k in m.keys() {
        if !matches!(
            k.as_str(),
            "range" | "values" | "major_dimension" | "majorDimension"
        ) {
            return Err(bad(&format!(
                "has an unknown key `{k}` (known: range, values, major_dimension)"
            )));
        }
    }
    let range = m
        .get("range")
        .and_then(Value::as_str)
        .filter(|r| !r.trim().is_empty())
        .ok_or_else(|| bad("needs a `range`"))?;
    let rows = m
        .get("values")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("needs `values`, a list of rows"))?;
    let mut values = Vec::with_capacity(rows.len());
    for (r, row) in rows.iter().enumerate() {
        let cells = row
            .as_array()
            .ok_or_else(|| bad(&format!("`values[{r}]` must be a list of cells")))?;
        if !cells.iter().all(is_cell) {
            return Err(bad(&format!(
                "`values[{r}]` holds a value that is not a string, number, boolean or null"
            )));
        }
        values.push(Value::Array(cells.clone()));
    }
    let mut out = json!({
        "range": GoogleSheetsConnector::qualify(range, sheet),
        "values": values,
    });
    if let Some(dim) = m.get("major_dimension").or_else(|| m.get("majorDimension")) {
        match dim.as_str() {
            Some(d @ ("ROWS" | "COLUMNS")) => out["majorDimension"] = json!(d),
            _ => return Err(bad("`major_dimension` must be ROWS or COLUMNS")),
        }
    }
    Ok(out)
}

/// A `values` parameter as one row of cells.
fn cells(action: &str, v: &Value) -> Result<Vec<Value>, PlatformError> {
    let items = v.as_array().ok_or_else(|| {
        PlatformError::Invalid(format!("{action}: `values` must be a list of cell values"))
    })?;
    if items.is_empty() {
        return Err(PlatformError::Invalid(format!(
            "{action}: `values` is empty"
        )));
    }
    if let Some(i) = items.iter().position(|c| !is_cell(c)) {
        return Err(PlatformError::Invalid(format!(
            "{action}: `values[{i}]` must be a string, number, boolean or null (one row: a flat list)"
        )));
    }
    Ok(items.clone())
}

/// A sheet name quoted for A1 notation (`'Tickets'`, `'Bob''s'`), always: a bare name can read
/// as a cell (`Log` is column LOG, `AB12` a cell).
fn quoted(sheet: &str) -> String {
    format!("'{}'", sheet.replace('\'', "''"))
}

/// An empty cell.
fn blank(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("")
}

fn is_cell(v: &Value) -> bool {
    matches!(
        v,
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)
    )
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Whether `s` is an A1 cell range without a sheet (`A2`, `A2:D2`, `B:B`, `5:5`).
fn is_cell_range(s: &str) -> bool {
    // At most three column letters (Sheets stops at column ZZZ): `Sheet1` is a sheet name.
    let part = |p: &str| {
        let letters = p.chars().take_while(char::is_ascii_alphabetic).count();
        let rest = &p[letters..];
        !p.is_empty() && letters <= 3 && rest.chars().all(|c| c.is_ascii_digit())
    };
    let mut it = s.split(':');
    match (it.next(), it.next(), it.next()) {
        (Some(a), None, None) => {
            // A lone word is a sheet name unless it is a cell (`A2`).
            let letters = a.chars().take_while(char::is_ascii_alphabetic).count();
            letters > 0 && letters < a.len() && part(a)
        }
        (Some(a), Some(b), None) => part(a) && part(b),
        _ => false,
    }
}

/// The first row number of an A1 range (`Sheet1!A5:C5` → 5, `'A b'!7:9` → 7).
pub(crate) fn first_row(range: &str) -> Option<i64> {
    let cells = range.rsplit_once('!').map_or(range, |(_, c)| c);
    let start = cells.split(':').next()?;
    let digits: String = start
        .chars()
        .skip_while(char::is_ascii_alphabetic)
        .collect();
    digits.parse().ok()
}

fn random_hex(bytes: usize) -> Result<String, PlatformError> {
    crate::secrets::random_hex(bytes)
        .map_err(|_| PlatformError::Invalid("no randomness for a channel id or token".into()))
}

fn hex(bytes: &[u8]) -> String {
    crate::platforms::inbound::hex(bytes)
}

/// A list of cells (a comma-separated string accepted, its items trimmed): unlike
/// [`Params::strings`], blank cells are kept, as they hold a column's place.
fn header_cells(p: &Params<'_>, name: &str) -> Option<Vec<String>> {
    match p.raw(name)? {
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|x| match x {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
        ),
        Value::String(s) => Some(s.split(',').map(|x| x.trim().to_owned()).collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_ranges_and_rows() {
        for r in ["A2", "A2:D2", "B:B", "5:5", "AA10:AB"] {
            assert!(is_cell_range(r), "{r}");
        }
        for r in ["Tickets", "Sheet1", "A", "", "A:B:C", "'x'!A1"] {
            assert!(!is_cell_range(r), "{r}");
        }
        assert_eq!(first_row("Sheet1!A5:C5"), Some(5));
        assert_eq!(first_row("'A!b'!7:9"), Some(7));
        assert_eq!(first_row("Sheet1!A:C"), None);
        assert_eq!(
            GoogleSheetsConnector::qualify("A2:B2", Some("My sheet")),
            "'My sheet'!A2:B2"
        );
        assert_eq!(GoogleSheetsConnector::qualify("Other", Some("S")), "Other");
        assert_eq!(GoogleSheetsConnector::qualify("X!A1", Some("S")), "X!A1");
    }

    #[test]
    fn channel_prefixes_fit_drive_ids() {
        let short = IntegrationId::parse("sheets-main").expect("id");
        assert_eq!(channel_prefix(&short), "supportopsd-sheets-main");
        let long = IntegrationId::parse(&"a".repeat(63)).expect("id");
        let p = channel_prefix(&long);
        assert!(p.len() <= 38, "{p}");
        // A prefix, `-`, 24 hex characters: within Drive's 64.
        assert!(p.len() + 1 + 24 <= 64);
        assert_ne!(
            p,
            channel_prefix(&IntegrationId::parse(&format!("{}b", "a".repeat(62))).expect("id"))
        );
        assert!(
            channel_prefix(&long)
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        );
    }

    proptest::proptest! {
        #[test]
        fn range_helpers_never_panic(range in ".{0,24}", sheet in ".{0,12}", n in proptest::prelude::any::<u64>()) {
            let _ = is_cell_range(&range);
            let _ = first_row(&range);
            let _ = GoogleSheetsConnector::qualify(&range, Some(&sheet));
            let _ = quoted(&sheet);
            let _ = renewal_margin_ms(n);
            let v = serde_json::Value::String(range.clone());
            let _ = value_range(0, &json!({"range": range, "values": [[v]]}), Some(&sheet));
        }
    }

    #[test]
    fn renewal_margins() {
        assert_eq!(renewal_margin_ms(86_400_000), 3_600_000);
        assert_eq!(renewal_margin_ms(1_800_000), 600_000);
        assert_eq!(renewal_margin_ms(4_000_000), 1_000_000);
    }

    /// Issue 16 item 12: with passes every resync interval (the daemon's default), at any
    /// phase, every accepted channel lifetime is renewed by a pass before it expires, with a
    /// pass's worth of time to spare. The old minimum (300 s, margin 75 s) lapsed: a channel
    /// made by one pass expired at the next.
    #[test]
    fn every_accepted_lifetime_is_renewed_before_it_lapses() {
        let resync = u64::try_from(crate::runtime::DEFAULT_RESYNC.as_millis()).unwrap_or(0);
        for lifetime_s in [
            MIN_CHANNEL_LIFETIME_SECS,
            MIN_CHANNEL_LIFETIME_SECS + 1,
            3_600,
            7_200,
            MAX_CHANNEL_LIFETIME_SECS,
        ] {
            let lifetime = lifetime_s * 1000;
            let margin = renewal_margin_ms(lifetime);
            for phase in (0..resync).step_by(7_001) {
                // A channel made by a pass at `phase`; later passes every `resync`.
                let expires = phase + lifetime;
                let renewed_at = (1..)
                    .map(|k| phase + k * resync)
                    .find(|t| expires.saturating_sub(*t) <= margin)
                    .unwrap_or(u64::MAX);
                assert!(
                    renewed_at + resync / 2 < expires,
                    "lifetime {lifetime_s} s: renewed at {renewed_at}, expires at {expires}"
                );
                assert!(renewed_at > phase + resync / 2, "renewed at once");
            }
        }
    }
}
