//! How to reach etcd: endpoints, timeouts, TLS and basic auth (fltd's `etcd_*` options).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Settings of an [`super::EtcdClient`].
#[derive(Clone, Debug, PartialEq)]
pub struct EtcdConfig {
    /// Base URLs, e.g. `http://127.0.0.1:2379`. Tried in order; the last one that answered is
    /// tried first next time.
    pub endpoints: Vec<String>,
    /// Time allowed for one get, put or delete on one endpoint (`etcd_request_timeout`).
    pub request_timeout: Duration,
    /// How long one streamed watch request may stay open before it is re-armed (default 5 min).
    /// Separate from `request_timeout`, which would otherwise cut every idle watch short. Each
    /// re-arm is one request per watch: with a dozen watches per host, a short period would be
    /// most of an idle cluster's etcd traffic. A lost connection ends the request at once; only
    /// a silently dead one waits this long (and the followers' resync covers it).
    pub watch_poll_timeout: Duration,
    /// Read through the raft leader (`quorum=true`), so a read never goes back in time.
    pub quorum_reads: bool,
    /// TLS settings for `https://` endpoints.
    pub tls: Option<TlsFiles>,
    /// Basic auth (`etcd_username`, `etcd_password`).
    pub auth: Option<BasicAuth>,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec![
                "http://127.0.0.1:2379".to_string(),
                "http://127.0.0.1:4001".to_string(),
            ],
            request_timeout: Duration::from_secs(1),
            watch_poll_timeout: Duration::from_secs(300),
            quorum_reads: true,
            tls: None,
            auth: None,
        }
    }
}

impl EtcdConfig {
    /// The defaults, with these endpoints.
    pub fn with_endpoints<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..EtcdConfig::default()
        }
    }
}

/// PEM files for TLS (`etcd_cafile`, `etcd_certfile`, `etcd_keyfile`).
///
/// Unlike fleet, a CA given without a client certificate is used to verify the server (fleet
/// skipped verification then); without a CA the built-in web PKI roots verify it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// etcd user and password.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// The configuration cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// No endpoints were given.
    NoEndpoints,
    /// An endpoint is not an `http://` or `https://` URL.
    BadEndpoint(String),
    /// A TLS file could not be read.
    ReadFile {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A TLS file holds no usable PEM certificate or key.
    BadPem { path: PathBuf, problem: String },
    /// Only one of the client certificate and key was given.
    CertWithoutKey,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoEndpoints => f.write_str("no etcd endpoints configured"),
            ConfigError::BadEndpoint(e) => {
                write!(f, "etcd endpoint {e:?} is not an http:// or https:// URL")
            }
            ConfigError::ReadFile { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
            ConfigError::BadPem { path, problem } => write!(f, "{}: {problem}", path.display()),
            ConfigError::CertWithoutKey => {
                f.write_str("etcd TLS needs both a client certificate file and a key file")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

fn read_pem(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|error| ConfigError::ReadFile {
        path: path.to_path_buf(),
        error,
    })
}

/// Builds the ureq TLS settings from the PEM files.
pub(crate) fn tls_config(files: &TlsFiles) -> Result<ureq::tls::TlsConfig, ConfigError> {
    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
    let mut builder = TlsConfig::builder();
    if let Some(ca) = &files.ca_file {
        let pem = read_pem(ca)?;
        let mut roots = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(cert)) => roots.push(cert),
                Ok(_) => {}
                Err(e) => {
                    return Err(ConfigError::BadPem {
                        path: ca.clone(),
                        problem: e.to_string(),
                    });
                }
            }
        }
        if roots.is_empty() {
            return Err(ConfigError::BadPem {
                path: ca.clone(),
                problem: "no CA certificate found".to_string(),
            });
        }
        builder = builder.root_certs(RootCerts::new_with_certs(&roots));
    }
    match (&files.cert_file, &files.key_file) {
        (Some(cert_path), Some(key_path)) => {
            let pem = read_pem(cert_path)?;
            let mut chain: Vec<Certificate<'static>> = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                match item {
                    Ok(PemItem::Certificate(cert)) => chain.push(cert),
                    Ok(_) => {}
                    Err(e) => {
                        return Err(ConfigError::BadPem {
                            path: cert_path.clone(),
                            problem: e.to_string(),
                        });
                    }
                }
            }
            if chain.is_empty() {
                return Err(ConfigError::BadPem {
                    path: cert_path.clone(),
                    problem: "no certificate found".to_string(),
                });
            }
            let key_pem = read_pem(key_path)?;
            let key = PrivateKey::from_pem(&key_pem).map_err(|e| ConfigError::BadPem {
                path: key_path.clone(),
                problem: e.to_string(),
            })?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        (None, None) => {}
        _ => return Err(ConfigError::CertWithoutKey),
    }
    Ok(builder.build())
}
