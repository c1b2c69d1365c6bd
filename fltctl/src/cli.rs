//! The command line (clap derive): global flags, each with a `FLTCTL_<FLAG>` environment
//! variable, and one subcommand per file under `cmd/`.

use crate::cmd;
use clap::{Args, Parser, Subcommand};

/// The version fltctl reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// fltd's socket, the default endpoint.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/flt.sock";

const ABOUT: &str = "control a cluster of flt machines";

/// The root's description (a macro so that the help template can include it).
macro_rules! description {
    () => {
        "   fltctl controls an flt cluster through fltd's HTTP API: it submits unit files,
   schedules them onto machines (load), starts and stops them, and shows what runs where.

   Unit names without a known suffix get \".service\" (\"hello\" is \"hello.service\").
   Commands that create units read local files by that name, and create instances
   (\"hello@1.service\") from a template (\"hello@.service\") in the cluster or next to
   the argument.

   Examples:
     fltctl start hello.service         # submit ./hello.service, schedule, start, wait
     fltctl list-units                  # what runs where
     fltctl --endpoint http://10.0.0.1:54728 list-machines
     fltctl journal -f hello.service    # follow its journal (over ssh when remote)"
    };
}

/// The root's description, for the manual page.
pub const DESCRIPTION: &str = description!();

const AFTER_HELP: &str = "\
Every global option can also be set with FLTCTL_<OPTION>, upper-cased with '-' as '_' \
(for example FLTCTL_ENDPOINT=http://10.0.0.1:54728); the command line wins, and an empty \
variable is ignored.

Exit codes: 0 success; 1 failure (the message says why); 2 a usage error or the deprecated \
'verify'; status, journal and ssh exit with the remote command's code.";

const HELP_TEMPLATE: &str = concat!(
    "NAME:\n   {name} - {about}\n\nUSAGE:\n   {usage}\n\nVERSION:\n   {version}\n\nDESCRIPTION:\n",
    description!(),
    "\n\n{all-args}{after-help}"
);

#[derive(Debug, Parser)]
#[command(
    name = "fltctl",
    version = VERSION,
    about = ABOUT,
    after_help = AFTER_HELP,
    help_template = HELP_TEMPLATE,
    disable_version_flag = true,
    disable_help_subcommand = false,
    infer_subcommands = true,
    args_override_self = true,
    subcommand_help_heading = "COMMANDS",
    next_display_order = None,
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options shared by every command.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "GLOBAL OPTIONS")]
pub struct GlobalArgs {
    /// Location of the flt API: unix:///path, http://host:port or https://host:port. Only the
    /// first of a comma-separated list is used.
    #[arg(long, global = true, default_value = DEFAULT_ENDPOINT, value_name = "URL")]
    pub endpoint: String,

    /// Adapter used to talk to the cluster: API (etcd is not supported by fltctl).
    #[arg(long, global = true, default_value = "API", value_name = "DRIVER")]
    pub driver: String,

    /// Keyspace of the etcd driver (accepted for compatibility; unused with the API).
    #[arg(
        long,
        global = true,
        default_value = "/_coreos.com/flt/",
        value_name = "PREFIX",
        hide = true
    )]
    pub etcd_key_prefix: String,

    /// TLS client key (PEM) for an https:// endpoint.
    #[arg(
        long,
        global = true,
        alias = "etcd-keyfile",
        default_value = "",
        hide_default_value = true,
        value_name = "FILE"
    )]
    pub key_file: String,

    /// TLS client certificate (PEM) for an https:// endpoint.
    #[arg(
        long,
        global = true,
        alias = "etcd-certfile",
        default_value = "",
        hide_default_value = true,
        value_name = "FILE"
    )]
    pub cert_file: String,

    /// CA certificate(s) (PEM) that must have signed the server's certificate.
    #[arg(
        long,
        global = true,
        alias = "etcd-cafile",
        default_value = "",
        hide_default_value = true,
        value_name = "FILE"
    )]
    pub ca_file: String,

    /// SSH bastion host[:port] to reach machines (and the API) through.
    #[arg(
        long,
        global = true,
        default_value = "",
        hide_default_value = true,
        value_name = "HOST[:PORT]"
    )]
    pub tunnel: String,

    /// known_hosts file ssh checks machines' host keys against.
    #[arg(
        long,
        global = true,
        default_value = "~/.fltctl/known_hosts",
        value_name = "FILE"
    )]
    pub known_hosts_file: String,

    /// Verify machines' host keys (false: accept any).
    #[arg(long, global = true, default_value = "true",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub strict_host_key_checking: bool,

    /// Seconds ssh waits to connect.
    #[arg(long, global = true, default_value_t = 10.0, value_name = "SECONDS")]
    pub ssh_timeout: f64,

    /// User ssh logs in as.
    #[arg(long, global = true, default_value = "core", value_name = "USER")]
    pub ssh_username: String,

    /// Timeout of the etcd driver (accepted for compatibility; the API client has none).
    #[arg(
        long,
        global = true,
        default_value_t = 3.0,
        value_name = "SECONDS",
        hide = true
    )]
    pub request_timeout: f64,

    /// Print debug logs to stderr.
    #[arg(long, global = true, default_value = "false",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub debug: bool,

    /// Deprecated; accepted and ignored.
    #[arg(long, global = true, default_value = "true",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), hide = true)]
    pub experimental_api: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Submit(cmd::submit::SubmitArgs),
    Load(cmd::load::LoadArgs),
    Start(cmd::start::StartArgs),
    Stop(cmd::stop::StopArgs),
    Unload(cmd::unload::UnloadArgs),
    Destroy(cmd::destroy::DestroyArgs),
    Restart(cmd::restart::RestartArgs),
    ListUnits(cmd::list_units::ListUnitsArgs),
    ListUnitFiles(cmd::list_unit_files::ListUnitFilesArgs),
    ListMachines(cmd::list_machines::ListMachinesArgs),
    Cat(cmd::cat::CatArgs),
    Status(cmd::status::StatusArgs),
    Journal(cmd::journal::JournalArgs),
    Ssh(cmd::ssh::SshArgs),
    FdForward(cmd::fd_forward::FdForwardArgs),
    Verify(cmd::verify::VerifyArgs),
    Version(cmd::version::VersionArgs),
    Completions(cmd::completions::CompletionsArgs),
    Man(cmd::man::ManArgs),
}

/// `--block-attempts` and `--no-block` (§ blocking model).
#[derive(Clone, Copy, Debug, Args)]
pub struct BlockArgs {
    /// Wait for the units to reach their state for N attempts of 2 s each (0: forever).
    #[arg(
        long,
        default_value_t = 0,
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub block_attempts: i64,
    /// Do not wait; print "Triggered unit <name> <verb>" instead.
    #[arg(long)]
    pub no_block: bool,
}

impl BlockArgs {
    /// How the state change is waited for (`--no-block` wins over `--block-attempts`).
    pub fn blocking(self) -> Blocking {
        if self.no_block {
            Blocking::Trigger
        } else {
            Blocking::from_attempts(self.block_attempts)
        }
    }
}

/// How a command waits for units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocking {
    /// Do not wait; report the trigger.
    Trigger,
    /// Poll until the state is reached.
    Forever,
    /// Give up after this many attempts of 2 s.
    Attempts(u32),
}

impl Blocking {
    /// fleetctl's reading of an attempts count: negative means no blocking, 0 forever.
    pub fn from_attempts(n: i64) -> Blocking {
        match n {
            n if n < 0 => Blocking::Trigger,
            0 => Blocking::Forever,
            n => Blocking::Attempts(u32::try_from(n).unwrap_or(u32::MAX)),
        }
    }

    /// The lazy-create wait for `inactive` ignores `--no-block` and waits forever for 0 or less.
    pub fn for_creation(n: i64) -> Blocking {
        match Blocking::from_attempts(n) {
            Blocking::Trigger => Blocking::Forever,
            b => b,
        }
    }
}

/// `--replace`.
#[derive(Clone, Copy, Debug, Args)]
pub struct ReplaceArgs {
    /// Replace a unit already in the cluster whose content differs from the local file.
    #[arg(long)]
    pub replace: bool,
    /// Deprecated; accepted and ignored.
    #[arg(long, hide = true)]
    pub sign: bool,
}
