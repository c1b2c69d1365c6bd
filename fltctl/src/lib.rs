//! fltctl, the flt command-line client, as a library so that its commands can be run in-process
//! by tests: [`run`] takes the arguments and an [`Io`] (stdout, stderr, clock, program runner,
//! terminal facts) and returns the exit code. `main.rs` wires it to the real process.
//!
//! Layout: [`cli`] is the clap model, [`cmd`] one module per subcommand, [`client`] the API v1
//! client ([`client::Api`], [`client::HttpApi`]), [`table`] the `list-*` rendering, [`remote`]
//! running commands on machines over OpenSSH.

pub mod api_error;
pub mod cli;
pub mod client;
pub mod cmd;
pub mod context;
pub mod remote;
pub mod table;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command, GlobalArgs};
use client::{Endpoint, HttpApi, TlsFiles};
use context::{Clock, Ctx, Host, Runner};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

/// The process's surroundings for [`run`].
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub clock: &'a dyn Clock,
    pub runner: &'a dyn Runner,
    pub host: Host,
    /// The process environment's `FLTCTL_*` variables.
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").field("host", &self.host).finish()
    }
}

/// Runs fltctl with `args` (the program name first) and returns the exit code.
///
/// Exit codes: 0 success; 1 failure; 2 usage errors (fleetctl exited 0 on those, a bug) and
/// `verify`; `status`, `journal` and `ssh` return the remote command's code.
pub fn run(args: Vec<OsString>, io: Io<'_>) -> u8 {
    // `--version`/`-v` only count as the first argument, as in fleetctl.
    if args.get(1).is_some_and(|a| a == "--version" || a == "-v") {
        let _ = writeln!(io.out, "{}", cmd::version::version_line());
        return 0;
    }
    let args = with_env_flags(args, &io.env);
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let text = e.render().to_string();
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = io.out.write_all(text.as_bytes());
                    0
                }
                _ => {
                    let _ = io.err.write_all(text.as_bytes());
                    2
                }
            };
        }
    };
    let Some(command) = cli.command else {
        let _ = write!(io.out, "{}", Cli::command().render_help());
        return 0;
    };
    // These need no cluster.
    match &command {
        Command::Completions(a) => return cmd::completions::run(io.out, a),
        Command::Man(a) => return cmd::man::run(io.out, io.err, a),
        _ => {}
    }
    let ssh = remote::SshSettings {
        user: cli.global.ssh_username.clone(),
        known_hosts_file: remote::expand_home(
            &cli.global.known_hosts_file,
            io.host.home.as_deref(),
        ),
        strict_host_key_checking: cli.global.strict_host_key_checking,
        timeout: cli.global.ssh_timeout,
        tunnel: cli.global.tunnel.clone(),
    };
    let api = match build_client(&cli.global, &ssh, io.err) {
        Ok(api) => api,
        Err(e) => {
            let _ = writeln!(io.err, "Unable to initialize client: {e}");
            return 1;
        }
    };
    let mut ctx = Ctx::new(&api, io.out, io.err, io.clock, io.runner, io.host);
    ctx.debug = cli.global.debug;
    ctx.ssh = ssh;
    cmd::dispatch(&mut ctx, &command)
}

/// `FLTCTL_<FLAG>` for every global flag: a non-empty value is inserted as `--flag=value` before
/// the other arguments, so the command line (later arguments win) overrides it.
fn with_env_flags(args: Vec<OsString>, env: &[(String, String)]) -> Vec<OsString> {
    let mut args = args.into_iter();
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    for arg in Cli::command().get_arguments() {
        let Some(long) = arg.get_long().filter(|_| arg.is_global_set()) else {
            continue;
        };
        let key = env_var_name(long);
        if let Some((_, value)) = env.iter().find(|(k, v)| *k == key && !v.is_empty()) {
            out.push(OsString::from(format!("--{long}={value}")));
        }
    }
    out.extend(args);
    out
}

/// `FLTCTL_<FLAG>`: upper-cased, `-` as `_`.
pub fn env_var_name(long_flag: &str) -> String {
    format!("FLTCTL_{}", long_flag.to_uppercase().replace('-', "_"))
}

/// fleetctl's client setup: the driver, the first endpoint, TLS files.
fn build_client(
    global: &GlobalArgs,
    ssh: &remote::SshSettings,
    err: &mut dyn Write,
) -> Result<HttpApi, String> {
    match global.driver.as_str() {
        "API" => {}
        "etcd" => {
            return Err(
                "the etcd driver is not supported by fltctl; use the API driver".to_string(),
            );
        }
        other => return Err(format!("unrecognized driver {other:?}")),
    }
    let mut endpoints = global.endpoint.split(',');
    let first = endpoints.next().unwrap_or_default();
    if endpoints.next().is_some() {
        let stamp = log_stamp(std::time::SystemTime::now());
        let _ = writeln!(
            err,
            "{stamp} WARN lib.rs:{}: multiple endpoints provided but only the first ({first}) is used",
            line!()
        );
    }
    let endpoint = Endpoint::parse(first).map_err(|e| e.to_string())?;
    let file = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
    let tls = TlsFiles {
        ca_file: file(&global.ca_file),
        cert_file: file(&global.cert_file),
        key_file: file(&global.key_file),
    };
    let tunnel = (!ssh.tunnel.is_empty()).then(|| remote::tunnel_argv(ssh, &endpoint));
    HttpApi::new(&endpoint, &tls, tunnel)
        .map(|api| api.with_debug(global.debug))
        .map_err(|e| e.to_string())
}

/// `YYYY/MM/DD HH:MM:SS` in UTC, the stamp of fleetctl's log lines.
pub fn log_stamp(now: std::time::SystemTime) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}/{month:02}/{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_stamp_is_utc_civil_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000);
        assert_eq!(log_stamp(t), "2026/09/21 14:13:20");
        assert_eq!(log_stamp(std::time::UNIX_EPOCH), "1970/01/01 00:00:00");
    }
}
