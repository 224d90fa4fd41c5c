//! Reconnect delays: capped exponential backoff with jitter.

use std::{
    collections::hash_map::RandomState,
    hash::BuildHasher,
    time::{Duration, Instant},
};

/// Delays between a subscription's reconnect attempts.
///
/// Attempt `n` (from 0) waits a random time between half and all of
/// `min(max, initial * 2^n)`, so consecutive delays grow but never exceed `max`, and
/// subscribers cut off together do not reconnect in lockstep. The count starts over once a
/// stream delivers a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first delay (default 50 ms).
    pub initial: Duration,
    /// Ceiling of every delay (default 5 s).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_millis(50), max: Duration::from_secs(5) }
    }
}

impl Backoff {
    /// Returns the largest delay of attempt `attempt` (from 0): `min(max, initial * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Returns the delay of attempt `attempt` for a `jitter` between 0 and 1 (clamped): from
    /// half the [`ceiling`](Self::ceiling) at 0 to all of it at 1.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let jitter = if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) };
        (half + (ceiling - half).mul_f64(jitter)).min(ceiling)
    }
}

/// A backoff in progress: the attempt count of the current run of failures.
#[derive(Debug)]
pub(crate) struct BackoffState {
    policy: Backoff,
    attempt: u32,
}

impl BackoffState {
    pub(crate) fn new(policy: Backoff) -> Self {
        Self { policy, attempt: 0 }
    }

    /// Returns the delay before the next attempt and counts the attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.policy.delay(self.attempt, random_unit());
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Starts the count over after a success.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Returns a number in [0, 1) that is random enough for jitter, without a dependency on `rand`:
/// std's `RandomState` is randomly keyed per thread and advances its keys on every `new`.
fn random_unit() -> f64 {
    let bits = RandomState::new().hash_one(Instant::now()) >> 11;
    // 53 random bits scaled into [0, 1), exact in an f64.
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_double_up_to_max() {
        let backoff = Backoff::default();
        let ceilings: Vec<_> = (0..10).map(|n| backoff.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [50 * MS, 100 * MS, 200 * MS, 400 * MS, 800 * MS, 1600 * MS, 3200 * MS, 5000 * MS, 5000 * MS, 5000 * MS]
        );
        assert_eq!(backoff.ceiling(u32::MAX), 5000 * MS);
    }

    #[test]
    fn delays_stay_between_half_and_full_ceiling() {
        let backoff = Backoff::default();
        for attempt in [0, 1, 5, 7, 31, 32, 1000, u32::MAX] {
            let ceiling = backoff.ceiling(attempt);
            assert_eq!(backoff.delay(attempt, 0.0), ceiling / 2, "attempt {attempt}");
            assert_eq!(backoff.delay(attempt, 1.0), ceiling, "attempt {attempt}");
            assert_eq!(backoff.delay(attempt, -3.0), ceiling / 2);
            assert_eq!(backoff.delay(attempt, 7.0), ceiling);
            assert_eq!(backoff.delay(attempt, f64::NAN), ceiling / 2);
            let middle = backoff.delay(attempt, 0.5);
            assert!(ceiling / 2 <= middle && middle <= ceiling);
        }
    }

    #[test]
    fn state_grows_resets_and_never_exceeds_max() {
        let policy = Backoff { initial: 10 * MS, max: 100 * MS };
        let mut state = BackoffState::new(policy);
        let delays: Vec<_> = (0..50).map(|_| state.next_delay()).collect();
        for (attempt, delay) in delays.iter().enumerate() {
            let ceiling = policy.ceiling(u32::try_from(attempt).unwrap());
            assert!(ceiling / 2 <= *delay && *delay <= ceiling, "attempt {attempt}: {delay:?}");
            assert!(*delay <= policy.max);
        }
        assert!(delays[49] >= 50 * MS);
        state.reset();
        assert!(state.next_delay() <= 10 * MS);
    }

    #[test]
    fn max_below_initial_caps_everything() {
        let backoff = Backoff { initial: Duration::from_secs(10), max: Duration::from_secs(1) };
        assert_eq!(backoff.ceiling(0), Duration::from_secs(1));
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..1000 {
            let x = random_unit();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }
}
