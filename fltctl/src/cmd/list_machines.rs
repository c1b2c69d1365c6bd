//! `fltctl list-machines`: the live machines of the cluster.

use crate::context::Ctx;
use crate::table::{Columns, MachineField, TableStyle, list_machines};
use clap::Args;

/// List the live machines: ID, public IP and metadata.
///
/// Fields: machine, ip, metadata.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl list-machines\n  fltctl list-machines -l --no-legend\n  fltctl list-machines --fields=machine,metadata"
)]
pub struct ListMachinesArgs {
    /// Show whole machine IDs.
    #[arg(long, short = 'l', alias = "l")]
    pub full: bool,
    /// Do not print the header row.
    #[arg(long)]
    pub no_legend: bool,
    /// Columns to show, comma-separated.
    #[arg(long, default_value = "machine,ip,metadata", value_name = "FIELDS")]
    pub fields: String,
}

pub fn run(ctx: &mut Ctx<'_>, args: &ListMachinesArgs) -> u8 {
    let columns = match Columns::<MachineField>::parse(&args.fields) {
        Ok(c) => c,
        Err(e) => {
            ctx.warn(e.to_string());
            return 1;
        }
    };
    let machines = match ctx.api.machines() {
        Ok(m) => m,
        Err(e) => {
            ctx.warn(format!(
                "Error retrieving list of active machines from flt API ({e})"
            ));
            ctx.warn("Possible issues:");
            ctx.warn("  etcd is unhealthy and/or lost quorum");
            ctx.warn("  connection cannot be established to any etcd servers");
            return 1;
        }
    };
    let style = TableStyle {
        full: args.full,
        no_legend: args.no_legend,
    };
    let text = list_machines(&machines, &columns, style);
    ctx.say_raw(&text);
    0
}
