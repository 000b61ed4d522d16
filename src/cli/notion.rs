//! `supportopsd notion expect-verification | verification | confirm-verification | reset-verification ID`:
//! an operator takes ownership of a Notion subscription's verification token through a running
//! daemon's API (SEC-04). A token is accepted only in a window opened here; every token that
//! arrived is listed with when and from where, and none verifies anything until one is
//! confirmed — the one Notion shows for the subscription.

use serde_json::json;

use super::{Exit, api_call_with, unexpected};

/// Notion verification tokens.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Accept Notion's verification token for the next minutes (then create the subscription,
    /// or press "Resend token", in Notion).
    ExpectVerification {
        /// The Notion integration.
        id: String,
        /// How long the window stays open (1 to 60).
        #[arg(long, default_value_t = 10)]
        minutes: u64,
        #[command(flatten)]
        target: Target,
    },
    /// List the tokens received (with when and from which peer) and which one is confirmed.
    Verification {
        /// The Notion integration.
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Confirm the received token Notion shows: it alone verifies deliveries from now on.
    ConfirmVerification {
        /// The Notion integration.
        id: String,
        /// The token's number (from `notion verification`), or its fingerprint (`sha256:…`).
        token: String,
        #[command(flatten)]
        target: Target,
    },
    /// Forget every token and the confirmation (deliveries are refused until a new token is
    /// received and confirmed).
    ResetVerification {
        /// The Notion integration.
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

use super::Target;

/// Runs a `notion` command.
pub fn run(cmd: &Command) -> anyhow::Result<Exit> {
    let (id, target, method, verb, body) = match cmd {
        Command::ExpectVerification {
            id,
            minutes,
            target,
        } => (
            id,
            target,
            reqwest::Method::POST,
            "expect-verification",
            Some(json!({ "minutes": minutes })),
        ),
        Command::Verification { id, target } => {
            (id, target, reqwest::Method::GET, "verification", None)
        }
        Command::ConfirmVerification { id, token, target } => {
            let body = match token.trim().parse::<u64>() {
                Ok(n) => json!({ "token_id": n }),
                Err(_) => json!({ "fingerprint": token.trim() }),
            };
            (
                id,
                target,
                reqwest::Method::POST,
                "confirm-verification",
                Some(body),
            )
        }
        Command::ResetVerification { id, target } => (
            id,
            target,
            reqwest::Method::POST,
            "reset-verification",
            Some(json!({})),
        ),
    };
    let base = target.base();
    let base = base.as_str();
    let url = format!("{base}/api/integrations/{id}/notion/{verb}");
    let Some((code, v)) = api_call_with(method, &url, body.as_ref())? else {
        anyhow::bail!(
            "no daemon answered at {base}: Notion verification tokens go to the running daemon"
        );
    };
    if code != 200 {
        return Err(unexpected(base, code, &v, false));
    }
    match cmd {
        Command::ExpectVerification { .. } => println!(
            "Verification window for {id} open for {} minute(s). Create the subscription in Notion \
             (or press \"Resend token\") now, then run `supportopsd notion verification {id}`.",
            match cmd {
                Command::ExpectVerification { minutes, .. } => *minutes,
                _ => 0,
            }
        ),
        Command::Verification { .. } => print_verification(&v),
        Command::ConfirmVerification { .. } => println!(
            "Token {} ({}) confirmed for {id}: it alone verifies the subscription's deliveries.",
            v["confirmed_token_id"],
            v["fingerprint"].as_str().unwrap_or("")
        ),
        Command::ResetVerification { .. } => println!(
            "Verification of {id} reset: every token and the confirmation are forgotten. \
             Run `supportopsd notion expect-verification {id}` before Notion sends a new token."
        ),
    }
    Ok(Exit::Ok)
}

fn print_verification(v: &serde_json::Value) {
    println!(
        "{}: {}",
        v["integration"].as_str().unwrap_or("?"),
        v["state"].as_str().unwrap_or("")
    );
    for t in v["tokens"].as_array().into_iter().flatten() {
        println!(
            "  token {}{}: {} (fingerprint {}, received at {} from {})",
            t["token_id"],
            if t["confirmed"] == true {
                " [confirmed]"
            } else {
                ""
            },
            t["verification_token"].as_str().unwrap_or("(hidden)"),
            t["fingerprint"].as_str().unwrap_or(""),
            t["received_ms"].as_u64().map_or_else(
                || "?".to_owned(),
                crate::platforms::supportopsd::events::rfc3339_ms
            ),
            t["peer"].as_str().unwrap_or("?"),
        );
    }
}
