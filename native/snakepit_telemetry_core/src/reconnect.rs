//! When a stream task tries again after a failed connection or a lost stream:
//! exponential backoff, bounded, with jitter, and the uptime after which a
//! stream counts as healthy (resetting the backoff). Pure: the caller passes
//! the randomness and does the sleeping.

use std::time::Duration;

/// `GrpcStream`'s `:backoff_initial_ms` / `:backoff_max_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait before the next attempt after `failures` failures in a row:
    /// `initial * 2^failures` capped at `max` (and at least 1 ms), plus up to
    /// a quarter of that as jitter taken from `entropy` (any number: workers
    /// that failed together do not retry together).
    pub fn delay(&self, failures: u32, entropy: u64) -> Duration {
        let base = millis(self.initial);
        let exp = base.saturating_mul(1u64 << failures.min(16));
        let capped = exp.min(millis(self.max)).max(1);
        Duration::from_millis(capped.saturating_add(entropy % (capped / 4 + 1)))
    }

    /// How long a stream must stay open to count as healthy (the failures
    /// start again from 0): the longest backoff, at least a second. A stream
    /// that ends sooner (a peer that accepts and hangs up) counts as a
    /// failure, so a flapping peer costs one connect per backoff step.
    pub fn healthy_after(&self) -> Duration {
        self.max.max(Duration::from_secs(1))
    }

    /// The failure count after a stream that was open for `uptime`.
    pub fn after_stream(&self, failures: u32, uptime: Duration) -> u32 {
        if uptime >= self.healthy_after() {
            0
        } else {
            failures.saturating_add(1)
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(5_000),
    };

    #[test]
    fn doubles_from_initial_up_to_max() {
        let waits: Vec<u128> = (0..8).map(|f| B.delay(f, 0).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000]);
        assert_eq!(B.delay(u32::MAX, 0), Duration::from_millis(5_000));
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        for entropy in [1, 7, 1_000, u64::MAX] {
            let d = B.delay(2, entropy).as_millis();
            assert!((400..=500).contains(&d), "{d}");
        }
        assert_ne!(B.delay(2, 1), B.delay(2, 2));
    }

    #[test]
    fn never_zero_never_overflows() {
        let zero = Backoff {
            initial: Duration::ZERO,
            max: Duration::ZERO,
        };
        assert_eq!(zero.delay(0, 0), Duration::from_millis(1));
        let huge = Backoff {
            initial: Duration::MAX,
            max: Duration::MAX,
        };
        assert!(huge.delay(16, u64::MAX) > Duration::from_secs(1 << 40));
    }

    #[test]
    fn only_a_stream_that_stayed_up_resets_the_failures() {
        assert_eq!(B.healthy_after(), Duration::from_secs(5));
        assert_eq!(B.after_stream(3, Duration::from_secs(5)), 0);
        assert_eq!(B.after_stream(3, Duration::from_millis(10)), 4);
        let quick = Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(10),
        };
        assert_eq!(quick.healthy_after(), Duration::from_secs(1));
        assert_eq!(quick.after_stream(u32::MAX, Duration::ZERO), u32::MAX);
    }
}
