//! fleetctl's `findUnits`: the registered units among the arguments, in registry order.

use crate::context::Ctx;
use flt_core::api::entities::Unit;
use flt_core::unit::mangle_name;

/// The units named by `args` that exist (others are dropped silently).
pub fn find_units(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Vec<Unit>, String> {
    let wanted: Vec<String> = args
        .iter()
        .map(|a| mangle_name(&super::create::with_default_suffix(a)))
        .collect();
    let units = ctx.api.units().map_err(|e| e.to_string())?;
    Ok(units
        .into_iter()
        .filter(|u| wanted.contains(&u.name))
        .collect())
}

/// The common start of stop, unload, restart and destroy: the registered units among `args`, or
/// the exit code when there is nothing to do, after fleetctl's message for it.
pub fn existing_units(ctx: &mut Ctx<'_>, args: &[String]) -> Result<Vec<Unit>, u8> {
    if args.is_empty() {
        ctx.warn("No units given");
        return Err(0);
    }
    let units = match find_units(ctx, args) {
        Ok(units) => units,
        Err(e) => {
            ctx.warn(e);
            return Err(1);
        }
    };
    if units.is_empty() {
        ctx.warn("Units not found in registry");
        return Err(0);
    }
    Ok(units)
}

/// Go's `%v` of a string slice: `[a b]`.
pub fn go_list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}
