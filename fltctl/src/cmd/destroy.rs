//! `fltctl destroy UNIT...`: remove units from the cluster.

use super::find::existing_units;
use super::wait::{ATTEMPT, POLL_INTERVAL};
use crate::cli::{BlockArgs, Blocking};
use crate::context::Ctx;
use clap::Args;

/// Remove units from the cluster; they are stopped and unloaded wherever they run.
///
/// Names that are not in the cluster are ignored. fltctl waits until each unit is gone
/// (fleetctl only waited with --no-block, a bug); --no-block does not wait.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl destroy hello.service\n  fltctl destroy web@1.service web@2.service"
)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub block: BlockArgs,
    /// Unit names.
    #[arg(value_name = "UNIT")]
    pub units: Vec<String>,
}

pub fn run(ctx: &mut Ctx<'_>, args: &DestroyArgs) -> u8 {
    let units = match existing_units(ctx, &args.units) {
        Ok(units) => units,
        Err(code) => return code,
    };
    let mut exit = 0;
    for unit in units {
        if let Err(e) = ctx.api.destroy_unit(&unit.name) {
            ctx.warn(format!("Error destroying units: {e}"));
            exit = 1;
            continue;
        }
        if let Err(e) = wait_until_gone(ctx, &unit.name, args.block.blocking()) {
            ctx.warn(format!("Error waiting for units: {e}"));
            exit = 1;
            continue;
        }
        ctx.say(format!("Destroyed {}", unit.name));
    }
    exit
}

/// Polls until `GET /units/<name>` answers 404.
fn wait_until_gone(ctx: &mut Ctx<'_>, name: &str, blocking: Blocking) -> Result<(), String> {
    let give_up = match blocking {
        Blocking::Trigger => return Ok(()),
        Blocking::Forever => None,
        Blocking::Attempts(n) => Some(ctx.clock.now() + ATTEMPT * n),
    };
    loop {
        match ctx.api.unit(name) {
            Ok(None) => {
                ctx.clear_progress();
                return Ok(());
            }
            Ok(Some(_)) => {}
            Err(e) => crate::log_at!(ctx, "WARN", "Error retrieving Unit({name}): {e}"),
        }
        ctx.clock.sleep(POLL_INTERVAL);
        if give_up.is_some_and(|at| ctx.clock.now() >= at) {
            ctx.clear_progress();
            return Err(format!("timed out waiting for unit {name} to be destroyed"));
        }
        ctx.progress(&format!("Waiting for {name} to be destroyed"));
    }
}
