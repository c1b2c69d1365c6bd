//! Integration tests of the etcd v2 driver against a real etcd (see `flt_tests::etcd`).

use flt_tests::etcd::EtcdServer;
use std::time::Instant;

#[test]
fn smoke() {
    let t = Instant::now();
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    eprintln!("started in {:?}", t.elapsed());
    let _ = etcd.client();
}
