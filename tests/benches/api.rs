//! API listing latency and fltd memory: one real test host (systemd as PID 1) and a real etcd,
//! fltd started by the shipped unit files. fltd's RSS is read idle with an empty registry; then
//! N units (desired state `inactive`, each with its own unit file) and N unit states (spread over
//! ten machines that do not exist, so that no agent tidies them away) are written straight into
//! etcd in fltd's key layout; once the API shows them all, full listings of `/flt/v1/units` and
//! `/flt/v1/state` through every page are timed from outside, over the API's unix socket, one
//! connection per page as fltctl does it; fltd's RSS is read again at the end.
//!
//! `cargo bench -p flt-tests --bench api` (`FLT_BENCH_UNITS=10000` sets N,
//! `FLT_BENCH_REPS=10` the listings timed per endpoint). Prints figures only; nothing here
//! asserts on time. Needs root and the tools listed in `flt_tests::testhost`.

use std::path::Path;
use std::time::{Duration, Instant};

use flt_core::registry::records::{
    JobRecord, MachineRecord, MachineRef, UnitFileRecord, UnitStateRecord,
};
use flt_core::registry::{Keyspace, Precondition, PutValue, Request};
use flt_core::unit::{UnitFile, UnitOption};
use flt_driver::etcd::{EtcdClient, EtcdConfig};
use flt_tests::fltd_host::{exec, one_host_with_fltd, unix_http};
use flt_tests::testhost::Host;

const API_TIMEOUT: Duration = Duration::from_secs(120);
/// Parallel writers while seeding etcd.
const SEED_THREADS: usize = 8;
/// The machines the seeded unit states are spread over.
const STATE_MACHINES: usize = 10;

/// One `GET` on the API socket; returns (status, body).
fn api_get(socket: &Path, target: &str) -> Result<(u16, String), String> {
    unix_http(socket, "GET", target, "", Duration::from_secs(30))
}

/// Follows `nextPageToken` from the first page of `path` to the last; returns (items, pages).
fn list_all(socket: &Path, path: &str, field: &str) -> Result<(usize, usize), String> {
    let (mut items, mut pages) = (0, 0);
    let mut target = path.to_string();
    loop {
        let (status, body) = api_get(socket, &target)?;
        if status != 200 {
            return Err(format!("GET {target}: HTTP {status}: {body}"));
        }
        pages += 1;
        let page: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("GET {target}: {e}"))?;
        items += page
            .get(field)
            .and_then(|v| v.as_array())
            .map_or(0, Vec::len);
        match page.get("nextPageToken").and_then(|v| v.as_str()) {
            Some(token) => target = format!("{path}?nextPageToken={token}"),
            None => return Ok((items, pages)),
        }
    }
}

/// (VmRSS, VmHWM) of `pid` in kB, read inside the host's PID namespace.
fn memory(host: &Host, pid: &str) -> (u64, u64) {
    let status = exec(host, &["cat", &format!("/proc/{pid}/status")]);
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Where `pid`'s resident memory is, from `/proc/<pid>/smaps` inside the host: per mapped file
/// (anonymous memory, heap and stacks as one line) the resident and the private kB, biggest first.
fn print_mappings(host: &Host, pid: &str) {
    let smaps = exec(host, &["cat", &format!("/proc/{pid}/smaps")]);
    let mut by_name: Vec<(String, u64, u64)> = Vec::new();
    let mut current = String::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(first), Some(second)) = (fields.next(), fields.next()) else {
            continue;
        };
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: range, perms, offset, dev, inode, then the path if any.
            let path = fields.nth(3).unwrap_or("");
            current = match path.rsplit('/').next() {
                Some(file) if path.starts_with('/') => file.to_string(),
                _ => "[anonymous, heap, stacks]".to_string(),
            };
            if !by_name.iter().any(|(name, _, _)| *name == current) {
                by_name.push((current.clone(), 0, 0));
            }
            continue;
        }
        let kb: u64 = second.parse().unwrap_or(0);
        if let Some(entry) = by_name.iter_mut().find(|(name, _, _)| *name == current) {
            match first {
                "Rss:" => entry.1 += kb,
                "Private_Clean:" | "Private_Dirty:" => entry.2 += kb,
                _ => {}
            }
        }
    }
    by_name.retain(|(_, rss, _)| *rss > 0);
    by_name.sort_by_key(|(_, rss, _)| std::cmp::Reverse(*rss));
    let status = exec(host, &["cat", &format!("/proc/{pid}/status")]);
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map_or("?", str::trim);
    println!("fltd's resident memory by mapping ({threads} threads):");
    println!("{:<34} {:>8} {:>8}", "mapping", "Rss kB", "Private");
    for (name, rss, private) in &by_name {
        println!("{name:<34} {rss:>8} {private:>8}");
    }
    let (rss, private) = by_name
        .iter()
        .fold((0, 0), |(r, p), (_, rss, private)| (r + rss, p + private));
    println!("{:<34} {rss:>8} {private:>8}", "total");
}

fn unit_name(i: usize) -> String {
    format!("bench-{i:05}.service")
}

/// A record as JSON (serde_json only fails on maps with non-string keys, which records lack).
macro_rules! to_json {
    ($value:expr) => {
        serde_json::to_string($value).unwrap_or_else(|e| panic!("json: {e}"))
    };
}

/// The ID of the `n`th machine the seeded unit states come from.
fn state_machine(n: usize) -> String {
    format!("{:032x}", 0xbe0c_u64 * 1_000 + n as u64)
}

/// Writes N units and N unit states into etcd as fltd's API and agents would, and the presence
/// of the machines those states come from (the API lists only the states of machines in the
/// cluster). The units are inactive: nothing is scheduled to those machines.
fn seed(client: &EtcdClient, units: usize) {
    let ks = Keyspace::default();
    let put = |key: String, value: String| {
        let request = Request::Put {
            key: key.clone(),
            value: PutValue::Value(value),
            ttl: None,
            precondition: Precondition::None,
        };
        client
            .call(&request)
            .unwrap_or_else(|e| panic!("etcd put {key}: {e}"));
    };
    let seed_one = |i: usize| {
        let name = unit_name(i);
        let file = UnitFile::from_options(vec![
            UnitOption::new("Unit", "Description", format!("bench unit {i}")),
            UnitOption::new("Service", "ExecStart", format!("/bin/sleep {}", 1000 + i)),
        ]);
        let hash = file.hash();
        let record = UnitFileRecord {
            raw: file.serialize(),
        };
        put(ks.unit(&hash), to_json!(&record));
        let job = JobRecord {
            name: name.clone(),
            unit_hash: hash.0,
        };
        put(ks.job_object(&name), to_json!(&job));
        put(ks.job_target_state(&name), "inactive".to_string());
        let machine = state_machine(i % STATE_MACHINES);
        let state = UnitStateRecord {
            load_state: "loaded".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            machine_state: MachineRef {
                id: machine.clone(),
                ..MachineRef::default()
            },
            unit_hash: hash.to_hex(),
        };
        put(ks.unit_state(&machine, &name), to_json!(&state));
    };
    for n in 0..STATE_MACHINES {
        let id = state_machine(n);
        let record = MachineRecord {
            id: id.clone(),
            public_ip: format!("192.0.2.{}", n + 1),
            ..MachineRecord::default()
        };
        put(ks.machine_object(&id), to_json!(&record));
    }
    std::thread::scope(|scope| {
        for t in 0..SEED_THREADS {
            let seed_one = &seed_one;
            scope.spawn(move || (t..units).step_by(SEED_THREADS).for_each(seed_one));
        }
    });
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let units: usize = std::env::var("FLT_BENCH_UNITS")
        .ok()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("FLT_BENCH_UNITS: {s:?}"))
        })
        .unwrap_or(10_000);
    let reps: usize = std::env::var("FLT_BENCH_REPS")
        .ok()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("FLT_BENCH_REPS: {s:?}"))
        })
        .unwrap_or(10)
        .max(1);

    let (cluster, socket) = one_host_with_fltd("bench.conf");
    let host = cluster.host(0);

    // The API answers 503 until fltd is registered and has read the registry.
    let started = Instant::now();
    loop {
        match api_get(&socket, "/flt/v1/units") {
            Ok((200, _)) => break,
            other => assert!(
                started.elapsed() < API_TIMEOUT,
                "the API never came up: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("API up after {:.1}s", started.elapsed().as_secs_f64());
    // Let the startup work (first reconciles, state publishing) settle.
    std::thread::sleep(Duration::from_secs(10));
    let pid = exec(
        host,
        &["systemctl", "show", "-p", "MainPID", "--value", "fltd"],
    );
    let (idle_rss, idle_hwm) = memory(host, &pid);
    println!("fltd idle, empty registry: VmRSS {idle_rss} kB, VmHWM {idle_hwm} kB");
    print_mappings(host, &pid);

    let client = EtcdClient::new(EtcdConfig::with_endpoints([cluster.etcd_local_endpoint()]))
        .unwrap_or_else(|e| panic!("etcd client: {e}"));
    let t = Instant::now();
    seed(&client, units);
    println!(
        "seeded {units} units and {units} unit states in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    loop {
        let units_seen = list_all(&socket, "/flt/v1/units", "units").map(|(n, _)| n);
        let states_seen = list_all(&socket, "/flt/v1/state", "states").map(|(n, _)| n);
        if units_seen == Ok(units) && states_seen == Ok(units) {
            break;
        }
        assert!(
            t.elapsed() < API_TIMEOUT,
            "the API shows {units_seen:?} units and {states_seen:?} states, not {units}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "API shows them all {:.1}s after seeding",
        t.elapsed().as_secs_f64()
    );
    let (seeded_rss, seeded_hwm) = memory(host, &pid);
    print_mappings(host, &pid);

    println!(
        "\nfull listings, {reps} repetitions each, over the unix socket, one connection per page:"
    );
    println!(
        "{:<14} {:>6} {:>6} {:>9} {:>9} {:>9}",
        "path", "items", "pages", "min ms", "p50 ms", "p99 ms"
    );
    for (path, field) in [("/flt/v1/units", "units"), ("/flt/v1/state", "states")] {
        let mut times = Vec::with_capacity(reps);
        let mut counted = (0, 0);
        for _ in 0..reps {
            let t = Instant::now();
            counted = list_all(&socket, path, field).unwrap_or_else(|e| panic!("{e}"));
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "{:<14} {:>6} {:>6} {:>9.1} {:>9.1} {:>9.1}",
            path,
            counted.0,
            counted.1,
            ms(times[0]),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
        );
    }
    let (after_rss, after_hwm) = memory(host, &pid);
    println!("\nfltd memory (kB):");
    println!("{:<34} {:>8} {:>8}", "when", "VmRSS", "VmHWM");
    println!(
        "{:<34} {:>8} {:>8}",
        "idle, empty registry", idle_rss, idle_hwm
    );
    println!(
        "{:<34} {:>8} {:>8}",
        format!("{units} units + states seeded"),
        seeded_rss,
        seeded_hwm
    );
    println!(
        "{:<34} {:>8} {:>8}",
        "after the listings", after_rss, after_hwm
    );
}
