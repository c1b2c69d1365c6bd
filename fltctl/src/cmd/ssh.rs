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
/// code is fltctl's. A command for this machine runs here (`sh -c`) without ssh.
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

/// The machine found: its ID and its public IP (empty if it has none).
#[derive(Clone, Debug, Default)]
struct Target {
    machine_id: String,
    address: String,
}

pub fn run(ctx: &mut Ctx<'_>, args: &SshArgs) -> u8 {
    let mut rest: &[String] = &args.args;
    let found = match (&args.machine, &args.unit) {
        (Some(_), Some(_)) => {
            ctx.warn("Both machine and unit flags provided, please specify only one.");
            return 1;
        }
        (Some(machine), None) => machine_by_prefix(ctx, machine),
        (None, Some(unit)) => machine_of_unit(ctx, unit).map(Option::unwrap_or_default),
        (None, None) => {
            let lookup = rest.first().cloned();
            rest = rest.get(1..).unwrap_or(&[]);
            match lookup {
                Some(l) => global_lookup(ctx, &l),
                None => Err("one machine or unit must be provided".to_string()),
            }
        }
    };
    let target = match found {
        Ok(t) => t,
        Err(e) => {
            ctx.warn(format!("Unable to proceed: {e}"));
            return 1;
        }
    };
    if rest.first().is_some_and(|a| a == "--") {
        rest = &rest[1..];
    }
    let command = rest.join(" ");
    // A command for this very machine runs here, as status and journal do.
    let local = ctx
        .host
        .local_machine_id
        .as_deref()
        .is_some_and(|id| !target.machine_id.is_empty() && id == target.machine_id);
    if local && !command.is_empty() {
        let argv = ["sh".to_string(), "-c".to_string(), command];
        return crate::remote::run_locally(ctx, &argv);
    }
    if target.address.is_empty() {
        ctx.warn("Could not determine address of machine.");
        return 1;
    }
    let tty = command.is_empty() && ctx.host.stdin_is_tty;
    run_ssh(
        ctx,
        &SshCall {
            host: target.address,
            port: args.ssh_port,
            forward_agent: args.forward_agent,
            tty,
            command,
            forward_to: String::new(),
        },
    )
}

/// The one machine whose ID starts with `prefix`.
fn machine_by_prefix(ctx: &mut Ctx<'_>, prefix: &str) -> Result<Target, String> {
    let machines = ctx.api.machines().map_err(|e| e.to_string())?;
    let mut matching = machines.iter().filter(|m| m.id.starts_with(prefix));
    let Some(machine) = matching.next() else {
        return Err("machine does not exist".to_string());
    };
    if matching.next().is_some() {
        return Err("found more than one machine".to_string());
    }
    Ok(Target {
        machine_id: machine.id.clone(),
        address: machine.primary_ip.clone(),
    })
}

/// The machine running `unit`; `Ok(None)` if it is not known to run anywhere.
fn machine_of_unit(ctx: &mut Ctx<'_>, unit: &str) -> Result<Option<Target>, String> {
    let name = mangle_name(&super::create::with_default_suffix(unit));
    let unit = ctx
        .api
        .unit(&name)
        .map_err(|e| e.to_string())?
        .ok_or("unit does not exist")?;
    if is_global(&unit) {
        return Err("global units unsupported".to_string());
    }
    Ok(ctx.machine(&unit.machine_id).map(|m| Target {
        machine_id: m.id,
        address: m.primary_ip,
    }))
}

/// The argument as a machine and as a unit; exactly one must match (with an address).
fn global_lookup(ctx: &mut Ctx<'_>, lookup: &str) -> Result<Target, String> {
    let machine = machine_by_prefix(ctx, lookup)
        .ok()
        .filter(|t| !t.address.is_empty());
    let unit = machine_of_unit(ctx, lookup)
        .ok()
        .flatten()
        .filter(|t| !t.address.is_empty());
    match (machine, unit) {
        (Some(_), Some(_)) => Err(format!(
            "ambiguous argument, both machine and unit found for `{lookup}`.\nPlease use flag `-m` or `-u` to refine the search"
        )),
        (Some(target), None) | (None, Some(target)) => Ok(target),
        (None, None) => Err("could not find matching unit or machine".to_string()),
    }
}
