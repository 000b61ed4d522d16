//! Read-only probes of a real Google spreadsheet (`supportopsd check-platform`), with `GET`s
//! only ([`crate::platforms::probe::read_only`] refuses anything else). The one `POST` is the
//! client's own token exchange at the key's `token_uri`, a read that changes nothing.
//!
//! | area | request | assumption |
//! |---|---|---|
//! | connection | token exchange, then `GET v4/spreadsheets/{id}?fields=…` | the service account gets a token and can read the spreadsheet; the configured sheet exists |
//! | drive | `GET drive/v3/files/{id}?fields=id,name,mimeType&supportsAllDrives=true` | the `drive.readonly` scope reads the file (what `files.watch` needs), a Google Sheets file |
//! | push channel | — | Drive has no list of channels: reported `unchecked` |

use http::Method;
use serde_json::Value;

use super::client::{Api, GoogleClient, encode_segment};
use crate::platforms::connector::PlatformError;
use crate::platforms::probe::{Finding, ProbeTarget, describe};

/// Sends only reads: the probe holds a [`reader::Reader`], never the client.
mod reader {
    use super::{Api, GoogleClient, Method, PlatformError, Value};
    use crate::platforms::probe::read_only;

    /// The Google client, reduced to `GET` (and its own token exchange).
    pub(super) struct Reader<'a> {
        client: &'a GoogleClient,
    }

    impl<'a> Reader<'a> {
        pub(super) fn new(client: &'a GoogleClient) -> Self {
            Self { client }
        }

        /// `GET <root><path>?<query>`, after the read-only guard.
        pub(super) async fn get(
            &self,
            api: Api,
            path: &str,
            query: &[(&str, String)],
        ) -> Result<Value, PlatformError> {
            read_only(&Method::GET, path, &[])?;
            self.client.call(api, Method::GET, path, query, None).await
        }

        pub(super) fn client_email(&self) -> &str {
            self.client.client_email()
        }
    }
}

const SPREADSHEET_MIME: &str = "application/vnd.google-apps.spreadsheet";

/// Runs every Google Sheets probe. `Err` only when the spreadsheet cannot be read at all.
pub async fn run(
    client: &GoogleClient,
    spreadsheet_id: &str,
    sheet: Option<&str>,
    push_notifications: bool,
    target: &ProbeTarget,
) -> Result<Vec<Finding>, PlatformError> {
    let r = reader::Reader::new(client);
    let mut out = Vec::new();
    let id = encode_segment(spreadsheet_id);
    let req = format!(
        "GET /v4/spreadsheets/{spreadsheet_id}?fields=spreadsheetId,properties.title,sheets.properties.title"
    );
    let a = r
        .get(
            Api::Sheets,
            &format!("v4/spreadsheets/{id}"),
            &[(
                "fields",
                "spreadsheetId,properties.title,sheets.properties.title".to_owned(),
            )],
        )
        .await?;
    out.push(Finding::checked(
        "connection",
        "the service account gets a token and reads the spreadsheet",
        &req,
        "the spreadsheet's title",
        format!(
            "{} read by {}",
            describe(a.pointer("/properties/title")),
            r.client_email()
        ),
        a.pointer("/properties/title").is_some(),
    ));
    let titles: Vec<&str> = a
        .get("sheets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.pointer("/properties/title").and_then(Value::as_str))
        .collect();
    if let Some(sheet) = sheet {
        out.push(Finding::checked(
            "connection",
            &format!("the sheet `{sheet}` of `[config] sheet` exists"),
            &req,
            sheet,
            if titles.is_empty() {
                "no sheets".to_owned()
            } else {
                titles.join(", ")
            },
            titles.contains(&sheet),
        ));
    }
    let dreq = format!(
        "GET /drive/v3/files/{spreadsheet_id}?fields=id,name,mimeType&supportsAllDrives=true"
    );
    let assumption = "the drive.readonly scope reads the file (files.watch needs it)";
    match r
        .get(
            Api::Drive,
            &format!("drive/v3/files/{id}"),
            &[
                ("fields", "id,name,mimeType".to_owned()),
                ("supportsAllDrives", "true".to_owned()),
            ],
        )
        .await
    {
        Ok(f) => out.push(Finding::checked(
            "drive",
            assumption,
            &dreq,
            format!("mimeType {SPREADSHEET_MIME}"),
            format!("mimeType {}", describe(f.get("mimeType"))),
            f.get("mimeType").and_then(Value::as_str) == Some(SPREADSHEET_MIME),
        )),
        Err(e) => out.push(Finding::checked(
            "drive",
            assumption,
            &dreq,
            "the file",
            e.to_string(),
            false,
        )),
    }
    if push_notifications && !target.events.is_empty() {
        out.push(Finding::unchecked(
            "drive",
            "a push channel delivers `file_changed` to this daemon",
            "-",
            target
                .url
                .clone()
                .unwrap_or_else(|| "{public_url}/api/webhooks/google_sheets/<id>".to_owned()),
            "Drive has no API to list channels; whether Drive requires the callback domain to be verified shows only when files.watch is called (the daemon's registration)",
        ));
    }
    Ok(out)
}
