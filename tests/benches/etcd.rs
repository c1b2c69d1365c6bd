//! Round-trip latency and throughput of `flt_driver::etcd` against a local etcd 3.4.
//!
//! `cargo bench -p flt-tests --bench etcd` (set `FLT_BENCH_OPS` to change the request count).
//! Prints figures only; nothing here asserts on time.

use flt_core::registry::{Precondition, PutValue, Reply, Request};
use flt_driver::etcd::{EtcdClient, EtcdConfig};
use flt_tests::etcd::EtcdServer;
use std::time::{Duration, Instant};

struct Figures {
    name: String,
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Figures {
    fn print(mut self) {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| {
            let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
            self.latencies[i].as_secs_f64() * 1e6
        };
        let mean = self.latencies.iter().sum::<Duration>().as_secs_f64() / n as f64 * 1e6;
        println!(
            "{:<34} {:>7} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>10.0}",
            self.name,
            n,
            mean,
            pct(0.5),
            pct(0.99),
            pct(1.0),
            n as f64 / self.wall.as_secs_f64()
        );
    }
}

/// Runs `op` `ops` times on each of `threads` threads; `op(thread, i)` must succeed.
fn measure(name: &str, threads: usize, ops: usize, op: impl Fn(usize, usize) + Sync) -> Figures {
    let started = Instant::now();
    let latencies = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let op = &op;
                scope.spawn(move || {
                    (0..ops)
                        .map(|i| {
                            let t0 = Instant::now();
                            op(t, i);
                            t0.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("benchmark thread"))
            .collect()
    });
    Figures {
        name: name.to_string(),
        latencies,
        wall: started.elapsed(),
    }
}

fn get(client: &EtcdClient, key: &str) {
    let request = Request::Get {
        key: key.to_string(),
        recursive: false,
    };
    if let Err(f) = client.call(&request) {
        panic!("get {key}: {f}");
    }
}

/// A compare-and-swap on the key's last index; returns the new index.
fn cas(client: &EtcdClient, key: &str, index: u64, value: usize) -> u64 {
    let request = Request::Put {
        key: key.to_string(),
        value: PutValue::Value(value.to_string()),
        ttl: None,
        precondition: Precondition::Index(index),
    };
    match client.call(&request) {
        Ok(Reply::Put { node }) => node.modified_index,
        other => panic!("cas {key}: {other:?}"),
    }
}

fn create(client: &EtcdClient, key: &str) -> u64 {
    let request = Request::Put {
        key: key.to_string(),
        value: PutValue::Value("0".to_string()),
        ttl: None,
        precondition: Precondition::None,
    };
    match client.call(&request) {
        Ok(Reply::Put { node }) => node.modified_index,
        other => panic!("create {key}: {other:?}"),
    }
}

fn main() {
    let Some(etcd) = EtcdServer::start() else {
        println!("etcd benchmark skipped (FLT_SKIP_ETCD_TESTS=1)");
        return;
    };
    let ops: usize = std::env::var("FLT_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let quorum = etcd.client();
    let local = EtcdClient::new(EtcdConfig {
        quorum_reads: false,
        ..etcd.config()
    })
    .expect("valid config");
    for t in 0..4 {
        create(&quorum, &format!("/bench/k{t}"));
    }
    // Warm up connections and etcd.
    for _ in 0..200 {
        get(&quorum, "/bench/k0");
    }

    println!(
        "etcd {} (data dir on tmpfs), {ops} requests per thread",
        etcd.endpoint()
    );
    println!(
        "{:<34} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "operation", "n", "mean µs", "p50 µs", "p99 µs", "max µs", "req/s"
    );
    measure("get, quorum, 1 thread", 1, ops, |_, _| {
        get(&quorum, "/bench/k0")
    })
    .print();
    measure("get, local read, 1 thread", 1, ops, |_, _| {
        get(&local, "/bench/k0")
    })
    .print();
    measure("get, quorum, 4 threads", 4, ops, |t, _| {
        get(&quorum, &format!("/bench/k{t}"))
    })
    .print();
    for threads in [1, 4] {
        let indexes: Vec<std::sync::Mutex<u64>> = (0..threads)
            .map(|t| std::sync::Mutex::new(create(&quorum, &format!("/bench/k{t}"))))
            .collect();
        measure(
            &format!("CAS (prevIndex), {threads} thread(s)"),
            threads,
            ops,
            |t, i| {
                let mut index = indexes[t].lock().expect("index lock");
                *index = cas(&quorum, &format!("/bench/k{t}"), *index, i);
            },
        )
        .print();
    }
}
