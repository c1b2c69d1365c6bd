//! `sd_notify(3)`: telling systemd that fltd is ready, what it is doing, that it is alive
//! (watchdog) and that it is stopping. One datagram per message to `$NOTIFY_SOCKET`, which is a
//! path or, with a leading `@`, an abstract socket name. Without `$NOTIFY_SOCKET` (not started by
//! systemd, or `Type=simple`) there is no [`Notifier`] and nothing to do.

use std::fmt;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// `$NOTIFY_SOCKET` cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum NotifyError {
    /// Not an absolute path nor an `@abstract` name.
    BadAddress(String),
    /// The socket could not be created or the message not sent.
    Io { address: String, error: io::Error },
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::BadAddress(a) => write!(
                f,
                "NOTIFY_SOCKET={a:?}: expected an absolute path or an @abstract name"
            ),
            NotifyError::Io { address, error } => {
                write!(f, "cannot notify systemd at {address}: {error}")
            }
        }
    }
}

impl std::error::Error for NotifyError {}

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
    text: String,
}

impl Notifier {
    /// The notifier for `$NOTIFY_SOCKET`, or `None` if it is not set.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(address) if !address.is_empty() => Notifier::new(&address).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier for `address`: `/path` or `@name` (abstract).
    pub fn new(address: &str) -> Result<Notifier, NotifyError> {
        let io_error = |error| NotifyError::Io {
            address: address.to_string(),
            error,
        };
        let parsed = if let Some(name) = address.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes()).map_err(io_error)?
        } else if address.starts_with('/') {
            SocketAddr::from_pathname(address).map_err(io_error)?
        } else {
            return Err(NotifyError::BadAddress(address.to_string()));
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound().map_err(io_error)?,
            address: parsed,
            text: address.to_string(),
        })
    }

    /// Sends `state`: newline-separated `KEY=value` assignments.
    pub fn notify(&self, state: &str) -> Result<(), NotifyError> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.address)
            .map(|_| ())
            .map_err(|error| NotifyError::Io {
                address: self.text.clone(),
                error,
            })
    }

    /// `READY=1` with a status line: startup is finished.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// `STATUS=…`: shown by `systemctl status`.
    pub fn status(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&format!("STATUS={}", one_line(status)))
    }

    /// `WATCHDOG=1`: fltd's loop is alive.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.notify("WATCHDOG=1")
    }

    /// `RELOADING=1`: a SIGHUP reload began (send [`Notifier::ready`] when done).
    pub fn reloading(&self) -> Result<(), NotifyError> {
        self.notify("RELOADING=1")
    }

    /// `STOPPING=1`: shutdown began.
    pub fn stopping(&self) -> Result<(), NotifyError> {
        self.notify("STOPPING=1")
    }
}

/// A status value must not break the `KEY=value` lines.
fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC` (what `sd_watchdog_enabled(3)`
/// advises), if the watchdog is enabled for this process (`WATCHDOG_PID` unset or ours).
pub fn watchdog_interval(
    watchdog_usec: Option<&str>,
    watchdog_pid: Option<&str>,
    own_pid: u32,
) -> Option<Duration> {
    let usec: u64 = watchdog_usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(pid) = watchdog_pid
        && pid.trim().parse::<u32>().ok()? != own_pid
    {
        return None;
    }
    Some(Duration::from_micros(usec) / 2)
}

/// [`watchdog_interval`] for this process's environment.
pub fn watchdog_interval_from_env() -> Option<Duration> {
    watchdog_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_the_timeout_for_our_pid_only() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 5),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(Some("30000000"), Some("5"), 5),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_interval(Some("30000000"), Some("6"), 5), None);
        assert_eq!(watchdog_interval(Some("0"), None, 5), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 5), None);
        assert_eq!(watchdog_interval(None, Some("5"), 5), None);
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("flt-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let systemd = UnixDatagram::bind(&path).expect("bind");
        let notifier = Notifier::new(path.to_str().expect("utf-8 path")).expect("notifier");
        notifier.ready("serving\non two lines").expect("send");
        notifier.watchdog().expect("send");
        notifier.stopping().expect("send");
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = systemd.recv(&mut buf).expect("recv");
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(
            got,
            [
                "READY=1\nSTATUS=serving on two lines",
                "WATCHDOG=1",
                "STOPPING=1"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!("flt-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let systemd = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        let notifier = Notifier::new(&format!("@{name}")).expect("notifier");
        notifier.status("reloading").expect("send");
        let mut buf = [0u8; 64];
        let n = systemd.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STATUS=reloading");
    }

    #[test]
    fn a_relative_address_is_refused() {
        let err = Notifier::new("run/notify").expect_err("relative");
        assert!(err.to_string().starts_with("NOTIFY_SOCKET=\"run/notify\""));
    }
}
