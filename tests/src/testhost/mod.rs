//! Real multi-host test clusters on one Linux machine: N hosts, each with real systemd as
//! PID 1, plus one real etcd (v2 API enabled) that every host reaches over a private bridge.
//!
//! ```no_run
//! use flt_tests::testhost::{Cluster, ClusterConfig};
//! let cluster = Cluster::start(ClusterConfig::new(3)).expect("test cluster");
//! let h1 = cluster.host(0);
//! let out = h1.exec_ok(&["systemctl", "is-system-running"]).expect("exec");
//! println!("{} ({}) is {out}", h1.name(), h1.ip());
//! // cluster.etcd_endpoint(): URL for processes inside the hosts;
//! // cluster.etcd_local_endpoint(): URL for this (the test) process.
//! drop(cluster); // kills everything and removes cgroups and state
//! ```
//!
//! # Recipes
//! - Run a project binary in a host, supervised by the host's systemd like on a real machine:
//!   boot with `binds: vec![Bind::cargo_target_dir()]`, then
//!   `host.run_unit("fltd", &["env", &format!("FLT_ETCD_SERVERS={}", cluster.etcd_endpoint()),
//!   "/opt/flt/target/debug/fltd"])` (whatever flags fltd takes);
//!   read its logs with `host.logs(&["-u", "fltd"])` (works after `kill` too).
//! - Drive a host's systemd from the test process: D-Bus at [`Host::system_bus_address`]
//!   (`unix:path=/proc/<pid>/root/run/dbus/system_bus_socket`) and files below [`Host::root`]
//!   (see `flt_driver::systemd::SystemdConfig::fs_root`). systemd's private socket refuses
//!   peers outside the host's PID namespace, so use the bus.
//! - Talk to etcd from the test process: [`Cluster::etcd_local_endpoint`]; from inside a host:
//!   [`Cluster::etcd_endpoint`] (also reachable as `http://etcd:2379` via `/etc/hosts`).
//! - Faults: [`Host::kill`] (SIGKILL of PID 1), [`Host::stop`] (poweroff), [`Host::start`],
//!   [`Host::net_down`]/[`Host::net_up`], [`Host::partition_from_etcd`], [`Host::isolate`],
//!   [`Cluster::partition_pair`], [`Host::heal`], [`Host::freeze`]/[`Host::thaw`],
//!   [`Cluster::etcd_stop`]/[`Cluster::etcd_kill`]/[`Cluster::etcd_start`].
//! - A long-lived developer cluster (what `./cluster up` does): start with a fixed
//!   [`ClusterConfig::id`] and [`ClusterConfig::detached`] (or call [`Cluster::detach`]); the
//!   cluster outlives the process. Any process gets a handle again with [`Cluster::attach`]
//!   and ends it with [`Cluster::teardown`], or with [`destroy`] (which needs no state files).
//! - Reach a host's port from the test process: [`Cluster::forward`] (a loopback listener,
//!   connected through the infra namespace).
//! - Every external command the harness runs is killed after 60 s, so a hung tool becomes an
//!   error naming it instead of a hung test.
//!
//! # What a host is
//! Each host has its own PID, mount, UTS, IPC, network and cgroup namespaces; a copy-on-write
//! root (overlayfs, lower = the machine's `/`, upper = a private tmpfs); private `/tmp`, `/run`
//! and `/dev`; a read-only `/proc/sys`; its own `/etc/machine-id`, hostname, boot id and IP
//! (`<subnet>.(11 + index)`); a persistent journal in the cluster's state dir. systemd boots
//! into a minimal target (sysinit, sockets, the system bus) with the machine's own services
//! masked. The init script (`tests/testhost/host-init.sh`) refuses to exec systemd unless `/`
//! is the overlay, `/tmp` and `/run` are tmpfs, `/proc/sys` is read-only, no `/dev/watchdog`
//! is visible and it is PID 1.
//!
//! etcd runs in a separate "infra" namespace set that owns the bridge (`br0`, `<subnet>.1`).
//! Nothing is ever created in the machine's own network or mount namespace: every mount,
//! link and address lives in a namespace that dies with its owner.
//!
//! # Isolation between clusters
//! Each cluster has an id (default `flt-<pid>-<n>`, unique per process), which names its
//! cgroup (`<cgroup2>/flt-th/<id>`) and its state dir (`/var/tmp/flt-th/<id>`). Subnets live in
//! the cluster's own namespaces, so concurrent clusters (test threads, test binaries,
//! developers) never collide. [`Cluster::start`] first sweeps clusters whose owner process
//! is gone (a crashed run), and a cluster with a fixed id ([`ClusterConfig::id`]) sweeps its
//! own leftovers. A detached cluster's owner is its infra process, so it is swept only once
//! that has died.
//!
//! # Safety rules kept by the code
//! Every process enters the cluster's cgroup before it creates a namespace; every signal is
//! sent only after checking that the PID is still inside that cgroup; teardown is
//! `cgroup.kill` plus depth-first `rmdir`, then the state dir is removed only if nothing is
//! mounted below it.
//!
//! # Requirements
//! Root, cgroup2 with `cgroup.kill`/`cgroup.freeze`, overlayfs, veth and bridge, nf_tables
//! (bridge family), and the tools `unshare nsenter setpriv pivot_root ip nft systemctl
//! journalctl mount`, `/lib/systemd/systemd`, `/usr/bin/etcd` (Debian: `etcd-server`,
//! `nftables`). [`preflight`] checks them; [`require_hosts`] turns a failure into a test
//! failure unless `FLT_SKIP_HOST_TESTS=1`.

mod cgroup;
mod command;
mod etcd;
mod forward;
mod host;

use std::fmt;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cgroup::{CLUSTERS_DIR, CgroupTree};
pub use etcd::Etcd;
pub use forward::Forward;
pub use host::Host;

/// Where cluster state dirs live (on disk, so that journals survive a killed host).
pub const STATE_ROOT: &str = "/var/tmp/flt-th";

/// In a detached cluster's state dir: what [`Cluster::attach`] needs to rebuild the handle.
const DETACHED_RECORD: &str = "detached.json";

const HOST_INIT: &str = include_str!("../../testhost/host-init.sh");
const INFRA_INIT: &str = include_str!("../../testhost/infra-init.sh");

/// Errors of the test-host harness. Messages name the command, path or host involved and,
/// for time-outs, what was awaited and for how long.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The machine lacks something the harness needs (root, a tool, a kernel feature).
    Preflight(String),
    /// A file-system or process operation failed.
    Io {
        what: String,
        source: std::io::Error,
    },
    /// An external command exited non-zero.
    Command {
        command: String,
        status: Option<i32>,
        stderr: String,
    },
    /// Something did not happen in time.
    Timeout {
        what: String,
        waited: Duration,
        detail: String,
    },
    /// The host is not running (killed, stopped, or died during boot).
    HostNotRunning { host: String, detail: String },
    /// A cluster with this fixed id is owned by another live process.
    InUse { id: String, owner: String },
    /// The configuration is invalid.
    Config(String),
    /// No live detached cluster with this id (for [`Cluster::attach`]).
    NotFound { id: String, detail: String },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Preflight(msg) => write!(f, "test hosts unavailable: {msg}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::Command {
                command,
                status,
                stderr,
            } => {
                write!(f, "`{command}` failed (exit {status:?}): {stderr}")
            }
            Error::Timeout {
                what,
                waited,
                detail,
            } => {
                write!(
                    f,
                    "timed out after {:.1}s waiting for {what}",
                    waited.as_secs_f64()
                )?;
                if !detail.is_empty() {
                    write!(f, "; {detail}")?;
                }
                Ok(())
            }
            Error::HostNotRunning { host, detail } => {
                write!(f, "host {host} is not running: {detail}")
            }
            Error::InUse { id, owner } => {
                write!(f, "test cluster id {id} is in use by live process {owner}")
            }
            Error::Config(msg) => write!(f, "invalid test cluster config: {msg}"),
            Error::NotFound { id, detail } => {
                write!(f, "no running test cluster {id}: {detail}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A directory of the machine bind-mounted into every host at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the host. `/`, `/tmp`, `/var/tmp`, `/run`, `/dev`, `/proc`, `/sys`
    /// and `/var/log/journal` (and below) are refused: the host's systemd owns them.
    pub target: PathBuf,
    pub read_only: bool,
}

impl Bind {
    pub fn read_only(source: impl Into<PathBuf>, target: impl Into<PathBuf>) -> Self {
        Self {
            source: source.into(),
            target: target.into(),
            read_only: true,
        }
    }

    /// The workspace's cargo target dir (`$CARGO_TARGET_DIR` or `<workspace>/target`),
    /// read-only at `/opt/flt/target`. Bind directories, not files: cargo replaces files,
    /// and a file bind would keep showing the old inode.
    pub fn cargo_target_dir() -> Self {
        let source = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .parent()
                    .unwrap_or(Path::new("/"))
                    .join("target")
            });
        Self::read_only(source, "/opt/flt/target")
    }
}

/// How to build a cluster. `ClusterConfig::new(n)` gives n hosts and the defaults.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Number of hosts (1..=200). Host `i` (0-based) is named `h{i+1}`.
    pub hosts: usize,
    /// Directories bind-mounted into every host.
    pub binds: Vec<Bind>,
    /// Fixed cluster id (letters, digits, `-`, `_`; at most 40). `None` gives a unique one.
    /// With a fixed id, leftovers of an earlier run with that id are swept at start.
    pub id: Option<String>,
    /// First three octets of the cluster's private /24 (only exists inside its namespaces).
    pub subnet: [u8; 3],
    /// How long to wait for all hosts' systemd to reach `running`.
    pub boot_timeout: Duration,
    /// Size of each host's tmpfs upper layer (`mount -o size=` syntax).
    pub upper_size: String,
    /// Keep the state dir (journals, logs) after teardown. Always kept when the thread that
    /// drops the cluster is panicking, so a failed test leaves its journals behind.
    pub keep_state: bool,
    /// Detach once booted (see [`Cluster::detach`]): the cluster outlives this process and
    /// this handle; [`Cluster::attach`] finds it again. Usually with a fixed `id`.
    pub detached: bool,
}

impl ClusterConfig {
    pub fn new(hosts: usize) -> Self {
        Self {
            hosts,
            binds: Vec::new(),
            id: None,
            subnet: [10, 213, 0],
            boot_timeout: Duration::from_secs(90),
            upper_size: "512m".into(),
            keep_state: false,
            detached: false,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if self.hosts == 0 || self.hosts > 200 {
            return Err(Error::Config(format!(
                "hosts = {} (must be 1..=200)",
                self.hosts
            )));
        }
        if let Some(id) = &self.id
            && (id.is_empty()
                || id.len() > 40
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return Err(Error::Config(format!(
                "id {id:?} (letters, digits, '-', '_'; 1..=40)"
            )));
        }
        for bind in &self.binds {
            let target = bind.target.to_string_lossy();
            if !target.starts_with('/')
                || target.contains(char::is_whitespace)
                || target.contains("..")
            {
                return Err(Error::Config(format!(
                    "bind target {target:?} (absolute, no spaces, no '..')"
                )));
            }
            let source = bind.source.to_string_lossy();
            if source.contains(char::is_whitespace) || !bind.source.exists() {
                return Err(Error::Config(format!(
                    "bind source {source:?} (must exist, no spaces)"
                )));
            }
        }
        if !self
            .upper_size
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '%')
        {
            return Err(Error::Config(format!("upper_size {:?}", self.upper_size)));
        }
        Ok(())
    }
}

/// What every host and the etcd handle need to know about their cluster.
#[derive(Debug)]
pub(crate) struct ClusterShared {
    pub(crate) id: String,
    pub(crate) state_dir: PathBuf,
    pub(crate) cgroup: CgroupTree,
    pub(crate) subnet: [u8; 3],
    pub(crate) infra_pid: u32,
    pub(crate) host_init: PathBuf,
    pub(crate) hosts_file: String,
    pub(crate) binds: String,
    pub(crate) upper_size: String,
    pub(crate) boot_timeout: Duration,
}

impl ClusterShared {
    pub(crate) fn infra_ip(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Runs `program args` inside the infra network namespace.
    pub(crate) fn in_infra(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, Error> {
        let pid = self.infra_pid.to_string();
        let mut all = vec!["-t", pid.as_str(), "-n", "--", program];
        all.extend_from_slice(args);
        command::run("nsenter", &all, stdin)
    }
}

/// A running test cluster. Dropping it tears everything down (see [`Cluster::teardown`]),
/// unless it is detached ([`Cluster::detach`]).
#[derive(Debug)]
pub struct Cluster {
    shared: Arc<ClusterShared>,
    infra: Option<std::process::Child>,
    hosts: Vec<Host>,
    etcd: Etcd,
    boot_time: Duration,
    keep_state: bool,
    torn_down: bool,
    detached: bool,
}

static NEXT_CLUSTER: AtomicUsize = AtomicUsize::new(0);

impl Cluster {
    /// Starts infra, etcd and all hosts, and waits until every host's systemd is `running`.
    /// On failure everything started so far is torn down again.
    pub fn start(config: ClusterConfig) -> Result<Cluster, Error> {
        config.validate()?;
        preflight()?;
        let started = Instant::now();
        let cgroup2 = cgroup::cgroup2_mount()?;
        let id = config.id.clone().unwrap_or_else(|| {
            format!(
                "flt-{}-{}",
                std::process::id(),
                NEXT_CLUSTER.fetch_add(1, Ordering::Relaxed)
            )
        });
        sweep_stale(&cgroup2, Some(&id))?;

        let state_dir = Path::new(STATE_ROOT).join(&id);
        fs::create_dir_all(state_dir.join("hosts"))
            .map_err(|e| Error::io(format!("create {}", state_dir.display()), e))?;
        // The owner file comes before the cgroup, so a cgroup without one is always stale.
        write_atomic(
            &state_dir.join("owner"),
            &owner_tag(std::process::id()).unwrap_or_default(),
        )?;
        let tree = CgroupTree::new(&cgroup2, &id);
        tree.child("")?;
        if !tree.dir().join("cgroup.kill").exists() {
            return Err(Error::Preflight(
                "cgroup.kill is missing (kernel < 5.14)".into(),
            ));
        }
        let host_init = state_dir.join("host-init.sh");
        write_script(&host_init, HOST_INIT)?;
        let infra_init = state_dir.join("infra-init.sh");
        write_script(&infra_init, INFRA_INIT)?;

        let [a, b, c] = config.subnet;
        let mut hosts_file = format!("127.0.0.1 localhost\n{a}.{b}.{c}.1 etcd flt-test-infra\n");
        for i in 0..config.hosts {
            hosts_file.push_str(&format!(
                "{} {id}-h{n} h{n}\n",
                host::host_ip(config.subnet, i),
                n = i + 1
            ));
        }
        let binds = config
            .binds
            .iter()
            .map(|b| {
                format!(
                    "{} {} {}\n",
                    b.source.display(),
                    b.target.display(),
                    if b.read_only { "ro" } else { "rw" }
                )
            })
            .collect::<String>();

        // From here on a failure must tear down what exists: build a partial cluster first.
        let (infra, infra_pid) = match start_infra(&tree, &state_dir, &infra_init, config.subnet) {
            Ok(started) => started,
            Err(e) => {
                let _ = teardown_dirs(&tree, &state_dir, config.keep_state);
                return Err(e);
            }
        };
        let shared = Arc::new(ClusterShared {
            id,
            state_dir,
            cgroup: tree,
            subnet: config.subnet,
            infra_pid,
            host_init,
            hosts_file,
            binds,
            upper_size: config.upper_size.clone(),
            boot_timeout: config.boot_timeout,
        });
        let mut cluster = Cluster {
            etcd: Etcd::new(Arc::clone(&shared)),
            hosts: (0..config.hosts)
                .map(|i| Host::new(Arc::clone(&shared), i))
                .collect(),
            shared,
            infra: Some(infra),
            boot_time: Duration::ZERO,
            keep_state: config.keep_state,
            torn_down: false,
            detached: false,
        };
        cluster.etcd.start()?;
        for host in &cluster.hosts {
            host.spawn()?;
        }
        for host in &cluster.hosts {
            host.wait_booted(started)?;
        }
        cluster.boot_time = started.elapsed();
        if config.detached {
            cluster.detach()?;
        }
        Ok(cluster)
    }

    /// Lets the cluster outlive this handle and this process: dropping the handle leaves
    /// everything running. Records what [`Cluster::attach`] needs in the state dir and hands
    /// ownership to the infra process, so the stale-cluster sweep of later [`Cluster::start`]s
    /// leaves the cluster alone while its infra lives. [`Cluster::teardown`] or [`destroy`]
    /// still end it.
    pub fn detach(&mut self) -> Result<(), Error> {
        if self.torn_down {
            return Err(Error::Config(format!(
                "cluster {} is torn down",
                self.shared.id
            )));
        }
        let infra = owner_tag(self.shared.infra_pid)
            .filter(|_| self.shared.cgroup.contains(self.shared.infra_pid))
            .ok_or_else(|| Error::NotFound {
                id: self.shared.id.clone(),
                detail: format!("infra process {} is gone", self.shared.infra_pid),
            })?;
        let record = serde_json::json!({
            "hosts": self.hosts.len(),
            "subnet": self.shared.subnet,
            "hosts_file": self.shared.hosts_file,
            "binds": self.shared.binds,
            "upper_size": self.shared.upper_size,
            "boot_timeout_ms": u64::try_from(self.shared.boot_timeout.as_millis()).unwrap_or(u64::MAX),
        });
        write_atomic(
            &self.shared.state_dir.join(DETACHED_RECORD),
            &record.to_string(),
        )?;
        write_atomic(&self.shared.state_dir.join("owner"), &infra)?;
        self.detached = true;
        Ok(())
    }

    /// True if dropping this handle leaves the cluster running.
    pub fn is_detached(&self) -> bool {
        self.detached
    }

    /// A handle on the detached cluster `id`, from any process. The handle is detached too:
    /// dropping it leaves the cluster running; [`Cluster::teardown`] ends it. Hosts that are
    /// not running (killed, or their PID 1 died) can be booted again with [`Host::start`].
    pub fn attach(id: &str) -> Result<Cluster, Error> {
        ClusterConfig {
            id: Some(id.to_string()),
            ..ClusterConfig::new(1)
        }
        .validate()?;
        let not_found = |detail: String| Error::NotFound {
            id: id.to_string(),
            detail,
        };
        let state_dir = Path::new(STATE_ROOT).join(id);
        let record_path = state_dir.join(DETACHED_RECORD);
        let record: serde_json::Value = fs::read_to_string(&record_path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .ok_or_else(|| not_found(format!("no readable {}", record_path.display())))?;
        let bad = |field: &str| not_found(format!("{}: bad {field:?}", record_path.display()));
        let text = |field: &str| {
            record[field]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| bad(field))
        };
        let hosts = record["hosts"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=200).contains(n))
            .ok_or_else(|| bad("hosts"))?;
        let subnet: Vec<u8> = record["subnet"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|o| o.as_u64().and_then(|o| u8::try_from(o).ok()))
                    .collect()
            })
            .unwrap_or_default();
        let subnet: [u8; 3] = subnet.try_into().map_err(|_| bad("subnet"))?;
        let boot_timeout = Duration::from_millis(
            record["boot_timeout_ms"]
                .as_u64()
                .ok_or_else(|| bad("boot_timeout_ms"))?,
        );
        let tree = CgroupTree::new(&cgroup::cgroup2_mount()?, id);
        let infra_file = state_dir.join("infra.pid");
        let infra_pid = fs::read_to_string(&infra_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|pid| tree.contains(*pid))
            .ok_or_else(|| {
                not_found(format!(
                    "its infra process ({}) is gone",
                    infra_file.display()
                ))
            })?;
        let shared = Arc::new(ClusterShared {
            id: id.to_string(),
            host_init: state_dir.join("host-init.sh"),
            state_dir,
            cgroup: tree,
            subnet,
            infra_pid,
            hosts_file: text("hosts_file")?,
            binds: text("binds")?,
            upper_size: text("upper_size")?,
            boot_timeout,
        });
        let hosts = (0..hosts)
            .map(|i| Host::restore(Arc::clone(&shared), i))
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = Cluster {
            etcd: Etcd::new(Arc::clone(&shared)),
            hosts,
            shared,
            infra: None,
            boot_time: Duration::ZERO,
            keep_state: false,
            torn_down: false,
            detached: true,
        };
        cluster.etcd.ensure_forwarder()?;
        Ok(cluster)
    }

    /// Forwards TCP connections to `listen` (an address of this process's network namespace,
    /// port 0 for any) to `target` as seen inside the cluster (a host's IP, or etcd's), until
    /// the returned handle is dropped. A host's IP keeps working across its restarts.
    pub fn forward(&self, listen: SocketAddr, target: SocketAddr) -> Result<Forward, Error> {
        Forward::start(listen, self.shared.infra_pid, target)
    }

    /// The cluster's id (cgroup and state dir name).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The cluster's cgroup (`<cgroup2>/flt-th/<id>`): a process moved into a child cgroup
    /// of it (create the child first) is killed by [`Cluster::teardown`] and [`destroy`].
    pub fn cgroup_dir(&self) -> &Path {
        self.shared.cgroup.dir()
    }

    /// The state dir: `hosts/hN/{journal,console.log,supervisor.log,...}`, `etcd.log`, ...
    pub fn state_dir(&self) -> &Path {
        &self.shared.state_dir
    }

    /// Wall time from `start` until every host's systemd was `running`, etcd included.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// Host by 0-based index (`host(0)` is `h1`). Panics if out of range (a test bug).
    pub fn host(&self, index: usize) -> &Host {
        &self.hosts[index]
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// etcd's client URL as seen from inside the hosts, e.g. `http://10.213.0.1:2379`.
    pub fn etcd_endpoint(&self) -> String {
        format!("http://{}:2379", self.shared.infra_ip())
    }

    /// etcd's client URL for the test process itself: a loopback port forwarded into the
    /// infra namespace. While etcd is down a connection is accepted and then closed at once.
    /// Host partitions do not affect it (it does not cross the bridge ports).
    pub fn etcd_local_endpoint(&self) -> String {
        self.etcd.local_endpoint()
    }

    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// Graceful etcd stop (SIGTERM, SIGKILL after 10 s). Data is kept for `etcd_start`.
    pub fn etcd_stop(&self) -> Result<(), Error> {
        self.etcd.stop()
    }

    /// Abrupt etcd stop (SIGKILL).
    pub fn etcd_kill(&self) -> Result<(), Error> {
        self.etcd.kill()
    }

    pub fn etcd_start(&self) -> Result<(), Error> {
        self.etcd.start()
    }

    pub fn etcd_restart(&self) -> Result<(), Error> {
        self.etcd.stop()?;
        self.etcd.start()
    }

    /// Drops IP traffic between hosts `a` and `b` (ARP still passes). Undone by
    /// `host(a).heal()` or [`Cluster::heal_all`].
    pub fn partition_pair(&self, a: usize, b: usize) -> Result<(), Error> {
        self.hosts[a].partition_from(&self.hosts[b])
    }

    /// Removes every network fault (partitions; not `net_down`).
    pub fn heal_all(&self) -> Result<(), Error> {
        for host in &self.hosts {
            host.heal()?;
        }
        Ok(())
    }

    /// Kills every process, removes the cgroups and (unless kept) the state dir. Idempotent;
    /// also run by `Drop`.
    pub fn teardown(&mut self) -> Result<(), Error> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        self.etcd.shutdown_forwarder();
        for host in &self.hosts {
            host.sigkill_pid1();
        }
        self.shared
            .cgroup
            .signal(self.shared.infra_pid, nix::sys::signal::Signal::SIGKILL);
        // As in Host::kill: let the supervisors reap their PID 1 before the sweep.
        let _ = cgroup::wait_until(Duration::from_secs(1), || {
            !CgroupTree::populated(self.shared.cgroup.dir())
        });
        let keep = self.keep_state || std::thread::panicking();
        let result = teardown_dirs(&self.shared.cgroup, &self.shared.state_dir, keep);
        // Reap our direct children; they are dead once the cgroup is empty.
        for host in &self.hosts {
            host.reap();
        }
        self.etcd.reap();
        if let Some(mut infra) = self.infra.take() {
            let _ = infra.wait();
        }
        if keep {
            eprintln!(
                "testhost: kept state of cluster {} in {}",
                self.shared.id,
                self.shared.state_dir.display()
            );
        }
        result
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.detached && !self.torn_down {
            self.etcd.shutdown_forwarder();
            return;
        }
        if let Err(e) = self.teardown() {
            eprintln!(
                "testhost: teardown of cluster {} failed: {e}",
                self.shared.id
            );
        }
    }
}

fn start_infra(
    tree: &CgroupTree,
    state_dir: &Path,
    infra_init: &Path,
    subnet: [u8; 3],
) -> Result<(std::process::Child, u32), Error> {
    let cg = tree.child("infra")?;
    let log = log_file(&state_dir.join("infra.log"))?;
    let log2 = log.try_clone().map_err(|e| Error::io("dup infra.log", e))?;
    let [a, b, c] = subnet;
    let child = std::process::Command::new("/bin/sh")
        .arg(infra_init)
        .arg("launch")
        .env("FLT_TH_STATE", state_dir)
        .env("FLT_TH_CG", &cg)
        .env("FLT_TH_SUBNET", format!("{a}.{b}.{c}"))
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| Error::io("spawn infra-init.sh", e))?;
    let pid_file = state_dir.join("infra.pid");
    let pid =
        wait_for_pid_file(&pid_file, Duration::from_secs(10)).map_err(|waited| Error::Timeout {
            what: format!("{} (infra namespace start)", pid_file.display()),
            waited,
            detail: tail(&state_dir.join("infra.log"), 20),
        })?;
    if !tree.contains(pid) {
        return Err(Error::Preflight(format!(
            "infra pid {pid} is not inside cgroup {}",
            tree.dir().display()
        )));
    }
    Ok((child, pid))
}

/// Kills everything in the cluster's cgroup, removes the cgroups and (unless `keep`) the
/// state dir. The state dir is left alone if anything is mounted below it in our namespace.
fn teardown_dirs(tree: &CgroupTree, state_dir: &Path, keep: bool) -> Result<(), Error> {
    CgroupTree::kill_all(tree.dir(), Duration::from_secs(10))?;
    CgroupTree::remove(tree.dir())?;
    if let Some(parent) = tree.dir().parent() {
        let _ = fs::remove_dir(parent); // shared by concurrent clusters: fails while in use
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
    let prefix = state_dir.to_string_lossy().into_owned();
    if let Some(line) = mountinfo.lines().find(|l| {
        l.split_whitespace()
            .nth(4)
            .is_some_and(|m| m.starts_with(&prefix))
    }) {
        return Err(Error::Preflight(format!(
            "refusing to remove {prefix}: something is mounted below it: {line}"
        )));
    }
    if !keep && state_dir.exists() {
        match fs::remove_dir_all(state_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(format!("remove {}", state_dir.display()), e));
            }
            _ => {}
        }
        let _ = fs::remove_dir(STATE_ROOT); // fails while other clusters use it
    }
    Ok(())
}

/// Tears down the cluster `id` whoever owns it: kills its processes, removes its cgroups and
/// state dir. For a `down` command of a long-lived developer cluster started with a fixed id.
pub fn destroy(id: &str) -> Result<(), Error> {
    ClusterConfig {
        id: Some(id.to_string()),
        ..ClusterConfig::new(1)
    }
    .validate()?;
    let cgroup2 = cgroup::cgroup2_mount()?;
    teardown_dirs(
        &CgroupTree::new(&cgroup2, id),
        &Path::new(STATE_ROOT).join(id),
        false,
    )
}

/// Removes clusters whose owner process is gone (a crashed run), and the cluster `same_id`
/// if it exists and its owner is gone. Fails if `same_id` is owned by a live process.
fn sweep_stale(cgroup2: &Path, same_id: Option<&str>) -> Result<(), Error> {
    let mut ids = Vec::new();
    for dir in [cgroup2.join(CLUSTERS_DIR), PathBuf::from(STATE_ROOT)] {
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !ids.contains(&name) {
                        ids.push(name);
                    }
                }
            }
        }
    }
    for id in ids {
        let state_dir = Path::new(STATE_ROOT).join(&id);
        let owner = fs::read_to_string(state_dir.join("owner")).unwrap_or_default();
        let alive = owner_alive(owner.trim());
        if alive {
            if same_id == Some(id.as_str()) {
                return Err(Error::InUse { id, owner });
            }
            continue;
        }
        // A state dir without owner and without cgroup could be a cluster that is just
        // being created by another process: leave it unless it is old.
        let tree = CgroupTree::new(cgroup2, &id);
        if owner.is_empty()
            && !tree.dir().exists()
            && !older_than(&state_dir, Duration::from_secs(60))
        {
            continue;
        }
        eprintln!(
            "testhost: sweeping leftovers of cluster {id} (owner {:?} is gone)",
            owner.trim()
        );
        // Two clusters starting at once may sweep the same leftovers: losing that race is fine.
        if let Err(e) = teardown_dirs(&tree, &state_dir, false) {
            eprintln!("testhost: sweeping cluster {id}: {e}");
        }
    }
    Ok(())
}

fn older_than(path: &Path, age: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|elapsed| elapsed > age)
}

/// `"<pid> <start time>"`: identifies a process even after its PID is reused. `None` for a
/// process that is gone or a zombie (killed, not yet reaped by its parent).
fn owner_tag(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields 3 (state) and 22 (starttime), counted after the ")" that ends the command name.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    if fields
        .next()
        .is_none_or(|state| state == "Z" || state == "X")
    {
        return None;
    }
    let start = fields.nth(18)?;
    Some(format!("{pid} {start}"))
}

fn owner_alive(tag: &str) -> bool {
    let Some(pid) = tag
        .split_whitespace()
        .next()
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    owner_tag(pid).as_deref() == Some(tag)
}

pub(crate) fn write_file(path: &Path, content: &str) -> Result<(), Error> {
    fs::write(path, content).map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// Write-then-rename: a concurrent reader (the sweep of another process) never sees it empty.
fn write_atomic(path: &Path, content: &str) -> Result<(), Error> {
    let tmp = path.with_extension("new");
    write_file(&tmp, content)?;
    fs::rename(&tmp, path)
        .map_err(|e| Error::io(format!("rename {} to {}", tmp.display(), path.display()), e))
}

fn write_script(path: &Path, content: &str) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    write_file(path, content)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io(format!("chmod {}", path.display()), e))
}

pub(crate) fn log_file(path: &Path) -> Result<fs::File, Error> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))
}

/// The last `lines` lines of a log file, for error messages.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    format!(
        "last lines of {}:\n{}",
        path.display(),
        all[start..].join("\n")
    )
}

pub(crate) fn wait_for_pid_file(path: &Path, timeout: Duration) -> Result<u32, Duration> {
    let mut pid = None;
    cgroup::wait_until(timeout, || {
        pid = fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok());
        pid.is_some()
    })?;
    pid.ok_or(timeout)
}

/// Checks root, tools and kernel features; the error lists everything that is missing.
pub fn preflight() -> Result<(), Error> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root (run the tests as root)".to_string());
    }
    for tool in [
        "unshare",
        "nsenter",
        "setpriv",
        "pivot_root",
        "ip",
        "mount",
        "systemctl",
        "journalctl",
    ] {
        if !command::on_path(tool) {
            missing.push(format!("`{tool}` on PATH (util-linux, iproute2, systemd)"));
        }
    }
    if !command::on_path("nft") {
        missing.push("`nft` on PATH (apt-get install nftables)".into());
    }
    for (path, package) in [
        ("/lib/systemd/systemd", "systemd"),
        ("/usr/bin/etcd", "etcd-server"),
        ("/usr/bin/kill", "procps"),
    ] {
        if !Path::new(path).is_file() {
            missing.push(format!("{path} (apt-get install {package})"));
        }
    }
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    for fs_type in ["overlay", "tmpfs", "cgroup2", "devpts"] {
        if !filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some(fs_type))
        {
            missing.push(format!("filesystem {fs_type}"));
        }
    }
    if let Err(e) = cgroup::cgroup2_mount() {
        missing.push(e.to_string());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Preflight(missing.join("; ")))
    }
}

/// For integration tests: returns true if test hosts can be used. If they cannot, panics with
/// the reason, unless `FLT_SKIP_HOST_TESTS=1`, in which case it prints why and returns false.
pub fn require_hosts() -> bool {
    if std::env::var("FLT_SKIP_HOST_TESTS").is_ok_and(|v| v == "1") {
        eprintln!("FLT_SKIP_HOST_TESTS=1: skipping a test that needs real test hosts");
        return false;
    }
    if let Err(e) = preflight() {
        panic!("{e}\n(set FLT_SKIP_HOST_TESTS=1 to skip tests that need real test hosts)");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rejects_bad_ids_host_counts_and_binds() {
        assert!(ClusterConfig::new(3).validate().is_ok());
        assert!(ClusterConfig::new(0).validate().is_err());
        assert!(ClusterConfig::new(201).validate().is_err());
        for id in ["", "a/b", "../x", "with space", &"x".repeat(41)] {
            let config = ClusterConfig {
                id: Some(id.to_string()),
                ..ClusterConfig::new(1)
            };
            assert!(config.validate().is_err(), "id {id:?} accepted");
        }
        let relative = ClusterConfig {
            binds: vec![Bind::read_only("/", "opt/x")],
            ..ClusterConfig::new(1)
        };
        assert!(relative.validate().is_err());
        let missing = ClusterConfig {
            binds: vec![Bind::read_only("/nonexistent/flt-th-source", "/opt/x")],
            ..ClusterConfig::new(1)
        };
        assert!(missing.validate().is_err());
    }

    #[test]
    fn owner_tag_identifies_this_process_and_not_a_reused_pid() {
        let me = owner_tag(std::process::id()).expect("own /proc/self/stat");
        assert!(owner_alive(&me));
        let (pid, _) = me.split_once(' ').expect("pid and start time");
        assert!(
            !owner_alive(&format!("{pid} 1")),
            "same pid, other start time"
        );
        assert!(!owner_alive(""));
        assert!(!owner_alive("garbage"));
    }

    #[test]
    fn a_zombie_owner_is_dead() {
        // A killed owner stays a zombie until its parent reaps it: its clusters are stale.
        let mut child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep");
        let tag = owner_tag(child.id()).expect("tag of a live child");
        assert!(owner_alive(&tag));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the child");
        let zombie = cgroup::wait_until(Duration::from_secs(5), || {
            fs::read_to_string(format!("/proc/{}/stat", child.id())).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        });
        assert!(zombie.is_ok(), "the killed child never showed as a zombie");
        assert!(!owner_alive(&tag), "a zombie owner counts as alive");
        child.wait().expect("reap");
    }

    #[test]
    fn host_ips_follow_the_subnet() {
        assert_eq!(
            host::host_ip([10, 213, 0], 0),
            Ipv4Addr::new(10, 213, 0, 11)
        );
        assert_eq!(host::host_ip([10, 9, 8], 4), Ipv4Addr::new(10, 9, 8, 15));
    }
}
