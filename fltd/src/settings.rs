//! What the daemon needs from its configuration ([`crate::config`]), in the drivers' types.

use crate::config::{self, Config};
use flt_driver::etcd::{BasicAuth, EtcdConfig, TlsFiles};
use flt_driver::http::ListenAddr;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use config::DEFAULT_CONFIG_FILE;

/// The options the daemon uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub verbosity: i64,
    pub listen: Vec<ListenAddr>,
    pub etcd: EtcdConfig,
    pub etcd_key_prefix: String,
    pub public_ip: Option<IpAddr>,
    /// Everything else, for the core's configuration.
    pub config: Config,
}

/// Settings and where they came from.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub file: Option<PathBuf>,
    pub warnings: Vec<String>,
}

fn non_empty(path: &str) -> Option<PathBuf> {
    (!path.is_empty()).then(|| PathBuf::from(path))
}

impl Settings {
    pub fn from_config(config: Config) -> Settings {
        let tls = TlsFiles {
            ca_file: non_empty(&config.etcd_cafile),
            cert_file: non_empty(&config.etcd_certfile),
            key_file: non_empty(&config.etcd_keyfile),
        };
        let etcd = EtcdConfig {
            endpoints: config.etcd_servers.clone(),
            request_timeout: config.etcd_request_timeout,
            tls: (tls != TlsFiles::default()).then_some(tls),
            auth: (!config.etcd_username.is_empty()).then(|| BasicAuth {
                username: config.etcd_username.clone(),
                password: config.etcd_password.clone(),
            }),
            ..EtcdConfig::default()
        };
        Settings {
            verbosity: config.verbosity,
            listen: config
                .listen
                .iter()
                .map(|l| match l {
                    config::ListenAddr::Unix(p) => ListenAddr::Unix(p.clone()),
                    config::ListenAddr::Tcp(a) => ListenAddr::Tcp(a.clone()),
                })
                .collect(),
            etcd,
            etcd_key_prefix: config.etcd_key_prefix.clone(),
            public_ip: config.public_ip,
            config,
        }
    }
}

/// Reads the config file (`explicit`, else `default` if it exists) and applies `env`.
pub fn load(
    explicit: Option<&Path>,
    default: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Loaded, Box<dyn std::error::Error>> {
    let file = config::read_config_file(explicit, default)?;
    let loaded = Config::load(file.as_ref().map(|(_, text)| text.as_str()), env)?;
    Ok(Loaded {
        settings: Settings::from_config(loaded.config),
        file: file.map(|(path, _)| path),
        warnings: loaded.warnings,
    })
}
