//! The fltd binary as a process: command line, startup and fatal messages, signals, the API's
//! 503 mode on bound and on socket-activated listeners.

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const FLTD: &str = env!("CARGO_BIN_EXE_fltd");
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Long enough for anything here; only reached when a test is failing.
const PATIENCE: Duration = Duration::from_secs(20);
const UNAVAILABLE: &str =
    r#"{"error":{"code":503,"message":"flt server unable to communicate with etcd"}}"#;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fltd-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
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

/// fltd without any config file or inherited FLT_* setting.
fn fltd() -> Command {
    let mut cmd = Command::new(FLTD);
    for (key, _) in std::env::vars() {
        if key.starts_with("FLT_")
            || key.starts_with("LISTEN_")
            || ["NOTIFY_SOCKET", "JOURNAL_STREAM", "INVOCATION_ID"].contains(&key.as_str())
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn run(args: &[&str]) -> Output {
    fltd().args(args).output().expect("run fltd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_in_all_three_spellings() {
    for args in [&["--version"][..], &["-version"], &["version"]] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}");
        assert_eq!(text(&out.stdout), format!("fltd version {VERSION}\n"));
    }
}

#[test]
fn positional_arguments_are_refused_with_exit_1() {
    let out = run(&["start", "a.service"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "{FLTD} takes no arguments. Did you mean to invoke fltctl instead?\n"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Usage of fltd:"), "{stderr}");
    assert_eq!(run(&["-bogus"]).status.code(), Some(2));
}

#[test]
fn an_unusable_config_file_is_fatal() {
    let dir = TempDir::new("config");
    let missing = dir.path("missing.conf");
    let out = run(&["-config", missing.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("INFO main.rs:"), "{stderr}");
    assert!(
        stderr.contains(&format!(": Starting fltd version {VERSION}\n")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            ": Unable to use config file {}: No such file or directory (os error 2)\n",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("\nFATAL main.rs:"), "{stderr}");

    let out = run(&["--config", dir.0.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!(
            "Provided config {} is a directory, not a file\n",
            dir.0.display()
        )),
        "{}",
        text(&out.stderr)
    );
}

/// A running fltd with its stderr in a file.
struct Daemon {
    child: Child,
    stderr: PathBuf,
}

impl Daemon {
    fn start(mut cmd: Command, dir: &TempDir) -> Daemon {
        let stderr = dir.path("stderr");
        let file = std::fs::File::create(&stderr).expect("stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .expect("spawn fltd");
        Daemon { child, stderr }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait_for_log(&self, text: &str) {
        let start = Instant::now();
        while !self.log().contains(text) {
            assert!(
                start.elapsed() < PATIENCE,
                "no {text:?} in:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("kill");
    }

    /// Sends SIGTERM and returns the exit code and stdout.
    fn terminate(mut self) -> (Option<i32>, String) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let mut out = String::new();
                if let Some(mut stdout) = self.child.stdout.take() {
                    stdout.read_to_string(&mut out).expect("stdout");
                }
                return (status.code(), out);
            }
            assert!(
                start.elapsed() < PATIENCE,
                "fltd did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One kept-alive HTTP/1.1 connection over a unix socket.
struct Conn(BufReader<UnixStream>);

impl Conn {
    fn open(path: &Path) -> Conn {
        let start = Instant::now();
        loop {
            match UnixStream::connect(path) {
                Ok(s) => {
                    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
                    return Conn(BufReader::new(s));
                }
                Err(e) => assert!(start.elapsed() < PATIENCE, "connect {path:?}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a GET and returns status, Server header and body.
    fn get(&mut self, target: &str) -> (u16, String, String) {
        let request = format!("GET {target} HTTP/1.1\r\nHost: flt\r\n\r\n");
        self.0
            .get_mut()
            .write_all(request.as_bytes())
            .expect("send");
        let mut line = String::new();
        self.0.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let (mut server, mut length) = (String::new(), 0);
        loop {
            let mut line = String::new();
            self.0.read_line(&mut line).expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header");
            match name.to_ascii_lowercase().as_str() {
                "server" => server = value.trim().to_string(),
                "content-length" => length = value.trim().parse().expect("length"),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).expect("body");
        (status, server, text(&body))
    }
}

#[test]
fn serves_503_until_registered_survives_sighup_dumps_on_sigusr1_and_exits_0_on_sigterm() {
    use nix::sys::signal::Signal::{SIGHUP, SIGUSR1};
    let dir = TempDir::new("daemon");
    let socket = dir.path("api.sock");
    let mut cmd = fltd();
    cmd.env("FLT_LISTEN", format!("unix://{}", socket.display()))
        // Nothing answers there; the unwired node sends nothing anyway.
        .env("FLT_ETCD_SERVERS", "http://127.0.0.1:9");
    let daemon = Daemon::start(cmd, &dir);
    daemon.wait_for_log("API listener unix://");
    let mut conn = Conn::open(&socket);
    let expected = (503, format!("fltd/{VERSION}"), UNAVAILABLE.to_string());
    assert_eq!(conn.get("/flt/v1/units"), expected);
    assert_eq!(conn.get("/metrics"), expected);

    daemon.signal(SIGHUP);
    daemon.wait_for_log("INFO main.rs:");
    daemon.wait_for_log(": Reloading configuration from /etc/flt/flt.conf\n");
    // The same connection, and new ones, still reach the API.
    assert_eq!(conn.get("/fleet/v1/machines"), expected);
    assert_eq!(Conn::open(&socket).get("/flt/v1/state"), expected);

    daemon.signal(SIGUSR1);
    std::thread::sleep(Duration::from_millis(200));
    let log = daemon.log();
    let (code, stdout) = daemon.terminate();
    assert_eq!(code, Some(0), "{log}");
    let dump: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON dump");
    assert_eq!(
        dump,
        serde_json::json!({
            "Agent": {"Cache": {"TargetStates": {}}},
            "UnitStatePublisher": {"Cache": {}, "ToPublish": {}},
            "UnitStateGenerator": {"Subscribed": []},
        })
    );
    assert!(!log.contains("Failed serving HTTP on listener"), "{log}");
    // fltd created the socket, so it removes it.
    assert!(!socket.exists());
}

#[test]
fn serves_on_a_socket_passed_by_systemd_and_leaves_it_in_place() {
    let dir = TempDir::new("activation");
    let socket = dir.path("activated.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let fd = listener.as_raw_fd();
    // The child must inherit it: systemd passes sockets without close-on-exec.
    fcntl(&listener, FcntlArg::F_SETFD(FdFlag::empty())).expect("clear close-on-exec");
    // fd 3 for fltd, like systemd does; the original number closed unless it is 3 already.
    let moves = if fd == 3 {
        String::new()
    } else {
        format!("3<&{fd} {fd}<&-")
    };
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" {moves}"
        ))
        .arg(FLTD)
        // Would be used without activation; must stay unused.
        .env(
            "FLT_LISTEN",
            format!("unix://{}", dir.path("configured.sock").display()),
        )
        .env_remove("NOTIFY_SOCKET");
    let daemon = Daemon::start(cmd, &dir);
    drop(listener);
    daemon.wait_for_log("(passed by systemd)");
    let (status, server, body) = Conn::open(&socket).get("/flt/v1/units");
    assert_eq!((status, body.as_str()), (503, UNAVAILABLE));
    assert_eq!(server, format!("fltd/{VERSION}"));
    assert!(!dir.path("configured.sock").exists());
    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0));
    // systemd owns the socket file: it outlives fltd.
    assert!(socket.exists());
}

#[test]
fn tells_systemd_status_watchdog_reloading_and_stopping() {
    use nix::sys::signal::Signal::SIGHUP;
    use std::os::unix::net::UnixDatagram;
    let dir = TempDir::new("notify");
    let notify = dir.path("notify.sock");
    let systemd = UnixDatagram::bind(&notify).expect("bind notify socket");
    systemd.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let next = || {
        let mut buf = [0u8; 512];
        loop {
            match systemd.recv(&mut buf) {
                Ok(n) => return text(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("no notification: {e}"),
            }
        }
    };
    let mut cmd = fltd();
    cmd.env(
        "FLT_LISTEN",
        format!("unix://{}", dir.path("api.sock").display()),
    )
    .env("NOTIFY_SOCKET", &notify)
    // A ping every 50 ms.
    .env("WATCHDOG_USEC", "100000");
    let daemon = Daemon::start(cmd, &dir);
    // No etcd here: never registered, so no READY=1 (the test-host tests see it), only STATUS.
    let registering = "STATUS=engine starting, agent: registering";
    assert_eq!(next(), registering);
    assert_eq!(next(), "WATCHDOG=1");
    assert_eq!(next(), "WATCHDOG=1");
    daemon.signal(SIGHUP);
    let mut after_hup = Vec::new();
    while !after_hup.contains(&registering.to_string()) {
        after_hup.push(next());
    }
    after_hup.retain(|m| m != "WATCHDOG=1");
    assert_eq!(after_hup, ["RELOADING=1", registering]);
    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0));
    let mut last = next();
    while last == "WATCHDOG=1" {
        last = next();
    }
    assert_eq!(last, "STOPPING=1");
}
