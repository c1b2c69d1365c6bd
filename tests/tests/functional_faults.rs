//! The functional suite, dynamic-cluster and fault half: fleet's functional tests about machines
//! joining, leaving, rebooting, shutting down and losing etcd (spec §9), on real clusters of test
//! hosts (real systemd as PID 1, real etcd, fltd from `examples/host/`) driven with fltctl inside
//! the hosts. Faults are real: hosts are killed or powered off, fltd is stopped with SIGTERM,
//! etcd is cut off by packet filters or restarted.
//!
//! Where flt deliberately differs from fleet v1.0.0 (spec §3.9, "flt decision"), the scenarios
//! check flt's behaviour: SIGTERM does not purge units and leaves the presence to its TTL (a
//! restart within `agent_ttl` adopts everything); a host shutdown deletes the presence at once;
//! losing etcd never stops a unit.
//!
//! Every check looks at both fltctl's view and systemd's own (`systemctl` inside each host); a
//! unit's `InvocationID` tells whether systemd stopped or restarted it. Needs root and the tools
//! of `flt_tests::testhost`; fails with the reason if they are missing, unless
//! `FLT_SKIP_HOST_TESTS=1`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use flt_tests::fltcluster::{FltCluster, FltClusterConfig, hosts_list, wait_for};

/// Where the scenarios write unit files inside a host (fltctl runs there).
const UNITS: &str = "/root/units";

/// The bound for anything the cluster must do after a fault: `agent_ttl` (3 s), an engine lease
/// handover (5 × 2 s), a reconcile, with room for a loaded 2-core machine.
const CONVERGE: Duration = Duration::from_secs(45);

/// flt's keys in etcd (v2 API, default prefix).
const KEYS: &str = "/v2/keys/_coreos.com/flt";

/// unit → host index → systemd `InvocationID` of the unit's current run there (active only).
type Snapshot = BTreeMap<String, BTreeMap<usize, String>>;

fn skip() -> bool {
    !flt_tests::testhost::require_hosts()
}

/// A service that runs until stopped, with `[X-Fleet]` lines if any.
fn forever_unit(x_fleet: &str) -> String {
    let mut text = String::from("[Service]\nExecStart=/bin/sleep 100000\n");
    if !x_fleet.is_empty() {
        text.push_str("\n[X-Fleet]\n");
        text.push_str(x_fleet);
        text.push('\n');
    }
    text
}

fn write_unit(flt: &FltCluster, index: usize, name: &str, x_fleet: &str) {
    flt.write_file(index, &format!("{UNITS}/{name}"), &forever_unit(x_fleet));
}

/// fltctl in host `index` (in [`UNITS`]); panics unless it exits 0. Returns stdout.
fn fltctl_ok(flt: &FltCluster, index: usize, args: &[&str]) -> String {
    let out = flt.fltctl_in(index, UNITS, args);
    assert_eq!(
        out.code,
        0,
        "h{}: fltctl {}: {out}",
        index + 1,
        args.join(" ")
    );
    out.stdout
}

/// `systemctl args` in host `index`; panics unless it exits 0.
fn systemctl(flt: &FltCluster, index: usize, args: &[&str]) {
    let mut all = vec!["systemctl"];
    all.extend_from_slice(args);
    let out = flt.exec(index, &all);
    assert_eq!(out.code, 0, "h{}: {}: {out}", index + 1, all.join(" "));
}

/// `systemctl show -p <property> --value unit` in host `index`.
fn unit_property(flt: &FltCluster, index: usize, unit: &str, property: &str) -> String {
    let out = flt.exec(
        index,
        &["systemctl", "show", "-p", property, "--value", unit],
    );
    out.stdout.trim().to_string()
}

/// The machine IDs fltctl lists through host `index`'s API, sorted.
fn listed_machines(flt: &FltCluster, index: usize) -> Result<Vec<String>, String> {
    let args = [
        "list-machines",
        "--no-legend",
        "--full",
        "--fields",
        "machine",
    ];
    let out = flt.fltctl(index, &args);
    if out.code != 0 {
        return Err(out.to_string());
    }
    let mut ids: Vec<String> = out.stdout.split_whitespace().map(str::to_string).collect();
    ids.sort();
    Ok(ids)
}

/// Waits until fltctl in host `via` lists exactly the machines of `hosts`.
fn wait_machines_on(flt: &FltCluster, via: usize, hosts: &[usize], what: &str) {
    let mut expected: Vec<String> = hosts
        .iter()
        .map(|&i| flt.host(i).machine_id().to_string())
        .collect();
    expected.sort();
    wait_for(
        &format!(
            "fltctl list-machines on h{} to show {} ({what})",
            via + 1,
            hosts_list(hosts)
        ),
        CONVERGE,
        || match listed_machines(flt, via)? {
            ids if ids == expected => Ok(()),
            ids => Err(format!("listed {ids:?}, expected {expected:?}")),
        },
    );
}

/// The `active` rows of fltctl list-units through host `index`: (unit, host index), sorted.
fn listed_active(flt: &FltCluster, index: usize) -> Result<Vec<(String, usize)>, String> {
    let args = [
        "list-units",
        "--no-legend",
        "--full",
        "--fields",
        "unit,active,machine",
    ];
    let out = flt.fltctl(index, &args);
    if out.code != 0 {
        return Err(out.to_string());
    }
    let mut rows = Vec::new();
    for line in out.stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [unit, active, machine] = fields[..] else {
            return Err(format!("unexpected row {line:?} in\n{}", out.stdout));
        };
        if active != "active" {
            continue;
        }
        let id = machine.split('/').next().unwrap_or(machine);
        let host = (0..flt.hosts())
            .find(|&i| flt.host(i).machine_id() == id)
            .ok_or_else(|| format!("row {line:?} names an unknown machine"))?;
        rows.push((unit.to_string(), host));
    }
    rows.sort();
    Ok(rows)
}

/// Waits until fltctl list-units through host `via` shows exactly `snapshot`'s units active
/// where systemd runs them.
fn wait_listed(flt: &FltCluster, via: usize, snapshot: &Snapshot) {
    let expected: Vec<(String, usize)> = snapshot
        .iter()
        .flat_map(|(unit, hosts)| hosts.keys().map(move |&h| (unit.clone(), h)))
        .collect();
    wait_for(
        &format!(
            "fltctl list-units on h{} to show {}",
            via + 1,
            describe(snapshot)
        ),
        CONVERGE,
        || match listed_active(flt, via)? {
            rows if rows == expected => Ok(()),
            rows => Err(format!("active rows {rows:?}")),
        },
    );
}

/// systemd's view: which of `units` are active on which host, with their invocation IDs. One
/// `systemctl show` per running host.
fn snapshot(flt: &FltCluster, units: &[&str]) -> Snapshot {
    let mut all: Snapshot = units
        .iter()
        .map(|u| (u.to_string(), BTreeMap::new()))
        .collect();
    for index in 0..flt.hosts() {
        if !flt.host(index).is_running() {
            continue;
        }
        let mut args = vec!["systemctl", "show", "-p", "Id,ActiveState,InvocationID"];
        args.extend_from_slice(units);
        let Ok(out) = flt.host(index).exec(&args) else {
            continue;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        for block in text.split("\n\n") {
            let props: BTreeMap<&str, &str> = block
                .lines()
                .filter_map(|line| line.split_once('='))
                .collect();
            if props.get("ActiveState") == Some(&"active")
                && let (Some(id), Some(invocation)) = (props.get("Id"), props.get("InvocationID"))
                && let Some(hosts) = all.get_mut(*id)
            {
                hosts.insert(index, invocation.to_string());
            }
        }
    }
    all
}

/// "conflict.0.service on h1, global.service on h1, h2" for messages.
fn describe(snapshot: &Snapshot) -> String {
    snapshot
        .iter()
        .map(|(unit, hosts)| {
            let hosts: Vec<usize> = hosts.keys().copied().collect();
            format!("{unit} on {}", hosts_list(&hosts))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Polls systemd's view of `units` until `done` holds; panics at once if `invariant` fails
/// (something stopped or restarted that must not), or after `timeout`.
fn watch(
    flt: &FltCluster,
    units: &[&str],
    what: &str,
    timeout: Duration,
    invariant: impl Fn(&Snapshot) -> Result<(), String>,
    done: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    wait_for(what, timeout, || {
        let now = snapshot(flt, units);
        if let Err(broken) = invariant(&now) {
            panic!(
                "while waiting for {what}: {broken}; now: {}",
                describe(&now)
            );
        }
        if done(&now) {
            Ok(now)
        } else {
            Err(describe(&now))
        }
    })
}

/// Every (unit, host) run of `before` goes on, same invocation (was never stopped or
/// restarted), except those on `except` hosts.
fn kept(before: &Snapshot, now: &Snapshot, except: &[usize]) -> Result<(), String> {
    for (unit, hosts) in before {
        for (host, invocation) in hosts {
            if except.contains(host) {
                continue;
            }
            match now.get(unit).and_then(|h| h.get(host)) {
                Some(current) if current == invocation => {}
                Some(_) => return Err(format!("{unit} was restarted on h{}", host + 1)),
                None => return Err(format!("{unit} stopped on h{}", host + 1)),
            }
        }
    }
    Ok(())
}

/// Watches for `duration` that nothing changes: every run of `before` goes on and nothing new
/// starts.
fn hold(flt: &FltCluster, units: &[&str], before: &Snapshot, duration: Duration, what: &str) {
    let start = Instant::now();
    while start.elapsed() < duration {
        let now = snapshot(flt, units);
        assert_eq!(
            &now,
            before,
            "{what}: changed after {:.1}s: was {}; now {}",
            start.elapsed().as_secs_f64(),
            describe(before),
            describe(&now)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The single host a unit runs on in `snapshot`.
fn only_host(snapshot: &Snapshot, unit: &str) -> usize {
    match snapshot
        .get(unit)
        .map(|h| h.keys().copied().collect::<Vec<_>>())
    {
        Some(hosts) if hosts.len() == 1 => hosts[0],
        _ => panic!(
            "{unit} is not active on exactly one host: {}",
            describe(snapshot)
        ),
    }
}

/// Starts `units` (blocking, through host 0) and waits until systemd runs each on exactly one
/// host, on distinct hosts.
fn start_spread(flt: &FltCluster, units: &[&str]) -> Snapshot {
    let mut args = vec!["start"];
    args.extend_from_slice(units);
    fltctl_ok(flt, 0, &args);
    watch(
        flt,
        units,
        &format!("{} each active on one host of its own", units.join(", ")),
        CONVERGE,
        |_| Ok(()),
        |now| {
            let mut hosts: Vec<usize> = Vec::new();
            for runs in now.values() {
                if runs.len() != 1 {
                    return false;
                }
                hosts.extend(runs.keys());
            }
            hosts.sort();
            hosts.dedup();
            hosts.len() == units.len()
        },
    )
}

fn conflict_units(flt: &FltCluster) -> [&'static str; 3] {
    let units = [
        "conflict.0.service",
        "conflict.1.service",
        "conflict.2.service",
    ];
    for unit in units {
        write_unit(flt, 0, unit, "Conflicts=conflict.*.service");
    }
    units
}

fn etcd_json(flt: &FltCluster, path: &str) -> Result<serde_json::Value, String> {
    let body = flt
        .cluster()
        .etcd()
        .get(path)
        .map_err(|e| format!("etcd GET {path}: {e}"))?;
    serde_json::from_str(&body).map_err(|e| format!("etcd GET {path}: {e}: {body:?}"))
}

fn machine_key(flt: &FltCluster, index: usize) -> String {
    format!("{KEYS}/machines/{}/object", flt.host(index).machine_id())
}

/// etcd's `modifiedIndex` of `key`.
fn modified_index(flt: &FltCluster, key: &str) -> u64 {
    wait_for(
        &format!("etcd to answer for {key}"),
        Duration::from_secs(10),
        || {
            let json = etcd_json(flt, key)?;
            json["node"]["modifiedIndex"]
                .as_u64()
                .ok_or_else(|| format!("no modifiedIndex in {json}"))
        },
    )
}

/// The first change to `key` after etcd index `after` other than a TTL refresh: `delete`,
/// `expire`, `compareAndSwap`, ... (from etcd's event history, waiting for it if need be).
fn next_change(flt: &FltCluster, key: &str, after: u64, timeout: Duration) -> String {
    let mut from = after + 1;
    wait_for(
        &format!("a change of {key} after etcd index {after}"),
        timeout,
        || {
            // A watch with a past index answers from etcd's history at once; otherwise it
            // blocks until the change (or the GET's read timeout: try again).
            let json = etcd_json(flt, &format!("{key}?wait=true&waitIndex={from}"))?;
            let action = json["action"].as_str().unwrap_or_default().to_string();
            let index = json["node"]["modifiedIndex"].as_u64().unwrap_or(from);
            if action.is_empty() {
                return Err(format!("unexpected answer {json}"));
            }
            if json["node"]["refresh"].as_bool() == Some(true) || action == "update" {
                from = index + 1;
                return Err(format!("a TTL refresh at {index}"));
            }
            Ok(action)
        },
    )
}

/// The host whose fltd holds the engine lease.
fn engine_leader(flt: &FltCluster) -> usize {
    wait_for("an engine leader", CONVERGE, || {
        let json = etcd_json(flt, &format!("{KEYS}/lease/engine-leader"))?;
        let value = json["node"]["value"].as_str().unwrap_or_default();
        let record: serde_json::Value =
            serde_json::from_str(value).map_err(|e| format!("{e}: {json}"))?;
        let id = record["MachineID"].as_str().unwrap_or_default();
        (0..flt.hosts())
            .find(|&i| flt.host(i).machine_id() == id)
            .ok_or_else(|| format!("lease names no host: {json}"))
    })
}

/// Waits until host `index`'s fltd journal has a line containing every one of `parts`.
fn wait_log(flt: &FltCluster, index: usize, parts: &[&str]) -> String {
    wait_for(
        &format!("h{}'s fltd journal to say {parts:?}", index + 1),
        Duration::from_secs(15),
        || {
            let logs = flt.fltd_logs(index, 400);
            logs.lines()
                .find(|line| parts.iter().all(|p| line.contains(p)))
                .map(str::to_string)
                .ok_or_else(|| "not yet".to_string())
        },
    )
}

/// TestDynamicClusterNewMemberUnitMigration: three mutually conflicting units run on three
/// machines; a fourth member joins and takes nothing (flt never rebalances running units).
/// Only once conflict.1's machine leaves (fltd stopped there: its presence expires after
/// `agent_ttl`) does conflict.1 move to the new member; conflict.0 and .2 never move or restart.
/// flt-specific: SIGTERM does not purge, so conflict.1 runs on in the old machine until its fltd
/// returns and stops what is no longer its own.
#[test]
fn dynamic_cluster_new_member_unit_migration() {
    if skip() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig {
        wait_registered: false,
        ..FltClusterConfig::new(4)
    });
    let started = Instant::now();
    let new_member = 3;
    systemctl(&flt, new_member, &["stop", "fltd.service"]);
    wait_machines_on(&flt, 0, &[0, 1, 2], "h4's fltd stopped");
    let units = conflict_units(&flt);
    let before = start_spread(&flt, &units);
    assert!(
        before.values().all(|runs| !runs.contains_key(&new_member)),
        "h4 is not a member yet: {}",
        describe(&before)
    );
    wait_listed(&flt, 0, &before);

    systemctl(&flt, new_member, &["start", "--no-block", "fltd.service"]);
    wait_machines_on(&flt, 0, &[0, 1, 2, 3], "h4 joined");
    // Two engine reconcile periods (and the agents' reconciles) with a new free machine.
    hold(
        &flt,
        &units,
        &before,
        Duration::from_secs(4),
        "units must not migrate to a new member",
    );

    let leaving = only_host(&before, "conflict.1.service");
    let via = only_host(&before, "conflict.0.service");
    systemctl(&flt, leaving, &["stop", "fltd.service"]);
    let remaining: Vec<usize> = (0..4).filter(|&i| i != leaving).collect();
    wait_machines_on(&flt, via, &remaining, "conflict.1's machine left");
    let moved = watch(
        &flt,
        &units,
        "conflict.1 active on h4 (the only machine without a conflict)",
        CONVERGE,
        |now| kept(&before, now, &[]),
        |now| now["conflict.1.service"].contains_key(&new_member),
    );
    // fltctl's view: conflict.1 is on the new member now (the old machine is gone).
    let mut view = moved.clone();
    if let Some(runs) = view.get_mut("conflict.1.service") {
        runs.remove(&leaving);
    }
    wait_listed(&flt, via, &view);

    // The old machine's fltd comes back: it stops conflict.1 (no longer its own), nothing else.
    systemctl(&flt, leaving, &["start", "--no-block", "fltd.service"]);
    let last = watch(
        &flt,
        &units,
        "the returning machine to stop conflict.1",
        CONVERGE,
        |now| kept(&view, now, &[]),
        |now| now["conflict.1.service"].len() == 1,
    );
    assert_eq!(last, view, "{}", describe(&last));
    wait_machines_on(&flt, leaving, &[0, 1, 2, 3], "the machine returned");
    wait_listed(&flt, leaving, &view);
    println!(
        "dynamic_cluster_new_member_unit_migration: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// TestDynamicClusterMemberReboot: three mutually conflicting units on three machines; the
/// machine of conflict.1 is killed and booted again (its root is fresh, so fltd is installed
/// again). conflict.1 has nowhere to go meanwhile (every other machine runs a conflicting unit);
/// once the machine is back it runs there again. The other two never move or restart. (fleet's
/// recreated member had a new machine ID; a test host keeps its ID across a reboot.)
#[test]
fn dynamic_cluster_member_reboot() {
    if skip() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(3));
    let started = Instant::now();
    let units = conflict_units(&flt);
    let before = start_spread(&flt, &units);
    let rebooted = only_host(&before, "conflict.1.service");
    let via = only_host(&before, "conflict.0.service");
    wait_listed(&flt, via, &before);

    flt.host(rebooted)
        .kill()
        .unwrap_or_else(|e| panic!("kill h{}: {e}", rebooted + 1));
    let others: Vec<usize> = (0..3).filter(|&i| i != rebooted).collect();
    wait_machines_on(&flt, via, &others, "the killed machine's presence expired");
    let mut without = before.clone();
    if let Some(runs) = without.get_mut("conflict.1.service") {
        runs.clear();
    }
    // conflict.1 must not be squeezed onto a machine with a conflicting unit.
    hold(
        &flt,
        &units,
        &without,
        Duration::from_secs(3),
        "conflict.1 has nowhere to go while its machine is down",
    );
    wait_listed(&flt, via, &without);

    flt.host(rebooted)
        .start()
        .unwrap_or_else(|e| panic!("boot h{}: {e}", rebooted + 1));
    flt.start_fltd(rebooted);
    wait_machines_on(&flt, via, &[0, 1, 2], "the rebooted machine registered");
    let after = watch(
        &flt,
        &units,
        "conflict.1 active again on the rebooted machine",
        CONVERGE,
        |now| kept(&without, now, &[]),
        |now| now["conflict.1.service"].contains_key(&rebooted),
    );
    assert_eq!(after["conflict.1.service"].len(), 1, "{}", describe(&after));
    wait_listed(&flt, rebooted, &after);
    println!(
        "dynamic_cluster_member_reboot: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// TestNodeShutdown, as a HOST shutdown (project decision, spec §3.9): a plain restart of fltd
/// (SIGTERM) within `agent_ttl` leaves its units running and its presence in place, and the new
/// fltd adopts both; powering the host off makes fltd see systemd's `SystemState` `stopping`
/// and delete its presence at once (an etcd `delete`, not an `expire`), so its movable unit
/// runs elsewhere right away, and a unit pinned to it (`MachineID=`) runs nowhere and is no
/// longer listed (fleet: "0 active units").
#[test]
fn node_shutdown() {
    if skip() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(3));
    let started = Instant::now();
    write_unit(&flt, 0, "hello.service", "");
    fltctl_ok(&flt, 0, &["start", "hello.service"]);
    let host = flt.wait_active_on_one("hello.service");
    let machine = flt.host(host).machine_id().to_string();
    write_unit(&flt, 0, "pinned.service", &format!("MachineID={machine}"));
    fltctl_ok(&flt, 0, &["start", "pinned.service"]);
    let units = ["hello.service", "pinned.service"];
    let before = watch(
        &flt,
        &units,
        "hello and pinned active on one host",
        CONVERGE,
        |_| Ok(()),
        |now| now.values().all(|runs| runs.keys().eq([host].iter())),
    );
    let via = (host + 1) % 3;
    wait_listed(&flt, via, &before);

    // A plain restart of fltd: no purge, no delete; the new fltd takes over its own record.
    let key = machine_key(&flt, host);
    let index = modified_index(&flt, &key);
    let restart = Instant::now();
    systemctl(&flt, host, &["restart", "fltd.service"]);
    let restart = restart.elapsed();
    assert_eq!(
        next_change(&flt, &key, index, Duration::from_secs(10)),
        "compareAndSwap",
        "the restarted fltd (restart took {:.1}s) must adopt its own presence record",
        restart.as_secs_f64()
    );
    wait_log(&flt, host, &["Stopping; units keep running"]);
    wait_log(&flt, host, &["Registered machine", &machine]);
    hold(
        &flt,
        &units,
        &before,
        Duration::from_secs(2),
        "units must survive a restart of fltd",
    );
    wait_listed(&flt, via, &before);

    // Host shutdown: the presence is deleted at once, hello is rescheduled.
    let index = modified_index(&flt, &key);
    flt.host(host)
        .stop()
        .unwrap_or_else(|e| panic!("power off h{}: {e}", host + 1));
    assert_eq!(
        next_change(&flt, &key, index, Duration::from_secs(10)),
        "delete",
        "a host shutting down must delete its presence, not leave it to expire"
    );
    wait_log(&flt, host, &["The host is shutting down"]);
    let others: Vec<usize> = (0..3).filter(|&i| i != host).collect();
    wait_machines_on(&flt, via, &others, "the powered-off machine left");
    let after = watch(
        &flt,
        &units,
        "hello rescheduled onto one other host, pinned nowhere",
        CONVERGE,
        |_| Ok(()),
        |now| {
            now["hello.service"].len() == 1
                && !now["hello.service"].contains_key(&host)
                && now["pinned.service"].is_empty()
        },
    );
    wait_listed(&flt, via, &after);
    println!(
        "node_shutdown: {:.1}s (fltd restart {:.1}s)",
        started.elapsed().as_secs_f64(),
        restart.as_secs_f64()
    );
}

/// TestSingleNodeConnectivityLoss: the engine leader's host is cut off from etcd for longer
/// than `agent_ttl`. Nothing it runs is stopped meanwhile (a loaded unit stays loaded and
/// linked); the rest of the cluster takes over the lease and reschedules its units. After
/// healing, the returning host stops what is no longer its own (its global unit runs on), and
/// every unit runs exactly once. Then etcd itself restarts: nothing stops, everything converges.
#[test]
fn single_node_connectivity_loss() {
    if skip() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(3));
    let started = Instant::now();
    let cut = engine_leader(&flt);
    let singles = [
        "single.0.service",
        "single.1.service",
        "single.2.service",
        "single.3.service",
    ];
    for unit in singles {
        write_unit(&flt, 0, unit, "");
    }
    write_unit(&flt, 0, "global.service", "Global=true");
    let cut_machine = flt.host(cut).machine_id().to_string();
    write_unit(
        &flt,
        0,
        "loaded.service",
        &format!("MachineID={cut_machine}"),
    );
    let mut args = vec!["start", "global.service"];
    args.extend_from_slice(&singles);
    fltctl_ok(&flt, 0, &args);
    fltctl_ok(&flt, 0, &["load", "loaded.service"]);
    let mut units = singles.to_vec();
    units.push("global.service");
    let before = watch(
        &flt,
        &units,
        "every single unit active once, the global unit everywhere",
        CONVERGE,
        |_| Ok(()),
        |now| singles.iter().all(|u| now[*u].len() == 1) && now["global.service"].len() == 3,
    );
    let on_cut: Vec<&str> = singles
        .iter()
        .copied()
        .filter(|u| before[*u].contains_key(&cut))
        .collect();
    assert!(
        !on_cut.is_empty(),
        "4 units on 3 machines leave none on h{}: {}",
        cut + 1,
        describe(&before)
    );
    assert_eq!(
        unit_property(&flt, cut, "loaded.service", "UnitFileState"),
        "linked-runtime"
    );

    flt.host(cut)
        .partition_from_etcd()
        .unwrap_or_else(|e| panic!("cut h{} from etcd: {e}", cut + 1));
    let outage = Instant::now();
    let via = (cut + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|&i| i != cut).collect();
    wait_machines_on(&flt, via, &others, "the cut-off machine's presence expired");
    let during = watch(
        &flt,
        &units,
        "the cut-off host's units rescheduled elsewhere while it keeps running them",
        CONVERGE,
        |now| kept(&before, now, &[]),
        |now| on_cut.iter().all(|u| now[*u].len() == 2),
    );
    // A little longer, as fleet's test (ttl + 5 s + 2 s in all): still nothing stops.
    let minimum = Duration::from_secs(10);
    if outage.elapsed() < minimum {
        hold(
            &flt,
            &units,
            &during,
            minimum - outage.elapsed(),
            "nothing changes during the outage",
        );
    }
    assert_eq!(
        unit_property(&flt, cut, "loaded.service", "UnitFileState"),
        "linked-runtime",
        "a loaded unit stays linked during the outage"
    );
    assert_eq!(
        unit_property(&flt, cut, "fltd.service", "NRestarts"),
        "0",
        "fltd must ride out the outage"
    );
    let outage = outage.elapsed();

    flt.host(cut)
        .heal()
        .unwrap_or_else(|e| panic!("heal h{}: {e}", cut + 1));
    let healed = watch(
        &flt,
        &units,
        "the returning host to stop the units that moved away",
        CONVERGE,
        |now| {
            kept(&during, now, &[cut])?;
            let global = BTreeMap::from([(
                "global.service".to_string(),
                before["global.service"].clone(),
            )]);
            kept(&global, now, &[])
        },
        |now| singles.iter().all(|u| now[*u].len() == 1),
    );
    assert_eq!(
        healed["global.service"], before["global.service"],
        "the global unit never stops anywhere"
    );
    wait_machines_on(&flt, cut, &[0, 1, 2], "the cut-off machine is back");
    wait_listed(&flt, cut, &healed);
    let journal = flt
        .host(cut)
        .logs(&["-u", "global.service", "-o", "cat"])
        .unwrap_or_default();
    assert!(
        !journal.contains("Stopping"),
        "systemd stopped global.service on h{}:\n{journal}",
        cut + 1
    );
    assert_eq!(
        unit_property(&flt, cut, "loaded.service", "UnitFileState"),
        "linked-runtime"
    );

    // etcd restarts under everyone: nothing stops, everything converges.
    flt.cluster()
        .etcd_restart()
        .unwrap_or_else(|e| panic!("restart etcd: {e}"));
    wait_machines_on(
        &flt,
        via,
        &[0, 1, 2],
        "every machine after the etcd restart",
    );
    hold(
        &flt,
        &units,
        &healed,
        Duration::from_secs(5),
        "nothing stops when etcd restarts",
    );
    wait_listed(&flt, via, &healed);
    println!(
        "single_node_connectivity_loss: {:.1}s (outage {:.1}s)",
        started.elapsed().as_secs_f64(),
        outage.as_secs_f64()
    );
}

/// TestDetectMachineId: a host given another live host's machine ID is refused at registration
/// (issue #6): its fltd keeps running and retrying, logs an error naming both machines, and its
/// API answers 503 (fltctl fails); the owner of the ID is undisturbed. Once the first host has a
/// new ID, both register.
#[test]
fn detect_machine_id() {
    if skip() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(2));
    let started = Instant::now();
    let taken = flt.host(0).machine_id().to_string();
    let (ip1, ip2) = (flt.host(0).ip().to_string(), flt.host(1).ip().to_string());
    flt.write_file(1, "/etc/machine-id", &format!("{taken}\n"));
    systemctl(&flt, 1, &["restart", "--no-block", "fltd.service"]);
    let line = wait_log(
        &flt,
        1,
        &["Machine ID", &taken, "already registered", &ip1, &ip2],
    );
    println!("h2: {line}");
    // Refused registration, so no engine: it must not take the lease held under the same ID.
    let pid = line
        .split_whitespace()
        .find(|w| w.starts_with("fltd["))
        .unwrap_or("fltd[");
    let logs = flt.fltd_logs(1, 400);
    let engine = logs
        .lines()
        .filter(|l| l.contains(pid) && l.contains("Engine leader"))
        .collect::<Vec<_>>();
    assert!(engine.is_empty(), "h2 ran an engine: {engine:?}");
    let out = flt.fltctl(1, &["list-machines"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .contains("flt server unable to communicate with etcd"),
        "{out}"
    );
    // Still starting (READY=1 comes with registration), never failed or restarted.
    assert_eq!(
        unit_property(&flt, 1, "fltd.service", "ActiveState"),
        "activating"
    );
    assert_eq!(unit_property(&flt, 1, "fltd.service", "NRestarts"), "0");
    // The owner of the ID keeps it: its record is untouched.
    wait_machines_on(&flt, 0, &[0], "h2's old ID expired, h1 alone");
    let json = etcd_json(&flt, &machine_key(&flt, 0)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        json["node"]["value"]
            .as_str()
            .is_some_and(|v| v.contains(&ip1)),
        "{json}"
    );

    // h1 gets a new ID: h1 registers with it, and h2 with the ID it copied once that is free.
    let fresh: String = taken.chars().rev().collect();
    flt.write_file(0, "/etc/machine-id", &format!("{fresh}\n"));
    systemctl(&flt, 0, &["restart", "--no-block", "fltd.service"]);
    let mut expected = vec![fresh.clone(), taken.clone()];
    expected.sort();
    // Through h2's API: it answers only once h2 is registered (after h1's old record expired).
    wait_for(
        "list-machines on h2 to list h1's new ID and h2 under the copied one",
        Duration::from_secs(60),
        || match listed_machines(&flt, 1)? {
            ids if ids == expected => Ok(()),
            ids => Err(format!("listed {ids:?}")),
        },
    );
    let json = etcd_json(&flt, &machine_key(&flt, 0)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        json["node"]["value"]
            .as_str()
            .is_some_and(|v| v.contains(&ip2)),
        "the copied ID is h2's now: {json}"
    );
    assert_eq!(listed_machines(&flt, 0), Ok(expected));
    println!("detect_machine_id: {:.1}s", started.elapsed().as_secs_f64());
}
