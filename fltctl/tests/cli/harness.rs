//! Runs fltctl in-process against the API test double, with a virtual clock (sleeping advances
//! it) and a runner that records the programs fltctl would run instead of running them.

use super::api_double::ApiDouble;
use fltctl::context::{Clock, Host, Runner};
use std::cell::{Cell, RefCell};
use std::ffi::OsString;
use std::time::Duration;

/// A clock that only moves when fltctl sleeps.
#[derive(Debug, Default)]
pub struct VirtualClock {
    now: Cell<Duration>,
    pub sleeps: Cell<u32>,
}

impl Clock for VirtualClock {
    fn now(&self) -> Duration {
        self.now.get()
    }
    fn sleep(&self, d: Duration) {
        self.sleeps.set(self.sleeps.get() + 1);
        self.now.set(self.now.get() + d);
    }
}

/// Records argv lists (and directories it was asked to create, without creating them) and
/// answers with a fixed exit code.
#[derive(Debug, Default)]
pub struct RecordingRunner {
    pub calls: RefCell<Vec<Vec<String>>>,
    pub dirs: RefCell<Vec<std::path::PathBuf>>,
    pub exit_code: Cell<i32>,
}

impl Runner for RecordingRunner {
    fn run(&self, argv: &[String]) -> std::io::Result<i32> {
        self.calls.borrow_mut().push(argv.to_vec());
        Ok(self.exit_code.get())
    }

    fn ensure_private_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        self.dirs.borrow_mut().push(dir.to_path_buf());
        Ok(())
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub code: u8,
    pub out: String,
    pub err: String,
    /// Virtual time spent.
    pub elapsed: Duration,
    pub sleeps: u32,
    pub calls: Vec<Vec<String>>,
    /// Directories fltctl asked to create.
    pub dirs: Vec<std::path::PathBuf>,
}

/// One invocation's settings.
#[derive(Debug, Default)]
pub struct Run {
    pub host: Host,
    pub env: Vec<(String, String)>,
    pub exit_code: i32,
    /// Working directory for relative unit files (the tests never chdir: paths are absolute).
    pub endpoint: Option<String>,
}

impl Run {
    pub fn go(self, api: &ApiDouble, args: &[&str]) -> Outcome {
        let clock = VirtualClock::default();
        let runner = RecordingRunner::default();
        runner.exit_code.set(self.exit_code);
        let mut out = Vec::new();
        let mut err = Vec::new();
        let endpoint = self.endpoint.unwrap_or_else(|| api.url.clone());
        let mut argv: Vec<OsString> =
            vec!["fltctl".into(), format!("--endpoint={endpoint}").into()];
        argv.extend(args.iter().map(OsString::from));
        let io = fltctl::Io {
            out: &mut out,
            err: &mut err,
            clock: &clock,
            runner: &runner,
            host: self.host,
            env: self.env,
        };
        let code = fltctl::run(argv, io);
        Outcome {
            code,
            out: String::from_utf8(out).expect("utf8"),
            err: String::from_utf8(err).expect("utf8"),
            elapsed: clock.now(),
            sleeps: clock.sleeps.get(),
            calls: runner.calls.into_inner(),
            dirs: runner.dirs.into_inner(),
        }
    }
}

/// Runs with default settings.
pub fn fltctl(api: &ApiDouble, args: &[&str]) -> Outcome {
    Run::default().go(api, args)
}

/// A scratch directory for unit files, removed on drop.
#[derive(Debug)]
pub struct Dir(pub std::path::PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("fltctl-test-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("mkdir");
        Dir(path)
    }

    /// Writes a file and returns its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write");
        path.to_string_lossy().into_owned()
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const HELLO: &str = "[Unit]\nDescription=Hello\n\n[Service]\nExecStart=/bin/sleep 1000\n";
pub const HELLO2: &str =
    "[Unit]\nDescription=Hello again\n\n[Service]\nExecStart=/bin/sleep 2000\n";
pub const GLOBAL: &str = "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nGlobal=true\n";
pub const M1: &str = "113f16a7b2b84e4a9c6d1e2f3a4b5c6d";
pub const M2: &str = "2222aaaa3333bbbb4444cccc5555dddd";

/// A double with two machines.
pub fn cluster() -> ApiDouble {
    let api = ApiDouble::start();
    api.machine(M1, "172.17.8.103", &[("region", "us"), ("az", "a")]);
    api.machine(M2, "172.17.8.104", &[]);
    api
}
