//! Loopback TCP forwards from the caller's network namespace into a cluster's infra network
//! namespace, which sees etcd and every host over the bridge.

use std::fs;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

use super::Error;

/// Accepts on a port of the caller's network namespace and connects each client to `target`
/// from a thread that has entered the infra network namespace. A socket keeps the namespace
/// it was created in, so the copy threads can run anywhere. Dropping it stops accepting.
#[derive(Debug)]
pub struct Forward {
    local_addr: SocketAddr,
    target: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forward {
    pub(crate) fn start(
        listen: SocketAddr,
        infra_pid: u32,
        target: SocketAddr,
    ) -> Result<Self, Error> {
        let listener = TcpListener::bind(listen)
            .map_err(|e| Error::io(format!("bind forward to {target} on {listen}"), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io(format!("address of the forward to {target}"), e))?;
        let netns_path = format!("/proc/{infra_pid}/ns/net");
        let netns =
            fs::File::open(&netns_path).map_err(|e| Error::io(format!("open {netns_path}"), e))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("fwd-{}", target.port()))
            .spawn(move || {
                let entered = setns(&netns, CloneFlags::CLONE_NEWNET);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered.map_err(|e| e.to_string()));
                if ok {
                    accept_loop(&listener, target, &stop);
                }
            })
            .map_err(|e| Error::io(format!("spawn the forward thread for {target}"), e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                local_addr,
                target,
                stopping,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(Error::Preflight(format!("setns into {netns_path}: {e}"))),
            Err(_) => Err(Error::Preflight(format!(
                "the forward thread for {target} died"
            ))),
        }
    }

    /// The address clients connect to, e.g. `127.0.0.1:54728`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where connections go, as seen from the infra namespace.
    pub fn target(&self) -> SocketAddr {
        self.target
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
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
        // While the target is down this fails and the client sees its connection closed.
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
            .name("fwd-up".into())
            .spawn(move || pipe(client, upstream));
        let _ = std::thread::Builder::new()
            .name("fwd-down".into())
            .spawn(move || pipe(upstream2, client2));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
