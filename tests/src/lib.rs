//! flt-tests: test support (real etcd, real systemd test hosts), the cluster simulator, and the
//! integration tests in `tests/tests/`.

pub mod etcd;
pub mod fltcluster;
pub mod fltd_host;
pub mod sim;
pub mod testhost;
