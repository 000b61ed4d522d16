//! Refused webhook deliveries, aggregated (SEC-08): one audit record per integration, reason and
//! minute with the count, and at most one log line per integration and reason per minute,
//! instead of one of each per delivery. The metrics still count every refusal (the caller does).
//!
//! A window opens at the first refusal of its minute and closes when its minute is over (seen by
//! the next refusal or by [`Rejections::take_closed`], which the daemon calls every few
//! seconds), at shutdown, or when the audit log is read (so that a reader sees every refusal so
//! far; more refusals in the same minute then start a second window). The keys are known
//! integration ids and a fixed set of reasons, so the table stays small whatever a client sends.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;

use crate::state::{AuditKind, AuditRecord};

/// How long one window lasts: a minute.
pub const WINDOW_MS: u64 = 60_000;

/// The refusals of one (integration, reason) in the current window.
#[derive(Debug, Clone)]
struct Window {
    platform: String,
    minute: u64,
    first_ms: u64,
    last_ms: u64,
    count: u64,
}

impl Window {
    fn record(&self, integration: &str, reason: &str) -> AuditRecord {
        AuditRecord {
            at_ms: self.first_ms,
            kind: AuditKind::EventRejected {
                reason: reason.to_owned(),
            },
            resource_type: "integration".into(),
            resource_id: integration.to_owned(),
            detail: json!({
                "count": self.count,
                "platform": self.platform,
                "first_ms": self.first_ms,
                "last_ms": self.last_ms,
            }),
        }
    }
}

/// What [`Rejections::note`] asks the caller to do.
#[derive(Debug, Default)]
pub struct Noted {
    /// Whether this refusal opened its window: log it (later ones in the window are not).
    pub first: bool,
    /// Records of windows that closed (an earlier minute of the same key), to write now.
    pub closed: Vec<AuditRecord>,
}

/// Open windows by (integration, reason).
#[derive(Debug, Default)]
pub struct Rejections {
    open: Mutex<HashMap<(String, String), Window>>,
}

impl Rejections {
    /// Counts one refusal at `now_ms`.
    pub fn note(&self, platform: &str, integration: &str, reason: &str, now_ms: u64) -> Noted {
        let minute = now_ms / WINDOW_MS;
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (integration.to_owned(), reason.to_owned());
        let mut noted = Noted::default();
        match open.get_mut(&key) {
            Some(w) if w.minute == minute => {
                w.count = w.count.saturating_add(1);
                w.last_ms = w.last_ms.max(now_ms);
                return noted;
            }
            Some(w) => noted.closed.push(w.record(integration, reason)),
            None => {}
        }
        open.insert(
            key,
            Window {
                platform: platform.to_owned(),
                minute,
                first_ms: now_ms,
                last_ms: now_ms,
                count: 1,
            },
        );
        noted.first = true;
        noted
    }

    /// Closes the windows whose minute is over at `now_ms` (every window when `all`) and returns
    /// their records, each with how many refusals it counted beyond the first (for the log).
    pub fn take_closed(&self, now_ms: u64, all: bool) -> Vec<(AuditRecord, u64)> {
        let minute = now_ms / WINDOW_MS;
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut closed = Vec::new();
        open.retain(|(integration, reason), w| {
            if all || w.minute < minute {
                closed.push((w.record(integration, reason), w.count.saturating_sub(1)));
                false
            } else {
                true
            }
        });
        closed.sort_by_key(|(r, _)| r.at_ms);
        closed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn count(r: &AuditRecord) -> u64 {
        r.detail["count"].as_u64().unwrap()
    }

    #[test]
    fn one_window_per_integration_reason_and_minute() {
        let t = Rejections::default();
        let base = 10 * WINDOW_MS;
        assert!(t.note("zendesk", "zd", "bad_signature", base).first);
        for i in 1..1000 {
            let n = t.note("zendesk", "zd", "bad_signature", base + i);
            assert!(!n.first && n.closed.is_empty());
        }
        // Another reason and another integration have their own windows.
        assert!(t.note("zendesk", "zd", "stale", base + 5).first);
        assert!(t.note("zendesk", "zd2", "bad_signature", base + 5).first);
        // Nothing closes within the minute.
        assert!(t.take_closed(base + WINDOW_MS - 1, false).is_empty());
        // The next minute's refusal closes the old window and opens a new one.
        let n = t.note("zendesk", "zd", "bad_signature", base + WINDOW_MS);
        assert!(n.first);
        assert_eq!(n.closed.len(), 1);
        assert_eq!(count(&n.closed[0]), 1000);
        assert_eq!(n.closed[0].at_ms, base);
        assert_eq!(n.closed[0].detail["last_ms"], base + 999);
        assert_eq!(n.closed[0].resource_id, "zd");
        // The rest close when their minute is over; `all` closes the current one too.
        let closed = t.take_closed(base + WINDOW_MS, false);
        assert_eq!(closed.len(), 2);
        assert!(closed.iter().all(|(r, extra)| count(r) == 1 && *extra == 0));
        let closed = t.take_closed(base + WINDOW_MS, true);
        assert_eq!(closed.len(), 1);
        assert!(t.take_closed(base + 10 * WINDOW_MS, true).is_empty());
    }
}
