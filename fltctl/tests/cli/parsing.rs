//! The command line: help, version, usage errors and their exit code, prefixes, env variables,
//! completions and the manual page.

use super::api_double::ApiDouble;
use super::harness::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs without the harness's `--endpoint`.
fn bare(args: &[&str], env_vars: Vec<(String, String)>) -> Outcome {
    let api = ApiDouble::start();
    let run = Run {
        env: env_vars,
        ..Run::default()
    };
    // The harness always adds --endpoint; an empty one is replaced by the arguments' own.
    let clock = VirtualClock::default();
    let runner = RecordingRunner::default();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut argv: Vec<std::ffi::OsString> = vec!["fltctl".into()];
    argv.extend(args.iter().map(Into::into));
    let code = fltctl::run(
        argv,
        fltctl::Io {
            out: &mut out,
            err: &mut err,
            clock: &clock,
            runner: &runner,
            host: run.host,
            env: run.env,
        },
    );
    drop(api);
    Outcome {
        code,
        out: String::from_utf8(out).expect("utf8"),
        err: String::from_utf8(err).expect("utf8"),
        elapsed: std::time::Duration::ZERO,
        sleeps: 0,
        calls: Vec::new(),
        dirs: Vec::new(),
    }
}

#[test]
fn help_goes_to_stdout_with_the_version_and_exit_0() {
    let version = format!("fltctl version {}", env!("CARGO_PKG_VERSION"));
    for args in [&[][..], &["help"], &["--help"], &["-h"]] {
        let o = bare(args, Vec::new());
        assert_eq!(o.code, 0, "{args:?}");
        assert_eq!(o.err, "", "{args:?}");
        for section in ["NAME:", "USAGE:", "VERSION:", "COMMANDS", "GLOBAL OPTIONS"] {
            assert!(
                o.out.contains(section),
                "{args:?} lacks {section}: {}",
                o.out
            );
        }
        assert!(o.out.contains(env!("CARGO_PKG_VERSION")), "{args:?}");
        assert!(o.out.contains("list-unit-files"));
    }
    for args in [&["--version"][..], &["-v"], &["version"]] {
        let o = bare(args, Vec::new());
        assert_eq!(
            (o.code, o.out.trim_end()),
            (0, version.as_str()),
            "{args:?}"
        );
    }
}

#[test]
fn every_command_has_help_with_an_example() {
    let commands = [
        "submit",
        "load",
        "start",
        "stop",
        "unload",
        "destroy",
        "restart",
        "list-units",
        "list-unit-files",
        "list-machines",
        "cat",
        "status",
        "journal",
        "ssh",
        "fd-forward",
        "verify",
        "version",
        "completions",
        "man",
    ];
    for command in commands {
        let o = bare(&["help", command], Vec::new());
        assert_eq!(o.code, 0, "{command}");
        assert!(o.out.contains("Example"), "{command}: {}", o.out);
        let o = bare(&[command, "--help"], Vec::new());
        assert!(o.out.contains("Example"), "{command} --help");
    }
}

#[test]
fn usage_errors_exit_2_on_stderr() {
    let o = bare(&["bogus"], Vec::new());
    assert_eq!(o.code, 2);
    assert!(
        o.err.contains("unrecognized subcommand 'bogus'"),
        "{}",
        o.err
    );
    let o = bare(&["list-units", "--nope"], Vec::new());
    assert_eq!(o.code, 2);
    assert!(o.err.contains("--nope"), "{}", o.err);
    // --version is only special as the first argument.
    let o = bare(&["list-units", "--version"], Vec::new());
    assert_eq!(o.code, 2);
}

#[test]
fn unambiguous_prefixes_select_commands() {
    let api = cluster();
    let o = fltctl(&api, &["list-m", "--no-legend", "--fields=ip"]);
    assert_eq!(
        (o.code, o.out.as_str()),
        (0, "172.17.8.103\n172.17.8.104\n")
    );
    let o = fltctl(&api, &["list-unit"]);
    assert_eq!(
        o.code, 2,
        "ambiguous between list-units and list-unit-files"
    );
}

#[test]
fn flags_may_follow_positional_arguments() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    let o = fltctl(&api, &["stop", "a.service", "--no-block"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.out, "Triggered unit a.service stop\n");
}

#[test]
fn bad_endpoint_or_driver_fails_every_command() {
    for (args, message) in [
        (
            &["--endpoint=unix://var/run/flt.sock", "version"][..],
            "unable to connect to host \"var\" with scheme \"unix\"",
        ),
        (
            &["--endpoint=/var/run/flt.sock", "list-units"],
            "URL scheme undefined",
        ),
        (
            &["--driver=nope", "version"],
            "unrecognized driver \"nope\"",
        ),
    ] {
        let o = bare(args, Vec::new());
        assert_eq!(o.code, 1, "{args:?}");
        assert_eq!(o.err, format!("Unable to initialize client: {message}\n"));
    }
}

#[test]
fn environment_sets_global_flags_and_the_command_line_wins() {
    let api = cluster();
    let o = bare(
        &["list-machines", "--no-legend", "--fields=ip"],
        env(&[("FLTCTL_ENDPOINT", &api.url)]),
    );
    assert_eq!(
        (o.code, o.out.as_str()),
        (0, "172.17.8.103\n172.17.8.104\n"),
        "{}",
        o.err
    );
    // The command line overrides the environment (given before or after the command).
    let url = format!("--endpoint={}", api.url);
    for args in [
        vec![url.as_str(), "list-machines", "--no-legend", "--fields=ip"],
        vec!["list-machines", "--no-legend", "--fields=ip", url.as_str()],
    ] {
        let o = bare(&args, env(&[("FLTCTL_ENDPOINT", "http://127.0.0.1:1")]));
        assert_eq!(o.code, 0, "{args:?}: {}", o.err);
    }
    // An empty variable is ignored (the default endpoint is used, which parses fine).
    let o = bare(&["version"], env(&[("FLTCTL_ENDPOINT", "")]));
    assert_eq!(o.code, 0, "{}", o.err);
    let o = bare(&["version"], env(&[("FLTCTL_DRIVER", "etcd2")]));
    assert_eq!(
        o.err,
        "Unable to initialize client: unrecognized driver \"etcd2\"\n"
    );
}

#[test]
fn status_accepts_no_block() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    let o = fltctl(&api, &["status", "--no-block", "a.service"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.calls.len(), 1);
}

#[test]
fn verify_is_deprecated_and_exits_2() {
    let api = cluster();
    let o = fltctl(&api, &["verify", "a.service"]);
    assert_eq!(o.code, 2);
    assert_eq!(
        o.err,
        "WARNING: The signed/verified units feature is DEPRECATED and cannot be used.\n"
    );
}

#[test]
fn completions_and_man_are_generated_from_the_model() {
    for shell in ["bash", "zsh", "fish"] {
        let o = bare(&["completions", shell], Vec::new());
        assert_eq!(o.code, 0, "{shell}");
        assert!(o.out.contains("list-unit-files"), "{shell}");
        assert!(o.out.contains("block-attempts"), "{shell}");
    }
    let o = bare(&["man"], Vec::new());
    assert_eq!(o.code, 0);
    assert!(
        o.out.starts_with(".ie") || o.out.contains(".TH fltctl"),
        "{}",
        &o.out[..200]
    );
    assert!(o.out.contains("list\\-unit\\-files"));
    let o = bare(&["completions", "tcsh"], Vec::new());
    assert_eq!(o.code, 2);
}
