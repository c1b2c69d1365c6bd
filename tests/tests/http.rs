//! Integration tests of `flt_driver::http` over real sockets: a temp unix socket and a loopback
//! TCP port, spoken to with hand-written HTTP/1.1 so that nothing is hidden by a client library.

use crossbeam_channel::Receiver;
use flt_driver::http::{
    ApiRequest, ApiResponse, HttpServer, ListenAddr, ListenError, Listeners, ServerConfig,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

/// Long enough for anything on loopback; only reached when a test is failing.
const PATIENCE: Duration = Duration::from_secs(10);

/// A directory of its own per test, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("flt-http-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 connection, kept alive across requests.
struct Conn {
    reader: BufReader<Box<dyn ReadWrite>>,
}

trait ReadWrite: Read + Write {
    fn writer(&mut self) -> &mut dyn Write;
}
impl ReadWrite for TcpStream {
    fn writer(&mut self) -> &mut dyn Write {
        self
    }
}
impl ReadWrite for UnixStream {
    fn writer(&mut self) -> &mut dyn Write {
        self
    }
}

impl Conn {
    fn tcp(addr: std::net::SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect tcp");
        s.set_read_timeout(Some(PATIENCE)).expect("timeout");
        Conn {
            reader: BufReader::new(Box::new(s)),
        }
    }

    fn unix(path: &std::path::Path) -> Conn {
        let s = UnixStream::connect(path).expect("connect unix");
        s.set_read_timeout(Some(PATIENCE)).expect("timeout");
        Conn {
            reader: BufReader::new(Box::new(s)),
        }
    }

    /// Sends raw bytes (a request head, maybe a body).
    fn send_raw(&mut self, bytes: &[u8]) {
        let w = self.reader.get_mut().writer();
        w.write_all(bytes).expect("write request");
        w.flush().expect("flush");
    }

    fn request(&mut self, method: &str, target: &str, body: &[u8]) -> Reply {
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: flt\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.send_raw(head.as_bytes());
        self.send_raw(body);
        self.read_reply()
    }

    fn read_reply(&mut self) -> Reply {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').expect("header");
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: String::new(),
        };
        let length: usize = reply
            .header("Content-Length")
            .map(|v| v.parse().expect("length"))
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        reply.body = String::from_utf8(body).expect("utf-8 body");
        reply
    }
}

fn small_config(body_limit: usize) -> ServerConfig {
    ServerConfig {
        version: "9.8.7".to_string(),
        body_limit,
        workers: 2,
    }
}

/// A unix socket and a loopback TCP port, both served.
fn unix_and_tcp(dir: &TempDir) -> (Listeners, PathBuf, std::net::SocketAddr) {
    let path = dir.path("api.sock");
    let listeners = Listeners::bind(&[
        ListenAddr::Unix(path.clone()),
        ListenAddr::Tcp("127.0.0.1:0".to_string()),
    ])
    .expect("bind");
    let tcp = listeners
        .iter()
        .find_map(|l| l.tcp_addr())
        .expect("a tcp listener");
    (listeners, path, tcp)
}

/// Answers every request with 200 and a description of what arrived, prefixed by `tag`.
fn echo(requests: Receiver<ApiRequest>, tag: &'static str) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for request in requests.iter() {
            let text = format!(
                "{tag} {} {} ?{} ct={:?} body={}",
                request.method(),
                request.path(),
                request.query(),
                request.header_values("content-type"),
                String::from_utf8_lossy(request.body()),
            );
            request.respond(ApiResponse::json(200, text));
        }
    })
}

const UNAVAILABLE: &str =
    r#"{"error":{"code":503,"message":"flt server unable to communicate with etcd"}}"#;

#[test]
fn every_path_is_503_until_a_handler_is_set_on_both_listeners() {
    let dir = TempDir::new("503");
    let (listeners, path, tcp) = unix_and_tcp(&dir);
    let server = HttpServer::start(&listeners, &small_config(4096)).expect("start");
    assert!(!server.has_handler());
    for target in [
        "/flt/v1/units",
        "/metrics",
        "/fleet/v1/discovery",
        "/",
        "/nope",
    ] {
        for mut conn in [Conn::unix(&path), Conn::tcp(tcp)] {
            let reply = conn.request("GET", target, b"");
            assert_eq!(reply.status, 503, "{target}");
            assert_eq!(reply.body, UNAVAILABLE, "{target}");
            assert_eq!(reply.header("Content-Type"), Some("application/json"));
            assert_eq!(reply.header("Server"), Some("fltd/9.8.7"));
        }
    }
}

#[test]
fn the_handler_gets_method_path_query_headers_and_body() {
    let dir = TempDir::new("parts");
    let (listeners, path, tcp) = unix_and_tcp(&dir);
    let server = HttpServer::start(&listeners, &small_config(4096)).expect("start");
    let (tx, rx) = crossbeam_channel::unbounded();
    server.set_handler(Some(tx));
    let echoer = echo(rx, "A");

    let mut conn = Conn::tcp(tcp);
    let reply = conn.request(
        "GET",
        "/flt/v1/state?machineID=m1&nextPageToken=a&nextPageToken=b",
        b"",
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Server"), Some("fltd/9.8.7"));
    assert_eq!(
        reply.body,
        "A GET /flt/v1/state ?machineID=m1&nextPageToken=a&nextPageToken=b ct=[] body="
    );

    // The path stays percent-encoded: decoding is the router's job.
    let mut conn = Conn::unix(&path);
    conn.send_raw(
        b"PUT /fleet/v1/units/a%40b.service HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    );
    let reply = conn.read_reply();
    assert_eq!(
        reply.body,
        r#"A PUT /fleet/v1/units/a%40b.service ? ct=["application/json", "text/plain"] body=hello"#
    );

    // A body sent in chunks arrives whole.
    conn.send_raw(
        b"PUT /flt/v1/units/c.service HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    assert!(conn.read_reply().body.ends_with("body=abcde"));

    drop(server);
    echoer.join().expect("echo thread");
}

#[test]
fn bodies_over_the_limit_get_413() {
    let dir = TempDir::new("413");
    let (listeners, _path, tcp) = unix_and_tcp(&dir);
    let limit = 4096;
    let server = HttpServer::start(&listeners, &small_config(limit)).expect("start");
    let (tx, rx) = crossbeam_channel::unbounded();
    server.set_handler(Some(tx));
    let _echoer = echo(rx, "A");
    let entity =
        r#"{"error":{"code":413,"message":"request body too large: the limit is 4096 bytes"}}"#;

    // Exactly the limit is accepted.
    let reply = Conn::tcp(tcp).request("PUT", "/flt/v1/units/a.service", &vec![b'x'; limit]);
    assert_eq!(reply.status, 200);
    assert!(reply.body.ends_with(&"x".repeat(limit)));

    // One byte more, announced by Content-Length: refused before reading.
    let reply = Conn::tcp(tcp).request("PUT", "/flt/v1/units/a.service", &vec![b'x'; limit + 1]);
    assert_eq!(reply.status, 413);
    assert_eq!(reply.body, entity);
    assert_eq!(reply.header("Server"), Some("fltd/9.8.7"));
    assert_eq!(reply.header("Content-Type"), Some("application/json"));

    // Content-Length far over the limit, no body sent: answered at once.
    let mut conn = Conn::tcp(tcp);
    conn.send_raw(
        b"PUT /flt/v1/units/a.service HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n",
    );
    let reply = conn.read_reply();
    assert_eq!((reply.status, reply.body.as_str()), (413, entity));

    // Chunked (no Content-Length): counted while reading.
    let mut conn = Conn::tcp(tcp);
    let mut raw =
        b"PUT /flt/v1/units/a.service HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..5 {
        raw.extend_from_slice(b"400\r\n");
        raw.extend_from_slice(&[b'y'; 1024]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    conn.send_raw(&raw);
    let reply = conn.read_reply();
    assert_eq!((reply.status, reply.body.as_str()), (413, entity));

    // A length tiny_http could not even allocate to discard (it would abort the process): still
    // a 413, and the server lives on.
    let mut conn = Conn::tcp(tcp);
    conn.send_raw(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000\r\n\r\n");
    assert_eq!(conn.read_reply().status, 413);
    drop(conn);
    let reply = Conn::tcp(tcp).request("PUT", "/flt/v1/units/a.service", b"{}");
    assert_eq!(reply.status, 200);

    // The default limit is 1 MiB.
    assert_eq!(ServerConfig::new("x").body_limit, 1 << 20);
}

#[test]
fn switching_handlers_keeps_the_listeners_and_open_connections() {
    let dir = TempDir::new("rebuild");
    let (listeners, path, tcp) = unix_and_tcp(&dir);
    let server = HttpServer::start(&listeners, &small_config(4096)).expect("start");
    let mut tcp_conn = Conn::tcp(tcp);
    let mut unix_conn = Conn::unix(&path);

    let (tx, rx) = crossbeam_channel::unbounded();
    server.set_handler(Some(tx));
    let first = echo(rx, "first");
    assert!(
        tcp_conn
            .request("GET", "/x", b"")
            .body
            .starts_with("first GET")
    );
    assert!(
        unix_conn
            .request("GET", "/x", b"")
            .body
            .starts_with("first GET")
    );

    // Tear down: the old handler's channel closes, the same connections now get 503.
    server.set_handler(None);
    first
        .join()
        .expect("first handler ends when its channel closes");
    assert_eq!(tcp_conn.request("GET", "/x", b"").status, 503);
    assert_eq!(unix_conn.request("GET", "/x", b"").status, 503);

    // Rebuild: a new handler, same sockets, same connections.
    let (tx, rx) = crossbeam_channel::unbounded();
    server.set_handler(Some(tx));
    let _second = echo(rx, "second");
    assert!(
        tcp_conn
            .request("GET", "/x", b"")
            .body
            .starts_with("second GET")
    );
    assert!(
        unix_conn
            .request("GET", "/x", b"")
            .body
            .starts_with("second GET")
    );
    assert!(
        Conn::unix(&path)
            .request("GET", "/y", b"")
            .body
            .starts_with("second GET")
    );
}

#[test]
fn a_request_dropped_unanswered_gets_503() {
    let dir = TempDir::new("dropped");
    let (listeners, path, _tcp) = unix_and_tcp(&dir);
    let server = HttpServer::start(&listeners, &small_config(4096)).expect("start");
    let (tx, rx) = crossbeam_channel::unbounded::<ApiRequest>();
    server.set_handler(Some(tx));
    let dropper = std::thread::spawn(move || {
        let request = rx.recv_timeout(PATIENCE).expect("a request");
        drop(request);
    });
    let reply = Conn::unix(&path).request("GET", "/flt/v1/units", b"");
    assert_eq!((reply.status, reply.body.as_str()), (503, UNAVAILABLE));
    dropper.join().expect("dropper");
}

#[test]
fn a_stopped_server_can_be_restarted_on_the_same_listeners() {
    let dir = TempDir::new("restart");
    let (listeners, path, tcp) = unix_and_tcp(&dir);
    let server = HttpServer::start(&listeners, &small_config(4096)).expect("start");
    assert_eq!(Conn::tcp(tcp).request("GET", "/", b"").status, 503);
    server.stop();
    // A request arriving while no server runs waits for the next one.
    let waiting = std::thread::spawn(move || Conn::tcp(tcp).request("GET", "/early", b""));
    std::thread::sleep(Duration::from_millis(200));
    let server = HttpServer::start(&listeners, &small_config(4096)).expect("restart");
    let (tx, rx) = crossbeam_channel::unbounded();
    server.set_handler(Some(tx));
    let _echoer = echo(rx, "again");
    let early = waiting.join().expect("early request");
    assert_eq!(early.status, 200);
    assert!(early.body.starts_with("again GET /early"), "{}", early.body);
    assert!(
        Conn::tcp(tcp)
            .request("GET", "/", b"")
            .body
            .starts_with("again")
    );
    assert!(
        Conn::unix(&path)
            .request("GET", "/", b"")
            .body
            .starts_with("again")
    );
}

#[test]
fn unix_sockets_get_mode_0660_and_replace_stale_files_only() {
    let dir = TempDir::new("unix");
    let path = dir.path("api.sock");

    // A stale socket file (its server is gone) is replaced.
    drop(UnixListener::bind(&path).expect("stale socket"));
    assert!(path.exists());
    let listeners = Listeners::bind(&[ListenAddr::Unix(path.clone())]).expect("replace stale");
    let mode = std::fs::metadata(&path)
        .expect("socket")
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o660);
    assert_eq!(
        listeners.iter().map(|l| l.describe()).collect::<Vec<_>>(),
        [format!("unix://{}", path.display())]
    );

    // A live server's socket is not stolen.
    let err = Listeners::bind(&[ListenAddr::Unix(path.clone())]).expect_err("in use");
    assert!(matches!(err, ListenError::PathInUse { .. }), "{err}");
    assert!(
        err.to_string().contains("another server is accepting"),
        "{err}"
    );

    // The socket file goes away with its listener.
    drop(listeners);
    assert!(!path.exists());

    // A regular file is neither used nor removed.
    std::fs::write(&path, "not a socket").expect("file");
    let err = Listeners::bind(&[ListenAddr::Unix(path.clone())]).expect_err("a file");
    assert!(err.to_string().contains("is not a socket"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).ok().as_deref(),
        Some("not a socket")
    );

    // A bad TCP address names itself.
    let err = Listeners::bind(&[ListenAddr::Tcp("nonsense".to_string())]).expect_err("bad");
    assert!(
        err.to_string()
            .starts_with("cannot listen on tcp://nonsense:"),
        "{err}"
    );
}

#[test]
fn without_passed_sockets_listeners_are_bound_from_the_addresses() {
    // This test process was not socket-activated (LISTEN_PID is not ours).
    let dir = TempDir::new("open");
    let path = dir.path("api.sock");
    let (listeners, activated) = Listeners::open(&[ListenAddr::Unix(path.clone())]).expect("open");
    assert!(!activated);
    assert_eq!(listeners.len(), 1);
    assert!(path.exists());
}

/// Prints request rates over one kept-alive unix connection and over four in parallel.
/// `cargo test -p flt-tests --test http -- --ignored --nocapture throughput`
#[test]
#[ignore = "a measurement: prints figures, asserts nothing about speed"]
fn throughput() {
    let dir = TempDir::new("throughput");
    let (listeners, path, _tcp) = unix_and_tcp(&dir);
    let server = HttpServer::start(&listeners, &ServerConfig::new("bench")).expect("start");
    let (tx, rx) = crossbeam_channel::unbounded::<ApiRequest>();
    server.set_handler(Some(tx));
    // Answers like a small API handler: a JSON body after looking at the request.
    std::thread::spawn(move || {
        for request in rx.iter() {
            let body = format!(r#"{{"path":"{}"}}"#, request.path());
            request.respond(ApiResponse::json(200, body));
        }
    });
    for connections in [1usize, 4] {
        let per_connection = 5_000;
        let start = std::time::Instant::now();
        let threads: Vec<_> = (0..connections)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut conn = Conn::unix(&path);
                    let mut latencies = Vec::with_capacity(per_connection);
                    for _ in 0..per_connection {
                        let t = std::time::Instant::now();
                        assert_eq!(conn.request("GET", "/flt/v1/units", b"").status, 200);
                        latencies.push(t.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies: Vec<Duration> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("client"))
            .collect();
        let elapsed = start.elapsed();
        latencies.sort();
        let total = latencies.len();
        println!(
            "{connections} connection(s): {total} requests in {:.2} s = {:.0} req/s, \
             latency p50 {:?} p99 {:?}",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64(),
            latencies[total / 2],
            latencies[total * 99 / 100],
        );
    }
}

#[test]
fn a_tcp_client_that_stalls_mid_body_does_not_hold_a_worker() {
    let dir = TempDir::new("stall");
    let (listeners, _path, tcp) = unix_and_tcp(&dir);
    for listener in listeners.iter() {
        listener
            .set_tcp_io_timeout(Duration::from_millis(300))
            .expect("timeout");
    }
    // One worker: if the stalled body held it, nothing else would be answered.
    let config = ServerConfig {
        workers: 1,
        ..small_config(1 << 20)
    };
    let server = HttpServer::start(&listeners, &config).expect("start");
    let (tx, rx) = crossbeam_channel::unbounded();
    server.set_handler(Some(tx));
    let _echoer = echo(rx, "A");

    let mut stalled = Conn::tcp(tcp);
    stalled.send_raw(
        b"PUT /flt/v1/units/a.service HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
    );
    stalled.send_raw(&[b'x'; 100]);
    let reply = stalled.read_reply();
    assert_eq!(reply.status, 400);
    assert!(
        reply.body.contains("cannot read the request body"),
        "{}",
        reply.body
    );
    let reply = Conn::tcp(tcp).request("GET", "/flt/v1/units", b"");
    assert_eq!(reply.status, 200);
}
