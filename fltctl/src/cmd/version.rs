//! `fltctl version`.

use crate::cli::VERSION;
use crate::context::Ctx;
use clap::Args;

/// Print fltctl's version (also `fltctl --version` or `fltctl -v`).
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  fltctl version")]
pub struct VersionArgs {}

pub fn run(ctx: &mut Ctx<'_>, _args: &VersionArgs) -> u8 {
    ctx.say(version_line());
    0
}

/// `fltctl version <ver>`.
pub fn version_line() -> String {
    format!("fltctl version {VERSION}")
}
