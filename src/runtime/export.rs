//! Event corpora as they leave the state: what `GET /api/events/export` streams and
//! `supportopsd events export --state` writes (the format: [`crate::event::corpus`],
//! `docs/corpus.md`). The stored deliveries of the query ([`Query`]: received since a time, of
//! one integration) are read in arrival order, a page at a time
//! ([`crate::state::History::events_by_arrival`]), and each becomes one corpus record with its
//! payload pseudonymised per delivery ([`corpus::pseudonymise_delivery`], as `events fixture`
//! does: what enrichment added under `supportopsd_enriched`, one set of stand-ins for the
//! delivery, credentials always redacted, ticket text with `scrub_text`) before it is written:
//! nothing personal leaves through here. Memory is bounded by a page, whatever the corpus size.

use std::io::Write;

use crate::event::corpus::{self, Header, Record, Replaced, Summary, Writer};
use crate::event::pseudonym::Options;
use crate::manifest::IntegrationId;
use crate::platforms::supportopsd::events::rfc3339_ms;
use crate::state::{ENRICHMENT, EventId, EventMeta, State};

/// Delivery records read from the state at a time.
const PAGE: usize = 256;

/// Which deliveries to export, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Received at or after this time, milliseconds since the Unix epoch (0: every one stored).
    pub since_ms: u64,
    /// Arrived on this integration only.
    pub integration: Option<IntegrationId>,
    /// Replace ticket text too.
    pub scrub_text: bool,
}

/// Reads the query string of `GET /api/events/export`: `since_ms` (Unix milliseconds),
/// `integration` (an integration id), `scrub_text` (`true` or `false`). Anything else, or a
/// malformed value, is an error naming it.
pub fn parse_query(query: &str) -> Result<Query, String> {
    let mut q = Query::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let shown = || v.chars().take(64).collect::<String>();
        match &*k {
            "since_ms" => {
                q.since_ms = v.parse::<u64>().map_err(|_| {
                    format!("`since_ms` must be Unix milliseconds, not {:?}", shown())
                })?;
            }
            "integration" => {
                q.integration = Some(
                    IntegrationId::parse(&v)
                        .map_err(|e| format!("`integration` {:?}: {e}", shown()))?,
                );
            }
            "scrub_text" => {
                q.scrub_text = match &*v {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(format!(
                            "`scrub_text` must be true or false, not {:?}",
                            shown()
                        ));
                    }
                };
            }
            other => {
                return Err(format!(
                    "unknown parameter {:?} (expected since_ms, integration, scrub_text)",
                    other.chars().take(32).collect::<String>()
                ));
            }
        }
    }
    Ok(q)
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the state failed.
    #[error("reading the state: {0}")]
    State(#[from] crate::state::Error),
    /// Writing the corpus failed (the client went away, the disk is full).
    #[error("writing the corpus: {0}")]
    Write(#[from] std::io::Error),
}

/// The corpus header of `q`, written at `now_ms` from `source` (`daemon`, `state`).
pub fn header(q: &Query, source: &str, now_ms: u64) -> Header {
    let mut h = Header::new(source);
    h.exported_at = Some(rfc3339_ms(now_ms));
    h.since_ms = Some(q.since_ms);
    h.integration = q.integration.as_ref().map(|i| i.as_str().to_owned());
    h.scrub_text = q.scrub_text;
    h
}

/// Writes the corpus of `q` to `out`: the header, then one record per stored delivery in
/// arrival order (a delivery removed by retention while the export runs is left out). Returns
/// what was written. `out` is not flushed.
pub fn write(
    store: &dyn State,
    q: &Query,
    source: &str,
    now_ms: u64,
    out: &mut dyn Write,
) -> Result<Summary, ExportError> {
    let mut w = Writer::new(out, &header(q, source, now_ms))?;
    let options = Options {
        scrub_text: q.scrub_text,
    };
    let integration = q.integration.as_ref().map(IntegrationId::as_str);
    let mut summary = Summary::default();
    let mut after: Option<EventId> = None;
    loop {
        let page = store.events_by_arrival(after, q.since_ms, integration, PAGE)?;
        for meta in &page {
            if let Some(r) = record(store, meta, options)? {
                w.record(&r)?;
                summary.add(&r);
            }
        }
        if page.len() < PAGE {
            break;
        }
        after = page.last().map(|m| m.id);
    }
    w.finish()?;
    Ok(summary)
}

/// One stored delivery as a corpus record; `None` when its payload is no longer stored.
fn record(
    store: &dyn State,
    meta: &EventMeta,
    options: Options,
) -> Result<Option<Record>, ExportError> {
    let Some(event) = store.event(meta.id)? else {
        return Ok(None);
    };
    // Until its enrichment completes, a delivery's rules are the enrichment job's marker.
    let enrichment_pending = meta.rules.iter().any(|r| r == ENRICHMENT);
    let rules = if enrichment_pending {
        Vec::new()
    } else {
        meta.rules.clone()
    };
    let p = match meta.platform.descriptor().event(&meta.name) {
        Some(spec) => corpus::pseudonymise_delivery(
            meta.platform,
            spec,
            &event.payload,
            Some(&event.objects),
            options,
        ),
        // An event the catalogue no longer names: no enrichment to tell apart, still
        // pseudonymised.
        None => crate::event::pseudonym::pseudonymise(&event.payload, options),
    };
    Ok(Some(Record {
        id: meta.id.to_string(),
        received_ms: Some(meta.received_ms),
        received_at: Some(rfc3339_ms(meta.received_ms)),
        integration: meta.integration.as_str().to_owned(),
        platform: meta.platform.as_str().to_owned(),
        event: meta.name.clone(),
        revision: meta.revision.clone(),
        rules,
        enrichment_pending,
        replaced: Some(Replaced::of(&p)),
        payload: p.value,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_reads_each_parameter_and_refuses_anything_else() {
        assert_eq!(parse_query("").unwrap(), Query::default());
        let q =
            parse_query("since_ms=1700000000000&integration=zendesk-main&scrub_text=true").unwrap();
        assert_eq!(q.since_ms, 1_700_000_000_000);
        assert_eq!(
            q.integration.as_ref().map(|i| i.as_str()),
            Some("zendesk-main")
        );
        assert!(q.scrub_text);
        for (bad, says) in [
            ("since_ms=7d", "since_ms"),
            ("since_ms=-1", "since_ms"),
            ("integration=Not%20An%20Id", "integration"),
            ("scrub_text=yes", "scrub_text"),
            ("limit=5", "unknown parameter"),
        ] {
            let e = parse_query(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    fn event(integration: &str, id: &str, email: &str) -> crate::event::Event {
        crate::event::Event {
            platform: crate::platforms::PlatformKind::Slack,
            integration: IntegrationId::parse(integration).unwrap(),
            name: "message".to_owned(),
            id: id.to_owned(),
            time: None,
            received_at_ms: 0,
            actor: None,
            actors: Vec::new(),
            objects: serde_json::Map::new(),
            changes: serde_json::Map::new(),
            payload: serde_json::json!({
                "token": "xoxb-secret-value",
                "event": {"type": "message", "text": format!("mail {email} please"), "user": "U1"}
            }),
        }
    }

    #[test]
    fn deliveries_are_written_oldest_first_pseudonymised_and_filtered() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::state::Store::open(dir.path()).unwrap();
        let n = PAGE as u64 + 3;
        for i in 0..n {
            let integration = if i % 2 == 0 { "slack-a" } else { "slack-b" };
            let rules = if i == 1 {
                vec![ENRICHMENT.to_owned()]
            } else {
                vec!["r".to_owned()]
            };
            store
                .ingest(
                    &event(integration, &i.to_string(), &format!("dana{i}@acme.com")),
                    &rules,
                    1_000 + i,
                    u64::MAX,
                )
                .unwrap();
        }
        let mut out = Vec::new();
        let summary = write(&store, &Query::default(), "state", 9, &mut out).unwrap();
        assert_eq!(summary.deliveries, n);
        assert_eq!(
            (summary.first_ms, summary.last_ms),
            (Some(1_000), Some(1_000 + n - 1))
        );
        assert_eq!(summary.enrichment_pending, 1);
        assert_eq!(summary.replaced.emails, n);
        assert_eq!(summary.replaced.credentials, n);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("dana") && !text.contains("xoxb"), "{text}");
        let reader = corpus::Reader::new(&out[..]).unwrap();
        assert_eq!(reader.header().source.as_deref(), Some("state"));
        let records: Vec<Record> = reader.map(Result::unwrap).collect();
        let times: Vec<u64> = records.iter().filter_map(|r| r.received_ms).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        assert!(records[1].enrichment_pending && records[1].rules.is_empty());
        assert_eq!(records[0].rules, vec!["r".to_owned()]);
        assert_eq!(
            records[0].payload["event"]["text"],
            serde_json::json!("mail person1@acme.com please")
        );
        let q = Query {
            since_ms: 1_100,
            integration: Some(IntegrationId::parse("slack-b").unwrap()),
            scrub_text: true,
        };
        let mut out = Vec::new();
        let summary = write(&store, &q, "daemon", 9, &mut out).unwrap();
        let records: Vec<Record> = corpus::Reader::new(&out[..])
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(records.len() as u64, summary.deliveries);
        assert_eq!(summary.deliveries, (1_000 + n - 1_100) / 2);
        assert!(records.iter().all(|r| r.integration == "slack-b"
            && r.received_ms >= Some(1_100)
            && r.payload["event"]["text"]
                == serde_json::json!(crate::event::pseudonym::TEXT_REMOVED)));
    }

    #[test]
    fn the_header_says_what_was_asked() {
        let q = Query {
            since_ms: 5,
            integration: Some(IntegrationId::parse("fd").unwrap()),
            scrub_text: true,
        };
        let h = header(&q, "state", 1_000);
        assert_eq!(h.source.as_deref(), Some("state"));
        assert_eq!(h.since_ms, Some(5));
        assert_eq!(h.integration.as_deref(), Some("fd"));
        assert!(h.scrub_text);
        assert_eq!(h.exported_at.as_deref(), Some("1970-01-01T00:00:01Z"));
    }
}
