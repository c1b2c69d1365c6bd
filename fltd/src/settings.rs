//! What the daemon needs from its configuration, and where it comes from on this branch.
//!
//! The config file is resolved and read with fleet's rules and fatal messages (spec §8). Parsing
//! its options is `config.rs`'s job (branch `api`, `config::Config::load`); until that is merged
//! here, only the `FLT_<OPTION>` environment overrides of the options below are applied, and a
//! non-empty file is reported as not applied. On merge, build [`Settings`] from `config::Config`.

use flt_driver::etcd::EtcdConfig;
use flt_driver::http::ListenAddr;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The file read when `-config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/flt/flt.conf";

/// The options the daemon uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// `verbosity`: > 0 enables debug logging.
    pub verbosity: i64,
    /// `listen`: API listeners when not socket-activated.
    pub listen: Vec<ListenAddr>,
    /// `etcd_servers` and the other `etcd_*` client options.
    pub etcd: EtcdConfig,
    /// `etcd_key_prefix`.
    pub etcd_key_prefix: String,
    /// `public_ip`; `None`: detected from the default route.
    pub public_ip: Option<IpAddr>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            verbosity: 0,
            listen: vec![ListenAddr::Unix(PathBuf::from("/var/run/flt.sock"))],
            etcd: EtcdConfig::default(),
            etcd_key_prefix: "/_coreos.com/flt/".to_string(),
            public_ip: None,
        }
    }
}

/// Settings and where they came from.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    /// Things to log at warning level.
    pub warnings: Vec<String>,
}

/// The configuration cannot be used (fltd exits 1 with this message).
#[derive(Debug)]
#[non_exhaustive]
pub enum SettingsError {
    /// `-config` named a file that cannot be read.
    Unusable {
        path: PathBuf,
        error: std::io::Error,
    },
    /// `-config` named a directory.
    Directory(PathBuf),
    /// An option's value is invalid.
    BadValue {
        option: String,
        value: String,
        reason: String,
    },
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::Unusable { path, error } => {
                write!(f, "Unable to use config file {}: {error}", path.display())
            }
            SettingsError::Directory(path) => write!(
                f,
                "Provided config {} is a directory, not a file",
                path.display()
            ),
            SettingsError::BadValue {
                option,
                value,
                reason,
            } => write!(f, "invalid value {value:?} for option {option}: {reason}"),
        }
    }
}

impl std::error::Error for SettingsError {}

/// Reads the config file (`explicit`, else `default` if it exists) and applies `env`.
pub fn load(
    explicit: Option<&Path>,
    default: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Loaded, SettingsError> {
    let mut warnings = Vec::new();
    let file = read_config_file(explicit, default)?;
    if let Some((path, text)) = &file {
        let has_options = text.lines().any(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#') && !l.starts_with(';')
        });
        if has_options {
            warnings.push(format!(
                "options in {} are not applied by this build (only FLT_* variables are)",
                path.display()
            ));
        }
    }
    let mut settings = Settings::default();
    for (key, value) in env {
        let Some(option) = key.strip_prefix("FLT_").map(str::to_ascii_lowercase) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        let bad = |reason: String| SettingsError::BadValue {
            option: option.clone(),
            value: value.clone(),
            reason,
        };
        match option.as_str() {
            "verbosity" => {
                settings.verbosity = value.trim().parse().map_err(|e| bad(format!("{e}")))?;
            }
            "listen" => settings.listen = parse_listen(value).map_err(bad)?,
            "etcd_servers" => {
                settings.etcd.endpoints = value
                    .split(',')
                    .map(|s| s.trim_matches([' ', '[', '"', ']']).to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
            "etcd_key_prefix" => settings.etcd_key_prefix = value.clone(),
            "public_ip" => {
                settings.public_ip = Some(value.trim().parse().map_err(|e| bad(format!("{e}")))?);
            }
            _ => {}
        }
    }
    Ok(Loaded {
        settings,
        file: file.map(|(path, _)| path),
        warnings,
    })
}

/// `unix:///path` and `tcp://host:port`, comma-separated; empty means no listener.
pub fn parse_listen(value: &str) -> Result<Vec<ListenAddr>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            if let Some(path) = item.strip_prefix("unix://") {
                if !path.starts_with('/') {
                    return Err(format!(
                        "listener {item:?}: a unix socket needs an absolute path (unix:///path)"
                    ));
                }
                Ok(ListenAddr::Unix(PathBuf::from(path)))
            } else if let Some(addr) = item.strip_prefix("tcp://") {
                if addr
                    .rsplit_once(':')
                    .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                {
                    return Err(format!("listener {item:?}: expected tcp://host:port"));
                }
                Ok(ListenAddr::Tcp(addr.to_string()))
            } else {
                Err(format!(
                    "listener {item:?}: expected unix:///path or tcp://host:port"
                ))
            }
        })
        .collect()
}

fn read_config_file(
    explicit: Option<&Path>,
    default: &Path,
) -> Result<Option<(PathBuf, String)>, SettingsError> {
    let path = match explicit {
        Some(path) => path,
        None if std::fs::metadata(default).is_ok() => default,
        None => return Ok(None),
    };
    let unusable = |error| SettingsError::Unusable {
        path: path.to_path_buf(),
        error,
    };
    if std::fs::metadata(path).map_err(unusable)?.is_dir() {
        return Err(SettingsError::Directory(path.to_path_buf()));
    }
    let text = std::fs::read_to_string(path).map_err(unusable)?;
    Ok(Some((path.to_path_buf(), text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_apply() {
        let env: BTreeMap<String, String> = [
            ("FLT_VERBOSITY", "2"),
            ("FLT_LISTEN", "unix:///run/a.sock, tcp://127.0.0.1:54728"),
            ("FLT_ETCD_SERVERS", r#"["http://a:2379", "http://b:2379"]"#),
            ("FLT_PUBLIC_IP", "192.0.2.7"),
            ("HOME", "/root"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let loaded = load(None, Path::new("/nonexistent/flt.conf"), &env).expect("load");
        assert_eq!(loaded.file, None);
        let s = loaded.settings;
        assert_eq!(s.verbosity, 2);
        assert_eq!(
            s.listen,
            [
                ListenAddr::Unix("/run/a.sock".into()),
                ListenAddr::Tcp("127.0.0.1:54728".into())
            ]
        );
        assert_eq!(s.etcd.endpoints, ["http://a:2379", "http://b:2379"]);
        assert_eq!(s.public_ip, Some("192.0.2.7".parse().expect("ip")));
    }

    #[test]
    fn bad_values_and_files_name_themselves() {
        let env = BTreeMap::from([("FLT_LISTEN".to_string(), "http://x".to_string())]);
        let err = load(None, Path::new("/nonexistent"), &env).expect_err("bad listen");
        assert_eq!(
            err.to_string(),
            "invalid value \"http://x\" for option listen: listener \"http://x\": expected \
             unix:///path or tcp://host:port"
        );
        let none = BTreeMap::new();
        let err = load(
            Some(Path::new("/nonexistent/x.conf")),
            Path::new("/x"),
            &none,
        )
        .expect_err("missing");
        assert_eq!(
            err.to_string(),
            "Unable to use config file /nonexistent/x.conf: No such file or directory (os error 2)"
        );
        let err = load(Some(Path::new("/")), Path::new("/x"), &none).expect_err("dir");
        assert_eq!(
            err.to_string(),
            "Provided config / is a directory, not a file"
        );
    }
}
