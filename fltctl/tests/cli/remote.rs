//! status, journal and ssh: the programs fltctl runs, locally or through OpenSSH.

use super::harness::*;
use fltctl::context::Host;

fn on(local: Option<&str>, stdin_tty: bool) -> Run {
    Run {
        host: Host {
            local_machine_id: local.map(String::from),
            stdin_is_tty: stdin_tty,
            home: Some("/home/u".to_string()),
            ..Host::default()
        },
        ..Run::default()
    }
}

fn ssh_prefix(port: &str) -> Vec<String> {
    [
        "ssh",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "UserKnownHostsFile=/home/u/.fltctl/known_hosts",
        "-o",
        "StrictHostKeyChecking=ask",
        "-p",
        port,
        "-l",
        "core",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn status_runs_systemctl_locally_on_this_machine() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    let mut run = on(Some(M1), false);
    run.exit_code = 3;
    let o = run.go(&api, &["status", "a.service"]);
    assert_eq!(o.code, 3, "the exit code is systemctl's");
    assert_eq!(o.calls, [["systemctl", "status", "-l", "a.service"]]);
}

#[test]
fn status_runs_over_ssh_on_another_machine() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    api.unit("b.service", HELLO, "loaded", "loaded");
    let o = on(Some(M2), false).go(&api, &["status", "--ssh-port=2222", "a.service", "b"]);
    assert_eq!(o.code, 0, "{}", o.err);
    let mut expect = ssh_prefix("2222");
    expect.extend([
        "172.17.8.103".to_string(),
        "systemctl status -l a.service".to_string(),
    ]);
    assert_eq!(o.calls[0], expect);
    assert_eq!(o.calls.len(), 2);
    // The known-hosts file's directory is prepared for ssh (by the runner, not created here).
    assert_eq!(o.dirs[0], std::path::Path::new("/home/u/.fltctl"));
    // A blank line separates the units.
    assert_eq!(o.out, "\n");
}

#[test]
fn status_stops_at_the_first_failure_and_checks_units() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    api.unit("b.service", HELLO, "launched", "launched");
    api.unit("i.service", HELLO, "inactive", "inactive");
    let mut run = on(None, false);
    run.exit_code = 4;
    let o = run.go(&api, &["status", "a.service", "b.service"]);
    assert_eq!((o.code, o.calls.len()), (4, 1));
    let o = fltctl(&api, &["status", "x.service"]);
    assert_eq!(
        (o.code, o.err.as_str()),
        (1, "Unit x.service does not exist.\n")
    );
    let o = fltctl(&api, &["status", "i.service"]);
    assert_eq!(
        (o.code, o.err.as_str()),
        (1, "Unit i.service does not appear to be loaded.\n")
    );
}

#[test]
fn status_of_a_global_unit_covers_each_machine() {
    let api = cluster();
    api.unit("g.service", GLOBAL, "launched", "");
    let o = on(Some(M1), false).go(&api, &["status", "g.service"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.calls.len(), 2);
    assert_eq!(o.calls[0], ["systemctl", "status", "-l", "g.service"]);
    assert_eq!(o.calls[1].last().unwrap(), "systemctl status -l g.service");
}

#[test]
fn journal_command_lines() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    let o = on(Some(M1), false).go(&api, &["journal", "a"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.calls,
        [[
            "journalctl",
            "--unit",
            "a.service",
            "--no-pager",
            "-n",
            "10",
            "--output",
            "short"
        ]]
    );
    for follow in ["-f", "--f", "--follow"] {
        let o = on(None, true).go(
            &api,
            &[
                "journal",
                "--sudo",
                follow,
                "--lines=5",
                "--output",
                "json",
                "a.service",
            ],
        );
        assert_eq!(o.code, 0, "{follow}: {}", o.err);
        let argv = &o.calls[0];
        assert!(argv.contains(&"-t".to_string()), "{argv:?}");
        assert_eq!(
            argv.last().unwrap(),
            "sudo journalctl --unit a.service --no-pager -n 5 --output json -f"
        );
    }
}

#[test]
fn journal_refusals() {
    let api = cluster();
    api.unit("g.service", GLOBAL, "launched", "");
    api.unit("i.service", HELLO, "inactive", "inactive");
    for (args, message) in [
        (&["journal"][..], "One unit file must be provided.\n"),
        (&["journal", "a", "b"], "One unit file must be provided.\n"),
        (&["journal", "x"], "Unit x.service does not exist.\n"),
        (
            &["journal", "g.service"],
            "Unable to retrieve journal of global unit g.service.\n",
        ),
        (
            &["journal", "i.service"],
            "Unit i.service does not appear to be running.\n",
        ),
    ] {
        let o = fltctl(&api, args);
        assert_eq!((o.code, o.err.as_str()), (1, message), "{args:?}");
    }
}

#[test]
fn ssh_to_a_machine_by_id_prefix_or_unit() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    let o = on(None, true).go(&api, &["ssh", "2222"]);
    assert_eq!(o.code, 0, "{}", o.err);
    let mut expect = ssh_prefix("22");
    expect.extend(["-t".to_string(), "172.17.8.104".to_string()]);
    assert_eq!(o.calls, [expect]);

    let o = on(None, true).go(
        &api,
        &[
            "ssh",
            "-A",
            "--ssh-port=2200",
            "a.service",
            "--",
            "ls",
            "-la",
        ],
    );
    let mut expect = ssh_prefix("2200");
    expect.extend(["-A", "172.17.8.103", "ls -la"].map(String::from));
    assert_eq!(o.calls, [expect]);

    let o = on(None, false).go(&api, &["ssh", "--unit", "a", "uptime"]);
    assert_eq!(o.calls[0].last().unwrap(), "uptime");
    let o = on(None, false).go(&api, &["ssh", "-m", "113f", "--", "echo", "hi"]);
    assert_eq!(
        o.calls[0][o.calls[0].len() - 2..],
        ["172.17.8.103", "echo hi"]
    );
}

#[test]
fn ssh_passes_user_timeout_and_host_key_settings() {
    let api = cluster();
    let o = on(None, false).go(
        &api,
        &[
            "--ssh-username=admin",
            "--strict-host-key-checking=false",
            "--ssh-timeout=2.5",
            "ssh",
            "113f",
            "true",
        ],
    );
    assert_eq!(
        o.calls[0].join(" "),
        "ssh -o ConnectTimeout=3 -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no \
         -p 22 -l admin 172.17.8.103 true"
    );
    let o = on(None, false).go(&api, &["--known-hosts-file=/etc/flt/kh", "ssh", "113f"]);
    assert!(o.calls[0].contains(&"UserKnownHostsFile=/etc/flt/kh".to_string()));
}

#[test]
fn ssh_lookup_errors() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    api.unit("g.service", GLOBAL, "launched", "");
    api.machine("113f0000000000000000000000000000", "10.0.0.9", &[]);
    // A unit named like a machine prefix.
    api.unit("2222.service", HELLO, "launched", "launched");
    for (args, message) in [
        (
            &["ssh", "-m", "x", "-u", "a"][..],
            "Both machine and unit flags provided, please specify only one.\n",
        ),
        (
            &["ssh", "-m", "113f"],
            "Unable to proceed: found more than one machine\n",
        ),
        (
            &["ssh", "-m", "ffff"],
            "Unable to proceed: machine does not exist\n",
        ),
        (
            &["ssh", "-u", "g.service"],
            "Unable to proceed: global units unsupported\n",
        ),
        (
            &["ssh", "-u", "nope"],
            "Unable to proceed: unit does not exist\n",
        ),
        (
            &["ssh", "zzz"],
            "Unable to proceed: could not find matching unit or machine\n",
        ),
        (
            &["ssh", "2222"],
            "Unable to proceed: ambiguous argument, both machine and unit found for `2222`.\nPlease use flag `-m` or `-u` to refine the search\n",
        ),
        (
            &["ssh"],
            "Unable to proceed: one machine or unit must be provided\n",
        ),
    ] {
        let o = fltctl(&api, args);
        assert_eq!((o.code, o.err.as_str()), (1, message), "{args:?}");
        assert!(o.calls.is_empty());
    }
    api.machine("eeee0000000000000000000000000000", "", &[]);
    let o = fltctl(&api, &["ssh", "-m", "eeee"]);
    assert_eq!(
        (o.code, o.err.as_str()),
        (1, "Could not determine address of machine.\n")
    );
}

#[test]
fn ssh_runs_a_command_for_this_machine_locally() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    let mut run = on(Some(M1), true);
    run.exit_code = 7;
    let o = run.go(
        &api,
        &["ssh", "a.service", "systemctl", "is-active", "a.service"],
    );
    assert_eq!(o.code, 7);
    assert_eq!(o.calls, [["sh", "-c", "systemctl is-active a.service"]]);
    // A login shell still goes through ssh.
    let o = on(Some(M1), true).go(&api, &["ssh", "a.service"]);
    assert_eq!(o.calls[0][0], "ssh");
}
