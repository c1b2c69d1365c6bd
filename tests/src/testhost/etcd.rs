//! The cluster's etcd (Debian `etcd-server` 3.4, v2 API enabled) inside the infra namespaces,
//! and a loopback forwarder so the test process itself can reach it.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::cgroup::{CgroupTree, wait_until};
use super::forward::Forward;
use super::{ClusterShared, Error};

const ETCD: &str = "/usr/bin/etcd";

/// Handle on the cluster's etcd. Obtained from [`super::Cluster::etcd`].
#[derive(Debug)]
pub struct Etcd {
    shared: Arc<ClusterShared>,
    process: Mutex<Option<Child>>,
    forwarder: Mutex<Option<Forward>>,
}

impl Etcd {
    pub(crate) fn new(shared: Arc<ClusterShared>) -> Self {
        Self {
            shared,
            process: Mutex::new(None),
            forwarder: Mutex::new(None),
        }
    }

    /// Starts etcd (if not running) and waits until `/health` answers `true`.
    pub fn start(&self) -> Result<(), Error> {
        self.ensure_forwarder()?;
        let mut process = self.process.lock().unwrap_or_else(PoisonError::into_inner);
        if self.etcd_pids().is_empty() {
            if let Some(mut old) = process.take() {
                let _ = old.wait();
            }
            *process = Some(self.spawn()?);
        }
        drop(process);
        let mut last = String::new();
        wait_until(Duration::from_secs(20), || {
            last = self.get("/health").unwrap_or_else(|e| e.to_string());
            last.contains("\"health\":\"true\"")
        })
        .map_err(|waited| Error::Timeout {
            what: format!("etcd /health at {} to say true", self.local_endpoint()),
            waited,
            detail: format!(
                "last answer: {last:?}; {}",
                super::tail(&self.log_path(), 15)
            ),
        })?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s; waits until it is gone.
    pub fn stop(&self) -> Result<(), Error> {
        for pid in self.etcd_pids() {
            self.shared.cgroup.signal(pid, Signal::SIGTERM);
        }
        let dir = self.shared.cgroup.dir().join("etcd");
        if wait_until(Duration::from_secs(10), || !CgroupTree::populated(&dir)).is_err() {
            CgroupTree::kill_all(&dir, Duration::from_secs(10))?;
        }
        self.reap();
        Ok(())
    }

    /// SIGKILL to etcd; waits until it is gone.
    pub fn kill(&self) -> Result<(), Error> {
        CgroupTree::kill_all(
            &self.shared.cgroup.dir().join("etcd"),
            Duration::from_secs(10),
        )?;
        self.reap();
        Ok(())
    }

    /// True if an etcd process of this cluster is alive.
    pub fn is_running(&self) -> bool {
        !self.etcd_pids().is_empty()
    }

    /// URL for the test process (loopback, forwarded into the infra namespace).
    pub fn local_endpoint(&self) -> String {
        let forwarder = self
            .forwarder
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match forwarder.as_ref() {
            Some(f) => format!("http://{}", f.local_addr()),
            None => "http://127.0.0.1:0".into(),
        }
    }

    /// A plain HTTP/1.0 GET through the forwarder, returning the body; for health checks and
    /// test assertions without an HTTP client crate.
    pub fn get(&self, path: &str) -> Result<String, Error> {
        let addr = self
            .forwarder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Forward::local_addr)
            .ok_or_else(|| Error::Config("etcd forwarder not running".into()))?;
        let what = format!("GET http://{addr}{path}");
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| Error::io(what.clone(), e))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| Error::io(what.clone(), e))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: etcd\r\n\r\n")
            .map_err(|e| Error::io(what.clone(), e))?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| Error::io(what.clone(), e))?;
        match response.split_once("\r\n\r\n") {
            Some((_, body)) => Ok(body.to_string()),
            None => Err(Error::io(
                what,
                std::io::Error::other(format!("no HTTP response: {response:?}")),
            )),
        }
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.shared.state_dir.join("etcd.log")
    }

    /// PIDs of etcd itself (not the nsenter that waits for it), checked by command name.
    /// The pids of this cluster's etcd processes (none while it is stopped).
    pub fn etcd_pids(&self) -> Vec<u32> {
        self.shared
            .cgroup
            .pids("etcd")
            .into_iter()
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "etcd")
            })
            .collect()
    }

    fn spawn(&self) -> Result<Child, Error> {
        let cg = self.shared.cgroup.child("etcd")?;
        let log = super::log_file(&self.log_path())?;
        let log2 = log.try_clone().map_err(|e| Error::io("dup etcd.log", e))?;
        let ip = self.shared.infra_ip();
        let data = self.shared.state_dir.join("etcd-data");
        let infra = self.shared.infra_pid.to_string();
        // The shell enters the cgroup first; nsenter -p makes etcd a member of the infra PID
        // namespace (so it dies with infra) and -m shows it the infra's tmpfs data dir.
        Command::new("/bin/sh")
            .args(["-c", "echo $$ >\"$0/cgroup.procs\" && exec \"$@\""])
            .arg(&cg)
            .args(["nsenter", "-t", &infra, "-n", "-m", "-u", "-p", "--", ETCD])
            .args(["--name", "flt-test-etcd", "--data-dir"])
            .arg(&data)
            .arg(format!(
                "--listen-client-urls=http://{ip}:2379,http://127.0.0.1:2379"
            ))
            .arg(format!("--advertise-client-urls=http://{ip}:2379"))
            .args([
                "--listen-peer-urls=http://127.0.0.1:2380",
                "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=flt-test-etcd=http://127.0.0.1:2380",
                "--enable-v2=true",
                "--logger=zap",
                "--log-outputs=stderr",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| Error::io("spawn etcd", e))
    }

    pub(crate) fn ensure_forwarder(&self) -> Result<(), Error> {
        let mut forwarder = self
            .forwarder
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if forwarder.is_none() {
            *forwarder = Some(Forward::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                self.shared.infra_pid,
                SocketAddr::from((self.shared.infra_ip(), 2379)),
            )?);
        }
        Ok(())
    }

    pub(crate) fn shutdown_forwarder(&self) {
        // Dropping the forward stops it.
        drop(
            self.forwarder
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// Waits for the nsenter child if it has exited (no zombies left behind).
    pub(crate) fn reap(&self) {
        let mut process = self.process.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(child) = process.as_mut() {
            if matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
                *process = None;
            } else if self.etcd_pids().is_empty()
                && CgroupTree::populated(&self.shared.cgroup.dir().join("etcd"))
            {
                // nsenter alone is left (etcd gone): it exits right after; wait for it.
                let _ = child.wait();
                *process = None;
            }
        }
    }
}
