//! `fltctl cat UNIT`: print a unit file as the cluster holds it.

use crate::context::Ctx;
use clap::Args;
use flt_core::unit::mangle_name;

/// Print the unit file of a unit in the cluster.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  fltctl cat hello.service\n  fltctl cat web@1")]
pub struct CatArgs {
    /// Unit name.
    #[arg(value_name = "UNIT")]
    pub units: Vec<String>,
}

pub fn run(ctx: &mut Ctx<'_>, args: &CatArgs) -> u8 {
    let [arg] = args.units.as_slice() else {
        ctx.warn("One unit file must be provided");
        return 1;
    };
    let name = mangle_name(&super::create::with_default_suffix(arg));
    match ctx.api.unit(&name) {
        Err(e) => {
            ctx.warn(format!("Error retrieving Unit {name}: {e}"));
            1
        }
        Ok(None) => {
            ctx.warn(format!("Unit {name} not found"));
            1
        }
        Ok(Some(unit)) => {
            // No newline is added: a unit file ends as it ends.
            let text = unit.unit_file().serialize();
            ctx.say_raw(&text);
            0
        }
    }
}
