//! The cluster's etcd (Debian `etcd-server` 3.4, v2 API enabled) inside the infra namespaces,
//! and a loopback forwarder so the test process itself can reach it.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::Signal;

use super::cgroup::{CgroupTree, wait_until};
use super::{ClusterShared, Error};

const ETCD: &str = "/usr/bin/etcd";

/// Handle on the cluster's etcd. Obtained from [`super::Cluster::etcd`].
#[derive(Debug)]
pub struct Etcd {
    shared: Arc<ClusterShared>,
    process: Mutex<Option<Child>>,
    forwarder: Mutex<Option<Forwarder>>,
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
            Some(f) => format!("http://{}", f.local_addr),
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
            .map(|f| f.local_addr)
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
    fn etcd_pids(&self) -> Vec<u32> {
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

    fn ensure_forwarder(&self) -> Result<(), Error> {
        let mut forwarder = self
            .forwarder
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if forwarder.is_none() {
            *forwarder = Some(Forwarder::start(
                self.shared.infra_pid,
                SocketAddr::from((self.shared.infra_ip(), 2379)),
            )?);
        }
        Ok(())
    }

    pub(crate) fn shutdown_forwarder(&self) {
        if let Some(f) = self
            .forwarder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            f.stop();
        }
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

/// Accepts on a loopback port of the test process's network namespace and connects each
/// client to etcd from a thread that has entered the infra network namespace. A socket keeps
/// the namespace it was created in, so the copy threads can run anywhere.
#[derive(Debug)]
struct Forwarder {
    local_addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    fn start(infra_pid: u32, target: SocketAddr) -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Error::io("bind etcd forwarder on 127.0.0.1", e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io("etcd forwarder address", e))?;
        let netns_path = format!("/proc/{infra_pid}/ns/net");
        let netns =
            fs::File::open(&netns_path).map_err(|e| Error::io(format!("open {netns_path}"), e))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("etcd-forwarder".into())
            .spawn(move || {
                let entered = setns(&netns, CloneFlags::CLONE_NEWNET);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered.map_err(|e| e.to_string()));
                if ok {
                    accept_loop(&listener, target, &stop);
                }
            })
            .map_err(|e| Error::io("spawn etcd forwarder thread", e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                local_addr,
                stopping,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(Error::Preflight(format!("setns into {netns_path}: {e}"))),
            Err(_) => Err(Error::Preflight("etcd forwarder thread died".into())),
        }
    }

    fn stop(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.local_addr, Duration::from_secs(1)); // wakes accept()
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, target: SocketAddr, stopping: &AtomicBool) {
    for client in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        // While etcd is down this fails and the client sees its connection closed.
        let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
            continue;
        };
        let _ = std::thread::Builder::new()
            .name("etcd-fwd-up".into())
            .spawn(move || pipe(client, upstream));
        let _ = std::thread::Builder::new()
            .name("etcd-fwd-down".into())
            .spawn(move || pipe(upstream2, client2));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
