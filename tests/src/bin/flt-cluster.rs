//! `flt-cluster`: a local flt cluster on one machine, run through the repository's `./cluster`
//! wrapper (see Documentation/local-cluster.md). `up` boots N test hosts of
//! `flt_tests::testhost` with real systemd, starts etcd, installs and starts fltd as a service in
//! every host and detaches, so the cluster outlives this process; the other commands attach to
//! it again by id (`--id`, `FLT_CLUSTER_ID`, default `flt-local`).

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use flt_tests::testhost::{self, Bind, Cluster, ClusterConfig, Host, STATE_ROOT};

const DEFAULT_ID: &str = "flt-local";
/// fltd's API port (fleet's), on every host's IP and, forwarded, on this machine's loopback.
const API_PORT: u16 = 54728;
const API_SOCKET: &str = "/var/run/flt.sock";
const BIN_IN_HOST: &str = "/opt/flt/bin";
const REPO_IN_HOST: &str = "/opt/flt/repo";
const AGENT_TTL: &str = "10s";
/// The shipped unit files (examples/host/), installed as they are but for the binary's path
/// and a socket drop-in that adds the host's TCP address.
const FLTD_UNIT: &str = include_str!("../../../examples/host/fltd.service");
const FLT_SOCKET: &str = include_str!("../../../examples/host/flt.socket");
/// In the state dir: the loopback addresses of the detached forward process.
const FORWARD_ADDRS: &str = "forward.addrs";

const USAGE: &str = "\
usage: ./cluster [--id ID] COMMAND

  up [N] [--no-build] [--bin-dir DIR]   boot N hosts (default 3) with etcd and fltd
  down                                  stop everything and clean up (idempotent)
  status                                hosts, IPs, fltd state, API and etcd addresses
  fltctl ARGS...                        run bin/fltctl inside h1 (API on its unix socket)
  exec HOST CMD...                      run CMD inside HOST (h1, 2, or its hostname)
  logs HOST [JOURNALCTL ARGS...]        HOST's journal (default: -u fltd.service)

The cluster id (default flt-local) comes from --id or FLT_CLUSTER_ID.
See Documentation/local-cluster.md.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cluster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut args: Vec<String>) -> Result<ExitCode, String> {
    let mut id = std::env::var("FLT_CLUSTER_ID")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_ID.to_string());
    while let Some(first) = args.first() {
        if first == "--id" {
            if args.len() < 2 {
                return Err("--id needs a value".into());
            }
            id = args.remove(1);
            args.remove(0);
        } else if let Some(value) = first.strip_prefix("--id=") {
            id = value.to_string();
            args.remove(0);
        } else {
            break;
        }
    }
    let Some(command) = args.first().cloned() else {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    };
    let rest = &args[1..];
    match command.as_str() {
        "up" => up(&id, rest),
        "down" => down(&id),
        "status" => status(&id),
        "fltctl" => fltctl(&id, rest),
        "exec" => exec(&id, rest),
        "logs" => logs(&id, rest),
        "forward" => forward(&id),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

/// The repository root: `FLT_CLUSTER_REPO` (set by `./cluster`), else where this was built.
fn repo_dir() -> PathBuf {
    std::env::var_os("FLT_CLUSTER_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new("/"))
                .to_path_buf()
        })
}

fn up(id: &str, args: &[String]) -> Result<ExitCode, String> {
    let started = Instant::now();
    let mut hosts = 3;
    let mut build = true;
    let mut bin_dir = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--no-build" => build = false,
            "--bin-dir" => {
                i += 1;
                bin_dir = Some(PathBuf::from(
                    args.get(i).ok_or("--bin-dir needs a directory")?,
                ));
            }
            n => {
                hosts = n
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=200).contains(n))
                    .ok_or_else(|| format!("up: {n:?} is not a host count (1..=200)"))?;
            }
        }
        i += 1;
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("up needs root (namespaces, cgroups, mounts): run it with sudo".into());
    }
    testhost::preflight().map_err(|e| e.to_string())?;
    if !command_exists("setsid") {
        return Err("`setsid` (util-linux) is missing".into());
    }
    let repo = repo_dir();
    if build {
        println!("building release binaries (./build) ...");
        let status = Command::new(repo.join("build"))
            .current_dir(&repo)
            .status()
            .map_err(|e| format!("run {}: {e}", repo.join("build").display()))?;
        if !status.success() {
            return Err(format!("./build failed ({status})"));
        }
        println!("  built in {:.1}s", started.elapsed().as_secs_f64());
    }
    let bin_dir = bin_dir.unwrap_or_else(|| repo.join("bin"));
    let bin_dir = bin_dir
        .canonicalize()
        .map_err(|e| format!("binaries directory {}: {e}", bin_dir.display()))?;
    for binary in ["fltd", "fltctl"] {
        if !bin_dir.join(binary).is_file() {
            return Err(format!(
                "{} is missing (run ./build, or give --bin-dir)",
                bin_dir.join(binary).display()
            ));
        }
    }

    let booting = Instant::now();
    println!("booting cluster {id}: etcd and {hosts} host(s) with systemd ...");
    let config = ClusterConfig {
        id: Some(id.to_string()),
        binds: vec![
            Bind::read_only(&bin_dir, BIN_IN_HOST),
            Bind::read_only(&repo, REPO_IN_HOST),
        ],
        ..ClusterConfig::new(hosts)
    };
    let mut cluster = match Cluster::start(config) {
        Ok(cluster) => cluster,
        Err(testhost::Error::InUse { .. }) => {
            return Err(format!(
                "cluster {id} is already up: see `./cluster status`, or `./cluster down` first"
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    println!(
        "  etcd at {} and {hosts} host(s) booted in {:.1}s",
        cluster.etcd_endpoint(),
        cluster.boot_time().as_secs_f64()
    );
    for host in cluster.hosts() {
        println!(
            "  {} up: {} ({}, machine id {})",
            host.name(),
            host.ip(),
            host.hostname(),
            host.machine_id()
        );
    }
    // Until detach() below, a failure drops `cluster`, which tears everything down again.
    for host in cluster.hosts() {
        install_fltd(&cluster, host)
            .map_err(|e| format!("{}: installing fltd: {e}", host.name()))?;
    }
    // The hosts are independent: wait for all of them at once, print in host order.
    let states: Vec<FltdState> = std::thread::scope(|scope| {
        let waits: Vec<_> = cluster
            .hosts()
            .iter()
            .map(|host| scope.spawn(|| wait_fltd(host)))
            .collect();
        waits
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| FltdState {
                    active: false,
                    text: "unknown (the waiting thread panicked)".into(),
                })
            })
            .collect()
    });
    for (host, state) in cluster.hosts().iter().zip(&states) {
        println!("  {}: fltd {}", host.name(), state.text);
    }
    if states.iter().all(|s| s.active) {
        let (registered, waited) = wait_machines(&cluster, hosts, Duration::from_secs(10));
        let hint = if registered < hosts {
            " (fltd does not register yet?)"
        } else {
            ""
        };
        println!(
            "  machines registered: {registered} of {hosts} after {:.1}s{hint}",
            waited.as_secs_f64()
        );
    } else {
        println!("  machines registered: not checked (fltd is not running on every host)");
    }
    cluster.detach().map_err(|e| e.to_string())?;
    let forwarded = match spawn_forwarder(&cluster) {
        Ok(addrs) => Some(addrs),
        Err(e) => {
            eprintln!("cluster: warning: no loopback forward of the API: {e}");
            None
        }
    };
    println!(
        "cluster {id} is up: {hosts} host(s), {:.1}s from boot to ready ({:.1}s in all)",
        booting.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let prefix = if id == DEFAULT_ID {
        String::new()
    } else {
        format!("--id {id} ")
    };
    println!();
    println!("Use it:");
    println!("  ./cluster {prefix}fltctl list-machines            # fltctl inside h1");
    println!("  ./cluster {prefix}fltctl start examples/hello.service");
    if let Some(addrs) = forwarded {
        println!(
            "  export FLTCTL_ENDPOINT={}    # bin/fltctl on this machine",
            addrs.api
        );
        println!("  etcd from this machine: {}", addrs.etcd);
    }
    println!("  ./cluster {prefix}status | exec h1 systemctl status | logs h1 -f | down");
    Ok(ExitCode::SUCCESS)
}

fn command_exists(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}

/// The options of `host`, as flt.conf lines (`key=value`). The API listeners come from
/// flt.socket (socket activation), so `listen` is not among them.
fn fltd_options(cluster: &Cluster, host: &Host) -> Vec<(&'static str, String)> {
    vec![
        ("etcd_servers", cluster.etcd_endpoint()),
        ("public_ip", host.ip().to_string()),
        ("metadata", format!("hostname={}", host.hostname())),
        ("agent_ttl", AGENT_TTL.to_string()),
    ]
}

/// Writes /etc/flt/flt.conf and the shipped `fltd.service` and `flt.socket` (the binary at
/// /opt/flt/bin, the socket also on the host's IP) into the host's root, then starts them.
fn install_fltd(cluster: &Cluster, host: &Host) -> Result<(), String> {
    let root = host.root().map_err(|e| e.to_string())?;
    let mut conf = format!(
        "# Written by ./cluster up for {} of cluster {}.\n",
        host.name(),
        cluster.id()
    );
    for (key, value) in fltd_options(cluster, host) {
        conf.push_str(&format!("{key}={value}\n"));
    }
    let service = FLTD_UNIT.replace(
        "ExecStart=/usr/bin/fltd",
        &format!("ExecStart={BIN_IN_HOST}/fltd"),
    );
    if !service.contains(BIN_IN_HOST) {
        return Err("examples/host/fltd.service has no `ExecStart=/usr/bin/fltd` line".into());
    }
    let socket_dropin = format!(
        "# Written by ./cluster up: the API on the host's IP too, for fltctl from this machine.\n\
         [Socket]\nListenStream={}:{API_PORT}\n",
        host.ip()
    );
    let write = |path: &str, content: &str| -> Result<(), String> {
        let full = root.join(path.trim_start_matches('/'));
        if let Some(dir) = full.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        fs::write(&full, content).map_err(|e| format!("write {}: {e}", full.display()))
    };
    write("/etc/flt/flt.conf", &conf)?;
    write("/etc/systemd/system/fltd.service", &service)?;
    write("/etc/systemd/system/flt.socket", FLT_SOCKET)?;
    write(
        "/etc/systemd/system/flt.socket.d/local-cluster.conf",
        &socket_dropin,
    )?;
    host.exec_ok(&["systemctl", "daemon-reload"])
        .map_err(|e| e.to_string())?;
    host.exec_ok(&["systemctl", "start", "flt.socket"])
        .map_err(|e| e.to_string())?;
    host.exec_ok(&["systemctl", "start", "--no-block", "fltd.service"])
        .map_err(|e| e.to_string())?;
    Ok(())
}

struct FltdState {
    active: bool,
    text: String,
}

/// Waits until fltd is active with its API socket present, or clearly not running.
fn wait_fltd(host: &Host) -> FltdState {
    let started = Instant::now();
    loop {
        let state = is_active(host, "fltd.service");
        let socket = host
            .exec(&["test", "-S", API_SOCKET])
            .is_ok_and(|o| o.status.success());
        let elapsed = started.elapsed();
        if state == "active" && socket {
            return FltdState {
                active: true,
                text: format!(
                    "active, API on unix://{API_SOCKET} and tcp://{}:{API_PORT} ({:.1}s)",
                    host.ip(),
                    elapsed.as_secs_f64()
                ),
            };
        }
        let settled = state != "active" && elapsed > Duration::from_secs(2);
        if settled || elapsed > Duration::from_secs(10) {
            let last = host
                .exec(&[
                    "journalctl",
                    "--no-pager",
                    "-o",
                    "cat",
                    "-n",
                    "1",
                    "_SYSTEMD_UNIT=fltd.service",
                ])
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            let why = if state == "active" {
                format!("no API socket {API_SOCKET} yet")
            } else {
                "not running".to_string()
            };
            return FltdState {
                active: false,
                text: format!("{state}, {why}; last log line: {last:?}"),
            };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn is_active(host: &Host, unit: &str) -> String {
    host.exec(&["systemctl", "is-active", unit])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Counts the machines in the registry (`P/machines/`) until all `hosts` are there.
fn wait_machines(cluster: &Cluster, hosts: usize, timeout: Duration) -> (usize, Duration) {
    let started = Instant::now();
    let path = format!(
        "/v2/keys{}",
        flt_core::registry::Keyspace::default().machines_dir()
    );
    loop {
        let count = cluster
            .etcd()
            .get(&path)
            .ok()
            .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| v["node"]["nodes"].as_array().map(Vec::len))
            .unwrap_or(0);
        if count >= hosts || started.elapsed() >= timeout {
            return (count, started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

struct ForwardAddrs {
    api: String,
    etcd: String,
}

fn read_forward_addrs(state_dir: &Path) -> Option<ForwardAddrs> {
    let text = fs::read_to_string(state_dir.join(FORWARD_ADDRS)).ok()?;
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
    };
    Some(ForwardAddrs {
        api: get("api")?,
        etcd: get("etcd")?,
    })
}

/// Starts `flt-cluster forward` detached (own session) inside the cluster's cgroup, so that
/// `down` kills it with everything else; returns the addresses it listens on.
fn spawn_forwarder(cluster: &Cluster) -> Result<ForwardAddrs, String> {
    let cgroup = cluster.cgroup_dir().join("forward");
    fs::create_dir_all(&cgroup).map_err(|e| format!("create {}: {e}", cgroup.display()))?;
    let state = cluster.state_dir();
    let _ = fs::remove_file(state.join(FORWARD_ADDRS));
    let log_path = state.join("forward.log");
    let log =
        fs::File::create(&log_path).map_err(|e| format!("create {}: {e}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .map_err(|e| format!("dup {}: {e}", log_path.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let mut child = Command::new("/bin/sh")
        .args(["-c", "echo $$ >\"$0/cgroup.procs\" && exec \"$@\""])
        .arg(&cgroup)
        .arg("setsid")
        .arg(&exe)
        .args(["--id", cluster.id(), "forward"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("spawn {} forward: {e}", exe.display()))?;
    let started = Instant::now();
    loop {
        if let Some(addrs) = read_forward_addrs(state) {
            return Ok(addrs);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("forward process exited ({status}): {}", log.trim()));
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(format!(
                "no {} after 10s; see {}",
                FORWARD_ADDRS,
                log_path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The detached forward process: loopback ports of this machine to h1's API and to etcd.
fn forward(id: &str) -> Result<ExitCode, String> {
    let cluster = attach(id)?;
    let target = SocketAddr::from((cluster.host(0).ip(), API_PORT));
    // fleet's port if it is free here, any port otherwise.
    let preferred = SocketAddr::from(([127, 0, 0, 1], API_PORT));
    let listen = if TcpListener::bind(preferred).is_ok() {
        preferred
    } else {
        SocketAddr::from(([127, 0, 0, 1], 0))
    };
    let api = cluster.forward(listen, target).map_err(|e| e.to_string())?;
    let text = format!(
        "api=http://{}\netcd={}\n",
        api.local_addr(),
        cluster.etcd_local_endpoint()
    );
    let path = cluster.state_dir().join(FORWARD_ADDRS);
    let tmp = path.with_extension("new");
    fs::write(&tmp, text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, &path).map_err(|e| format!("rename to {}: {e}", path.display()))?;
    eprintln!(
        "forwarding {} to {} (API of h1) and {} to etcd",
        api.local_addr(),
        api.target(),
        cluster.etcd_local_endpoint()
    );
    // Runs until `down` kills the cluster's cgroup.
    loop {
        std::thread::park();
    }
}

fn attach(id: &str) -> Result<Cluster, String> {
    Cluster::attach(id).map_err(|e| match e {
        testhost::Error::NotFound { .. } => {
            format!("{e}\n(start it with `./cluster up`, clean leftovers with `./cluster down`)")
        }
        e => e.to_string(),
    })
}

fn down(id: &str) -> Result<ExitCode, String> {
    let started = Instant::now();
    let existed = Path::new(STATE_ROOT).join(id).exists();
    testhost::destroy(id).map_err(|e| format!("down {id}: {e}"))?;
    if existed {
        println!(
            "cluster {id}: stopped and removed in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("cluster {id}: not running; nothing left behind");
    }
    Ok(ExitCode::SUCCESS)
}

fn status(id: &str) -> Result<ExitCode, String> {
    let cluster = match Cluster::attach(id) {
        Ok(cluster) => cluster,
        Err(testhost::Error::NotFound { detail, .. }) => {
            println!("cluster {id}: not running ({detail})");
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e.to_string()),
    };
    let etcd = if cluster.etcd().is_running() {
        "running"
    } else {
        "NOT running"
    };
    println!(
        "cluster {id}: {} host(s); etcd {etcd} at {}",
        cluster.hosts().len(),
        cluster.etcd_endpoint()
    );
    for host in cluster.hosts() {
        let fltd = if host.is_running() {
            format!("fltd {}", is_active(host, "fltd.service"))
        } else {
            "host NOT running".to_string()
        };
        println!(
            "  {:<4} {:<15} {:<24} {fltd}",
            host.name(),
            host.ip().to_string(),
            host.hostname()
        );
    }
    match read_forward_addrs(cluster.state_dir()) {
        Some(addrs) => {
            println!("API of h1 from this machine: {}", addrs.api);
            println!("etcd from this machine: {}", addrs.etcd);
        }
        None => println!("no loopback forward (use ./cluster fltctl)"),
    }
    println!("state: {}", cluster.state_dir().display());
    Ok(ExitCode::SUCCESS)
}

/// `h1`, `1` or the hostname `<id>-h1`.
fn find_host<'a>(cluster: &'a Cluster, name: &str) -> Result<&'a Host, String> {
    let wanted = match name.parse::<usize>() {
        Ok(n) => format!("h{n}"),
        Err(_) => name
            .strip_prefix(&format!("{}-", cluster.id()))
            .unwrap_or(name)
            .to_string(),
    };
    cluster
        .hosts()
        .iter()
        .find(|h| h.name() == wanted)
        .ok_or_else(|| {
            let names: Vec<&str> = cluster.hosts().iter().map(Host::name).collect();
            format!(
                "no host {name:?} in cluster {} (hosts: {names:?})",
                cluster.id()
            )
        })
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    ExitCode::from(
        status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(1),
    )
}

fn run_in(host: &Host, args: &[&str]) -> Result<ExitCode, String> {
    let mut command = host.command(args).map_err(|e| e.to_string())?;
    let status = command
        .status()
        .map_err(|e| format!("run in {}: {e}", host.name()))?;
    Ok(exit_code(status))
}

fn exec(id: &str, args: &[String]) -> Result<ExitCode, String> {
    let [host, command @ ..] = args else {
        return Err("usage: exec HOST CMD...".into());
    };
    if command.is_empty() {
        return Err("usage: exec HOST CMD...".into());
    }
    let cluster = attach(id)?;
    let host = find_host(&cluster, host)?;
    // The caller's terminal type, so that an interactive shell or `systemctl status` looks right.
    let term = format!(
        "TERM={}",
        std::env::var("TERM").unwrap_or_else(|_| "dumb".into())
    );
    let mut all = vec!["env", term.as_str()];
    all.extend(command.iter().map(String::as_str));
    run_in(host, &all)
}

/// Runs bin/fltctl inside the first running host, in the directory that mirrors the caller's
/// (the repository is bound at /opt/flt/repo), so relative unit-file paths work.
fn fltctl(id: &str, args: &[String]) -> Result<ExitCode, String> {
    let cluster = attach(id)?;
    let host = cluster
        .hosts()
        .iter()
        .find(|h| h.is_running())
        .ok_or_else(|| format!("no host of cluster {id} is running"))?;
    let repo = repo_dir();
    let cwd = std::env::var_os("FLT_CLUSTER_CWD")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| repo.clone());
    let inside = dir_in_host(
        &cwd.canonicalize().unwrap_or(cwd),
        &repo.canonicalize().unwrap_or(repo),
    );
    let inside = inside.to_string_lossy().into_owned();
    let endpoint = format!("FLTCTL_ENDPOINT=unix://{API_SOCKET}");
    let fltctl = format!("{BIN_IN_HOST}/fltctl");
    let mut all = vec![
        "env",
        "-C",
        inside.as_str(),
        endpoint.as_str(),
        fltctl.as_str(),
    ];
    all.extend(args.iter().map(String::as_str));
    run_in(host, &all)
}

/// Where `cwd` (on the machine) is inside a host: the same place below the repository bind,
/// or the repository's root if `cwd` is outside it.
fn dir_in_host(cwd: &Path, repo: &Path) -> PathBuf {
    Path::new(REPO_IN_HOST).join(cwd.strip_prefix(repo).unwrap_or(Path::new("")))
}

fn logs(id: &str, args: &[String]) -> Result<ExitCode, String> {
    let [host, extra @ ..] = args else {
        return Err("usage: logs HOST [JOURNALCTL ARGS...]".into());
    };
    let cluster = attach(id)?;
    let host = find_host(&cluster, host)?;
    // From the journal files on this machine's disk: works while the host is down too.
    let dir = host.state_dir().join("journal").join(host.machine_id());
    let mut command = Command::new("journalctl");
    command.arg("--no-pager").arg("-D").arg(&dir);
    if extra.is_empty() {
        command.args(["-u", "fltd.service"]);
    } else {
        command.args(extra);
    }
    let status = command
        .status()
        .map_err(|e| format!("run journalctl -D {}: {e}", dir.display()))?;
    Ok(exit_code(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_directory_maps_into_the_repository_bind() {
        let repo = Path::new("/src/flt");
        assert_eq!(dir_in_host(repo, repo), Path::new("/opt/flt/repo"));
        assert_eq!(
            dir_in_host(Path::new("/src/flt/examples"), repo),
            Path::new("/opt/flt/repo/examples")
        );
        assert_eq!(
            dir_in_host(Path::new("/home/me"), repo),
            Path::new("/opt/flt/repo")
        );
        assert_eq!(
            dir_in_host(Path::new("/src/flt-other"), repo),
            Path::new("/opt/flt/repo"),
            "a sibling with the repository's name as prefix is outside it"
        );
    }
}
