//! `--endpoint` parsing and TLS settings, with fleetctl's error texts.

use super::TlsFiles;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where the API is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:///path` or `file:///path`: HTTP over a Unix socket.
    Unix(PathBuf),
    /// `http://host[:port][/path]` or `https://…`, kept as given.
    Http(String),
}

/// A bad `--endpoint` or TLS file (`Unable to initialize client: <this>`).
#[derive(Debug)]
#[non_exhaustive]
pub enum EndpointError {
    NoScheme,
    UnixWithHost {
        host: String,
        scheme: String,
    },
    UnsupportedScheme(String),
    EmptyUnixPath(String),
    ReadFile {
        path: PathBuf,
        error: std::io::Error,
    },
    BadPem {
        path: PathBuf,
        problem: String,
    },
    CertWithoutKey,
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointError::NoScheme => f.write_str("URL scheme undefined"),
            EndpointError::UnixWithHost { host, scheme } => write!(
                f,
                "unable to connect to host {host:?} with scheme {scheme:?}"
            ),
            EndpointError::UnsupportedScheme(s) => write!(f, "unsupported protocol scheme {s:?}"),
            EndpointError::EmptyUnixPath(e) => write!(f, "no socket path in endpoint {e:?}"),
            EndpointError::ReadFile { path, error } => {
                write!(f, "open {}: {error}", path.display())
            }
            EndpointError::BadPem { path, problem } => write!(f, "{}: {problem}", path.display()),
            EndpointError::CertWithoutKey => {
                f.write_str("TLS needs both --cert-file and --key-file for a client certificate")
            }
        }
    }
}

impl std::error::Error for EndpointError {}

impl Endpoint {
    /// Parses one endpoint (the caller has already taken the first of a comma list).
    pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        let Some((scheme, rest)) = text.split_once("://") else {
            // Go's url.Parse gives "host:port" a scheme of "host"; it is not one we know.
            return match text.split_once(':') {
                Some((scheme, _)) if !scheme.is_empty() && !scheme.contains('/') => {
                    Err(EndpointError::UnsupportedScheme(scheme.to_string()))
                }
                _ => Err(EndpointError::NoScheme),
            };
        };
        if scheme.is_empty() {
            return Err(EndpointError::NoScheme);
        }
        match scheme {
            "unix" | "file" => {
                let (host, path) = match rest.find('/') {
                    Some(i) => (&rest[..i], &rest[i..]),
                    None => (rest, ""),
                };
                if !host.is_empty() {
                    return Err(EndpointError::UnixWithHost {
                        host: host.to_string(),
                        scheme: scheme.to_string(),
                    });
                }
                if path.is_empty() {
                    return Err(EndpointError::EmptyUnixPath(text.to_string()));
                }
                Ok(Endpoint::Unix(PathBuf::from(path)))
            }
            "http" | "https" => Ok(Endpoint::Http(text.to_string())),
            other => Err(EndpointError::UnsupportedScheme(other.to_string())),
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, EndpointError> {
    std::fs::read(path).map_err(|error| EndpointError::ReadFile {
        path: path.to_path_buf(),
        error,
    })
}

fn certificates(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, EndpointError> {
    let pem = read_file(path)?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(EndpointError::BadPem {
                    path: path.to_path_buf(),
                    problem: e.to_string(),
                });
            }
        }
    }
    if certs.is_empty() {
        return Err(EndpointError::BadPem {
            path: path.to_path_buf(),
            problem: "no certificate found".to_string(),
        });
    }
    Ok(certs)
}

/// The server is verified against `--ca-file` when given (else ureq's default roots); a client
/// certificate is sent when `--cert-file` and `--key-file` are given.
pub(super) fn tls_config(files: &TlsFiles) -> Result<ureq::tls::TlsConfig, EndpointError> {
    use ureq::tls::{ClientCert, PrivateKey, RootCerts, TlsConfig};
    let mut builder = TlsConfig::builder();
    if let Some(ca) = &files.ca_file {
        builder = builder.root_certs(RootCerts::new_with_certs(&certificates(ca)?));
    }
    match (&files.cert_file, &files.key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert)?;
            let key_pem = read_file(key)?;
            let key_value = PrivateKey::from_pem(&key_pem).map_err(|e| EndpointError::BadPem {
                path: key.clone(),
                problem: e.to_string(),
            })?;
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key_value)));
        }
        (None, None) => {}
        _ => return Err(EndpointError::CertWithoutKey),
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_fleetctl_errors() {
        assert_eq!(
            Endpoint::parse("unix:///var/run/flt.sock").unwrap(),
            Endpoint::Unix(PathBuf::from("/var/run/flt.sock"))
        );
        assert_eq!(
            Endpoint::parse("file:///tmp/x.sock").unwrap(),
            Endpoint::Unix(PathBuf::from("/tmp/x.sock"))
        );
        assert_eq!(
            Endpoint::parse("unix://var/run/flt.sock")
                .unwrap_err()
                .to_string(),
            r#"unable to connect to host "var" with scheme "unix""#
        );
        assert_eq!(
            Endpoint::parse("/var/run/flt.sock")
                .unwrap_err()
                .to_string(),
            "URL scheme undefined"
        );
        assert_eq!(
            Endpoint::parse("ftp://x").unwrap_err().to_string(),
            r#"unsupported protocol scheme "ftp""#
        );
        assert_eq!(
            Endpoint::parse("https://10.0.0.1:54728").unwrap(),
            Endpoint::Http("https://10.0.0.1:54728".to_string())
        );
    }
}
