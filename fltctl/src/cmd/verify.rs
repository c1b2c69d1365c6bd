//! `fltctl verify UNIT`: deprecated.

use crate::context::Ctx;
use clap::Args;

/// Deprecated: signed units are not supported. Always exits 2.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  fltctl verify hello.service   # prints the deprecation warning and exits 2"
)]
pub struct VerifyArgs {
    /// Ignored.
    #[arg(value_name = "UNIT")]
    pub units: Vec<String>,
}

pub fn run(ctx: &mut Ctx<'_>, _args: &VerifyArgs) -> u8 {
    ctx.warn("WARNING: The signed/verified units feature is DEPRECATED and cannot be used.");
    2
}
