//! `fltctl journal UNIT`: a unit's journal, read on its machine.

use crate::context::Ctx;
use crate::remote::run_on_machine;
use crate::table::is_global;
use clap::Args;
use flt_core::unit::mangle_name;

/// Print the journal of a unit, read with journalctl on its machine (locally when it is this
/// machine, else over ssh).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl journal hello.service\n  fltctl journal -f --lines=100 hello.service\n  fltctl journal --sudo --output=json hello.service"
)]
pub struct JournalArgs {
    /// Number of recent lines to show.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub lines: u64,
    /// Keep printing new entries.
    #[arg(long, short = 'f', alias = "f")]
    pub follow: bool,
    /// Port of sshd on the machine.
    #[arg(long, default_value_t = 22, value_name = "PORT")]
    pub ssh_port: u16,
    /// Run journalctl with sudo.
    #[arg(long)]
    pub sudo: bool,
    /// journalctl's output mode (short, json, cat, …).
    #[arg(long, default_value = "short", value_name = "MODE")]
    pub output: String,
    /// Unit name.
    #[arg(value_name = "UNIT")]
    pub units: Vec<String>,
}

pub fn run(ctx: &mut Ctx<'_>, args: &JournalArgs) -> u8 {
    let [arg] = args.units.as_slice() else {
        ctx.warn("One unit file must be provided.");
        return 1;
    };
    let name = mangle_name(&super::create::with_default_suffix(arg));
    let unit = match ctx.api.unit(&name) {
        Err(e) => {
            ctx.warn(format!("Error retrieving unit {name}: {e}"));
            return 1;
        }
        Ok(None) => {
            ctx.warn(format!("Unit {name} does not exist."));
            return 1;
        }
        Ok(Some(unit)) => unit,
    };
    if is_global(&unit) {
        ctx.warn(format!("Unable to retrieve journal of global unit {name}."));
        return 1;
    }
    if unit.current_state == "inactive" || unit.machine_id.is_empty() {
        ctx.warn(format!("Unit {name} does not appear to be running."));
        return 1;
    }
    let mut argv: Vec<String> = Vec::new();
    if args.sudo {
        argv.push("sudo".to_string());
    }
    argv.extend(
        [
            "journalctl",
            "--unit",
            &name,
            "--no-pager",
            "-n",
            &args.lines.to_string(),
            "--output",
            &args.output,
        ]
        .map(String::from),
    );
    if args.follow {
        argv.push("-f".to_string());
    }
    // A PTY lets Ctrl-C reach a remote `journalctl -f`.
    let tty = args.follow && ctx.host.stdin_is_tty;
    run_on_machine(ctx, &unit.machine_id, &argv, args.ssh_port, tty)
}
