//! `supportopsd sync`: asks the running daemon for a reconcile pass and returns only when the
//! newest revision is applied (exit 0) or refused (exit 1). The unit's `ExecReload=` runs it,
//! so `systemctl reload supportopsd` is synchronous.

use anyhow::bail;

use super::{Exit, api_call, unexpected};

/// Ask for a pass and wait for it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's address [default: $SUPPORTOPSD_URL, else http:// + $SUPPORTOPSD_LISTEN, else
    /// http://127.0.0.1:8080].
    #[arg(long)]
    pub url: Option<String>,
}

/// Where the daemon answers: `--url`, `$SUPPORTOPSD_URL`, or its `$SUPPORTOPSD_LISTEN` address
/// (an unspecified address is reached on loopback).
pub fn daemon_url(url: Option<&str>) -> String {
    if let Some(u) = url {
        return u.trim_end_matches('/').to_owned();
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(u) = env("SUPPORTOPSD_URL") {
        return u.trim_end_matches('/').to_owned();
    }
    if let Some(listen) = env("SUPPORTOPSD_LISTEN")
        && let Ok(addr) = listen.parse::<std::net::SocketAddr>()
    {
        let ip = match addr.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        return format!("http://{ip}:{}", addr.port());
    }
    "http://127.0.0.1:8080".to_owned()
}

/// Runs `sync`.
pub fn run(args: &Args) -> anyhow::Result<Exit> {
    let base = daemon_url(args.url.as_deref());
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
    use super::*;

    #[test]
    fn an_explicit_url_wins() {
        assert_eq!(
            daemon_url(Some("http://10.0.0.1:9000/")),
            "http://10.0.0.1:9000"
        );
    }
}
