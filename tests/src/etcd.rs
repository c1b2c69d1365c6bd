//! A real etcd for tests: [`EtcdServer::start`] runs Debian's `etcd-server` (3.4, v2 API
//! enabled) on free loopback ports with a fresh data directory, and dropping it kills etcd and
//! removes the directory, also when the test panics.
//!
//! Tests call `let Some(etcd) = EtcdServer::start() else { return };`. When etcd is missing
//! this panics with instructions, unless `FLT_SKIP_ETCD_TESTS=1`, which skips instead.
//! `FLT_ETCD_BIN` overrides the binary (default `etcd` on `PATH`).

use flt_core::registry::Request;
use flt_driver::etcd::{BasicAuth, EtcdClient, EtcdConfig, TlsFiles, basic_auth_header};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long etcd may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A running etcd on loopback, owned by one test.
#[derive(Debug)]
pub struct EtcdServer {
    binary: PathBuf,
    /// Serving HTTPS with client-certificate auth; the PEM files live in `dir`.
    tls: Option<TestCerts>,
    /// Holds the data directory and etcd's log.
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// Set once auth is on, so that the harness itself can still talk to etcd.
    root_password: Option<String>,
}

/// Whether etcd tests are to be skipped.
pub fn skip_etcd_tests() -> bool {
    std::env::var("FLT_SKIP_ETCD_TESTS").is_ok_and(|v| v == "1")
}

fn find_etcd() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("FLT_ETCD_BIN") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}

/// Two distinct free loopback ports (held together so they differ).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let ports = (
        a.local_addr().expect("local address").port(),
        b.local_addr().expect("local address").port(),
    );
    drop((a, b));
    ports
}

/// A directory for this test's etcd: on tmpfs when there is one, as etcd fsyncs every write.
fn fresh_dir() -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = base.join(format!(
        "flt-etcd-{}-{}-{nanos}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create etcd test directory");
    dir
}

/// A loopback port on which nothing listens (for fail-over tests).
pub fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

impl EtcdServer {
    /// Starts etcd and waits until it answers. `None` only when `FLT_SKIP_ETCD_TESTS=1`.
    pub fn start() -> Option<EtcdServer> {
        EtcdServer::start_with(false)
    }

    /// Like [`EtcdServer::start`], but serving HTTPS and requiring a client certificate, both
    /// from a test CA made with the `openssl` command (see [`EtcdServer::certs`]).
    pub fn start_tls() -> Option<EtcdServer> {
        EtcdServer::start_with(true)
    }

    fn start_with(tls: bool) -> Option<EtcdServer> {
        if skip_etcd_tests() {
            eprintln!("FLT_SKIP_ETCD_TESTS=1: skipping a test that needs etcd");
            return None;
        }
        let Some(binary) = find_etcd() else {
            panic!(
                "etcd not found on PATH: install Debian's etcd-server (apt-get install \
                 etcd-server), point FLT_ETCD_BIN at an etcd 3.4 binary, or set \
                 FLT_SKIP_ETCD_TESTS=1 to skip the etcd tests"
            );
        };
        let mut last_error = String::new();
        // A port picked as free may be taken by a parallel test before etcd binds it: retry.
        for _ in 0..3 {
            let (client_port, peer_port) = free_ports();
            let mut server = EtcdServer {
                binary: binary.clone(),
                tls: None,
                dir: fresh_dir(),
                client_port,
                peer_port,
                child: None,
                root_password: None,
            };
            if tls {
                server.tls = Some(TestCerts::make(&server.dir));
            }
            match server.launch() {
                Ok(()) => return Some(server),
                Err(e) => last_error = e,
            }
        }
        panic!("etcd did not start: {last_error}");
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The test CA and certificates of an etcd started with [`EtcdServer::start_tls`].
    pub fn certs(&self) -> Option<&TestCerts> {
        self.tls.as_ref()
    }

    /// Client settings for this etcd (short timeouts suit loopback; with TLS, the test CA and a
    /// client certificate).
    pub fn config(&self) -> EtcdConfig {
        EtcdConfig {
            request_timeout: Duration::from_secs(2),
            watch_poll_timeout: Duration::from_secs(5),
            tls: self.tls.as_ref().map(|certs| TlsFiles {
                ca_file: Some(certs.ca.clone()),
                cert_file: Some(certs.client_cert.clone()),
                key_file: Some(certs.client_key.clone()),
            }),
            ..EtcdConfig::with_endpoints([self.endpoint()])
        }
    }

    /// A client for this etcd.
    pub fn client(&self) -> EtcdClient {
        EtcdClient::new(self.config()).expect("valid etcd config")
    }

    fn admin_client(&self) -> EtcdClient {
        let mut config = self.config();
        if let Some(password) = &self.root_password {
            config.auth = Some(BasicAuth {
                username: "root".to_string(),
                password: password.clone(),
            });
        }
        EtcdClient::new(config).expect("valid etcd config")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    /// The last lines etcd logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open etcd log: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot open etcd log: {e}"))?;
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new(&self.binary);
        if let Some(certs) = &self.tls {
            command
                .arg(format!("--cert-file={}", certs.server_cert.display()))
                .arg(format!("--key-file={}", certs.server_key.display()))
                .arg(format!("--trusted-ca-file={}", certs.ca.display()))
                .arg("--client-cert-auth=true");
        }
        let child = command
            .arg("--name=flt-test")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=flt-test={peer}"))
            .arg("--enable-v2=true")
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=100")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let client = self.admin_client();
        loop {
            let probe = client.call(&Request::Get {
                key: "/".to_string(),
                recursive: false,
            });
            if probe.is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("etcd exited with {status}:\n{}", self.log_tail()));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "etcd did not answer within {START_TIMEOUT:?} ({probe:?}):\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills etcd (SIGKILL: what etcd acknowledged is on disk) and leaves it down.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts etcd again on the same ports and data, after [`EtcdServer::stop`].
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.launch() {
            panic!("etcd did not restart: {e}");
        }
    }

    /// Turns on etcd v2 auth with a `root` user and takes every right from the `guest` role, so
    /// that only requests with root's basic auth are served.
    pub fn enable_auth(&mut self, root_password: &str) {
        let base = self.endpoint();
        let agent = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .build()
            .new_agent();
        let put = |path: &str, body: &str, auth: bool| {
            let mut request = agent
                .put(format!("{base}{path}"))
                .header("Content-Type", "application/json");
            if auth {
                request = request.header("Authorization", basic_auth_header("root", root_password));
            }
            let mut response = request
                .send(body)
                .unwrap_or_else(|e| panic!("PUT {path}: {e}"));
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            assert!(
                (200..300).contains(&status),
                "PUT {path} answered {status}: {text}"
            );
        };
        put(
            "/v2/auth/users/root",
            &format!(r#"{{"user":"root","password":"{root_password}"}}"#),
            false,
        );
        put("/v2/auth/enable", "", false);
        put(
            "/v2/auth/roles/guest",
            r#"{"role":"guest","revoke":{"kv":{"read":["/*"],"write":["/*"]}}}"#,
            true,
        );
        self.root_password = Some(root_password.to_string());
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PEM files of a throw-away CA, a server certificate for `127.0.0.1` and a client certificate,
/// made with the `openssl` command.
#[derive(Debug, Clone)]
pub struct TestCerts {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestCerts {
    /// Makes the files in `dir`. Panics, saying what is missing, when `openssl` fails.
    pub fn make(dir: &Path) -> TestCerts {
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap_or_else(|e| {
                    panic!("the TLS tests need the openssl command (apt-get install openssl): {e}")
                });
            assert!(
                output.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let ec_key = |name: &str| {
            openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                name,
            ])
        };
        ec_key("ca.key");
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=flt test CA",
            "-days",
            "2",
            "-out",
            "ca.pem",
        ]);
        let leaf = |name: &str, extensions: &str| {
            ec_key(&format!("{name}.key"));
            let ext = format!("{name}.ext");
            std::fs::write(dir.join(&ext), extensions).expect("write extensions file");
            openssl(&[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN={name}"),
                "-out",
                &format!("{name}.csr"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &format!("{name}.pem"),
            ]);
        };
        leaf(
            "server",
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        );
        leaf(
            "client",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        );
        TestCerts {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}
