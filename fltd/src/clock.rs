//! The only place fltd reads the clock: core instants are durations since fltd started.

use flt_core::time::Instant;

/// fltd's monotonic clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: std::time::Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            epoch: std::time::Instant::now(),
        }
    }

    /// Now, as the core sees time.
    pub fn now(&self) -> Instant {
        Instant::from_epoch(self.epoch.elapsed())
    }

    /// The wall-clock-free deadline for `at`, for `crossbeam_channel::at`.
    pub fn deadline(&self, at: Instant) -> std::time::Instant {
        self.epoch + at.since_epoch()
    }
}
