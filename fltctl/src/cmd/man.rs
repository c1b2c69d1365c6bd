//! `fltctl man`: a roff manual page generated from the command line model.

use clap::{Args, CommandFactory};
use std::io::Write;

/// Print fltctl's manual page (roff) to stdout.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl man > /usr/share/man/man1/fltctl.1\n  fltctl man | man -l -"
)]
pub struct ManArgs {}

pub fn run(out: &mut dyn Write, err: &mut dyn Write, _args: &ManArgs) -> u8 {
    let command = crate::cli::Cli::command().long_about(crate::cli::DESCRIPTION);
    let man = clap_mangen::Man::new(command);
    match man.render(out) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "Error writing the manual page: {e}");
            1
        }
    }
}
