//! `supportopsd events export [--since 7d] [--integration I] [--scrub-text] --out FILE`: the
//! stored deliveries as an event corpus (`docs/corpus.md`), for `plan --replay`. Read through a
//! running daemon's API (`GET /api/events/export`, the read-only token is enough), which
//! pseudonymises each payload before it leaves the daemon, or, when none answers, straight
//! from `--state` (opened read-only) by the same code ([`crate::runtime::export::write`]). The
//! file is written 0600 (it is derived from customer data) and atomically: a temporary file
//! beside it, read back as a corpus, then renamed. A one-line summary goes to stderr.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use super::state::{Streaming, stream_to, write_atomically};
use super::{Exit, GlobalArgs, Target};
use crate::event::corpus::{Reader, Summary};
use crate::manifest::IntegrationId;
use crate::runtime::export::Query;

/// Write stored deliveries as an event corpus.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The deliveries received in this last period (`7d`, `12h`, `30m`, `90s`) or since this
    /// time (RFC 3339, `2026-12-01T00:00:00Z`, or a date, `2026-12-01`, midnight UTC).
    #[arg(long, value_name = "AGE|TIME", default_value = "7d")]
    pub since: String,
    /// Only the deliveries of this integration.
    #[arg(long, value_name = "I")]
    pub integration: Option<String>,
    /// Replace ticket text too (subjects, descriptions, comment and message text): conditions
    /// and templates reading it then see `[text removed]`.
    #[arg(long)]
    pub scrub_text: bool,
    /// The corpus file to write (mode 0600; replaced atomically if it exists).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Where to find the daemon.
    #[command(flatten)]
    pub target: Target,
}

/// `--since` as milliseconds since the Unix epoch: an age before `now_ms` (`7d`, `12h`, `30m`,
/// `90s`) or a time (RFC 3339, or a date).
pub fn parse_since(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "--since {text:?}: give an age (`7d`, `12h`, `30m`, `90s`) or a time (RFC 3339, `2026-12-01T00:00:00Z`, or a date)"
        )
    };
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits < text.len() && digits + 1 == text.len() {
        let age = crate::runtime::retry::parse_duration(text).ok_or_else(bad)?;
        let age_ms = u64::try_from(age.as_millis()).map_err(|_| bad())?;
        return Ok(now_ms.saturating_sub(age_ms));
    }
    let (secs, nanos) = crate::rules::condition::parse_timestamp(text).ok_or_else(bad)?;
    let secs = u64::try_from(secs).map_err(|_| bad())?;
    let ms = secs
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(u64::from(nanos / 1_000_000)))
        .ok_or_else(bad)?;
    if ms > now_ms {
        return Err(format!("--since {text:?} is in the future"));
    }
    Ok(ms)
}

/// The export's query string (`GET /api/events/export`).
fn query_string(q: &Query) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    s.append_pair("since_ms", &q.since_ms.to_string());
    if let Some(i) = &q.integration {
        s.append_pair("integration", i.as_str());
    }
    if q.scrub_text {
        s.append_pair("scrub_text", "true");
    }
    s.finish()
}

/// Reads a written corpus back: every line must be the header or a record.
fn check_corpus(file: &Path) -> anyhow::Result<Summary> {
    let f = File::open(file).with_context(|| format!("reading {}", file.display()))?;
    let unreadable = || {
        format!(
            "what was written to {} is not an event corpus",
            file.display()
        )
    };
    let reader = Reader::new(BufReader::new(f)).with_context(unreadable)?;
    let mut summary = Summary::default();
    for record in reader {
        let record = record.with_context(unreadable)?;
        summary.add(&record);
    }
    Ok(summary)
}

/// Runs `events export`.
pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let now = crate::runtime::now_ms();
    let since_ms = parse_since(&args.since, now).map_err(anyhow::Error::msg)?;
    let integration = args
        .integration
        .as_deref()
        .map(IntegrationId::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--integration: {e}"))?;
    let q = Query {
        since_ms,
        integration,
        scrub_text: args.scrub_text,
    };
    let base = args.target.base();
    let url = format!("{base}/api/events/export?{}", query_string(&q));
    let streaming = Streaming {
        url: &url,
        base: &base,
        change: false,
        what: "the events",
    };
    let written = write_atomically(&args.out, |file| stream_to(&streaming, file), check_corpus)?;
    let (source, summary) = match written {
        Some((_, summary)) => (format!("the daemon at {base}"), summary),
        None => {
            let store = super::events::open_state(g)?;
            let written = write_atomically(
                &args.out,
                |file| {
                    let mut out = BufWriter::with_capacity(256 * 1024, file);
                    let summary =
                        crate::runtime::export::write(store.as_ref(), &q, "state", now, &mut out)?;
                    out.flush()?;
                    Ok(Some(summary))
                },
                check_corpus,
            )?;
            let Some((summary, _)) = written else {
                bail!("nothing was written to {}", args.out.display());
            };
            (
                format!(
                    "the state at {} (no daemon answered at {base})",
                    super::state_dir(g).display()
                ),
                summary,
            )
        }
    };
    eprintln!(
        "Exported {summary} from {source} to {}.",
        args.out.display()
    );
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn since_reads_ages_and_times() {
        assert_eq!(parse_since("7d", NOW), Ok(NOW - 7 * 86_400_000));
        assert_eq!(parse_since("12h", NOW), Ok(NOW - 12 * 3_600_000));
        assert_eq!(parse_since("30m", NOW), Ok(NOW - 30 * 60_000));
        assert_eq!(parse_since("90s", NOW), Ok(NOW - 90_000));
        assert_eq!(parse_since("0d", NOW), Ok(NOW));
        // Longer than the epoch is everything.
        assert_eq!(parse_since("99999999d", NOW), Ok(0));
        assert_eq!(
            parse_since("2026-12-01T00:00:00Z", NOW),
            Ok(1_796_083_200_000)
        );
        assert_eq!(
            parse_since("2026-12-01T01:00:00.250+01:00", NOW),
            Ok(1_796_083_200_250)
        );
        assert_eq!(parse_since("2026-12-01", NOW), Ok(1_796_083_200_000));
    }

    #[test]
    fn a_since_that_is_not_an_age_or_a_time_says_what_is_expected() {
        for bad in [
            "",
            "7",
            "d",
            "7w",
            "7dd",
            "-7d",
            "yesterday",
            "2026-13-01",
            "1.5h",
        ] {
            let e = parse_since(bad, NOW).unwrap_err();
            assert!(e.contains("give an age (`7d`"), "{bad}: {e}");
        }
        let e = parse_since("2099-01-01T00:00:00Z", NOW).unwrap_err();
        assert!(e.contains("in the future"), "{e}");
    }

    #[test]
    fn the_query_string_reads_back_as_the_query() {
        let q = Query {
            since_ms: 42,
            integration: Some(IntegrationId::parse("zendesk-main").unwrap()),
            scrub_text: true,
        };
        assert_eq!(
            crate::runtime::export::parse_query(&query_string(&q)).unwrap(),
            q
        );
        let plain = Query::default();
        assert_eq!(query_string(&plain), "since_ms=0");
    }
}
