//! fltctl: the flt command-line client. The logic is in the library (`fltctl::run`); this wires
//! it to the process: real stdout/stderr, clock, program runner and terminal.

use fltctl::context::{Host, ProcessRunner, SystemClock};
use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    let clock = SystemClock::default();
    let runner = ProcessRunner;
    let host = Host {
        stdout_is_tty: std::io::stdout().is_terminal(),
        stdin_is_tty: std::io::stdin().is_terminal(),
        local_machine_id: std::fs::read_to_string("/etc/machine-id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
        home: std::env::var("HOME").ok().filter(|h| !h.is_empty()),
    };
    let io = fltctl::Io {
        out: &mut out,
        err: &mut err,
        clock: &clock,
        runner: &runner,
        host,
        env: std::env::vars()
            .filter(|(k, _)| k.starts_with("FLTCTL_"))
            .collect(),
    };
    ExitCode::from(fltctl::run(std::env::args_os().collect(), io))
}
