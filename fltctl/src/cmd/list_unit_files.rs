//! `fltctl list-unit-files`: the units in the cluster and where they are scheduled.

use crate::context::Ctx;
use crate::table::{Columns, TableStyle, UnitFileField, list_unit_files};
use clap::Args;

/// List the units in the cluster: their hash, desired and current state, and target machine.
///
/// Fields: unit, hash, dstate, state, target, global, desc (tmachine is a deprecated alias of
/// target).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl list-unit-files\n  fltctl list-unit-files --fields=unit,desc --no-legend\n  fltctl list-unit-files --full"
)]
pub struct ListUnitFilesArgs {
    /// Show whole machine IDs and hashes.
    #[arg(long)]
    pub full: bool,
    /// Do not print the header row.
    #[arg(long)]
    pub no_legend: bool,
    /// Columns to show, comma-separated.
    #[arg(
        long,
        default_value = "unit,hash,dstate,state,target",
        value_name = "FIELDS"
    )]
    pub fields: String,
}

pub fn run(ctx: &mut Ctx<'_>, args: &ListUnitFilesArgs) -> u8 {
    let columns = match Columns::<UnitFileField>::parse(&args.fields) {
        Ok(c) => c,
        Err(e) => {
            ctx.warn(e.to_string());
            return 1;
        }
    };
    for warning in columns.warnings() {
        ctx.warn(warning);
    }
    let units = match ctx.api.units() {
        Ok(u) => u,
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
    let needs_machines = units.iter().any(|u| !u.machine_id.is_empty());
    let machines = if needs_machines {
        ctx.machines().to_vec()
    } else {
        Vec::new()
    };
    let text = list_unit_files(&units, &machines, &columns, style);
    ctx.say_raw(&text);
    0
}
