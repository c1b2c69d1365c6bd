//! Setting the desired state of units, shared by load and start (fleetctl's
//! `setTargetStateOfUnits`).

use crate::context::Ctx;
use flt_core::api::entities::Unit;
use flt_core::unit::mangle_name;

/// Sets `state` on every named unit not already at it, and returns those units (as they were
/// before). A missing unit stops with `unable to find unit <n>`.
pub fn set_target_state_of_units(
    ctx: &mut Ctx<'_>,
    args: &[String],
    state: &str,
) -> Result<Vec<Unit>, String> {
    let mut triggered = Vec::new();
    for arg in args {
        let name = mangle_name(&super::create::with_default_suffix(arg));
        let unit = ctx
            .api
            .unit(&name)
            .map_err(|e| format!("error retrieving unit {name} from registry: {e}"))?
            .ok_or_else(|| format!("unable to find unit {name}"))?;
        if unit.desired_state == state {
            crate::log_at!(
                ctx,
                "DEBUG",
                "skipping unit {name} as it is already in desired state {state}"
            );
            continue;
        }
        ctx.api
            .set_unit_target_state(&name, state)
            .map_err(|e| e.to_string())?;
        triggered.push(unit);
    }
    Ok(triggered)
}
