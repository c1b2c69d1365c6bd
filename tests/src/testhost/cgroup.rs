//! The cgroup v2 subtree that holds every process of one test cluster.
//!
//! Each process the harness starts enters `<cg2>/flt-th/<cluster id>/...` before it creates
//! any namespace. That gives three guarantees the rest of the harness builds on: teardown is
//! one `cgroup.kill` even when every PID is lost, a signal is only ever sent to a PID that is
//! still inside the subtree (PIDs wrap quickly on a busy machine), and freezing a host is
//! atomic.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::Error;

/// Directory below the cgroup2 mount that holds all test clusters of this machine.
pub(crate) const CLUSTERS_DIR: &str = "flt-th";

/// Where cgroup2 is mounted: `/sys/fs/cgroup` on a pure v2 machine, `/sys/fs/cgroup/unified`
/// on a hybrid one.
pub(crate) fn cgroup2_mount() -> Result<PathBuf, Error> {
    let mounts = fs::read_to_string("/proc/self/mounts")
        .map_err(|e| Error::io("read /proc/self/mounts", e))?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _source = fields.next()?;
            let target = fields.next()?;
            let fstype = fields.next()?;
            (fstype == "cgroup2").then(|| PathBuf::from(target))
        })
        .next()
        .ok_or_else(|| Error::Preflight("no cgroup2 hierarchy is mounted".into()))
}

/// One cluster's cgroup subtree.
#[derive(Debug, Clone)]
pub(crate) struct CgroupTree {
    /// Absolute directory, e.g. `/sys/fs/cgroup/unified/flt-th/flt-1234-0`.
    dir: PathBuf,
    /// The same directory as `/proc/<pid>/cgroup` spells it, e.g. `/flt-th/flt-1234-0`.
    relative: String,
}

impl CgroupTree {
    pub(crate) fn new(cgroup2: &Path, id: &str) -> Self {
        let dir = cgroup2.join(CLUSTERS_DIR).join(id);
        let relative = format!("/{CLUSTERS_DIR}/{id}");
        Self { dir, relative }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of a child cgroup (`host/supervisor`, `etcd`, ...), created if missing.
    pub(crate) fn child(&self, name: &str) -> Result<PathBuf, Error> {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create cgroup {}", dir.display()), e))?;
        Ok(dir)
    }

    /// True if `pid` is alive (not a zombie) and inside this subtree (never signal a PID
    /// that is not).
    pub(crate) fn contains(&self, pid: u32) -> bool {
        let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.rsplit_once(')')
                    .is_none_or(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            })
            .unwrap_or(true);
        if zombie {
            return false;
        }
        let Ok(text) = fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            return false;
        };
        text.lines().any(|line| {
            line.strip_prefix("0::").is_some_and(|path| {
                path == self.relative || path.starts_with(&format!("{}/", self.relative))
            })
        })
    }

    /// Sends `signal` to `pid`, but only after checking that it is one of ours.
    /// Returns false (and sends nothing) if it is not.
    pub(crate) fn signal(&self, pid: u32, signal: Signal) -> bool {
        if !self.contains(pid) {
            return false;
        }
        let Ok(raw) = i32::try_from(pid) else {
            return false;
        };
        kill(Pid::from_raw(raw), signal).is_ok()
    }

    /// PIDs in the cgroup `name` (relative to this tree) and its descendants.
    pub(crate) fn pids(&self, name: &str) -> Vec<u32> {
        let mut pids = Vec::new();
        collect_pids(&self.dir.join(name), &mut pids);
        pids
    }

    /// True while any process lives in `dir` or below.
    pub(crate) fn populated(dir: &Path) -> bool {
        fs::read_to_string(dir.join("cgroup.events"))
            .map(|events| events.lines().any(|l| l == "populated 1"))
            .unwrap_or(false)
    }

    /// SIGKILLs everything in `dir` and below, and waits until it is empty.
    pub(crate) fn kill_all(dir: &Path, timeout: Duration) -> Result<(), Error> {
        if !dir.exists() {
            return Ok(());
        }
        let kill_file = dir.join("cgroup.kill");
        if kill_file.exists() {
            // A frozen cgroup is killed too: cgroup.kill works on frozen tasks.
            fs::write(&kill_file, "1")
                .map_err(|e| Error::io(format!("write {}", kill_file.display()), e))?;
        } else {
            let mut pids = Vec::new();
            collect_pids(dir, &mut pids);
            for pid in pids {
                if let Ok(raw) = i32::try_from(pid) {
                    let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
                }
            }
        }
        wait_until(timeout, || !Self::populated(dir)).map_err(|waited| Error::Timeout {
            what: format!("cgroup {} to become empty after cgroup.kill", dir.display()),
            waited,
            detail: format!("pids still inside: {:?}", {
                let mut pids = Vec::new();
                collect_pids(dir, &mut pids);
                pids
            }),
        })?;
        Ok(())
    }

    /// Removes `dir` and every cgroup below it, deepest first. The cgroups must be empty.
    pub(crate) fn remove(dir: &Path) -> Result<(), Error> {
        if !dir.exists() {
            return Ok(());
        }
        let mut dirs = Vec::new();
        collect_dirs(dir, &mut dirs);
        // collect_dirs lists parents before children: remove in reverse.
        for d in dirs.iter().rev() {
            if let Err(e) = fs::remove_dir(d)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(Error::io(format!("rmdir cgroup {}", d.display()), e));
            }
        }
        Ok(())
    }

    /// Freezes (`true`) or thaws the cgroup `name` and waits until the kernel reports it.
    pub(crate) fn freeze(&self, name: &str, frozen: bool) -> Result<(), Error> {
        let dir = self.dir.join(name);
        let value = if frozen { "1" } else { "0" };
        let file = dir.join("cgroup.freeze");
        fs::write(&file, value).map_err(|e| Error::io(format!("write {}", file.display()), e))?;
        let want = format!("frozen {value}");
        wait_until(Duration::from_secs(10), || {
            fs::read_to_string(dir.join("cgroup.events"))
                .is_ok_and(|ev| ev.lines().any(|l| l == want))
        })
        .map_err(|waited| Error::Timeout {
            what: format!("{} to report '{want}'", dir.join("cgroup.events").display()),
            waited,
            detail: String::new(),
        })?;
        Ok(())
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<u32>) {
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_pids(&entry.path(), out);
            }
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}

/// Polls `done` every 20 ms until it returns true or `timeout` passes; on timeout returns
/// how long it waited.
pub(crate) fn wait_until(
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, Duration> {
    let start = Instant::now();
    loop {
        if done() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return Err(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
