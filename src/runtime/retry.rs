//! When to try a failed action again: exponential backoff with full jitter, capped by a schedule
//! in the spirit of Svix (the last attempts hours apart, about a day in all), and never sooner
//! than the platform's `Retry-After`.

use std::time::Duration;

/// The default schedule: the ceiling of the wait before each retry. Eight attempts in all,
/// spread over about 27 hours, so a platform outage of an afternoon loses nothing.
pub const DEFAULT_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// A retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The ceiling of the wait before retry N (1-based); its length is the number of retries.
    pub schedule: Vec<Duration>,
}

/// Why a schedule string is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry schedule `{0}`: give durations like `5s,5m,30m,2h` (s, m, h, d)")]
pub struct ScheduleError(pub String);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            schedule: DEFAULT_SCHEDULE.to_vec(),
        }
    }
}

impl RetryPolicy {
    /// Attempts in all (the first try plus one per schedule entry).
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.schedule.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1)
    }

    /// The wait before the next attempt, after `attempts` attempts have failed; `None` when the
    /// schedule is exhausted (dead-letter). `jitter` is uniform in `[0, 1)`: full jitter picks
    /// the wait uniformly below the schedule's ceiling. A `Retry-After` from the platform is a
    /// floor.
    pub fn next_delay(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
        let ceiling = *self.schedule.get(index)?;
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let wait = ceiling.mul_f64(jitter);
        Some(match retry_after {
            Some(floor) if floor > wait => floor,
            _ => wait,
        })
    }

    /// Parses `5s,5m,30m,2h`.
    pub fn parse(text: &str) -> Result<RetryPolicy, ScheduleError> {
        let err = || ScheduleError(text.to_owned());
        let schedule = text
            .split(',')
            .map(|part| parse_duration(part.trim()).ok_or_else(err))
            .collect::<Result<Vec<_>, _>>()?;
        if schedule.is_empty() {
            return Err(err());
        }
        Ok(RetryPolicy { schedule })
    }
}

/// Parses `90s`, `5m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// A uniform random number in `[0, 1)` from the operating system (no PRNG state to share).
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    // 53 random bits → [0, 1).
    #[allow(clippy::cast_precision_loss)]
    let unit = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_stays_under_the_ceiling_and_gives_up_at_the_end() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 8);
        assert_eq!(p.next_delay(0, None, 0.5), None);
        assert_eq!(p.next_delay(1, None, 0.0), Some(Duration::ZERO));
        assert_eq!(
            p.next_delay(1, None, 0.5),
            Some(Duration::from_millis(2500))
        );
        assert!(p.next_delay(7, None, 0.999).unwrap() < Duration::from_secs(10 * 3600));
        assert_eq!(p.next_delay(8, None, 0.5), None);
        let total: Duration = p.schedule.iter().sum();
        assert!(
            total > Duration::from_secs(24 * 3600),
            "hours, not seconds: {total:?}"
        );
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(30)), 0.1),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            p.next_delay(3, Some(Duration::from_secs(1)), 0.5),
            Some(Duration::from_secs(15 * 60))
        );
        // Even past the schedule's end a Retry-After does not keep a job alive.
        assert_eq!(p.next_delay(8, Some(Duration::from_secs(1)), 0.5), None);
    }

    #[test]
    fn schedules_parse() {
        let p = RetryPolicy::parse("1s, 2m,3h,1d").unwrap();
        assert_eq!(
            p.schedule,
            vec![
                Duration::from_secs(1),
                Duration::from_secs(120),
                Duration::from_secs(3 * 3600),
                Duration::from_secs(86_400)
            ]
        );
        assert!(RetryPolicy::parse("").is_err());
        assert!(RetryPolicy::parse("5x").is_err());
        assert!(RetryPolicy::parse("5s,,").is_err());
        assert_eq!(parse_duration("42"), Some(Duration::from_secs(42)));
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
