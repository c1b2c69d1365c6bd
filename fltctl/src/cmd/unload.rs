//! `fltctl unload UNIT...`: unload units from their machines.

use super::stop::{Lowering, lower};
use crate::cli::BlockArgs;
use crate::context::Ctx;
use clap::Args;

/// Unload units from their machines (desired state "inactive"); they stay in the cluster.
///
/// Names that are not in the cluster are ignored. fltctl waits until each unit reports
/// "inactive".
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl unload hello.service\n  fltctl unload --block-attempts=3 web@1.service"
)]
pub struct UnloadArgs {
    #[command(flatten)]
    pub block: BlockArgs,
    /// Unit names.
    #[arg(value_name = "UNIT")]
    pub units: Vec<String>,
}

pub fn run(ctx: &mut Ctx<'_>, args: &UnloadArgs) -> u8 {
    lower(ctx, &args.units, &args.block, Lowering::Unload)
}
