//! `fltctl stop UNIT...`: stop units, keeping them loaded on their machines.

use super::find::{existing_units, go_list};
use super::wait::try_wait_for_unit_states;
use crate::cli::BlockArgs;
use crate::context::Ctx;
use crate::table::is_global;
use clap::Args;

/// Stop units; they stay loaded on their machines (desired state "loaded").
///
/// Names that are not in the cluster are ignored. fltctl waits until each unit reports
/// "loaded". A unit that is not loaded anywhere cannot be stopped.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl stop hello.service\n  fltctl stop --no-block web@1.service web@2.service"
)]
pub struct StopArgs {
    #[command(flatten)]
    pub block: BlockArgs,
    /// Unit names.
    #[arg(value_name = "UNIT")]
    pub units: Vec<String>,
}

pub fn run(ctx: &mut Ctx<'_>, args: &StopArgs) -> u8 {
    lower(ctx, &args.units, &args.block, Lowering::Stop)
}

/// stop and unload share their flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lowering {
    Stop,
    Unload,
}

pub fn lower(ctx: &mut Ctx<'_>, args: &[String], block: &BlockArgs, lowering: Lowering) -> u8 {
    let (state, verb, done, failed) = match lowering {
        Lowering::Stop => ("loaded", "stop", "stopped", "stop"),
        Lowering::Unload => ("inactive", "unload", "unloaded", "unload"),
    };
    let units = match existing_units(ctx, args) {
        Ok(units) => units,
        Err(code) => return code,
    };
    let mut waiting = Vec::new();
    for unit in &units {
        let global = is_global(unit);
        if !global {
            match (lowering, unit.current_state.as_str()) {
                (Lowering::Stop, "inactive") => {
                    ctx.warn(format!(
                        "Unable to stop unit {} in state inactive",
                        unit.name
                    ));
                    return 1;
                }
                (Lowering::Stop, "loaded") | (Lowering::Unload, "inactive") => {
                    crate::log_at!(
                        ctx,
                        "DEBUG",
                        "Unit({}) already {state}, skipping.",
                        unit.name
                    );
                    continue;
                }
                _ => {}
            }
        }
        // fleetctl ignores this error: the wait below reports a unit that does not move.
        if let Err(e) = ctx.api.set_unit_target_state(&unit.name, state) {
            crate::log_at!(
                ctx,
                "WARN",
                "Setting target state of Unit({}): {e}",
                unit.name
            );
        }
        if global {
            ctx.say(format!("Triggered global unit {} {verb}", unit.name));
        } else {
            waiting.push(unit.name.clone());
        }
    }
    match try_wait_for_unit_states(ctx, &waiting, verb, state, block.blocking()) {
        Ok(()) => {
            ctx.warn(format!("Successfully {done} units {}.", go_list(&waiting)));
            0
        }
        Err(e) => {
            ctx.warn(format!(
                "Failed to {failed} units {}. err: {e}",
                go_list(&waiting)
            ));
            1
        }
    }
}
