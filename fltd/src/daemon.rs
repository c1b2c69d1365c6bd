//! fltd's run loop: one `select!` over signals, API requests, registry responses, systemd
//! events, the core's next deadline and the systemd watchdog, feeding a [`CoreNode`] and
//! carrying out what it asks ([`Outgoing`]) and tells ([`Notice`]).
//!
//! A *generation* is everything built from one configuration: the etcd and systemd drivers, the
//! core node and the API request channel. SIGHUP ends a generation (the node is stopped as on
//! SIGTERM without the host check; the API answers 503 meanwhile), re-reads the configuration
//! and starts the next one; the API listeners and their open connections stay. SIGTERM/SIGINT
//! stop the node (it decides what a stop means, see [`crate::daemon_node`]) and end the loop
//! once it is stopped.

use crate::clock::Clock;
use crossbeam_channel::{Receiver, Sender, never, select, tick};
use flt_core::registry::{OpId, Request, Response};
use flt_core::time::Instant;
use flt_driver::etcd::RegistryDriver;
use flt_driver::http::{ApiRequest, HttpServer};
use flt_driver::notify::Notifier;
use flt_driver::signals::Signal;
use flt_driver::systemd::{
    SystemdConfig, SystemdDriver, SystemdError, SystemdEvent, SystemdRequest,
};
use std::time::Duration;

/// How often fltd tries to reach systemd again while it cannot.
pub const SYSTEMD_RETRY: Duration = Duration::from_secs(5);

/// Work for the drivers.
#[derive(Debug)]
pub enum Outgoing {
    Registry(OpId, Request),
    CancelWatch(OpId),
    Systemd(SystemdRequest),
}

/// Something to tell the service manager (`sd_notify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `READY=1`: the machine is registered.
    Ready,
    /// `STATUS=...`.
    Status(String),
}

/// What the run loop drives: the core's node, adapted. Every `handle_*` is followed by draining
/// [`CoreNode::poll_outgoing`] and [`CoreNode::poll_notice`]; [`CoreNode::poll_timeout`] is the
/// next wake-up.
pub trait CoreNode {
    /// Registered in etcd: the API serves requests (otherwise every path answers 503).
    fn is_registered(&self) -> bool;
    /// A registry driver's answer to an earlier request (or a watch event).
    fn handle_registry(&mut self, response: Response, now: Instant);
    /// A systemd driver's reply or report.
    fn handle_systemd(&mut self, event: SystemdEvent, now: Instant);
    /// An API request: answer it now or keep it until the registry answers.
    fn handle_api(&mut self, request: ApiRequest, now: Instant);
    /// The deadline from [`CoreNode::poll_timeout`] passed (spurious calls are harmless).
    fn handle_timeout(&mut self, now: Instant);
    /// Begin stopping; with `check_host`, find out first whether the host is shutting down.
    fn stop(&mut self, check_host: bool, now: Instant);
    /// Stopped (or given up waiting): the generation may end.
    fn is_stopped(&self, now: Instant) -> bool;
    /// The next request for a driver.
    fn poll_outgoing(&mut self) -> Option<Outgoing>;
    /// The next message for the service manager.
    fn poll_notice(&mut self) -> Option<Notice>;
    /// When to call [`CoreNode::handle_timeout`] next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The SIGUSR1 dump (spec §3.9).
    fn dump_state(&self) -> serde_json::Value;
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// SIGTERM or SIGINT: exit 0.
    Stop(Signal),
    /// SIGHUP: reload and start the next generation.
    Reload,
}

/// One generation's moving parts (see the module docs).
pub struct Generation {
    pub node: Box<dyn CoreNode + Send>,
    pub registry: RegistryDriver,
    pub responses: Receiver<Response>,
    /// `None` while systemd cannot be reached (requests fail at once; reconnecting every
    /// [`SYSTEMD_RETRY`] with `systemd_config`).
    pub systemd: Option<SystemdDriver>,
    /// How to reach systemd; `None`: never try (tests without systemd).
    pub systemd_config: Option<SystemdConfig>,
    pub api_tx: Sender<ApiRequest>,
    pub api_rx: Receiver<ApiRequest>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("registry", &self.registry)
            .field("systemd", &self.systemd)
            .finish_non_exhaustive()
    }
}

/// The process-wide parts a generation runs against.
#[derive(Debug)]
pub struct Host<'a> {
    pub clock: Clock,
    pub api: &'a HttpServer,
    pub signals: &'a Receiver<Signal>,
    pub notifier: Option<&'a Notifier>,
    pub watchdog: Option<Duration>,
}

/// Runs `generation` until a signal ends it and the node has stopped. The API is switched to
/// 503 before returning.
pub fn run(generation: &mut Generation, host: &Host<'_>) -> Ended {
    let watchdog = host.watchdog.map(tick).unwrap_or_else(never);
    let reconnect = match generation.systemd_config {
        Some(_) => tick(SYSTEMD_RETRY),
        None => never(),
    };
    let mut ending: Option<Ended> = None;
    carry_out(generation, host);
    let ended = loop {
        if let Some(ended) = ending
            && generation.node.is_stopped(host.clock.now())
        {
            break ended;
        }
        sync_api(generation, host.api);
        let timeout = generation
            .node
            .poll_timeout()
            .map(|at| crossbeam_channel::at(host.clock.deadline(at)))
            .unwrap_or_else(never);
        let systemd_events = generation
            .systemd
            .as_ref()
            .map(|driver| driver.events().clone())
            .unwrap_or_else(never);
        let signals = if ending.is_some() {
            never()
        } else {
            host.signals.clone()
        };
        select! {
            recv(signals) -> signal => {
                let (ended, check_host) = match signal {
                    Ok(signal @ (Signal::Terminate | Signal::Interrupt)) => (Ended::Stop(signal), true),
                    Ok(Signal::Hangup) => (Ended::Reload, false),
                    Ok(Signal::User1) => {
                        println!("{}", generation.node.dump_state());
                        continue;
                    }
                    // The signal thread is gone; nothing can end fltd gracefully any more.
                    Err(_) => (Ended::Stop(Signal::Terminate), true),
                };
                ending = Some(ended);
                generation.node.stop(check_host, host.clock.now());
            },
            recv(generation.responses) -> response => {
                if let Ok(response) = response {
                    generation.node.handle_registry(response, host.clock.now());
                }
            },
            recv(systemd_events) -> event => match event {
                Ok(event) => generation.node.handle_systemd(event, host.clock.now()),
                // The driver's threads are gone: drop it and reconnect (instead of spinning).
                Err(_) => {
                    log::error!("the systemd driver stopped; reconnecting");
                    generation.systemd = None;
                }
            },
            recv(generation.api_rx) -> request => {
                if let Ok(request) = request {
                    generation.node.handle_api(request, host.clock.now());
                }
            },
            recv(timeout) -> _ => generation.node.handle_timeout(host.clock.now()),
            recv(reconnect) -> _ => connect_systemd(generation),
            recv(watchdog) -> _ => {
                if let Some(notifier) = host.notifier
                    && let Err(e) = notifier.watchdog()
                {
                    log::warn!("{e}");
                }
            },
        }
        carry_out(generation, host);
    };
    host.api.set_handler(None);
    ended
}

/// Hands the node's requests to the drivers and its notices to the service manager.
fn carry_out(generation: &mut Generation, host: &Host<'_>) {
    while let Some(outgoing) = generation.node.poll_outgoing() {
        match outgoing {
            Outgoing::Registry(id, request) => generation.registry.submit(id, request),
            Outgoing::CancelWatch(id) => {
                generation.registry.cancel_watch(id);
            }
            Outgoing::Systemd(request) => {
                let unsent = match &generation.systemd {
                    Some(driver) => driver.requests().send(request).err().map(|e| e.0),
                    None => Some(request),
                };
                // No systemd: the request fails at once (the agent retries as after any failure).
                if let Some(id) = unsent.as_ref().and_then(request_id) {
                    let failed = SystemdEvent::Reply {
                        id,
                        result: Err(SystemdError::Stopped),
                    };
                    generation.node.handle_systemd(failed, host.clock.now());
                }
            }
        }
    }
    while let Some(notice) = generation.node.poll_notice() {
        let Some(notifier) = host.notifier else {
            continue;
        };
        let sent = match &notice {
            Notice::Ready => notifier.ready("registered"),
            Notice::Status(status) => notifier.status(status),
        };
        if let Err(e) = sent {
            log::warn!("{e}");
        }
    }
}

/// The id a systemd request is answered with (`Watch`/`Unwatch` have none).
fn request_id(request: &SystemdRequest) -> Option<OpId> {
    match request {
        SystemdRequest::Load { id, .. }
        | SystemdRequest::Unload { id, .. }
        | SystemdRequest::Start { id, .. }
        | SystemdRequest::Stop { id, .. }
        | SystemdRequest::Reload { id }
        | SystemdRequest::ListStates { id, .. }
        | SystemdRequest::ListUnitFiles { id }
        | SystemdRequest::Inventory { id }
        | SystemdRequest::SystemState { id } => Some(*id),
        _ => None,
    }
}

/// Tries to reach systemd again if it could not be reached so far.
fn connect_systemd(generation: &mut Generation) {
    if generation.systemd.is_some() {
        return;
    }
    if let Some(config) = &generation.systemd_config {
        match SystemdDriver::spawn(config.clone()) {
            Ok(driver) => {
                log::info!("Connected to systemd");
                generation.systemd = Some(driver);
            }
            Err(e) => log::debug!("still cannot reach systemd: {e}"),
        }
    }
}

/// Serves the API exactly while the node is registered.
fn sync_api(generation: &Generation, api: &HttpServer) {
    let registered = generation.node.is_registered();
    if registered != api.has_handler() {
        api.set_handler(registered.then(|| generation.api_tx.clone()));
        if registered {
            log::info!("Serving the API");
        } else {
            log::info!("API unavailable until this machine is registered in etcd");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flt_driver::etcd::EtcdClient;
    use flt_driver::http::{ApiResponse, Listeners, ServerConfig};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::path::Path;

    /// A stand-in for the core: unregistered until its first deadline, then it answers every
    /// API request with 200 and the number of timeouts it has seen.
    struct Scripted {
        registered: bool,
        deadline: Option<Instant>,
        timeouts: usize,
        stopped: bool,
    }

    impl CoreNode for Scripted {
        fn is_registered(&self) -> bool {
            self.registered
        }
        fn handle_registry(&mut self, _response: Response, _now: Instant) {}
        fn handle_systemd(&mut self, _event: SystemdEvent, _now: Instant) {}
        fn handle_api(&mut self, request: ApiRequest, _now: Instant) {
            let body = format!("{} timeouts; {}", self.timeouts, request.path());
            request.respond(ApiResponse::json(200, body));
        }
        fn handle_timeout(&mut self, now: Instant) {
            if self.deadline.is_some_and(|d| d <= now) {
                self.timeouts += 1;
                self.deadline = None;
                self.registered = true;
            }
        }
        fn stop(&mut self, _check_host: bool, _now: Instant) {
            self.stopped = true;
        }
        fn is_stopped(&self, _now: Instant) -> bool {
            self.stopped
        }
        fn poll_outgoing(&mut self) -> Option<Outgoing> {
            None
        }
        fn poll_notice(&mut self) -> Option<Notice> {
            None
        }
        fn poll_timeout(&self) -> Option<Instant> {
            self.deadline
        }
        fn dump_state(&self) -> serde_json::Value {
            serde_json::json!({"timeouts": self.timeouts})
        }
    }

    fn get(path: &Path, target: &str) -> String {
        let mut s = UnixStream::connect(path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).expect("send");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("reply");
        reply
    }

    #[test]
    fn the_loop_fires_the_deadline_serves_the_api_once_registered_and_stops_on_sigterm() {
        let dir = std::env::temp_dir().join(format!("fltd-daemon-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let socket = dir.join("api.sock");
        let listeners =
            Listeners::bind(&[flt_driver::http::ListenAddr::Unix(socket.clone())]).expect("bind");
        let api = HttpServer::start(&listeners, &ServerConfig::new("t")).expect("serve");
        let (signal_tx, signals) = crossbeam_channel::unbounded();
        let clock = Clock::start();
        let client = EtcdClient::new(flt_driver::etcd::EtcdConfig::with_endpoints([
            "http://127.0.0.1:9",
        ]))
        .expect("client");
        let (responses_tx, responses) = crossbeam_channel::unbounded();
        let (api_tx, api_rx) = crossbeam_channel::unbounded();
        let mut generation = Generation {
            node: Box::new(Scripted {
                registered: false,
                deadline: Some(clock.now() + Duration::from_millis(300)),
                timeouts: 0,
                stopped: false,
            }),
            registry: RegistryDriver::start(client, responses_tx, 1),
            responses,
            systemd: None,
            systemd_config: None,
            api_tx,
            api_rx,
        };
        let host = Host {
            clock,
            api: &api,
            signals: &signals,
            notifier: None,
            watchdog: None,
        };
        std::thread::scope(|scope| {
            let looping = scope.spawn(|| run(&mut generation, &host));
            // Before the deadline: not registered, so 503.
            assert!(get(&socket, "/a").starts_with("HTTP/1.1 503"));
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let served = loop {
                let reply = get(&socket, "/b");
                if reply.starts_with("HTTP/1.1 200") {
                    break reply;
                }
                assert!(std::time::Instant::now() < deadline, "never registered");
                std::thread::sleep(Duration::from_millis(20));
            };
            assert!(served.ends_with("1 timeouts; /b"), "{served}");
            signal_tx.send(Signal::Terminate).expect("signal");
            let ended = looping.join().expect("run loop");
            assert_eq!(ended, Ended::Stop(Signal::Terminate));
        });
        // The generation is over: the API is back to 503.
        assert!(get(&socket, "/c").starts_with("HTTP/1.1 503"));
        drop(listeners);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
