//! fltd's `log` backend: journald's native protocol when fltd runs under systemd, otherwise
//! stderr lines `LEVEL file.rs:NN: msg` without timestamps (spec §8).
//!
//! - journald is used when `$JOURNAL_STREAM` names stderr's device and inode (systemd connected
//!   stderr to the journal), or when fltd is a systemd service (`$INVOCATION_ID`) whose stderr
//!   does not go to the journal. Each record is one datagram to `/run/systemd/journal/socket`
//!   with `MESSAGE`, `PRIORITY`, `CODE_FILE`, `CODE_LINE` and `SYSLOG_IDENTIFIER=fltd`, so the
//!   journal keeps the level and source location as fields. A record journald refuses (too
//!   large, socket gone) is written to stderr instead.
//! - Verbosity > 0 enables debug records of flt's own crates; other crates (tiny_http, ureq)
//!   only ever log warnings and errors.
//! - [`fatal!`](crate::fatal) logs at level `FATAL` (journald priority 2) and exits 1.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// journald's native socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Where records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Journal,
    Stderr,
}

struct Logger {
    journal: Option<UnixDatagram>,
    debug: AtomicBool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Installs the logger (once per process; later calls only change the verbosity) and says
/// where records go.
pub fn init(verbosity: i64) -> Sink {
    let logger = LOGGER.get_or_init(|| Logger {
        journal: journal_wanted().then(connect_journal).flatten(),
        debug: AtomicBool::new(false),
    });
    // Fails only if another logger was installed first; then records go there.
    let _ = log::set_logger(logger);
    set_verbosity(verbosity);
    if logger.journal.is_some() {
        Sink::Journal
    } else {
        Sink::Stderr
    }
}

/// Applies the `verbosity` option (a SIGHUP may change it).
pub fn set_verbosity(verbosity: i64) {
    let debug = verbosity > 0;
    if let Some(logger) = LOGGER.get() {
        logger.debug.store(debug, Ordering::Relaxed);
    }
    log::set_max_level(if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
}

/// Logs `args` at level FATAL and exits with status 1. Use through [`fatal!`](crate::fatal).
pub fn fatal(file: &str, line: u32, args: std::fmt::Arguments<'_>) -> ! {
    let message = args.to_string();
    let sent = LOGGER
        .get()
        .and_then(|l| l.journal.as_ref())
        .is_some_and(|j| {
            j.send(&journal_entry(2, Some(file), Some(line), &message))
                .is_ok()
        });
    if !sent {
        write_stderr(&stderr_line("FATAL", Some(file), Some(line), &message));
    }
    log::logger().flush();
    std::process::exit(1)
}

/// Logs a message at level FATAL, then exits 1.
#[macro_export]
macro_rules! fatal {
    ($($arg:tt)+) => {
        $crate::logging::fatal(file!(), line!(), format_args!($($arg)+))
    };
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let ours = metadata.target().starts_with("flt");
        match metadata.level() {
            Level::Error | Level::Warn => true,
            Level::Info => ours,
            Level::Debug | Level::Trace => ours && self.debug.load(Ordering::Relaxed),
        }
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let (name, priority) = match record.level() {
            Level::Error => ("ERROR", 3),
            Level::Warn => ("WARN", 4),
            Level::Info => ("INFO", 6),
            Level::Debug | Level::Trace => ("DEBUG", 7),
        };
        if let Some(journal) = &self.journal {
            let entry = journal_entry(priority, record.file(), record.line(), &message);
            if journal.send(&entry).is_ok() {
                return;
            }
        }
        write_stderr(&stderr_line(name, record.file(), record.line(), &message));
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

fn write_stderr(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(line.as_bytes());
}

/// `LEVEL file.rs:NN: msg\n` (the file's base name, as Go's `log.Lshortfile`).
pub fn stderr_line(level: &str, file: Option<&str>, line: Option<u32>, message: &str) -> String {
    let file = file
        .map(|f| f.rsplit('/').next().unwrap_or(f))
        .unwrap_or("?");
    let line = line.unwrap_or(0);
    format!("{level} {file}:{line}: {message}\n")
}

/// A journald native-protocol datagram. Values with a newline use the binary form
/// (`KEY\n`, 64-bit little-endian length, value, `\n`).
pub fn journal_entry(
    priority: u8,
    file: Option<&str>,
    line: Option<u32>,
    message: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 128);
    let mut field = |key: &str, value: &str| {
        out.extend_from_slice(key.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    };
    field("MESSAGE", message);
    field("PRIORITY", &priority.to_string());
    field("SYSLOG_IDENTIFIER", "fltd");
    if let Some(file) = file {
        field("CODE_FILE", file);
    }
    if let Some(line) = line {
        field("CODE_LINE", &line.to_string());
    }
    out
}

/// Whether systemd connected stderr to the journal: `$JOURNAL_STREAM` is `<dev>:<ino>` of it.
pub fn journal_stream_matches(journal_stream: &str, dev: u64, ino: u64) -> bool {
    journal_stream
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

fn journal_wanted() -> bool {
    match std::env::var("JOURNAL_STREAM") {
        Ok(stream) => nix::sys::stat::fstat(std::io::stderr())
            .is_ok_and(|st| journal_stream_matches(&stream, st.st_dev, st.st_ino)),
        // A service whose stderr is not the journal (StandardError=null, a file, a tty).
        Err(_) => std::env::var_os("INVOCATION_ID").is_some(),
    }
}

fn connect_journal() -> Option<UnixDatagram> {
    let socket = UnixDatagram::unbound().ok()?;
    socket.connect(JOURNAL_SOCKET).ok()?;
    Some(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_lines_have_level_short_file_and_line() {
        assert_eq!(
            stderr_line(
                "INFO",
                Some("fltd/src/main.rs"),
                Some(42),
                "Starting fltd version 1"
            ),
            "INFO main.rs:42: Starting fltd version 1\n"
        );
        assert_eq!(stderr_line("WARN", None, None, "x"), "WARN ?:0: x\n");
    }

    #[test]
    fn journal_entries_use_the_binary_form_for_multi_line_values() {
        let entry = journal_entry(6, Some("src/a.rs"), Some(7), "hello");
        assert_eq!(
            entry,
            b"MESSAGE=hello\nPRIORITY=6\nSYSLOG_IDENTIFIER=fltd\nCODE_FILE=src/a.rs\nCODE_LINE=7\n"
        );
        let entry = journal_entry(3, None, None, "a\nb");
        let mut expected = b"MESSAGE\n".to_vec();
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(b"a\nb\nPRIORITY=3\nSYSLOG_IDENTIFIER=fltd\n");
        assert_eq!(entry, expected);
    }

    #[test]
    fn records_go_to_the_journal_with_their_level_and_debug_only_when_verbose() {
        let dir = std::env::temp_dir().join(format!("flt-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("socket");
        let _ = std::fs::remove_file(&path);
        let journald = UnixDatagram::bind(&path).expect("bind");
        journald.set_nonblocking(true).expect("nonblocking");
        let client = UnixDatagram::unbound().expect("socket");
        client.connect(&path).expect("connect");
        let logger = Logger {
            journal: Some(client),
            debug: AtomicBool::new(false),
        };
        let record = |level, target: &'static str, text: &'static str| {
            logger.log(
                &Record::builder()
                    .level(level)
                    .target(target)
                    .file(Some("driver/src/x.rs"))
                    .line(Some(9))
                    .args(format_args!("{text}"))
                    .build(),
            );
        };
        let received = || {
            let mut buf = [0u8; 1024];
            journald
                .recv(&mut buf)
                .ok()
                .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
        };
        record(Level::Warn, "flt_driver::x", "careful");
        assert_eq!(
            received().as_deref(),
            Some(
                "MESSAGE=careful\nPRIORITY=4\nSYSLOG_IDENTIFIER=fltd\nCODE_FILE=driver/src/x.rs\n\
                 CODE_LINE=9\n"
            )
        );
        record(Level::Debug, "flt_driver::x", "quiet");
        record(Level::Info, "tiny_http", "not ours");
        assert_eq!(received(), None);
        logger.debug.store(true, Ordering::Relaxed);
        record(Level::Debug, "fltd", "loud");
        assert!(received().is_some_and(|m| m.starts_with("MESSAGE=loud\nPRIORITY=7\n")));
        record(Level::Error, "tiny_http", "theirs, but an error");
        assert!(received().is_some_and(|m| m.contains("PRIORITY=3\n")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn journal_stream_is_compared_as_numbers() {
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(!journal_stream_matches("8:12345", 8, 12346));
        assert!(!journal_stream_matches("8-12345", 8, 12345));
        assert!(!journal_stream_matches("", 0, 0));
    }
}
