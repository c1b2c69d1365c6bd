//! flt-driver: thin, blocking, thread-based drivers that carry out flt-core's commands against the
//! real world (etcd over its HTTP v2 API, systemd over D-Bus) and feed the outcomes back as inputs.
//! No async runtime: one thread per long-lived stream, `crossbeam-channel` between them.

pub mod etcd;
pub mod host;
pub mod http;
pub mod logging;
pub mod notify;
pub mod signals;
pub mod systemd;
