//! fltctl end to end: the real `fltctl` binary run inside real test hosts against real fltd,
//! following fleet's functional tests of the client (spec §9: TestUnitRunnable, TestUnitSubmit,
//! TestUnitLoad, TestUnitStart, TestUnit{Submit,Load,Start}Replace, TestUnitRestart,
//! TestUnitCat, TestListUnitFilesOrder) and snapshotting every table and message (spec §6).
//!
//! Outputs are compared byte for byte with fleetctl's text after normalising what varies per
//! run: each host's machine ID becomes `<hN-id>`, its short ID `<hN-short>` and its IP
//! `<hN-ip>`. The test hosts' IPs are `10.213.0.(11+i)` and machine IDs always 32 hex digits,
//! so the tabwriter padding in the expected text is the padding of the real values. Each test
//! boots one 2-host cluster and checks the hosts' real systemd state next to fltctl's words.

use std::time::Duration;

use flt_tests::fltcluster::{FltCluster, FltClusterConfig, wait_for};

/// fleet's `functional/fixtures/units/hello.service` (already in serialized form).
const HELLO: &str =
    "[Service]\nExecStart=/bin/bash -c \"while true; do echo Hello, World!; sleep 1; done\"\n";
/// Its SHA-1 (`sha1sum` of the text above): the HASH column.
const HELLO_SHA1: &str = "3750b3e9f3962a56c7582929426e9abb012754cf";
/// fleet's `hello@.service` fixture.
const HELLO_TEMPLATE: &str =
    "[Service]\nExecStart=/bin/bash -c \"while true; do echo Hello, World %i!; sleep 1; done\"\n";
/// Where the tests keep unit files inside the hosts (fltctl runs in this directory).
const UNITS: &str = "/root/units";

/// A normalised fltctl result.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs fltctl in the hosts and normalises machine IDs and IPs.
struct Ctl<'a> {
    flt: &'a FltCluster,
}

impl<'a> Ctl<'a> {
    fn new(flt: &'a FltCluster) -> Self {
        Ctl { flt }
    }

    /// fltctl on host `host` in [`UNITS`].
    fn run(&self, host: usize, args: &[&str]) -> Out {
        self.run_in(host, UNITS, args)
    }

    fn run_in(&self, host: usize, dir: &str, args: &[&str]) -> Out {
        let out = self.flt.fltctl_in(host, dir, args);
        Out {
            code: out.code,
            stdout: self.normalise(&out.stdout),
            stderr: self.normalise(&out.stderr),
        }
    }

    fn normalise(&self, text: &str) -> String {
        let mut text = text.to_string();
        for i in 0..self.flt.hosts() {
            let host = self.flt.host(i);
            let id = host.machine_id();
            text = text.replace(id, &format!("<h{}-id>", i + 1));
            text = text.replace(&id[..8], &format!("<h{}-short>", i + 1));
            text = text.replace(&host.ip().to_string(), &format!("<h{}-ip>", i + 1));
        }
        text
    }

    /// Runs and asserts the exit code, stdout and stderr exactly.
    fn expect(&self, host: usize, args: &[&str], code: i32, stdout: &str, stderr: &str) -> Out {
        let out = self.run(host, args);
        assert_eq!(
            out,
            Out {
                code,
                stdout: stdout.to_string(),
                stderr: stderr.to_string()
            },
            "fltctl {} on h{}",
            args.join(" "),
            host + 1
        );
        out
    }

    /// Host indexes sorted by machine ID: the row order of list-machines and list-units.
    fn by_machine_id(&self) -> Vec<usize> {
        let mut hosts: Vec<usize> = (0..self.flt.hosts()).collect();
        hosts.sort_by_key(|&i| self.flt.host(i).machine_id().to_string());
        hosts
    }
}

/// `113f16a7.../172.17.8.103`, normalised.
fn legend(host: usize) -> String {
    format!("<h{n}-short>.../<h{n}-ip>", n = host + 1)
}

/// The `--full` legend, normalised.
fn full_legend(host: usize) -> String {
    format!("<h{n}-id>/<h{n}-ip>", n = host + 1)
}

/// The host a normalised legend names (`<h2-short>.../<h2-ip>` → 1).
fn host_of_legend(text: &str) -> usize {
    let n: usize = text
        .strip_prefix("<h")
        .and_then(|rest| rest.split('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no host in legend {text:?}"));
    n - 1
}

/// systemd's `LoadState` of `unit` on host `host`.
fn load_state(flt: &FltCluster, host: usize, unit: &str) -> String {
    let out = flt.exec(
        host,
        &["systemctl", "show", "-p", "LoadState", "--value", unit],
    );
    out.stdout.trim().to_string()
}

/// systemd's property `prop` of `unit` on host `host`.
fn systemd_property(flt: &FltCluster, host: usize, unit: &str, prop: &str) -> String {
    let out = flt.exec(host, &["systemctl", "show", "-p", prop, "--value", unit]);
    out.stdout.trim().to_string()
}

fn boot() -> Option<FltCluster> {
    if !flt_tests::testhost::require_hosts() {
        return None;
    }
    let flt = FltCluster::start(FltClusterConfig::new(2));
    for host in 0..flt.hosts() {
        flt.write_file(host, &format!("{UNITS}/hello.service"), HELLO);
        flt.write_file(host, &format!("{UNITS}/hello@.service"), HELLO_TEMPLATE);
    }
    Some(flt)
}

fn instances(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("hello@{i}.service")).collect()
}

/// `Unit <name> <state>` lines, one per unit.
fn unit_lines(units: &[String], state: &str) -> String {
    units
        .iter()
        .map(|u| format!("Unit {u} {state}\n"))
        .collect()
}

/// Splits `Unit <name> <state> on <legend>` lines into (name, host), checking their form.
fn placed_lines(text: &str, state: &str) -> Vec<(String, usize)> {
    text.lines()
        .map(|line| {
            let rest = line
                .strip_prefix("Unit ")
                .unwrap_or_else(|| panic!("{line:?} in {text:?}"));
            let (name, rest) = rest.split_once(' ').unwrap_or_else(|| panic!("{line:?}"));
            let where_ = rest
                .strip_prefix(&format!("{state} on "))
                .unwrap_or_else(|| panic!("{line:?} is not `Unit <n> {state} on <legend>`"));
            let host = host_of_legend(where_);
            assert_eq!(where_, legend(host), "{line:?}");
            (name.to_string(), host)
        })
        .collect()
}

/// Waits until `list-unit-files --no-legend --full --fields unit,dstate,state` on `host`
/// prints `expected`.
fn wait_unit_files(ctl: &Ctl<'_>, host: usize, expected: &str) {
    wait_for(
        &format!("list-unit-files to print {expected:?}"),
        Duration::from_secs(15),
        || {
            let out = ctl.run(
                host,
                &[
                    "list-unit-files",
                    "--no-legend",
                    "--full",
                    "--fields",
                    "unit,dstate,state",
                ],
            );
            if out.code == 0 && out.stdout == expected {
                Ok(())
            } else {
                Err(format!("{out:?}"))
            }
        },
    );
}

/// Waits until `list-units --no-legend` on host 0 prints `expected`.
fn wait_list_units(ctl: &Ctl<'_>, expected: &str) {
    wait_for(
        &format!("list-units to print {expected:?}"),
        Duration::from_secs(15),
        || {
            let out = ctl.run(0, &["list-units", "--no-legend"]);
            if out.code == 0 && out.stdout == expected {
                Ok(())
            } else {
                Err(format!("{out:?}"))
            }
        },
    );
}

/// The list-units rows of units placed on hosts (`ACTIVE SUB` given), sorted by (unit, machine).
fn list_units_rows(ctl: &Ctl<'_>, placed: &[(String, usize)], active_sub: &str) -> String {
    let order = ctl.by_machine_id();
    let mut rows: Vec<(String, usize)> = placed.to_vec();
    rows.sort_by_key(|(name, host)| {
        (
            name.clone(),
            order.iter().position(|h| h == host).unwrap_or(0),
        )
    });
    rows.iter()
        .map(|(name, host)| format!("{name}\t{}\t{active_sub}\n", legend(*host)))
        .collect()
}

/// TestUnitRunnable, TestUnitCat, TestUnitRestart, and the start/stop/unload/destroy messages.
#[test]
fn runnable_cat_restart() {
    let Some(flt) = boot() else { return };
    let ctl = Ctl::new(&flt);

    // TestUnitRunnable: a blocking start runs hello.service on exactly one machine.
    let out = ctl.run(0, &["start", "hello.service"]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    let placed = placed_lines(
        out.stdout
            .strip_prefix("Unit hello.service inactive\n")
            .unwrap_or_else(|| panic!("{out:?}")),
        "launched",
    );
    assert_eq!(placed.len(), 1, "{out:?}");
    let host = placed[0].1;
    assert_eq!(flt.active_on("hello.service"), vec![host]);
    wait_list_units(
        &ctl,
        &format!("hello.service\t{}\tactive\trunning\n", legend(host)),
    );
    // A second start of a launched unit does nothing and prints nothing.
    ctl.expect(0, &["start", "hello.service"], 0, "", "");

    // TestUnitCat: the unit file comes back as submitted (fleet's fixture is normalised).
    ctl.expect(1, &["cat", "hello.service"], 0, HELLO, "");
    ctl.expect(1, &["cat", "hello"], 0, HELLO, "");

    // TestUnitRestart: a launched unit is stopped and started again (a new main process).
    let pid_before = systemd_property(&flt, host, "hello.service", "MainPID");
    ctl.expect(
        1,
        &["restart", "hello.service"],
        0,
        &format!(
            "Unit hello.service loaded on {l}\nUnit hello.service launched on {l}\n",
            l = legend(host)
        ),
        "",
    );
    wait_for(
        "hello.service active again",
        Duration::from_secs(15),
        || match flt.active_on("hello.service").as_slice() {
            [h] if *h == host => Ok(()),
            other => Err(format!("active on {other:?}")),
        },
    );
    let pid_after = systemd_property(&flt, host, "hello.service", "MainPID");
    assert_ne!(pid_before, pid_after, "restart kept the same process");

    // stop: stdout has the wait, stderr the summary; systemd really stopped it.
    ctl.expect(
        0,
        &["stop", "hello.service"],
        0,
        &format!("Unit hello.service loaded on {}\n", legend(host)),
        "Successfully stopped units [hello.service].\n",
    );
    assert_eq!(flt.unit_state(host, "hello.service"), "inactive");
    assert_eq!(load_state(&flt, host, "hello.service"), "loaded");
    // Stopping a stopped unit skips it.
    ctl.expect(
        0,
        &["stop", "hello.service"],
        0,
        "",
        "Successfully stopped units [].\n",
    );

    // TestUnitRestart from loaded: restart starts it.
    ctl.expect(
        1,
        &["restart", "hello.service"],
        0,
        &format!("Unit hello.service launched on {}\n", legend(host)),
        "",
    );
    wait_for(
        "hello.service active after restart from loaded",
        Duration::from_secs(15),
        || match flt.active_on("hello.service").as_slice() {
            [h] if *h == host => Ok(()),
            other => Err(format!("active on {other:?}")),
        },
    );

    // unload: the unit leaves systemd on its machine.
    let out = ctl.run(0, &["unload", "hello.service"]);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (0, "Successfully unloaded units [hello.service].\n"),
        "{out:?}"
    );
    assert!(
        out.stdout == "Unit hello.service inactive\n"
            || out.stdout == format!("Unit hello.service inactive on {}\n", legend(host)),
        "{out:?}"
    );
    wait_for(
        "hello.service unloaded",
        Duration::from_secs(15),
        || match load_state(&flt, host, "hello.service").as_str() {
            "not-found" => Ok(()),
            other => Err(other.to_string()),
        },
    );
    // restart of an inactive unit: a message, exit code unaffected.
    ctl.expect(
        0,
        &["restart", "hello.service"],
        0,
        "",
        "Unable to restart unit hello.service in state inactive\n",
    );
    ctl.expect(
        0,
        &["stop", "hello.service"],
        1,
        "",
        "Unable to stop unit hello.service in state inactive\n",
    );

    // destroy: gone from the registry.
    ctl.expect(
        0,
        &["destroy", "hello.service"],
        0,
        "Destroyed hello.service\n",
        "",
    );
    ctl.expect(0, &["list-unit-files", "--no-legend"], 0, "", "");
    ctl.expect(
        0,
        &["destroy", "hello.service"],
        0,
        "",
        "Units not found in registry\n",
    );
    ctl.expect(
        1,
        &["cat", "hello.service"],
        1,
        "",
        "Unit hello.service not found\n",
    );

    // TestUnitRestart with instances: start hello@1..3, restart them, stop, restart again.
    let units = instances(1..=3);
    let args: Vec<String> = std::iter::once("start".to_string())
        .chain(units.iter().cloned())
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ctl.run(0, &args);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    let created = unit_lines(&units, "inactive");
    let launched = placed_lines(
        out.stdout
            .strip_prefix(created.as_str())
            .unwrap_or_else(|| panic!("{out:?}")),
        "launched",
    );
    assert_eq!(launched.len(), 3, "{out:?}");
    for (name, host) in &launched {
        assert_eq!(flt.active_on(name), vec![*host], "{name}");
    }
    let mut restart_args = vec!["restart"];
    restart_args.extend(units.iter().map(String::as_str));
    let out = ctl.run(1, &restart_args);
    let expected: String = launched
        .iter()
        .map(|(n, h)| {
            format!(
                "Unit {n} loaded on {l}\nUnit {n} launched on {l}\n",
                l = legend(*h)
            )
        })
        .collect();
    assert_eq!(
        out,
        Out {
            code: 0,
            stdout: expected,
            stderr: String::new()
        }
    );
    for (name, host) in &launched {
        flt.wait_active_on(name, &[*host], Duration::from_secs(15));
    }
    for (name, host) in &launched {
        ctl.expect(
            0,
            &["stop", name],
            0,
            &format!("Unit {name} loaded on {}\n", legend(*host)),
            &format!("Successfully stopped units [{name}].\n"),
        );
    }
    for (name, _) in &launched {
        assert!(flt.active_on(name).is_empty(), "{name} still active");
    }
    let out = ctl.run(1, &restart_args);
    let expected: String = launched
        .iter()
        .map(|(n, h)| format!("Unit {n} launched on {}\n", legend(*h)))
        .collect();
    assert_eq!(
        out,
        Out {
            code: 0,
            stdout: expected,
            stderr: String::new()
        }
    );
    for (name, host) in &launched {
        flt.wait_active_on(name, &[*host], Duration::from_secs(15));
    }
}

/// `<cmd> units/hello@1.service …`: fleet's `launchUnitsCmd` (instances of the local template,
/// given with a directory).
fn launch_args(cmd: &str, units: &[String]) -> Vec<String> {
    std::iter::once(cmd.to_string())
        .chain(units.iter().map(|u| format!("units/{u}")))
        .collect()
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `<unit>\tinactive\tinactive` rows of submitted units.
fn submitted_rows(units: &[String]) -> String {
    units
        .iter()
        .map(|u| format!("{u}\tinactive\tinactive\n"))
        .collect()
}

/// TestUnitSubmit, TestUnitLoad, TestUnitStart (fleet's `doMultipleUnitsCmd`, twice each) and
/// TestListUnitFilesOrder.
#[test]
fn submit_load_start_batches() {
    let Some(flt) = boot() else { return };
    let ctl = Ctl::new(&flt);

    // TestUnitSubmit: 9 instances of the local template; destroy each; again.
    let units = instances(1..=9);
    for _round in 0..2 {
        let args = launch_args("submit", &units);
        let out = ctl.run_in(0, "/root", &as_strs(&args));
        let created = Out {
            code: 0,
            stdout: unit_lines(&units, "inactive"),
            stderr: String::new(),
        };
        assert_eq!(out, created);
        // Submitting the same units again creates nothing and prints nothing.
        let out = ctl.run_in(1, "/root", &as_strs(&args));
        let nothing = Out {
            code: 0,
            stdout: String::new(),
            stderr: String::new(),
        };
        assert_eq!(out, nothing);
        wait_unit_files(&ctl, 1, &submitted_rows(&units));
        for unit in &units {
            ctl.expect(0, &["destroy", unit], 0, &format!("Destroyed {unit}\n"), "");
        }
        wait_unit_files(&ctl, 1, "");
    }

    // TestUnitLoad: 6 instances loaded (in systemd, not running); unload each; again.
    let units = instances(1..=6);
    for round in 0..2 {
        let args = launch_args("load", &units);
        let out = ctl.run_in(1, "/root", &as_strs(&args));
        assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
        // The second round finds the (unloaded) units in the registry: nothing is created.
        let created = if round == 0 {
            unit_lines(&units, "inactive")
        } else {
            String::new()
        };
        let placed = placed_lines(
            out.stdout
                .strip_prefix(created.as_str())
                .unwrap_or_else(|| panic!("{out:?}")),
            "loaded",
        );
        let mut names: Vec<String> = placed.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        let mut want = units.clone();
        want.sort();
        assert_eq!(names, want, "{out:?}");
        for (name, host) in &placed {
            assert_eq!(load_state(&flt, *host, name), "loaded", "{name}");
            assert_eq!(flt.unit_state(*host, name), "inactive", "{name}");
            assert_eq!(load_state(&flt, 1 - *host, name), "not-found", "{name}");
        }
        wait_list_units(&ctl, &list_units_rows(&ctl, &placed, "inactive\tdead"));
        for (name, host) in &placed {
            let out = ctl.run(0, &["unload", name]);
            assert_eq!(
                (out.code, out.stderr.clone()),
                (0, format!("Successfully unloaded units [{name}].\n")),
                "{out:?}"
            );
            assert!(
                out.stdout == format!("Unit {name} inactive\n")
                    || out.stdout == format!("Unit {name} inactive on {}\n", legend(*host)),
                "{out:?}"
            );
        }
        wait_list_units(&ctl, "");
        for (name, host) in &placed {
            wait_for(
                &format!("{name} unloaded from h{}", host + 1),
                Duration::from_secs(15),
                || match load_state(&flt, *host, name).as_str() {
                    "not-found" => Ok(()),
                    other => Err(other.to_string()),
                },
            );
        }
    }
    for unit in &units {
        ctl.expect(0, &["destroy", unit], 0, &format!("Destroyed {unit}\n"), "");
    }

    // TestUnitStart: 3 instances started; stop each; again. No "Error" anywhere.
    let units = instances(1..=3);
    for round in 0..2 {
        let args = launch_args("start", &units);
        let out = ctl.run_in(0, "/root", &as_strs(&args));
        assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
        // The first round creates the units; the second finds them (stopped, desired loaded).
        let created = if round == 0 {
            unit_lines(&units, "inactive")
        } else {
            String::new()
        };
        let placed = placed_lines(
            out.stdout
                .strip_prefix(created.as_str())
                .unwrap_or_else(|| panic!("{out:?}")),
            "launched",
        );
        assert_eq!(placed.len(), 3, "{out:?}");
        for (name, host) in &placed {
            assert_eq!(flt.active_on(name), vec![*host], "{name}");
        }
        wait_list_units(&ctl, &list_units_rows(&ctl, &placed, "active\trunning"));
        for (name, host) in &placed {
            ctl.expect(
                1,
                &["stop", name],
                0,
                &format!("Unit {name} loaded on {}\n", legend(*host)),
                &format!("Successfully stopped units [{name}].\n"),
            );
            assert_eq!(flt.unit_state(*host, name), "inactive", "{name}");
        }
        wait_list_units(&ctl, &list_units_rows(&ctl, &placed, "inactive\tdead"));
    }
    for unit in &units {
        ctl.expect(0, &["destroy", unit], 0, &format!("Destroyed {unit}\n"), "");
        wait_for(
            &format!("{unit} gone from systemd"),
            Duration::from_secs(15),
            || {
                let loaded: Vec<usize> = (0..2)
                    .filter(|&h| load_state(&flt, h, unit) != "not-found")
                    .collect();
                if loaded.is_empty() {
                    Ok(())
                } else {
                    Err(format!("still loaded on {loaded:?}"))
                }
            },
        );
    }

    // TestListUnitFilesOrder: hello@01..20 submitted one by one are listed in name order.
    let mut names = Vec::new();
    for i in (1..=20).rev() {
        let name = format!("hello@{i:02}.service");
        ctl.expect(
            0,
            &["submit", &name],
            0,
            &format!("Unit {name} inactive\n"),
            "",
        );
        names.push(name);
    }
    names.sort();
    let listed: String = names.iter().map(|n| format!("{n}\n")).collect();
    ctl.expect(
        1,
        &["list-unit-files", "--no-legend", "--fields", "unit"],
        0,
        &listed,
        "",
    );
}

/// TestUnitSubmitReplace, TestUnitLoadReplace, TestUnitStartReplace (fleet's
/// `replaceUnitCommon`): launch instances with `<cmd>`, write a changed `/tmp/hello@i.service`
/// for each, run `<cmd> --replace` on it; the cluster's unit file (`cat`) and, for load and
/// start, the unit systemd runs on the host change; then everything is destroyed.
#[test]
fn replace_flows() {
    let Some(flt) = boot() else { return };
    let ctl = Ctl::new(&flt);
    let replaced = HELLO.replace("sleep 1", "sleep 2");
    // fleet used 9 units per command; 3 exercise the same paths in a third of the time.
    let units = instances(1..=3);
    for cmd in ["submit", "load", "start"] {
        let args = launch_args(cmd, &units);
        let out = ctl.run_in(0, "/root", &as_strs(&args));
        assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{cmd}: {out:?}");
        for (i, unit) in units.iter().enumerate() {
            let host = i % 2;
            let before = ctl.run(host, &["cat", unit]);
            assert_eq!(before.stdout, HELLO_TEMPLATE, "{unit}");
            let file = format!("/tmp/{unit}");
            flt.write_file(host, &file, &replaced);
            let out = ctl.run(host, &[cmd, "--replace", &file]);
            assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{cmd}: {out:?}");
            let rest = out
                .stdout
                .strip_prefix(&format!("Unit {unit} inactive\n"))
                .unwrap_or_else(|| panic!("{cmd} --replace {file}: {out:?}"));
            ctl.expect(1 - host, &["cat", unit], 0, &replaced, "");
            let state = match cmd {
                "submit" => {
                    assert_eq!(rest, "", "{out:?}");
                    continue;
                }
                "load" => "loaded",
                _ => "launched",
            };
            let placed = placed_lines(rest, state);
            assert_eq!(placed.len(), 1, "{out:?}");
            let on = placed[0].1;
            let exec_start = systemd_property(&flt, on, unit, "ExecStart");
            assert!(
                exec_start.contains("sleep 2; done"),
                "{unit} on h{}: systemd runs {exec_start:?}",
                on + 1
            );
            if cmd == "start" {
                assert_eq!(flt.active_on(unit), vec![on], "{unit}");
            } else {
                assert_eq!(flt.unit_state(on, unit), "inactive", "{unit}");
                assert_eq!(load_state(&flt, on, unit), "loaded", "{unit}");
            }
            // Replacing with the same file again: nothing to do.
            ctl.expect(
                host,
                &[cmd, "--replace", &file],
                0,
                &format!("Found same Unit({unit}) in Registry, nothing to do\n"),
                "",
            );
        }
        for (i, unit) in units.iter().enumerate() {
            let file = format!("/tmp/{unit}");
            ctl.expect(
                i % 2,
                &["destroy", &file],
                0,
                &format!("Destroyed {unit}\n"),
                "",
            );
        }
        wait_unit_files(&ctl, 0, "");
        for unit in &units {
            wait_for(
                &format!("{unit} gone from systemd"),
                Duration::from_secs(15),
                || {
                    let loaded: Vec<usize> = (0..2)
                        .filter(|&h| load_state(&flt, h, unit) != "not-found")
                        .collect();
                    if loaded.is_empty() {
                        Ok(())
                    } else {
                        Err(format!("still loaded on {loaded:?}"))
                    }
                },
            );
        }
    }
}

/// A unit that stays loaded.
const LOADED: &str = "[Service]\nExecStart=/bin/sleep 100000\n";
const LOADED_SHA1: &str = "f2c95611864379c4747edbab79167477cc7566d3";
/// A unit that is only submitted; it has a description.
const SUBMITTED: &str =
    "[Unit]\nDescription=Submitted only\n\n[Service]\nExecStart=/bin/sleep 100000\n";
const SUBMITTED_SHA1: &str = "9a9431274c20881d0c6cfa588f331e1cc75c34b4";

/// The one placement of `unit` printed by a blocking load/start after its creation line.
fn placed_after_creation(out: &Out, unit: &str, state: &str) -> usize {
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    let rest = out
        .stdout
        .strip_prefix(&format!("Unit {unit} inactive\n"))
        .unwrap_or_else(|| panic!("{out:?}"));
    let placed = placed_lines(rest, state);
    assert_eq!(placed.len(), 1, "{out:?}");
    placed[0].1
}

/// Snapshots of every table and message against real fltd: list-machines (with metadata),
/// list-unit-files, list-units (default, --fields, --no-legend, --full/-l), cat, status and
/// journal of a unit on the local machine, the error messages and exit codes.
#[test]
fn tables_and_messages() {
    if !flt_tests::testhost::require_hosts() {
        return;
    }
    let mut config = FltClusterConfig::new(2);
    config.metadata = vec!["role=web,az=b".to_string(), String::new()];
    let flt = FltCluster::start(config);
    let ctl = Ctl::new(&flt);
    for host in 0..flt.hosts() {
        flt.write_file(host, &format!("{UNITS}/hello.service"), HELLO);
        flt.write_file(host, &format!("{UNITS}/hello@.service"), HELLO_TEMPLATE);
        flt.write_file(host, &format!("{UNITS}/loaded.service"), LOADED);
        flt.write_file(host, &format!("{UNITS}/sub.service"), SUBMITTED);
    }
    let order = ctl.by_machine_id();
    let metadata = |h: usize| if h == 0 { "az=b,role=web" } else { "-" };

    // list-machines: sorted by machine ID, metadata sorted by key, `-` for none.
    let rows: String = order
        .iter()
        .map(|&h| format!("<h{n}-short>...\t<h{n}-ip>\t{}\n", metadata(h), n = h + 1))
        .collect();
    ctl.expect(
        1,
        &["list-machines"],
        0,
        &format!("MACHINE\t\tIP\t\tMETADATA\n{rows}"),
        "",
    );
    ctl.expect(0, &["list-machines", "--no-legend"], 0, &rows, "");
    let full_rows: String = order
        .iter()
        .map(|&h| format!("<h{n}-id>\t<h{n}-ip>\t{}\n", metadata(h), n = h + 1))
        .collect();
    for flag in ["--full", "-l", "--l"] {
        ctl.expect(
            0,
            &["list-machines", flag],
            0,
            &format!("MACHINE\t\t\t\t\tIP\t\tMETADATA\n{full_rows}"),
            "",
        );
    }
    let meta_rows: String = order
        .iter()
        .map(|&h| format!("<h{n}-short>...\t{}\n", metadata(h), n = h + 1))
        .collect();
    ctl.expect(
        0,
        &["list-machines", "--fields", "machine,metadata"],
        0,
        &format!("MACHINE\t\tMETADATA\n{meta_rows}"),
        "",
    );
    ctl.expect(
        0,
        &["list-machines", "--fields", "machine,foo"],
        1,
        "",
        "Invalid key in output format: \"foo\"\n",
    );
    ctl.expect(
        0,
        &["list-units", "--fields", ""],
        1,
        "",
        "Must define output format\n",
    );
    // Empty cluster: the legend only.
    ctl.expect(0, &["list-units"], 0, "UNIT\tMACHINE\tACTIVE\tSUB\n", "");
    ctl.expect(
        0,
        &["list-unit-files"],
        0,
        "UNIT\tHASH\tDSTATE\tSTATE\tTARGET\n",
        "",
    );

    // One launched, one loaded, one submitted unit.
    let hello = placed_after_creation(
        &ctl.run(0, &["start", "hello.service"]),
        "hello.service",
        "launched",
    );
    let loaded =
        placed_after_creation(&ctl.run(0, &["load", "loaded"]), "loaded.service", "loaded");
    ctl.expect(
        0,
        &["submit", "sub.service"],
        0,
        "Unit sub.service inactive\n",
        "",
    );
    assert_eq!(flt.active_on("hello.service"), vec![hello]);
    assert_eq!(load_state(&flt, loaded, "loaded.service"), "loaded");
    assert!(flt.active_on("loaded.service").is_empty());

    let (hl, ll) = (legend(hello), legend(loaded));
    let h7 = &HELLO_SHA1[..7];
    let l7 = &LOADED_SHA1[..7];
    let s7 = &SUBMITTED_SHA1[..7];
    ctl.expect(
        1,
        &["list-unit-files"],
        0,
        &format!(
            "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n\
             hello.service\t{h7}\tlaunched\tlaunched\t{hl}\n\
             loaded.service\t{l7}\tloaded\t\tloaded\t\t{ll}\n\
             sub.service\t{s7}\tinactive\tinactive\t-\n"
        ),
        "",
    );
    ctl.expect(
        1,
        &["list-unit-files", "--full", "--no-legend"],
        0,
        &format!(
            "hello.service\t{HELLO_SHA1}\tlaunched\tlaunched\t{}\n\
             loaded.service\t{LOADED_SHA1}\tloaded\t\tloaded\t\t{}\n\
             sub.service\t{SUBMITTED_SHA1}\tinactive\tinactive\t-\n",
            full_legend(hello),
            full_legend(loaded)
        ),
        "",
    );
    ctl.expect(
        1,
        &["list-unit-files", "--full"],
        0,
        &format!(
            "UNIT\t\tHASH\t\t\t\t\t\tDSTATE\t\tSTATE\t\tTARGET\n\
             hello.service\t{HELLO_SHA1}\tlaunched\tlaunched\t{}\n\
             loaded.service\t{LOADED_SHA1}\tloaded\t\tloaded\t\t{}\n\
             sub.service\t{SUBMITTED_SHA1}\tinactive\tinactive\t-\n",
            full_legend(hello),
            full_legend(loaded)
        ),
        "",
    );
    ctl.expect(
        0,
        &["list-unit-files", "--fields", "unit,global,desc"],
        0,
        "UNIT\t\tGLOBAL\tDESC\n\
         hello.service\tfalse\t-\n\
         loaded.service\tfalse\t-\n\
         sub.service\tfalse\tSubmitted only\n",
        "",
    );
    ctl.expect(
        0,
        &[
            "list-unit-files",
            "--no-legend",
            "--fields",
            "unit,tmachine",
        ],
        0,
        &format!("hello.service\t{hl}\nloaded.service\t{ll}\nsub.service\t-\n"),
        "WARNING: The \"tmachine\" field is deprecated. Use \"target\" instead\n",
    );

    // list-units: submitted-only units are not listed; systemd's words are passed through.
    ctl.expect(
        1,
        &["list-units"],
        0,
        &format!(
            "UNIT\t\tMACHINE\t\t\tACTIVE\t\tSUB\n\
             hello.service\t{hl}\tactive\t\trunning\n\
             loaded.service\t{ll}\tinactive\tdead\n"
        ),
        "",
    );
    for flag in ["--full", "-l", "--l"] {
        ctl.expect(
            1,
            &["list-units", flag],
            0,
            &format!(
                "UNIT\t\tMACHINE\t\t\t\t\t\tACTIVE\t\tSUB\n\
                 hello.service\t{}\tactive\t\trunning\n\
                 loaded.service\t{}\tinactive\tdead\n",
                full_legend(hello),
                full_legend(loaded)
            ),
            "",
        );
    }
    ctl.expect(
        0,
        &["list-units", "--no-legend", "--fields", "unit,load,hash"],
        0,
        &format!("hello.service\tloaded\t{h7}\nloaded.service\tloaded\t{l7}\n"),
        "",
    );
    ctl.expect(
        0,
        &["list-units", "--fields", "unit,load,hash", "--full"],
        0,
        &format!(
            "UNIT\t\tLOAD\tHASH\n\
             hello.service\tloaded\t{HELLO_SHA1}\n\
             loaded.service\tloaded\t{LOADED_SHA1}\n"
        ),
        "",
    );

    // cat: the serialized unit, nothing added.
    ctl.expect(1, &["cat", "sub.service"], 0, SUBMITTED, "");
    ctl.expect(1, &["cat", "loaded"], 0, LOADED, "");
    ctl.expect(1, &["cat"], 1, "", "One unit file must be provided\n");
    ctl.expect(
        1,
        &["cat", "a", "b"],
        1,
        "",
        "One unit file must be provided\n",
    );
    ctl.expect(
        1,
        &["cat", "nosuch.service"],
        1,
        "",
        "Unit nosuch.service not found\n",
    );

    // status and journal run locally on the unit's machine.
    let out = ctl.run(hello, &["status", "hello.service"]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    let direct = flt.exec(hello, &["systemctl", "status", "-l", "hello.service"]);
    assert_eq!(
        out.stdout.lines().next(),
        direct.stdout.lines().next(),
        "{out:?}"
    );
    assert!(out.stdout.contains("Active: active (running)"), "{out:?}");
    assert!(out.stdout.contains("Loaded: loaded ("), "{out:?}");
    let out = ctl.run(loaded, &["status", "loaded.service"]);
    // systemctl status exits 3 for an inactive unit; fltctl passes its code on.
    assert_eq!((out.code, out.stderr.as_str()), (3, ""), "{out:?}");
    assert!(out.stdout.contains("Active: inactive (dead)"), "{out:?}");
    wait_for("hello.service logs", Duration::from_secs(10), || {
        let out = ctl.run(
            hello,
            &[
                "journal",
                "--lines",
                "2",
                "--output",
                "cat",
                "hello.service",
            ],
        );
        if out
            == (Out {
                code: 0,
                stdout: "Hello, World!\nHello, World!\n".to_string(),
                stderr: String::new(),
            })
        {
            Ok(())
        } else {
            Err(format!("{out:?}"))
        }
    });
    ctl.expect(
        0,
        &["status", "sub.service"],
        1,
        "",
        "Unit sub.service does not appear to be loaded.\n",
    );
    ctl.expect(
        0,
        &["journal", "sub.service"],
        1,
        "",
        "Unit sub.service does not appear to be running.\n",
    );
    ctl.expect(
        0,
        &["status", "nosuch.service"],
        1,
        "",
        "Unit nosuch.service does not exist.\n",
    );
    ctl.expect(
        0,
        &["journal", "nosuch"],
        1,
        "",
        "Unit nosuch.service does not exist.\n",
    );
    ctl.expect(
        0,
        &["journal", "a", "b"],
        1,
        "",
        "One unit file must be provided.\n",
    );

    // Creation errors.
    ctl.expect(
        0,
        &["start", "nosuch.service"],
        1,
        "",
        "Error creating units: unable to find Unit(nosuch.service) in Registry or on filesystem\n",
    );
    ctl.expect(
        0,
        &["submit", "foo@1.service"],
        1,
        "",
        "Error creating units: failed getting Unit(foo@1.service) from template: unable to find template Unit(foo@.service) in Registry or on filesystem\n",
    );
    flt.write_file(
        0,
        &format!("{UNITS}/broken.service"),
        "[Service\nExecStart=/bin/true\n",
    );
    ctl.expect(
        0,
        &["submit", "broken.service"],
        1,
        "",
        "Error creating units: failed getting Unit(broken.service) from file: line 1: unable to find end of section\n",
    );
    flt.write_file(
        0,
        &format!("{UNITS}/pinned.service"),
        "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nMachineID=abc\nGlobal=true\n",
    );
    ctl.expect(
        0,
        &["load", "pinned.service"],
        1,
        "",
        "Error creating units: MachineID cannot be used with Global\n",
    );
    flt.write_file(0, &format!("{UNITS}/bad!name.service"), LOADED);
    ctl.expect(
        0,
        &["submit", "bad!name.service"],
        1,
        "",
        "Error creating units: invalid character '!' in unit name\n",
    );
    // A template can be submitted but not started.
    ctl.expect(
        0,
        &["start", "hello@.service"],
        1,
        "Unit hello@.service inactive\n",
        "Error starting units: googleapi: Error 400: cannot activate template \"hello@.service\"\n",
    );
    ctl.expect(0, &["list-unit-files", "--no-legend", "--fields", "unit,dstate"], 0,
        "hello.service\tlaunched\nhello@.service\tinactive\nloaded.service\tloaded\nsub.service\tinactive\n", "");

    // Local files that differ from the registry.
    flt.write_file(0, "/root/other/hello.service", LOADED);
    flt.write_file(0, "/root/other/hello@.service", LOADED);
    ctl.expect(
        0,
        &["submit", "../other/hello.service"],
        0,
        "",
        "WARNING: Unit hello.service in registry differs from local unit file ../other/hello.service. Add --replace to override.\n",
    );
    ctl.expect(
        0,
        &["submit", "--replace", "../other/hello.service"],
        0,
        "",
        "Warning: can not replace Unit(hello.service) in state 'launched', use the appropriate command\n",
    );
    ctl.expect(
        0,
        &["submit", "--replace", "hello.service"],
        0,
        "Found same Unit(hello.service) in Registry, nothing to do\n",
        "",
    );
    ctl.expect(
        0,
        &["submit", "hello@7.service"],
        0,
        "Unit hello@7.service inactive\n",
        "",
    );
    ctl.expect(
        0,
        &["submit", "../other/hello@7.service"],
        0,
        "",
        "WARNING: Unit hello@7.service in registry differs from local template unit file ../other/hello@7.service. Add --replace to override.\n",
    );
    ctl.expect(
        0,
        &["submit", "--replace", "/root/nothere/x.service"],
        1,
        "",
        "Error creating units: unable to find Unit(x.service) in Registry or on filesystem\n",
    );

    // Blocking: a unit no machine can run times out after the attempts; --no-block triggers.
    flt.write_file(
        0,
        &format!("{UNITS}/nowhere.service"),
        "[Service]\nExecStart=/bin/sleep 100000\n\n[X-Fleet]\nMachineMetadata=role=nowhere\n",
    );
    ctl.expect(
        0,
        &["start", "--block-attempts=1", "nowhere.service"],
        1,
        "Unit nowhere.service inactive\n",
        "Error waiting for units: timed out waiting for unit nowhere.service to report state launched\n\
         Error waiting for unit states, exit status: timed out waiting for unit nowhere.service to report state launched\n",
    );
    flt.write_file(0, &format!("{UNITS}/nb.service"), LOADED);
    ctl.expect(
        0,
        &["start", "--no-block", "nb.service"],
        0,
        "Unit nb.service inactive\nTriggered unit nb.service start\nTriggered unit nb.service start\n",
        "",
    );
    flt.wait_active_on_one("nb.service");

    // stop / unload / destroy messages.
    ctl.expect(0, &["stop"], 0, "", "No units given\n");
    ctl.expect(
        0,
        &["stop", "nosuch.service"],
        0,
        "",
        "Units not found in registry\n",
    );
    ctl.expect(
        0,
        &["unload", "nosuch.service"],
        0,
        "",
        "Units not found in registry\n",
    );
    ctl.expect(
        0,
        &["destroy", "nosuch.service"],
        0,
        "",
        "Units not found in registry\n",
    );
    ctl.expect(
        0,
        &["stop", "sub.service"],
        1,
        "",
        "Unable to stop unit sub.service in state inactive\n",
    );
    ctl.expect(
        0,
        &["stop", "--no-block", "hello.service"],
        0,
        "Triggered unit hello.service stop\n",
        "Successfully stopped units [hello.service].\n",
    );
    flt.wait_active_on("hello.service", &[], Duration::from_secs(15));
    ctl.expect(
        0,
        &[
            "destroy",
            "hello.service",
            "loaded.service",
            "sub.service",
            "nosuch.service",
        ],
        0,
        "Destroyed hello.service\nDestroyed loaded.service\nDestroyed sub.service\n",
        "",
    );
    wait_for(
        "hello.service and loaded.service gone from systemd",
        Duration::from_secs(15),
        || {
            let left: Vec<(usize, &str)> = [(hello, "hello.service"), (loaded, "loaded.service")]
                .into_iter()
                .filter(|(h, u)| load_state(&flt, *h, u) != "not-found")
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    );

    // verify and version.
    ctl.expect(
        0,
        &["verify", "nb.service"],
        2,
        "",
        "WARNING: The signed/verified units feature is DEPRECATED and cannot be used.\n",
    );
    let out = ctl.run(0, &["version"]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    assert!(
        out.stdout.starts_with("fltctl version ") && out.stdout.ends_with('\n'),
        "{out:?}"
    );
}
