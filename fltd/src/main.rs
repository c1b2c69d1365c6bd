//! fltd: the flt daemon. The run loop, configuration and API arrive with the daemon issue; until
//! then this binary only reports its version and refuses to run.

use std::process::ExitCode;

// The daemon (issue 6) loads its configuration through it.
#[allow(dead_code)]
mod config;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["version"] | ["-version"] | ["--version"] => {
            println!("fltd version {VERSION}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "fltd {VERSION}: the daemon is not implemented yet; only `fltd --version` works"
            );
            ExitCode::FAILURE
        }
    }
}
