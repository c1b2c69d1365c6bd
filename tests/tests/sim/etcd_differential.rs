//! Differential test: the same seeded random requests against `SimEtcd` and against a real etcd
//! 3.4 (through flt's real driver), comparing every reply and failure, indexes included, and
//! the event streams of several watches.
//!
//! The simulation's virtual clock follows the wall clock, so TTLs are compared to within a
//! second; TTLs are long enough (≥ 60 s) that nothing expires during the run (expiry timing is
//! covered by the unit tests, and coarsely against etcd by `expiries_match_a_real_etcd`).
//! The real watches are the driver's streamed watches (`stream=true`), which must report what a
//! sequence of long-polls would. Where etcd answers a live watcher differently from its history
//! (what a long-poll armed after the change reads), the comparison leaves the case out, each
//! for a reason that holds for flt's keyspace too:
//! - watches are opened only on prefixes whose parents are never removed: when a removed
//!   directory held no node at the prefix, etcd's history reports the removal to the prefix's
//!   watch but a live watcher hears nothing. flt never removes its watched prefixes' parents
//!   (`P`, `P/schedule`, `P/machines`, ...);
//! - events under hidden (`_`) names are left out: etcd hides them from a live watcher only.
//!   This is not the stream's doing: a long-poll sees such a change only if it happened between
//!   two polls. flt's keyspace can hold such names (a unit named `_x.service`), and no watch,
//!   streamed or not, reliably sees their changes; only re-reads do.
//!
//! The watched prefixes themselves are removed and re-created: etcd hands a stream watching a
//! removed key the removal twice (as the removed node's watcher and on the path to it), a
//! long-poll once; the driver must drop the repeat, and the test checks that such removals
//! happened.
//!
//! `FLT_SIM_SEED=<n>` replays one seed; `FLT_SIM_OPS=<n>` changes the number of requests.

use flt_core::registry::{Action, Event, Failure, Node, Precondition, PutValue, Reply, Request};
use flt_core::rng::SplitMix64;
use flt_core::time::Instant;
use flt_driver::etcd::{EtcdClient, Watch};
use flt_tests::etcd::EtcdServer;
use flt_tests::sim::etcd::SimEtcd;
use std::collections::BTreeMap;
use std::time::Duration;

const DEFAULT_OPS: usize = 5000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Chooses requests from a small key and value space, so that preconditions often hold and
/// directories, files and hidden names collide.
struct Generator {
    rng: SplitMix64,
}

impl Generator {
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.below(items.len() as u64) as usize]
    }

    fn percent(&mut self) -> u64 {
        self.rng.below(100)
    }

    fn key(&mut self) -> String {
        let mut key = format!("/d/{}", self.pick(&["a", "b", "c"]));
        if self.percent() < 75 {
            key.push('/');
            key.push_str(self.pick(&["x", "y", "_h"]));
            if self.percent() < 40 {
                key.push('/');
                key.push_str(self.pick(&["p", "q"]));
            }
        }
        key
    }

    fn value(&mut self) -> String {
        if self.percent() < 5 {
            String::new()
        } else {
            format!("v{}", self.rng.below(4))
        }
    }

    fn ttl(&mut self) -> Option<Duration> {
        (self.percent() < 30).then(|| Duration::from_secs(60 + self.rng.below(240)))
    }

    fn precondition(&mut self, current: Option<&Node>, index: u64) -> Precondition {
        match self.percent() {
            0..30 => Precondition::None,
            30..45 => Precondition::Absent,
            45..60 => Precondition::Present,
            60..80 => match (self.percent(), current) {
                (0..5, _) => Precondition::Index(0),
                (5..65, Some(node)) => Precondition::Index(node.modified_index),
                _ => Precondition::Index(index.saturating_sub(self.rng.below(20)).max(1)),
            },
            _ => match (self.percent(), current.and_then(|n| n.value.clone())) {
                (0..5, _) => Precondition::Value(String::new()),
                (5..65, Some(value)) if !value.is_empty() => Precondition::Value(value),
                _ => Precondition::Value(self.value()),
            },
        }
    }

    fn request(&mut self, sim: &mut SimEtcd, now: Instant) -> Request {
        let key = self.key();
        let current = match sim.apply(
            &Request::Get {
                key: key.clone(),
                recursive: false,
            },
            now,
        ) {
            Ok(Reply::Got { node, .. }) => Some(node),
            _ => None,
        };
        let index = sim.index();
        match self.percent() {
            // Unrelated churn, which pushes old changes out of etcd's 1000-event history.
            0..15 => Request::Put {
                key: format!("/noise/{}", self.rng.below(10)),
                value: PutValue::Value(self.value()),
                ttl: None,
                precondition: Precondition::None,
            },
            15..35 => Request::Get {
                key: match self.percent() {
                    0..5 => "/".to_string(),
                    5..15 => "/d".to_string(),
                    _ => key,
                },
                recursive: self.percent() < 50,
            },
            35..85 => {
                let value = match self.percent() {
                    0..75 => PutValue::Value(self.value()),
                    75..90 => PutValue::Directory,
                    _ => PutValue::RefreshTtl,
                };
                let ttl = match value {
                    PutValue::RefreshTtl if self.percent() >= 5 => {
                        Some(Duration::from_secs(60 + self.rng.below(240)))
                    }
                    _ => self.ttl(),
                };
                Request::Put {
                    key,
                    value,
                    ttl,
                    precondition: self.precondition(current.as_ref(), index),
                }
            }
            _ => {
                let mut precondition = self.precondition(current.as_ref(), index);
                // Create-only deletes are refused by the driver; keep a few of them.
                if precondition == Precondition::Absent && self.percent() < 80 {
                    precondition = Precondition::None;
                }
                Request::Delete {
                    key,
                    precondition,
                    recursive: self.percent() < 50,
                }
            }
        }
    }
}

/// Copies the real TTLs onto the simulated ones where they differ by at most a second (the
/// clocks are sampled at slightly different moments), so that equality compares the rest.
fn align_ttls(real: &mut Node, sim: &Node) {
    if let (Some(r), Some(s)) = (real.ttl, sim.ttl)
        && (r - s).abs() <= 1
    {
        real.ttl = sim.ttl;
    }
    for (r, s) in real.nodes.iter_mut().zip(&sim.nodes) {
        align_ttls(r, s);
    }
}

fn align_event(real: &mut Event, sim: &Event) {
    align_ttls(&mut real.node, &sim.node);
    if let (Some(r), Some(s)) = (real.prev_node.as_mut(), sim.prev_node.as_ref()) {
        align_ttls(r, s);
        // etcd describes an expired node as of its purge, which may lag the deadline by more
        // than a second on a loaded machine (a negative TTL); the simulation, as of the deadline.
        if real.action == Action::Expire && r.ttl.is_some_and(|t| t <= 0) {
            r.ttl = s.ttl;
        }
    }
}

fn align_reply(real: &mut Result<Reply, Failure>, sim: &Result<Reply, Failure>) {
    match (real, sim) {
        (Ok(Reply::Got { node: r, .. }), Ok(Reply::Got { node: s, .. }))
        | (Ok(Reply::Put { node: r }), Ok(Reply::Put { node: s })) => align_ttls(r, s),
        _ => {}
    }
}

/// A short name for what a result was, to count how much of the space a run covered.
fn outcome(request: &Request, result: &Result<Reply, Failure>) -> String {
    let verb = match request {
        Request::Get { .. } => "get",
        Request::Put {
            value: PutValue::Value(_),
            ..
        } => "put",
        Request::Put {
            value: PutValue::Directory,
            ..
        } => "put-dir",
        Request::Put { .. } => "refresh",
        Request::Delete { .. } => "delete",
        Request::Watch { .. } => "watch",
    };
    let how = match result {
        Ok(_) => "ok".to_string(),
        Err(Failure::Rejected { code, .. }) => format!("rejected-{code}"),
        Err(failure) => format!("{failure:?}")
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or("")
            .to_string(),
    };
    format!("{verb}:{how}")
}

/// A watch open on both sides.
struct WatchPair {
    prefix: String,
    real: Watch,
    sim: flt_tests::sim::etcd::WatchId,
    sim_items: Vec<Result<Event, Failure>>,
}

impl WatchPair {
    fn open(client: &EtcdClient, sim: &mut SimEtcd, prefix: &str, from: u64, now: Instant) -> Self {
        WatchPair {
            prefix: prefix.to_string(),
            real: client.watch(prefix, from),
            sim: sim.open_watch(prefix, from, now),
            sim_items: Vec::new(),
        }
    }

    fn collect_sim(&mut self, sim: &mut SimEtcd) {
        while let Some(item) = sim.poll_watch(self.sim) {
            self.sim_items.push(item);
        }
    }

    /// Compares the simulated stream with what the real watch delivered.
    fn compare(&mut self, sim: &mut SimEtcd, seed: u64) -> usize {
        self.collect_sim(sim);
        let hidden = |key: &str| {
            let rest = key.strip_prefix(self.prefix.as_str()).unwrap_or(key);
            rest.contains("/_")
        };
        for (n, expected) in self.sim_items.iter().enumerate() {
            let received = loop {
                match self.real.events().recv_timeout(Duration::from_secs(10)) {
                    Ok(Ok(event)) if hidden(&event.node.key) => continue,
                    Ok(item) => break item,
                    Err(e) => panic!(
                        "seed {seed}: watch of {} item {n}: real etcd delivered nothing ({e}); \
                         the simulation delivered {expected:?}",
                        self.prefix
                    ),
                }
            };
            let mut received = received;
            match (received.as_mut(), expected) {
                (Ok(r), Ok(s)) => align_event(r, s),
                // The real watch polled a little later, when etcd's index had moved on.
                (
                    Err(Failure::HistoryLost { index: r }),
                    Err(Failure::HistoryLost { index: s }),
                ) if *r >= *s && *r <= sim.index() => *r = *s,
                _ => {}
            }
            assert_eq!(
                &received, expected,
                "seed {seed}: watch of {} item {n} differs (left: real, right: simulated)",
                self.prefix
            );
        }
        std::thread::sleep(Duration::from_millis(100));
        while let Ok(item) = self.real.events().try_recv() {
            if let Ok(event) = &item
                && hidden(&event.node.key)
            {
                continue;
            }
            panic!(
                "seed {seed}: watch of {}: real etcd delivered more than the simulation: {item:?}",
                self.prefix
            );
        }
        self.sim_items.len()
    }
}

#[test]
fn sim_etcd_answers_like_a_real_etcd() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let seed = flt_tests::sim::swarm::seed_from_env(0x5eed_e7cd);
    let ops = env_u64("FLT_SIM_OPS").map_or(DEFAULT_OPS, |n| n as usize);
    let client = etcd.client();
    let wall = std::time::Instant::now();
    let now = || Instant::from_epoch(wall.elapsed());
    let start_index = match client.call(&Request::Get {
        key: "/".into(),
        recursive: false,
    }) {
        Ok(Reply::Got { index, .. }) => index,
        other => panic!("cannot read etcd's index: {other:?}"),
    };
    let mut sim = SimEtcd::with_index(start_index);
    let mut generator = Generator {
        rng: SplitMix64::new(seed),
    };
    let mut watches: Vec<WatchPair> = ["/d", "/d/a", "/d/b"]
        .iter()
        .map(|prefix| WatchPair::open(&client, &mut sim, prefix, start_index + 1, now()))
        .collect();
    watches.push(WatchPair::open(&client, &mut sim, "/d/c", 0, now()));
    // "From now" means from when the real watch thread first polls: let it get there.
    std::thread::sleep(Duration::from_millis(300));
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();

    for op in 0..ops {
        let request = generator.request(&mut sim, now());
        let expected = sim.apply(&request, now());
        let mut real = client.call(&request);
        align_reply(&mut real, &expected);
        assert_eq!(
            real, expected,
            "seed {seed}, op {op}: {request:?} (left: real etcd, right: simulated)"
        );
        *outcomes.entry(outcome(&request, &real)).or_default() += 1;
        for watch in &mut watches {
            watch.collect_sim(&mut sim);
        }
        // Now and then, a watch replayed from the history, sometimes from too far back.
        if op % 250 == 249 {
            let prefix = format!("/d/{}", generator.pick(&["a", "b", "c"]));
            let back = match generator.percent() {
                // Well clear of the window's edge: the real watch thread polls a little later.
                0..50 => generator.rng.below(900),
                _ => 1100 + generator.rng.below(200),
            };
            let from = sim.index().saturating_sub(back).max(start_index + 1);
            watches.push(WatchPair::open(&client, &mut sim, &prefix, from, now()));
            // Let the real watch thread make its first poll before etcd's history moves on.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut watched = 0;
    for watch in &mut watches {
        watched += watch.compare(&mut sim, seed);
    }
    let elapsed = wall.elapsed();
    eprintln!(
        "differential: seed {seed}: {ops} requests and {watched} watch items from {} watches \
         matched a real etcd in {elapsed:.1?} ({:.0} requests/s)",
        watches.len(),
        ops as f64 / elapsed.as_secs_f64()
    );
    eprintln!("outcomes: {outcomes:?}");
    // The generator must reach the interesting corners, or the comparison proves little.
    for corner in [
        "put:ok",
        "put:PreconditionFailed",
        "put:NotFound",
        "put:rejected-102",
        "put:rejected-104",
        "put:rejected-201",
        "put-dir:ok",
        "refresh:ok",
        "delete:ok",
        "delete:PreconditionFailed",
        "delete:NotFound",
        "delete:rejected-102",
        "get:ok",
        "get:NotFound",
    ] {
        assert!(
            outcomes.get(corner).is_some_and(|n| *n > 0),
            "seed {seed}: no request ended as {corner} in {ops} requests: {outcomes:?}"
        );
    }
    assert!(
        watches.iter().any(|w| w
            .sim_items
            .iter()
            .any(|i| matches!(i, Err(Failure::HistoryLost { .. })))),
        "seed {seed}: no replayed watch lost its history"
    );
    assert!(
        watches.iter().any(|w| w.sim_items.iter().any(|i| matches!(
            i,
            Ok(e) if e.node.key == w.prefix && matches!(e.action, Action::Delete)
        ))),
        "seed {seed}: no watched prefix was removed under its watch"
    );
}

/// TTL expiry, compared coarsely: keys and a directory with TTLs of one second expire on both
/// sides (etcd purges every 500 ms; the simulation is advanced past the deadline), with the same
/// watch events, the same indexes and the same content left, refreshed and updated keys kept.
#[test]
fn expiries_match_a_real_etcd() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let client = etcd.client();
    let wall = std::time::Instant::now();
    let now = || Instant::from_epoch(wall.elapsed());
    let start_index = match client.call(&Request::Get {
        key: "/".into(),
        recursive: false,
    }) {
        Ok(Reply::Got { index, .. }) => index,
        other => panic!("cannot read etcd's index: {other:?}"),
    };
    let mut sim = SimEtcd::with_index(start_index);
    let mut watch = WatchPair::open(&client, &mut sim, "/exp", start_index + 1, now());
    let secs = |n| Some(Duration::from_secs(n));
    let put = |key: &str, value: PutValue, ttl, precondition| Request::Put {
        key: key.to_string(),
        value,
        ttl,
        precondition,
    };
    let v = |s: &str| PutValue::Value(s.to_string());
    let requests = [
        put("/exp/a", v("1"), secs(1), Precondition::None),
        put("/exp/dir", PutValue::Directory, secs(1), Precondition::None),
        put("/exp/dir/child", v("c"), None, Precondition::None),
        // Its own deadline is later: the directory takes it first.
        put("/exp/dir/sub/deep", v("d"), secs(3), Precondition::None),
        put("/exp/kept", v("k"), secs(1), Precondition::None),
        put(
            "/exp/kept",
            PutValue::RefreshTtl,
            secs(60),
            Precondition::Present,
        ),
        put("/exp/updated", v("u"), secs(1), Precondition::None),
        put("/exp/updated", v("u2"), None, Precondition::Present),
    ];
    for request in &requests {
        let expected = sim.apply(request, now());
        let mut real = client.call(request);
        align_reply(&mut real, &expected);
        assert_eq!(
            real, expected,
            "{request:?} (left: real etcd, right: simulated)"
        );
    }
    // Past every deadline, on both sides.
    std::thread::sleep(Duration::from_millis(2500));
    sim.advance(now());
    let read = Request::Get {
        key: "/exp".into(),
        recursive: true,
    };
    let expected = sim.apply(&read, now());
    let mut real = client.call(&read);
    align_reply(&mut real, &expected);
    assert_eq!(
        real, expected,
        "what is left after the expiries (left: real etcd)"
    );
    let Ok(Reply::Got { node, .. }) = &expected else {
        panic!("{expected:?}");
    };
    let left: Vec<&str> = node.walk().map(|n| n.key.as_str()).collect();
    assert_eq!(left, ["/exp", "/exp/kept", "/exp/updated"]);
    // The expire events: etcd describes the removed node as of the purge, a second or less
    // after its deadline, which leaves its TTL at 0 (omitted), as the simulation reports it.
    let items = watch.compare(&mut sim, 0);
    let expired: Vec<&str> = watch
        .sim_items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .filter(|e| e.action == Action::Expire)
        .map(|e| e.node.key.as_str())
        .collect();
    assert_eq!(expired, ["/exp/a", "/exp/dir"]);
    eprintln!("expiries: {items} watch items matched a real etcd");
}
