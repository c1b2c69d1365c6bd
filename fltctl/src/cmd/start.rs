//! `fltctl start UNIT...`: create, schedule and start units.

use super::load::{Activation, activate};
use crate::cli::{BlockArgs, ReplaceArgs};
use crate::context::Ctx;
use clap::Args;

/// Start units on the cluster, creating them from local files first if needed.
///
/// fltctl waits until each unit is launched on its machine and systemd reports it active, and
/// prints where it runs. A unit whose desired state is already "launched" is left alone (use
/// `restart`). Global units are only triggered. --replace replaces a unit whose local file
/// changed.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl start hello.service\n  fltctl start --no-block web@1.service web@2.service\n  fltctl start --replace hello.service"
)]
pub struct StartArgs {
    #[command(flatten)]
    pub block: BlockArgs,
    #[command(flatten)]
    pub replace: ReplaceArgs,
    /// Unit files or names.
    #[arg(value_name = "UNIT")]
    pub units: Vec<String>,
}

pub fn run(ctx: &mut Ctx<'_>, args: &StartArgs) -> u8 {
    activate(
        ctx,
        &args.units,
        &args.block,
        args.replace.replace,
        Activation::Start,
    )
}
