//! The functional suite: flt on real clusters of test hosts (real systemd as PID 1, real etcd,
//! fltd installed from `examples/host/`), driven with fltctl inside the hosts as an operator
//! would. Scenarios follow fleet's functional tests (spec §9). Needs root and the tools of
//! `flt_tests::testhost`; fails with the reason if they are missing, unless
//! `FLT_SKIP_HOST_TESTS=1`.

use std::time::Duration;

use flt_tests::fltcluster::{CommandOutput, FltCluster, FltClusterConfig, hosts_list, wait_for};

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

// ---------------------------------------------------------------------------------------------
// Scheduling scenarios (fleet's scheduling_test.go, metadata_test.go, install_test.go).
// Each checks two views: fltctl's (list-units through some host) and systemd's on every host.

/// Where the shipped example unit files are.
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

/// The directory inside a host that fltctl is run in, holding the unit files.
const UNITS: &str = "/root/units";

/// How long a placement may take: an agent reconcile plus systemd starting the unit, with room
/// for a loaded 2-core machine.
const PLACE_TIMEOUT: Duration = Duration::from_secs(20);

/// A unit whose process is a bash loop, with `x_fleet` lines appended to `[X-Fleet]`.
fn looping_unit(name: &str, x_fleet: &[&str]) -> String {
    let mut text = format!(
        "[Unit]\nDescription={name}\n\n[Service]\nExecStart=/bin/bash -c \"while true; do echo {name}; sleep 1; done\"\n"
    );
    if !x_fleet.is_empty() {
        text.push_str("\n[X-Fleet]\n");
        for line in x_fleet {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// Copies the shipped example `name` into host `index`'s unit directory.
fn put_example(flt: &FltCluster, index: usize, name: &str) {
    let path = format!("{EXAMPLES}/{name}");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read example {path}: {e}"));
    flt.write_file(index, &format!("{UNITS}/{name}"), &text);
}

/// Writes a unit file into host `index`'s unit directory.
fn put_unit(flt: &FltCluster, index: usize, name: &str, text: &str) {
    flt.write_file(index, &format!("{UNITS}/{name}"), text);
}

/// Runs fltctl in the unit directory of host `index` and requires exit 0.
fn fltctl_ok(flt: &FltCluster, index: usize, args: &[&str]) -> CommandOutput {
    let out = flt.fltctl_in(index, UNITS, args);
    assert_eq!(out.code, 0, "fltctl {}: {out}", args.join(" "));
    out
}

/// One row of `list-units --fields unit,machine,active`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UnitRow {
    unit: String,
    /// The machine ID (the part of the legend before `/`).
    machine: String,
    active: String,
}

/// list-units through host `via`, as fleet's harness parses it.
fn list_units(flt: &FltCluster, via: usize) -> Result<Vec<UnitRow>, String> {
    let out = flt.fltctl(
        via,
        &[
            "list-units",
            "--no-legend",
            "--full",
            "--fields",
            "unit,machine,active",
        ],
    );
    if out.code != 0 {
        return Err(out.to_string());
    }
    out.stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [unit, machine, active] => Ok(UnitRow {
                    unit: unit.to_string(),
                    machine: machine.split('/').next().unwrap_or(machine).to_string(),
                    active: active.to_string(),
                }),
                _ => Err(format!("unexpected list-units row {line:?} in:\n{out}")),
            },
        )
        .collect()
}

/// list-unit-files through host `via`: (unit, dstate, state) per row.
fn list_unit_files(flt: &FltCluster, via: usize) -> Vec<(String, String, String)> {
    let out = flt.fltctl(
        via,
        &[
            "list-unit-files",
            "--no-legend",
            "--full",
            "--fields",
            "unit,dstate,state",
        ],
    );
    assert_eq!(out.code, 0, "list-unit-files: {out}");
    out.stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [unit, dstate, state] => (unit.to_string(), dstate.to_string(), state.to_string()),
                _ => panic!("unexpected list-unit-files row {line:?} in:\n{out}"),
            },
        )
        .collect()
}

/// The host index whose machine ID is `machine`.
fn host_of(flt: &FltCluster, machine: &str) -> Option<usize> {
    (0..flt.hosts()).find(|&i| flt.host(i).machine_id() == machine)
}

/// Where every unit in `units` runs: active in systemd on exactly one host, and listed by fltctl
/// (through `via`) as active on that host's machine and nowhere else. Waits for it; returns
/// the host of each unit, in the order given.
fn wait_placed(flt: &FltCluster, via: usize, units: &[&str], timeout: Duration) -> Vec<usize> {
    wait_for(
        &format!(
            "{} each active on one host in systemd and fltctl",
            units.join(" ")
        ),
        timeout,
        || {
            let rows = list_units(flt, via)?;
            units
                .iter()
                .map(|unit| {
                    let hosts = flt.active_on(unit);
                    let [host] = hosts[..] else {
                        return Err(format!("{unit}: systemd active on {}", hosts_list(&hosts)));
                    };
                    let listed: Vec<&UnitRow> = rows.iter().filter(|r| r.unit == *unit).collect();
                    match listed[..] {
                        [row]
                            if row.active == "active"
                                && host_of(flt, &row.machine) == Some(host) =>
                        {
                            Ok(host)
                        }
                        _ => Err(format!(
                            "{unit}: systemd active on h{}, fltctl lists {listed:?}",
                            host + 1
                        )),
                    }
                })
                .collect()
        },
    )
}

/// Waits until the global `unit` is active exactly on `hosts`, in systemd and in fltctl's view.
fn wait_global_on(flt: &FltCluster, via: usize, unit: &str, hosts: &[usize], timeout: Duration) {
    let mut machines: Vec<&str> = hosts.iter().map(|&i| flt.host(i).machine_id()).collect();
    machines.sort_unstable();
    wait_for(
        &format!(
            "{unit} active on {} in systemd and fltctl",
            hosts_list(hosts)
        ),
        timeout,
        || {
            let active = flt.active_on(unit);
            let rows = list_units(flt, via)?;
            let mut listed: Vec<&str> = rows
                .iter()
                .filter(|r| r.unit == unit && r.active == "active")
                .map(|r| r.machine.as_str())
                .collect();
            listed.sort_unstable();
            if active == hosts && listed == machines {
                Ok(())
            } else {
                Err(format!(
                    "systemd active on {}, fltctl lists active on {listed:?}",
                    hosts_list(&active)
                ))
            }
        },
    );
}

/// Asserts that `unit` stays out of systemd on every host and out of fltctl's list for
/// `settle` (a few agent reconciles): absence can only be shown by waiting.
fn assert_stays_unplaced(flt: &FltCluster, via: usize, unit: &str, settle: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < settle {
        let active = flt.active_on(unit);
        assert!(active.is_empty(), "{unit} runs on {}", hosts_list(&active));
        let rows = list_units(flt, via).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            rows.iter().all(|r| r.unit != unit),
            "{unit} is listed: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The host whose fltd says it is the engine leader (exactly one must).
fn engine_leader(flt: &FltCluster) -> usize {
    wait_for(
        "exactly one fltd reporting \"engine leader\"",
        Duration::from_secs(15),
        || {
            let statuses: Vec<String> = (0..flt.hosts())
                .map(|i| {
                    flt.exec(
                        i,
                        &["systemctl", "show", "-p", "StatusText", "--value", "fltd"],
                    )
                    .stdout
                })
                .collect();
            let leaders: Vec<usize> = (0..flt.hosts())
                .filter(|&i| statuses[i].contains("engine leader"))
                .collect();
            match leaders[..] {
                [one] => Ok(one),
                _ => Err(format!("statuses: {statuses:?}")),
            }
        },
    )
}

/// TestScheduleGlobalUnits: a `Global=true` unit runs on every machine next to ordinary units,
/// and stopping and starting it again stops and starts every instance.
#[test]
fn global_unit_runs_on_every_machine() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(3));
    put_example(&flt, 0, "hello.service");
    put_unit(&flt, 0, "goodbye.service", &looping_unit("goodbye", &[]));
    put_example(&flt, 0, "global.service");
    fltctl_ok(
        &flt,
        0,
        &["start", "--no-block", "hello.service", "goodbye.service"],
    );
    let ordinary = wait_placed(
        &flt,
        1,
        &["hello.service", "goodbye.service"],
        PLACE_TIMEOUT,
    );
    let out = fltctl_ok(&flt, 0, &["start", "--no-block", "global.service"]);
    assert!(
        out.stdout
            .contains("Triggered global unit global.service start"),
        "{out}"
    );
    wait_global_on(&flt, 1, "global.service", &[0, 1, 2], PLACE_TIMEOUT);
    let rows = list_units(&flt, 2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        rows.iter().filter(|r| r.active == "active").count(),
        5,
        "hello, goodbye and 3 global instances: {rows:?}"
    );
    // fltctl's `status` and `restart` of a global unit run systemctl on every machine over SSH
    // (fleet's were no-ops); the test hosts run no sshd, so stop and start stand in for them.
    fltctl_ok(&flt, 0, &["stop", "global.service"]);
    wait_global_on(&flt, 1, "global.service", &[], PLACE_TIMEOUT);
    let still = wait_placed(
        &flt,
        2,
        &["hello.service", "goodbye.service"],
        PLACE_TIMEOUT,
    );
    assert_eq!(
        still, ordinary,
        "hello and goodbye untouched by the global stop"
    );
    fltctl_ok(&flt, 0, &["start", "--no-block", "global.service"]);
    wait_global_on(&flt, 2, "global.service", &[0, 1, 2], PLACE_TIMEOUT);
}

/// TestScheduleGlobalConflicts: of two global units that conflict, the first one started runs on
/// every machine and the second one nowhere.
#[test]
fn conflicting_global_units_only_first_runs() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(3));
    for n in 0..2 {
        let name = format!("conflict-global.{n}.service");
        let text = looping_unit(
            &name,
            &["Global=true", "Conflicts=conflict-global.*.service"],
        );
        put_unit(&flt, 0, &name, &text);
    }
    fltctl_ok(
        &flt,
        0,
        &["start", "--no-block", "conflict-global.0.service"],
    );
    wait_global_on(
        &flt,
        1,
        "conflict-global.0.service",
        &[0, 1, 2],
        PLACE_TIMEOUT,
    );
    fltctl_ok(
        &flt,
        0,
        &["start", "--no-block", "conflict-global.1.service"],
    );
    // The second is in the registry, launched, so every agent has seen it.
    wait_for("conflict-global.1 desired launched", PLACE_TIMEOUT, || {
        let files = list_unit_files(&flt, 1);
        if files
            .iter()
            .any(|(u, d, _)| u == "conflict-global.1.service" && d == "launched")
        {
            Ok(())
        } else {
            Err(format!("{files:?}"))
        }
    });
    assert_stays_unplaced(&flt, 1, "conflict-global.1.service", Duration::from_secs(5));
    wait_global_on(
        &flt,
        2,
        "conflict-global.0.service",
        &[0, 1, 2],
        PLACE_TIMEOUT,
    );
}

/// TestScheduleConflicts: five units that all conflict with each other on three machines: three
/// run, one per machine, and two stay unscheduled.
#[test]
fn mutually_conflicting_units_one_per_machine() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(3));
    let names: Vec<String> = (0..5).map(|n| format!("conflict.{n}.service")).collect();
    for (n, name) in names.iter().enumerate() {
        if n < 3 {
            put_example(&flt, 0, name);
        } else {
            let text = looping_unit(name, &["Conflicts=conflict.*.service"]);
            put_unit(&flt, 0, name, &text);
        }
    }
    let mut args = vec!["start", "--no-block"];
    args.extend(names.iter().map(String::as_str));
    fltctl_ok(&flt, 0, &args);
    assert_eq!(list_unit_files(&flt, 1).len(), 5, "5 unit files");
    let placed = wait_for(
        "3 conflict units active, one on each host, in systemd and fltctl",
        PLACE_TIMEOUT,
        || {
            let per_host: Vec<Vec<&String>> = (0..3)
                .map(|i| {
                    names
                        .iter()
                        .filter(|name| flt.unit_state(i, name) == "active")
                        .collect()
                })
                .collect();
            let rows = list_units(&flt, 1)?;
            let listed: Vec<&UnitRow> = rows.iter().filter(|r| r.active == "active").collect();
            if per_host.iter().all(|units| units.len() == 1) && listed.len() == 3 {
                Ok(per_host)
            } else {
                Err(format!("systemd per host {per_host:?}; fltctl {listed:?}"))
            }
        },
    );
    let running: Vec<String> = placed.iter().map(|units| units[0].clone()).collect();
    for name in names.iter().filter(|n| !running.contains(n)) {
        assert_stays_unplaced(&flt, 2, name, Duration::from_secs(3));
    }
}

/// TestScheduleOneWayConflict: a unit conflicting with hello.service keeps hello off the only
/// machine; once it is destroyed, hello takes the machine.
#[test]
fn one_way_conflict_blocks_until_destroyed() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(1));
    put_example(&flt, 0, "hello.service");
    let blocker = looping_unit("conflicts-with-hello", &["Conflicts=hello.service"]);
    put_unit(&flt, 0, "conflicts-with-hello.service", &blocker);
    fltctl_ok(
        &flt,
        0,
        &["start", "--no-block", "conflicts-with-hello.service"],
    );
    wait_placed(&flt, 0, &["conflicts-with-hello.service"], PLACE_TIMEOUT);
    fltctl_ok(&flt, 0, &["start", "--no-block", "hello.service"]);
    assert_eq!(list_unit_files(&flt, 0).len(), 2, "2 unit files");
    assert_stays_unplaced(&flt, 0, "hello.service", Duration::from_secs(4));
    let out = fltctl_ok(&flt, 0, &["destroy", "conflicts-with-hello.service"]);
    assert!(
        out.stdout
            .contains("Destroyed conflicts-with-hello.service"),
        "{out}"
    );
    wait_placed(&flt, 0, &["hello.service"], PLACE_TIMEOUT);
    wait_for("only hello.service listed", PLACE_TIMEOUT, || {
        let rows = list_units(&flt, 0)?;
        match &rows[..] {
            [row] if row.unit == "hello.service" && row.active == "active" => Ok(()),
            _ => Err(format!("{rows:?}")),
        }
    });
    assert!(flt.active_on("conflicts-with-hello.service").is_empty());
}

/// TestScheduleMultipleConflicts: `Conflicts=` given as space-separated values, repeated keys
/// and a quoted list are all honoured: the three units land on three machines even where
/// least-loaded placement alone would stack two of them.
#[test]
fn multiple_conflicts_values_keep_units_apart() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(3));
    // Load h1 with two pinned units, so that without working conflicts the third unit would go
    // to h2 or h3 (1 unit each) instead of h1 (2 units).
    let h1 = flt.host(0).machine_id().to_string();
    for n in 0..2 {
        let name = format!("filler.{n}.service");
        let text = looping_unit(&name, &[&format!("MachineID={h1}")]);
        put_unit(&flt, 0, &name, &text);
    }
    let units = [
        (
            "conflict.multiple.0.service",
            vec!["Conflicts=conflict.multiple.1.service conflict.multiple.2.service"],
        ),
        (
            "conflict.multiple.1.service",
            vec![
                "Conflicts=conflict.multiple.0.service",
                "Conflicts=conflict.multiple.2.service",
            ],
        ),
        (
            "conflict.multiple.2.service",
            vec!["Conflicts=\"conflict.multiple.0.service\" \"conflict.multiple.1.service\""],
        ),
    ];
    for (name, x_fleet) in &units {
        put_unit(&flt, 0, name, &looping_unit(name, x_fleet));
    }
    fltctl_ok(
        &flt,
        0,
        &[
            "start",
            "--no-block",
            "filler.0.service",
            "filler.1.service",
        ],
    );
    let fillers = wait_placed(
        &flt,
        1,
        &["filler.0.service", "filler.1.service"],
        PLACE_TIMEOUT,
    );
    assert_eq!(fillers, [0, 0], "fillers pinned to h1");
    // One at a time, so each placement sees the previous one.
    for (name, _) in &units {
        fltctl_ok(&flt, 0, &["start", "--no-block", name]);
        wait_placed(&flt, 1, &[name], PLACE_TIMEOUT);
    }
    let mut hosts = wait_placed(
        &flt,
        2,
        &units.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        PLACE_TIMEOUT,
    );
    hosts.sort_unstable();
    assert_eq!(hosts, [0, 1, 2], "one conflict.multiple unit per host");
}

/// TestScheduleMachineOf: ping/pong pairs (`MachineOf=`) run together; when the engine leader's
/// host dies, its pair moves together to a surviving host and the other pairs stay.
#[test]
fn machine_of_pairs_move_together_when_leader_host_dies() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(3));
    let mut all = Vec::new();
    for n in 0..3 {
        let ping = format!("ping.{n}.service");
        let pong = format!("pong.{n}.service");
        put_unit(&flt, 0, &ping, &looping_unit(&ping, &[]));
        put_unit(
            &flt,
            0,
            &pong,
            &looping_unit(&pong, &[&format!("MachineOf={ping}")]),
        );
        all.push(ping);
        all.push(pong);
    }
    let names: Vec<&str> = all.iter().map(String::as_str).collect();
    let mut args = vec!["start", "--no-block"];
    args.extend(&names);
    fltctl_ok(&flt, 0, &args);
    assert_eq!(list_unit_files(&flt, 1).len(), 6, "6 unit files");
    let before = wait_placed(&flt, 1, &names, PLACE_TIMEOUT);
    for pair in before.chunks(2) {
        assert_eq!(pair[0], pair[1], "each pong with its ping: {before:?}");
    }
    let mut pair_hosts: Vec<usize> = before.iter().step_by(2).copied().collect();
    pair_hosts.sort_unstable();
    assert_eq!(
        pair_hosts,
        [0, 1, 2],
        "least-loaded spreads the pairs: {before:?}"
    );

    let leader = engine_leader(&flt);
    let moved = before
        .iter()
        .step_by(2)
        .position(|&h| h == leader)
        .unwrap_or_else(|| panic!("no pair on the leader's host h{}", leader + 1));
    println!("killing h{} (engine leader, runs ping.{moved})", leader + 1);
    flt.cluster()
        .host(leader)
        .kill()
        .unwrap_or_else(|e| panic!("kill h{}: {e}", leader + 1));
    let via = (leader + 1) % 3;
    // agent_ttl (3 s) for the machine to go away, up to the lease TTL (10 s) for a new leader.
    let after = wait_placed(&flt, via, &names, Duration::from_secs(40));
    let (ping, pong) = (after[2 * moved], after[2 * moved + 1]);
    assert_eq!(
        ping, pong,
        "ping.{moved} and pong.{moved} together: {after:?}"
    );
    assert_ne!(ping, leader, "ping.{moved} left the dead host: {after:?}");
    for n in (0..3).filter(|&n| n != moved) {
        assert_eq!(
            (after[2 * n], after[2 * n + 1]),
            (before[2 * n], before[2 * n + 1]),
            "pair {n} stays where it was"
        );
    }
    wait_for("2 machines listed", Duration::from_secs(10), || {
        let out = flt.fltctl(via, &["list-machines", "--no-legend", "--full"]);
        match out.stdout.lines().count() {
            2 => Ok(()),
            _ => Err(out.to_string()),
        }
    });
}

/// TestTemplatesWithSpecifiersInMetadata: a template with `MachineMetadata=hostname=%i` puts each
/// instance on the machine whose metadata names it (template taken from the registry); an
/// instance no machine matches is never scheduled. The us-east example lands on the one
/// machine with region=us-east.
#[test]
fn template_specifiers_in_metadata_pick_machines() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig {
        metadata: vec![
            "hostname=smoke0".to_string(),
            "hostname=smoke1,region=us-east".to_string(),
            "hostname=smoke2,region=eu-west".to_string(),
        ],
        ..FltClusterConfig::new(3)
    });
    put_unit(
        &flt,
        0,
        "metadata@.service",
        &looping_unit("metadata-%i", &["MachineMetadata=hostname=%i"]),
    );
    fltctl_ok(&flt, 0, &["submit", "metadata@.service"]);
    // From another host with no local template: the registry's is used.
    let instances: Vec<String> = (0..3)
        .map(|n| format!("metadata@smoke{n}.service"))
        .collect();
    let mut args = vec!["start", "--no-block"];
    args.extend(instances.iter().map(String::as_str));
    let out = flt.fltctl(1, &args);
    assert_eq!(out.code, 0, "{out}");
    let hosts = wait_placed(
        &flt,
        2,
        &instances.iter().map(String::as_str).collect::<Vec<_>>(),
        PLACE_TIMEOUT,
    );
    assert_eq!(hosts, [0, 1, 2], "metadata@smokeN on hN+1");

    put_example(&flt, 2, "us-east.service");
    fltctl_ok(&flt, 2, &["start", "--no-block", "us-east.service"]);
    assert_eq!(
        wait_placed(&flt, 0, &["us-east.service"], PLACE_TIMEOUT),
        [1]
    );

    let out = flt.fltctl(
        1,
        &["start", "--block-attempts=2", "metadata@invalid.service"],
    );
    assert_ne!(out.code, 0, "no machine has hostname=invalid: {out}");
    assert_stays_unplaced(&flt, 0, "metadata@invalid.service", Duration::from_secs(1));
}

/// TestScheduleConditionMachineID: units pinned with `MachineID=` (full and 8-char short ID) and
/// the legacy `X-ConditionMachineID=` run on the machine named, even against least-loaded order.
#[test]
fn machine_id_pins_units() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(3));
    let id = |i: usize| flt.host(i).machine_id().to_string();
    let pins = [
        ("pinned.0.service", format!("MachineID={}", id(2)), 2),
        ("pinned.1.service", format!("MachineID={}", &id(2)[..8]), 2),
        (
            "pinned.2.service",
            format!("X-ConditionMachineID={}", id(1)),
            1,
        ),
    ];
    for (name, line, _) in &pins {
        put_unit(&flt, 0, name, &looping_unit(name, &[line]));
    }
    let names: Vec<&str> = pins.iter().map(|(name, _, _)| *name).collect();
    let mut args = vec!["start", "--block-attempts=10"];
    args.extend(&names);
    fltctl_ok(&flt, 0, &args);
    let hosts = wait_placed(&flt, 1, &names, PLACE_TIMEOUT);
    let expected: Vec<usize> = pins.iter().map(|(_, _, host)| *host).collect();
    assert_eq!(hosts, expected, "each unit on its named machine");
}

/// TestScheduleReplace: starting a unit with `Replaces=replace.0.service` puts it on
/// replace.0's machine and moves replace.0 elsewhere.
#[test]
fn replaces_moves_the_replaced_unit_away() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(2));
    put_unit(
        &flt,
        0,
        "replace.0.service",
        &looping_unit("replace.0", &[]),
    );
    put_unit(
        &flt,
        0,
        "replace.1.service",
        &looping_unit("replace.1", &[]),
    );
    put_unit(
        &flt,
        0,
        "replace.2.service",
        &looping_unit("replace.2", &["MachineOf=replace.1.service"]),
    );
    put_unit(
        &flt,
        0,
        "replace-kick0.service",
        &looping_unit("replace-kick0", &["Replaces=replace.0.service"]),
    );
    fltctl_ok(&flt, 0, &["start", "--no-block", "replace.0.service"]);
    let [a] = wait_placed(&flt, 1, &["replace.0.service"], PLACE_TIMEOUT)[..] else {
        unreachable!("one unit asked, one host returned")
    };
    fltctl_ok(
        &flt,
        0,
        &[
            "start",
            "--no-block",
            "replace.1.service",
            "replace.2.service",
        ],
    );
    let b = wait_placed(
        &flt,
        1,
        &["replace.1.service", "replace.2.service"],
        PLACE_TIMEOUT,
    );
    assert_eq!(b, [1 - a, 1 - a], "replace.1 and .2 on the other host");

    fltctl_ok(&flt, 0, &["start", "--no-block", "replace-kick0.service"]);
    let after = wait_placed(
        &flt,
        1,
        &["replace-kick0.service", "replace.0.service"],
        Duration::from_secs(15),
    );
    assert_eq!(
        after,
        [a, 1 - a],
        "kick0 took replace.0's machine h{} and replace.0 moved",
        a + 1
    );
    assert_eq!(
        wait_placed(
            &flt,
            0,
            &["replace.1.service", "replace.2.service"],
            PLACE_TIMEOUT
        ),
        [1 - a, 1 - a],
        "replace.1 and .2 did not move"
    );
}

/// TestInstallUnit: a unit with `[Install] WantedBy=hello.service`, `BindsTo=hello.service` and
/// `MachineOf=hello.service` is enabled when loaded: inactive after load, started by systemd
/// with hello, stopped with it.
#[test]
fn install_section_ties_unit_to_hello() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let flt = FltCluster::start(FltClusterConfig::new(2));
    put_example(&flt, 0, "hello.service");
    put_unit(
        &flt,
        0,
        "discovery.service",
        "[Unit]\nDescription=Discovery, started and stopped with hello\nBindsTo=hello.service\n\n\
         [Service]\nExecStart=/bin/bash -c \"while true; do echo discovery; sleep 1; done\"\n\n\
         [Install]\nWantedBy=hello.service\n\n[X-Fleet]\nMachineOf=hello.service\n",
    );
    fltctl_ok(
        &flt,
        0,
        &[
            "load",
            "--block-attempts=10",
            "hello.service",
            "discovery.service",
        ],
    );
    let loaded_on = wait_for(
        "hello and discovery loaded, inactive, on one host",
        PLACE_TIMEOUT,
        || {
            let rows = list_units(&flt, 1)?;
            match &rows[..] {
                [d, h]
                    if d.unit == "discovery.service"
                        && h.unit == "hello.service"
                        && d.active == "inactive"
                        && h.active == "inactive"
                        && d.machine == h.machine =>
                {
                    host_of(&flt, &h.machine).ok_or_else(|| format!("unknown machine {h:?}"))
                }
                _ => Err(format!("{rows:?}")),
            }
        },
    );
    for unit in ["hello.service", "discovery.service"] {
        assert_eq!(
            flt.unit_state(loaded_on, unit),
            "inactive",
            "{unit} after load"
        );
    }
    fltctl_ok(&flt, 0, &["start", "--no-block", "hello.service"]);
    assert_eq!(
        wait_placed(
            &flt,
            1,
            &["hello.service", "discovery.service"],
            PLACE_TIMEOUT
        ),
        [loaded_on, loaded_on],
        "systemd started discovery with hello"
    );
    fltctl_ok(&flt, 0, &["stop", "--block-attempts=10", "hello.service"]);
    wait_for(
        "hello and discovery inactive in systemd and fltctl",
        PLACE_TIMEOUT,
        || {
            let rows = list_units(&flt, 1)?;
            let systemd: Vec<String> = ["hello.service", "discovery.service"]
                .iter()
                .map(|u| flt.unit_state(loaded_on, u))
                .collect();
            if systemd.iter().all(|s| s != "active")
                && rows.len() == 2
                && rows.iter().all(|r| r.active != "active")
            {
                Ok(())
            } else {
                Err(format!("systemd {systemd:?}; fltctl {rows:?}"))
            }
        },
    );
}
