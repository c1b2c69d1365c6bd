//! One test host: real systemd as PID 1 in its own namespaces (see the module docs above).

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::cgroup::{CgroupTree, wait_until};
use super::command;
use super::{ClusterShared, Error};

const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(crate) fn host_ip(subnet: [u8; 3], index: usize) -> Ipv4Addr {
    let [a, b, c] = subnet;
    // Config validation caps hosts at 200, so 11 + index stays below 255.
    Ipv4Addr::new(a, b, c, u8::try_from(11 + index).unwrap_or(u8::MAX))
}

/// A test host. All methods take `&self`; a host may be driven from several threads.
#[derive(Debug)]
pub struct Host {
    shared: Arc<ClusterShared>,
    index: usize,
    name: String,
    machine_id: String,
    ip: Ipv4Addr,
    runtime: Mutex<Runtime>,
}

#[derive(Debug, Default)]
struct Runtime {
    /// Global PID of the host's PID 1 (systemd), while it runs.
    pid: Option<u32>,
    /// The `unshare` supervisor: our direct child, reaped after the host dies.
    supervisor: Option<Child>,
    /// Network namespace inode of the current boot, to prove it is gone after a kill.
    netns: Option<u64>,
}

impl Host {
    pub(crate) fn new(shared: Arc<ClusterShared>, index: usize) -> Self {
        let name = format!("h{}", index + 1);
        let machine_id = random_machine_id();
        let ip = host_ip(shared.subnet, index);
        Self {
            shared,
            index,
            name,
            machine_id,
            ip,
            runtime: Mutex::new(Runtime::default()),
        }
    }

    /// A host of a detached cluster found again by [`super::Cluster::attach`]: identity from
    /// the state dir, PID 1 adopted if it is still inside the host's cgroup.
    pub(crate) fn restore(shared: Arc<ClusterShared>, index: usize) -> Result<Self, Error> {
        let mut host = Self::new(shared, index);
        let dir = host.state_dir();
        let id_file = dir.join("machine-id");
        host.machine_id = fs::read_to_string(&id_file)
            .map_err(|e| Error::io(format!("read {}", id_file.display()), e))?
            .trim()
            .to_string();
        let pid = fs::read_to_string(dir.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|pid| host.shared.cgroup.contains(*pid));
        if let Some(pid) = pid {
            let mut rt = host.runtime();
            rt.pid = Some(pid);
            rt.netns = fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .ok();
        }
        Ok(host)
    }

    /// `h1`, `h2`, ...
    pub fn name(&self) -> &str {
        &self.name
    }

    /// 0-based index in the cluster.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The host's `/etc/machine-id` (32 hex chars); kept across kill/start.
    pub fn machine_id(&self) -> &str {
        &self.machine_id
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Hostname inside the host: `<cluster id>-hN`.
    pub fn hostname(&self) -> String {
        format!("{}-{}", self.shared.id, self.name)
    }

    /// Global PID of the host's systemd, if it is running.
    pub fn pid(&self) -> Option<u32> {
        let pid = self.runtime().pid?;
        self.shared.cgroup.contains(pid).then_some(pid)
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// Per-host state dir: `journal/`, `console.log`, `supervisor.log`, `pid`.
    pub fn state_dir(&self) -> PathBuf {
        self.shared.state_dir.join("hosts").join(&self.name)
    }

    /// The host's root as seen from the test process: `/proc/<pid>/root`. Files written
    /// below it land in the host's tmpfs upper layer (or its private /run, /tmp).
    pub fn root(&self) -> Result<PathBuf, Error> {
        Ok(PathBuf::from(format!("/proc/{}/root", self.running_pid()?)))
    }

    /// D-Bus address of the host's system bus, usable from the test process.
    pub fn system_bus_address(&self) -> Result<String, Error> {
        Ok(format!(
            "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
            self.running_pid()?
        ))
    }

    fn runtime(&self) -> MutexGuard<'_, Runtime> {
        self.runtime.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn running_pid(&self) -> Result<u32, Error> {
        self.pid().ok_or_else(|| Error::HostNotRunning {
            host: self.name.clone(),
            detail: "no live PID 1".into(),
        })
    }

    fn cgroup_name(&self) -> &str {
        &self.name
    }

    /// Runs `args` inside the host (all its namespaces, clean environment) and returns its
    /// output whatever the exit status. The process is not supervised by the host's systemd
    /// but belongs to the host's cgroup subtree, so freeze and kill include it.
    pub fn exec(&self, args: &[&str]) -> Result<Output, Error> {
        let all = self.exec_args(args)?;
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        command::output("/bin/sh", &all, None)
    }

    /// The command [`Host::exec`] runs, unstarted: for callers that want to inherit stdio,
    /// wait without the 60 s limit or read the exit code (an interactive shell, `-f` logs).
    pub fn command(&self, args: &[&str]) -> Result<Command, Error> {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(self.exec_args(args)?);
        Ok(cmd)
    }

    /// `sh -c` that enters the host's exec cgroup, then nsenter into all its namespaces.
    fn exec_args(&self, args: &[&str]) -> Result<Vec<String>, Error> {
        let pid = self.running_pid()?.to_string();
        let cg = self
            .shared
            .cgroup
            .child(&format!("{}/exec", self.cgroup_name()))?;
        let mut all: Vec<String> = vec![
            "-c".into(),
            "echo $$ >\"$0/cgroup.procs\" && exec \"$@\"".into(),
            cg.to_string_lossy().into_owned(),
        ];
        all.extend(
            [
                "nsenter", "-t", &pid, "-m", "-u", "-i", "-n", "-p", "-C", "--", "env", "-i",
            ]
            .map(String::from),
        );
        all.push(format!("PATH={HOST_PATH}"));
        all.extend(
            [
                "HOME=/root",
                "LANG=C.UTF-8",
                "TERM=dumb",
                "SYSTEMD_PAGER=",
                "SYSTEMD_COLORS=0",
            ]
            .map(String::from),
        );
        all.extend(args.iter().map(|a| a.to_string()));
        Ok(all)
    }

    /// Like [`Host::exec`], but a non-zero exit is an error; returns stdout.
    pub fn exec_ok(&self, args: &[&str]) -> Result<String, Error> {
        let out = self.exec(args)?;
        command::check(&format!("{}: {}", self.name, args.join(" ")), out)
    }

    /// Starts `args` as transient service `unit` under the host's systemd (`systemd-run`),
    /// the way fltd runs on a real machine: own cgroup, journal, `systemctl stop` works.
    pub fn run_unit(&self, unit: &str, args: &[&str]) -> Result<(), Error> {
        let unit_arg = format!("--unit={unit}");
        let mut all = vec![
            "systemd-run",
            "--quiet",
            "--collect",
            unit_arg.as_str(),
            "--property=KillMode=mixed",
            "--property=TimeoutStopSec=5",
            "--",
        ];
        all.extend_from_slice(args);
        self.exec_ok(&all).map(|_| ())
    }

    /// `journalctl --no-pager -D <journal dir> args`: reads the journal from the machine's
    /// disk, so it works after the host was killed. journald syncs every second.
    pub fn logs(&self, args: &[&str]) -> Result<String, Error> {
        let dir = self.state_dir().join("journal").join(&self.machine_id);
        let dir = dir.to_string_lossy().into_owned();
        let mut all = vec!["--no-pager", "-D", dir.as_str()];
        all.extend_from_slice(args);
        command::run("journalctl", &all, None)
    }

    /// Abrupt death: SIGKILL to PID 1, so the kernel kills the whole PID namespace. Returns
    /// once the host's cgroup is empty, its network namespace is gone and its veth has left
    /// the bridge.
    pub fn kill(&self) -> Result<(), Error> {
        let (pid, netns) = {
            let rt = self.runtime();
            (rt.pid, rt.netns)
        };
        let Some(pid) = pid else { return Ok(()) };
        self.shared.cgroup.signal(pid, Signal::SIGKILL);
        let dir = self.shared.cgroup.dir().join(self.cgroup_name());
        // Give the supervisor a moment to reap PID 1 and exit by itself (fewer zombies for
        // the machine's init); cgroup.kill then takes whatever is left.
        let _ = wait_until(Duration::from_secs(2), || !CgroupTree::populated(&dir));
        CgroupTree::kill_all(&dir, Duration::from_secs(10))?;
        if let Some(netns) = netns {
            wait_until(Duration::from_secs(10), || !netns_in_use(netns)).map_err(|waited| {
                Error::Timeout {
                    what: format!("network namespace {netns} of {} to disappear", self.name),
                    waited,
                    detail: String::new(),
                }
            })?;
        }
        // The kernel dismantles a dead namespace's devices asynchronously (cleanup_net).
        let veth = format!("v{}", self.name);
        wait_until(Duration::from_secs(10), || {
            self.shared
                .in_infra("ip", &["link", "show", &veth], None)
                .is_err()
        })
        .map_err(|waited| Error::Timeout {
            what: format!("{veth} of killed host {} to leave the bridge", self.name),
            waited,
            detail: String::new(),
        })?;
        self.runtime().pid = None;
        self.reap();
        Ok(())
    }

    /// Graceful poweroff: SIGRTMIN+4 (systemd's poweroff request; SIGTERM would make it
    /// re-execute). Falls back to [`Host::kill`] after 20 s.
    pub fn stop(&self) -> Result<(), Error> {
        let Some(pid) = self.pid() else { return Ok(()) };
        let pid_arg = pid.to_string();
        // nix has no real-time signals; /usr/bin/kill knows RTMIN+4 by name.
        if self.shared.cgroup.contains(pid) {
            command::run("/usr/bin/kill", &["--signal", "RTMIN+4", &pid_arg], None)?;
        }
        let dir = self.shared.cgroup.dir().join(self.cgroup_name());
        if wait_until(Duration::from_secs(20), || !CgroupTree::populated(&dir)).is_err() {
            eprintln!(
                "testhost: {} did not power off within 20 s; killing it",
                self.name
            );
        }
        self.kill()
    }

    /// Boots the host again after `kill`/`stop`: same machine-id, IP and journal, new boot id.
    pub fn start(&self) -> Result<(), Error> {
        if self.is_running() {
            return Err(Error::Config(format!("{} is already running", self.name)));
        }
        let started = Instant::now();
        self.spawn()?;
        self.wait_booted(started)?;
        Ok(())
    }

    /// Starts the namespaces and systemd and plugs the host into the bridge; does not wait
    /// for the boot to finish.
    pub(crate) fn spawn(&self) -> Result<(), Error> {
        self.reap();
        let dir = self.state_dir();
        let cg_dir = self.shared.cgroup.dir().join(self.cgroup_name());
        if CgroupTree::populated(&cg_dir) {
            return Err(Error::Config(format!(
                "{}: old processes still in {}",
                self.name,
                cg_dir.display()
            )));
        }
        // The previous boot's empty cgroups would confuse the new systemd: start clean.
        CgroupTree::remove(&cg_dir)?;
        for sub in ["root", "rw", "journal"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| Error::io(format!("create {}", dir.join(sub).display()), e))?;
        }
        let _ = fs::remove_file(dir.join("pid"));
        super::write_file(&dir.join("console.log"), "")?;
        super::write_file(&dir.join("machine-id"), &format!("{}\n", self.machine_id))?;
        self.shared
            .cgroup
            .child(&format!("{}/supervisor", self.cgroup_name()))?;
        self.shared
            .cgroup
            .child(&format!("{}/payload", self.cgroup_name()))?;
        self.shared
            .cgroup
            .child(&format!("{}/exec", self.cgroup_name()))?;

        let log = super::log_file(&dir.join("supervisor.log"))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("dup supervisor.log", e))?;
        let child = Command::new("/bin/sh")
            .arg(&self.shared.host_init)
            .arg("launch")
            .env_clear()
            .env("PATH", HOST_PATH)
            .env("FLT_TH_NAME", &self.name)
            .env("FLT_TH_HOSTNAME", self.hostname())
            .env("FLT_TH_DIR", &dir)
            .env("FLT_TH_MACHINE_ID", &self.machine_id)
            .env("FLT_TH_CG", &cg_dir)
            .env("FLT_TH_HOSTS_FILE", &self.shared.hosts_file)
            .env("FLT_TH_BINDS", &self.shared.binds)
            .env("FLT_TH_UPPER_SIZE", &self.shared.upper_size)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| Error::io(format!("spawn host-init.sh for {}", self.name), e))?;
        self.runtime().supervisor = Some(child);

        let pid = super::wait_for_pid_file(&dir.join("pid"), Duration::from_secs(10)).map_err(
            |waited| Error::Timeout {
                what: format!("{}/pid (host {} namespaces)", dir.display(), self.name),
                waited,
                detail: super::tail(&dir.join("supervisor.log"), 20),
            },
        )?;
        if !self.shared.cgroup.contains(pid) {
            return Err(Error::HostNotRunning {
                host: self.name.clone(),
                detail: format!(
                    "pid {pid} is not in {}; {}",
                    cg_dir.display(),
                    super::tail(&dir.join("supervisor.log"), 20)
                ),
            });
        }
        let netns = fs::metadata(format!("/proc/{pid}/ns/net"))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok();
        {
            let mut rt = self.runtime();
            rt.pid = Some(pid);
            rt.netns = netns;
        }
        self.plug_network(pid)
    }

    /// A veth pair created inside the infra namespace: `vhN` joins the bridge there, `eth0`
    /// goes straight into the host's namespace. Neither end ever exists on the machine.
    fn plug_network(&self, pid: u32) -> Result<(), Error> {
        let veth = format!("v{}", self.name);
        let pid_arg = pid.to_string();
        self.shared.in_infra(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &pid_arg,
            ],
            None,
        )?;
        self.shared
            .in_infra("ip", &["link", "set", &veth, "master", "br0", "up"], None)?;
        let address = format!("{}/24", self.ip);
        let batch = format!("addr add {address} dev eth0\nlink set eth0 up\nlink set lo up\n");
        command::run(
            "nsenter",
            &["-t", &pid_arg, "-n", "--", "ip", "-batch", "-"],
            Some(&batch),
        )?;
        Ok(())
    }

    /// Waits until systemd reports `running` (or `degraded`, which prints the failed units).
    pub(crate) fn wait_booted(&self, since: Instant) -> Result<Duration, Error> {
        let pid = self.runtime().pid.ok_or_else(|| Error::HostNotRunning {
            host: self.name.clone(),
            detail: "never spawned".into(),
        })?;
        let pid_arg = pid.to_string();
        let console = self.state_dir().join("console.log");
        let supervisor = self.state_dir().join("supervisor.log");
        let deadline = since + self.shared.boot_timeout;
        let mut state;
        loop {
            if !self.shared.cgroup.contains(pid) {
                return Err(Error::HostNotRunning {
                    host: self.name.clone(),
                    detail: format!(
                        "died during boot; {}\n{}",
                        super::tail(&supervisor, 20),
                        super::tail(&console, 30)
                    ),
                });
            }
            let out = command::output(
                "nsenter",
                &[
                    "-t",
                    &pid_arg,
                    "-m",
                    "-p",
                    "--",
                    "systemctl",
                    "is-system-running",
                ],
                None,
            )?;
            state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("systemd of {} to reach 'running'", self.name),
                    waited: since.elapsed(),
                    detail: format!("last state {state:?}; {}", super::tail(&console, 30)),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if state == "degraded" {
            let failed = self
                .exec(&["systemctl", "--no-pager", "--failed"])
                .map(|o| o.stdout)
                .unwrap_or_default();
            eprintln!(
                "testhost: {} booted degraded; failed units:\n{}",
                self.name,
                String::from_utf8_lossy(&failed)
            );
        }
        Ok(since.elapsed())
    }

    /// Pulls the cable: the bridge-side veth goes down; the host sees NO-CARRIER.
    pub fn net_down(&self) -> Result<(), Error> {
        self.shared
            .in_infra(
                "ip",
                &["link", "set", &format!("v{}", self.name), "down"],
                None,
            )
            .map(|_| ())
    }

    pub fn net_up(&self) -> Result<(), Error> {
        self.shared
            .in_infra(
                "ip",
                &["link", "set", &format!("v{}", self.name), "up"],
                None,
            )
            .map(|_| ())
    }

    /// Silently drops IPv4/IPv6 between this host and etcd (connects time out; ARP passes so
    /// traffic resumes the instant the rule is removed). Host-to-host traffic still flows.
    pub fn partition_from_etcd(&self) -> Result<(), Error> {
        let veth = format!("v{}", self.name);
        self.add_fault_rules(&[
            format!("input iifname \"{veth}\""),
            format!("output oifname \"{veth}\""),
        ])
    }

    /// Drops all IP traffic to and from this host (etcd and every other host).
    pub fn isolate(&self) -> Result<(), Error> {
        let veth = format!("v{}", self.name);
        self.add_fault_rules(&[
            format!("input iifname \"{veth}\""),
            format!("output oifname \"{veth}\""),
            format!("forward iifname \"{veth}\""),
            format!("forward oifname \"{veth}\""),
        ])
    }

    /// Drops IP traffic between this host and `other` only.
    pub fn partition_from(&self, other: &Host) -> Result<(), Error> {
        let (a, b) = (format!("v{}", self.name), format!("v{}", other.name));
        self.add_fault_rules(&[
            format!("forward iifname \"{a}\" oifname \"{b}\""),
            format!("forward iifname \"{b}\" oifname \"{a}\""),
        ])
    }

    /// Removes every fault this host's `partition_*`/`isolate` calls added.
    pub fn heal(&self) -> Result<(), Error> {
        let table = self.fault_table();
        if self
            .shared
            .in_infra("nft", &["list", "table", "bridge", &table], None)
            .is_ok()
        {
            self.shared
                .in_infra("nft", &["delete", "table", "bridge", &table], None)?;
        }
        Ok(())
    }

    /// Each host's faults live in a table of their own (bridge family, infra namespace), so
    /// healing one host is deleting one table.
    fn fault_table(&self) -> String {
        format!("flt_faults_{}", self.name)
    }

    fn add_fault_rules(&self, rules: &[String]) -> Result<(), Error> {
        let table = self.fault_table();
        let mut script = format!(
            "table bridge {table} {{\n  chain input {{ type filter hook input priority 0; policy accept; }}\n  \
             chain output {{ type filter hook output priority 0; policy accept; }}\n  \
             chain forward {{ type filter hook forward priority 0; policy accept; }}\n}}\n"
        );
        for rule in rules {
            let (chain, matches) = rule.split_once(' ').unwrap_or((rule.as_str(), ""));
            script.push_str(&format!(
                "add rule bridge {table} {chain} {matches} meta protocol {{ ip, ip6 }} drop\n"
            ));
        }
        self.shared
            .in_infra("nft", &["-f", "-"], Some(&script))
            .map(|_| ())
    }

    /// Pauses every process of the host at once (cgroup v2 freezer). `exec` into a frozen host
    /// blocks until `thaw` (or fails after the 60 s command time-out).
    pub fn freeze(&self) -> Result<(), Error> {
        self.shared.cgroup.freeze(self.cgroup_name(), true)
    }

    pub fn thaw(&self) -> Result<(), Error> {
        self.shared.cgroup.freeze(self.cgroup_name(), false)
    }

    /// Teardown helper: SIGKILL to PID 1 if it is still ours.
    pub(crate) fn sigkill_pid1(&self) {
        if let Some(pid) = self.runtime().pid {
            self.shared.cgroup.signal(pid, Signal::SIGKILL);
        }
    }

    /// Waits for the supervisor once it has exited and forgets the PID.
    pub(crate) fn reap(&self) {
        let mut rt = self.runtime();
        if let Some(pid) = rt.pid
            && !self.shared.cgroup.contains(pid)
        {
            rt.pid = None;
        }
        if rt.pid.is_none()
            && let Some(mut child) = rt.supervisor.take()
        {
            // The supervisor exits right after its PID 1; bounded wait, never a hang.
            let gone = wait_until(Duration::from_secs(5), || {
                !matches!(child.try_wait(), Ok(None))
            });
            if gone.is_err() {
                rt.supervisor = Some(child);
            }
        }
    }
}

/// True if any process still has network namespace `inode`.
fn netns_in_use(inode: u64) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        name.to_string_lossy().bytes().all(|b| b.is_ascii_digit())
            && fs::metadata(entry.path().join("ns/net"))
                .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == inode)
    })
}

/// 32 lowercase hex chars from the kernel's random UUID source.
fn random_machine_id() -> String {
    let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap_or_default();
    let id: String = uuid.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    if id.len() == 32 {
        id
    } else {
        // Not reachable on Linux; still return a well-formed id derived from time and pid.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!(
            "{:016x}{:016x}",
            nanos as u64,
            u64::from(std::process::id())
        )
    }
}
