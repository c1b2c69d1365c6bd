//! Integration tests on real test hosts (`flt_tests::testhost`): the harness itself, and
//! `flt_driver::systemd` against the real systemd 252 running as PID 1 inside a host.
//!
//! Needs root and the tools listed in `flt_tests::testhost`; fails with the reason if they are
//! missing, unless `FLT_SKIP_HOST_TESTS=1`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use flt_tests::testhost::{Bind, Cluster, ClusterConfig, Host, STATE_ROOT};

/// Polls `probe` until it returns `Some`, or panics saying what it waited for and the last
/// value it saw.
fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if start.elapsed() >= timeout => {
                panic!(
                    "timed out after {:.1}s waiting for {what}; last: {last}",
                    start.elapsed().as_secs_f64()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn start(config: ClusterConfig) -> Cluster {
    let hosts = config.hosts;
    let cluster = Cluster::start(config)
        .unwrap_or_else(|e| panic!("starting a {hosts}-host test cluster: {e}"));
    println!(
        "test cluster {}: {hosts} host(s) booted in {:.2}s",
        cluster.id(),
        cluster.boot_time().as_secs_f64()
    );
    cluster
}

fn exec(host: &Host, args: &[&str]) -> String {
    host.exec_ok(args)
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_string()
}

/// curl inside `host`; returns the body or curl's error.
fn curl_in(host: &Host, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["curl", "-sS", "-m", "2"];
    all.extend_from_slice(args);
    let out = host.exec(&all).map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "curl exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

mod harness {
    use super::*;

    #[test]
    fn hosts_boot_with_distinct_identities_and_reach_etcd() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let target = Bind::cargo_target_dir();
        let cluster = start(ClusterConfig {
            binds: vec![target.clone()],
            ..ClusterConfig::new(3)
        });
        let etcd = cluster.etcd_endpoint();
        let mut machine_ids = BTreeSet::new();
        let mut boot_ids = BTreeSet::new();
        let mut ips = BTreeSet::new();
        for host in cluster.hosts() {
            let machine_id = exec(host, &["cat", "/etc/machine-id"]);
            assert_eq!(
                machine_id,
                host.machine_id(),
                "{}: /etc/machine-id",
                host.name()
            );
            machine_ids.insert(machine_id);
            boot_ids.insert(exec(host, &["cat", "/proc/sys/kernel/random/boot_id"]));
            assert_eq!(exec(host, &["hostname"]), host.hostname());
            let addr = exec(host, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
            assert!(
                addr.contains(&format!("{}/24", host.ip())),
                "{}: eth0 has {addr}",
                host.name()
            );
            ips.insert(host.ip());
            // The safety properties the init script promises.
            assert_eq!(
                exec(host, &["cat", "/proc/1/comm"]),
                "systemd",
                "{}: PID 1",
                host.name()
            );
            assert_eq!(exec(host, &["stat", "-f", "-c", "%T", "/"]), "overlayfs");
            assert_eq!(exec(host, &["stat", "-f", "-c", "%T", "/tmp"]), "tmpfs");
            assert_eq!(exec(host, &["stat", "-f", "-c", "%T", "/run"]), "tmpfs");
            assert!(
                host.exec(&["test", "-w", "/proc/sys/kernel/hostname"])
                    .is_ok_and(|o| !o.status.success())
            );
            assert!(
                host.exec(&["test", "-e", "/dev/watchdog"])
                    .is_ok_and(|o| !o.status.success())
            );
            let health = curl_in(host, &[&format!("{etcd}/health")])
                .unwrap_or_else(|e| panic!("{}: {e}", host.name()));
            assert!(
                health.contains("\"health\":\"true\""),
                "{}: etcd /health said {health}",
                host.name()
            );
        }
        assert_eq!(machine_ids.len(), 3, "machine ids {machine_ids:?}");
        assert!(
            !machine_ids.contains(
                fs::read_to_string("/etc/machine-id")
                    .unwrap_or_default()
                    .trim()
            )
        );
        assert_eq!(boot_ids.len(), 3, "boot ids {boot_ids:?}");
        assert_eq!(ips.len(), 3);

        // A key written from h1 is read back from h3 and from the test process.
        let key = format!("{etcd}/v2/keys/testhost/written-by-h1");
        curl_in(
            cluster.host(0),
            &["-f", "-X", "PUT", &key, "-d", "value=hello"],
        )
        .unwrap_or_else(|e| panic!("h1 PUT: {e}"));
        let from_h3 =
            curl_in(cluster.host(2), &["-f", &key]).unwrap_or_else(|e| panic!("h3 GET: {e}"));
        assert!(from_h3.contains("\"value\":\"hello\""), "h3 read {from_h3}");
        let local = cluster
            .etcd()
            .get("/v2/keys/testhost/written-by-h1")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            local.contains("\"value\":\"hello\""),
            "test process read {local}"
        );
        // Binaries built by cargo run inside through the read-only bind of the target dir.
        let me = std::env::current_exe().expect("test binary path");
        let relative = me
            .strip_prefix(&target.source)
            .expect("test binary lives in the cargo target dir");
        let inside = target.target.join(relative);
        let listed = exec(cluster.host(1), &[&inside.to_string_lossy(), "--list"]);
        assert!(
            listed.contains("hosts_boot_with_distinct_identities_and_reach_etcd"),
            "{listed}"
        );
        let touch = cluster.host(1).exec(&[
            "touch",
            &target.target.join("flt-write-probe").to_string_lossy(),
        ]);
        assert!(
            touch.is_ok_and(|o| !o.status.success()),
            "the target dir bind must be read-only"
        );
        // Daemons run as transient units of the host's systemd.
        cluster
            .host(1)
            .run_unit("flt-sleeper", &["/bin/sleep", "600"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            exec(cluster.host(1), &["systemctl", "is-active", "flt-sleeper"]),
            "active"
        );

        // Hosts reach each other over the bridge.
        let to_h1 = curl_in(
            cluster.host(1),
            &[
                "-o",
                "/dev/null",
                &format!("http://{}:1/", cluster.host(0).ip()),
            ],
        );
        assert!(
            to_h1.as_ref().is_err_and(|e| e.contains("exit Some(7)")),
            "h2 -> h1:1 should be refused, got {to_h1:?}"
        );
    }

    #[test]
    fn killed_host_is_gone_and_boots_again_with_same_identity() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let cluster = start(ClusterConfig::new(2));
        let (h1, h2) = (cluster.host(0), cluster.host(1));
        let boot_before = exec(h1, &["cat", "/proc/sys/kernel/random/boot_id"]);
        exec(
            h1,
            &["systemd-cat", "-t", "flt-marker", "echo", "before-kill"],
        );
        // journald reads the stream asynchronously: wait until it has the line, then flush.
        wait_for(
            "h1's journald to receive the marker",
            Duration::from_secs(5),
            || {
                let text = h1
                    .exec_ok(&["journalctl", "--no-pager", "-t", "flt-marker"])
                    .map_err(|e| e.to_string())?;
                if text.contains("before-kill") {
                    Ok(())
                } else {
                    Err(text)
                }
            },
        );
        exec(h1, &["journalctl", "--sync"]);
        let old_pid = h1.pid().expect("h1 runs");

        let started = Instant::now();
        h1.kill().unwrap_or_else(|e| panic!("kill h1: {e}"));
        println!(
            "kill h1 (verified: cgroup empty, netns gone, veth gone) took {:.2}s",
            started.elapsed().as_secs_f64()
        );
        assert!(!h1.is_running());
        // The PID may be a zombie awaiting its reaper, or reused by an unrelated process, but
        // it is no live process of the cluster.
        let stat = fs::read_to_string(format!("/proc/{old_pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']));
        let old_cgroup = fs::read_to_string(format!("/proc/{old_pid}/cgroup")).unwrap_or_default();
        assert!(
            zombie || !old_cgroup.contains(cluster.id()),
            "pid {old_pid} alive in the cluster: {stat}"
        );
        assert!(
            h1.exec(&["true"]).is_err(),
            "exec into a killed host must fail"
        );
        let to_h1 = curl_in(h2, &["-o", "/dev/null", &format!("http://{}:1/", h1.ip())]);
        assert!(
            to_h1.is_err() && !to_h1.as_ref().is_err_and(|e| e.contains("exit Some(7)")),
            "h1 must not answer: {to_h1:?}"
        );
        // The journal survives on disk.
        let logs = wait_for(
            "journal of killed h1 to show the marker",
            Duration::from_secs(5),
            || {
                let text = h1.logs(&["-t", "flt-marker"]).map_err(|e| e.to_string())?;
                if text.contains("before-kill") {
                    Ok(text)
                } else {
                    Err(text)
                }
            },
        );
        assert!(logs.contains("before-kill"));

        let started = Instant::now();
        h1.start().unwrap_or_else(|e| panic!("restart h1: {e}"));
        println!("h1 booted again in {:.2}s", started.elapsed().as_secs_f64());
        assert_eq!(exec(h1, &["cat", "/etc/machine-id"]), h1.machine_id());
        assert_ne!(
            exec(h1, &["cat", "/proc/sys/kernel/random/boot_id"]),
            boot_before,
            "new boot id after restart"
        );
        let boots = h1.logs(&["--list-boots"]).unwrap_or_else(|e| panic!("{e}"));
        let boot_lines = boots.lines().filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|idx| idx.parse::<i32>().is_ok())
        });
        assert_eq!(boot_lines.count(), 2, "two boots in the journal: {boots}");
        curl_in(h1, &[&format!("{}/health", cluster.etcd_endpoint())])
            .unwrap_or_else(|e| panic!("h1 -> etcd after restart: {e}"));

        // Graceful stop: systemd powers off and the host is gone.
        let started = Instant::now();
        h1.stop().unwrap_or_else(|e| panic!("stop h1: {e}"));
        println!(
            "graceful stop of h1 took {:.2}s",
            started.elapsed().as_secs_f64()
        );
        assert!(!h1.is_running());
        assert!(h2.is_running());
    }

    #[test]
    fn network_faults_freeze_and_etcd_restart() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let cluster = start(ClusterConfig::new(2));
        let (h1, h2) = (cluster.host(0), cluster.host(1));
        let health = format!("{}/health", cluster.etcd_endpoint());

        h1.partition_from_etcd().unwrap_or_else(|e| panic!("{e}"));
        let cut = curl_in(h1, &["-m", "1", &health]);
        assert!(
            cut.as_ref().is_err_and(|e| e.contains("exit Some(28)")),
            "partitioned h1 -> etcd must time out: {cut:?}"
        );
        curl_in(h2, &[&health]).unwrap_or_else(|e| panic!("h2 must still reach etcd: {e}"));
        let h1_to_h2 = curl_in(h1, &["-o", "/dev/null", &format!("http://{}:1/", h2.ip())]);
        assert!(
            h1_to_h2.as_ref().is_err_and(|e| e.contains("exit Some(7)")),
            "h1 still reaches h2: {h1_to_h2:?}"
        );
        h1.heal().unwrap_or_else(|e| panic!("{e}"));
        curl_in(h1, &[&health]).unwrap_or_else(|e| panic!("healed h1 -> etcd: {e}"));

        cluster
            .partition_pair(0, 1)
            .unwrap_or_else(|e| panic!("{e}"));
        let pair = curl_in(
            h1,
            &[
                "-m",
                "1",
                "-o",
                "/dev/null",
                &format!("http://{}:1/", h2.ip()),
            ],
        );
        assert!(
            pair.as_ref().is_err_and(|e| e.contains("exit Some(28)")),
            "h1 -> h2 must time out: {pair:?}"
        );
        curl_in(h1, &[&health]).unwrap_or_else(|e| panic!("pair partition must not cut etcd: {e}"));
        cluster.heal_all().unwrap_or_else(|e| panic!("{e}"));

        h1.net_down().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            curl_in(h1, &["-m", "1", &health]).is_err(),
            "cable pulled: etcd must be unreachable"
        );
        h1.net_up().unwrap_or_else(|e| panic!("{e}"));
        wait_for(
            "h1 to reach etcd after net_up",
            Duration::from_secs(5),
            || curl_in(h1, &[&health]),
        );

        h1.freeze().unwrap_or_else(|e| panic!("{e}"));
        let events = fs::read_to_string(cluster_cgroup(&cluster).join("h1/cgroup.events"))
            .unwrap_or_default();
        assert!(events.contains("frozen 1"), "h1 cgroup.events: {events}");
        h1.thaw().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(exec(h1, &["systemctl", "is-system-running"]), "running");

        let started = Instant::now();
        cluster.etcd_restart().unwrap_or_else(|e| panic!("{e}"));
        println!("etcd restart took {:.2}s", started.elapsed().as_secs_f64());
        cluster.etcd_stop().unwrap_or_else(|e| panic!("{e}"));
        assert!(!cluster.etcd().is_running());
        let down = curl_in(h2, &[&health]);
        assert!(
            down.as_ref().is_err_and(|e| e.contains("exit Some(7)")),
            "stopped etcd must refuse: {down:?}"
        );
        cluster.etcd_start().unwrap_or_else(|e| panic!("{e}"));
        curl_in(h2, &[&health]).unwrap_or_else(|e| panic!("h2 -> restarted etcd: {e}"));
    }

    fn cluster_cgroup(cluster: &Cluster) -> std::path::PathBuf {
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let root = mounts
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_string())
            })
            .expect("cgroup2 mount");
        Path::new(&root).join("flt-th").join(cluster.id())
    }

    #[test]
    fn fixed_id_is_exclusive_and_destroy_removes_a_live_cluster() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let id = format!("flt-fixed-{}", std::process::id());
        let fixed = || ClusterConfig {
            id: Some(id.clone()),
            ..ClusterConfig::new(1)
        };
        let first = start(fixed());
        let second = Cluster::start(fixed());
        assert!(
            matches!(second, Err(flt_tests::testhost::Error::InUse { .. })),
            "a live cluster's id must not be reused: {second:?}"
        );
        let pid = first.host(0).pid().expect("h1 runs");
        flt_tests::testhost::destroy(&id).unwrap_or_else(|e| panic!("destroy {id}: {e}"));
        assert!(!first.host(0).is_running(), "pid {pid} survived destroy");
        assert!(!first.state_dir().exists());
        drop(first); // teardown after destroy finds nothing left and must not fail
        let again = start(fixed());
        assert!(again.host(0).is_running());
    }

    /// Figures, not assertions: `cargo test -p flt-tests --test systemd -- --ignored
    /// --nocapture boot_time_figures`. Boots 1 and 3 hosts three times each, one at a time.
    #[test]
    #[ignore = "benchmark: prints boot and teardown times"]
    fn boot_time_figures() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        for hosts in [1, 3] {
            for round in 1..=3 {
                let cluster = start(ClusterConfig::new(hosts));
                let boot = cluster.boot_time();
                let started = Instant::now();
                drop(cluster);
                println!(
                    "boot figures: {hosts} host(s), round {round}: etcd + all systemd running in {:.2}s, teardown {:.2}s",
                    boot.as_secs_f64(),
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }

    #[test]
    fn teardown_leaves_no_cgroup_mount_netns_or_state() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let links_before = std::process::Command::new("ip")
            .args(["-o", "link"])
            .output()
            .expect("ip link")
            .stdout;
        let cluster = start(ClusterConfig::new(1));
        let cgroup = cluster_cgroup(&cluster);
        let state = cluster.state_dir().to_path_buf();
        assert!(state.starts_with(STATE_ROOT));
        assert!(cgroup.is_dir(), "{} exists while running", cgroup.display());
        let pid = cluster.host(0).pid().expect("h1 runs");
        let netns = fs::metadata(format!("/proc/{pid}/ns/net"))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .expect("netns");
        let mntns = fs::metadata(format!("/proc/{pid}/ns/mnt"))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .expect("mntns");
        // A stray process started inside the host must be swept too.
        cluster
            .host(0)
            .exec_ok(&["sh", "-c", "setsid sleep 600 >/dev/null 2>&1 &"])
            .unwrap_or_else(|e| panic!("{e}"));

        let started = Instant::now();
        drop(cluster);
        println!(
            "teardown of a 1-host cluster took {:.2}s",
            started.elapsed().as_secs_f64()
        );

        assert!(!cgroup.exists(), "cgroup {} left behind", cgroup.display());
        assert!(!state.exists(), "state dir {} left behind", state.display());
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        assert!(
            !mountinfo.contains(&*state.to_string_lossy()),
            "mounts under {} left behind",
            state.display()
        );
        for entry in fs::read_dir("/proc").expect("/proc").flatten() {
            for (ns, inode) in [("net", netns), ("mnt", mntns)] {
                let held = fs::metadata(entry.path().join("ns").join(ns))
                    .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == inode);
                assert!(
                    !held,
                    "process {:?} still holds the host's {ns} namespace",
                    entry.file_name()
                );
            }
        }
        let links_after = std::process::Command::new("ip")
            .args(["-o", "link"])
            .output()
            .expect("ip link")
            .stdout;
        assert_eq!(
            String::from_utf8_lossy(&links_before),
            String::from_utf8_lossy(&links_after),
            "machine's links changed"
        );
    }
}

mod driver {
    use std::collections::BTreeMap;

    use flt_driver::systemd::{
        BusAddress, OpId, SystemdClient, SystemdConfig, SystemdDriver, SystemdError, SystemdEvent,
        SystemdReply, SystemdRequest, UnitState, has_install_section,
    };

    use super::*;

    const UNITS_DIR: &str = "/run/flt/units";

    /// The driver runs in the test process and reaches the host's systemd through
    /// `/proc/<pid>/root`: the bus socket for calls, the file-system root for unit files.
    fn config(host: &Host) -> SystemdConfig {
        SystemdConfig {
            bus: BusAddress::Bus(host.system_bus_address().unwrap_or_else(|e| panic!("{e}"))),
            units_dir: UNITS_DIR.into(),
            fs_root: Some(host.root().unwrap_or_else(|e| panic!("{e}"))),
            ..SystemdConfig::default()
        }
    }

    /// A driver plus the bookkeeping a test needs: request ids, and the latest state per unit.
    struct Agent {
        driver: SystemdDriver,
        next_id: u64,
        states: BTreeMap<String, Option<UnitState>>,
        expect_loss: bool,
        losses: usize,
        restores: usize,
    }

    impl Agent {
        fn spawn(config: SystemdConfig) -> Agent {
            let driver = SystemdDriver::spawn(config)
                .unwrap_or_else(|e| panic!("spawn systemd driver: {e}"));
            Agent {
                driver,
                next_id: 1,
                states: BTreeMap::new(),
                expect_loss: false,
                losses: 0,
                restores: 0,
            }
        }

        fn record(
            &mut self,
            event: SystemdEvent,
        ) -> Option<(OpId, Result<SystemdReply, SystemdError>)> {
            match event {
                SystemdEvent::Reply { id, result } => return Some((id, result)),
                SystemdEvent::UnitState { name, state } => {
                    self.states.insert(name, state);
                }
                SystemdEvent::WatchLost { reason } => {
                    assert!(self.expect_loss, "signal connection lost: {reason}");
                    self.losses += 1;
                }
                SystemdEvent::WatchRestored => self.restores += 1,
                _ => {}
            }
            None
        }

        /// Sends a request and waits for its reply (recording state reports meanwhile).
        fn call(
            &mut self,
            make: impl FnOnce(OpId) -> SystemdRequest,
        ) -> Result<SystemdReply, SystemdError> {
            let id = OpId(self.next_id);
            self.next_id += 1;
            let request = make(id);
            let what = format!("{request:?}");
            self.driver
                .requests()
                .send(request)
                .expect("driver running");
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let event = self
                    .driver
                    .events()
                    .recv_timeout(left)
                    .unwrap_or_else(|_| panic!("no reply to {what} within 15s"));
                if let Some((got, result)) = self.record(event) {
                    assert_eq!(got, id, "replies come in request order");
                    return result;
                }
            }
        }

        fn ok(&mut self, make: impl FnOnce(OpId) -> SystemdRequest) -> SystemdReply {
            self.call(make).unwrap_or_else(|e| panic!("{e}"))
        }

        /// Starts `name` and returns the reply (the job).
        fn start(&mut self, name: &str) -> SystemdReply {
            self.ok(|id| SystemdRequest::Start {
                id,
                name: name.into(),
            })
        }

        fn stop(&mut self, name: &str) -> SystemdReply {
            self.ok(|id| SystemdRequest::Stop {
                id,
                name: name.into(),
            })
        }

        fn watch(&mut self, name: &str) {
            self.driver
                .requests()
                .send(SystemdRequest::Watch { name: name.into() })
                .expect("driver running");
        }

        /// Waits until the driver reports that it no longer follows `name` (state `None`).
        fn wait_unfollowed(&mut self, name: &str, timeout: Duration) {
            let start = Instant::now();
            while self.states.get(name).is_none_or(Option::is_some) {
                let left = timeout.saturating_sub(start.elapsed());
                let event = self.driver.events().recv_timeout(left);
                let event = event.unwrap_or_else(|_| {
                    panic!("timed out after {timeout:?} waiting for the driver to stop following {name}")
                });
                if let Some((id, result)) = self.record(event) {
                    panic!("unexpected reply {id:?}: {result:?}");
                }
            }
        }

        /// Waits for a state report with this active/sub state; returns how long it took.
        fn wait_state(
            &mut self,
            name: &str,
            active: &str,
            sub: &str,
            timeout: Duration,
        ) -> Duration {
            let start = Instant::now();
            loop {
                if let Some(Some(state)) = self.states.get(name)
                    && state.active_state == active
                    && state.sub_state == sub
                {
                    return start.elapsed();
                }
                let left = timeout.saturating_sub(start.elapsed());
                match self.driver.events().recv_timeout(left) {
                    Ok(event) => {
                        if let Some((id, result)) = self.record(event) {
                            panic!("unexpected reply {id:?}: {result:?}");
                        }
                    }
                    Err(_) => panic!(
                        "timed out after {:.1}s waiting for {name} to be reported {active}/{sub}; last reported: {:?}",
                        start.elapsed().as_secs_f64(),
                        self.states.get(name)
                    ),
                }
            }
        }
    }

    fn load(agent: &mut Agent, name: &str, contents: &str) {
        let reply = agent.ok(|id| SystemdRequest::Load {
            id,
            name: name.into(),
            contents: contents.into(),
            enable: has_install_section(contents),
        });
        assert!(matches!(reply, SystemdReply::Loaded { .. }), "{reply:?}");
    }

    /// Loads `name` and returns whether the driver says a reload must come before a start.
    fn load_reporting(agent: &mut Agent, name: &str, contents: &str) -> bool {
        match agent.ok(|id| SystemdRequest::Load {
            id,
            name: name.into(),
            contents: contents.into(),
            enable: has_install_section(contents),
        }) {
            SystemdReply::Loaded { reload_needed } => reload_needed,
            other => panic!("load of {name}: {other:?}"),
        }
    }

    /// What the agent skips its daemon-reload on: systemd 252 starts a unit file it has never
    /// loaded, or only knew as `not-found`, without a reload; a changed file of a loaded unit,
    /// or an enabled unit, still asks for one.
    #[test]
    fn new_units_start_without_a_reload_and_changed_ones_ask_for_one() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let cluster = start(ClusterConfig::new(1));
        let host = cluster.host(0);
        let mut agent = Agent::spawn(config(host));
        let start_unit = |agent: &mut Agent, name: &str| {
            agent.start(name);
            agent.wait_state(name, "active", "running", Duration::from_secs(10));
        };

        assert!(!load_reporting(&mut agent, "fresh.service", SLEEPER));
        start_unit(&mut agent, "fresh.service");

        // Looked up before its file existed: systemd holds a not-found stub for it.
        agent.watch("stub.service");
        agent.wait_state("stub.service", "inactive", "dead", Duration::from_secs(5));
        assert_eq!(
            agent.states["stub.service"]
                .as_ref()
                .map(|s| s.load_state.as_str()),
            Some("not-found")
        );
        assert!(!load_reporting(&mut agent, "stub.service", SLEEPER));
        start_unit(&mut agent, "stub.service");
        let exec_start = exec(
            host,
            &["systemctl", "show", "-P", "ExecStart", "stub.service"],
        );
        assert!(exec_start.contains("/bin/sleep"), "{exec_start}");

        // New content for a loaded unit: systemd still runs the old file until a reload.
        let changed = SLEEPER.replace("600", "700");
        assert!(load_reporting(&mut agent, "fresh.service", &changed));
        agent.ok(|id| SystemdRequest::Reload { id });
        assert_eq!(
            exec(
                host,
                &[
                    "systemctl",
                    "show",
                    "-P",
                    "NeedDaemonReload",
                    "fresh.service"
                ]
            ),
            "no"
        );

        // Loads sent together are linked together and answered in order; none needs a reload.
        let names = [
            "many-1.service",
            "many-2.service",
            "../bad.service",
            "many-3.service",
        ];
        let first = agent.next_id;
        for (i, name) in names.iter().enumerate() {
            agent
                .driver
                .requests()
                .send(SystemdRequest::Load {
                    id: OpId(first + i as u64),
                    name: (*name).into(),
                    contents: SLEEPER.into(),
                    enable: false,
                })
                .expect("driver running");
        }
        agent.next_id += names.len() as u64;
        let mut replies = Vec::new();
        while replies.len() < names.len() {
            let event = agent
                .driver
                .events()
                .recv_timeout(Duration::from_secs(15))
                .expect("a reply to each load within 15 s");
            if let Some(reply) = agent.record(event) {
                replies.push(reply);
            }
        }
        for (i, (id, result)) in replies.iter().enumerate() {
            assert_eq!(*id, OpId(first + i as u64), "replies in request order");
            if names[i].starts_with("..") {
                assert!(matches!(result, Err(SystemdError::Name(_))), "{result:?}");
            } else {
                assert!(
                    matches!(
                        result,
                        Ok(SystemdReply::Loaded {
                            reload_needed: false
                        })
                    ),
                    "{}: {result:?}",
                    names[i]
                );
            }
        }
        for name in ["many-1.service", "many-2.service", "many-3.service"] {
            start_unit(&mut agent, name);
        }

        // An enabled unit changes its target's dependencies: always a reload.
        assert!(load_reporting(
            &mut agent,
            "wanted.service",
            "[Service]\nExecStart=/bin/sleep 600\n\n[Install]\nWantedBy=multi-user.target\n",
        ));
    }

    const SLEEPER: &str =
        "[Unit]\nDescription=flt test sleeper\n\n[Service]\nExecStart=/bin/sleep 600\n";

    /// Starts (and stops) queued together are pipelined: each still gets its own reply, in
    /// request order, and one refused call fails alone.
    #[test]
    fn queued_starts_and_stops_each_get_their_reply_in_order() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let cluster = start(ClusterConfig::new(1));
        let host = cluster.host(0);
        let mut agent = Agent::spawn(config(host));
        let names: Vec<String> = (0..40).map(|i| format!("pipe-{i:02}.service")).collect();
        for name in &names {
            load(&mut agent, name, SLEEPER);
        }
        // A unit without a file, in the middle of the batch: systemd refuses only that start.
        let mut batch: Vec<String> = names.clone();
        batch.insert(20, "pipe-missing.service".into());
        let send_all = |agent: &mut Agent, stop: bool| -> Vec<OpId> {
            let mut ids = Vec::new();
            for name in &batch {
                let id = OpId(agent.next_id);
                agent.next_id += 1;
                let name = name.clone();
                let request = if stop {
                    SystemdRequest::Stop { id, name }
                } else {
                    SystemdRequest::Start { id, name }
                };
                agent
                    .driver
                    .requests()
                    .send(request)
                    .expect("driver running");
                ids.push(id);
            }
            ids
        };
        let collect = |agent: &mut Agent, ids: &[OpId]| {
            let mut replies = Vec::new();
            while replies.len() < ids.len() {
                let event = agent
                    .driver
                    .events()
                    .recv_timeout(Duration::from_secs(15))
                    .unwrap_or_else(|_| panic!("{} of {} replies", replies.len(), ids.len()));
                if let Some(reply) = agent.record(event) {
                    replies.push(reply);
                }
            }
            let got: Vec<OpId> = replies.iter().map(|(id, _)| *id).collect();
            assert_eq!(got, ids, "replies come in request order");
            replies
        };
        for stop in [false, true] {
            let ids = send_all(&mut agent, stop);
            let replies = collect(&mut agent, &ids);
            for ((_, result), name) in replies.iter().zip(&batch) {
                match result {
                    Ok(SystemdReply::Job(path)) if name != "pipe-missing.service" => {
                        assert!(path.starts_with("/org/freedesktop/systemd1/job/"), "{path}");
                    }
                    Err(e) if name == "pipe-missing.service" && !stop => {
                        assert!(e.to_string().contains(name), "error names the unit: {e}");
                    }
                    // Stopping a unit systemd does not know is a no-op job or refused.
                    _ if name == "pipe-missing.service" && stop => {}
                    other => panic!("{name}: {other:?}"),
                }
            }
            let (active, sub) = if stop {
                ("inactive", "dead")
            } else {
                ("active", "running")
            };
            for name in &names {
                agent.wait_state(name, active, sub, Duration::from_secs(10));
            }
        }
    }

    #[test]
    fn load_start_stop_unload_changes_systemd_states() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let cluster = start(ClusterConfig::new(1));
        let host = cluster.host(0);
        let mut agent = Agent::spawn(config(host));
        let name = "hello.service";
        agent.watch(name);
        agent.wait_state(name, "inactive", "dead", Duration::from_secs(5));
        assert_eq!(
            agent.states[name].as_ref().map(|s| s.load_state.as_str()),
            Some("not-found")
        );

        // A name that would escape the units directory is refused before anything happens.
        let refused = agent.call(|id| SystemdRequest::Load {
            id,
            name: "../evil.service".into(),
            contents: SLEEPER.into(),
            enable: false,
        });
        assert!(
            matches!(refused, Err(SystemdError::Name(_))),
            "got {refused:?}"
        );
        assert!(
            host.exec(&["test", "-e", "/run/flt/evil.service"])
                .is_ok_and(|o| !o.status.success())
        );

        load(&mut agent, name, SLEEPER);
        agent.ok(|id| SystemdRequest::Reload { id });
        assert_eq!(
            exec(host, &["stat", "-c", "%a", "/run/flt/units/hello.service"]),
            "644"
        );
        assert_eq!(
            exec(host, &["cat", "/run/flt/units/hello.service"]),
            SLEEPER.trim_end()
        );
        let enabled = host.exec(&["systemctl", "is-enabled", name]).expect("exec");
        assert_eq!(
            String::from_utf8_lossy(&enabled.stdout).trim(),
            "linked-runtime"
        );
        let files = agent.ok(|id| SystemdRequest::ListUnitFiles { id });
        assert_eq!(files, SystemdReply::UnitFiles(vec![name.to_string()]));
        assert_eq!(
            agent.ok(|id| SystemdRequest::SystemState { id }),
            SystemdReply::SystemState("running".into())
        );

        let job = agent.start(name);
        assert!(
            matches!(&job, SystemdReply::Job(path) if path.starts_with("/org/freedesktop/systemd1/job/")),
            "{job:?}"
        );
        let took = agent.wait_state(name, "active", "running", Duration::from_secs(10));
        println!(
            "{name}: start reported active/running after {:.0} ms",
            took.as_secs_f64() * 1000.0
        );
        assert_eq!(exec(host, &["systemctl", "is-active", name]), "active");
        let listed = agent.ok(|id| SystemdRequest::ListStates {
            id,
            names: vec![name.into()],
        });
        let SystemdReply::States(states) = listed else {
            panic!("{listed:?}")
        };
        assert_eq!(states[0].1.load_state, "loaded");

        agent.stop(name);
        agent.wait_state(name, "inactive", "dead", Duration::from_secs(10));
        agent.start(name);
        agent.wait_state(name, "active", "running", Duration::from_secs(10));

        // Unload stops the running unit, unlinks it, deletes the file and stops following it.
        agent.ok(|id| SystemdRequest::Unload {
            id,
            name: name.into(),
        });
        agent.wait_unfollowed(name, Duration::from_secs(5));
        assert!(
            host.exec(&["test", "-e", "/run/flt/units/hello.service"])
                .is_ok_and(|o| !o.status.success())
        );
        assert!(
            host.exec(&["test", "-e", "/run/systemd/system/hello.service"])
                .is_ok_and(|o| !o.status.success())
        );
        let listed = agent.ok(|id| SystemdRequest::ListStates {
            id,
            names: vec![name.into()],
        });
        let SystemdReply::States(states) = listed else {
            panic!("{listed:?}")
        };
        assert_eq!(
            (
                states[0].1.active_state.as_str(),
                states[0].1.sub_state.as_str()
            ),
            ("inactive", "dead")
        );
        agent.ok(|id| SystemdRequest::Reload { id });
        let listed = agent.ok(|id| SystemdRequest::ListStates {
            id,
            names: vec![name.into()],
        });
        let SystemdReply::States(states) = listed else {
            panic!("{listed:?}")
        };
        assert_eq!(
            states[0].1.load_state, "not-found",
            "after unload + reload: {states:?}"
        );

        // A unit systemd never knew counts as stopped: its unload succeeds.
        agent.ok(|id| SystemdRequest::Unload {
            id,
            name: "ghost.service".into(),
        });
        // Explicit watches: reported (as not-found) until unwatched.
        agent.watch("ghost.service");
        agent.wait_state("ghost.service", "inactive", "dead", Duration::from_secs(5));
        agent
            .driver
            .requests()
            .send(SystemdRequest::Unwatch {
                name: "ghost.service".into(),
            })
            .expect("driver");
        agent.wait_unfollowed("ghost.service", Duration::from_secs(5));
    }

    #[test]
    fn install_unit_is_pulled_in_and_refused_stop_keeps_the_file() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let cluster = start(ClusterConfig::new(1));
        let host = cluster.host(0);
        let mut agent = Agent::spawn(config(host));
        load(
            &mut agent,
            "trigger.target",
            "[Unit]\nDescription=flt test trigger\n",
        );
        load(
            &mut agent,
            "pulled.service",
            "[Service]\nExecStart=/bin/sleep 600\n\n[Install]\nWantedBy=trigger.target\n",
        );
        agent.ok(|id| SystemdRequest::Reload { id });
        assert!(
            host.exec(&[
                "test",
                "-L",
                "/run/systemd/system/trigger.target.wants/pulled.service"
            ])
            .is_ok_and(|o| o.status.success()),
            "EnableUnitFiles must create the runtime wants link"
        );
        agent.watch("pulled.service");
        agent.wait_state("pulled.service", "inactive", "dead", Duration::from_secs(5));
        agent.start("trigger.target");
        let took = agent.wait_state(
            "pulled.service",
            "active",
            "running",
            Duration::from_secs(10),
        );
        println!(
            "pulled.service active {:.0} ms after starting trigger.target",
            took.as_secs_f64() * 1000.0
        );

        // A unit with [Install] but nothing to install is refused and removed again.
        let empty_install = agent.call(|id| SystemdRequest::Load {
            id,
            name: "noinstall.service".into(),
            contents: "[Service]\nExecStart=/bin/true\n\n[Install]\n".into(),
            enable: true,
        });
        assert!(
            matches!(empty_install, Err(SystemdError::NoInstallInfo { .. })),
            "empty [Install] must fail: {empty_install:?}"
        );
        assert!(
            host.exec(&["test", "-e", "/run/flt/units/noinstall.service"])
                .is_ok_and(|o| !o.status.success())
        );

        // If the stop fails, unload keeps the file so the unit can still be stopped later.
        load(
            &mut agent,
            "stubborn.service",
            "[Unit]\nRefuseManualStop=yes\n\n[Service]\nExecStart=/bin/sleep 600\n",
        );
        agent.ok(|id| SystemdRequest::Reload { id });
        agent.start("stubborn.service");
        let unload = agent.call(|id| SystemdRequest::Unload {
            id,
            name: "stubborn.service".into(),
        });
        let error = unload.expect_err("unload of a unit that refuses to stop must fail");
        assert_eq!(
            error.dbus_error_name(),
            Some("org.freedesktop.systemd1.OnlyByDependency"),
            "{error}"
        );
        assert!(
            host.exec(&["test", "-e", "/run/flt/units/stubborn.service"])
                .is_ok_and(|o| o.status.success())
        );
    }

    /// Counts the `PropertiesChanged` signals of units on `host`'s system bus while `during`
    /// runs (those of the job objects of flt's own jobs are sent anyway, like `JobRemoved`).
    fn properties_changed_during(host: &Host, during: impl FnOnce()) -> usize {
        let root = host.root().unwrap_or_else(|e| panic!("{e}"));
        let out = root.join("run/flt-test-monitor.out");
        let _ = fs::remove_file(&out);
        let mut command = host
            .command(&[
                "sh",
                "-c",
                "exec timeout 4 busctl monitor --match \"type='signal',member='PropertiesChanged',path_namespace='/org/freedesktop/systemd1/unit'\" >/run/flt-test-monitor.out 2>&1",
            ])
            .unwrap_or_else(|e| panic!("busctl monitor: {e}"));
        let monitor = command
            .spawn()
            .unwrap_or_else(|e| panic!("busctl monitor: {e}"));
        // busctl prints its monitoring notice once it listens.
        wait_for("busctl monitor to listen", Duration::from_secs(5), || {
            let text = fs::read_to_string(&out).unwrap_or_default();
            if text.contains("Monitoring bus message stream.") {
                Ok(())
            } else {
                Err(text)
            }
        });
        during();
        let status = monitor.wait_with_output().map(|o| o.status);
        assert!(status.is_ok(), "busctl monitor: {status:?}");
        let text = fs::read_to_string(&out).unwrap_or_default();
        let count = text.matches("Member=PropertiesChanged").count();
        if count > 0 {
            println!("busctl monitor saw:\n{text}");
        }
        count
    }

    /// With polling every 60 s, a start and a stop are reported within 10 s: only the
    /// `JobRemoved` of each job can have told the driver. And systemd builds no
    /// `PropertiesChanged` while they run: the driver did not subscribe.
    #[test]
    fn job_ends_are_reported_at_once_without_subscribing() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let cluster = start(ClusterConfig::new(1));
        let host = cluster.host(0);
        let mut agent = Agent::spawn(SystemdConfig {
            poll_interval: Duration::from_secs(60),
            ..config(host)
        });
        let name = "sleeper.service";
        load(&mut agent, name, "[Service]\nExecStart=/bin/sleep 600\n");
        agent.watch(name);
        agent.wait_state(name, "inactive", "dead", Duration::from_secs(5));
        let mut latencies = Vec::new();
        let signals = properties_changed_during(host, || {
            agent.start(name);
            latencies.push(agent.wait_state(name, "active", "running", Duration::from_secs(10)));
            agent.stop(name);
            latencies.push(agent.wait_state(name, "inactive", "dead", Duration::from_secs(10)));
        });
        assert_eq!(
            signals, 0,
            "PropertiesChanged signals while a watched unit started and stopped"
        );
        println!(
            "job end reported {:.1} ms (start) / {:.1} ms (stop) after StartUnit/StopUnit returned",
            latencies[0].as_secs_f64() * 1000.0,
            latencies[1].as_secs_f64() * 1000.0
        );
    }

    /// A unit that fails after its start job ended (`ExecStart=/bin/false`: the job is done
    /// at the fork) is reported failed by the next poll.
    #[test]
    fn unit_failing_after_its_start_is_reported_by_the_poll() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let cluster = start(ClusterConfig::new(1));
        let poll = Duration::from_secs(1);
        let mut agent = Agent::spawn(SystemdConfig {
            poll_interval: poll,
            ..config(cluster.host(0))
        });
        let name = "fails.service";
        load(&mut agent, name, "[Service]\nExecStart=/bin/false\n");
        agent.ok(|id| SystemdRequest::Reload { id });
        agent.watch(name);
        agent.wait_state(name, "inactive", "dead", Duration::from_secs(5));
        let started = Instant::now();
        agent.start(name);
        agent.wait_state(name, "failed", "failed", poll * 3);
        println!(
            "fails.service (ExecStart=/bin/false) reported failed {:.1} ms after StartUnit was sent (poll every {} ms)",
            started.elapsed().as_secs_f64() * 1000.0,
            poll.as_millis()
        );
    }

    /// A unit whose process is killed from outside (no job, so no `JobRemoved`) is reported
    /// failed by the next poll, which reads `ListUnits` in place.
    #[test]
    fn a_unit_killed_from_outside_is_reported_by_the_poll() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let cluster = start(ClusterConfig::new(1));
        let host = cluster.host(0);
        let poll = Duration::from_secs(1);
        let mut agent = Agent::spawn(SystemdConfig {
            poll_interval: poll,
            ..config(host)
        });
        let name = "victim.service";
        load(&mut agent, name, "[Service]\nExecStart=/bin/sleep 600\n");
        agent.watch(name);
        agent.start(name);
        agent.wait_state(name, "active", "running", Duration::from_secs(10));
        exec(host, &["systemctl", "kill", "--signal=KILL", name]);
        let latency = agent.wait_state(name, "failed", "failed", poll * 3);
        println!(
            "{name} killed from outside reported failed after {:.0} ms (poll every {} ms)",
            latency.as_secs_f64() * 1000.0,
            poll.as_millis()
        );
    }

    #[test]
    fn driver_survives_a_restart_of_the_hosts_bus() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let cluster = start(ClusterConfig::new(1));
        let host = cluster.host(0);
        let mut agent = Agent::spawn(config(host));
        agent.expect_loss = true;
        let name = "survivor.service";
        load(&mut agent, name, SLEEPER);
        agent.ok(|id| SystemdRequest::Reload { id });
        agent.watch(name);
        agent.wait_state(name, "inactive", "dead", Duration::from_secs(5));

        // Both of the driver's connections go down with the bus daemon.
        let restarted = Instant::now();
        exec(host, &["systemctl", "restart", "dbus.service"]);
        while agent.restores == 0 {
            let left = Duration::from_secs(15).saturating_sub(restarted.elapsed());
            let event = agent.driver.events().recv_timeout(left);
            let event = event.unwrap_or_else(|_| {
                panic!(
                    "no WatchRestored within 15s of a bus restart (losses seen: {})",
                    agent.losses
                )
            });
            agent.record(event);
        }
        assert_eq!(agent.losses, 1, "one WatchLost before WatchRestored");
        println!(
            "signal connection restored {:.2}s after the bus restart",
            restarted.elapsed().as_secs_f64()
        );
        // The call thread reconnects on its own, and state reports flow again.
        agent.start(name);
        agent.wait_state(name, "active", "running", Duration::from_secs(10));
    }

    #[test]
    fn restarted_driver_adopts_running_unit_without_restarting_it() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        let cluster = start(ClusterConfig::new(1));
        let host = cluster.host(0);
        let name = "adopted.service";
        let mut first = Agent::spawn(config(host));
        load(&mut first, name, SLEEPER);
        first.ok(|id| SystemdRequest::Reload { id });
        first.watch(name);
        first.start(name);
        first.wait_state(name, "active", "running", Duration::from_secs(10));
        let client = SystemdClient::connect(&config(host)).unwrap_or_else(|e| panic!("{e}"));
        let started_at = client
            .exec_main_start_timestamp(name)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            started_at > 0,
            "ExecMainStartTimestamp of a running service"
        );
        let main_pid = exec(
            host,
            &["systemctl", "show", "-p", "MainPID", "--value", name],
        );
        first.driver.shutdown();

        // "fltd restarts": a new driver finds the file, re-issues load and start as an agent
        // that lost its memory would, and the unit keeps running untouched.
        let mut second = Agent::spawn(config(host));
        assert_eq!(
            second.ok(|id| SystemdRequest::ListUnitFiles { id }),
            SystemdReply::UnitFiles(vec![name.into()])
        );
        let inventory = second.ok(|id| SystemdRequest::Inventory { id });
        let SystemdReply::Inventory(entries) = inventory else {
            panic!("{inventory:?}")
        };
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(
            (entries[0].name.as_str(), entries[0].text.as_str()),
            (name, SLEEPER)
        );
        let state = entries[0]
            .state
            .as_ref()
            .expect("systemd's view of the adopted unit");
        assert_eq!(
            (state.active_state.as_str(), state.sub_state.as_str()),
            ("active", "running")
        );
        // Inventory units are followed without an explicit Watch.
        second.wait_state(name, "active", "running", Duration::from_secs(5));
        load(&mut second, name, SLEEPER);
        second.ok(|id| SystemdRequest::Reload { id });
        second.start(name);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            client
                .exec_main_start_timestamp(name)
                .unwrap_or_else(|e| panic!("{e}")),
            started_at
        );
        assert_eq!(
            exec(
                host,
                &["systemctl", "show", "-p", "MainPID", "--value", name]
            ),
            main_pid
        );
        assert_eq!(
            client.system_state().unwrap_or_else(|e| panic!("{e}")),
            "running"
        );
    }

    /// More watched units than dbus-daemon's `max_match_rules_per_connection` (512): a unit
    /// past that limit is still reported through a signal (polling every 60 s could not be
    /// that fast), and the periodic poll does not make systemd load the linked, inactive,
    /// garbage-collected units again and again (`UnitNew` for each, every poll: that kept
    /// PID 1 busy enough to stall its job queue with ~1,000 such units).
    #[test]
    fn watching_many_units_gets_signals_past_the_match_limit_and_polls_without_loading() {
        if !flt_tests::testhost::require_hosts() {
            return;
        }
        const UNITS: usize = 600;
        let cluster = start(ClusterConfig::new(1));
        let host = cluster.host(0);
        let root = host.root().unwrap_or_else(|e| panic!("{e}"));
        let dir = root.join(UNITS_DIR.trim_start_matches('/'));
        fs::create_dir_all(&dir).expect("units dir");
        let names: Vec<String> = (0..UNITS).map(|i| format!("many-{i:04}.service")).collect();
        for (i, name) in names.iter().enumerate() {
            let exec = if i + 1 == UNITS {
                "/bin/sleep 600"
            } else {
                "/bin/false"
            };
            fs::write(dir.join(name), format!("[Service]\nExecStart={exec}\n")).expect("unit file");
        }
        let paths: Vec<String> = names.iter().map(|n| format!("{UNITS_DIR}/{n}")).collect();
        let mut link = vec!["systemctl", "link", "--runtime"];
        link.extend(paths.iter().map(String::as_str));
        exec(host, &link);
        exec(host, &["systemctl", "daemon-reload"]);

        let mut agent = Agent::spawn(SystemdConfig {
            poll_interval: Duration::from_secs(60),
            ..config(host)
        });
        let inventory = agent.ok(|id| SystemdRequest::Inventory { id });
        assert!(
            matches!(&inventory, SystemdReply::Inventory(e) if e.len() == UNITS),
            "inventory of {UNITS} units: {inventory:?}"
        );
        let last = &names[UNITS - 1];
        agent.wait_state(last, "inactive", "dead", Duration::from_secs(10));
        agent.start(last);
        let latency = agent.wait_state(last, "active", "running", Duration::from_secs(10));
        println!(
            "unit {UNITS} of {UNITS} watched reported active {:.0} ms after StartUnit returned",
            latency.as_secs_f64() * 1000.0
        );
        agent.driver.shutdown();

        let mut polling = Agent::spawn(SystemdConfig {
            poll_interval: Duration::from_millis(500),
            ..config(host)
        });
        polling.ok(|id| SystemdRequest::Inventory { id });
        // The new driver's first read by name loads every unit once; let systemd collect them.
        std::thread::sleep(Duration::from_secs(3));
        let monitor = exec(
            host,
            &[
                "sh",
                "-c",
                "timeout 3 busctl monitor --match \"type='signal',member='UnitNew'\"; true",
            ],
        );
        let loads = monitor.matches("Member=UnitNew").count();
        assert!(
            loads < 10,
            "{loads} UnitNew signals in 3 s of polling {UNITS} idle units"
        );
    }
}
