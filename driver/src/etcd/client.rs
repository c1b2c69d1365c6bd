//! [`EtcdClient`]: blocking calls to etcd's v2 keys API over ureq.

use super::config::{ConfigError, EtcdConfig, tls_config};
use super::wire::{self, Answer, Call, Method, Transient, WatchAnswer};
use flt_core::registry::{Event, Failure, Reply, Request};
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Largest answer read from etcd (a recursive read of a big keyspace).
const MAX_BODY: u64 = 256 * 1024 * 1024;

/// A blocking etcd v2 client. Cheap to clone; clones share one connection pool and can be used
/// from many threads at once.
///
/// Fail-over: every call starts at the endpoint that last answered and moves on to the next one
/// when an endpoint cannot be reached. A call that may already have been applied (a conditional
/// write whose answer was lost) is not sent again: it fails with [`Failure::Timeout`] or
/// [`Failure::Unreachable`], and the caller decides.
#[derive(Clone, Debug)]
pub struct EtcdClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: EtcdConfig,
    endpoints: Vec<String>,
    agent: ureq::Agent,
    authorization: Option<String>,
    /// The endpoint that answered last.
    preferred: AtomicUsize,
}

/// One long-poll's answer: see [`EtcdClient::long_poll`].
#[allow(clippy::large_enum_variant)] // one value per long-poll: boxing would buy nothing
enum WatchPoll {
    /// A change under the prefix. Poll again from `event.node.modified_index + 1`.
    Event(Event),
    /// No change before the poll ended.
    Idle,
}

/// How one streamed watch ended: see [`EtcdClient::watch_stream`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamEnd {
    /// Watch again from here: after the last change delivered or, if none came, after the index
    /// etcd had when it armed the watch.
    pub next_index: u64,
    /// Changes handed to the consumer.
    pub delivered: usize,
    /// The consumer asked to stop.
    pub stopped: bool,
    /// The last change came from etcd's history: etcd registered no watcher.
    behind: bool,
}

/// How one HTTP exchange failed before an answer was read.
enum TransportError {
    /// The request never left (refused, unresolvable, connect timeout): safe to send elsewhere.
    NotSent(String),
    /// No answer within the timeout; the request may have been applied.
    Timeout,
    /// The connection broke; the request may have been applied.
    Broken(String),
}

fn classify(error: ureq::Error) -> TransportError {
    use std::io::ErrorKind;
    use ureq::Timeout as T;
    match error {
        ureq::Error::Timeout(T::Connect | T::Resolve) => {
            TransportError::NotSent("connect timed out".to_string())
        }
        ureq::Error::Timeout(_) => TransportError::Timeout,
        ureq::Error::HostNotFound => TransportError::NotSent("host not found".to_string()),
        ureq::Error::ConnectionFailed => TransportError::NotSent("connection failed".to_string()),
        ureq::Error::Io(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable
            ) =>
        {
            TransportError::NotSent(e.to_string())
        }
        ureq::Error::Io(e) if e.kind() == ErrorKind::TimedOut => TransportError::Timeout,
        // A failed handshake: the request was never sent.
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => {
            TransportError::NotSent(error.to_string())
        }
        other => TransportError::Broken(other.to_string()),
    }
}

/// Whether a body read failed by running out of time.
fn is_timeout(error: &ureq::Error) -> bool {
    match error {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(e) => matches!(
            e.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        _ => false,
    }
}

/// Whether a body read failed by running out of time (ureq wraps its own timeouts).
fn io_timed_out(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
        || error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ureq::Error>())
            .is_some_and(is_timeout)
}

/// Idle connections kept for reuse: fltd's etcd call threads plus its watches.
const IDLE_CONNECTIONS: usize = 24;
/// Per connection, each way (see [`EtcdClient::new`]).
const CONNECTION_BUFFER_BYTES: usize = 4 * 1024;

struct Exchange {
    status: u16,
    etcd_index: Option<u64>,
    body: Result<String, ureq::Error>,
}

/// ureq resolves the host before every request, even one sent on a pooled connection, and
/// with a timeout set it does so on a new thread each time: thousands of threads a second on a
/// busy fltd. An endpoint given as an IP address needs no lookup; names still get ureq's.
#[derive(Debug, Default)]
struct LiteralFirstResolver(DefaultResolver);

impl Resolver for LiteralFirstResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let literal = uri
            .scheme()
            .zip(uri.authority())
            .and_then(|(scheme, authority)| DefaultResolver::host_and_port(scheme, authority))
            .and_then(|host_port| host_port.parse::<SocketAddr>().ok());
        match literal {
            Some(addr) => {
                let mut addrs = self.empty();
                addrs.push(addr);
                Ok(addrs)
            }
            None => self.0.resolve(uri, config, timeout),
        }
    }
}

impl EtcdClient {
    /// A client for these settings. Reads the TLS files now, so that a bad file is reported at
    /// start-up, naming the file.
    pub fn new(config: EtcdConfig) -> Result<EtcdClient, ConfigError> {
        if config.endpoints.is_empty() {
            return Err(ConfigError::NoEndpoints);
        }
        let mut endpoints = Vec::new();
        for endpoint in &config.endpoints {
            let trimmed = endpoint.trim().trim_end_matches('/');
            if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) {
                return Err(ConfigError::BadEndpoint(endpoint.clone()));
            }
            endpoints.push(trimmed.to_string());
        }
        let mut builder = ureq::Agent::config_builder()
            // etcd is reached directly: an environment proxy must never intercept it.
            .proxy(None)
            // etcd explains failures in the body of 4xx answers: read them, do not error.
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent("flt")
            // ureq zero-fills 128 KiB in and out per connection by default, and fltd keeps a
            // connection per watch: 4 KiB each holds etcd's headers (ureq grows it for longer
            // ones); bodies stream through.
            .input_buffer_size(CONNECTION_BUFFER_BYTES)
            .output_buffer_size(CONNECTION_BUFFER_BYTES)
            // Every call thread and watch takes a connection from the pool and puts it back:
            // ureq's default of 3 idle per host closes and reopens most of them under load.
            .max_idle_connections(IDLE_CONNECTIONS)
            .max_idle_connections_per_host(IDLE_CONNECTIONS)
            .timeout_connect(Some(config.request_timeout));
        if let Some(files) = &config.tls {
            builder = builder.tls_config(tls_config(files)?);
        }
        let authorization = config
            .auth
            .as_ref()
            .map(|auth| wire::basic_auth_header(&auth.username, &auth.password));
        Ok(EtcdClient {
            inner: Arc::new(Inner {
                agent: ureq::Agent::with_parts(
                    builder.build(),
                    DefaultConnector::default(),
                    LiteralFirstResolver::default(),
                ),
                endpoints,
                authorization,
                preferred: AtomicUsize::new(0),
                config,
            }),
        })
    }

    pub fn config(&self) -> &EtcdConfig {
        &self.inner.config
    }

    /// Carries out a Get, Put or Delete. A Watch is refused here: use [`EtcdClient::watch`] or
    /// [`EtcdClient::watch_stream`].
    pub fn call(&self, request: &Request) -> Result<Reply, Failure> {
        let call = wire::build_call(request, self.inner.config.quorum_reads)?;
        let timeout = self.inner.config.request_timeout;
        let mut last = Failure::Unreachable("no endpoint tried".to_string());
        for endpoint in self.endpoint_order() {
            match self.exchange(endpoint, &call, timeout) {
                Ok(exchange) => {
                    let body = match exchange.body {
                        Ok(body) => body,
                        Err(e) if is_timeout(&e) => {
                            last = Failure::Timeout;
                            if call.idempotent {
                                continue;
                            }
                            return Err(last);
                        }
                        Err(e) => {
                            last = Failure::Unreachable(format!("{}: {e}", self.url(endpoint, "")));
                            if call.idempotent {
                                continue;
                            }
                            return Err(last);
                        }
                    };
                    match wire::parse_answer(request, exchange.status, exchange.etcd_index, &body) {
                        Answer::Done(result) => {
                            self.inner.preferred.store(endpoint, Ordering::Relaxed);
                            return result;
                        }
                        Answer::Retry(Transient(why)) => {
                            last =
                                Failure::Unreachable(format!("{}: {why}", self.url(endpoint, "")));
                            // A refusal (no leader, raft error) was not applied and may go
                            // elsewhere; an unreadable success may have been.
                            if (200..300).contains(&exchange.status) && !call.idempotent {
                                return Err(last);
                            }
                        }
                    }
                }
                Err(TransportError::NotSent(why)) => {
                    last = Failure::Unreachable(format!("{}: {why}", self.url(endpoint, "")));
                }
                Err(TransportError::Timeout) => {
                    last = Failure::Timeout;
                    if !call.idempotent {
                        return Err(last);
                    }
                }
                Err(TransportError::Broken(why)) => {
                    last = Failure::Unreachable(format!("{}: {why}", self.url(endpoint, "")));
                    if !call.idempotent {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    /// Follows every change under `prefix` (recursively) from index `wait_index` (0: from now)
    /// on one streamed request (etcd's `stream=true`), handing each change to `deliver`, in
    /// index order, each once, as it comes: a busy prefix costs a request per up to
    /// [`ETCD_WATCHER_BUFFER`] changes instead of one per change. It delivers what a sequence of
    /// long-polls from `wait_index` would. It ends (an end is not a failure: watch again from
    /// [`StreamEnd::next_index`]) after [`EtcdConfig::watch_poll_timeout`], when etcd closes
    /// it, when `deliver` returns false, or after [`ETCD_WATCHER_BUFFER`] lines (etcd drops a
    /// stream's watcher whose buffer of that many undelivered changes overflows, without closing
    /// the stream: a longer stream could go silent while changes are missed).
    ///
    /// A watch behind etcd's index is answered from etcd's history with one change and no
    /// watcher (the stream would carry nothing more), so re-arming after it chases a busy prefix
    /// one request per change. Instead it then arms a stream from now, catches up to the index
    /// that stream was armed at with long-polls (a fixed number of changes), and goes on with
    /// the stream.
    ///
    /// Fails with [`Failure::HistoryLost`] when etcd no longer holds the history from
    /// `wait_index` (its error 401): re-read, then watch from the read's index + 1. Tries each
    /// endpoint in turn; fails with [`Failure::Unreachable`] only when none answered.
    pub fn watch_stream(
        &self,
        prefix: &str,
        wait_index: u64,
        deliver: &mut dyn FnMut(Event) -> bool,
    ) -> Result<StreamEnd, Failure> {
        let (armed_at, mut response) = self.open_stream(prefix, wait_index)?;
        let end = read_stream(
            prefix,
            wait_index,
            armed_at,
            response.body_mut().as_reader(),
            deliver,
        );
        drop(response);
        if end.stopped || !end.behind {
            return Ok(end);
        }
        self.catch_up(prefix, end, deliver)
    }

    /// Goes on from `end` (a change from etcd's history) with a stream armed now, after
    /// catching up to the index it was armed at with long-polls.
    fn catch_up(
        &self,
        prefix: &str,
        mut end: StreamEnd,
        deliver: &mut dyn FnMut(Event) -> bool,
    ) -> Result<StreamEnd, Failure> {
        end.behind = false;
        // What was delivered stays delivered: after a transient failure the caller watches
        // again from `end.next_index`, and meets the failure there if it lasts.
        let transient = |failure: Failure, end: StreamEnd| match failure {
            Failure::Unreachable(_) | Failure::Timeout => Ok(end),
            failure => Err(failure),
        };
        let (live_from, mut live) = match self.open_stream(prefix, 0) {
            Ok(opened) => opened,
            Err(failure) => return transient(failure, end),
        };
        let Some(armed) = live_from else {
            return Ok(end);
        };
        while end.next_index <= armed {
            let poll = match self.long_poll(prefix, end.next_index) {
                Ok(poll) => poll,
                Err(failure) => return transient(failure, end),
            };
            match poll {
                WatchPoll::Event(event) => {
                    // Past `armed` it is the live stream's first change, too: the next one in
                    // order either way (the stream's copy is skipped as already delivered).
                    let live_change = event.node.modified_index > armed;
                    end.next_index = event.node.modified_index + 1;
                    end.delivered += 1;
                    if !deliver(event) {
                        end.stopped = true;
                        return Ok(end);
                    }
                    if live_change {
                        break;
                    }
                }
                // Nothing since `end.next_index`, up to the poll's timeout.
                WatchPoll::Idle => break,
            }
        }
        let rest = read_stream(
            prefix,
            end.next_index,
            live_from,
            live.body_mut().as_reader(),
            deliver,
        );
        Ok(StreamEnd {
            delivered: end.delivered + rest.delivered,
            ..rest
        })
    }

    /// Arms a streamed watch at `wait_index` on the first endpoint that accepts it: etcd's index
    /// when it armed it (the `X-Etcd-Index` header) and the answer, its body not yet read.
    fn open_stream(
        &self,
        prefix: &str,
        wait_index: u64,
    ) -> Result<(Option<u64>, ureq::http::Response<ureq::Body>), Failure> {
        let call = wire::watch_call(prefix, wait_index, true);
        let timeout = self.inner.config.watch_poll_timeout;
        let mut last = Failure::Unreachable("no endpoint tried".to_string());
        for endpoint in self.endpoint_order() {
            let mut response = match self.send(endpoint, &call, timeout) {
                Ok(response) => response,
                Err(e) => {
                    last = self.watch_transport_failure(endpoint, e);
                    continue;
                }
            };
            let status = response.status().as_u16();
            let armed_at = etcd_index(&response);
            if (200..300).contains(&status) {
                self.inner.preferred.store(endpoint, Ordering::Relaxed);
                return Ok((armed_at, response));
            }
            let body = read_body(&mut response).unwrap_or_default();
            match wire::parse_watch(wait_index, status, armed_at, &body) {
                WatchAnswer::Failed(failure) => return Err(failure),
                WatchAnswer::Retry(Transient(why)) => {
                    last = Failure::Unreachable(format!("{}: {why}", self.url(endpoint, "")));
                }
                WatchAnswer::Event(_) | WatchAnswer::Idle { .. } => {
                    last = Failure::Unreachable(format!(
                        "{}: watch answered {status}",
                        self.url(endpoint, "")
                    ));
                }
            }
        }
        Err(last)
    }

    /// What a watch request that got no answer from `endpoint` reports (the next endpoint is
    /// tried: a watch changes nothing). etcd flushes a watch's headers as soon as it is armed,
    /// so no headers in time means the endpoint is not serving.
    fn watch_transport_failure(&self, endpoint: usize, error: TransportError) -> Failure {
        match error {
            TransportError::Timeout => Failure::Timeout,
            TransportError::NotSent(why) | TransportError::Broken(why) => {
                Failure::Unreachable(format!("{}: {why}", self.url(endpoint, "")))
            }
        }
    }

    /// One long-poll (no stream) for the first change under `prefix` at index ≥ `wait_index`:
    /// an empty answer or a poll that ran out of time is [`WatchPoll::Idle`], not a failure.
    fn long_poll(&self, prefix: &str, wait_index: u64) -> Result<WatchPoll, Failure> {
        let call = wire::watch_call(prefix, wait_index, false);
        let timeout = self.inner.config.watch_poll_timeout;
        let mut last = Failure::Unreachable("no endpoint tried".to_string());
        for endpoint in self.endpoint_order() {
            let exchange = match self.exchange(endpoint, &call, timeout) {
                Ok(exchange) => exchange,
                Err(e) => {
                    last = self.watch_transport_failure(endpoint, e);
                    continue;
                }
            };
            let answer = match exchange.body {
                Ok(body) => {
                    wire::parse_watch(wait_index, exchange.status, exchange.etcd_index, &body)
                }
                Err(e) if is_timeout(&e) && (200..300).contains(&exchange.status) => {
                    wire::parse_watch(wait_index, exchange.status, exchange.etcd_index, "")
                }
                Err(e) => WatchAnswer::Retry(Transient(e.to_string())),
            };
            match answer {
                WatchAnswer::Event(event) => {
                    self.inner.preferred.store(endpoint, Ordering::Relaxed);
                    return Ok(WatchPoll::Event(event));
                }
                WatchAnswer::Idle { .. } => {
                    self.inner.preferred.store(endpoint, Ordering::Relaxed);
                    return Ok(WatchPoll::Idle);
                }
                WatchAnswer::Failed(failure) => return Err(failure),
                WatchAnswer::Retry(Transient(why)) => {
                    last = Failure::Unreachable(format!("{}: {why}", self.url(endpoint, "")));
                }
            }
        }
        Err(last)
    }

    /// Endpoint indexes, starting at the preferred one.
    fn endpoint_order(&self) -> impl Iterator<Item = usize> + use<> {
        let n = self.inner.endpoints.len();
        let first = self.inner.preferred.load(Ordering::Relaxed) % n;
        (0..n).map(move |i| (first + i) % n)
    }

    fn url(&self, endpoint: usize, key: &str) -> String {
        let base = &self.inner.endpoints[endpoint];
        if key.is_empty() {
            base.clone()
        } else {
            format!("{base}/v2/keys{}", wire::encode_key_path(key))
        }
    }

    /// Sends one call to one endpoint and reads its answer (the body read may fail on its own,
    /// after the status and headers arrived). The status and headers must arrive within the
    /// request timeout even for a long-poll, whose body may take up to `timeout`: etcd sends a
    /// watch's headers as soon as it is armed, so a hung endpoint is left quickly.
    fn exchange(
        &self,
        endpoint: usize,
        call: &Call,
        timeout: Duration,
    ) -> Result<Exchange, TransportError> {
        let mut response = self.send(endpoint, call, timeout)?;
        let status = response.status().as_u16();
        let etcd_index = etcd_index(&response);
        let body = read_body(&mut response);
        Ok(Exchange {
            status,
            etcd_index,
            body,
        })
    }

    /// Sends one call to one endpoint; the answer's status and headers must arrive within the
    /// request timeout (see [`EtcdClient::exchange`]), its body within `timeout`.
    fn send(
        &self,
        endpoint: usize,
        call: &Call,
        timeout: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, TransportError> {
        let url = self.url(endpoint, &call.key);
        let header_timeout = self.inner.config.request_timeout.min(timeout);
        let agent = &self.inner.agent;
        let auth = self.inner.authorization.as_deref();
        let result = match call.method {
            Method::Get | Method::Delete => {
                let mut builder = if call.method == Method::Get {
                    agent.get(&url)
                } else {
                    agent.delete(&url)
                };
                for (k, v) in &call.query {
                    builder = builder.query(*k, v);
                }
                if let Some(auth) = auth {
                    builder = builder.header("Authorization", auth);
                }
                builder
                    .config()
                    .timeout_global(Some(timeout))
                    .timeout_recv_response(Some(header_timeout))
                    .build()
                    .call()
            }
            Method::Put => {
                let mut builder = agent.put(&url);
                for (k, v) in &call.query {
                    builder = builder.query(*k, v);
                }
                if let Some(auth) = auth {
                    builder = builder.header("Authorization", auth);
                }
                builder
                    .config()
                    .timeout_global(Some(timeout))
                    .timeout_recv_response(Some(header_timeout))
                    .build()
                    .send_form(call.form.iter().map(|(k, v)| (*k, v.as_str())))
            }
        };
        result.map_err(classify)
    }
}

/// How many changes etcd 3.4 buffers for one watcher (`eventChan` in its v2 store's
/// `watcher_hub.go`). When one more comes while the buffer is full, etcd drops the watcher but
/// leaves its stream open: the buffered changes arrive, then nothing more.
pub const ETCD_WATCHER_BUFFER: usize = 100;

/// Reads one streamed watch answer (JSON lines) armed at `wait_index` when etcd's index was
/// `armed_at`: see [`EtcdClient::watch_stream`] for when it ends.
fn read_stream(
    prefix: &str,
    wait_index: u64,
    armed_at: Option<u64>,
    body: impl Read,
    deliver: &mut dyn FnMut(Event) -> bool,
) -> StreamEnd {
    // A watch "from now" starts after the index it was armed at; etcd answers none of it from
    // history, so that start is safe to resume from whatever happens.
    let start = match (wait_index, armed_at) {
        (0, Some(armed)) => armed + 1,
        _ => wait_index,
    };
    let mut end = StreamEnd {
        next_index: start,
        delivered: 0,
        stopped: false,
        behind: false,
    };
    let mut lines = BufReader::new(body);
    let mut line = String::new();
    let mut received = 0;
    while received < ETCD_WATCHER_BUFFER {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) => return end.idle(armed_at),
            Err(e) if io_timed_out(&e) => return end.idle(armed_at),
            // A broken connection may have cut off a change: resume from the last one
            // delivered (a dead endpoint then fails the next request).
            Err(_) => return end,
            Ok(_) if !line.ends_with('\n') => return end,
            Ok(_) if line.trim().is_empty() => continue,
            Ok(_) => received += 1,
        }
        let event = match wire::parse_watch(end.next_index, 200, None, &line) {
            WatchAnswer::Event(event) => event,
            WatchAnswer::Failed(failure) => {
                log::warn!("watch of {prefix}: {failure} in its stream; watching again");
                return end;
            }
            WatchAnswer::Idle { .. } | WatchAnswer::Retry(_) => {
                log::warn!("watch of {prefix}: unreadable line {line:?}; watching again");
                return end;
            }
        };
        let index = event.node.modified_index;
        // etcd hands a stream watching a key that is removed the removal twice (once as the
        // removed node's watcher, once on the path to the key); a long-poll sees it once.
        if index < end.next_index {
            log::debug!("watch of {prefix}: change {index} again; skipped");
            continue;
        }
        end.next_index = index + 1;
        end.delivered += 1;
        if !deliver(event) {
            end.stopped = true;
            return end;
        }
        // A change at or below etcd's index at arming came from its history: etcd registered
        // no watcher, so the stream will carry nothing more.
        if armed_at.is_none_or(|armed| index <= armed) {
            end.behind = true;
            return end;
        }
    }
    end
}

impl StreamEnd {
    /// The end of a stream that was cut off by nothing: with no change delivered, nothing
    /// under the prefix changed since it was armed.
    fn idle(self, armed_at: Option<u64>) -> StreamEnd {
        match armed_at {
            Some(armed) if self.delivered == 0 => StreamEnd {
                next_index: self.next_index.max(armed + 1),
                ..self
            },
            _ => self,
        }
    }
}

/// An answer's whole body, up to [`MAX_BODY`].
fn read_body(response: &mut ureq::http::Response<ureq::Body>) -> Result<String, ureq::Error> {
    response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
}

/// The `X-Etcd-Index` header: etcd's index when it answered (or armed a watch).
fn etcd_index(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    response
        .headers()
        .get("X-Etcd-Index")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configurations_are_refused_naming_the_input() {
        let no_endpoints = EtcdConfig::with_endpoints(Vec::<String>::new());
        assert!(matches!(
            EtcdClient::new(no_endpoints),
            Err(ConfigError::NoEndpoints)
        ));
        let error = EtcdClient::new(EtcdConfig::with_endpoints(["127.0.0.1:2379"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"etcd endpoint "127.0.0.1:2379" is not an http:// or https:// URL"#
        );
        let client =
            EtcdClient::new(EtcdConfig::with_endpoints([" http://a:1/ ", "https://b:2"])).unwrap();
        assert_eq!(client.url(0, "/k"), "http://a:1/v2/keys/k");
        assert_eq!(client.url(1, "k"), "https://b:2/v2/keys/k");
    }

    #[test]
    fn ip_endpoints_skip_the_lookup_and_names_still_resolve() {
        let resolver = LiteralFirstResolver::default();
        let config = ureq::config::Config::default();
        let resolve = |url: &str| {
            let uri: ureq::http::Uri = url.parse().unwrap();
            let addrs = resolver
                .resolve(&uri, &config, NextTimeout::default())
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            addrs.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        assert_eq!(resolve("http://10.1.2.3:2379/v2/keys/a"), ["10.1.2.3:2379"]);
        assert_eq!(resolve("https://[::1]:4001/"), ["[::1]:4001"]);
        assert_eq!(resolve("http://127.0.0.1/"), ["127.0.0.1:80"]);
        let local = resolve("http://localhost:2379/");
        assert!(
            local.iter().all(|a| a.ends_with(":2379")) && !local.is_empty(),
            "{local:?}"
        );
    }

    fn set_line(index: u64) -> String {
        format!(
            r#"{{"action":"set","node":{{"key":"/p/k","value":"v{index}","modifiedIndex":{index},"createdIndex":{index}}}}}"#
        ) + "\n"
    }

    /// Reads `body` as a stream armed at `wait_index` when etcd was at `armed_at`; returns the
    /// indexes delivered and how it ended.
    fn read(wait_index: u64, armed_at: Option<u64>, body: &str) -> (Vec<u64>, StreamEnd) {
        let mut seen = Vec::new();
        let end = read_stream("/p", wait_index, armed_at, body.as_bytes(), &mut |e| {
            seen.push(e.node.modified_index);
            true
        });
        (seen, end)
    }

    #[test]
    fn a_stream_delivers_each_change_once_and_resumes_after_the_last() {
        let dir_removed = r#"{"action":"delete","node":{"key":"/p","dir":true,"modifiedIndex":13,"createdIndex":4},"prevNode":{"key":"/p","dir":true,"modifiedIndex":4,"createdIndex":4}}"#;
        // etcd sends the removal of the watched directory itself twice.
        let body = format!(
            "{}\n{}{dir_removed}\n{dir_removed}\n{}",
            set_line(11),
            set_line(12),
            set_line(14)
        );
        let (seen, end) = read(5, Some(10), &body);
        assert_eq!(seen, [11, 12, 13, 14]);
        assert_eq!((end.next_index, end.delivered, end.stopped), (15, 4, false));
        assert!(!end.behind);
    }

    #[test]
    fn a_stream_ends_after_a_change_from_history() {
        // Armed at 10 from 5: change 7 came from the history, and no watcher is registered.
        let body = set_line(7) + &set_line(11);
        let (seen, end) = read(5, Some(10), &body);
        assert_eq!(seen, [7]);
        assert_eq!((end.next_index, end.behind), (8, true));
        // Without the header every change may be from the history.
        let (seen, end) = read(5, None, &body);
        assert_eq!((seen, end.next_index), (vec![7], 8));
    }

    #[test]
    fn a_stream_ends_after_as_many_lines_as_etcd_buffers() {
        let body: String = (11..11 + 2 * ETCD_WATCHER_BUFFER as u64)
            .map(set_line)
            .collect();
        let (seen, end) = read(11, Some(10), &body);
        let last = 10 + ETCD_WATCHER_BUFFER as u64;
        assert_eq!(seen, (11..=last).collect::<Vec<_>>());
        assert_eq!(
            (end.next_index, end.delivered),
            (last + 1, ETCD_WATCHER_BUFFER)
        );
    }

    #[test]
    fn an_idle_stream_resumes_after_the_index_it_was_armed_at() {
        assert_eq!(read(5, Some(10), "").1.next_index, 11);
        assert_eq!(read(0, Some(10), "\n").1.next_index, 11);
        assert_eq!(read(20, Some(10), "").1.next_index, 20);
        assert_eq!(read(5, None, "").1.next_index, 5);
        // A line cut off (the connection broke) is not delivered, and nothing is skipped.
        let (seen, end) = read(5, Some(10), &set_line(11)[..20]);
        assert_eq!((seen.len(), end.next_index), (0, 5));
        // A watch from now starts after the arming index even then.
        assert_eq!(read(0, Some(10), &set_line(11)[..20]).1.next_index, 11);
        // An unreadable line ends the stream where it was.
        let (seen, end) = read(5, Some(10), &(set_line(11) + "{oops\n" + &set_line(12)));
        assert_eq!((seen, end.next_index), (vec![11], 12));
    }

    #[test]
    fn a_stream_stops_when_the_consumer_says_so() {
        let body = set_line(11) + &set_line(12);
        let end = read_stream("/p", 11, Some(10), body.as_bytes(), &mut |_| false);
        assert_eq!((end.next_index, end.delivered, end.stopped), (12, 1, true));
    }

    #[test]
    fn a_watch_is_not_a_call() {
        let client = EtcdClient::new(EtcdConfig::default()).unwrap();
        let watch = Request::Watch {
            prefix: "/p".into(),
            from_index: 0,
        };
        assert!(matches!(
            client.call(&watch),
            Err(Failure::Rejected { code: 0, .. })
        ));
    }
}
