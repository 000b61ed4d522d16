//! The per-integration gate every outgoing request passes: a concurrency cap, a token bucket for
//! the platform's requests-per-minute limit (or the integration's `[limits]`), and a pause when
//! the platform answers 429 with `Retry-After`. Time is tokio's, so tests control it.
//!
//! A pause is never waited out inside the gate: [`Gate::pass`] answers [`Paused`] at once (or as
//! soon as a pause starts while it waits for a token), so that the caller puts its job back
//! rather than holding a worker for the length of someone else's `Retry-After`. A pause is at
//! most [`MAX_RETRY_AFTER`], and no clock arithmetic here can overflow.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::manifest::Limits;
use crate::platforms::{MAX_RETRY_AFTER, PlatformKind};

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

/// The gate is paused (the platform said `Retry-After`) for this much longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paused(pub Duration);

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

    /// Waits for a free slot and a token, then lets one request go; [`Paused`] instead, at
    /// once, when the gate is paused (before or while waiting): the caller reschedules.
    pub async fn pass(&self) -> Result<Pass, Paused> {
        if let Some(left) = self.paused_for() {
            return Err(Paused(left));
        }
        // Invariant: the semaphore is never closed.
        let slot = match self.slots.clone().acquire_owned().await {
            Ok(slot) => slot,
            Err(_) => unreachable_closed(),
        };
        loop {
            let wait = {
                let mut b = self.bucket();
                let now = Instant::now();
                let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
                b.tokens = (b.tokens + elapsed * b.per_sec).min(b.capacity);
                b.last = now;
                match b.paused_until {
                    Some(until) if until > now => return Err(Paused(until - now)),
                    _ => {
                        b.paused_until = None;
                        if b.tokens >= 1.0 {
                            b.tokens -= 1.0;
                            return Ok(Pass { _slot: slot });
                        }
                        // At most a minute (`per_sec` is at least 1/60).
                        Duration::try_from_secs_f64((1.0 - b.tokens) / b.per_sec)
                            .unwrap_or(Duration::from_secs(60))
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// How much longer the gate is paused, if it is.
    pub fn paused_for(&self) -> Option<Duration> {
        let b = self.bucket();
        let now = Instant::now();
        b.paused_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Holds every request back for `d` (the platform said `Retry-After`), at most
    /// [`MAX_RETRY_AFTER`].
    pub fn pause_for(&self, d: Duration) {
        let now = Instant::now();
        let Some(until) = now.checked_add(d.min(MAX_RETRY_AFTER)) else {
            return;
        };
        let mut b = self.bucket();
        if b.paused_until.is_none_or(|u| u < until) {
            b.paused_until = Some(until);
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            let _p = gate.pass().await.unwrap();
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
    async fn retry_after_pauses_everyone_without_holding_them() {
        let gate = Gate::new(6000, 10);
        let _ = gate.pass().await.unwrap();
        gate.pause_for(Duration::from_secs(30));
        // Answered at once: nobody waits inside the gate.
        let start = Instant::now();
        assert_eq!(
            gate.pass().await.err(),
            Some(Paused(Duration::from_secs(30)))
        );
        assert_eq!(Instant::now(), start);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(gate.paused_for(), Some(Duration::from_secs(10)));
        assert_eq!(
            gate.pass().await.err(),
            Some(Paused(Duration::from_secs(10)))
        );
        // A shorter pause does not shorten a longer one.
        gate.pause_for(Duration::from_secs(1));
        assert_eq!(gate.paused_for(), Some(Duration::from_secs(10)));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(gate.paused_for(), None);
        assert!(gate.pass().await.is_ok());
    }

    /// SEC-12: a pause that starts while a request waits for a token sends it back too.
    #[tokio::test(start_paused = true)]
    async fn a_pause_starting_while_waiting_for_a_token_sends_the_request_back() {
        let gate = Gate::new(60, 10);
        let _ = gate.pass().await.unwrap();
        let g2 = gate.clone();
        let waiting = tokio::spawn(async move { g2.pass().await.map(drop) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        gate.pause_for(Duration::from_secs(300));
        let answer = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(answer, Err(Paused(d)) if d > Duration::from_secs(290)),
            "{answer:?}"
        );
    }

    /// SEC-12: an absurd `Retry-After` neither panics nor pauses for longer than the clamp.
    #[tokio::test(start_paused = true)]
    async fn huge_pauses_are_clamped_and_never_overflow() {
        let gate = Gate::new(6000, 10);
        gate.pause_for(Duration::MAX);
        gate.pause_for(Duration::from_secs(u64::MAX));
        assert_eq!(gate.paused_for(), Some(MAX_RETRY_AFTER));
        tokio::time::sleep(MAX_RETRY_AFTER).await;
        assert!(gate.pass().await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_capped() {
        let gate = Gate::new(60_000, 2);
        let a = gate.pass().await.unwrap();
        let _b = gate.pass().await.unwrap();
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
