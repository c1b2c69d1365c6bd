//! `fltctl list-units`: the state systemd reports for each unit on each machine.

use crate::context::Ctx;
use crate::table::{Columns, TableStyle, UnitStateField, list_units};
use clap::Args;

/// List the units loaded on machines and the state systemd reports for them (one row per unit
/// and machine; submitted-only units are not shown).
///
/// Fields: unit, machine, load, active, sub, hash.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl list-units\n  fltctl list-units -l --fields=unit,machine,hash\n  fltctl list-units --no-legend"
)]
pub struct ListUnitsArgs {
    /// Show whole machine IDs and hashes.
    #[arg(long, short = 'l', alias = "l")]
    pub full: bool,
    /// Do not print the header row.
    #[arg(long)]
    pub no_legend: bool,
    /// Columns to show, comma-separated.
    #[arg(long, default_value = "unit,machine,active,sub", value_name = "FIELDS")]
    pub fields: String,
}

pub fn run(ctx: &mut Ctx<'_>, args: &ListUnitsArgs) -> u8 {
    let columns = match Columns::<UnitStateField>::parse(&args.fields) {
        Ok(c) => c,
        Err(e) => {
            ctx.warn(e.to_string());
            return 1;
        }
    };
    let states = match ctx.api.unit_states() {
        Ok(s) => s,
        Err(e) => {
            ctx.warn(format!(
                "Error retrieving list of units from repository: {e}"
            ));
            return 1;
        }
    };
    let style = TableStyle {
        full: args.full,
        no_legend: args.no_legend,
    };
    let machines = if states.is_empty() {
        Vec::new()
    } else {
        ctx.machines().to_vec()
    };
    let text = list_units(&states, &machines, &columns, style);
    ctx.say_raw(&text);
    0
}
