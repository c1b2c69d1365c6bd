//! `fltctl ssh`: open a shell or run a command on a machine, found by machine ID prefix or by
//! a unit it runs.

use crate::context::Ctx;
use crate::remote::{SshCall, run_ssh};
use crate::table::is_global;
use clap::Args;
use flt_core::unit::mangle_name;

/// Open an ssh session to a machine of the cluster, or run a command there (with the system's
/// ssh, so ~/.ssh/config and ssh-agent apply).
///
/// The target is a machine ID (or a unique prefix of one) or a unit name; --machine and --unit
/// say which. Everything after the target (after `--` if given) is the remote command; its exit
/// code is fltctl's.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  fltctl ssh 113f16a7\n  fltctl ssh hello.service\n  fltctl ssh --unit hello.service -- systemctl is-active hello.service\n  fltctl ssh -A --machine 113f16a7 uptime"
)]
pub struct SshArgs {
    /// Open the session to the machine with this ID (or unique ID prefix).
    #[arg(long, short = 'm', value_name = "MACHINE")]
    pub machine: Option<String>,
    /// Open the session to the machine running this unit.
    #[arg(long, short = 'u', value_name = "UNIT")]
    pub unit: Option<String>,
    /// Forward the local ssh-agent to the machine.
    #[arg(long, short = 'A', alias = "A")]
    pub forward_agent: bool,
    /// Port of sshd on the machine.
    #[arg(long, default_value_t = 22, value_name = "PORT")]
    pub ssh_port: u16,
    /// The machine or unit (without --machine/--unit), then the remote command.
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

pub fn run(ctx: &mut Ctx<'_>, args: &SshArgs) -> u8 {
    let mut rest: &[String] = &args.args;
    let found = match (&args.machine, &args.unit) {
        (Some(_), Some(_)) => {
            ctx.warn("Both machine and unit flags provided, please specify only one.");
            return 1;
        }
        (Some(machine), None) => address_of_machine(ctx, machine).map(|a| a.unwrap_or_default()),
        (None, Some(unit)) => address_of_unit(ctx, unit).map(|a| a.unwrap_or_default()),
        (None, None) => {
            let lookup = rest.first().cloned();
            rest = rest.get(1..).unwrap_or(&[]);
            match lookup {
                Some(l) => global_lookup(ctx, &l),
                None => Err("one machine or unit must be provided".to_string()),
            }
        }
    };
    let address = match found {
        Ok(a) => a,
        Err(e) => {
            ctx.warn(format!("Unable to proceed: {e}"));
            return 1;
        }
    };
    if address.is_empty() {
        ctx.warn("Could not determine address of machine.");
        return 1;
    }
    if rest.first().is_some_and(|a| a == "--") {
        rest = &rest[1..];
    }
    let command = rest.join(" ");
    let tty = command.is_empty() && ctx.host.stdin_is_tty;
    run_ssh(
        ctx,
        &SshCall {
            host: address,
            port: args.ssh_port,
            forward_agent: args.forward_agent,
            tty,
            command,
            forward_to: String::new(),
        },
    )
}

/// The public IP of the one machine whose ID starts with `prefix`; `Ok(None)` if it has none.
fn address_of_machine(ctx: &mut Ctx<'_>, prefix: &str) -> Result<Option<String>, String> {
    let machines = ctx.api.machines().map_err(|e| e.to_string())?;
    let mut matching = machines.iter().filter(|m| m.id.starts_with(prefix));
    let Some(machine) = matching.next() else {
        return Err("machine does not exist".to_string());
    };
    if matching.next().is_some() {
        return Err("found more than one machine".to_string());
    }
    Ok(Some(machine.primary_ip.clone()).filter(|ip| !ip.is_empty()))
}

/// The public IP of the machine running `unit`; `Ok(None)` if unknown.
fn address_of_unit(ctx: &mut Ctx<'_>, unit: &str) -> Result<Option<String>, String> {
    let name = mangle_name(&super::create::with_default_suffix(unit));
    let unit = ctx
        .api
        .unit(&name)
        .map_err(|e| e.to_string())?
        .ok_or("unit does not exist")?;
    if is_global(&unit) {
        return Err("global units unsupported".to_string());
    }
    Ok(ctx
        .machine(&unit.machine_id)
        .map(|m| m.primary_ip)
        .filter(|ip| !ip.is_empty()))
}

/// The argument as a machine and as a unit; exactly one must match.
fn global_lookup(ctx: &mut Ctx<'_>, lookup: &str) -> Result<String, String> {
    let machine = address_of_machine(ctx, lookup).ok().flatten();
    let unit = address_of_unit(ctx, lookup).ok().flatten();
    match (machine, unit) {
        (Some(_), Some(_)) => Err(format!(
            "ambiguous argument, both machine and unit found for `{lookup}`.\nPlease use flag `-m` or `-u` to refine the search"
        )),
        (Some(address), None) | (None, Some(address)) => Ok(address),
        (None, None) => Err("could not find matching unit or machine".to_string()),
    }
}
