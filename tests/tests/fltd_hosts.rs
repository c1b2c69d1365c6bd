//! fltd end to end on real test hosts: two hosts (real systemd as PID 1) and a real etcd, fltd
//! started in each by the shipped `examples/host/fltd.service` and `examples/host/flt.socket`, driven
//! through the API on `/var/run/flt.sock` inside a host.
//!
//! The fltd binary: this test runs `cargo build -p fltd` (the cargo that builds the test, same
//! profile and target dir) before booting the hosts, so it never runs a stale fltd; the hosts see
//! the target dir read-only at `/opt/flt/target`.
//!
//! Needs root and the tools listed in `flt_tests::testhost`; fails with the reason if they are
//! missing, unless `FLT_SKIP_HOST_TESTS=1`.

use std::time::{Duration, Instant};

use flt_tests::fltcluster::{api_json, wait_for};
use flt_tests::fltd_host::{build_fltd, exec, install_fltd};
use flt_tests::testhost::{Bind, Cluster, ClusterConfig, Host};

const AGENT_TTL_SECS: u64 = 3;
const UNIT: &str = "hello.service";

fn is_active(host: &Host) -> bool {
    host.exec(&["systemctl", "is-active", UNIT])
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "active")
}

fn start_timestamp(host: &Host) -> String {
    exec(
        host,
        &[
            "systemctl",
            "show",
            "-p",
            "ExecMainStartTimestampMonotonic",
            "--value",
            UNIT,
        ],
    )
}

fn set_state(host: &Host, state: &str) {
    let body = format!(r#"{{"desiredState":"{state}"}}"#);
    let (status, answer) = api_json(host, "PUT", &format!("/flt/v1/units/{UNIT}"), Some(&body))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 204, "PUT desiredState={state}: {answer}");
}

/// Which hosts run the unit right now.
fn running_on(cluster: &Cluster) -> Vec<usize> {
    cluster
        .hosts()
        .iter()
        .filter(|h| h.is_running() && is_active(h))
        .map(Host::index)
        .collect()
}

/// Two hosts running fltd (agent_ttl `agent_ttl_secs`), both registered.
fn cluster_with_fltd(agent_ttl_secs: u64) -> Cluster {
    let target = Bind::cargo_target_dir();
    let fltd = build_fltd(&target);
    let cluster = Cluster::start(ClusterConfig {
        binds: vec![target],
        ..ClusterConfig::new(2)
    })
    .unwrap_or_else(|e| panic!("starting a 2-host test cluster: {e}"));
    println!(
        "test cluster {}: booted in {:.2}s",
        cluster.id(),
        cluster.boot_time().as_secs_f64()
    );
    let etcd = cluster.etcd_endpoint();
    let started = Instant::now();
    for host in cluster.hosts() {
        install_fltd(
            host,
            &fltd,
            "test.conf",
            &[
                ("FLT_ETCD_SERVERS", etcd.clone()),
                ("FLT_AGENT_TTL", format!("{agent_ttl_secs}s")),
                ("FLT_VERBOSITY", "1".to_string()),
            ],
        );
    }

    // Both machines registered, seen through either host's API.
    let h1 = cluster.host(0);
    let machines = wait_for("both machines in the API", Duration::from_secs(30), || {
        let (status, body) = api_json(h1, "GET", "/flt/v1/machines", None)?;
        let found = cluster
            .hosts()
            .iter()
            .all(|h| body.contains(h.machine_id()));
        if status == 200 && found {
            Ok(body)
        } else {
            Err(format!("{status} {body}"))
        }
    });
    println!(
        "both machines registered {:.2}s after starting fltd: {machines}",
        started.elapsed().as_secs_f64()
    );
    for host in cluster.hosts() {
        // Type=notify: `active` only after READY=1, i.e. once registered.
        wait_for("fltd.service active", Duration::from_secs(10), || {
            let state = exec(host, &["systemctl", "is-active", "fltd.service"]);
            if state == "active" {
                Ok(())
            } else {
                Err(state)
            }
        });
        let status = exec(
            host,
            &["systemctl", "show", "-p", "StatusText", "--value", "fltd"],
        );
        assert!(
            status.contains("agent:"),
            "{}: StatusText {status}",
            host.name()
        );
    }
    cluster
}

/// PUTs the test unit as launched and returns the host it became active on.
fn launch(cluster: &Cluster) -> usize {
    let h1 = cluster.host(0);
    // Launch: runs on exactly one host.
    let body = r#"{"desiredState":"launched","options":[{"section":"Service","name":"ExecStart","value":"/bin/sleep 100000"}]}"#;
    let (status, answer) = api_json(h1, "PUT", &format!("/flt/v1/units/{UNIT}"), Some(body))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 201, "PUT new unit: {answer}");
    let launched = Instant::now();
    let owner = wait_for(
        "the unit active on one host",
        Duration::from_secs(30),
        || match running_on(cluster).as_slice() {
            [one] => Ok(*one),
            other => Err(format!("active on {other:?}")),
        },
    );
    println!(
        "{UNIT} active on h{} {:.2}s after the PUT",
        owner + 1,
        launched.elapsed().as_secs_f64()
    );
    owner
}

#[test]
fn fltd_schedules_survives_its_restart_and_moves_units_off_a_dead_host() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let cluster = cluster_with_fltd(AGENT_TTL_SECS);
    let h1 = cluster.host(0);
    let owner = launch(&cluster);
    let (status, state) = api_json(h1, "GET", &format!("/flt/v1/units/{UNIT}"), None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200);
    assert!(
        state.contains(cluster.host(owner).machine_id()),
        "unit not reported on h{}: {state}",
        owner + 1
    );

    // Stop: inactive, still loaded there.
    set_state(h1, "loaded");
    wait_for(
        "the unit inactive",
        Duration::from_secs(20),
        || match running_on(&cluster).as_slice() {
            [] => Ok(()),
            other => Err(format!("active on {other:?}")),
        },
    );
    let owner_host = cluster.host(owner);
    let load = exec(
        owner_host,
        &["systemctl", "show", "-p", "LoadState", "--value", UNIT],
    );
    assert_eq!(load, "loaded");

    // Launch again, then restart fltd on its host: the unit keeps running, never restarted.
    set_state(h1, "launched");
    let owner = wait_for(
        "the unit active again",
        Duration::from_secs(20),
        || match running_on(&cluster).as_slice() {
            [one] => Ok(*one),
            other => Err(format!("active on {other:?}")),
        },
    );
    let owner_host = cluster.host(owner);
    let before = start_timestamp(owner_host);
    let restart = Instant::now();
    exec(owner_host, &["systemctl", "restart", "fltd.service"]);
    wait_for("fltd registered again", Duration::from_secs(30), || {
        let state = exec(owner_host, &["systemctl", "is-active", "fltd.service"]);
        if state == "active" {
            Ok(())
        } else {
            Err(state)
        }
    });
    println!(
        "fltd on h{} restarted and registered in {:.2}s",
        owner + 1,
        restart.elapsed().as_secs_f64()
    );
    // Longer than a presence TTL and an agent reconcile: time enough for a wrong move.
    std::thread::sleep(Duration::from_secs(AGENT_TTL_SECS + 6));
    assert_eq!(
        running_on(&cluster),
        vec![owner],
        "the unit moved or stopped"
    );
    assert_eq!(
        start_timestamp(owner_host),
        before,
        "the unit was restarted by fltd's restart"
    );
    // SIGHUP: the core and drivers are rebuilt, the API socket stays, the unit is left alone.
    exec(owner_host, &["systemctl", "reload", "fltd.service"]);
    wait_for("the API after SIGHUP", Duration::from_secs(30), || {
        let logs = owner_host
            .logs(&["-u", "fltd"])
            .map_err(|e| e.to_string())?;
        let (status, body) = api_json(owner_host, "GET", "/flt/v1/machines", None)?;
        if logs.contains("Reloading configuration") && status == 200 {
            Ok(())
        } else {
            Err(format!("{status} {body}"))
        }
    });
    std::thread::sleep(Duration::from_secs(AGENT_TTL_SECS + 3));
    assert_eq!(
        running_on(&cluster),
        vec![owner],
        "the unit moved after SIGHUP"
    );
    assert_eq!(start_timestamp(owner_host), before, "restarted by SIGHUP");
    let logs = owner_host
        .logs(&["-u", "fltd"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        logs.contains("AgentReconciler completed task: type="),
        "no AgentReconciler log line on h{}",
        owner + 1
    );

    // Kill the unit's host: the other host runs it within agent_ttl plus a few seconds.
    let other = 1 - owner;
    // A dead leader's lease must expire too (5 × engine_reconcile_interval = 10 s).
    let leader = exec(
        owner_host,
        &["systemctl", "show", "-p", "StatusText", "--value", "fltd"],
    )
    .contains("engine leader");
    let killed = Instant::now();
    owner_host.kill().unwrap_or_else(|e| panic!("{e}"));
    wait_for(
        "the unit active on the other host",
        Duration::from_secs(AGENT_TTL_SECS + 30),
        || match running_on(&cluster).as_slice() {
            [one] if *one == other => Ok(()),
            list => Err(format!("active on {list:?}")),
        },
    );
    println!(
        "failover: {UNIT} active on h{} {:.2}s after h{} was killed (agent_ttl {AGENT_TTL_SECS}s; \
         the killed host held the engine lease: {leader})",
        other + 1,
        killed.elapsed().as_secs_f64(),
        owner + 1
    );
    let survivor = cluster.host(other);
    let logs = survivor
        .logs(&["-u", "fltd"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        logs.contains("Scheduled Unit(hello.service) to Machine("),
        "{logs}"
    );

    // Destroy: stopped and its file gone.
    let (status, answer) = api_json(survivor, "DELETE", &format!("/flt/v1/units/{UNIT}"), None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 204, "DELETE: {answer}");
    wait_for("the unit gone", Duration::from_secs(20), || {
        let out = survivor
            .exec(&["test", "-e", &format!("/run/flt/units/{UNIT}")])
            .map_err(|e| e.to_string())?;
        if !is_active(survivor) && !out.status.success() {
            Ok(())
        } else {
            Err("still active or file present".to_string())
        }
    });
    let (status, metrics) =
        api_json(survivor, "GET", "/metrics", None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200);
    assert!(
        metrics.contains("flt_engine_reconcile_count_total "),
        "{metrics}"
    );
}

#[test]
fn a_host_shutting_down_deletes_its_presence_so_its_units_move_at_once() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    // A TTL far longer than the wait below: only the deletion at shutdown explains a move.
    let ttl = 60;
    let cluster = cluster_with_fltd(ttl);
    let owner = launch(&cluster);
    let owner_host = cluster.host(owner);
    let presence = format!(
        "/v2/keys/_coreos.com/flt/machines/{}/object",
        owner_host.machine_id()
    );
    let record = cluster
        .etcd()
        .get(&presence)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(record.contains("\"value\""), "presence before: {record}");
    let stopped = Instant::now();
    owner_host.stop().unwrap_or_else(|e| panic!("{e}"));
    println!(
        "h{} powered off in {:.2}s",
        owner + 1,
        stopped.elapsed().as_secs_f64()
    );
    let record = cluster
        .etcd()
        .get(&presence)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        record.contains("\"errorCode\":100"),
        "presence still there after poweroff: {record}"
    );
    let other = 1 - owner;
    let moved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            "the unit active on the other host",
            // Still far below the 60 s TTL; once in ~7 runs under full-workspace load the move
            // took over 20 s (cause not yet found; fltd's logs are printed on failure).
            Duration::from_secs(40),
            || match running_on(&cluster).as_slice() {
                [one] if *one == other => Ok(()),
                list => Err(format!("active on {list:?}")),
            },
        )
    }));
    if let Err(panic) = moved {
        for host in cluster.hosts() {
            let logs = host
                .logs(&["-u", "fltd", "-o", "short-precise"])
                .unwrap_or_default();
            println!("--- fltd on {}:\n{logs}", host.name());
        }
        std::panic::resume_unwind(panic);
    }
    println!(
        "host shutdown: {UNIT} active on h{} {:.2}s after h{}'s poweroff began (agent_ttl {ttl}s)",
        other + 1,
        stopped.elapsed().as_secs_f64(),
        owner + 1
    );
    let logs = owner_host
        .logs(&["-u", "fltd"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(logs.contains("The host is shutting down"), "{logs}");
}
