//! [`SimNetwork`]: messages between simulated parties (nodes, the simulated etcd), each delivered
//! after a seeded random delay, perhaps lost or duplicated, in virtual time.
//!
//! The simulator routes what would cross a socket through it: registry requests and their
//! responses, watch events. A lost response then looks to the core exactly like a real one
//! (no answer: its own timeout fires); a duplicated watch event arrives twice. With
//! [`NetworkFaults::fifo`] a link keeps its order (one TCP connection, as the driver's watch
//! stream); without it, messages may overtake each other.

use flt_core::rng::SplitMix64;
use flt_core::time::Instant;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How badly the network behaves. Rates are probabilities in `0.0..=1.0`.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkFaults {
    /// Shortest delivery delay.
    pub min_delay: Duration,
    /// Longest delivery delay (drawn uniformly between the two).
    pub max_delay: Duration,
    /// Chance that a message is lost.
    pub drop_rate: f64,
    /// Chance that a delivered message is delivered a second time, later.
    pub duplicate_rate: f64,
    /// Keep each (from, to) link in order.
    pub fifo: bool,
}

impl Default for NetworkFaults {
    /// A healthy LAN: 0.1–2 ms, nothing lost, in order.
    fn default() -> Self {
        NetworkFaults {
            min_delay: Duration::from_micros(100),
            max_delay: Duration::from_millis(2),
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            fifo: true,
        }
    }
}

/// A message on its way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope<A, M> {
    pub from: A,
    pub to: A,
    pub message: M,
    /// When it arrives.
    pub at: Instant,
}

/// Counts of what happened to messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
}

/// A seeded, lossy, delaying message queue between parties named by `A`.
#[derive(Clone, Debug)]
pub struct SimNetwork<A, M> {
    rng: SplitMix64,
    faults: NetworkFaults,
    /// In flight, by arrival time then sending order.
    queue: BTreeMap<(Instant, u64), Envelope<A, M>>,
    seq: u64,
    /// The latest arrival scheduled on each link (for `fifo`).
    last_arrival: BTreeMap<(A, A), Instant>,
    /// Links that lose everything (one direction each).
    cut: BTreeSet<(A, A)>,
    stats: NetworkStats,
}

impl<A: Ord + Copy, M: Clone> SimNetwork<A, M> {
    pub fn new(seed: u64, faults: NetworkFaults) -> SimNetwork<A, M> {
        SimNetwork {
            rng: SplitMix64::new(seed),
            faults,
            queue: BTreeMap::new(),
            seq: 0,
            last_arrival: BTreeMap::new(),
            cut: BTreeSet::new(),
            stats: NetworkStats::default(),
        }
    }

    pub fn faults(&self) -> &NetworkFaults {
        &self.faults
    }

    /// Changes the fault rates from now on (e.g. for the heal phase).
    pub fn set_faults(&mut self, faults: NetworkFaults) {
        self.faults = faults;
    }

    /// Cuts both directions between `a` and `b`: what is sent, or arrives, while cut is lost.
    pub fn cut(&mut self, a: A, b: A) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    /// Restores both directions between `a` and `b`.
    pub fn heal(&mut self, a: A, b: A) {
        self.cut.remove(&(a, b));
        self.cut.remove(&(b, a));
    }

    /// Restores every link.
    pub fn heal_all(&mut self) {
        self.cut.clear();
    }

    pub fn is_cut(&self, from: A, to: A) -> bool {
        self.cut.contains(&(from, to))
    }

    fn chance(&mut self, rate: f64) -> bool {
        const SCALE: u64 = 1 << 32;
        let threshold = (rate.clamp(0.0, 1.0) * SCALE as f64) as u64;
        self.rng.below(SCALE) < threshold
    }

    fn delay(&mut self) -> Duration {
        let min = self.faults.min_delay;
        let spread = self.faults.max_delay.saturating_sub(min);
        let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
        min + Duration::from_nanos(self.rng.below(nanos.saturating_add(1)))
    }

    fn schedule(&mut self, from: A, to: A, message: M, now: Instant) {
        let mut at = now + self.delay();
        if self.faults.fifo
            && let Some(last) = self.last_arrival.get(&(from, to))
        {
            at = at.max(*last);
        }
        self.last_arrival.insert((from, to), at);
        self.seq += 1;
        self.queue.insert(
            (at, self.seq),
            Envelope {
                from,
                to,
                message,
                at,
            },
        );
    }

    /// Sends `message` at `now`. It may be lost, delayed or (later) duplicated.
    pub fn send(&mut self, from: A, to: A, message: M, now: Instant) {
        self.stats.sent += 1;
        if self.is_cut(from, to) || self.chance(self.faults.drop_rate) {
            self.stats.dropped += 1;
            return;
        }
        if self.chance(self.faults.duplicate_rate) {
            self.stats.duplicated += 1;
            self.schedule(from, to, message.clone(), now);
        }
        self.schedule(from, to, message, now);
    }

    /// When the next message arrives.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|((at, _), _)| *at)
    }

    /// The next message that has arrived by `now`, in arrival order.
    pub fn poll_delivery(&mut self, now: Instant) -> Option<Envelope<A, M>> {
        loop {
            let (&(at, seq), _) = self.queue.first_key_value()?;
            if at > now {
                return None;
            }
            let envelope = self.queue.remove(&(at, seq))?;
            if self.is_cut(envelope.from, envelope.to) {
                self.stats.dropped += 1;
                continue;
            }
            self.stats.delivered += 1;
            return Some(envelope);
        }
    }

    /// How many messages are on their way.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    pub fn stats(&self) -> NetworkStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_epoch(Duration::from_millis(ms))
    }

    fn drain(net: &mut SimNetwork<u8, u32>, now: Instant) -> Vec<(u8, u32)> {
        std::iter::from_fn(|| net.poll_delivery(now))
            .map(|e| (e.to, e.message))
            .collect()
    }

    #[test]
    fn delivers_after_the_delay_and_in_order_on_a_fifo_link() {
        let faults = NetworkFaults {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(50),
            ..NetworkFaults::default()
        };
        let mut net = SimNetwork::new(1, faults);
        for i in 0..100 {
            net.send(1u8, 2u8, i, at(0));
        }
        assert_eq!(net.poll_delivery(at(0)), None, "nothing arrives instantly");
        let next = net.next_delivery().unwrap();
        assert!(next >= at(1) && next <= at(50));
        let got: Vec<u32> = drain(&mut net, at(50))
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert_eq!(net.stats().delivered, 100);
    }

    #[test]
    fn without_fifo_messages_overtake_each_other() {
        let faults = NetworkFaults {
            max_delay: Duration::from_millis(50),
            fifo: false,
            ..NetworkFaults::default()
        };
        let mut net = SimNetwork::new(2, faults);
        for i in 0..100 {
            net.send(1u8, 2u8, i, at(0));
        }
        let got: Vec<u32> = drain(&mut net, at(50))
            .into_iter()
            .map(|(_, m)| m)
            .collect();
        assert_eq!(got.len(), 100);
        assert_ne!(got, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn loss_duplication_and_cuts_follow_the_seed() {
        let faults = NetworkFaults {
            drop_rate: 0.2,
            duplicate_rate: 0.1,
            ..NetworkFaults::default()
        };
        let run = |seed| {
            let mut net = SimNetwork::new(seed, faults.clone());
            for i in 0..1000 {
                net.send(1u8, 2u8, i, at(0));
            }
            (drain(&mut net, at(10)), net.stats())
        };
        let (a, stats) = run(3);
        assert_eq!(run(3).0, a, "same seed, same outcome");
        assert_ne!(run(4).0, a);
        assert!((150..250).contains(&stats.dropped), "{stats:?}");
        assert!((50..120).contains(&stats.duplicated), "{stats:?}");
        assert_eq!(stats.delivered as usize, a.len());
        assert_eq!(stats.delivered, 1000 - stats.dropped + stats.duplicated);

        let mut net = SimNetwork::new(5, NetworkFaults::default());
        net.send(1u8, 2u8, 1, at(0));
        net.cut(2, 1);
        net.send(1, 2, 2, at(0));
        net.send(3, 2, 3, at(0));
        assert_eq!(
            drain(&mut net, at(10)),
            [(2, 3)],
            "in flight and new: both lost"
        );
        net.heal(1, 2);
        net.send(1, 2, 4, at(10));
        assert_eq!(drain(&mut net, at(20)), [(2, 4)]);
        assert_eq!(net.in_flight(), 0);
    }
}
