//! fltctl: the flt command-line client. The commands arrive with the fltctl issue; until then
//! this binary only reports its version and refuses everything else.

use std::process::ExitCode;

// The commands (issue 7) are built on these.
#[allow(dead_code)]
mod api_error;
#[allow(dead_code)]
mod table;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["version"] | ["-v"] | ["--version"] => {
            println!("fltctl version {VERSION}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "fltctl {VERSION}: commands are not implemented yet; only `fltctl version` works"
            );
            ExitCode::FAILURE
        }
    }
}
