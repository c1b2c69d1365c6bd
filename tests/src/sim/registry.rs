//! [`SimRegistry`]: what a simulated node's registry driver and the simulated etcd look like
//! together: `(OpId, Request)` in, [`Response`]s out, exactly the contract of
//! `flt_driver::etcd::RegistryDriver`, in virtual time and with seeded faults.
//!
//! - Get, Put and Delete travel over a lossy [`SimNetwork`] to a [`SimEtcd`] and their answers
//!   travel back. Each is answered exactly once: with etcd's answer, or, if the request or the
//!   answer was lost, with [`Failure::Timeout`] after `request_timeout` (the write may then have
//!   been applied, as with the real driver). A cut-off client gets [`Failure::Unreachable`] after
//!   `unreachable_after`, without reaching etcd.
//! - A Watch is answered by any number of `Ok(Reply::Event)` responses and at most one final
//!   failure, over a separate stream network (in order, like the driver's long-poll stream; its
//!   faults may delay or duplicate events). [`SimRegistry::cancel_watch`] stops it locally:
//!   nothing more arrives for it, as with the real driver.
//! - [`SimRegistry::cut_off`] / [`SimRegistry::reconnect`] model a partition between one node
//!   and etcd (watches resume from where they were, or end with `HistoryLost`).

use super::etcd::{ClientId, SimEtcd, WatchId};
use super::network::{NetworkFaults, NetworkStats, SimNetwork};
use flt_core::registry::{Failure, OpId, Reply, Request, Response};
use flt_core::time::Instant;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Timing and faults of a [`SimRegistry`].
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryFaults {
    /// Requests and their answers (`drop_rate` loses either). Never duplicated: the real driver
    /// does not resend a request that may have been applied.
    pub calls: NetworkFaults,
    /// Watch events: delayed or duplicated, never lost or reordered (a lost event would be a gap
    /// the real driver cannot produce).
    pub streams: NetworkFaults,
    /// The driver's per-request timeout (`etcd_request_timeout`).
    pub request_timeout: Duration,
    /// How long a cut-off client takes to learn that no endpoint answers.
    pub unreachable_after: Duration,
}

impl Default for RegistryFaults {
    fn default() -> Self {
        RegistryFaults {
            calls: NetworkFaults::default(),
            streams: NetworkFaults::default(),
            request_timeout: Duration::from_secs(1),
            unreachable_after: Duration::from_millis(100),
        }
    }
}

/// Who is at either end of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    Node(ClientId),
    Etcd,
}

#[derive(Clone, Debug)]
enum Message {
    Request(OpId, Request),
    Response(Response),
}

/// The call and stream networks' faults, with what the real driver guarantees imposed.
fn networks(faults: &RegistryFaults) -> (NetworkFaults, NetworkFaults) {
    let calls = NetworkFaults {
        duplicate_rate: 0.0,
        ..faults.calls.clone()
    };
    let streams = NetworkFaults {
        drop_rate: 0.0,
        fifo: true,
        ..faults.streams.clone()
    };
    (calls, streams)
}

/// Simulated etcd plus the registry drivers of every node. See the module docs.
#[derive(Debug)]
pub struct SimRegistry {
    etcd: SimEtcd,
    faults: RegistryFaults,
    calls: SimNetwork<Endpoint, Message>,
    streams: SimNetwork<Endpoint, Message>,
    /// Calls not yet answered, with the time the driver gives up.
    pending: BTreeMap<(ClientId, OpId), Instant>,
    /// Answers produced locally (timeouts, unreachable), by due time.
    local: BTreeMap<(Instant, u64), (ClientId, Response)>,
    local_seq: u64,
    watches: BTreeMap<(ClientId, OpId), WatchId>,
    watch_owners: BTreeMap<WatchId, (ClientId, OpId)>,
    /// Watches cancelled by their node: what is still in flight for them is dropped.
    cancelled: BTreeSet<(ClientId, OpId)>,
    now: Instant,
}

impl SimRegistry {
    /// `etcd` served to every node with these faults; `seed` drives the networks.
    pub fn new(etcd: SimEtcd, faults: RegistryFaults, seed: u64) -> SimRegistry {
        let (calls, streams) = networks(&faults);
        SimRegistry {
            etcd,
            calls: SimNetwork::new(seed, calls),
            streams: SimNetwork::new(seed ^ 0x5743_a11e, streams),
            faults,
            pending: BTreeMap::new(),
            local: BTreeMap::new(),
            local_seq: 0,
            watches: BTreeMap::new(),
            watch_owners: BTreeMap::new(),
            cancelled: BTreeSet::new(),
            now: Instant::ZERO,
        }
    }

    /// The simulated etcd, for invariant checks.
    pub fn etcd(&self) -> &SimEtcd {
        &self.etcd
    }

    /// The simulated etcd, to change it behind the nodes' backs (e.g. an operator's write).
    pub fn etcd_mut(&mut self) -> &mut SimEtcd {
        &mut self.etcd
    }

    /// Carries out `request` on etcd directly (an operator, or a client the simulation does not
    /// model as a node), handing its watch events to the nodes.
    pub fn apply_direct(&mut self, request: &Request, now: Instant) -> Result<Reply, Failure> {
        self.advance(now);
        let result = self.etcd.apply(request, now);
        self.pump_watches(now);
        result
    }

    /// Changes the faults from now on (e.g. heal for the convergence phase).
    pub fn set_faults(&mut self, faults: RegistryFaults) {
        let (calls, streams) = networks(&faults);
        self.calls.set_faults(calls);
        self.streams.set_faults(streams);
        self.faults = faults;
    }

    /// Message counts of the call and stream networks.
    pub fn stats(&self) -> (NetworkStats, NetworkStats) {
        (self.calls.stats(), self.streams.stats())
    }

    fn answer_locally(&mut self, client: ClientId, response: Response, at: Instant) {
        self.local_seq += 1;
        self.local.insert((at, self.local_seq), (client, response));
    }

    /// Node `client`'s driver receives `request` with `id` at `now`.
    pub fn submit(&mut self, client: ClientId, id: OpId, request: Request, now: Instant) {
        self.advance(now);
        if matches!(request, Request::Watch { .. }) {
            // A watch of a cut-off client waits for the partition to end (the driver retries).
            self.cancelled.remove(&(client, id));
            self.streams.send(
                Endpoint::Node(client),
                Endpoint::Etcd,
                Message::Request(id, request),
                now,
            );
            return;
        }
        if !self.etcd.is_reachable(client) {
            let result = self.etcd.call(client, &request, now);
            let at = now + self.faults.unreachable_after;
            self.answer_locally(client, Response { id, result }, at);
            return;
        }
        self.pending
            .insert((client, id), now + self.faults.request_timeout);
        self.calls.send(
            Endpoint::Node(client),
            Endpoint::Etcd,
            Message::Request(id, request),
            now,
        );
    }

    /// Stops the watch node `client` started with `id`. False if there was none.
    pub fn cancel_watch(&mut self, client: ClientId, id: OpId) -> bool {
        self.cancelled.insert((client, id));
        match self.watches.remove(&(client, id)) {
            Some(watch) => {
                self.watch_owners.remove(&watch);
                self.etcd.cancel_watch(watch);
                true
            }
            None => false,
        }
    }

    /// Cuts node `client` off from etcd.
    pub fn cut_off(&mut self, client: ClientId, now: Instant) {
        self.advance(now);
        self.etcd.set_reachable(client, false, now);
    }

    /// Ends node `client`'s partition.
    pub fn reconnect(&mut self, client: ClientId, now: Instant) {
        self.advance(now);
        self.etcd.set_reachable(client, true, now);
        self.pump_watches(now);
    }

    /// When something happens next on its own (a delivery, a TTL expiry, a driver timeout).
    pub fn next_timeout(&self) -> Option<Instant> {
        [
            self.calls.next_delivery(),
            self.streams.next_delivery(),
            self.etcd.next_expiry(),
            self.pending.values().min().copied(),
            self.local.keys().next().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Expires TTLs and hands out watch events due by `now`.
    pub fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        self.etcd.advance(self.now);
        self.pump_watches(self.now);
    }

    fn pump_watches(&mut self, now: Instant) {
        while let Some((watch, item)) = self.etcd.poll_any_watch() {
            let Some(&(client, id)) = self.watch_owners.get(&watch) else {
                continue;
            };
            if item.is_err() {
                self.watch_owners.remove(&watch);
                self.watches.remove(&(client, id));
            }
            let response = Response {
                id,
                result: item.map(Reply::Event),
            };
            self.streams.send(
                Endpoint::Etcd,
                Endpoint::Node(client),
                Message::Response(response),
                now,
            );
        }
    }

    /// Carries out a request that reached etcd.
    fn serve(&mut self, client: ClientId, id: OpId, request: Request, now: Instant) {
        if let Request::Watch { prefix, from_index } = &request {
            if self.cancelled.contains(&(client, id)) {
                return;
            }
            let watch = self.etcd.open_watch_for(client, prefix, *from_index, now);
            if let Some(old) = self.watches.insert((client, id), watch) {
                // A second watch with the same id replaces the first, as in the driver.
                self.watch_owners.remove(&old);
                self.etcd.cancel_watch(old);
            }
            self.watch_owners.insert(watch, (client, id));
            self.pump_watches(now);
            return;
        }
        let result = self.etcd.call(client, &request, now);
        self.pump_watches(now);
        self.calls.send(
            Endpoint::Etcd,
            Endpoint::Node(client),
            Message::Response(Response { id, result }),
            now,
        );
    }

    /// The next response for any node that is due by `now`, in time order; requests reaching
    /// etcd meanwhile are carried out on the way.
    pub fn poll_response(&mut self, now: Instant) -> Option<(ClientId, Response)> {
        self.advance(now);
        loop {
            // The earliest of: a call message, a stream message, a local answer, a give-up.
            let candidates = [
                self.calls.next_delivery().map(|at| (at, 0)),
                self.streams.next_delivery().map(|at| (at, 1)),
                self.local.keys().next().map(|(at, _)| (*at, 2)),
                self.pending.values().min().map(|at| (*at, 3)),
            ];
            let (at, source) = candidates.into_iter().flatten().min()?;
            if at > self.now {
                return None;
            }
            self.etcd.advance(at);
            match source {
                0 | 1 => {
                    let network = if source == 0 {
                        &mut self.calls
                    } else {
                        &mut self.streams
                    };
                    let Some(envelope) = network.poll_delivery(at) else {
                        continue;
                    };
                    match (envelope.from, envelope.to, envelope.message) {
                        (Endpoint::Node(client), Endpoint::Etcd, Message::Request(id, r)) => {
                            self.serve(client, id, r, at);
                        }
                        (_, Endpoint::Node(client), Message::Response(response)) => {
                            let key = (client, response.id);
                            if source == 0 && self.pending.remove(&key).is_none() {
                                continue; // the driver gave up on it already
                            }
                            if source == 1 && self.cancelled.contains(&key) {
                                continue;
                            }
                            return Some((client, response));
                        }
                        _ => {}
                    }
                }
                2 => {
                    let (_, answer) = self.local.pop_first()?;
                    return Some(answer);
                }
                _ => {
                    let (&key, _) = self.pending.iter().min_by_key(|(_, at)| **at)?;
                    self.pending.remove(&key);
                    let response = Response {
                        id: key.1,
                        result: Err(Failure::Timeout),
                    };
                    return Some((key.0, response));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
