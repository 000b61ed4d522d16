//! Read-only probes of a real Trello account (`supportopsd check-platform`), with `GET`s only
//! ([`crate::platforms::probe::read_only`] refuses anything else).
//!
//! | area | request | assumption |
//! |---|---|---|
//! | connection | `GET /1/members/me` | the token's member has a 24-hex id (the loop guard's identity) |
//! | boards | `GET /1/boards/{board}?fields=id,name` | each board of `[config] boards` is readable with the token |
//! | webhooks | `GET /1/tokens/{token}/webhooks` | a JSON array; one active webhook of ours per board, posting to this daemon |
//!
//! The token never appears in a finding: requests are shown as `/1/tokens/{token}/…`.

use http::Method;
use serde_json::Value;

use super::client::{TrelloClient, segment};
use crate::platforms::connector::PlatformError;
use crate::platforms::probe::{Finding, ProbeTarget, describe, unreadable};

/// Sends only reads: the probe holds a [`reader::Reader`], never the client.
mod reader {
    use super::{Method, PlatformError, TrelloClient, Value};
    use crate::platforms::probe::read_only;

    /// The Trello client, reduced to `GET`.
    pub(super) struct Reader<'a> {
        client: &'a TrelloClient,
    }

    impl<'a> Reader<'a> {
        pub(super) fn new(client: &'a TrelloClient) -> Self {
            Self { client }
        }

        /// `GET <base><path>?<query>`, after the read-only guard.
        pub(super) async fn get(
            &self,
            path: &str,
            query: &[(&str, String)],
            what: &str,
        ) -> Result<Value, PlatformError> {
            read_only(&Method::GET, path, &[])?;
            self.client.call(Method::GET, path, query, what).await
        }

        /// The path of the token's own webhooks.
        pub(super) fn webhooks_path(&self) -> String {
            self.client.token_path("webhooks")
        }
    }
}

const CONNECTION: &str = "connection";
const BOARDS: &str = "boards";
const WEBHOOKS: &str = "webhooks";

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn is_full_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Runs every Trello probe. `Err` only when the connection check fails.
pub async fn run(
    client: &TrelloClient,
    boards: &[String],
    target: &ProbeTarget,
) -> Result<Vec<Finding>, PlatformError> {
    let r = reader::Reader::new(client);
    let mut out = Vec::new();
    let me = r
        .get(
            "members/me",
            &[("fields", "id,username,fullName".into())],
            "GET /1/members/me",
        )
        .await?;
    out.push(Finding::checked(
        CONNECTION,
        "the token's member has a 24-hex id (actions it makes carry it as idMemberCreator)",
        "GET /1/members/me?fields=id,username,fullName",
        "a 24-hex `id`",
        format!(
            "member {} (@{})",
            describe(me.get("id")),
            s(&me, "username")
        ),
        is_full_id(s(&me, "id")),
    ));
    let mut board_ids = Vec::new();
    for b in boards {
        let req = format!("GET /1/boards/{b}?fields=id,name");
        let assumption = format!("board `{b}` is readable with the token");
        match r
            .get(
                &format!("boards/{}", segment(b)),
                &[("fields", "id,name".into())],
                &req,
            )
            .await
        {
            Ok(v) => {
                let id = s(&v, "id").to_owned();
                out.push(Finding::checked(
                    BOARDS,
                    &assumption,
                    &req,
                    "the board",
                    format!("{} ({id})", describe(v.get("name"))),
                    is_full_id(&id),
                ));
                board_ids.push(id);
            }
            Err(e) => out.push(Finding::checked(
                BOARDS,
                &assumption,
                &req,
                "the board",
                e.to_string(),
                false,
            )),
        }
    }
    if boards.is_empty() {
        out.push(Finding::unchecked(
            BOARDS,
            "the boards to watch",
            "-",
            "`[config] boards`",
            "the integration names no board: webhooks are registered per board",
        ));
    }
    let req = "GET /1/tokens/{token}/webhooks";
    let hooks = match r
        .get(&r.webhooks_path(), &[], "listing the token's webhooks")
        .await
    {
        Ok(v) => v,
        Err(e) => {
            out.push(unreadable(
                WEBHOOKS,
                "the token's webhooks can be listed",
                req,
                "a JSON array",
                &e,
            ));
            return Ok(out);
        }
    };
    out.push(Finding::checked(
        WEBHOOKS,
        "the token's webhooks are listed as a JSON array",
        req,
        "a JSON array",
        describe(Some(&hooks)),
        hooks.is_array(),
    ));
    let marker = target.marker();
    let ours: Vec<&Value> = hooks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| s(h, "description") == marker)
        .collect();
    for id in &board_ids {
        let assumption = format!("an active webhook of ours watches board {id}");
        match ours.iter().find(|h| s(h, "idModel") == id) {
            None => out.push(Finding::unchecked(
                WEBHOOKS,
                &assumption,
                req,
                "listed, active",
                "not on the account: the daemon has not registered it (yet), or it was deleted",
            )),
            Some(h) => {
                let active = h.get("active").and_then(Value::as_bool).unwrap_or(true);
                out.push(Finding::checked(
                    WEBHOOKS,
                    &assumption,
                    req,
                    "listed, active",
                    format!(
                        "webhook {}, {}",
                        s(h, "id"),
                        if active {
                            "active"
                        } else {
                            "inactive (Trello stops a webhook whose callbacks keep failing)"
                        }
                    ),
                    active,
                ));
                if let Some(url) = &target.url {
                    let cb = s(h, "callbackURL");
                    out.push(Finding::checked(
                        WEBHOOKS,
                        &format!(
                            "the webhook on board {id} posts to this daemon (part of the signature)"
                        ),
                        req,
                        url.clone(),
                        cb,
                        cb == url,
                    ));
                }
            }
        }
    }
    Ok(out)
}
