//! [`EtcdClient`]: blocking calls to etcd's v2 keys API over ureq.

use super::config::{ConfigError, EtcdConfig, tls_config};
use super::wire::{self, Answer, Call, Method, Transient, WatchAnswer};
use flt_core::registry::{Event, Failure, Reply, Request};
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

/// One step of a watch: see [`EtcdClient::watch_poll`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one value per long-poll: boxing would buy nothing
pub enum WatchPoll {
    /// A change under the prefix. Poll again from `event.node.modified_index + 1`.
    Event(Event),
    /// No change before the poll ended. Poll again from `next_index`.
    Idle { next_index: u64 },
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
    /// [`EtcdClient::watch_poll`].
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

    /// One long-poll for the first change under `prefix` (recursively) at index ≥ `wait_index`
    /// (0: the next change from now). Waits at most [`EtcdConfig::watch_poll_timeout`]; an empty
    /// answer or a poll that ran out of time is [`WatchPoll::Idle`], not a failure. Fails with
    /// [`Failure::HistoryLost`] when etcd no longer holds the history from `wait_index` (its
    /// error 401): re-read, then poll from the read's index + 1. Tries each endpoint in turn;
    /// fails with [`Failure::Unreachable`] only when none answered.
    pub fn watch_poll(&self, prefix: &str, wait_index: u64) -> Result<WatchPoll, Failure> {
        let call = Call {
            method: Method::Get,
            key: prefix.to_string(),
            query: wire::watch_query(wait_index),
            form: Vec::new(),
            idempotent: true,
        };
        let timeout = self.inner.config.watch_poll_timeout;
        let mut last = Failure::Unreachable("no endpoint tried".to_string());
        for endpoint in self.endpoint_order() {
            let exchange = match self.exchange(endpoint, &call, timeout) {
                Ok(exchange) => exchange,
                Err(TransportError::Timeout) => {
                    // etcd flushes the headers as soon as the watch is armed: no headers in
                    // time means this endpoint is not serving.
                    last = Failure::Timeout;
                    continue;
                }
                Err(TransportError::NotSent(why) | TransportError::Broken(why)) => {
                    last = Failure::Unreachable(format!("{}: {why}", self.url(endpoint, "")));
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
                WatchAnswer::Idle { next_index } => {
                    self.inner.preferred.store(endpoint, Ordering::Relaxed);
                    return Ok(WatchPoll::Idle { next_index });
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
        let mut response = result.map_err(classify)?;
        let status = response.status().as_u16();
        let etcd_index = response
            .headers()
            .get("X-Etcd-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string();
        Ok(Exchange {
            status,
            etcd_index,
            body,
        })
    }
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
