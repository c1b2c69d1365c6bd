//! fltd on a test host: build it with the cargo that builds the tests, install the shipped unit
//! files (`examples/host/`) with a drop-in, and start it. Shared by the host tests and benches.

use crate::testhost::{Bind, Cluster, ClusterConfig, Host};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs `args` in `host`; panics with the harness's message on failure. Returns trimmed stdout.
pub fn exec(host: &Host, args: &[&str]) -> String {
    host.exec_ok(args)
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_string()
}

/// Builds fltd (and fltctl, in one cargo invocation so that every test builds the same
/// artifacts) with the cargo and profile that built this crate; returns fltd's path inside a
/// host that has `target` bound.
pub fn build_fltd(target: &Bind) -> PathBuf {
    crate::fltcluster::build_binaries(target).0
}

/// Installs `fltd.service` (running the binary `fltd`, a path inside the host) and `flt.socket`
/// from `examples/host/`, with `environment` in the drop-in `dropin_name`, then starts the socket
/// and (without waiting for READY) the service.
/// Installs the shipped unit files with the test's binary path and settings, and starts them.
pub fn install_fltd(host: &Host, fltd: &Path, dropin_name: &str, environment: &[(&str, String)]) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/host");
    let service = std::fs::read_to_string(examples.join("fltd.service")).expect("fltd.service");
    let socket = std::fs::read_to_string(examples.join("flt.socket")).expect("flt.socket");
    let service = service.replace(
        "ExecStart=/usr/bin/fltd",
        &format!("ExecStart={}", fltd.display()),
    );
    assert!(service.contains(&fltd.display().to_string()));
    let root = host.root().unwrap_or_else(|e| panic!("{e}"));
    let units = root.join("etc/systemd/system");
    std::fs::write(units.join("fltd.service"), service).expect("write fltd.service");
    std::fs::write(units.join("flt.socket"), socket).expect("write flt.socket");
    let dropin = units.join("fltd.service.d");
    std::fs::create_dir_all(&dropin).expect("drop-in dir");
    let mut conf = String::from(
        "[Service]
",
    );
    for (name, value) in environment {
        conf.push_str(&format!(
            "Environment={name}={value}
"
        ));
    }
    std::fs::write(dropin.join(dropin_name), conf).expect("write drop-in");
    exec(host, &["systemctl", "daemon-reload"]);
    exec(host, &["systemctl", "start", "flt.socket"]);
    exec(host, &["systemctl", "start", "--no-block", "fltd.service"]);
}

/// One fresh test host running the build's fltd with default settings against the cluster's
/// etcd (the benches' setup). Returns the cluster and the API socket's path as seen from this
/// process. fltd is started, not waited for: its API answers 503 until it is registered.
pub fn one_host_with_fltd(dropin_name: &str) -> (Cluster, PathBuf) {
    let target = Bind::cargo_target_dir();
    let fltd = build_fltd(&target);
    let cluster = Cluster::start(ClusterConfig {
        binds: vec![target],
        ..ClusterConfig::new(1)
    })
    .unwrap_or_else(|e| panic!("starting a 1-host test cluster: {e}"));
    let host = cluster.host(0);
    install_fltd(
        host,
        &fltd,
        dropin_name,
        &[("FLT_ETCD_SERVERS", cluster.etcd_endpoint())],
    );
    let socket = host
        .root()
        .unwrap_or_else(|e| panic!("{e}"))
        .join("run/flt.sock");
    (cluster, socket)
}

/// One HTTP/1.1 request on an fltd API unix socket (reached from outside a host through
/// `/proc/<pid>/root/run`), `Connection: close`, with `body` as JSON unless it is empty; waits at
/// most `timeout` for each read. Returns (status, body), a chunked body decoded. For benches,
/// which must not spawn a process per request; tests use `fltcluster::api_json` (curl inside
/// the host).
pub fn unix_http(
    socket: &Path,
    method: &str,
    target: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let what = format!("{method} {target} on {}", socket.display());
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("{what}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("{what}: {e}"))?;
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: flt\r\n{content_type}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("{what}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("{what}: {e}"))?;
    let answer = String::from_utf8(answer).map_err(|e| format!("{what}: {e}"))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{what}: no header end in {answer:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{what}: no status in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| format!("{what}: bad chunked body"))?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size + 2..)?;
    }
}
