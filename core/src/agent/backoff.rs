//! Exponential backoff with seeded jitter, for retrying registry work after failures.

use crate::rng::SplitMix64;
use std::time::Duration;

/// Doubles from `min` up to `max` on every failure; `reset` after a success.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The delay before the next attempt (plus 0–20 % jitter, so that machines that lost etcd
    /// together do not all come back in the same instant).
    pub fn next_delay(&mut self, rng: &mut SplitMix64) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        rng.jitter(delay, 0.2)
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter_and_resets() {
        let mut rng = SplitMix64::new(1);
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let delays: Vec<Duration> = (0..6).map(|_| backoff.next_delay(&mut rng)).collect();
        for (delay, base) in delays.iter().zip([1u64, 2, 4, 8, 8, 8]) {
            let base = Duration::from_secs(base);
            assert!(
                *delay >= base && *delay <= base.mul_f64(1.2),
                "{delay:?} vs {base:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay(&mut rng) <= Duration::from_millis(1200));
    }
}
