//! `fltctl submit UNIT...`: create units from local files, without scheduling them.

use super::create::{Creator, lazy_create_units};
use crate::cli::{Blocking, ReplaceArgs};
use crate::context::Ctx;
use clap::Args;

/// Upload unit files to the cluster (they stay inactive).
///
/// Each UNIT is a local unit file (foo.service, dir/bar.socket; "foo" means foo.service), or an
/// instance (foo@1.service) of a template found in the cluster or next to the argument. A unit
/// already in the cluster is kept; --replace replaces it if it is still inactive. fltctl waits
/// for each new unit to report "inactive".
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl submit hello.service\n  fltctl submit units/web@1.service units/web@2.service\n  fltctl submit --replace hello.service"
)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub replace: ReplaceArgs,
    /// Unit files or names.
    #[arg(value_name = "UNIT")]
    pub units: Vec<String>,
}

pub fn run(ctx: &mut Ctx<'_>, args: &SubmitArgs) -> u8 {
    if args.units.is_empty() {
        ctx.warn("No units given");
        return 0;
    }
    match lazy_create_units(
        ctx,
        &args.units,
        Creator::Submit,
        args.replace.replace,
        Blocking::Forever,
    ) {
        Ok(()) => 0,
        Err(e) => {
            ctx.warn(format!("Error creating units: {e}"));
            1
        }
    }
}
