//! The local-cluster CLI (`./cluster`, `tests/src/bin/flt-cluster.rs`) end to end on real test
//! hosts, and the detached mode of `flt_tests::testhost` it is built on.
//!
//! Never uses the CLI's default id `flt-local`, so a developer's cluster can run meanwhile.
//! Needs root and the tools listed in `flt_tests::testhost` (or `FLT_SKIP_HOST_TESTS=1`).

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use flt_tests::fltcluster::wait_for;
use std::time::{Duration, Instant};

use flt_tests::testhost::{Cluster, ClusterConfig, Error, STATE_ROOT};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The debug fltd and fltctl, built once per test binary (cargo does not build other
/// packages' binaries for this package's tests).
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "-p", "fltd", "-p", "fltctl"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // Drop what cargo set for this test crate: build scripts track some of it (ring's
        // CARGO_MANIFEST_DIR), and a changed value would rebuild them here and again outside.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if [
                "CARGO_PKG_",
                "CARGO_BIN_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
            ]
            .iter()
            .any(|p| key.starts_with(p))
                || [
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&&*key)
            {
                build.env_remove(&*key);
            }
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p fltd -p fltctl: {status}");
        // The test binary is <target>/debug/deps/cluster_cli-<hash>.
        let exe = std::env::current_exe().expect("test binary path");
        let debug = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/debug")
            .to_path_buf();
        for binary in ["fltd", "fltctl"] {
            assert!(debug.join(binary).is_file(), "{}/{binary}", debug.display());
        }
        debug
    })
}

/// Removes the detached cluster `id` when the test ends, also when it fails half-way.
struct DestroyOnDrop(String);

impl Drop for DestroyOnDrop {
    fn drop(&mut self) {
        if let Err(e) = flt_tests::testhost::destroy(&self.0) {
            eprintln!("cleaning up cluster {}: {e}", self.0);
        }
    }
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self, what: &str) -> String {
        assert_eq!(
            self.code,
            Some(0),
            "{what} failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self.stdout
    }
}

/// Runs the CLI with `--id id`, the way `./cluster` does.
fn cli(id: &str, args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_flt-cluster"))
        .args(["--id", id])
        .args(args)
        .env_remove("FLT_CLUSTER_ID")
        .output()
        .expect("run flt-cluster");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn up(id: &str, hosts: usize) -> String {
    let bins = bin_dir().to_string_lossy().into_owned();
    let started = Instant::now();
    let out = cli(
        id,
        &["up", &hosts.to_string(), "--no-build", "--bin-dir", &bins],
    )
    .ok("up");
    println!(
        "cluster {id}: `up {hosts}` took {:.2}s\n{out}",
        started.elapsed().as_secs_f64()
    );
    out
}

fn cgroup_dir(id: &str) -> PathBuf {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let root = mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_string())
        })
        .expect("cgroup2 mount");
    Path::new(&root).join("flt-th").join(id)
}

fn netns_of(pid: u32) -> u64 {
    fs::metadata(format!("/proc/{pid}/ns/net"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("netns of a live host")
}

fn netns_held(inode: u64) -> bool {
    fs::read_dir("/proc").expect("/proc").flatten().any(|e| {
        fs::metadata(e.path().join("ns/net"))
            .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == inode)
    })
}

/// `down` must leave no cgroup, state dir or network namespace of the cluster behind.
fn assert_gone(id: &str, netns: &[u64]) {
    assert!(!cgroup_dir(id).exists(), "cgroup of {id} left behind");
    let state = Path::new(STATE_ROOT).join(id);
    assert!(!state.exists(), "{} left behind", state.display());
    for inode in netns {
        assert!(!netns_held(*inode), "network namespace {inode} still held");
    }
}

#[test]
fn up_status_exec_fltctl_and_down_leave_nothing_behind() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let id = format!("flt-cli-{}", std::process::id());
    let _cleanup = DestroyOnDrop(id.clone());
    let out = up(&id, 2);
    for line in [
        "h1 up: 10.213.0.11",
        "h2 up: 10.213.0.12",
        "h1: fltd",
        "is up: 2 host(s)",
    ] {
        assert!(out.contains(line), "`up` printed no {line:?}:\n{out}");
    }

    // The CLI has exited; the cluster lives on and the harness finds it again.
    let cluster = Cluster::attach(&id).unwrap_or_else(|e| panic!("attach {id}: {e}"));
    let pids: Vec<u32> = cluster
        .hosts()
        .iter()
        .map(|h| {
            h.pid()
                .unwrap_or_else(|| panic!("{} is not running", h.name()))
        })
        .collect();
    let netns: Vec<u64> = pids.iter().map(|p| netns_of(*p)).collect();
    // Another cluster's start sweeps clusters whose owner is gone: never this detached one.
    drop(
        Cluster::start(ClusterConfig::new(1))
            .unwrap_or_else(|e| panic!("a test cluster next to {id}: {e}")),
    );
    for (host, pid) in cluster.hosts().iter().zip(&pids) {
        assert_eq!(host.pid(), Some(*pid), "{} was swept", host.name());
    }

    for host in cluster.hosts() {
        let name = host.name();
        // fltd runs as a service of the host's systemd, from the read-only bin/ bind. Until
        // the daemon is wired it may exit at once: then it is restarting ("activating").
        let state = cli(
            &id,
            &["exec", name, "systemctl", "is-active", "fltd.service"],
        );
        let state = state.stdout.trim();
        assert!(
            state == "active" || state == "activating",
            "{name}: fltd is {state:?}"
        );
        let unit = cli(
            &id,
            &[
                "exec",
                name,
                "systemctl",
                "cat",
                "--no-pager",
                "fltd.service",
            ],
        )
        .ok("systemctl cat fltd");
        assert!(unit.contains("ExecStart=/opt/flt/bin/fltd"), "{unit}");
        assert!(unit.contains("Type=notify"), "not the shipped unit: {unit}");
        let socket = cli(
            &id,
            &["exec", name, "systemctl", "cat", "--no-pager", "flt.socket"],
        )
        .ok("systemctl cat flt.socket");
        assert!(
            socket.contains("ListenStream=/var/run/flt.sock")
                && socket.contains(&format!("ListenStream={}:54728", host.ip())),
            "{socket}"
        );
        let conf = cli(&id, &["exec", name, "cat", "/etc/flt/flt.conf"]).ok("cat flt.conf");
        let ip = host.ip();
        for line in [
            format!("etcd_servers={}", cluster.etcd_endpoint()),
            format!("public_ip={ip}"),
            format!("metadata=hostname={}", host.hostname()),
            "agent_ttl=10s".to_string(),
        ] {
            assert!(
                conf.lines().any(|l| l == line),
                "{name}: no {line:?} in\n{conf}"
            );
        }
        // The daemon's startup line (naming this build's version) reaches the unit's journal,
        // and its API answers on the unix socket `./cluster fltctl` uses and on the host's IP.
        let started = format!("Starting fltd version {VERSION}");
        wait_for(
            &format!("fltd's startup line in {name}'s journal"),
            Duration::from_secs(15),
            || {
                let log = cli(
                    &id,
                    &["logs", name, "-o", "cat", "_SYSTEMD_UNIT=fltd.service"],
                );
                if log.stdout.contains(&started) {
                    Ok(())
                } else {
                    Err(log.stdout)
                }
            },
        );
        let tcp = format!("http://{ip}:54728/flt/v1/machines");
        wait_for(
            &format!("{name}: the API on unix:///var/run/flt.sock and {tcp}"),
            Duration::from_secs(10),
            || {
                let unix = cli(
                    &id,
                    &[
                        "exec",
                        name,
                        "curl",
                        "-sf",
                        "--unix-socket",
                        "/var/run/flt.sock",
                        "http://flt/flt/v1/machines",
                    ],
                );
                let over_tcp = cli(&id, &["exec", name, "curl", "-sf", &tcp]);
                if unix.code == Some(0) && over_tcp.code == Some(0) {
                    Ok(())
                } else {
                    Err(format!("{unix:?} {over_tcp:?}"))
                }
            },
        );
    }

    let status = cli(&id, &["status"]).ok("status");
    for word in [
        "h1",
        "10.213.0.11",
        "h2",
        "10.213.0.12",
        "fltd ",
        "etcd running",
    ] {
        assert!(status.contains(word), "status lacks {word:?}:\n{status}");
    }
    assert_eq!(
        cli(&id, &["exec", "h2", "hostname"]).ok("exec").trim(),
        format!("{id}-h2")
    );
    assert_eq!(cli(&id, &["exec", "2", "sh", "-c", "exit 7"]).code, Some(7));
    assert_eq!(
        cli(&id, &["exec", "h9", "true"]).code,
        Some(1),
        "unknown host"
    );
    assert_eq!(
        cli(&id, &["fltctl", "version"]).ok("fltctl version").trim(),
        format!("fltctl version {VERSION}")
    );
    cli(
        &id,
        &[
            "exec",
            "h1",
            "test",
            "-f",
            "/opt/flt/repo/examples/hello.service",
        ],
    )
    .ok("examples/ visible in the host");

    // The detached loopback forward to h1's API listens on this machine.
    let addrs = fs::read_to_string(cluster.state_dir().join("forward.addrs")).expect("addrs");
    let api = addrs
        .lines()
        .find_map(|l| l.strip_prefix("api=http://"))
        .unwrap_or_else(|| panic!("no api= in {addrs}"));
    TcpStream::connect_timeout(&api.parse().expect("api addr"), Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect to the API forward {api}: {e}"));

    let bins = bin_dir().to_string_lossy().into_owned();
    let again = cli(&id, &["up", "1", "--no-build", "--bin-dir", &bins]);
    assert_ne!(again.code, Some(0), "a second `up` of a live cluster");
    assert!(again.stderr.contains("already up"), "{}", again.stderr);

    let started = Instant::now();
    cli(&id, &["down"]).ok("down");
    println!("`down` took {:.2}s", started.elapsed().as_secs_f64());
    assert_gone(&id, &netns);
    for pid in pids {
        // Gone, or a zombie until the machine's init reaps the orphan.
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        assert!(
            state.is_none_or(|s| s.starts_with('Z')),
            "pid {pid} survived down: {stat}"
        );
    }
    assert!(
        cli(&id, &["down"])
            .ok("second down")
            .contains("not running"),
        "down is idempotent"
    );
    assert_eq!(cli(&id, &["status"]).code, Some(3), "status after down");
    drop(cluster); // a detached handle: dropping it after down must not fail
}

#[test]
fn down_sweeps_a_cluster_whose_state_files_are_gone() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let id = format!("flt-cli-crash-{}", std::process::id());
    let _cleanup = DestroyOnDrop(id.clone());
    up(&id, 1);
    let cluster = Cluster::attach(&id).unwrap_or_else(|e| panic!("attach {id}: {e}"));
    let pid = cluster.host(0).pid().expect("h1 runs");
    let netns = netns_of(pid);
    // As after a crash or a careless rm: only the cgroup still knows the processes.
    for file in ["detached.json", "owner", "infra.pid", "forward.addrs"] {
        fs::remove_file(cluster.state_dir().join(file)).expect("remove state file");
    }
    assert_eq!(cli(&id, &["status"]).code, Some(3));
    cli(&id, &["down"]).ok("down");
    assert_gone(&id, &[netns]);
}

#[test]
fn detached_cluster_outlives_its_handle_until_teardown() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let id = format!("flt-detach-{}", std::process::id());
    let _cleanup = DestroyOnDrop(id.clone());
    let cluster = Cluster::start(ClusterConfig {
        id: Some(id.clone()),
        detached: true,
        ..ClusterConfig::new(1)
    })
    .unwrap_or_else(|e| panic!("start detached {id}: {e}"));
    assert!(cluster.is_detached());
    let (pid, machine_id) = (
        cluster.host(0).pid().expect("h1 runs"),
        cluster.host(0).machine_id().to_string(),
    );
    drop(cluster);

    let mut again = Cluster::attach(&id).unwrap_or_else(|e| panic!("attach {id}: {e}"));
    let h1 = again.host(0);
    assert_eq!(
        h1.pid(),
        Some(pid),
        "same PID 1 after the handle was dropped"
    );
    assert_eq!(h1.machine_id(), machine_id);
    assert_eq!(
        h1.exec_ok(&["hostname"]).expect("exec").trim(),
        format!("{id}-h1")
    );
    let health = again
        .etcd()
        .get("/health")
        .expect("etcd via the new handle");
    assert!(health.contains("\"health\":\"true\""), "{health}");
    // A second start with the same id is refused while the detached cluster lives.
    let second = Cluster::start(ClusterConfig {
        id: Some(id.clone()),
        ..ClusterConfig::new(1)
    });
    assert!(matches!(second, Err(Error::InUse { .. })), "{second:?}");

    let netns = netns_of(pid);
    again.teardown().expect("teardown of an attached cluster");
    assert_gone(&id, &[netns]);
    assert!(matches!(Cluster::attach(&id), Err(Error::NotFound { .. })));
}

#[test]
fn an_up_killed_while_booting_is_swept_by_the_next_up() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let id = format!("flt-cli-killed-{}", std::process::id());
    let _cleanup = DestroyOnDrop(id.clone());
    let bins = bin_dir().to_string_lossy().into_owned();
    let mut first = Command::new(env!("CARGO_BIN_EXE_flt-cluster"))
        .args(["--id", &id, "up", "2", "--no-build", "--bin-dir", &bins])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn flt-cluster up");
    let pid_file = Path::new(STATE_ROOT).join(&id).join("hosts/h1/pid");
    wait_for(
        "h1 of the first up to start",
        Duration::from_secs(30),
        || {
            if pid_file.exists() {
                Ok(())
            } else {
                Err(format!("no {}", pid_file.display()))
            }
        },
    );
    first.kill().expect("kill the first up");
    // SIGKILL lands asynchronously (later still if the process sits in a mount or unshare call):
    // wait until it is a zombie, not yet reaped, which must count as gone.
    let stat = format!("/proc/{}/stat", first.id());
    wait_for("the first up to die", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&stat).map_err(|e| format!("{stat}: {e}"))?;
        let state = text.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        if state == Some(Some('Z')) {
            Ok(())
        } else {
            Err(format!("state {state:?}"))
        }
    });
    let out = up(&id, 1);
    assert!(out.contains("is up: 1 host(s)"), "{out}");
    first.wait().expect("reap the first up");
    cli(&id, &["down"]).ok("down");
    assert_gone(&id, &[]);
}
