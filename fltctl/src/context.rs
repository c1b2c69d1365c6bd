//! What a command runs with: the API, stdout and stderr, a clock to wait by, a way to run
//! programs (ssh, systemctl), and facts about the terminal and the local machine. Everything the
//! outside world provides comes through here, so the commands can be run in-process by tests.

use crate::client::Api;
use crate::table;
use flt_core::api::entities::Machine;
use std::io::{self, Write};
use std::time::Duration;

/// Time as the commands see it: a monotonic reading and a sleep.
pub trait Clock {
    /// Time since an arbitrary start.
    fn now(&self) -> Duration;
    /// Blocks for `duration` (a test clock advances instead).
    fn sleep(&self, duration: Duration);
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock {
    start: std::time::Instant,
}

impl Default for SystemClock {
    fn default() -> SystemClock {
        SystemClock {
            start: std::time::Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// Runs a program with the terminal's stdin, stdout and stderr and returns its exit code, and
/// prepares the files it needs.
pub trait Runner {
    fn run(&self, argv: &[String]) -> io::Result<i32>;
    /// Creates `dir` (mode 0700) if missing: OpenSSH does not create the directory of its
    /// known-hosts file.
    fn ensure_private_dir(&self, dir: &std::path::Path) -> io::Result<()>;
}

/// Spawns the program and waits for it. A death by signal reads as 128 + the signal, as shells
/// report it.
#[derive(Debug, Default)]
pub struct ProcessRunner;

impl Runner for ProcessRunner {
    fn run(&self, argv: &[String]) -> io::Result<i32> {
        use std::os::unix::process::ExitStatusExt;
        let Some((program, args)) = argv.split_first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
        };
        let status = std::process::Command::new(program).args(args).status()?;
        Ok(status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(1))
    }

    fn ensure_private_dir(&self, dir: &std::path::Path) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        if dir.as_os_str().is_empty() || dir.exists() {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
}

/// Facts about where fltctl runs.
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// stdout is a terminal: progress is shown while waiting.
    pub stdout_is_tty: bool,
    /// stdin is a terminal: `ssh` gets a PTY for interactive use.
    pub stdin_is_tty: bool,
    /// The contents of /etc/machine-id (trimmed), if readable.
    pub local_machine_id: Option<String>,
    /// `$HOME`, for the default known-hosts file.
    pub home: Option<String>,
}

/// Everything a command runs with.
pub struct Ctx<'a> {
    pub api: &'a dyn Api,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub clock: &'a dyn Clock,
    pub runner: &'a dyn Runner,
    pub host: Host,
    pub debug: bool,
    /// How `ssh` is called.
    pub ssh: crate::remote::SshSettings,
    /// Whether a progress line is on the terminal (and must be cleared before other output).
    progress_shown: bool,
    machines: Option<Vec<Machine>>,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("host", &self.host).finish()
    }
}

impl<'a> Ctx<'a> {
    pub fn new(
        api: &'a dyn Api,
        out: &'a mut dyn Write,
        err: &'a mut dyn Write,
        clock: &'a dyn Clock,
        runner: &'a dyn Runner,
        host: Host,
    ) -> Ctx<'a> {
        Ctx {
            api,
            out,
            err,
            clock,
            runner,
            host,
            debug: false,
            ssh: crate::remote::SshSettings::default(),
            progress_shown: false,
            machines: None,
        }
    }

    /// Prints a line to stdout. Write errors (a closed pipe) are ignored, as fleetctl did.
    pub fn say(&mut self, line: impl AsRef<str>) {
        self.clear_progress();
        let _ = writeln!(self.out, "{}", line.as_ref());
    }

    /// Prints text to stdout as is.
    pub fn say_raw(&mut self, text: &str) {
        self.clear_progress();
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    /// Prints a line to stderr.
    pub fn warn(&mut self, line: impl AsRef<str>) {
        self.clear_progress();
        let _ = writeln!(self.err, "{}", line.as_ref());
    }

    /// A log line (`YYYY/MM/DD HH:MM:SS LEVEL file.rs:NN: msg`) to stderr. Debug lines only
    /// with `--debug`.
    pub fn log(&mut self, level: &str, location: &str, message: impl AsRef<str>) {
        if level == "DEBUG" && !self.debug {
            return;
        }
        let stamp = crate::log_stamp(std::time::SystemTime::now());
        self.warn(format!("{stamp} {level} {location}: {}", message.as_ref()));
    }

    /// Shows `line` as the progress line, replacing the previous one; only on a terminal.
    pub fn progress(&mut self, line: &str) {
        if !self.host.stdout_is_tty {
            return;
        }
        let _ = write!(self.out, "\r\x1b[2K{line}");
        let _ = self.out.flush();
        self.progress_shown = true;
    }

    /// Removes the progress line, if one is shown.
    pub fn clear_progress(&mut self) {
        if self.progress_shown {
            let _ = write!(self.out, "\r\x1b[2K");
            let _ = self.out.flush();
            self.progress_shown = false;
        }
    }

    /// The live machines, fetched once per invocation; a failure gives an empty list (legends
    /// then show the ID alone, as in fleetctl).
    pub fn machines(&mut self) -> &[Machine] {
        if self.machines.is_none() {
            let machines = match self.api.machines() {
                Ok(m) => m,
                Err(e) => {
                    self.log("DEBUG", "context.rs", format!("listing machines: {e}"));
                    Vec::new()
                }
            };
            self.machines = Some(machines);
        }
        self.machines.as_deref().unwrap_or(&[])
    }

    /// `113f16a7.../172.17.8.103` for a machine ID.
    pub fn machine_legend(&mut self, machine_id: &str) -> String {
        table::machine_full_legend(machine_id, self.machines(), false)
    }

    /// The machine with this ID, if live.
    pub fn machine(&mut self, machine_id: &str) -> Option<Machine> {
        self.machines().iter().find(|m| m.id == machine_id).cloned()
    }
}

/// Logs with the caller's file and line.
#[macro_export]
macro_rules! log_at {
    ($ctx:expr, $level:expr, $($arg:tt)*) => {
        $ctx.log(
            $level,
            &format!(
                "{}:{}",
                std::path::Path::new(file!())
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("fltctl"),
                line!()
            ),
            format!($($arg)*),
        )
    };
}
