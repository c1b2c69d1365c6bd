//! A real flt cluster for tests: test hosts (real systemd as PID 1) with fltd installed from the
//! shipped `examples/host/` unit files, one real etcd, and `fltctl` runnable inside every host.
//!
//! ```no_run
//! use flt_tests::fltcluster::{FltCluster, FltClusterConfig};
//! let flt = FltCluster::start(FltClusterConfig::new(3));
//! let out = flt.fltctl(0, &["list-machines", "--no-legend"]);
//! assert_eq!(out.code, 0, "{out}");
//! flt.write_file(0, "/root/units/hello.service", "[Service]\nExecStart=/bin/sleep 1d\n");
//! let out = flt.fltctl_in(0, "/root/units", &["start", "hello.service"]);
//! let host = flt.wait_active_on_one("hello.service");
//! ```
//!
//! Both binaries are built by the cargo that builds the tests (same profile and target dir,
//! bound read-only at `/opt/flt/target`), so a test never runs a stale fltd or fltctl.
//! Every wait has a bound and panics saying what it waited for and what it saw last; when a
//! test panics while an `FltCluster` is alive, dropping it prints the tail of every host's fltd
//! journal, so a failure in CI explains itself.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fltd_host::install_fltd;
use crate::testhost::{Bind, Cluster, ClusterConfig, Host};

/// Where fltd serves the API inside a host (`examples/host/flt.socket`).
pub const API_SOCKET: &str = "/var/run/flt.sock";

/// How to build an [`FltCluster`]; `FltClusterConfig::new(n)` gives the defaults.
#[derive(Debug, Clone)]
pub struct FltClusterConfig {
    pub hosts: usize,
    /// fltd's `agent_ttl`: short in tests, as fleet's functional suite had it.
    pub agent_ttl: Duration,
    /// fltd's `metadata` option per host (index = host); missing or empty: none.
    pub metadata: Vec<String>,
    /// More `FLT_*` settings for every host's fltd.
    pub environment: Vec<(String, String)>,
    /// Wait until every host's machine is registered before returning.
    pub wait_registered: bool,
}

impl FltClusterConfig {
    pub fn new(hosts: usize) -> Self {
        Self {
            hosts,
            agent_ttl: Duration::from_secs(3),
            metadata: Vec::new(),
            environment: Vec::new(),
            wait_registered: true,
        }
    }
}

/// The result of a command run inside a host.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// Exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for CommandOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout:\n{}--- stderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A test cluster with fltd running on every host. See the module docs.
pub struct FltCluster {
    cluster: Cluster,
    config: FltClusterConfig,
    fltd: PathBuf,
    fltctl: PathBuf,
}

impl FltCluster {
    /// Builds fltd and fltctl, boots the hosts, installs and starts fltd everywhere and (by
    /// default) waits until every machine is registered. Panics with the reason on failure.
    pub fn start(config: FltClusterConfig) -> FltCluster {
        let target = Bind::cargo_target_dir();
        let (fltd, fltctl) = build_binaries(&target);
        let cluster = Cluster::start(ClusterConfig {
            binds: vec![target],
            ..ClusterConfig::new(config.hosts)
        })
        .unwrap_or_else(|e| panic!("starting a {}-host test cluster: {e}", config.hosts));
        println!(
            "test cluster {}: {} hosts booted in {:.2}s",
            cluster.id(),
            config.hosts,
            cluster.boot_time().as_secs_f64()
        );
        let flt = FltCluster {
            cluster,
            config,
            fltd,
            fltctl,
        };
        let started = Instant::now();
        for index in 0..flt.config.hosts {
            flt.start_fltd(index);
        }
        if flt.config.wait_registered {
            flt.wait_machines(flt.config.hosts, Duration::from_secs(30));
            println!(
                "fltd registered on all {} hosts in {:.2}s",
                flt.config.hosts,
                started.elapsed().as_secs_f64()
            );
        }
        flt
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn host(&self, index: usize) -> &Host {
        self.cluster.host(index)
    }

    pub fn hosts(&self) -> usize {
        self.config.hosts
    }

    /// The fltctl binary's path inside a host.
    pub fn fltctl_path(&self) -> &Path {
        &self.fltctl
    }

    /// (Re)installs fltd's unit files and settings on host `index` and starts it, without
    /// waiting for its registration: after a host was killed and booted again, too.
    pub fn start_fltd(&self, index: usize) {
        let host = self.host(index);
        let mut environment = vec![
            ("FLT_ETCD_SERVERS", self.cluster.etcd_endpoint()),
            ("FLT_PUBLIC_IP", host.ip().to_string()),
            (
                "FLT_AGENT_TTL",
                format!("{}ms", self.config.agent_ttl.as_millis()),
            ),
            ("FLT_VERBOSITY", "1".to_string()),
        ];
        if let Some(metadata) = self.config.metadata.get(index).filter(|m| !m.is_empty()) {
            environment.push(("FLT_METADATA", metadata.clone()));
        }
        for (name, value) in &self.config.environment {
            environment.push((name.as_str(), value.clone()));
        }
        install_fltd(host, &self.fltd, "test.conf", &environment);
    }

    /// Waits until `count` machines are listed by the API of the first running host.
    pub fn wait_machines(&self, count: usize, timeout: Duration) {
        wait_for(&format!("{count} machines registered"), timeout, || {
            let index = self.first_running()?;
            let (status, body) = self.api(index, "GET", "/flt/v1/machines", None)?;
            let found = body.matches("\"id\"").count();
            if status == 200 && found == count {
                Ok(())
            } else {
                Err(format!("h{}: {status} {body}", index + 1))
            }
        });
    }

    fn first_running(&self) -> Result<usize, String> {
        self.cluster
            .hosts()
            .iter()
            .position(Host::is_running)
            .ok_or_else(|| "no host is running".to_string())
    }

    /// The API inside host `index` over its unix socket: see [`api_json`].
    pub fn api(
        &self,
        index: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        api_json(self.host(index), method, path, body)
    }

    /// The API inside host `index` with the request headers given: see [`api_on`].
    pub fn api_with(
        &self,
        index: usize,
        method: &str,
        path: &str,
        headers: &[&str],
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        api_on(self.host(index), method, path, headers, body)
    }

    /// Runs fltctl inside host `index` (API on its unix socket), in `/`.
    pub fn fltctl(&self, index: usize, args: &[&str]) -> CommandOutput {
        self.fltctl_in(index, "/", args)
    }

    /// Runs fltctl inside host `index` in directory `dir` (so relative unit files resolve).
    pub fn fltctl_in(&self, index: usize, dir: &str, args: &[&str]) -> CommandOutput {
        let fltctl = self.fltctl.to_string_lossy().into_owned();
        let mut all = vec!["env", "-C", dir, fltctl.as_str()];
        all.extend_from_slice(args);
        self.exec(index, &all)
    }

    /// Runs `args` inside host `index`; the harness kills it after 60 s.
    pub fn exec(&self, index: usize, args: &[&str]) -> CommandOutput {
        match self.host(index).exec(args) {
            Ok(out) => CommandOutput {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            },
            Err(e) => panic!("h{}: {}: {e}", index + 1, args.join(" ")),
        }
    }

    /// Writes `contents` to the absolute `path` inside host `index` (parents created).
    pub fn write_file(&self, index: usize, path: &str, contents: &str) {
        write_file_in(self.host(index), path, contents);
    }

    /// `systemctl is-active unit` on host `index` ("" when the host is down).
    pub fn unit_state(&self, index: usize, unit: &str) -> String {
        if !self.host(index).is_running() {
            return String::new();
        }
        self.host(index)
            .exec(&["systemctl", "is-active", unit])
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    /// The hosts (indexes) on which `unit` is active now.
    pub fn active_on(&self, unit: &str) -> Vec<usize> {
        (0..self.config.hosts)
            .filter(|&i| self.unit_state(i, unit) == "active")
            .collect()
    }

    /// Waits until `unit` is active on exactly one host and returns it.
    pub fn wait_active_on_one(&self, unit: &str) -> usize {
        wait_for(
            &format!("{unit} active on exactly one host"),
            Duration::from_secs(30),
            || match self.active_on(unit).as_slice() {
                [one] => Ok(*one),
                other => Err(format!("active on {}", hosts_list(other))),
            },
        )
    }

    /// Waits until the set of hosts running `unit` is `expected` (indexes, sorted).
    pub fn wait_active_on(&self, unit: &str, expected: &[usize], timeout: Duration) {
        wait_for(
            &format!("{unit} active on {}", hosts_list(expected)),
            timeout,
            || {
                let now = self.active_on(unit);
                if now == expected {
                    Ok(())
                } else {
                    Err(format!("active on {}", hosts_list(&now)))
                }
            },
        );
    }

    /// The tail of host `index`'s fltd journal (works after the host was killed).
    pub fn fltd_logs(&self, index: usize, lines: usize) -> String {
        let lines = lines.to_string();
        self.host(index)
            .logs(&["-u", "fltd", "-o", "short-precise", "-n", &lines])
            .unwrap_or_else(|e| format!("(no journal: {e})"))
    }
}

impl Drop for FltCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for index in 0..self.config.hosts {
                eprintln!(
                    "--- fltd on h{} (last 60 lines):\n{}",
                    index + 1,
                    self.fltd_logs(index, 60)
                );
            }
        }
    }
}

/// The API inside `host` over its unix socket (`curl`), with a JSON content type when there
/// is a body. Returns (HTTP status, body).
pub fn api_json(
    host: &Host,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let mut headers = Vec::new();
    if body.is_some() {
        headers.push("Content-Type: application/json");
    }
    api_on(host, method, path, &headers, body)
}

/// Like [`api_json`] with the request headers given (`Name: value`) and nothing added. A body
/// is sent as given, byte for byte.
pub fn api_on(
    host: &Host,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let url = format!("http://flt{path}");
    // Through a file: an argument cannot carry every byte (or a large body).
    let body_arg = body.map(|body| {
        let file = format!("/tmp/flt-test-body-{}", unique());
        write_file_in(host, &file, body);
        format!("@{file}")
    });
    let mut args = vec![
        "curl",
        "-sS",
        "-m",
        "10",
        "--unix-socket",
        API_SOCKET,
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ];
    for header in headers {
        args.extend(["-H", header]);
    }
    if let Some(body_arg) = &body_arg {
        args.extend(["--data-binary", body_arg.as_str()]);
    }
    args.push(&url);
    let out = host.exec(&args).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "curl {method} {path}: exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = status
        .trim()
        .parse()
        .map_err(|_| format!("no status in {text:?}"))?;
    Ok((status, body.to_string()))
}

/// Writes `contents` to the absolute `path` inside `host` (parents created).
pub fn write_file_in(host: &Host, path: &str, contents: &str) {
    let root = host.root().unwrap_or_else(|e| panic!("{e}"));
    let full = root.join(path.trim_start_matches('/'));
    if let Some(dir) = full.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    }
    std::fs::write(&full, contents).unwrap_or_else(|e| panic!("write {}: {e}", full.display()));
}

/// "h1, h3" for host indexes; "none" when empty.
pub fn hosts_list(indexes: &[usize]) -> String {
    if indexes.is_empty() {
        return "none".to_string();
    }
    indexes
        .iter()
        .map(|i| format!("h{}", i + 1))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Polls `probe` every 100 ms until it returns `Ok`, or panics saying what it waited for and
/// the last value it saw.
pub fn wait_for<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Result<T, String>) -> T {
    wait_for_every(what, timeout, Duration::from_millis(100), probe)
}

/// [`wait_for`], polling every `interval` (a benchmark whose probe loads the hosts it measures
/// polls less often).
pub fn wait_for_every<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if start.elapsed() >= timeout => panic!(
                "timed out after {:.1}s waiting for {what}; last: {last}",
                start.elapsed().as_secs_f64()
            ),
            Err(_) => std::thread::sleep(interval),
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Builds fltd and fltctl with the cargo (and profile) that built this crate; returns their
/// paths inside a host that has `target` bound.
pub fn build_binaries(target: &Bind) -> (PathBuf, PathBuf) {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .args(["build", "-p", "fltd", "-p", "fltctl"])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    // The test process runs with the variables cargo sets for a crate being run; passed on,
    // they change build scripts' inputs (ring tracks CARGO_MANIFEST_DIR) and every test's
    // build would recompile TLS and the drivers.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name == "CARGO_MANIFEST_DIR"
            || name == "CARGO_MANIFEST_PATH"
            || name == "CARGO_CRATE_NAME"
            || name == "CARGO_PRIMARY_PACKAGE"
            || name == "CARGO_TARGET_TMPDIR"
            || name == "OUT_DIR"
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
        {
            cargo.env_remove(name.as_ref());
        }
    }
    if profile == "release" {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo build -p fltd -p fltctl");
    assert!(status.success(), "cargo build -p fltd -p fltctl: {status}");
    let paths = ["fltd", "fltctl"].map(|name| {
        let binary = Path::new(profile).join(name);
        assert!(
            target.source.join(&binary).exists(),
            "no {name} at {}",
            target.source.join(&binary).display()
        );
        target.target.join(binary)
    });
    let [fltd, fltctl] = paths;
    (fltd, fltctl)
}
