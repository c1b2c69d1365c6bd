//! Running a command on a unit's machine: locally when the machine is this one (its ID equals
//! /etc/machine-id), else with the system's OpenSSH client, so `~/.ssh/config`, agents and
//! known_hosts files work as users expect.

use crate::context::Ctx;

/// How fltctl calls `ssh`, from the global flags.
#[derive(Clone, Debug)]
pub struct SshSettings {
    /// `--ssh-username`.
    pub user: String,
    /// `--known-hosts-file`, with `~/` expanded.
    pub known_hosts_file: String,
    /// `--strict-host-key-checking`.
    pub strict_host_key_checking: bool,
    /// `--ssh-timeout` in seconds.
    pub timeout: f64,
    /// `--tunnel`: a bastion `host[:port]` (empty for none).
    pub tunnel: String,
}

impl Default for SshSettings {
    fn default() -> SshSettings {
        SshSettings {
            user: "core".to_string(),
            known_hosts_file: String::new(),
            strict_host_key_checking: true,
            timeout: 10.0,
            tunnel: String::new(),
        }
    }
}

/// One `ssh` invocation.
#[derive(Clone, Debug, Default)]
pub struct SshCall {
    pub host: String,
    pub port: u16,
    pub forward_agent: bool,
    /// Ask for a PTY (`-t`).
    pub tty: bool,
    /// The remote command line, already quoted; empty for a login shell.
    pub command: String,
    /// `-W host:port`: forward stdio to this address instead of running a command.
    pub forward_to: String,
}

/// Expands a leading `~/` with `home`.
pub fn expand_home(path: &str, home: Option<&str>) -> String {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => format!("{}/{rest}", home.trim_end_matches('/')),
        _ => path.to_string(),
    }
}

/// `host[:port]` as (host, port), port 22 by default.
pub fn split_host_port(text: &str) -> (String, u16) {
    match text
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
    {
        Some((host, port)) => (host.to_string(), port),
        None => (text.to_string(), 22),
    }
}

/// The command whose stdio carries the API through `--tunnel`: `fltctl fd-forward <socket>` on
/// the bastion for a unix endpoint, `ssh -W host:port` for a TCP one.
pub fn tunnel_argv(settings: &SshSettings, endpoint: &crate::client::Endpoint) -> Vec<String> {
    let (host, port) = split_host_port(&settings.tunnel);
    let direct = SshSettings {
        tunnel: String::new(),
        ..settings.clone()
    };
    let mut call = SshCall {
        host,
        port,
        ..SshCall::default()
    };
    match endpoint {
        crate::client::Endpoint::Unix(path) => {
            call.command = format!("fltctl fd-forward {}", shell_quote(&path.to_string_lossy()));
        }
        crate::client::Endpoint::Http(url) => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
            let authority = rest.split('/').next().unwrap_or(rest);
            let has_port = authority
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.ends_with(':') && p.parse::<u16>().is_ok());
            call.forward_to = if has_port {
                authority.to_string()
            } else if scheme == "https" {
                format!("{authority}:443")
            } else {
                format!("{authority}:80")
            };
        }
    }
    ssh_argv(&direct, &call)
}

/// `host:22` unless a port is given.
fn with_default_port(host: &str) -> String {
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:22")
    }
}

/// The `ssh` command line for `call`.
pub fn ssh_argv(settings: &SshSettings, call: &SshCall) -> Vec<String> {
    let mut argv = vec!["ssh".to_string()];
    let mut option = |o: String| {
        argv.push("-o".to_string());
        argv.push(o);
    };
    let timeout = settings.timeout.ceil().max(1.0);
    option(format!("ConnectTimeout={timeout}"));
    if settings.strict_host_key_checking {
        option(format!("UserKnownHostsFile={}", settings.known_hosts_file));
        option("StrictHostKeyChecking=ask".to_string());
    } else {
        option("UserKnownHostsFile=/dev/null".to_string());
        option("StrictHostKeyChecking=no".to_string());
    }
    argv.extend(["-p".to_string(), call.port.to_string()]);
    argv.extend(["-l".to_string(), settings.user.clone()]);
    if call.forward_agent {
        argv.push("-A".to_string());
    }
    if call.tty {
        argv.push("-t".to_string());
    }
    if !settings.tunnel.is_empty() {
        argv.push("-J".to_string());
        argv.push(format!(
            "{}@{}",
            settings.user,
            with_default_port(&settings.tunnel)
        ));
    }
    if !call.forward_to.is_empty() {
        argv.push("-W".to_string());
        argv.push(call.forward_to.clone());
    }
    argv.push(call.host.clone());
    if !call.command.is_empty() {
        argv.push(call.command.clone());
    }
    argv
}

/// Quotes an argument for a POSIX shell when it needs it.
pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Runs `ssh` and returns its exit code (the remote command's).
pub fn run_ssh(ctx: &mut Ctx<'_>, call: &SshCall) -> u8 {
    if ctx.ssh.strict_host_key_checking
        && let Some(dir) = std::path::Path::new(&ctx.ssh.known_hosts_file).parent()
        && let Err(e) = ctx.runner.ensure_private_dir(dir)
    {
        crate::log_at!(ctx, "WARN", "cannot create {}: {e}", dir.display());
    }
    let argv = ssh_argv(&ctx.ssh, call);
    run_argv(ctx, &argv, "remote")
}

/// Runs `argv` on this machine and returns its exit code.
pub fn run_locally(ctx: &mut Ctx<'_>, argv: &[String]) -> u8 {
    run_argv(ctx, argv, "local")
}

fn run_argv(ctx: &mut Ctx<'_>, argv: &[String], kind: &str) -> u8 {
    crate::log_at!(ctx, "DEBUG", "running {}", argv.join(" "));
    match ctx.runner.run(argv) {
        Ok(code) => u8::try_from(code).unwrap_or(1),
        Err(e) => {
            let program = argv.first().map_or("", String::as_str);
            ctx.warn(format!("Error running {kind} command: {program}: {e}"));
            1
        }
    }
}

/// fleetctl's `runCommand`: `argv` on the machine, locally or over ssh to its public IP.
pub fn run_on_machine(
    ctx: &mut Ctx<'_>,
    machine_id: &str,
    argv: &[String],
    ssh_port: u16,
    tty: bool,
) -> u8 {
    if ctx
        .host
        .local_machine_id
        .as_deref()
        .is_some_and(|local| !machine_id.is_empty() && local == machine_id)
    {
        return run_argv(ctx, argv, "local");
    }
    let Some(machine) = ctx.machine(machine_id) else {
        ctx.warn(format!(
            "Error getting machine IP: machine {machine_id} not found"
        ));
        return 1;
    };
    if machine.primary_ip.is_empty() {
        ctx.warn(format!(
            "Error getting machine IP: machine {machine_id} has no public IP"
        ));
        return 1;
    }
    let command: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    run_ssh(
        ctx,
        &SshCall {
            host: machine.primary_ip,
            port: ssh_port,
            forward_agent: false,
            tty,
            command: command.join(" "),
            forward_to: String::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("hello.service"), "hello.service");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm)"), "'$(rm)'");
    }

    #[test]
    fn argv_has_port_user_agent_tty_tunnel_and_host_key_options() {
        let settings = SshSettings {
            user: "admin".to_string(),
            known_hosts_file: "/home/u/.fltctl/known_hosts".to_string(),
            strict_host_key_checking: true,
            timeout: 2.5,
            tunnel: "bastion".to_string(),
        };
        let call = SshCall {
            host: "10.0.0.2".to_string(),
            port: 2222,
            forward_agent: true,
            tty: true,
            command: "systemctl status -l a.service".to_string(),
            forward_to: String::new(),
        };
        assert_eq!(
            ssh_argv(&settings, &call).join(" "),
            "ssh -o ConnectTimeout=3 -o UserKnownHostsFile=/home/u/.fltctl/known_hosts \
             -o StrictHostKeyChecking=ask -p 2222 -l admin -A -t -J admin@bastion:22 10.0.0.2 \
             systemctl status -l a.service"
        );
        let relaxed = SshSettings {
            strict_host_key_checking: false,
            tunnel: "b:2200".to_string(),
            ..settings
        };
        let plain = SshCall {
            forward_to: String::new(),
            command: String::new(),
            forward_agent: false,
            tty: false,
            ..call
        };
        assert_eq!(
            ssh_argv(&relaxed, &plain).join(" "),
            "ssh -o ConnectTimeout=3 -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no \
             -p 2222 -l admin -J admin@b:2200 10.0.0.2"
        );
    }

    #[test]
    fn tunnels_for_unix_and_tcp_endpoints() {
        use crate::client::Endpoint;
        let settings = SshSettings {
            known_hosts_file: "/kh".to_string(),
            tunnel: "bastion:2200".to_string(),
            ..SshSettings::default()
        };
        let unix = Endpoint::Unix("/var/run/flt.sock".into());
        assert_eq!(
            tunnel_argv(&settings, &unix).join(" "),
            "ssh -o ConnectTimeout=10 -o UserKnownHostsFile=/kh -o StrictHostKeyChecking=ask \
             -p 2200 -l core bastion fltctl fd-forward /var/run/flt.sock"
        );
        let tcp = Endpoint::Http("https://10.0.0.1/x".to_string());
        assert_eq!(
            tunnel_argv(&settings, &tcp).join(" "),
            "ssh -o ConnectTimeout=10 -o UserKnownHostsFile=/kh -o StrictHostKeyChecking=ask \
             -p 2200 -l core -W 10.0.0.1:443 bastion"
        );
        let tcp = Endpoint::Http("http://10.0.0.1:54728".to_string());
        assert!(tunnel_argv(&settings, &tcp).contains(&"10.0.0.1:54728".to_string()));
    }

    #[test]
    fn home_expansion() {
        assert_eq!(
            expand_home("~/.fltctl/known_hosts", Some("/root")),
            "/root/.fltctl/known_hosts"
        );
        assert_eq!(expand_home("/etc/kh", Some("/root")), "/etc/kh");
        assert_eq!(expand_home("~/x", None), "~/x");
    }
}
