//! Event corpora: recorded deliveries written to a file (`supportopsd events export`) and read
//! back (`supportopsd plan --base REV --replay CORPUS`). The format is JSON Lines, versioned by
//! its first line:
//!
//! ```text
//! {"format":"supportopsd-events","format_version":"1.0","exported_at":"…","source":"daemon",…}
//! {"id":"evt_12","integration":"freshdesk-main","platform":"freshdesk","event":"ticket_created",…,"payload":{…}}
//! …
//! ```
//!
//! The header ([`Header`]) names the format and its version: a reader accepts every `1.x`
//! (a minor version only adds fields, which it ignores) and refuses another major version with
//! a message saying which it reads. Each following line is one delivery ([`Record`]): what it
//! arrived on, the revision the daemon handled it with and the rules that revision matched,
//! and its payload, pseudonymised ([`super::pseudonym`]) before it left the state, with what
//! the daemon's enrichment step added under [`ENRICHED_KEY`] (as rule test fixtures carry it:
//! [`pseudonymise_delivery`], the one path `events fixture` and `events export` both take).
//! Blank lines are skipped. A file is read line by line ([`Reader`]), so a corpus of any size
//! replays in bounded memory; [`Summary`] is what a writer or a reader counted.
//!
//! Versions: 1.0 the fields above; 1.1 adds a record's `enrichment_pending` and `replaced`.
//! The format is documented for users in `docs/corpus.md`.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::pseudonym::{self, Options, Pseudonymised};
use crate::platforms::{EventSpec, PlatformKind};

/// The `format` of a corpus header.
pub const FORMAT: &str = "supportopsd-events";
/// The version written; a reader accepts every minor version of its major.
pub const FORMAT_VERSION: &str = "1.1";

/// The key of a payload (a corpus record's, a rule test fixture's) under which what the
/// daemon's enrichment step fetched travels: objects and fields the platform's delivery left
/// out, merged over the normalised objects when the payload is evaluated.
pub use crate::manifest::produce::ENRICHED_KEY;
/// The major version a reader accepts.
const MAJOR: &str = "1";

/// The first line of a corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written.
    pub format_version: String,
    /// When it was written, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_at: Option<String>,
    /// Where the deliveries came from: `daemon` (its API), `state` (a state directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The oldest arrival asked for, milliseconds since the Unix epoch (`--since`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// The one integration asked for (`--integration`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    /// Ticket text was replaced too (`--scrub-text`): conditions and templates reading it see
    /// the placeholder.
    #[serde(default)]
    pub scrub_text: bool,
}

impl Header {
    /// A header of the current version.
    pub fn new(source: &str) -> Self {
        Self {
            format: FORMAT.to_owned(),
            format_version: FORMAT_VERSION.to_owned(),
            exported_at: None,
            source: Some(source.to_owned()),
            since_ms: None,
            integration: None,
            scrub_text: false,
        }
    }
}

/// One recorded delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Its public id (`evt_12`), or what names it in another corpus (a test case's fixture).
    pub id: String,
    /// When it was received, milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_ms: Option<u64>,
    /// The same, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
    /// The integration it arrived on.
    pub integration: String,
    /// Its platform (`freshdesk`, …).
    pub platform: String,
    /// The event, as the platform's catalogue names it.
    pub event: String,
    /// The revision in use when it was stored (`None`: not recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The rules that revision matched (what the daemon did with it). Empty while
    /// [`Record::enrichment_pending`].
    #[serde(default)]
    pub rules: Vec<String>,
    /// (1.1) The delivery needed the enrichment step and it had not completed when it was
    /// exported (queued, retrying, or dead-lettered): the rules it will match are not known
    /// (`rules` is empty) and the payload lacks what enrichment adds. A replay should not
    /// compare its outcome.
    #[serde(default, skip_serializing_if = "is_false")]
    pub enrichment_pending: bool,
    /// (1.1) What pseudonymisation replaced in this payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Replaced>,
    /// The delivery's body, pseudonymised, with enrichment under [`ENRICHED_KEY`].
    pub payload: Value,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How many values pseudonymisation replaced ([`Pseudonymised`]'s counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    /// Distinct emails.
    #[serde(default)]
    pub emails: u64,
    /// Distinct phone numbers.
    #[serde(default)]
    pub phones: u64,
    /// Distinct name words.
    #[serde(default)]
    pub names: u64,
    /// Credential fields.
    #[serde(default)]
    pub credentials: u64,
    /// Text fields (`--scrub-text`).
    #[serde(default)]
    pub texts: u64,
}

impl Replaced {
    /// The counts of one pseudonymised payload.
    pub fn of(p: &Pseudonymised) -> Self {
        let n = |x: usize| u64::try_from(x).unwrap_or(u64::MAX);
        Self {
            emails: n(p.emails),
            phones: n(p.phones),
            names: n(p.names),
            credentials: n(p.credentials),
            texts: n(p.texts),
        }
    }

    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Replaced) {
        self.emails = self.emails.saturating_add(other.emails);
        self.phones = self.phones.saturating_add(other.phones);
        self.names = self.names.saturating_add(other.names);
        self.credentials = self.credentials.saturating_add(other.credentials);
        self.texts = self.texts.saturating_add(other.texts);
    }
}

impl std::fmt::Display for Replaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} email(s), {} phone number(s), {} name word(s), {} credential(s), {} text(s) replaced",
            self.emails, self.phones, self.names, self.credentials, self.texts
        )
    }
}

/// What a corpus holds, counted record by record ([`Summary::add`]): by the daemon as it
/// writes, by `events export` as it checks the file it wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records.
    pub deliveries: u64,
    /// The earliest `received_ms`.
    pub first_ms: Option<u64>,
    /// The latest `received_ms`.
    pub last_ms: Option<u64>,
    /// Records with [`Record::enrichment_pending`].
    pub enrichment_pending: u64,
    /// What was replaced, summed.
    pub replaced: Replaced,
}

impl Summary {
    /// Counts one record.
    pub fn add(&mut self, r: &Record) {
        self.deliveries += 1;
        if let Some(ms) = r.received_ms {
            self.first_ms = Some(self.first_ms.map_or(ms, |f| f.min(ms)));
            self.last_ms = Some(self.last_ms.map_or(ms, |l| l.max(ms)));
        }
        if r.enrichment_pending {
            self.enrichment_pending += 1;
        }
        if let Some(x) = &r.replaced {
            self.replaced.add(x);
        }
    }
}

impl std::fmt::Display for Summary {
    /// `3 deliveries, 2026-12-01T…Z .. 2026-12-06T…Z, 1 with enrichment pending; 2 email(s), …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = crate::platforms::supportopsd::events::rfc3339_ms;
        write!(f, "{} deliveries", self.deliveries)?;
        if let (Some(a), Some(b)) = (self.first_ms, self.last_ms) {
            write!(f, ", {} .. {}", at(a), at(b))?;
        }
        if self.enrichment_pending > 0 {
            write!(f, ", {} with enrichment pending", self.enrichment_pending)?;
        }
        write!(f, "; {}", self.replaced)
    }
}

/// The fields of the stored objects that the raw payload's normalisation does not give: what
/// the enrichment step fetched (whole objects, or the fields of an object that differ).
pub fn enriched(
    stored: &Map<String, Value>,
    normalized: &Map<String, Value>,
) -> Map<String, Value> {
    let mut extra = Map::new();
    for (k, v) in stored {
        match (normalized.get(k), v) {
            (Some(n), v) if n == v => {}
            (Some(Value::Object(have)), Value::Object(fields)) => {
                let diff: Map<String, Value> = fields
                    .iter()
                    .filter(|(f, fv)| have.get(*f) != Some(*fv))
                    .map(|(f, fv)| (f.clone(), fv.clone()))
                    .collect();
                if !diff.is_empty() {
                    extra.insert(k.clone(), Value::Object(diff));
                }
            }
            _ => {
                extra.insert(k.clone(), v.clone());
            }
        }
    }
    extra
}

/// A stored delivery's payload as it leaves the state (a corpus record, a rule test fixture):
/// what enrichment added to its `stored` objects ([`enriched`], against the platform's
/// normalisation of `payload`) under [`ENRICHED_KEY`], then the whole pseudonymised
/// ([`pseudonym::pseudonymise`]: one set of stand-ins for the delivery, credentials always
/// redacted). Nothing is added when there are no stored objects, the payload is not an object
/// or does not normalise as `event`.
pub fn pseudonymise_delivery(
    platform: PlatformKind,
    event: &EventSpec,
    payload: &Value,
    stored: Option<&Map<String, Value>>,
    options: Options,
) -> Pseudonymised {
    let mut payload = payload.clone();
    if let (Some(stored), Value::Object(body)) = (stored, &mut payload)
        && let Ok(n) = (platform.descriptor().normalize)(event, &Value::Object(body.clone()))
    {
        let extra = enriched(stored, &n.objects);
        if !extra.is_empty() {
            body.insert(ENRICHED_KEY.to_owned(), Value::Object(extra));
        }
    }
    pseudonym::pseudonymise(&payload, options)
}

/// Why a corpus cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// Reading the file failed.
    #[error("line {line}: {source}")]
    Io {
        /// The 1-based line.
        line: usize,
        /// The error.
        source: std::io::Error,
    },
    /// The first line is not a corpus header.
    #[error(
        "not an event corpus: the first line must be its header ({{\"format\":\"{FORMAT}\",…}}, as `supportopsd events export` writes it){0}"
    )]
    NoHeader(String),
    /// A major version this build does not read.
    #[error(
        "event corpus format {found}: this build reads format {MAJOR}.x; export the corpus again with this release"
    )]
    Version {
        /// The version the file says.
        found: String,
    },
    /// A line that is not a delivery.
    #[error("line {line}: not a recorded delivery: {message}")]
    Record {
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Reads a corpus line by line: the header first ([`Reader::new`]), then each record.
#[derive(Debug)]
pub struct Reader<R> {
    input: R,
    header: Header,
    line: usize,
    buf: String,
}

impl<R: BufRead> Reader<R> {
    /// Reads the header; an error when the input is not a corpus of a version this build reads.
    pub fn new(mut input: R) -> Result<Self, CorpusError> {
        let mut buf = String::new();
        let mut line = 0;
        loop {
            buf.clear();
            line += 1;
            let n = input
                .read_line(&mut buf)
                .map_err(|source| CorpusError::Io { line, source })?;
            if n == 0 {
                return Err(CorpusError::NoHeader(": the file is empty".to_owned()));
            }
            if !buf.trim().is_empty() {
                break;
            }
        }
        let header: Header = serde_json::from_str(buf.trim())
            .map_err(|e| CorpusError::NoHeader(format!(" (line {line}: {e})")))?;
        if header.format != FORMAT {
            return Err(CorpusError::NoHeader(format!(
                " (its format is `{}`)",
                header.format
            )));
        }
        if header.format_version.split('.').next() != Some(MAJOR) {
            return Err(CorpusError::Version {
                found: header.format_version,
            });
        }
        Ok(Self {
            input,
            header,
            line,
            buf,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }
}

impl<R: BufRead> Reader<R> {
    /// The next non-blank line, unparsed, with its 1-based number: for a reader that parses
    /// records on other threads ([`parse_record`]). `None` at the end.
    pub fn next_line(&mut self) -> Option<Result<(usize, String), CorpusError>> {
        loop {
            self.buf.clear();
            self.line += 1;
            match self.input.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) if self.buf.trim().is_empty() => {}
                Ok(_) => return Some(Ok((self.line, self.buf.trim().to_owned()))),
                Err(source) => {
                    return Some(Err(CorpusError::Io {
                        line: self.line,
                        source,
                    }));
                }
            }
        }
    }
}

/// Parses line `line` of a corpus (after its header) as a delivery.
pub fn parse_record(line: usize, text: &str) -> Result<Record, CorpusError> {
    serde_json::from_str(text.trim()).map_err(|e| CorpusError::Record {
        line,
        message: e.to_string(),
    })
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Record, CorpusError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.next_line()? {
            Ok((line, text)) => parse_record(line, &text),
            Err(e) => Err(e),
        })
    }
}

/// Writes a corpus: [`Writer::new`] writes the header, [`Writer::record`] each delivery.
#[derive(Debug)]
pub struct Writer<W> {
    out: W,
    written: u64,
}

impl<W: Write> Writer<W> {
    /// Writes the header.
    pub fn new(mut out: W, header: &Header) -> std::io::Result<Self> {
        serde_json::to_writer(&mut out, header)?;
        out.write_all(b"\n")?;
        Ok(Self { out, written: 0 })
    }

    /// Writes one delivery as one line.
    pub fn record(&mut self, record: &Record) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, record)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    /// Deliveries written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: &str) -> Record {
        Record {
            id: id.to_owned(),
            received_ms: Some(1_700_000_000_000),
            received_at: Some("2023-11-14T22:13:20.000Z".to_owned()),
            integration: "freshdesk-main".to_owned(),
            platform: "freshdesk".to_owned(),
            event: "ticket_created".to_owned(),
            revision: Some("a".repeat(40)),
            rules: vec!["urgent".to_owned()],
            enrichment_pending: false,
            replaced: Some(Replaced {
                emails: 1,
                ..Replaced::default()
            }),
            payload: json!({"freshdesk_webhook": {"ticket_id": 1}}),
        }
    }

    #[test]
    fn what_enrichment_added_is_what_normalisation_does_not_give() {
        let stored = json!({
            "ticket": {"id": 7, "subject": "Printer offline", "tags": ["printer"]},
            "requester": {"id": 1, "email": "a@example.com"},
            "comment": {"body": "it is on fire"}
        });
        let normalized = json!({
            "ticket": {"id": 7, "subject": null},
            "requester": {"id": 1, "email": "a@example.com"}
        });
        let extra = enriched(stored.as_object().unwrap(), normalized.as_object().unwrap());
        assert_eq!(
            Value::Object(extra),
            json!({
                "ticket": {"subject": "Printer offline", "tags": ["printer"]},
                "comment": {"body": "it is on fire"}
            })
        );
    }

    #[test]
    fn a_delivery_leaves_with_its_enrichment_and_one_set_of_stand_ins() {
        let platform = PlatformKind::Zendesk;
        let spec = platform.descriptor().event("ticket.created").unwrap();
        let payload = json!({
            "supportopsd_event": "ticket.created",
            "ticket": {"id": "501", "subject": "Printer offline", "status": "New"}
        });
        let normalized = (platform.descriptor().normalize)(spec, &payload).unwrap();
        let mut stored = normalized.objects.clone();
        stored.insert(
            "requester".into(),
            json!({"id": 9, "name": "Priya Raman", "email": "priya.raman@example.com"}),
        );
        let p = pseudonymise_delivery(platform, spec, &payload, Some(&stored), Options::default());
        let extra = &p.value[ENRICHED_KEY];
        assert_eq!(extra["requester"]["id"], json!(9), "{}", p.value);
        assert_eq!(extra["requester"]["email"], json!("person1@example.com"));
        assert_eq!(extra["requester"]["name"], json!("Name1 Name2"));
        assert!(extra.get("ticket").is_none(), "{extra}");
        let text = p.value.to_string();
        assert!(
            !text.contains("Priya") && !text.contains("priya.raman"),
            "{text}"
        );
        assert_eq!(Replaced::of(&p).emails, 1);
        // Without stored objects (or nothing added) the payload is only pseudonymised.
        let plain = pseudonymise_delivery(platform, spec, &payload, None, Options::default());
        assert!(plain.value.get(ENRICHED_KEY).is_none());
        let same = pseudonymise_delivery(
            platform,
            spec,
            &payload,
            Some(&normalized.objects),
            Options { scrub_text: true },
        );
        assert!(same.value.get(ENRICHED_KEY).is_none());
        assert_eq!(
            same.value["ticket"]["subject"],
            json!(pseudonym::TEXT_REMOVED)
        );
    }

    #[test]
    fn a_summary_counts_records_times_and_replacements() {
        let mut s = Summary::default();
        let mut a = record("evt_1");
        a.received_ms = Some(2_000);
        let mut b = record("evt_2");
        b.received_ms = Some(1_000);
        b.enrichment_pending = true;
        s.add(&a);
        s.add(&b);
        assert_eq!(s.deliveries, 2);
        assert_eq!((s.first_ms, s.last_ms), (Some(1_000), Some(2_000)));
        assert_eq!(s.enrichment_pending, 1);
        assert_eq!(s.replaced.emails, 2);
        let line = s.to_string();
        assert!(
            line.starts_with("2 deliveries, 1970-01-01T00:00:01"),
            "{line}"
        );
        assert!(
            line.contains("1 with enrichment pending; 2 email(s)"),
            "{line}"
        );
    }

    #[test]
    fn what_is_written_reads_back_line_by_line() {
        let mut w = Writer::new(Vec::new(), &Header::new("daemon")).unwrap();
        w.record(&record("evt_1")).unwrap();
        w.record(&record("evt_2")).unwrap();
        assert_eq!(w.written(), 2);
        let bytes = w.finish().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        let r = Reader::new(&bytes[..]).unwrap();
        assert_eq!(r.header().source.as_deref(), Some("daemon"));
        let got: Vec<Record> = r.map(Result::unwrap).collect();
        assert_eq!(got, vec![record("evt_1"), record("evt_2")]);
    }

    #[test]
    fn a_newer_minor_version_reads_and_its_new_fields_are_ignored() {
        let text = "\n{\"format\":\"supportopsd-events\",\"format_version\":\"1.7\",\"new\":1}\n\n\
            {\"id\":\"evt_1\",\"integration\":\"i\",\"platform\":\"slack\",\"event\":\"message\",\"payload\":{},\"later\":true}\n";
        let got: Vec<Record> = Reader::new(text.as_bytes())
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, "evt_1");
        assert!(got[0].rules.is_empty());
    }

    #[test]
    fn another_major_version_or_no_header_is_refused_with_what_to_do() {
        let e = Reader::new(
            "{\"format\":\"supportopsd-events\",\"format_version\":\"2.0\"}\n".as_bytes(),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("reads format 1.x"), "{e}");
        let e = Reader::new("{\"id\":\"evt_1\"}\n".as_bytes())
            .err()
            .unwrap();
        assert!(e.to_string().contains("not an event corpus"), "{e}");
        let e = Reader::new("".as_bytes()).err().unwrap();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = Reader::new("{\"format\":\"other\",\"format_version\":\"1.0\"}".as_bytes())
            .err()
            .unwrap();
        assert!(e.to_string().contains("`other`"), "{e}");
    }

    #[test]
    fn a_bad_line_says_which_and_the_rest_still_read() {
        let text = "{\"format\":\"supportopsd-events\",\"format_version\":\"1.0\"}\nnot json\n\
            {\"id\":\"evt_2\",\"integration\":\"i\",\"platform\":\"slack\",\"event\":\"message\",\"payload\":{}}\n";
        let got: Vec<_> = Reader::new(text.as_bytes()).unwrap().collect();
        assert_eq!(got.len(), 2);
        let e = got[0].as_ref().err().unwrap();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
        assert_eq!(got[1].as_ref().unwrap().id, "evt_2");
    }
}
