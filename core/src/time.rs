//! Time as the core sees it: a monotonic instant chosen by the driver, passed into every call.

use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point on the driver's monotonic clock, measured from an epoch the driver picks (usually its
/// own start). The core only compares and offsets instants; it never asks what time it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(Duration);

impl Instant {
    /// The driver's epoch.
    pub const ZERO: Instant = Instant(Duration::ZERO);

    /// The instant `since_epoch` after the driver's epoch.
    pub const fn from_epoch(since_epoch: Duration) -> Instant {
        Instant(since_epoch)
    }

    /// How long after the driver's epoch this instant is.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(rhs))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        self.0 = self.0.saturating_add(rhs);
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating: an earlier minus a later instant is zero.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let a = Instant::from_epoch(Duration::from_secs(5));
        let b = a + Duration::from_millis(1500);
        assert_eq!(b - a, Duration::from_millis(1500));
        assert_eq!(a - b, Duration::ZERO);
        assert!(b > a);
        assert_eq!(Instant::ZERO.since_epoch(), Duration::ZERO);
    }
}
