//! Cluster benchmark (issue 8): real flt clusters of test hosts (real systemd as PID 1, one real
//! etcd 3.4, the release fltd from `examples/host/`) measured end to end:
//!
//! 1. latency from an API `PUT` of a launched unit to systemd having it active (one at a time);
//! 2. time to launch N units (default 1,000) until every one is active;
//! 3. etcd requests per second of the idle cluster, before any unit and with N units, and etcd
//!    requests per unit scheduled during the launch (etcd's own counters of v2 requests and
//!    watches), with what each component of fltd sent (fltd's `/metrics`);
//! 4. time from killing a host to all its units active elsewhere (a host that does not hold the
//!    engine lease, then the lease holder);
//! 5. fltd CPU and RSS per host at idle with N units.
//!
//! Times are exact, not polled: the bench takes `CLOCK_MONOTONIC` right before the PUT (or the
//! kill) and compares it with systemd's `ActiveEnterTimestampMonotonic` of the unit on its host
//! (every test host shares the machine's monotonic clock). Polling only finds out when to read.
//!
//! `cargo bench -p flt-tests --bench cluster`. Settings (environment):
//! `FLT_BENCH_QUICK=1` (100 units, 3 hosts, 20 latency samples, 15 s windows),
//! `FLT_BENCH_HOSTS=3,10`, `FLT_BENCH_UNITS=1000`, `FLT_BENCH_LATENCY_UNITS=50`,
//! `FLT_BENCH_IDLE_SECS=30`, `FLT_BENCH_IDLE_AGENT_TTL_SECS=30` (fltd's default, for every row
//! but failover), `FLT_BENCH_AGENT_TTL_SECS=3` (failover rows: every fltd is restarted with it
//! before the first kill, and adopts its units). Prints one table, the etcd requests
//! behind each rate and a journal trace of one unit's PUT-to-active; nothing here asserts on time.
//! Needs root and the tools listed in `flt_tests::testhost`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flt_core::glob::glob_match;
use flt_tests::fltcluster::{FltCluster, FltClusterConfig, wait_for, wait_for_every};
use flt_tests::fltd_host::unix_http;
use nix::time::{ClockId, clock_gettime};

/// How often the launch and failover rows count active units with `systemctl list-units` in
/// every host, once their cgroups say they run (see [`wait_all_active`]). Each count makes
/// every host's systemd list all its units: polled every 100 ms during a 3-host failover, the
/// `systemctl` processes alone took 11 % of the machine's CPU (perf), besides what their
/// systemds spent answering (and systemd sends every unit's property signals to a connected
/// `systemctl`). The figures come from `ActiveEnterTimestampMonotonic`, so polling less often
/// changes only when the wait ends.
const COUNT_POLL: Duration = Duration::from_secs(1);
/// How often the launch and failover rows list the hosts' `system.slice` cgroups (no process
/// started, nothing asked of systemd; one directory read per host).
const CGROUP_POLL: Duration = Duration::from_millis(200);
const UNIT_BODY: &str = r#"{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"/bin/sleep 1d"}]}"#;
/// Glob of the launch units (`bench-NNNN.service`); latency units are `bench-lat-NN.service`.
const LAUNCH_GLOB: &str = "bench-[0-9]*.service";
const LATENCY_GLOB: &str = "bench-lat-*.service";
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(300);
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(90);
/// Time for the launch's reconciles and state publishing to settle before an idle window.
const SETTLE: Duration = Duration::from_secs(10);
/// etcd 3.4's counters of v2 keys requests: `etcd_http_received_total{method}` counts every
/// request but watches (GET, QGET for quorum reads, PUT, DELETE), the store counts each watch.
/// (The store's read and write counters are no measure of requests: etcd counts an internal
/// read in every write, and two reads per GET.)
const ETCD_COUNTERS: [&str; 2] = [
    "etcd_http_received_total",
    "etcd_debugging_store_watch_requests_total",
];
/// The most units the bench piles on one host when killing the lease holder (a second kill).
const MAX_UNITS_PER_SURVIVOR: usize = 600;

struct Settings {
    hosts: Vec<usize>,
    units: usize,
    latency_units: usize,
    idle: Duration,
    /// fltd's agent_ttl for the failover rows (4).
    agent_ttl: Duration,
    /// fltd's agent_ttl for everything else, above all the idle rows (3, 5).
    idle_agent_ttl: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        let quick = std::env::var("FLT_BENCH_QUICK").is_ok_and(|v| v == "1");
        let number = |name: &str, default: usize| -> usize {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: not a number: {v:?}")),
                Err(_) => default,
            }
        };
        let hosts = match std::env::var("FLT_BENCH_HOSTS") {
            Ok(v) => v
                .split(',')
                .map(|s| {
                    s.trim()
                        .parse()
                        .unwrap_or_else(|_| panic!("FLT_BENCH_HOSTS: bad count {s:?}"))
                })
                .collect(),
            Err(_) if quick => vec![3],
            Err(_) => vec![3, 10],
        };
        Settings {
            hosts,
            units: number("FLT_BENCH_UNITS", if quick { 100 } else { 1000 }),
            latency_units: number("FLT_BENCH_LATENCY_UNITS", if quick { 20 } else { 50 }),
            idle: Duration::from_secs(
                number("FLT_BENCH_IDLE_SECS", if quick { 15 } else { 30 }) as u64
            ),
            agent_ttl: Duration::from_secs(number("FLT_BENCH_AGENT_TTL_SECS", 3) as u64),
            idle_agent_ttl: Duration::from_secs(number("FLT_BENCH_IDLE_AGENT_TTL_SECS", 30) as u64),
        }
    }
}

/// CLOCK_MONOTONIC in microseconds: systemd's `*TimestampMonotonic` clock.
fn monotonic_us() -> u64 {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("clock_gettime(CLOCK_MONOTONIC)");
    now.tv_sec() as u64 * 1_000_000 + now.tv_nsec() as u64 / 1_000
}

fn load_1min() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn unit_name(i: usize) -> String {
    format!("bench-{i:04}.service")
}

/// The API socket of host `index`, reached from outside through `/proc/<pid>/root/run`.
fn api_socket(flt: &FltCluster, index: usize) -> PathBuf {
    flt.host(index)
        .root()
        .unwrap_or_else(|e| panic!("h{}: {e}", index + 1))
        .join("run/flt.sock")
}

/// One HTTP/1.1 request on an API socket; returns (status, body).
fn api(socket: &Path, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    unix_http(socket, method, path, body, Duration::from_secs(10))
}

/// PUTs a launched `/bin/sleep 1d` unit; retries while the API answers 503 (engine starting).
/// PUTs retried after an HTTP 500, per cluster.
static PUT_RETRIES: AtomicUsize = AtomicUsize::new(0);

fn put_unit(socket: &Path, name: &str) {
    let path = format!("/flt/v1/units/{name}");
    let started = Instant::now();
    loop {
        let (status, body) = api(socket, "PUT", &path, UNIT_BODY).unwrap_or_else(|e| panic!("{e}"));
        match status {
            201 | 204 => return,
            503 if started.elapsed() < Duration::from_secs(60) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            // The API answers 500 now and then under a burst of PUTs; counted and reported.
            500 if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("PUT {path}: HTTP 500: {body}; retrying");
                PUT_RETRIES.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200))
            }
            _ => panic!("PUT {path}: HTTP {status}: {body}"),
        }
    }
}

/// Runs `args` in host `index`, returning stdout; panics on a non-zero exit.
fn run(flt: &FltCluster, index: usize, args: &[&str]) -> String {
    let out = flt.exec(index, args);
    assert_eq!(out.code, 0, "h{}: {}: {out}", index + 1, args.join(" "));
    out.stdout
}

/// Active units matching `glob` on host `index` (empty when the host is down).
fn active_units(flt: &FltCluster, index: usize, glob: &str) -> Vec<String> {
    if !flt.host(index).is_running() {
        return Vec::new();
    }
    let args = [
        "systemctl",
        "list-units",
        "--state=active",
        "--no-legend",
        "--plain",
        glob,
    ];
    run(flt, index, &args)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Launch units ([`LAUNCH_GLOB`], `/bin/sleep 1d`) that have a cgroup on host `index`, read
/// from outside through the host's `/sys/fs/cgroup` (0 when the host is down): systemd
/// creates it as it starts the unit and removes it once the unit stopped. Only a directory
/// listing: a version that also read each unit's `cgroup.events` was slower in its one run.
fn started_launch_units(flt: &FltCluster, index: usize) -> usize {
    let Ok(root) = flt.host(index).root() else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(root.join("sys/fs/cgroup/system.slice")) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| glob_match(LAUNCH_GLOB, &entry.file_name().to_string_lossy()) == Ok(true))
        .count()
}

/// Ok once the per-host `counts` add up to `units`; otherwise they are the error.
fn all_counted(units: usize, counts: Vec<usize>, what: &str) -> Result<(), String> {
    if counts.iter().sum::<usize>() >= units {
        Ok(())
    } else {
        Err(format!("{what} per host: {counts:?}"))
    }
}

/// Waits until `units` launched units are active across the hosts; `when` ends the
/// description of the wait. First their cgroups are counted every [`CGROUP_POLL`], which asks
/// nothing of the hosts being measured; then `systemctl` confirms every [`COUNT_POLL`].
fn wait_all_active(flt: &FltCluster, units: usize, when: &str, timeout: Duration) {
    let started = Instant::now();
    wait_for_every(
        &format!("{units} units started{when} (their cgroups)"),
        timeout,
        CGROUP_POLL,
        || {
            let counts = (0..flt.hosts())
                .map(|i| started_launch_units(flt, i))
                .collect();
            all_counted(units, counts, "cgroups")
        },
    );
    let timeout = timeout.saturating_sub(started.elapsed());
    wait_for_every(
        &format!("{units} units active{when}"),
        timeout,
        COUNT_POLL,
        || all_counted(units, count_active(flt, LAUNCH_GLOB), "active"),
    );
}

fn count_active(flt: &FltCluster, glob: &str) -> Vec<usize> {
    (0..flt.hosts())
        .map(|i| active_units(flt, i, glob).len())
        .collect()
}

/// `ActiveEnterTimestampMonotonic` (µs) of the loaded units matching `glob` on host `index`.
fn active_enter_times(flt: &FltCluster, index: usize, glob: &str) -> BTreeMap<String, u64> {
    let args = [
        "systemctl",
        "show",
        "-p",
        "Id",
        "-p",
        "ActiveEnterTimestampMonotonic",
        glob,
    ];
    let mut times = BTreeMap::new();
    for block in run(flt, index, &args).split("\n\n") {
        let mut id = None;
        let mut at = None;
        for line in block.lines() {
            match line.split_once('=') {
                Some(("Id", v)) => id = Some(v.to_string()),
                Some(("ActiveEnterTimestampMonotonic", v)) => at = v.parse::<u64>().ok(),
                _ => {}
            }
        }
        if let (Some(id), Some(at)) = (id, at)
            && at > 0
        {
            times.insert(id, at);
        }
    }
    times
}

/// etcd's v2 store request counters, per series (`name{labels}`).
fn etcd_counters(flt: &FltCluster) -> BTreeMap<String, f64> {
    let metrics = flt
        .cluster()
        .etcd()
        .get("/metrics")
        .unwrap_or_else(|e| panic!("etcd /metrics: {e}"));
    let found: BTreeMap<String, f64> = metrics
        .lines()
        .filter(|l| ETCD_COUNTERS.iter().any(|c| l.starts_with(c)))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse::<f64>().ok()?))
        })
        .collect();
    assert!(
        !found.is_empty(),
        "none of {ETCD_COUNTERS:?} in etcd's /metrics"
    );
    found
}

/// fltd's `flt_registry_requests_total{component,type}` summed over `hosts`.
fn fltd_requests(flt: &FltCluster, hosts: &[usize]) -> BTreeMap<String, f64> {
    let mut sum = BTreeMap::new();
    for &index in hosts {
        let metrics = match api(&api_socket(flt, index), "GET", "/metrics", "") {
            Ok((200, body)) => body,
            other => panic!("h{}: /metrics: {other:?}", index + 1),
        };
        for line in metrics.lines() {
            let Some(series) = line.strip_prefix("flt_registry_requests_total") else {
                continue;
            };
            if let Some((labels, value)) = series.rsplit_once(' ')
                && let Ok(value) = value.parse::<f64>()
            {
                *sum.entry(labels.to_string()).or_insert(0.0) += value;
            }
        }
    }
    sum
}

/// "series +delta, ..." for the counters that moved: which requests make up a rate.
fn counter_deltas(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    after
        .iter()
        .filter_map(|(series, value)| {
            let delta = value - before.get(series).copied().unwrap_or(0.0);
            let short = series
                .trim_start_matches("etcd_debugging_store_")
                .trim_start_matches("etcd_http_received_total");
            (delta > 0.0).then(|| format!("{short} +{delta}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The host holding the engine lease, from `P/lease/engine-leader` in etcd.
fn lease_holder(flt: &FltCluster) -> Option<usize> {
    let body = flt
        .cluster()
        .etcd()
        .get("/v2/keys/_coreos.com/flt/lease/engine-leader")
        .ok()?;
    let node: serde_json::Value = serde_json::from_str(&body).ok()?;
    let record: serde_json::Value = serde_json::from_str(node["node"]["value"].as_str()?).ok()?;
    let machine = record["MachineID"].as_str()?;
    (0..flt.hosts()).find(|&i| flt.host(i).machine_id() == machine)
}

/// (CPU seconds, VmRSS kB) of fltd on host `index`, read inside the host's PID namespace.
fn fltd_cpu_rss(flt: &FltCluster, index: usize) -> (f64, u64) {
    let pid = run(
        flt,
        index,
        &["systemctl", "show", "-p", "MainPID", "--value", "fltd"],
    );
    let pid = pid.trim();
    let stat = run(flt, index, &["cat", &format!("/proc/{pid}/stat")]);
    // Fields after `(comm)`: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or(&stat);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> f64 {
        fields
            .get(i)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("h{}: bad /proc/{pid}/stat: {stat}", index + 1))
    };
    let hz = run(flt, index, &["getconf", "CLK_TCK"])
        .trim()
        .parse::<f64>()
        .unwrap_or(100.0);
    let status = run(flt, index, &["cat", &format!("/proc/{pid}/status")]);
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("h{}: no VmRSS in /proc/{pid}/status", index + 1));
    ((ticks(11) + ticks(12)) / hz, rss)
}

struct Idle {
    etcd_per_sec: f64,
    /// fltd CPU per host, in % of one core: (mean, max).
    cpu_percent: (f64, f64),
    /// fltd VmRSS per host at the end, MB: (mean, max).
    rss_mb: (f64, f64),
}

fn mean_max(values: &[f64]) -> (f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    (mean, values.iter().copied().fold(f64::MIN, f64::max))
}

fn measure_idle(flt: &FltCluster, window: Duration) -> Idle {
    let hosts: Vec<usize> = (0..flt.hosts())
        .filter(|&i| flt.host(i).is_running())
        .collect();
    let cpu0: Vec<f64> = hosts.iter().map(|&i| fltd_cpu_rss(flt, i).0).collect();
    let etcd0 = etcd_counters(flt);
    let fltd0 = fltd_requests(flt, &hosts);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let etcd1 = etcd_counters(flt);
    let fltd1 = fltd_requests(flt, &hosts);
    let elapsed = t0.elapsed().as_secs_f64();
    println!(
        "  etcd requests in {elapsed:.1}s: {}",
        counter_deltas(&etcd0, &etcd1)
    );
    println!(
        "  sent by fltd (all hosts; watch re-arms not counted): {}",
        counter_deltas(&fltd0, &fltd1)
    );
    let end: Vec<(f64, u64)> = hosts.iter().map(|&i| fltd_cpu_rss(flt, i)).collect();
    let cpu: Vec<f64> = end
        .iter()
        .zip(&cpu0)
        .map(|((c1, _), c0)| (c1 - c0) / elapsed * 100.0)
        .collect();
    let rss: Vec<f64> = end.iter().map(|(_, r)| *r as f64 / 1024.0).collect();
    Idle {
        etcd_per_sec: (etcd1.values().sum::<f64>() - etcd0.values().sum::<f64>()) / elapsed,
        cpu_percent: mean_max(&cpu),
        rss_mb: mean_max(&rss),
    }
}

/// Restarts fltd on every host with `agent_ttl` (a drop-in over the cluster's own), and waits
/// until every machine is registered again. The units keep running: a restarted fltd adopts
/// them.
fn set_agent_ttl(flt: &FltCluster, agent_ttl: Duration) {
    for index in 0..flt.hosts() {
        let root = flt.host(index).root().unwrap_or_else(|e| panic!("{e}"));
        let dropin = root.join("etc/systemd/system/fltd.service.d/zz-bench-ttl.conf");
        let conf = format!(
            "[Service]\nEnvironment=FLT_AGENT_TTL={}ms\n",
            agent_ttl.as_millis()
        );
        std::fs::write(&dropin, conf).unwrap_or_else(|e| panic!("{}: {e}", dropin.display()));
        run(flt, index, &["systemctl", "daemon-reload"]);
        run(flt, index, &["systemctl", "restart", "fltd.service"]);
    }
    flt.wait_machines(flt.hosts(), Duration::from_secs(60));
}

/// Row 1: PUT one unit, wait until it is active, read its exact activation time; repeat.
/// Returns the latencies in ms, sorted.
fn measure_latency(flt: &FltCluster, samples: usize) -> Vec<f64> {
    let sockets: Vec<PathBuf> = (0..flt.hosts()).map(|i| api_socket(flt, i)).collect();
    let mut latencies = Vec::new();
    for n in 0..samples {
        let name = format!("bench-lat-{n:02}.service");
        let socket = &sockets[n % sockets.len()];
        let before = monotonic_us();
        put_unit(socket, &name);
        // Where the engine put it (the API's machineID), then when systemd entered active there.
        let machine = wait_for(
            &format!("{name} scheduled"),
            Duration::from_secs(30),
            || {
                let (_, body) = api(socket, "GET", &format!("/flt/v1/units/{name}"), "")?;
                let unit: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
                match unit["machineID"].as_str() {
                    Some(m) if !m.is_empty() => Ok(m.to_string()),
                    _ => Err(body),
                }
            },
        );
        let host = (0..flt.hosts())
            .find(|&i| flt.host(i).machine_id() == machine)
            .unwrap_or_else(|| panic!("{name} scheduled to unknown machine {machine}"));
        let active_at = wait_for(
            &format!("{name} active on h{}", host + 1),
            Duration::from_secs(30),
            || {
                let out = flt.exec(
                    host,
                    &[
                        "systemctl",
                        "show",
                        "-p",
                        "ActiveEnterTimestampMonotonic",
                        "--value",
                        &name,
                    ],
                );
                match out.stdout.trim().parse::<u64>() {
                    Ok(at) if at > 0 => Ok(at),
                    _ => Err(out.to_string()),
                }
            },
        );
        latencies.push(active_at.saturating_sub(before) as f64 / 1000.0);
        if n + 1 == samples {
            trace(flt, &name, host, before, active_at);
        }
    }
    // Remove them so the launch and idle rows see exactly N units.
    for n in 0..samples {
        let name = format!("bench-lat-{n:02}.service");
        let (status, body) = api(&sockets[0], "DELETE", &format!("/flt/v1/units/{name}"), "")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(status == 204, "DELETE {name}: HTTP {status}: {body}");
    }
    wait_for(
        "latency units gone",
        Duration::from_secs(60),
        || match count_active(flt, LATENCY_GLOB).iter().sum::<usize>() {
            0 => Ok(()),
            left => Err(format!("{left} still active")),
        },
    );
    latencies.sort_by(f64::total_cmp);
    latencies
}

/// Prints the journal lines (fltd, systemd) of the unit's host and the lease holder between
/// the PUT and the unit's activation, relative to the PUT: where the latency goes.
fn trace(flt: &FltCluster, name: &str, host: usize, put_us: u64, active_us: u64) {
    // journald writes to disk at least every second.
    std::thread::sleep(Duration::from_millis(1500));
    let mut hosts = vec![host];
    hosts.extend(lease_holder(flt).filter(|&l| l != host));
    println!(
        "  trace of {name} (PUT at +0 ms, active on h{} at +{:.0} ms):",
        host + 1,
        active_us.saturating_sub(put_us) as f64 / 1000.0
    );
    let mut lines = Vec::new();
    for index in hosts {
        for (at, text) in
            journal_lines(flt, index, put_us.saturating_sub(1000), active_us + 200_000)
        {
            lines.push((at, format!("h{}{}", index + 1, text)));
        }
    }
    lines.sort();
    for (at, text) in lines.iter().take(60) {
        println!(
            "    +{:>6.1} ms {text}",
            (*at as f64 - put_us as f64) / 1000.0
        );
    }
}

/// CPU seconds used so far by the cluster's etcd (clock ticks of 10 ms).
fn etcd_cpu(flt: &FltCluster) -> f64 {
    flt.cluster()
        .etcd()
        .etcd_pids()
        .iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after `(comm)`: utime is field 14, stime 15.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks: f64 =
                fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .sum()
}

/// CPU seconds used so far by a host's systemd, fltd, bus, journal and units (its cgroups).
fn host_cpu(flt: &FltCluster, index: usize) -> BTreeMap<&'static str, f64> {
    const GROUPS: [(&str, &str); 5] = [
        ("systemd", "init.scope"),
        ("fltd", "system.slice/fltd.service"),
        ("dbus", "system.slice/dbus.service"),
        ("journald", "system.slice/systemd-journald.service"),
        ("all", ""),
    ];
    let script = GROUPS
        .iter()
        .map(|(_, dir)| format!("head -1 /sys/fs/cgroup/{dir}/cpu.stat"))
        .collect::<Vec<_>>()
        .join("; ");
    let out = run(flt, index, &["sh", "-c", &script]);
    GROUPS
        .iter()
        .zip(out.lines())
        .filter_map(|((name, _), line)| {
            let usec: f64 = line.strip_prefix("usage_usec ")?.trim().parse().ok()?;
            Some((*name, usec / 1e6))
        })
        .collect()
}

/// Host `index`'s journal lines (fltd, systemd) stamped within `from_us..=to_us` of
/// `CLOCK_MONOTONIC`, with their stamps.
fn journal_lines(flt: &FltCluster, index: usize, from_us: u64, to_us: u64) -> Vec<(u64, String)> {
    let journal = flt
        .host(index)
        .logs(&["-o", "short-monotonic", "--no-hostname"])
        .unwrap_or_default();
    journal
        .lines()
        .filter_map(|line| {
            let (stamp, text) = line.strip_prefix('[')?.split_once(']')?;
            let at = (stamp.trim().parse::<f64>().ok()? * 1_000_000.0) as u64;
            (from_us..=to_us)
                .contains(&at)
                .then(|| (at, text.to_string()))
        })
        .collect()
}

/// Where a failover's time goes: per surviving host, how many of each step its journal shows
/// between the kill and the last moved unit's activation, and when the first and last were.
/// Returns when (µs, `CLOCK_MONOTONIC`) the engine unscheduled the first unit: the moment the
/// cluster acted on the dead machine's expired presence.
fn failover_trace(flt: &FltCluster, kill_us: u64, last_us: u64) -> Option<u64> {
    let mut first_unscheduled: Option<u64> = None;
    const STEPS: [(&str, &str); 7] = [
        ("unscheduled (engine)", "Unscheduled Job(bench-"),
        ("scheduled (engine)", "Scheduled Unit(bench-"),
        ("load begun", "task: type=LoadUnit job=bench-"),
        ("load done", "completed task: type=LoadUnit job=bench-"),
        ("start begun", "task: type=StartUnit job=bench-"),
        ("start done", "completed task: type=StartUnit job=bench-"),
        ("active (systemd)", "Started bench-"),
    ];
    // journald writes to disk at least every second.
    std::thread::sleep(Duration::from_millis(1500));
    println!("  failover trace (ms after the kill: count first..last):");
    for index in (0..flt.hosts()).filter(|&i| flt.host(i).is_running()) {
        let mut seen: Vec<(usize, f64, f64)> = vec![(0, f64::NAN, f64::NAN); STEPS.len()];
        // Runs of the same step in time order (the agent's batches), for the first survivor.
        let mut runs: Vec<(usize, usize, f64, f64)> = Vec::new();
        for (at, text) in journal_lines(flt, index, kill_us, last_us + 200_000) {
            let ms = (at - kill_us) as f64 / 1000.0;
            if text.contains(STEPS[0].1) && first_unscheduled.is_none_or(|t| at < t) {
                first_unscheduled = Some(at);
            }
            for (step, (_, pattern)) in STEPS.iter().enumerate() {
                // "task: type=" also ends "completed task: type=".
                let begun = !pattern.starts_with("task:") || !text.contains("completed task:");
                if begun && text.contains(pattern) {
                    match runs.last_mut() {
                        Some(run) if run.0 == step => {
                            run.1 += 1;
                            run.3 = ms;
                        }
                        _ => runs.push((step, 1, ms, ms)),
                    }
                    let entry = &mut seen[step];
                    if entry.0 == 0 {
                        entry.1 = ms;
                    }
                    entry.0 += 1;
                    entry.2 = ms;
                }
            }
        }
        let steps: Vec<String> = STEPS
            .iter()
            .zip(&seen)
            .filter(|(_, (count, _, _))| *count > 0)
            .map(|((name, _), (count, first, last))| {
                format!("{name} {count} {first:.0}..{last:.0}")
            })
            .collect();
        println!("    h{}: {}", index + 1, steps.join(", "));
        if std::env::var("FLT_BENCH_TRACE_RUNS").is_ok_and(|v| v == "1") {
            let runs: Vec<String> = runs
                .iter()
                .map(|(step, count, first, last)| {
                    format!("{} x{count} {first:.0}..{last:.0}", STEPS[*step].0)
                })
                .collect();
            println!("      in order: {}", runs.join(" | "));
        }
    }
    first_unscheduled
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Launch {
    /// All PUTs answered.
    submitted: Duration,
    /// First PUT to the last unit's `ActiveEnterTimestampMonotonic`.
    all_active: Duration,
    etcd_per_unit: f64,
}

/// Row 2: PUT `units` units from parallel connections spread over the hosts' API sockets, wait
/// until every one is active.
fn measure_launch(flt: &FltCluster, units: usize) -> Launch {
    let sockets: Vec<PathBuf> = (0..flt.hosts()).map(|i| api_socket(flt, i)).collect();
    let threads = (2 * flt.hosts()).min(8);
    let etcd0 = etcd_counters(flt);
    let before = monotonic_us();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let sockets = &sockets;
            scope.spawn(move || {
                for i in (t..units).step_by(threads) {
                    put_unit(&sockets[i % sockets.len()], &unit_name(i));
                }
            });
        }
    });
    let submitted = started.elapsed();
    wait_all_active(flt, units, "", CONVERGE_TIMEOUT);
    let etcd1 = etcd_counters(flt);
    println!(
        "  etcd requests during the launch: {}",
        counter_deltas(&etcd0, &etcd1)
    );
    let last = (0..flt.hosts())
        .flat_map(|i| active_enter_times(flt, i, LAUNCH_GLOB).into_values())
        .max()
        .unwrap_or(before);
    Launch {
        submitted,
        all_active: Duration::from_micros(last.saturating_sub(before)),
        etcd_per_unit: (etcd1.values().sum::<f64>() - etcd0.values().sum::<f64>()) / units as f64,
    }
}

/// Row 4: one host killed.
#[derive(Clone, Copy)]
struct Failover {
    /// From the kill until every unit it ran is active on another host.
    secs: f64,
    moved: usize,
    /// Of `secs`, the part after the engine acted on the expired presence (its first
    /// unschedule): what flt spends; the part before is the presence TTL running out.
    after_expiry: Option<f64>,
}

/// Row 4: kill host `victim`; time until every unit it ran is active on another host.
fn measure_failover(flt: &FltCluster, victim: usize, units: usize) -> Failover {
    let moved = active_units(flt, victim, LAUNCH_GLOB);
    let survivors: Vec<usize> = (0..flt.hosts())
        .filter(|&i| i != victim && flt.host(i).is_running())
        .collect();
    let cpu0: Vec<_> = survivors.iter().map(|&i| host_cpu(flt, i)).collect();
    let etcd0 = etcd_cpu(flt);
    let before = monotonic_us();
    flt.host(victim)
        .kill()
        .unwrap_or_else(|e| panic!("killing h{}: {e}", victim + 1));
    wait_all_active(
        flt,
        units,
        &format!(" after killing h{}", victim + 1),
        FAILOVER_TIMEOUT,
    );
    let wall = (monotonic_us() - before) as f64 / 1e6;
    let cpu1: Vec<_> = survivors.iter().map(|&i| host_cpu(flt, i)).collect();
    let spent: Vec<String> = survivors
        .iter()
        .zip(cpu0.iter().zip(&cpu1))
        .map(|(i, (a, b))| {
            let parts: Vec<String> = b
                .iter()
                .map(|(k, v)| format!("{k} {:.2}", v - a.get(k).copied().unwrap_or(0.0)))
                .collect();
            format!("h{}: {}", i + 1, parts.join(", "))
        })
        .collect();
    println!(
        "  CPU s in the {wall:.1} s from the kill to seeing all active (2 cores): etcd {:.2}; {}",
        etcd_cpu(flt) - etcd0,
        spent.join("; ")
    );
    let mut times = BTreeMap::new();
    for i in (0..flt.hosts()).filter(|&i| flt.host(i).is_running()) {
        times.extend(active_enter_times(flt, i, LAUNCH_GLOB));
    }
    let mut active: Vec<u64> = moved
        .iter()
        .map(|name| {
            *times
                .get(name)
                .unwrap_or_else(|| panic!("{name} of h{} not active elsewhere", victim + 1))
        })
        .collect();
    active.sort_unstable();
    let since_kill = |at: u64| at.saturating_sub(before) as f64 / 1000.0;
    if let (Some(&first), Some(&last)) = (active.first(), active.last()) {
        // Detection and scheduling end at the first start; the spread is the survivors' pace.
        println!(
            "  moved units active after the kill: first {:.0} ms, median {:.0} ms, last {:.0} ms",
            since_kill(first),
            since_kill(active[active.len() / 2]),
            since_kill(last)
        );
    }
    let last = active.last().copied().unwrap_or(before);
    let acted = failover_trace(flt, before, last);
    Failover {
        secs: last.saturating_sub(before) as f64 / 1_000_000.0,
        moved: moved.len(),
        after_expiry: acted.map(|at| last.saturating_sub(at) as f64 / 1_000_000.0),
    }
}

struct Column {
    hosts: usize,
    units: usize,
    loads: Vec<f64>,
    latency_ms: Vec<f64>,
    launch: Launch,
    put_retries: usize,
    idle_empty: Idle,
    idle_full: Idle,
    failover_follower: Failover,
    failover_leader: Option<Failover>,
}

fn bench_cluster(hosts: usize, settings: &Settings) -> Column {
    let mut loads = vec![load_1min()];
    let flt = FltCluster::start(FltClusterConfig {
        agent_ttl: settings.idle_agent_ttl,
        ..FltClusterConfig::new(hosts)
    });
    std::thread::sleep(SETTLE);
    println!(
        "[{hosts} hosts] idle with no units ({}s)",
        settings.idle.as_secs()
    );
    let idle_empty = measure_idle(&flt, settings.idle);
    loads.push(load_1min());

    println!(
        "[{hosts} hosts] latency, {} units one at a time",
        settings.latency_units
    );
    let latency_ms = measure_latency(&flt, settings.latency_units);
    loads.push(load_1min());

    println!("[{hosts} hosts] launching {} units", settings.units);
    let launch = measure_launch(&flt, settings.units);
    loads.push(load_1min());
    println!(
        "[{hosts} hosts] submitted in {:.1}s, all active after {:.1}s; per host: {:?}",
        launch.submitted.as_secs_f64(),
        launch.all_active.as_secs_f64(),
        count_active(&flt, LAUNCH_GLOB)
    );

    std::thread::sleep(SETTLE);
    println!(
        "[{hosts} hosts] idle with {} units ({}s)",
        settings.units,
        settings.idle.as_secs()
    );
    let idle_full = measure_idle(&flt, settings.idle);
    loads.push(load_1min());

    if settings.agent_ttl != settings.idle_agent_ttl {
        println!(
            "[{hosts} hosts] restarting every fltd with agent_ttl {} s (they adopt their units)",
            settings.agent_ttl.as_secs()
        );
        set_agent_ttl(&flt, settings.agent_ttl);
        std::thread::sleep(SETTLE);
    }
    let leader = lease_holder(&flt);
    let follower = (0..hosts)
        .filter(|&i| Some(i) != leader)
        .max_by_key(|&i| active_units(&flt, i, LAUNCH_GLOB).len())
        .unwrap_or_else(|| panic!("no host besides the lease holder"));
    println!(
        "[{hosts} hosts] killing h{} (lease holder: {})",
        follower + 1,
        leader.map_or("unknown".to_string(), |l| format!("h{}", l + 1))
    );
    let failover_follower = measure_failover(&flt, follower, settings.units);
    loads.push(load_1min());

    // The lease holder too, unless the survivors would carry too many units.
    let failover_leader = match lease_holder(&flt) {
        Some(leader) if hosts >= 3 && settings.units / (hosts - 2) <= MAX_UNITS_PER_SURVIVOR => {
            std::thread::sleep(SETTLE);
            println!("[{hosts} hosts] killing h{} (the lease holder)", leader + 1);
            let result = measure_failover(&flt, leader, settings.units);
            loads.push(load_1min());
            Some(result)
        }
        _ => None,
    };
    Column {
        hosts,
        units: settings.units,
        loads,
        latency_ms,
        launch,
        put_retries: PUT_RETRIES.swap(0, Ordering::Relaxed),
        idle_empty,
        idle_full,
        failover_follower,
        failover_leader,
    }
}

fn main() {
    // `cargo test --benches` runs this without `--bench`: booting clusters there would only
    // cost minutes of CI.
    if !std::env::args().any(|a| a == "--bench") {
        println!("cluster benchmark: run it with `cargo bench -p flt-tests --bench cluster`");
        return;
    }
    let settings = Settings::from_env();
    let mut columns = Vec::new();
    // The table so far after every cluster: a later failure does not lose the figures.
    for &hosts in &settings.hosts {
        columns.push(bench_cluster(hosts, &settings));
        print_table(&settings, &columns);
    }
}

fn print_table(settings: &Settings, columns: &[Column]) {
    let mut rows: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut row = |name: &str, target: &str, cell: &dyn Fn(&Column) -> String| {
        rows.push((
            name.to_string(),
            target.to_string(),
            columns.iter().map(cell).collect(),
        ));
    };
    row("units launched", "", &|c| c.units.to_string());
    row("1. PUT->active p50 ms", "< 150", &|c| {
        format!("{:.0}", percentile(&c.latency_ms, 50.0))
    });
    row("1. PUT->active p99 ms", "", &|c| {
        format!("{:.0}", percentile(&c.latency_ms, 99.0))
    });
    row("   (samples)", "", &|c| c.latency_ms.len().to_string());
    row("2. launch: all PUTs answered s", "", &|c| {
        format!("{:.1}", c.launch.submitted.as_secs_f64())
    });
    row("   (PUTs retried after HTTP 500)", "", &|c| {
        c.put_retries.to_string()
    });
    row("2. launch: all active s", "< 10 (3 hosts)", &|c| {
        format!("{:.1}", c.launch.all_active.as_secs_f64())
    });
    row("3. etcd req/s idle, no units", "", &|c| {
        format!("{:.2}", c.idle_empty.etcd_per_sec)
    });
    row("3. etcd req/s idle, N units", "< 2, flat", &|c| {
        format!("{:.2}", c.idle_full.etcd_per_sec)
    });
    row("3. etcd req per unit launched", "", &|c| {
        format!("{:.1}", c.launch.etcd_per_unit)
    });
    let failover_target = format!("< {}", settings.agent_ttl.as_secs() + 1);
    let after_expiry = |f: &Failover| {
        f.after_expiry
            .map_or("?".to_string(), |s| format!("{s:.2}"))
    };
    row("4. kill non-leader -> moved s", &failover_target, &|c| {
        format!("{:.1}", c.failover_follower.secs)
    });
    row("   (after the expiry was seen s)", "", &|c| {
        after_expiry(&c.failover_follower)
    });
    row("   (units moved)", "", &|c| {
        c.failover_follower.moved.to_string()
    });
    row("4. kill lease holder -> moved s", &failover_target, &|c| {
        c.failover_leader
            .map_or("-".to_string(), |f| format!("{:.1}", f.secs))
    });
    row("   (after the expiry was seen s)", "", &|c| {
        c.failover_leader
            .as_ref()
            .map_or("-".to_string(), after_expiry)
    });
    row("   (units moved)", "", &|c| {
        c.failover_leader
            .map_or("-".to_string(), |f| f.moved.to_string())
    });
    row("5. fltd CPU % idle mean/max", "", &|c| {
        format!(
            "{:.2}/{:.2}",
            c.idle_full.cpu_percent.0, c.idle_full.cpu_percent.1
        )
    });
    row("   (no units)", "", &|c| {
        format!(
            "{:.2}/{:.2}",
            c.idle_empty.cpu_percent.0, c.idle_empty.cpu_percent.1
        )
    });
    row("5. fltd RSS MB mean/max", "", &|c| {
        format!("{:.1}/{:.1}", c.idle_full.rss_mb.0, c.idle_full.rss_mb.1)
    });
    row("   (no units)", "", &|c| {
        format!("{:.1}/{:.1}", c.idle_empty.rss_mb.0, c.idle_empty.rss_mb.1)
    });
    row("loadavg 1-min min/max", "", &|c| {
        let (lo, hi) = c
            .loads
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
        format!("{lo:.1}/{hi:.1}")
    });

    println!(
        "\ncluster benchmark (release fltd, agent_ttl {} s, {} s for the failover rows; \
         idle windows {} s):",
        settings.idle_agent_ttl.as_secs(),
        settings.agent_ttl.as_secs(),
        settings.idle.as_secs()
    );
    let mut header = format!("{:<34} {:>16}", "", "target");
    for c in columns {
        header.push_str(&format!(" {:>14}", format!("{} hosts", c.hosts)));
    }
    println!("{header}");
    for (name, target, cells) in rows {
        let mut line = format!("{name:<34} {target:>16}");
        for cell in cells {
            line.push_str(&format!(" {cell:>14}"));
        }
        println!("{line}");
    }
    println!("1-min loadavg now: {:.2}", load_1min());
}
