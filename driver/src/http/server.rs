//! [`HttpServer`]: tiny_http on fltd's listeners, a small worker pool that reads bodies under a
//! limit, and a switch between "unavailable" (503 for every path) and a request channel.

use super::listen::{Listeners, Served};
use crossbeam_channel::{Receiver, Sender};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request body fltd reads (`PUT /units/<name>` carries a unit file; 1 MiB is ample).
pub const BODY_LIMIT: usize = 1 << 20;

/// The 503 message of every path while fltd is not registered in etcd (spec §3.1).
pub const ETCD_UNAVAILABLE: &str = "flt server unable to communicate with etcd";

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Sent as `Server: fltd/<version>` on every response.
    pub version: String,
    /// Bodies longer than this are refused with 413.
    pub body_limit: usize,
    /// Threads reading bodies and forwarding requests (at least 1).
    pub workers: usize,
}

impl ServerConfig {
    pub fn new(version: &str) -> ServerConfig {
        ServerConfig {
            version: version.to_string(),
            body_limit: BODY_LIMIT,
            workers: 4,
        }
    }
}

/// A response: status, optional `Content-Type`, body, extra headers (`Allow`, `Location`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> ApiResponse {
        ApiResponse {
            status,
            content_type: Some("application/json".to_string()),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// `status` without a body or content type (e.g. 204).
    pub fn empty(status: u16) -> ApiResponse {
        ApiResponse {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// The API's error entity: `{"error":{"code":<status>,"message":"<message>"}}`.
    pub fn error(status: u16, message: &str) -> ApiResponse {
        let entity = serde_json::json!({"error": {"code": status, "message": message}});
        ApiResponse::json(status, entity.to_string())
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> ApiResponse {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// A request to answer: its parts, and the connection to answer on.
///
/// Dropped without [`ApiRequest::respond`] (for instance because the daemon is rebuilding its
/// components), it is answered 503 [`ETCD_UNAVAILABLE`], so no client waits forever.
#[derive(Debug)]
pub struct ApiRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    reply: Option<(tiny_http::Request, Arc<tiny_http::Header>)>,
}

impl ApiRequest {
    /// The method as sent (`GET`, `PUT`, …).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path, still percent-encoded, without the query.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query (after `?`, without a fragment); empty if none.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// Every value of the header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body (at most the configured limit).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Sends `response`.
    pub fn respond(mut self, response: ApiResponse) {
        if let Some((request, server)) = self.reply.take() {
            send(request, &server, &response);
        }
    }
}

impl Drop for ApiRequest {
    fn drop(&mut self) {
        if let Some((request, server)) = self.reply.take() {
            send(request, &server, &ApiResponse::error(503, ETCD_UNAVAILABLE));
        }
    }
}

fn send(request: tiny_http::Request, server: &tiny_http::Header, response: &ApiResponse) {
    if let Err(e) = request.respond(to_tiny(server, response)) {
        log::debug!("cannot send an API response: {e}");
    }
}

fn to_tiny(
    server: &tiny_http::Header,
    response: &ApiResponse,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut out = tiny_http::Response::from_data(response.body.clone())
        .with_status_code(response.status)
        .with_header(server.clone());
    let headers = response
        .content_type
        .iter()
        .map(|v| ("Content-Type", v.as_str()))
        .chain(
            response
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
    for (name, value) in headers {
        match tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            Ok(header) => out.add_header(header),
            Err(()) => log::warn!("dropping an invalid response header {name}: {value:?}"),
        }
    }
    out
}

/// What a worker does with a request once its body is read.
struct Shared {
    /// `None`: answer 503 [`ETCD_UNAVAILABLE`] (not registered, or rebuilding).
    handler: Mutex<Option<Sender<ApiRequest>>>,
    stopping: AtomicBool,
    server_header: Arc<tiny_http::Header>,
    body_limit: usize,
}

/// The API's HTTP server over a set of [`Listeners`].
///
/// - One thread per listener takes parsed requests from tiny_http and queues them to a pool of
///   `workers` threads. A worker refuses a body longer than the limit (413, judged by
///   `Content-Length` first, then by reading at most limit + 1 bytes), then hands the request to
///   the current handler channel, or answers 503 [`ETCD_UNAVAILABLE`] while there is none.
/// - Every response carries `Server: fltd/<version>`.
/// - [`HttpServer::set_handler`] switches the handler without touching the sockets: that is how
///   fltd rebuilds its components on SIGHUP with the same listeners and open connections.
/// - [`HttpServer::stop`] (or drop) stops taking requests (within 0.1 s), answers those already
///   taken, and joins every thread. The [`Listeners`] stay open and keep accepting: a new server
///   started on them serves the connections that arrived in between.
pub struct HttpServer {
    shared: Arc<Shared>,
    acceptors: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("listeners", &self.acceptors.len())
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl HttpServer {
    /// Serves on every listener, answering 503 until [`HttpServer::set_handler`] is called.
    pub fn start(
        listeners: &Listeners,
        config: &ServerConfig,
    ) -> Result<HttpServer, std::io::Error> {
        let server_header = tiny_http::Header::from_bytes(
            &b"Server"[..],
            format!("fltd/{}", config.version).as_bytes(),
        )
        .map_err(|()| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid version {:?} for the Server header", config.version),
            )
        })?;
        let shared = Arc::new(Shared {
            handler: Mutex::new(None),
            stopping: AtomicBool::new(false),
            server_header: Arc::new(server_header),
            body_limit: config.body_limit,
        });
        let (queue, jobs) = crossbeam_channel::bounded::<tiny_http::Request>(64);
        let mut server = HttpServer {
            shared: Arc::clone(&shared),
            acceptors: Vec::new(),
            workers: Vec::new(),
        };
        for n in 0..config.workers.max(1) {
            let jobs = jobs.clone();
            let shared = Arc::clone(&shared);
            let worker = std::thread::Builder::new()
                .name(format!("api-worker-{n}"))
                .spawn(move || work(&jobs, &shared))?;
            server.workers.push(worker);
        }
        for listener in listeners.iter() {
            let name = listener.describe();
            let served = listener.served();
            let queue = queue.clone();
            let shared = Arc::clone(&shared);
            let acceptor = std::thread::Builder::new()
                .name(format!("api-accept {name}"))
                .spawn(move || accept(&served, &queue, &shared))?;
            server.acceptors.push(acceptor);
        }
        Ok(server)
    }

    /// Sends every later request to `handler`; `None` answers 503 [`ETCD_UNAVAILABLE`].
    pub fn set_handler(&self, handler: Option<Sender<ApiRequest>>) {
        *self
            .shared
            .handler
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = handler;
    }

    /// Whether requests currently go to a handler.
    pub fn has_handler(&self) -> bool {
        self.shared
            .handler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Stops serving (see the type's docs). The listeners stay open.
    pub fn stop(self) {}

    fn shutdown(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for acceptor in self.acceptors.drain(..) {
            let _ = acceptor.join();
        }
        // The acceptors held the queue's senders: the workers finish what is queued and end.
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How often an acceptor looks whether it should stop (tiny_http's `unblock` would leave a
/// marker in the listener's queue for the next server to trip over).
const STOP_POLL: Duration = Duration::from_millis(100);

/// Failed servers still read for requests of their open connections (a failing listener
/// is replaced at most once a second; older ones are forgotten).
const MAX_RETIRED: usize = 8;

/// Polls between tries to replace a listener's failed accept loop (e.g. out of descriptors).
const REVIVE_POLLS: u32 = 10;

fn accept(served: &Served, queue: &Sender<tiny_http::Request>, shared: &Shared) {
    let Some(mut server) = served.server() else {
        return;
    };
    let name = served.describe();
    // Servers whose accept loop failed: their open connections may still send requests.
    let mut retired: Vec<Arc<tiny_http::Server>> = Vec::new();
    // While `server`'s accept loop is dead: polls left before the next try to replace it.
    let mut revive_in: Option<u32> = None;
    while !shared.stopping.load(Ordering::SeqCst) {
        let mut taken = Vec::new();
        for old in &retired {
            while let Ok(Some(request)) = old.try_recv() {
                taken.push(request);
            }
        }
        match server.recv_timeout(STOP_POLL) {
            Ok(Some(request)) => taken.push(request),
            Ok(None) => {}
            Err(e) => {
                log::error!("API listener {name}: accepting connections failed: {e}");
                revive_in = Some(REVIVE_POLLS);
            }
        }
        match revive_in {
            Some(0) => match served.revive(&server) {
                Ok(fresh) => {
                    log::info!("API listener {name}: accepting connections again");
                    retired.push(std::mem::replace(&mut server, fresh));
                    if retired.len() > MAX_RETIRED {
                        retired.remove(0);
                    }
                    revive_in = None;
                }
                Err(e) => {
                    log::error!("API listener {name}: cannot accept connections yet: {e}");
                    revive_in = Some(REVIVE_POLLS);
                }
            },
            Some(n) => revive_in = Some(n - 1),
            None => {}
        }
        for request in taken {
            if queue.send(request).is_err() {
                return;
            }
        }
    }
}

/// Announced bodies longer than this are not discarded (see [`refuse_unread_body`]).
const UNDRAINABLE_BODY: usize = 64 << 20;

/// Draining threads running at once; past this, workers drain themselves.
const MAX_DRAINING: usize = 8;
static DRAINING: AtomicUsize = AtomicUsize::new(0);

/// Answers 413 to a request whose announced body was not read. After the answer tiny_http reads
/// and discards the whole announced body (until the client closes), so that happens on a thread
/// of its own rather than blocking a worker; `Connection: close` asks the client to hang up.
fn refuse_unread_body(
    request: tiny_http::Request,
    header: Arc<tiny_http::Header>,
    too_large: ApiResponse,
) {
    if request.body_length().is_some_and(|n| n > UNDRAINABLE_BODY) {
        // tiny_http would allocate the whole announced length to discard it and abort the
        // process when that fails; so the connection is never handed back to it (a leak, once
        // per such request, instead of a crash). Its upgrade path is the only way to answer
        // without dropping the request.
        log::warn!(
            "refused an API request announcing a {}-byte body; its connection stays open",
            request.body_length().unwrap_or_default()
        );
        let stream = request.upgrade("flt-refused", to_tiny(&header, &too_large));
        std::mem::forget(stream);
        return;
    }
    let too_large = too_large.with_header("Connection", "close");
    if DRAINING.fetch_add(1, Ordering::SeqCst) >= MAX_DRAINING {
        DRAINING.fetch_sub(1, Ordering::SeqCst);
        send(request, &header, &too_large);
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("api-drain".to_string())
        .spawn(move || {
            send(request, &header, &too_large);
            DRAINING.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        DRAINING.fetch_sub(1, Ordering::SeqCst);
        log::warn!("cannot start a thread to refuse an oversized request: {e}");
    }
}

fn work(jobs: &Receiver<tiny_http::Request>, shared: &Shared) {
    for mut request in jobs.iter() {
        let header = Arc::clone(&shared.server_header);
        let too_large = ApiResponse::error(
            413,
            &format!(
                "request body too large: the limit is {} bytes",
                shared.body_limit
            ),
        );
        if request.body_length().is_some_and(|n| n > shared.body_limit) {
            refuse_unread_body(request, header, too_large);
            continue;
        }
        let mut body = Vec::new();
        let limit = u64::try_from(shared.body_limit).unwrap_or(u64::MAX);
        let read = request
            .as_reader()
            .take(limit.saturating_add(1))
            .read_to_end(&mut body);
        if let Err(e) = read {
            send(
                request,
                &header,
                &ApiResponse::error(400, &format!("cannot read the request body: {e}")),
            );
            continue;
        }
        if body.len() > shared.body_limit {
            send(request, &header, &too_large);
            continue;
        }
        let url = request.url();
        let (path, query) = match url.split_once('?') {
            Some((path, query)) => (path, query.split('#').next().unwrap_or_default()),
            None => (url, ""),
        };
        let api = ApiRequest {
            method: request.method().as_str().to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers: request
                .headers()
                .iter()
                .map(|h| (h.field.as_str().to_string(), h.value.as_str().to_string()))
                .collect(),
            body,
            reply: Some((request, header)),
        };
        let handler = shared
            .handler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // Without a handler, or with one that is gone, dropping the request answers 503.
        if let Some(handler) = handler {
            let _ = handler.send_timeout(api, Duration::from_secs(5));
        }
    }
}
