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
