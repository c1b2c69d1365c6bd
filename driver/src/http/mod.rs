//! The API's HTTP plumbing: listening sockets and a server that turns requests into
//! [`ApiRequest`]s on a channel. What a request means (routes, entities, the 404/405 rules) is
//! `flt_core::api`'s business; this module never looks at the path.
//!
//! - [`Listeners`]: the sockets. With systemd socket activation (`LISTEN_PID` = our pid,
//!   `LISTEN_FDS` = n) fltd serves on the passed descriptors 3 … 3+n−1; otherwise it binds the
//!   `listen` option's `unix:///path` (a stale socket file is replaced, the new one gets mode
//!   0660) and `tcp://host:port` addresses. Opened once, kept for the life of the process.
//! - [`HttpServer`]: serves on the listeners (see its docs for threads, the 1 MiB body limit,
//!   the `Server: fltd/<version>` header, and the 503 mode used until fltd is registered).
//!
//! The daemon's side:
//!
//! ```no_run
//! use flt_driver::http::{ApiResponse, HttpServer, ListenAddr, Listeners, ServerConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (listeners, _activated) = Listeners::open(&[ListenAddr::Unix("/run/flt.sock".into())])?;
//! let server = HttpServer::start(&listeners, &ServerConfig::new("0.1.0"))?;
//! let (tx, requests) = crossbeam_channel::unbounded();
//! server.set_handler(Some(tx)); // registered in etcd: stop answering 503
//! for request in requests.iter() {
//!     let answer = ApiResponse::error(404, "");
//!     request.respond(answer);
//! }
//! # Ok(()) }
//! ```

mod listen;
mod server;

pub use listen::{
    LISTEN_FDS_START, ListenAddr, ListenError, Listener, Listeners, TCP_IO_TIMEOUT,
    UNIX_SOCKET_MODE, passed_fd_count,
};
pub use server::{ApiRequest, ApiResponse, BODY_LIMIT, ETCD_UNAVAILABLE, HttpServer, ServerConfig};
