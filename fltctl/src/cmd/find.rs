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

/// Go's `%v` of a string slice: `[a b]`.
pub fn go_list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}
