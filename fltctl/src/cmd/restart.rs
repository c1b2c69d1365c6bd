//! `fltctl restart UNIT...`: stop and start units.

use super::create::{Creator, lazy_create_units};
use super::find::{existing_units, go_list};
use super::wait::try_wait_for_unit_states;
use crate::cli::Blocking;
use crate::context::Ctx;
use crate::remote::run_on_machine;
use crate::table::is_global;
use clap::Args;
use flt_core::api::entities::Unit;

/// Restart units: a launched unit is stopped (until it reports "loaded") and started again
/// (until "launched"); a loaded unit is started. Global units are restarted with
/// `systemctl restart` on each of their machines in turn (locally or over ssh).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl restart hello.service\n  fltctl restart --block-attempts=10 web@1.service web@2.service"
)]
pub struct RestartArgs {
    /// Wait for each state for N attempts of 2 s each (0: forever).
    #[arg(
        long,
        default_value_t = 0,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub block_attempts: i64,
    /// Port of sshd on the machines of global units.
    #[arg(long, default_value_t = 22, value_name = "PORT")]
    pub ssh_port: u16,
    /// Unit names.
    #[arg(value_name = "UNIT")]
    pub units: Vec<String>,
}

pub fn run(ctx: &mut Ctx<'_>, args: &RestartArgs) -> u8 {
    let units = match existing_units(ctx, &args.units) {
        Ok(units) => units,
        Err(code) => return code,
    };
    let blocking = Blocking::for_creation(args.block_attempts);
    if let Err(e) = lazy_create_units(ctx, &args.units, Creator::Restart, false, blocking) {
        ctx.warn(format!("Error creating units: {e}"));
        return 1;
    }
    let mut globals = Vec::new();
    for unit in units {
        if is_global(&unit) {
            globals.push(unit);
            continue;
        }
        let steps: &[&str] = match unit.current_state.as_str() {
            "inactive" => {
                ctx.warn(format!(
                    "Unable to restart unit {} in state inactive",
                    unit.name
                ));
                continue;
            }
            "loaded" => &["launched"],
            "launched" => &["loaded", "launched"],
            other => {
                crate::log_at!(
                    ctx,
                    "WARN",
                    "Unit {} in unknown state {other:?}, skipping",
                    unit.name
                );
                continue;
            }
        };
        for state in steps {
            if set_state_and_wait(ctx, &unit.name, state, blocking) != 0 {
                return 1;
            }
        }
    }
    if !globals.is_empty()
        && let Err(e) = restart_global_units(ctx, &globals, args.ssh_port)
    {
        let names: Vec<String> = globals.iter().map(|u| u.name.clone()).collect();
        ctx.warn(format!(
            "Error restarting global units {}: {e}",
            go_list(&names)
        ));
        return 1;
    }
    0
}

/// Sets the desired state and waits for it (fleetctl waited for `launched` after both steps).
fn set_state_and_wait(ctx: &mut Ctx<'_>, name: &str, state: &str, blocking: Blocking) -> u8 {
    if let Err(e) = ctx.api.set_unit_target_state(name, state) {
        ctx.warn(format!("Error setting target state for unit {name}: {e}"));
        return 1;
    }
    let names = [name.to_string()];
    if let Err(e) = try_wait_for_unit_states(ctx, &names, "restart", state, blocking) {
        ctx.warn(format!("Error waiting for unit states, exit status: {e}"));
        return 1;
    }
    0
}

/// `systemctl restart <unit>` on every machine reporting the unit, one machine after another.
fn restart_global_units(ctx: &mut Ctx<'_>, units: &[Unit], ssh_port: u16) -> Result<(), String> {
    for unit in units {
        let mut states = ctx
            .api
            .unit_states_of(&unit.name)
            .map_err(|e| e.to_string())?;
        states.sort_by(|a, b| a.machine_id.cmp(&b.machine_id));
        for state in states.iter().filter(|s| s.name == unit.name) {
            let argv = vec![
                "systemctl".to_string(),
                "restart".to_string(),
                unit.name.clone(),
            ];
            let code = run_on_machine(ctx, &state.machine_id, &argv, ssh_port, false);
            if code != 0 {
                return Err(format!(
                    "systemctl restart {} on machine {} exited with {code}",
                    unit.name, state.machine_id
                ));
            }
            let legend = ctx.machine_legend(&state.machine_id);
            ctx.say(format!("Restarted global unit {} on {legend}", unit.name));
        }
    }
    Ok(())
}
