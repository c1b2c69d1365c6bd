//! `fltctl load UNIT...`: create units if needed and schedule them onto machines.

use super::create::{Creator, lazy_create_units};
use super::target_state::set_target_state_of_units;
use super::wait::try_wait_for_unit_states;
use crate::cli::{BlockArgs, Blocking, ReplaceArgs};
use crate::context::Ctx;
use crate::table::is_global;
use clap::Args;

/// Schedule units onto machines and load them into systemd, without starting them.
///
/// Units not yet in the cluster are first created from local files (see `submit`). fltctl then
/// waits until each unit reports "loaded" and prints the machine it was loaded on. Global units
/// are only triggered.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl load hello.service\n  fltctl load --no-block web@{1..3}.service\n  fltctl load --block-attempts=5 hello.service"
)]
pub struct LoadArgs {
    #[command(flatten)]
    pub block: BlockArgs,
    #[command(flatten)]
    pub replace: ReplaceArgs,
    /// Unit files or names.
    #[arg(value_name = "UNIT")]
    pub units: Vec<String>,
}

pub fn run(ctx: &mut Ctx<'_>, args: &LoadArgs) -> u8 {
    activate(
        ctx,
        &args.units,
        &args.block,
        args.replace.replace,
        Activation::Load,
    )
}

/// load and start share their flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Load,
    Start,
}

pub fn activate(
    ctx: &mut Ctx<'_>,
    units: &[String],
    block: &BlockArgs,
    replace: bool,
    activation: Activation,
) -> u8 {
    if units.is_empty() {
        ctx.warn("No units given");
        return 0;
    }
    let (creator, state, verb, failure) = match activation {
        Activation::Load => (Creator::Load, "loaded", "load", "Error loading units"),
        Activation::Start => (Creator::Start, "launched", "start", "Error starting units"),
    };
    let creation = Blocking::for_creation(block.block_attempts);
    if let Err(e) = lazy_create_units(ctx, units, creator, replace, creation) {
        ctx.warn(format!("Error creating units: {e}"));
        return 1;
    }
    let triggered = match set_target_state_of_units(ctx, units, state) {
        Ok(t) => t,
        Err(e) => {
            ctx.warn(format!("{failure}: {e}"));
            return 1;
        }
    };
    let mut waiting = Vec::new();
    for unit in triggered {
        if is_global(&unit) {
            ctx.say(format!("Triggered global unit {} {verb}", unit.name));
        } else {
            waiting.push(unit.name);
        }
    }
    let blocking = block.blocking();
    if let Err(e) = try_wait_for_unit_states(ctx, &waiting, verb, state, blocking) {
        ctx.warn(format!("Error waiting for unit states, exit status: {e}"));
        return 1;
    }
    if activation == Activation::Start
        && let Err(e) = super::wait::try_wait_for_systemd_active(ctx, &waiting, blocking)
    {
        ctx.warn(format!("Error waiting for systemd unit states, err: {e}"));
        return 1;
    }
    0
}
