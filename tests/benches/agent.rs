//! Agent cost at steady state: one real test host (systemd as PID 1) and a real etcd, fltd
//! started by the shipped unit files, N trivial units launched through the API; then fltd's CPU
//! time, RSS and the etcd request rate are measured over a quiet window.
//!
//! `cargo bench -p flt-tests --bench agent` (`FLT_BENCH_UNITS=500,2000` sets the unit counts,
//! `FLT_BENCH_WINDOW_SECS=30` the window). Prints figures only; nothing here asserts on time.
//! Needs root and the tools listed in `flt_tests::testhost`.

use std::path::Path;
use std::time::{Duration, Instant};

use flt_tests::fltd_host::{exec, one_host_with_fltd, unix_http};
use flt_tests::testhost::{Cluster, Host};

/// Bound on reaching all units active, per unit: loads run one `LinkUnitFiles` each, and on a
/// busy 2-core machine systemd managed only ~7 a second with 1,000 units linked.
const CONVERGE_TIMEOUT_PER_UNIT: Duration = Duration::from_millis(300);
/// etcd 3.4's v2 store counters: every v2 keys request the agent makes lands in one of these.
const ETCD_COUNTERS: [&str; 3] = [
    "etcd_debugging_store_reads_total",
    "etcd_debugging_store_writes_total",
    "etcd_debugging_store_watch_requests_total",
];

/// A `PUT` on the host's API socket, reached from outside through `/proc/<pid>/root/run`
/// (inside the host `/var/run` is an absolute symlink to `/run`). Returns the status code.
fn api_put(socket: &Path, path: &str, body: &str) -> Result<u16, String> {
    unix_http(socket, "PUT", path, body, Duration::from_secs(10)).map(|(status, _)| status)
}

fn unit_name(i: usize) -> String {
    format!("bench-{i:05}.service")
}

fn count_active(host: &Host) -> usize {
    let out = exec(
        host,
        &[
            "systemctl",
            "list-units",
            "--state=active",
            "--no-legend",
            "--plain",
            "bench-*.service",
        ],
    );
    out.lines().filter(|l| !l.trim().is_empty()).count()
}

/// What a stalled start looks like from inside the host: systemd's jobs and unit counts, and
/// the end of fltd's and the bus's journal.
fn diagnose(host: &Host) {
    let show = |what: &str, args: &[&str]| match host.exec_ok(args) {
        Ok(out) => eprintln!("--- {what}:\n{}", out.trim_end()),
        Err(e) => eprintln!("--- {what}: {e}"),
    };
    show(
        "jobs",
        &["sh", "-c", "systemctl list-jobs --no-legend | wc -l"],
    );
    show(
        "bench units by state",
        &[
            "sh",
            "-c",
            "systemctl list-units --all --no-legend --plain 'bench-*' | awk '{print $2, $3, $4}' | sort | uniq -c",
        ],
    );
    show("unit files", &["sh", "-c", "ls /run/flt/units | wc -l"]);
    show(
        "tasks",
        &["sh", "-c", "cat /proc/loadavg; ls /proc | grep -c '^[0-9]'"],
    );
    for (what, args) in [
        ("fltd journal", &["-u", "fltd", "-n", "60"][..]),
        ("dbus journal", &["-u", "dbus", "-n", "20"][..]),
        ("systemd journal", &["_PID=1", "-n", "20"][..]),
    ] {
        match host.logs(args) {
            Ok(out) => eprintln!("--- {what}:\n{}", out.trim_end()),
            Err(e) => eprintln!("--- {what}: {e}"),
        }
    }
}

/// (utime + stime in seconds, VmRSS in kB) of `pid`, read inside the host's PID namespace.
fn cpu_and_rss(host: &Host, pid: &str) -> (f64, u64) {
    let stat = exec(host, &["cat", &format!("/proc/{pid}/stat")]);
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or(&stat);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> f64 {
        fields
            .get(i)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("bad /proc/{pid}/stat: {stat}"))
    };
    let hz = exec(host, &["getconf", "CLK_TCK"])
        .parse::<f64>()
        .unwrap_or(100.0);
    let cpu = (ticks(11) + ticks(12)) / hz;
    let status = exec(host, &["cat", &format!("/proc/{pid}/status")]);
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"));
    (cpu, rss)
}

/// Sum of etcd's v2 store request counters.
fn etcd_requests(cluster: &Cluster) -> f64 {
    let metrics = cluster
        .etcd()
        .get("/metrics")
        .unwrap_or_else(|e| panic!("etcd /metrics: {e}"));
    metrics
        .lines()
        .filter(|l| ETCD_COUNTERS.iter().any(|c| l.starts_with(c)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Row {
    units: usize,
    converge: Duration,
    cpu_percent: f64,
    rss_mb: f64,
    etcd_per_sec: f64,
}

fn run(units: usize, window: Duration) -> Row {
    let (cluster, socket) = one_host_with_fltd("bench.conf");
    let host = cluster.host(0);

    let started = Instant::now();
    let body = r#"{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"/bin/sleep infinity"}]}"#;
    for i in 0..units {
        let path = format!("/flt/v1/units/{}", unit_name(i));
        // 503 while the engine is still reading the registry after start: retry a while.
        let status = loop {
            let status = api_put(&socket, &path, body).unwrap_or_else(|e| panic!("{e}"));
            if status != 503 || started.elapsed() > Duration::from_secs(60) {
                break status;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(status == 201 || status == 204, "PUT {path}: HTTP {status}");
    }
    let submitted = started.elapsed();
    let mut last_report = Instant::now();
    loop {
        let active = count_active(host);
        if active >= units {
            break;
        }
        if started.elapsed() >= CONVERGE_TIMEOUT_PER_UNIT * units as u32 {
            diagnose(host);
            if std::env::var_os("FLT_BENCH_KEEP").is_some() {
                let mut cluster = cluster;
                cluster.detach().unwrap_or_else(|e| panic!("{e}"));
                eprintln!("cluster {} kept (FLT_BENCH_KEEP)", cluster.id());
            }
            panic!(
                "{units} units: only {active} active after {:.0}s",
                started.elapsed().as_secs_f64()
            );
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "  {units} units: {active} active after {:.0}s",
                started.elapsed().as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let converge = started.elapsed();
    println!(
        "{units} units: submitted in {:.1}s, all active after {:.1}s",
        submitted.as_secs_f64(),
        converge.as_secs_f64()
    );
    // Let the post-convergence reconcile and state publishing settle before measuring.
    std::thread::sleep(Duration::from_secs(10));

    let pid = exec(
        host,
        &["systemctl", "show", "-p", "MainPID", "--value", "fltd"],
    );
    let (cpu0, _) = cpu_and_rss(host, &pid);
    let etcd0 = etcd_requests(&cluster);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let (cpu1, rss) = cpu_and_rss(host, &pid);
    let etcd1 = etcd_requests(&cluster);
    let elapsed = t0.elapsed().as_secs_f64();
    let row = Row {
        units,
        converge,
        cpu_percent: (cpu1 - cpu0) / elapsed * 100.0,
        rss_mb: rss as f64 / 1024.0,
        etcd_per_sec: (etcd1 - etcd0) / elapsed,
    };
    // At once, so that a later count that fails does not lose this one.
    print_row(&row);
    row
}

fn print_header() {
    println!(
        "{:>6} {:>9} {:>12} {:>10} {:>8} {:>14}",
        "units", "state", "converge s", "CPU %", "RSS MB", "etcd req/s"
    );
}

fn print_row(r: &Row) {
    println!(
        "{:>6} {:>9} {:>12.1} {:>10.2} {:>8.1} {:>14.2}",
        r.units,
        "active",
        r.converge.as_secs_f64(),
        r.cpu_percent,
        r.rss_mb,
        r.etcd_per_sec
    );
}

fn main() {
    let counts: Vec<usize> = std::env::var("FLT_BENCH_UNITS")
        .unwrap_or_else(|_| "500,2000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("FLT_BENCH_UNITS: bad count {s:?}"))
        })
        .collect();
    let window = Duration::from_secs(
        std::env::var("FLT_BENCH_WINDOW_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30),
    );
    let rows: Vec<Row> = counts.iter().map(|&n| run(n, window)).collect();
    println!(
        "\nsteady state over {}s (units launched, agent_ttl default):",
        window.as_secs()
    );
    print_header();
    for r in &rows {
        print_row(r);
    }
}
