//! API listing latency and fltd memory: one real test host (systemd as PID 1) and a real etcd,
//! fltd started by the shipped unit files. fltd's RSS is read idle (70 s after start: the etcd
//! call workers of its start-up have ended) with an empty registry; then N units (desired state
//! `inactive`, each with its own unit file) and N unit states (spread over ten machines with a
//! presence record but no agent, so that no agent tidies them away) are written straight into
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

/// One mapping of `/proc/<pid>/smaps`: its address range, what it maps (file name, `[heap]`,
/// `[stack]` or empty for anonymous memory) and its resident, proportional and private kB.
struct Mapping {
    start: u64,
    end: u64,
    name: String,
    rss: u64,
    pss: u64,
    private: u64,
}

fn parse_smaps(smaps: &str) -> Vec<Mapping> {
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(first), Some(second)) = (fields.next(), fields.next()) else {
            continue;
        };
        if let Some((start, end)) = first.split_once('-')
            && !first.ends_with(':')
        {
            // A mapping's header: range, perms, offset, dev, inode, then the path if any.
            let path = fields.nth(3).unwrap_or("");
            let hex = |s: &str| u64::from_str_radix(s, 16).unwrap_or(0);
            mappings.push(Mapping {
                start: hex(start),
                end: hex(end),
                name: path.rsplit('/').next().unwrap_or("").to_string(),
                rss: 0,
                pss: 0,
                private: 0,
            });
            continue;
        }
        let kb: u64 = second.parse().unwrap_or(0);
        if let Some(mapping) = mappings.last_mut() {
            match first {
                "Rss:" => mapping.rss += kb,
                "Pss:" => mapping.pss += kb,
                "Private_Clean:" | "Private_Dirty:" => mapping.private += kb,
                _ => {}
            }
        }
    }
    mappings
}

/// fltd's threads inside the host: (name, stack pointer), the name `main` for the first thread;
/// the stack pointer is `None` for a thread that was running when read.
fn threads(host: &Host, pid: &str) -> Vec<(String, Option<u64>)> {
    let script = format!(
        "for t in /proc/{pid}/task/*; do echo \"${{t##*/}}|$(cat $t/comm)|$(cat $t/syscall)\"; done"
    );
    exec(host, &["sh", "-c", &script])
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '|');
            let (tid, comm, syscall) = (parts.next()?, parts.next()?, parts.next()?);
            // `nr args... sp pc` in a syscall, `-1 sp pc` blocked outside one, else `running`.
            let fields: Vec<&str> = syscall.split_whitespace().collect();
            let sp = (fields.len() >= 3)
                .then(|| fields[fields.len() - 2].trim_start_matches("0x"))
                .and_then(|sp| u64::from_str_radix(sp, 16).ok());
            let name = if tid == pid {
                "main".to_string()
            } else {
                // One row per pool: `etcd-call-3` counts as `etcd-call-*`.
                let base = comm.trim_end_matches(|c: char| c.is_ascii_digit());
                if base.len() < comm.len() {
                    format!("{base}*")
                } else {
                    comm.to_string()
                }
            };
            Some((name, sp))
        })
        .collect()
}

/// Where `pid`'s resident memory is, from `/proc/<pid>/smaps` inside the host: per mapped file
/// the resident, proportional (shared pages divided among the processes mapping them) and
/// private kB, biggest first, anonymous memory split into the heap, thread stacks (found by
/// each thread's stack pointer) and the rest; then the threads per name with their stacks.
fn print_mappings(host: &Host, pid: &str) {
    let mappings = parse_smaps(&exec(host, &["cat", &format!("/proc/{pid}/smaps")]));
    let threads = threads(host, pid);
    let stack_of = |m: &Mapping| {
        threads
            .iter()
            .find(|(_, sp)| sp.is_some_and(|sp| m.start <= sp && sp < m.end))
    };
    let mut rows: Vec<(String, u64, u64, u64)> = Vec::new();
    for m in &mappings {
        let row = match m.name.as_str() {
            "" if stack_of(m).is_some() => "[thread stacks]",
            "" => "[other anonymous]",
            "[stack]" => "[thread stacks]",
            name => name,
        };
        match rows.iter_mut().find(|(name, ..)| name == row) {
            Some(r) => (r.1, r.2, r.3) = (r.1 + m.rss, r.2 + m.pss, r.3 + m.private),
            None => rows.push((row.to_string(), m.rss, m.pss, m.private)),
        }
    }
    rows.retain(|(_, rss, ..)| *rss > 0);
    rows.sort_by_key(|(_, rss, ..)| std::cmp::Reverse(*rss));
    println!(
        "fltd's resident memory by mapping ({} threads):",
        threads.len()
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8}",
        "mapping", "Rss kB", "Pss", "Private"
    );
    for (name, rss, pss, private) in &rows {
        println!("{name:<34} {rss:>8} {pss:>8} {private:>8}");
    }
    let total = rows.iter().fold((0, 0, 0), |t, (_, rss, pss, private)| {
        (t.0 + rss, t.1 + pss, t.2 + private)
    });
    println!(
        "{:<34} {:>8} {:>8} {:>8}",
        "total", total.0, total.1, total.2
    );

    let mut by_name: Vec<(String, usize, u64)> = Vec::new();
    for (name, sp) in &threads {
        let stack = mappings
            .iter()
            .find(|m| sp.is_some_and(|sp| m.start <= sp && sp < m.end))
            .map_or(0, |m| m.rss);
        match by_name.iter_mut().find(|(n, ..)| n == name) {
            Some(row) => (row.1, row.2) = (row.1 + 1, row.2 + stack),
            None => by_name.push((name.clone(), 1, stack)),
        }
    }
    by_name.sort_by_key(|(_, n, stack)| std::cmp::Reverse((*stack, *n)));
    println!("{:<34} {:>8} {:>8}", "threads", "count", "stack kB");
    for (name, count, stack) in &by_name {
        println!("{name:<34} {count:>8} {stack:>8}");
    }
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
    // Let the startup work (first reconciles, state publishing) settle, and the etcd call
    // workers started for it end: idle is the steady state.
    let settle = flt_driver::etcd::IDLE_WORKER_LIFETIME + Duration::from_secs(10);
    println!("waiting {}s for fltd to be idle", settle.as_secs());
    std::thread::sleep(settle);
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
