//! fltd's run loop: one `select!` over signals, API requests, registry responses, the core's
//! next deadline and the systemd watchdog, feeding a [`CoreNode`] and carrying out what it asks.
//!
//! A *generation* is everything built from one configuration: the etcd driver, the core node and
//! the API request channel. SIGHUP ends a generation (the API answers 503 meanwhile), re-reads
//! the configuration and starts the next one; the API listeners and their open connections stay.
//!
//! NEXT STEP (core wiring): the engine and agent (`flt_core`'s `Node`) and the API handlers
//! (`flt_core::api`) are not merged yet. [`CoreNode`] is the seam they plug into; until then
//! [`Unwired`] never registers, so every API path honestly answers 503
//! `flt server unable to communicate with etcd`.

use crate::clock::Clock;
use crossbeam_channel::{Receiver, Sender, never, select, tick};
use flt_core::registry::{OpId, Request, Response};
use flt_core::time::Instant;
use flt_driver::etcd::RegistryDriver;
use flt_driver::http::{ApiRequest, HttpServer};
use flt_driver::notify::Notifier;
use flt_driver::signals::Signal;
use std::time::Duration;

/// What the run loop drives: the core's node, adapted. Every `handle_*` is followed by draining
/// [`CoreNode::poll_registry`]; [`CoreNode::poll_timeout`] is the next wake-up.
pub trait CoreNode {
    /// Registered in etcd: the API serves requests (otherwise every path answers 503).
    fn is_registered(&self) -> bool;
    /// A registry driver's answer to an earlier request (or a watch event).
    fn handle_registry(&mut self, response: Response, now: Instant);
    /// An API request: answer it now or keep it until the registry answers.
    fn handle_api(&mut self, request: ApiRequest, now: Instant);
    /// The deadline from [`CoreNode::poll_timeout`] passed (spurious calls are harmless).
    fn handle_timeout(&mut self, now: Instant);
    /// The next registry request to carry out.
    fn poll_registry(&mut self) -> Option<(OpId, Request)>;
    /// When to call [`CoreNode::handle_timeout`] next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The SIGUSR1 dump (spec §3.9).
    fn dump_state(&self) -> serde_json::Value;
}

/// The node until the core is wired: not registered, no requests, no state.
#[derive(Debug, Default)]
pub struct Unwired;

impl CoreNode for Unwired {
    fn is_registered(&self) -> bool {
        false
    }

    fn handle_registry(&mut self, _response: Response, _now: Instant) {}

    fn handle_api(&mut self, request: ApiRequest, _now: Instant) {
        // Dropping the request answers 503: there is no registered server behind the API yet.
        drop(request);
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_registry(&mut self) -> Option<(OpId, Request)> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn dump_state(&self) -> serde_json::Value {
        serde_json::json!({
            "Agent": {"Cache": {"TargetStates": {}}},
            "UnitStatePublisher": {"Cache": {}, "ToPublish": {}},
            "UnitStateGenerator": {"Subscribed": []},
        })
    }
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
    pub api_tx: Sender<ApiRequest>,
    pub api_rx: Receiver<ApiRequest>,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("registry", &self.registry)
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

/// Runs `generation` until a signal ends it. The API is switched to 503 before returning.
pub fn run(generation: &mut Generation, host: &Host<'_>) -> Ended {
    let watchdog = host.watchdog.map(tick).unwrap_or_else(never);
    let ended = loop {
        sync_api(generation, host.api);
        let timeout = generation
            .node
            .poll_timeout()
            .map(|at| crossbeam_channel::at(host.clock.deadline(at)))
            .unwrap_or_else(never);
        select! {
            recv(host.signals) -> signal => match signal {
                Ok(signal @ (Signal::Terminate | Signal::Interrupt)) => break Ended::Stop(signal),
                Ok(Signal::Hangup) => break Ended::Reload,
                Ok(Signal::User1) => println!("{}", generation.node.dump_state()),
                // The signal thread is gone; nothing can end fltd gracefully any more.
                Err(_) => break Ended::Stop(Signal::Terminate),
            },
            recv(generation.responses) -> response => {
                if let Ok(response) = response {
                    generation.node.handle_registry(response, host.clock.now());
                }
            },
            recv(generation.api_rx) -> request => {
                if let Ok(request) = request {
                    generation.node.handle_api(request, host.clock.now());
                }
            },
            recv(timeout) -> _ => generation.node.handle_timeout(host.clock.now()),
            recv(watchdog) -> _ => {
                if let Some(notifier) = host.notifier
                    && let Err(e) = notifier.watchdog()
                {
                    log::warn!("{e}");
                }
            },
        }
        while let Some((id, request)) = generation.node.poll_registry() {
            generation.registry.submit(id, request);
        }
    };
    host.api.set_handler(None);
    ended
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
    }

    impl CoreNode for Scripted {
        fn is_registered(&self) -> bool {
            self.registered
        }
        fn handle_registry(&mut self, _response: Response, _now: Instant) {}
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
        fn poll_registry(&mut self) -> Option<(OpId, Request)> {
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
            }),
            registry: RegistryDriver::start(client, responses_tx, 1),
            responses,
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
