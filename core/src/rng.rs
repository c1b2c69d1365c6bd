//! A tiny seeded random number generator (SplitMix64) for jitter. The seed comes from the
//! driver, so the core stays deterministic.

use std::time::Duration;

/// SplitMix64: fast, small, and good enough for spreading periodic actions apart.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (0 if `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    /// `base` plus a random part of up to `fraction` of it (e.g. 0.2 for +0–20 %).
    pub fn jitter(&mut self, base: Duration, fraction: f64) -> Duration {
        let max_extra = base.mul_f64(fraction.clamp(0.0, 1.0));
        let nanos = u64::try_from(max_extra.as_nanos()).unwrap_or(u64::MAX);
        base + Duration::from_nanos(self.below(nanos.saturating_add(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_jitter_in_range() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let base = Duration::from_secs(60);
        for _ in 0..1000 {
            let j = a.jitter(base, 0.2);
            assert!(j >= base && j <= base + Duration::from_secs(12), "{j:?}");
        }
        assert_eq!(a.below(0), 0);
    }
}
