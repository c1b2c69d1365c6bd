//! The functional suite: flt on real clusters of test hosts (real systemd as PID 1, real etcd,
//! fltd installed from `examples/host/`), driven with fltctl inside the hosts as an operator
//! would. Scenarios follow fleet's functional tests (spec §9). Needs root and the tools of
//! `flt_tests::testhost`; fails with the reason if they are missing, unless
//! `FLT_SKIP_HOST_TESTS=1`.

use std::time::Duration;

use flt_tests::fltcluster::{FltCluster, FltClusterConfig};

/// TestUnitRunnable: a unit started with fltctl runs on one machine and is listed as such.
#[test]
fn unit_runnable() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(2));
    flt.write_file(
        0,
        "/root/units/hello.service",
        "[Service]\nExecStart=/bin/sleep 100000\n",
    );
    let out = flt.fltctl_in(0, "/root/units", &["start", "hello.service"]);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout
            .starts_with("Unit hello.service inactive\nUnit hello.service launched on "),
        "{out}"
    );
    let host = flt.wait_active_on_one("hello.service");
    let out = flt.fltctl(1, &["list-units", "--no-legend", "--full"]);
    assert_eq!(out.code, 0, "{out}");
    let expected = format!(
        "hello.service\t{}/{}\tactive\trunning\n",
        flt.host(host).machine_id(),
        flt.host(host).ip()
    );
    flt_tests::fltcluster::wait_for(
        "list-units shows it running",
        Duration::from_secs(10),
        || {
            let out = flt.fltctl(1, &["list-units", "--no-legend", "--full"]);
            if out.stdout.replace(char::is_whitespace, "")
                == expected.replace(char::is_whitespace, "")
            {
                Ok(())
            } else {
                Err(out.to_string())
            }
        },
    );
}
