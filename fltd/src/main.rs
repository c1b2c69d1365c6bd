//! fltd: the flt daemon, one per host. It serves the HTTP API on its listeners (systemd socket
//! activation or the `listen` option) and runs the run loop of [`daemon`] until SIGTERM/SIGINT
//! (exit 0); SIGHUP reloads the configuration keeping the listeners; SIGUSR1 dumps the state.
//! Fatal configuration or startup errors exit 1.

mod clock;
mod config;
mod daemon;
mod settings;

use config::{Invocation, parse_args};
use daemon::{Ended, Generation, Host, Unwired};
use flt_driver::etcd::{EtcdClient, RegistryDriver};
use flt_driver::fatal;
use flt_driver::http::{HttpServer, Listeners, ServerConfig};
use flt_driver::notify::{Notifier, watchdog_interval_from_env};
use flt_driver::signals::SignalListener;
use settings::{DEFAULT_CONFIG_FILE, Loaded};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const VERSION: &str = env!("CARGO_PKG_VERSION");

const USAGE: &str = "Usage of fltd:\n  -config string\n    \tPath to config file. fltd will look for a \
config at /etc/flt/flt.conf by default.\n  -version\n    \tPrint the version and exit\n";

/// etcd calls in flight at once (watches have threads of their own).
const REGISTRY_WORKERS: usize = 4;

fn main() -> ExitCode {
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
    match loaded.settings.public_ip {
        Some(ip) => log::info!("Public IP {ip} (configured)"),
        None => match flt_driver::host::public_ipv4() {
            Ok(Some(ip)) => log::info!("Public IP {ip} (default route)"),
            Ok(None) => log::warn!("No public IP: no IPv4 address on the default route"),
            Err(e) => log::warn!("{e}"),
        },
    }

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

    let mut generation = start_generation(&loaded).unwrap_or_else(|e| fatal!("{e}"));
    notify(&host, |n| n.ready("running"));
    loop {
        match daemon::run(&mut generation, &host) {
            Ended::Stop(signal) => {
                log::info!("Received {signal:?}, shutting down");
                notify(&host, Notifier::stopping);
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
                generation = match start_generation(&loaded) {
                    Ok(generation) => generation,
                    Err(e) => fatal!("{e}"),
                };
                notify(&host, |n| n.ready("running"));
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

fn start_generation(loaded: &Loaded) -> Result<Generation, flt_driver::etcd::ConfigError> {
    let client = EtcdClient::new(loaded.settings.etcd.clone())?;
    let (responses_tx, responses) = crossbeam_channel::unbounded();
    let registry = RegistryDriver::start(client, responses_tx, REGISTRY_WORKERS);
    let (api_tx, api_rx) = crossbeam_channel::unbounded();
    Ok(Generation {
        node: Box::new(Unwired),
        registry,
        responses,
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
