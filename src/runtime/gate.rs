//! The per-integration gate every outgoing request passes: a concurrency cap, a token bucket for
//! the platform's requests-per-minute limit (or the integration's `[limits]`), and a pause when
//! the platform answers 429 with `Retry-After`. Time is tokio's, so tests control it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::manifest::Limits;
use crate::platforms::PlatformKind;

/// Published (or conservative) request budgets per platform, per minute, used when the
/// integration's `[limits]` says nothing.
pub fn default_requests_per_minute(kind: PlatformKind) -> u32 {
    match kind {
        // Web API tier 3 (most write methods) allows 50+/min; chat.postMessage about 1/s per
        // channel.
        PlatformKind::Slack => 50,
        // The smallest paid plan (Growth) allows 200/min per account, shared with every other
        // client of the account: take half.
        PlatformKind::Freshdesk => 100,
        // Team plans allow 200/min per account; take half.
        PlatformKind::Zendesk => 100,
        // 100 requests per 10 s per token.
        PlatformKind::Trello => 600,
        // An average of 3 requests per second.
        PlatformKind::Notion => 180,
        // 60 write requests per minute per user.
        PlatformKind::GoogleSheets => 60,
        // No requests at all: the built-in platform has no actions.
        PlatformKind::Supportopsd => 60,
    }
}

/// Requests in flight at once per integration when `[limits]` says nothing.
pub const DEFAULT_CONCURRENCY: u32 = 4;

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

/// One integration's gate.
#[derive(Debug, Clone)]
pub struct Gate {
    slots: Arc<Semaphore>,
    bucket: Arc<Mutex<Bucket>>,
}

/// Held while a request is in flight.
#[derive(Debug)]
pub struct Pass {
    _slot: OwnedSemaphorePermit,
}

impl Gate {
    /// A gate allowing `per_minute` requests a minute (bursts of at most a second's worth) and
    /// `concurrency` at once.
    pub fn new(per_minute: u32, concurrency: u32) -> Gate {
        let per_sec = f64::from(per_minute.max(1)) / 60.0;
        let capacity = per_sec.max(1.0);
        Gate {
            slots: Arc::new(Semaphore::new(
                usize::try_from(concurrency.max(1)).unwrap_or(1),
            )),
            bucket: Arc::new(Mutex::new(Bucket {
                capacity,
                tokens: capacity,
                per_sec,
                last: Instant::now(),
                paused_until: None,
            })),
        }
    }

    /// The gate for an integration: its `[limits]`, else the platform's defaults.
    pub fn for_integration(kind: PlatformKind, limits: &Limits) -> Gate {
        Gate::new(
            limits
                .requests_per_minute
                .unwrap_or_else(|| default_requests_per_minute(kind)),
            limits.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
        )
    }

    /// Waits for a free slot and a token (and the end of any pause), then lets one request go.
    pub async fn pass(&self) -> Pass {
        // Invariant: the semaphore is never closed.
        let slot = match self.slots.clone().acquire_owned().await {
            Ok(slot) => slot,
            Err(_) => unreachable_closed(),
        };
        loop {
            let wait = {
                let mut b = self
                    .bucket
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
                b.tokens = (b.tokens + elapsed * b.per_sec).min(b.capacity);
                b.last = now;
                match b.paused_until {
                    Some(until) if until > now => until - now,
                    _ => {
                        b.paused_until = None;
                        if b.tokens >= 1.0 {
                            b.tokens -= 1.0;
                            return Pass { _slot: slot };
                        }
                        Duration::from_secs_f64((1.0 - b.tokens) / b.per_sec)
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds every request back for `d` (the platform said `Retry-After`).
    pub fn pause_for(&self, d: Duration) {
        let mut b = self
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = Instant::now() + d;
        if b.paused_until.is_none_or(|u| u < until) {
            b.paused_until = Some(until);
        }
    }
}

#[cold]
fn unreachable_closed() -> ! {
    // The gate owns its semaphore and never closes it.
    #[allow(clippy::panic)]
    {
        panic!("gate semaphore closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_per_minute() {
        let gate = Gate::new(120, 100);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..300 {
            let _p = gate.pass().await;
            times.push(Instant::now() - start);
        }
        // In every window of 60 s, at most 120 + the burst of 2.
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(60))
                .count();
            assert!(
                in_window <= 122,
                "{in_window} requests in a minute from {t:?}"
            );
        }
        // And it is not slower than it needs to be: 300 requests at 2/s take about 149 s.
        let total = *times.last().unwrap();
        assert!(total <= Duration::from_secs(150), "{total:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_everyone() {
        let gate = Gate::new(6000, 10);
        let _ = gate.pass().await;
        gate.pause_for(Duration::from_secs(30));
        let start = Instant::now();
        let _ = gate.pass().await;
        assert!(Instant::now() - start >= Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_capped() {
        let gate = Gate::new(60_000, 2);
        let a = gate.pass().await;
        let _b = gate.pass().await;
        let g2 = gate.clone();
        let third = tokio::spawn(async move { g2.pass().await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!third.is_finished());
        drop(a);
        let _c = tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .unwrap()
            .unwrap();
    }
}
