//! Read-only probes of a real Notion workspace (`supportopsd check-platform`), with `GET`s
//! only ([`crate::platforms::probe::read_only`] refuses anything else).
//!
//! | area | request | assumption |
//! |---|---|---|
//! | connection | `GET /v1/users/me` | the token is a bot's, with a workspace; the pinned `Notion-Version` is accepted |
//! | pages | `GET /v1/pages/{default_parent_page}` | the integration can read the page it creates pages under |
//! | webhooks | — | Notion has no API for subscriptions: reported `unchecked`, with where to look |

use http::Method;
use serde_json::{Map, Value};

use super::client::NotionClient;
use crate::platforms::connector::PlatformError;
use crate::platforms::probe::{Finding, ProbeTarget, describe};

/// Sends only reads: the probe holds a [`reader::Reader`], never the client.
mod reader {
    use super::{Map, Method, NotionClient, PlatformError, Value};
    use crate::platforms::probe::read_only;

    /// The Notion client, reduced to `GET`.
    pub(super) struct Reader<'a> {
        client: &'a NotionClient,
    }

    impl<'a> Reader<'a> {
        pub(super) fn new(client: &'a NotionClient) -> Self {
            Self { client }
        }

        /// `GET <base><path>`, after the read-only guard.
        pub(super) async fn get(&self, path: &str) -> Result<Map<String, Value>, PlatformError> {
            read_only(&Method::GET, path, &[])?;
            self.client.call(Method::GET, path, None).await
        }
    }
}

const CONNECTION: &str = "connection";

/// Runs every Notion probe. `Err` only when the connection check fails.
pub async fn run(
    client: &NotionClient,
    version: &str,
    parent_page: Option<&str>,
    target: &ProbeTarget,
) -> Result<Vec<Finding>, PlatformError> {
    let r = reader::Reader::new(client);
    let mut out = Vec::new();
    let req = format!("GET /v1/users/me (Notion-Version: {version})");
    let me = match r.get("v1/users/me").await {
        Ok(me) => me,
        Err(PlatformError::Rejected {
            status: 400,
            detail,
        }) => {
            // A version Notion does not know is a 400 on every call.
            out.push(Finding::checked(
                CONNECTION,
                &format!("Notion-Version {version} is accepted"),
                &req,
                "a 2xx answer",
                detail,
                false,
            ));
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    out.push(Finding::checked(
        CONNECTION,
        &format!("Notion-Version {version} is accepted"),
        &req,
        "a 2xx answer",
        "accepted",
        true,
    ));
    let kind = me.get("type").and_then(Value::as_str).unwrap_or("");
    let workspace = me.get("bot").and_then(|b| b.get("workspace_name"));
    out.push(Finding::checked(
        CONNECTION,
        "the token is an integration's bot (its id is what webhook `authors` carry for our changes)",
        &req,
        "`type` bot with an id",
        format!(
            "type {}, id {}, workspace {}",
            describe(me.get("type")),
            describe(me.get("id")),
            describe(workspace)
        ),
        kind == "bot" && me.get("id").is_some_and(Value::is_string),
    ));
    if let Some(page) = parent_page {
        let path = format!(
            "v1/pages/{}",
            crate::platforms::http::percent_encode(page, b"")
        );
        let req = format!("GET /v1/pages/{page}");
        let assumption = "the integration can read `[config] default_parent_page`";
        match r.get(&path).await {
            Ok(p) => out.push(Finding::checked(
                "pages",
                assumption,
                &req,
                "the page",
                format!("page {}", describe(p.get("id"))),
                true,
            )),
            Err(e) => out.push(Finding::checked(
                "pages",
                assumption,
                &req,
                "the page",
                format!("{e} (share the page with the integration: ••• > Connections)"),
                false,
            )),
        }
    }
    out.push(Finding::unchecked(
        "webhooks",
        "a webhook subscription delivers to this daemon",
        "-",
        target
            .url
            .clone()
            .unwrap_or_else(|| "{public_url}/api/webhooks/notion/<id>".to_owned()),
        "Notion has no API to read subscriptions: check the integration's Webhooks tab (https://www.notion.so/profile/integrations)",
    ));
    Ok(out)
}
