//! fltd: the flt daemon, one per host. It serves the HTTP API on its listeners (systemd socket
//! activation or the `listen` option) and runs the run loop of [`daemon`] until SIGTERM/SIGINT
//! (exit 0); SIGHUP reloads the configuration keeping the listeners; SIGUSR1 dumps the state.
//! Fatal configuration or startup errors exit 1.

mod clock;
mod config;
mod daemon;
mod daemon_node;
mod memory;
mod settings;

use config::{Invocation, parse_args};
use daemon::{Ended, Generation, Host};
use daemon_node::DaemonNode;
use flt_core::node::NodeConfig;
use flt_driver::etcd::{EtcdClient, RegistryDriver};
use flt_driver::fatal;
use flt_driver::http::{HttpServer, Listeners, ServerConfig};
use flt_driver::notify::{Notifier, watchdog_interval_from_env};
use flt_driver::signals::SignalListener;
use flt_driver::systemd::{BusAddress, SystemdConfig, SystemdDriver};
use settings::{DEFAULT_CONFIG_FILE, Loaded};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const VERSION: &str = env!("CARGO_PKG_VERSION");

const USAGE: &str = "Usage of fltd:\n  -config string\n    \tPath to config file. fltd will look for a \
config at /etc/flt/flt.conf by default.\n  -version\n    \tPrint the version and exit\n";

/// etcd calls in flight at once at most (watches have threads of their own). The engine keeps
/// up to 32 writes in flight when it moves a failed machine's units; 4 made it write them ~400
/// a second on a loaded test host. The pool shrinks to 2 workers when idle.
const REGISTRY_WORKERS: usize = 12;

fn main() -> ExitCode {
    memory::tune_malloc();
    let mut argv = std::env::args();
    let argv0 = argv.next().unwrap_or_else(|| "fltd".to_string());
    let args: Vec<String> = argv.collect();
    match parse_args(&argv0, &args) {
        Ok(Invocation::Version) => {
            println!("fltd version {VERSION}");
            ExitCode::SUCCESS
        }
        Ok(Invocation::Help) => {
            eprint!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Invocation::Run { config_file }) => {
            run(config_file.as_deref());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprint!("{USAGE}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn load_settings(config_file: Option<&Path>) -> Result<Loaded, Box<dyn std::error::Error>> {
    let env = std::env::vars().collect();
    settings::load(config_file, Path::new(DEFAULT_CONFIG_FILE), &env)
}

fn log_loaded(loaded: &Loaded) {
    if loaded.file.is_none() {
        log::info!("No provided or default config file found - proceeding without");
    }
    for warning in &loaded.warnings {
        log::warn!("{warning}");
    }
}

fn run(config_file: Option<&Path>) {
    flt_driver::logging::init(0);
    log::info!("Starting fltd version {VERSION}");
    let mut loaded = load_settings(config_file).unwrap_or_else(|e| fatal!("{e}"));
    flt_driver::logging::set_verbosity(loaded.settings.verbosity);
    log_loaded(&loaded);

    let machine_id = flt_driver::host::machine_id(Path::new(flt_driver::host::MACHINE_ID_FILE))
        .unwrap_or_else(|e| fatal!("{e}"));
    log::info!("Machine ID {machine_id}");
    let public_ip = public_ip_of(&loaded);

    raise_open_files_limit();
    let (listeners, activated) =
        Listeners::open(&loaded.settings.listen).unwrap_or_else(|e| fatal!("{e}"));
    let (_signal_listener, signals) =
        SignalListener::channel().unwrap_or_else(|e| fatal!("cannot catch signals: {e}"));
    for listener in listeners.iter() {
        let how = if activated {
            "passed by systemd"
        } else {
            "bound"
        };
        log::info!("API listener {} ({how})", listener.describe());
    }
    let api = HttpServer::start(&listeners, &ServerConfig::new(VERSION))
        .unwrap_or_else(|e| fatal!("cannot serve the API: {e}"));
    let notifier = Notifier::from_env().unwrap_or_else(|e| {
        log::warn!("{e}");
        None
    });
    let host = Host {
        clock: clock::Clock::start(),
        api: &api,
        signals: &signals,
        notifier: notifier.as_ref(),
        watchdog: watchdog_interval_from_env(),
    };

    let start = |loaded: &Loaded, public_ip: &str| {
        start_generation(loaded, &machine_id, public_ip, host.clock.now())
    };
    let mut generation = start(&loaded, &public_ip).unwrap_or_else(|e| fatal!("{e}"));
    loop {
        match daemon::run(&mut generation, &host) {
            Ended::Stop(signal) => {
                log::info!("Received {signal:?}, shutting down");
                notify(&host, Notifier::stopping);
                // The process ends here: do not join the systemd threads, whose D-Bus call in
                // flight (the bus may already be gone at shutdown) can block for its timeout.
                // Units are systemd's, so nothing is left behind.
                std::mem::forget(generation.systemd.take());
                drop(generation);
                return;
            }
            Ended::Reload => {
                let path = loaded
                    .file
                    .clone()
                    .or_else(|| config_file.map(Path::to_path_buf))
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
                log::info!("Reloading configuration from {}", path.display());
                notify(&host, Notifier::reloading);
                // Tear the old generation down first: its watches and calls end here.
                drop(generation);
                match load_settings(config_file) {
                    Ok(new) => {
                        flt_driver::logging::set_verbosity(new.settings.verbosity);
                        log_loaded(&new);
                        if !activated && new.settings.listen != loaded.settings.listen {
                            log::warn!(
                                "The listen option changed; the API keeps its listeners until fltd restarts"
                            );
                        }
                        loaded = new;
                    }
                    Err(e) => log::error!("{e}; keeping the previous configuration"),
                }
                let public_ip = public_ip_of(&loaded);
                generation = match start(&loaded, &public_ip) {
                    Ok(generation) => generation,
                    Err(e) => fatal!("{e}"),
                };
            }
        }
    }
}

fn notify(
    host: &Host<'_>,
    message: impl Fn(&Notifier) -> Result<(), flt_driver::notify::NotifyError>,
) {
    if let Some(notifier) = host.notifier
        && let Err(e) = message(notifier)
    {
        log::warn!("{e}");
    }
}

/// This machine's advertised address: the configured one, else the default route's.
fn public_ip_of(loaded: &Loaded) -> String {
    match loaded.settings.public_ip {
        Some(ip) => {
            log::info!("Public IP {ip} (configured)");
            ip.to_string()
        }
        None => match flt_driver::host::public_ipv4() {
            Ok(Some(ip)) => {
                log::info!("Public IP {ip} (default route)");
                ip.to_string()
            }
            Ok(None) => {
                log::warn!("No public IP: no IPv4 address on the default route");
                String::new()
            }
            Err(e) => {
                log::warn!("{e}");
                String::new()
            }
        },
    }
}

/// The core's configuration from the daemon's.
fn node_config(loaded: &Loaded, machine_id: &str, public_ip: &str) -> NodeConfig {
    let config = &loaded.settings.config;
    let mut node = NodeConfig::new(machine_id);
    node.public_ip = public_ip.to_string();
    node.metadata = config.metadata.clone();
    node.version = VERSION.to_string();
    node.agent_ttl = config.agent_ttl;
    node.engine_reconcile_interval = config.engine_reconcile_interval;
    node.token_limit = config.token_limit;
    node.disable_engine = config.disable_engine;
    node.disable_watches = config.disable_watches;
    node.key_prefix = loaded.settings.etcd_key_prefix.clone();
    node.request_timeout = config.etcd_request_timeout;
    // Jitter differs between machines and between runs of one machine.
    node.seed = machine_id
        .bytes()
        .fold(u64::from(std::process::id()), |seed, b| {
            seed.rotate_left(7) ^ u64::from(b)
        });
    node
}

fn systemd_config(loaded: &Loaded) -> SystemdConfig {
    let config = &loaded.settings.config;
    let bus = match std::env::var("DBUS_SESSION_BUS_ADDRESS") {
        Ok(address) if config.systemd_user => BusAddress::Bus(address),
        _ => {
            if config.systemd_user {
                log::warn!(
                    "systemd_user is set but DBUS_SESSION_BUS_ADDRESS is not; using the system bus"
                );
            }
            BusAddress::System
        }
    };
    SystemdConfig {
        bus,
        units_dir: config.units_directory.clone(),
        ..SystemdConfig::default()
    }
}

fn start_generation(
    loaded: &Loaded,
    machine_id: &str,
    public_ip: &str,
    now: flt_core::time::Instant,
) -> Result<Generation, Box<dyn std::error::Error>> {
    let client = EtcdClient::new(loaded.settings.etcd.clone())?;
    let systemd_config = systemd_config(loaded);
    // Without systemd the node still runs (API, engine); the agent's requests fail until the
    // run loop reconnects.
    let systemd = SystemdDriver::spawn(systemd_config.clone())
        .map_err(|e| log::error!("{e}; retrying every {:?}", daemon::SYSTEMD_RETRY))
        .ok();
    let (responses_tx, responses) = crossbeam_channel::unbounded();
    let registry = RegistryDriver::start(client, responses_tx, REGISTRY_WORKERS);
    let (api_tx, api_rx) = crossbeam_channel::unbounded();
    let node = DaemonNode::new(node_config(loaded, machine_id, public_ip), now);
    Ok(Generation {
        node: Box::new(node),
        registry,
        responses,
        systemd,
        systemd_config: Some(systemd_config),
        api_tx,
        api_rx,
    })
}

/// Raises the soft limit of open files to the hard one (systemd's default soft limit is 1024):
/// each API connection takes two descriptors, and tiny_http gives up a listener for good when it
/// runs out of them.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                log::warn!("cannot raise the open files limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => log::warn!("cannot read the open files limit: {e}"),
    }
}
