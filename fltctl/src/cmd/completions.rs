//! `fltctl completions SHELL`: shell completion scripts generated from the command line model.

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::io::Write;

/// Print a completion script for a shell.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl completions bash > /etc/bash_completion.d/fltctl\n  fltctl completions zsh > \"${fpath[1]}/_fltctl\"\n  fltctl completions fish > ~/.config/fish/completions/fltctl.fish"
)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

pub fn run(out: &mut dyn Write, args: &CompletionsArgs) -> u8 {
    let mut command = crate::cli::Cli::command();
    clap_complete::generate(args.shell, &mut command, "fltctl", out);
    0
}
