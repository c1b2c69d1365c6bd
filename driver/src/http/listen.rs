//! The API's listening sockets: adopted from systemd socket activation, or bound from the
//! `listen` option. They are opened once and live as long as fltd, so a SIGHUP rebuild keeps them.

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, SockType, SockaddrLike, SockaddrStorage, setsockopt, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The first file descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// How long a TCP API connection may stall (see [`Listener::set_tcp_io_timeout`]).
pub const TCP_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Mode of a unix socket fltd creates itself: owner and group may use the API.
pub const UNIX_SOCKET_MODE: u32 = 0o660;

/// Where to listen when fltd is not socket-activated (the `listen` option).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// `unix:///path`: a unix stream socket at an absolute path.
    Unix(PathBuf),
    /// `tcp://host:port`, as `host:port` (an IPv6 host is bracketed).
    Tcp(String),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(path) => write!(f, "unix://{}", path.display()),
            ListenAddr::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// A listener could not be opened. Each variant names the offending input.
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenError {
    /// `LISTEN_PID` or `LISTEN_FDS` is not a number.
    BadEnvironment { var: &'static str, value: String },
    /// The sockets systemd passed were already taken by an earlier call.
    AlreadyAdopted,
    /// A passed file descriptor is not a listening stream socket fltd can serve on.
    UnusableFd { fd: RawFd, reason: String },
    /// A `unix://` path exists and is not a stale socket (a live server, or not a socket).
    PathInUse { path: PathBuf, reason: String },
    /// Creating or binding a listener failed.
    Bind { addr: String, error: io::Error },
}

impl fmt::Display for ListenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenError::BadEnvironment { var, value } => {
                write!(f, "invalid {var}={value:?}: expected a number")
            }
            ListenError::AlreadyAdopted => {
                f.write_str("the sockets passed by systemd (LISTEN_FDS) were already adopted")
            }
            ListenError::UnusableFd { fd, reason } => {
                write!(f, "socket-activation file descriptor {fd}: {reason}")
            }
            ListenError::PathInUse { path, reason } => {
                write!(f, "cannot listen on {}: {reason}", path.display())
            }
            ListenError::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
        }
    }
}

impl std::error::Error for ListenError {}

/// One listening socket, with the tiny_http server accepting on it.
///
/// tiny_http's server is created with the socket and lives as long as it: dropping one closes
/// its accept loop with a connection to itself and unlinks a unix socket's path, so it cannot be
/// stopped and restarted on the same socket. [`super::HttpServer`]s come and go on top of it;
/// connections accepted in between wait in its queue.
#[derive(Debug)]
pub struct Listener {
    served: Arc<Served>,
}

/// A socket and its current tiny_http server, shared with the server's accept threads.
pub(crate) struct Served {
    socket: Socket,
    /// Passed by systemd: its unix socket path must survive fltd.
    passed: bool,
    server: Mutex<Option<Arc<tiny_http::Server>>>,
}

impl fmt::Debug for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Served")
            .field("socket", &self.socket)
            .field("passed", &self.passed)
            .finish()
    }
}

#[derive(Debug)]
enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// `tcp://<addr>` or `unix://<path>`: where clients connect.
    pub fn describe(&self) -> String {
        self.served.describe()
    }

    /// The TCP address, for a TCP listener (tests bind port 0 and ask).
    pub fn tcp_addr(&self) -> Option<std::net::SocketAddr> {
        match &self.served.socket {
            Socket::Tcp(l) => l.local_addr().ok(),
            Socket::Unix(_) => None,
        }
    }

    /// Makes reads and writes on TCP connections accepted from now on fail after `timeout`
    /// without progress, so a client that stops mid-request cannot hold a worker (or an idle
    /// keep-alive connection a thread) forever. Linux copies a TCP listener's timeouts into each
    /// accepted socket; unix sockets do not inherit them, so for them this does nothing (their
    /// clients are local and in the socket's group).
    pub fn set_tcp_io_timeout(&self, timeout: Duration) -> io::Result<()> {
        let Socket::Tcp(listener) = &self.served.socket else {
            return Ok(());
        };
        let tv = TimeVal::microseconds(i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX));
        setsockopt(listener, sockopt::ReceiveTimeout, &tv).map_err(io::Error::from)?;
        setsockopt(listener, sockopt::SendTimeout, &tv).map_err(io::Error::from)
    }

    pub(crate) fn served(&self) -> Arc<Served> {
        Arc::clone(&self.served)
    }

    fn new(socket: Socket, passed: bool) -> io::Result<Listener> {
        let server = Served::start_server(&socket)?;
        Ok(Listener {
            served: Arc::new(Served {
                socket,
                passed,
                server: Mutex::new(Some(server)),
            }),
        })
    }
}

impl Served {
    pub(crate) fn describe(&self) -> String {
        match &self.socket {
            Socket::Tcp(l) => match l.local_addr() {
                Ok(addr) => format!("tcp://{addr}"),
                Err(e) => format!("tcp://<unknown: {e}>"),
            },
            Socket::Unix(l) => match l.local_addr() {
                Ok(addr) => match addr.as_pathname() {
                    Some(path) => format!("unix://{}", path.display()),
                    None => "unix://<unnamed>".to_string(),
                },
                Err(e) => format!("unix://<unknown: {e}>"),
            },
        }
    }

    /// The tiny_http server accepting on this socket now.
    pub(crate) fn server(&self) -> Option<Arc<tiny_http::Server>> {
        self.server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces `dead`, a server whose accept loop ended (tiny_http ends it on any accept
    /// error, even a transient one), with a new server on the same socket. Returns the current
    /// server: the new one, or one that already replaced `dead`.
    pub(crate) fn revive(
        &self,
        dead: &Arc<tiny_http::Server>,
    ) -> io::Result<Arc<tiny_http::Server>> {
        let mut current = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(server) = current.as_ref()
            && !Arc::ptr_eq(server, dead)
        {
            return Ok(Arc::clone(server));
        }
        let fresh = Served::start_server(&self.socket)?;
        // Never dropped: its Drop would unlink a unix socket's path. It holds no socket of its
        // own any more, only its queue (drained by the caller until its connections end).
        std::mem::forget(current.replace(Arc::clone(&fresh)));
        Ok(fresh)
    }

    fn start_server(socket: &Socket) -> io::Result<Arc<tiny_http::Server>> {
        let clone: tiny_http::Listener = match socket {
            Socket::Tcp(l) => l.try_clone()?.into(),
            Socket::Unix(l) => l.try_clone()?.into(),
        };
        let server = tiny_http::Server::from_listener(clone, None).map_err(io::Error::other)?;
        Ok(Arc::new(server))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.passed && matches!(self.socket, Socket::Unix(_)) {
            // Dropping tiny_http's server would unlink systemd's socket path; the process is
            // ending (listeners live as long as fltd), so leaving its accept thread costs nothing.
            let server = self
                .server
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            std::mem::forget(server);
        }
    }
}

/// The API's listeners, in the order they were passed or configured.
#[derive(Debug, Default)]
pub struct Listeners {
    listeners: Vec<Listener>,
}

static SYSTEMD_FDS_ADOPTED: AtomicBool = AtomicBool::new(false);

impl Listeners {
    /// Socket activation if systemd passed sockets to this process (`LISTEN_PID` is ours and
    /// `LISTEN_FDS` > 0), else `addrs` bound by fltd. Returns whether the sockets came from
    /// systemd.
    pub fn open(addrs: &[ListenAddr]) -> Result<(Listeners, bool), ListenError> {
        match Listeners::from_systemd()? {
            Some(listeners) => Ok((listeners, true)),
            None => Ok((Listeners::bind(addrs)?, false)),
        }
    }

    /// The sockets systemd passed (fds 3, 4, …), or `None` if it passed none to this process.
    /// May succeed once per process: the descriptors then belong to the returned listeners.
    pub fn from_systemd() -> Result<Option<Listeners>, ListenError> {
        let pid = std::env::var("LISTEN_PID").ok();
        let fds = std::env::var("LISTEN_FDS").ok();
        let count = passed_fd_count(pid.as_deref(), fds.as_deref(), std::process::id())?;
        if count == 0 {
            return Ok(None);
        }
        if SYSTEMD_FDS_ADOPTED.swap(true, Ordering::SeqCst) {
            return Err(ListenError::AlreadyAdopted);
        }
        let fds = take_passed_fds(LISTEN_FDS_START, count)?;
        let listeners = fds
            .into_iter()
            .map(listener_from_fd)
            .collect::<Result<Vec<_>, _>>()?;
        let listeners = Listeners { listeners };
        listeners.set_default_timeouts()?;
        Ok(Some(listeners))
    }

    /// Binds every address. A `unix://` path holding a stale socket (nobody accepting) is
    /// replaced; the new socket gets mode 0660. A path with a live server, or that is not a
    /// socket, is an error.
    pub fn bind(addrs: &[ListenAddr]) -> Result<Listeners, ListenError> {
        let listeners = addrs
            .iter()
            .map(|addr| match addr {
                ListenAddr::Unix(path) => bind_unix(path),
                ListenAddr::Tcp(hostport) => TcpListener::bind(hostport.as_str())
                    .and_then(|l| Listener::new(Socket::Tcp(l), false))
                    .map_err(|error| ListenError::Bind {
                        addr: addr.to_string(),
                        error,
                    }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let listeners = Listeners { listeners };
        listeners.set_default_timeouts()?;
        Ok(listeners)
    }

    fn set_default_timeouts(&self) -> Result<(), ListenError> {
        for listener in &self.listeners {
            listener
                .set_tcp_io_timeout(TCP_IO_TIMEOUT)
                .map_err(|error| ListenError::Bind {
                    addr: listener.describe(),
                    error,
                })?;
        }
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Listener> {
        self.listeners.iter()
    }

    pub fn len(&self) -> usize {
        self.listeners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }
}

/// `sd_listen_fds`' rule: the passed sockets are ours only if `LISTEN_PID` is our pid; unset
/// variables mean none were passed.
pub fn passed_fd_count(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    own_pid: u32,
) -> Result<usize, ListenError> {
    let (Some(pid), Some(fds)) = (listen_pid, listen_fds) else {
        return Ok(0);
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| ListenError::BadEnvironment {
            var: "LISTEN_PID",
            value: pid.to_string(),
        })?;
    if pid != own_pid {
        return Ok(0);
    }
    fds.trim().parse().map_err(|_| ListenError::BadEnvironment {
        var: "LISTEN_FDS",
        value: fds.to_string(),
    })
}

/// Takes ownership of the `count` descriptors from `first` on. Each must be open.
///
/// Only two callers: [`Listeners::from_systemd`] (once per process, for systemd's fds) and
/// unit tests (fds they released with `into_raw_fd`).
#[allow(unsafe_code)]
fn take_passed_fds(first: RawFd, count: usize) -> Result<Vec<OwnedFd>, ListenError> {
    use std::os::fd::{BorrowedFd, FromRawFd};
    let mut owned = Vec::with_capacity(count);
    for offset in 0..count {
        let fd = RawFd::try_from(offset)
            .ok()
            .and_then(|o| first.checked_add(o))
            .ok_or_else(|| ListenError::UnusableFd {
                fd: first,
                reason: format!("LISTEN_FDS={count} is out of range"),
            })?;
        // SAFETY: the LISTEN_FDS contract (sd_listen_fds(3)): systemd hands this process
        // (LISTEN_PID) the open descriptors fd 3 .. 3+LISTEN_FDS, and nothing else in fltd
        // opens or owns them: the caller takes them once per process. Borrowing only to ask
        // whether the descriptor is open; F_GETFD has no effect.
        let open = fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD).is_ok();
        if !open {
            return Err(ListenError::UnusableFd {
                fd,
                reason: "not an open file descriptor".to_string(),
            });
        }
        // SAFETY: as above, the descriptor is open and owned by no one else in this process.
        owned.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Ok(owned)
}

/// Checks that `fd` is a listening stream socket (TCP or a named unix socket) and wraps it.
fn listener_from_fd(fd: OwnedFd) -> Result<Listener, ListenError> {
    let raw = fd.as_raw_fd();
    let unusable = |reason: String| ListenError::UnusableFd { fd: raw, reason };
    // systemd passes the sockets without close-on-exec; fltd's children must not inherit them.
    fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|e| unusable(format!("cannot set close-on-exec: {e}")))?;
    let kind = nix::sys::socket::getsockopt(&fd, sockopt::SockType)
        .map_err(|e| unusable(format!("not a socket: {e}")))?;
    if kind != SockType::Stream {
        return Err(unusable(format!("a {kind:?} socket, not a stream socket")));
    }
    let listening = nix::sys::socket::getsockopt(&fd, sockopt::AcceptConn)
        .map_err(|e| unusable(format!("cannot query the socket: {e}")))?;
    if !listening {
        return Err(unusable("not a listening socket".to_string()));
    }
    let addr: SockaddrStorage = nix::sys::socket::getsockname(raw)
        .map_err(|e| unusable(format!("cannot read the socket address: {e}")))?;
    let socket = match addr.family() {
        Some(AddressFamily::Inet | AddressFamily::Inet6) => Socket::Tcp(TcpListener::from(fd)),
        Some(AddressFamily::Unix) => {
            let listener = UnixListener::from(fd);
            // tiny_http unblocks its accept loop by connecting to the socket's path.
            let named = listener
                .local_addr()
                .is_ok_and(|a| a.as_pathname().is_some());
            if !named {
                return Err(unusable(
                    "an abstract or unnamed unix socket (only path sockets are served)".into(),
                ));
            }
            Socket::Unix(listener)
        }
        other => return Err(unusable(format!("unsupported address family {other:?}"))),
    };
    Listener::new(socket, true).map_err(|e| unusable(format!("cannot serve on it: {e}")))
}

fn bind_unix(path: &Path) -> Result<Listener, ListenError> {
    let addr = format!("unix://{}", path.display());
    let in_use = |reason: String| ListenError::PathInUse {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A socket file that refuses connections is left over from a process that is gone.
            if UnixStream::connect(path).is_ok() {
                return Err(in_use("another server is accepting on it".to_string()));
            }
            std::fs::remove_file(path)
                .map_err(|e| in_use(format!("cannot remove the stale socket: {e}")))?;
        }
        Ok(_) => return Err(in_use("the path exists and is not a socket".to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(in_use(e.to_string())),
    }
    let bind_error = |error| ListenError::Bind {
        addr: addr.clone(),
        error,
    };
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    // Dropping the listener (tiny_http's server) removes the socket file again.
    let listener = Listener::new(Socket::Unix(listener), false).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(UNIX_SOCKET_MODE))
        .map_err(bind_error)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn passed_fds_are_counted_only_for_our_pid() {
        assert_eq!(passed_fd_count(None, None, 7).ok(), Some(0));
        assert_eq!(passed_fd_count(Some("7"), None, 7).ok(), Some(0));
        assert_eq!(passed_fd_count(Some("8"), Some("2"), 7).ok(), Some(0));
        assert_eq!(passed_fd_count(Some("7"), Some("2"), 7).ok(), Some(2));
        let err = passed_fd_count(Some("7"), Some("two"), 7).expect_err("not a number");
        assert_eq!(
            err.to_string(),
            "invalid LISTEN_FDS=\"two\": expected a number"
        );
        assert!(passed_fd_count(Some("x"), Some("1"), 7).is_err());
    }

    #[test]
    fn adopts_a_passed_tcp_listener() {
        let original = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = original.local_addr().expect("addr");
        let fd = original.try_clone().expect("dup").into_raw_fd();
        let mut fds = take_passed_fds(fd, 1).expect("open fd");
        let listener = listener_from_fd(fds.remove(0)).expect("a listening TCP socket");
        assert_eq!(listener.tcp_addr(), Some(addr));
        assert_eq!(listener.describe(), format!("tcp://{addr}"));
        // The adopted descriptor is close-on-exec even though systemd passes it without.
        let Socket::Tcp(l) = &listener.served.socket else {
            panic!("not TCP")
        };
        let flags = fcntl(l.as_fd(), FcntlArg::F_GETFD).expect("flags");
        assert_ne!(flags & FdFlag::FD_CLOEXEC.bits(), 0);
    }

    #[test]
    fn adopts_a_passed_unix_listener_and_rejects_other_sockets() {
        let dir = std::env::temp_dir().join(format!("flt-listen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("api.sock");
        let _ = std::fs::remove_file(&path);
        let unix = UnixListener::bind(&path).expect("bind");
        let mut fds =
            take_passed_fds(unix.try_clone().expect("dup").into_raw_fd(), 1).expect("open fd");
        let listener = listener_from_fd(fds.remove(0)).expect("a listening unix socket");
        assert_eq!(listener.describe(), format!("unix://{}", path.display()));

        // A connected (not listening) stream socket is refused.
        let (a, _b) = UnixStream::pair().expect("pair");
        let mut fds = take_passed_fds(a.into_raw_fd(), 1).expect("open fd");
        let err = listener_from_fd(fds.remove(0)).expect_err("not listening");
        assert!(err.to_string().contains("not a listening socket"), "{err}");

        // A datagram socket is refused.
        let d = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let mut fds = take_passed_fds(d.into_raw_fd(), 1).expect("open fd");
        let err = listener_from_fd(fds.remove(0)).expect_err("datagram");
        assert!(err.to_string().contains("not a stream socket"), "{err}");
        drop(unix);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
