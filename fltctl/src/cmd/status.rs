//! `fltctl status UNIT...`: `systemctl status` of units, run on their machines.

use crate::context::Ctx;
use crate::remote::run_on_machine;
use crate::table::is_global;
use clap::Args;
use flt_core::unit::mangle_name;

/// Show `systemctl status -l` of units, run on the machine each is scheduled on (locally when it
/// is this machine, else over ssh). Global units are shown for each machine they run on.
///
/// The exit code is that of the first failing systemctl.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl status hello.service\n  fltctl status --ssh-port=2222 web@1.service web@2.service"
)]
pub struct StatusArgs {
    /// Port of sshd on the machines.
    #[arg(long, default_value_t = 22, value_name = "PORT")]
    pub ssh_port: u16,
    /// Accepted for compatibility with scripts that pass it; status never blocks.
    #[arg(long, hide = true)]
    pub no_block: bool,
    /// Accepted for compatibility; status never blocks.
    #[arg(long, hide = true, value_name = "N", allow_negative_numbers = true)]
    pub block_attempts: Option<i64>,
    /// Unit names.
    #[arg(value_name = "UNIT")]
    pub units: Vec<String>,
}

pub fn run(ctx: &mut Ctx<'_>, args: &StatusArgs) -> u8 {
    if args.units.is_empty() {
        ctx.warn("No units given");
        return 0;
    }
    let mut first = true;
    for arg in &args.units {
        let name = mangle_name(&super::create::with_default_suffix(arg));
        let unit = match ctx.api.unit(&name) {
            Err(e) => {
                ctx.warn(format!("Error retrieving unit: {e}"));
                return 1;
            }
            Ok(None) => {
                ctx.warn(format!("Unit {name} does not exist."));
                return 1;
            }
            Ok(Some(unit)) => unit,
        };
        let machines: Vec<String> = if is_global(&unit) {
            match ctx.api.unit_states_of(&name) {
                Ok(mut states) => {
                    states.sort_by(|a, b| a.machine_id.cmp(&b.machine_id));
                    states.into_iter().map(|s| s.machine_id).collect()
                }
                Err(e) => {
                    ctx.warn(format!("Error retrieving unit: {e}"));
                    return 1;
                }
            }
        } else if unit.current_state == "inactive" || unit.machine_id.is_empty() {
            ctx.warn(format!("Unit {name} does not appear to be loaded."));
            return 1;
        } else {
            vec![unit.machine_id.clone()]
        };
        let argv = vec![
            "systemctl".to_string(),
            "status".to_string(),
            "-l".to_string(),
            name.clone(),
        ];
        for machine_id in machines {
            // A blank line between units, as systemctl separates them.
            if !first {
                ctx.say("");
            }
            first = false;
            let code = run_on_machine(ctx, &machine_id, &argv, args.ssh_port, false);
            if code != 0 {
                return code;
            }
        }
    }
    0
}
