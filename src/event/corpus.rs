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
//! the daemon's enrichment step added under `supportopsd_enriched` (as rule test fixtures carry
//! it). Blank lines are skipped. A file is read line by line ([`Reader`]), so a corpus of any
//! size replays in bounded memory.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `format` of a corpus header.
pub const FORMAT: &str = "supportopsd-events";
/// The version written; a reader accepts every minor version of its major.
pub const FORMAT_VERSION: &str = "1.0";
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
    /// The rules that revision matched (what the daemon did with it).
    #[serde(default)]
    pub rules: Vec<String>,
    /// The delivery's body, pseudonymised, with enrichment under `supportopsd_enriched`.
    pub payload: Value,
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

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Record, CorpusError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            self.line += 1;
            match self.input.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) if self.buf.trim().is_empty() => {}
                Ok(_) => {
                    return Some(serde_json::from_str(self.buf.trim()).map_err(|e| {
                        CorpusError::Record {
                            line: self.line,
                            message: e.to_string(),
                        }
                    }));
                }
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
            payload: json!({"freshdesk_webhook": {"ticket_id": 1}}),
        }
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
