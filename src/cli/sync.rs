//! `supportopsd sync`: asks the running daemon for a reconcile pass and returns only when the
//! newest revision is applied (exit 0) or refused (exit 1). The unit's `ExecReload=` runs it,
//! so `systemctl reload supportopsd` is synchronous.

use anyhow::bail;

use super::{Exit, Target, api_call, unexpected};

/// Ask for a pass and wait for it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the daemon answers.
    #[command(flatten)]
    pub target: Target,
}

/// Runs `sync`.
pub fn run(args: &Args) -> anyhow::Result<Exit> {
    let base = args.target.base();
    let url = format!("{base}/api/sync");
    match api_call(reqwest::Method::POST, &url)? {
        Some((200, v)) => {
            let rev = v["applied_revision"].as_str().unwrap_or("none");
            println!("Applied {}.", &rev[..rev.len().min(12)]);
            for r in v["results"].as_array().into_iter().flatten() {
                println!(
                    "  {}: {} — {}",
                    r["integration"].as_str().unwrap_or("?"),
                    r["outcome"].as_str().unwrap_or("?"),
                    r["detail"].as_str().unwrap_or("")
                );
            }
            Ok(Exit::Ok)
        }
        Some((409, v)) => {
            eprintln!(
                "Refused: {}; {} keeps running.",
                v["refused"].as_str().unwrap_or("?"),
                v["applied_revision"].as_str().unwrap_or("no revision")
            );
            Ok(Exit::Failure)
        }
        Some((code, body)) => Err(unexpected(&base, code, &body, false)),
        None => bail!("no daemon answers at {base}"),
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::daemon_url;

    #[test]
    fn an_explicit_url_wins() {
        assert_eq!(
            daemon_url(Some("http://10.0.0.1:9000/")),
            "http://10.0.0.1:9000"
        );
    }
}
