//! fltd's configuration: an INI file overridden by `FLT_<OPTION>` environment variables.
//!
//! The file format is the one fleet read (goini via globalconf): options are top-level
//! `key=value` lines; keys are case-insensitive; `#` and `;` start comment lines; a value is
//! `"quoted"`, `'quoted'`, or bare (cut at the first `#` or `;`, then trimmed); a trailing `\`
//! joins the next line; keys under a `[section]` are ignored. An environment variable
//! `FLT_<OPTION upper-cased>` with a non-empty value replaces the file's value.
//!
//! Unlike fleet, an invalid value is an error naming the option and the value (fleet silently
//! kept the default), and each load starts from the defaults (fleet's SIGHUP reload kept the old
//! value of a key deleted from the file). Deprecated, unknown and ignored keys give warnings,
//! which the caller logs.
//!
//! [`Config::load`] is pure: the daemon reads the file and the environment and passes them in.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The file read when `-config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/flt/flt.conf";
/// Prefix of the environment overrides.
pub const ENV_PREFIX: &str = "FLT_";

/// Where the API is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// `unix:///path`: a unix socket at an absolute path.
    Unix(PathBuf),
    /// `tcp://host:port`: `host:port` as given (an IPv6 host is bracketed).
    Tcp(String),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(path) => write!(f, "unix://{}", path.display()),
            ListenAddr::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// Every option of fltd, with its default.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `verbosity`: > 0 enables debug logging.
    pub verbosity: i64,
    /// `etcd_servers`: etcd endpoints (`http://` or `https://` URLs).
    pub etcd_servers: Vec<String>,
    /// `etcd_username`, `etcd_password`: basic auth (empty: none).
    pub etcd_username: String,
    pub etcd_password: String,
    /// `etcd_keyfile`, `etcd_certfile`, `etcd_cafile`: TLS files (empty: none).
    pub etcd_keyfile: String,
    pub etcd_certfile: String,
    pub etcd_cafile: String,
    /// `etcd_key_prefix`: the root of flt's keyspace.
    pub etcd_key_prefix: String,
    /// `etcd_request_timeout` (float seconds): per-request timeout.
    pub etcd_request_timeout: Duration,
    /// `engine_reconcile_interval` (float seconds): engine tick; the lease TTL is 5×.
    pub engine_reconcile_interval: Duration,
    /// `public_ip`: the address advertised for this machine (`None`: auto-detected).
    pub public_ip: Option<IpAddr>,
    /// `metadata`: `k=v,k2=v2`.
    pub metadata: BTreeMap<String, String>,
    /// `agent_ttl` (Go duration): TTL of the machine, unit-state and heartbeat keys.
    pub agent_ttl: Duration,
    /// `units_directory`: where unit files are written for systemd.
    pub units_directory: PathBuf,
    /// `systemd_user`: use the user session bus.
    pub systemd_user: bool,
    /// `token_limit`: API page size (1–65535).
    pub token_limit: u16,
    /// `disable_engine`: never run an engine.
    pub disable_engine: bool,
    /// `disable_watches`: periodic reconciles only.
    pub disable_watches: bool,
    /// `enable_grpc`: accepted for compatibility; flt has no gRPC registry (a warning if true).
    pub enable_grpc: bool,
    /// `listen`: comma-separated `unix:///path` and `tcp://host:port` API listeners.
    pub listen: Vec<ListenAddr>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            verbosity: 0,
            etcd_servers: vec![
                "http://127.0.0.1:2379".to_string(),
                "http://127.0.0.1:4001".to_string(),
            ],
            etcd_username: String::new(),
            etcd_password: String::new(),
            etcd_keyfile: String::new(),
            etcd_certfile: String::new(),
            etcd_cafile: String::new(),
            etcd_key_prefix: "/_coreos.com/flt/".to_string(),
            etcd_request_timeout: Duration::from_secs(1),
            engine_reconcile_interval: Duration::from_secs(2),
            public_ip: None,
            metadata: BTreeMap::new(),
            agent_ttl: Duration::from_secs(30),
            units_directory: PathBuf::from("/run/flt/units/"),
            systemd_user: false,
            token_limit: 100,
            disable_engine: false,
            disable_watches: false,
            enable_grpc: false,
            listen: vec![ListenAddr::Unix(PathBuf::from("/var/run/flt.sock"))],
        }
    }
}

/// The options, in the order they are applied (and so the order errors are found in).
pub const OPTIONS: &[&str] = &[
    "verbosity",
    "etcd_servers",
    "etcd_username",
    "etcd_password",
    "etcd_keyfile",
    "etcd_certfile",
    "etcd_cafile",
    "etcd_key_prefix",
    "etcd_request_timeout",
    "engine_reconcile_interval",
    "public_ip",
    "metadata",
    "agent_ttl",
    "units_directory",
    "systemd_user",
    "token_limit",
    "disable_engine",
    "disable_watches",
    "enable_grpc",
    "listen",
];

/// Options fleet dropped: setting one only warns.
pub const DEPRECATED_OPTIONS: &[&str] = &["verify_units", "authorized_keys_file"];

/// Where a value came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The config file, at this (1-based) line.
    File { line: usize },
    /// The environment variable of this name.
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File { line } => write!(f, "config file line {line}"),
            Source::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

/// Why the configuration cannot be used (fltd exits 1).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A line that is neither a comment, a section header nor `key=value`: fleet's exact text.
    Syntax { line: usize },
    /// The file ends inside a `\` continuation that began at `line`.
    UnfinishedContinuation { line: usize },
    /// A value the option cannot take.
    InvalidValue {
        option: &'static str,
        value: String,
        source: Source,
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Syntax { line } => write!(f, "iniparser: syntax error at ':{line}'."),
            ConfigError::UnfinishedContinuation { line } => write!(
                f,
                "iniparser: the line continued with '\\' at ':{line}' runs past the end of the file"
            ),
            ConfigError::InvalidValue {
                option,
                value,
                source,
                reason,
            } => write!(
                f,
                "invalid value {value:?} for config option {option} (from {source}): {reason}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A loaded configuration and the warnings to log.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Builds the configuration from the file's text (`None`: no file) and the environment.
    pub fn load(file: Option<&str>, env: &BTreeMap<String, String>) -> Result<Loaded, ConfigError> {
        let ini = match file {
            Some(text) => parse_ini(text)?,
            None => Ini::default(),
        };
        let mut warnings = Vec::new();
        for entry in &ini.sectioned {
            warnings.push(format!(
                "Config option {} in section [{}] (line {}) is ignored: options must be top-level",
                entry.key, entry.section, entry.line
            ));
        }
        for entry in &ini.top {
            if !OPTIONS.contains(&entry.key.as_str())
                && !DEPRECATED_OPTIONS.contains(&entry.key.as_str())
            {
                warnings.push(format!(
                    "Unknown config option {} (line {}) - ignoring",
                    entry.key, entry.line
                ));
            }
        }
        let lookup = |option: &str| -> Option<(String, Source)> {
            let var = format!("{ENV_PREFIX}{}", option.to_uppercase());
            if let Some(value) = env.get(&var).filter(|v| !v.is_empty()) {
                return Some((value.clone(), Source::Env(var)));
            }
            // A repeated key: the last one wins, as in fleet.
            ini.top
                .iter()
                .rev()
                .find(|e| e.key == option)
                .map(|e| (e.value.clone(), Source::File { line: e.line }))
        };
        for option in DEPRECATED_OPTIONS {
            if lookup(option).is_some() {
                warnings.push(format!(
                    "Config option {option} is no longer supported - ignoring"
                ));
            }
        }
        let mut config = Config::default();
        for &option in OPTIONS {
            let Some((value, source)) = lookup(option) else {
                continue;
            };
            config
                .set(option, &value)
                .map_err(|reason| ConfigError::InvalidValue {
                    option,
                    value: value.clone(),
                    source,
                    reason,
                })?;
        }
        if config.enable_grpc {
            warnings
                .push("Config option enable_grpc is not supported by flt - ignoring".to_string());
        }
        Ok(Loaded { config, warnings })
    }

    /// Sets one option from its text; the error is the reason the value is refused.
    fn set(&mut self, option: &str, value: &str) -> Result<(), String> {
        match option {
            "verbosity" => self.verbosity = parse_go_int(value)?,
            "etcd_servers" => self.etcd_servers = parse_etcd_servers(value)?,
            "etcd_username" => self.etcd_username = value.to_string(),
            "etcd_password" => self.etcd_password = value.to_string(),
            "etcd_keyfile" => self.etcd_keyfile = value.to_string(),
            "etcd_certfile" => self.etcd_certfile = value.to_string(),
            "etcd_cafile" => self.etcd_cafile = value.to_string(),
            "etcd_key_prefix" => self.etcd_key_prefix = value.to_string(),
            "etcd_request_timeout" => self.etcd_request_timeout = parse_seconds(value)?,
            "engine_reconcile_interval" => self.engine_reconcile_interval = parse_seconds(value)?,
            "public_ip" => {
                self.public_ip = if value.is_empty() {
                    None
                } else {
                    Some(value.parse().map_err(|_| "not an IP address".to_string())?)
                }
            }
            "metadata" => self.metadata = parse_metadata(value)?,
            "agent_ttl" => {
                let ttl = parse_go_duration(value)?;
                if ttl.is_zero() {
                    return Err("must be greater than zero".to_string());
                }
                self.agent_ttl = ttl;
            }
            "units_directory" => {
                if !value.starts_with('/') {
                    return Err("must be an absolute path".to_string());
                }
                self.units_directory = PathBuf::from(value);
            }
            "systemd_user" => self.systemd_user = parse_go_bool(value)?,
            "token_limit" => {
                let limit = parse_go_int(value)?;
                self.token_limit = u16::try_from(limit)
                    .ok()
                    .filter(|l| *l > 0)
                    .ok_or_else(|| "must be between 1 and 65535".to_string())?;
            }
            "disable_engine" => self.disable_engine = parse_go_bool(value)?,
            "disable_watches" => self.disable_watches = parse_go_bool(value)?,
            "enable_grpc" => self.enable_grpc = parse_go_bool(value)?,
            "listen" => self.listen = parse_listen(value)?,
            other => return Err(format!("unknown option {other}")),
        }
        Ok(())
    }
}

/// A `key=value` line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct IniEntry {
    section: String,
    key: String,
    value: String,
    line: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Ini {
    top: Vec<IniEntry>,
    sectioned: Vec<IniEntry>,
}

/// goini's grammar. Lines are trimmed of Unicode whitespace; a `\` at the end of a trimmed line
/// joins the next (trimmed) line. Errors report the line where the logical line began.
fn parse_ini(text: &str) -> Result<Ini, ConfigError> {
    let mut ini = Ini::default();
    let mut section = String::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
    while let Some((line_no, first)) = lines.next() {
        let mut line = first.to_string();
        while line.ends_with('\\') {
            line.pop();
            let Some((_, next)) = lines.next() else {
                return Err(ConfigError::UnfinishedContinuation { line: line_no });
            };
            line.push_str(next);
        }
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') && line.len() >= 2 {
            // `[]` names the top level again, as in goini.
            section = line[1..line.len() - 1].trim().to_lowercase();
            continue;
        }
        let (key, value) = parse_key_value(&line).ok_or(ConfigError::Syntax { line: line_no })?;
        let entry = IniEntry {
            section: section.clone(),
            key: key.to_lowercase(),
            value,
            line: line_no,
        };
        if section.is_empty() {
            ini.top.push(entry);
        } else {
            ini.sectioned.push(entry);
        }
    }
    Ok(ini)
}

/// `key[ \t]*=[ \t]*` then `"v"`, `'v'`, or a bare value cut at `#`/`;` and trimmed. Any line
/// with a key and `=` is accepted (goini's last pattern matches an empty value).
fn parse_key_value(line: &str) -> Option<(&str, String)> {
    let key_end = line.find(['=', ' ', '\t']).filter(|&end| end > 0)?;
    let key = &line[..key_end];
    let rest = line[key_end..].trim_start_matches([' ', '\t']);
    let rest = rest.strip_prefix('=')?.trim_start_matches([' ', '\t']);
    for quote in ['"', '\''] {
        if let Some(inner) = rest
            .strip_prefix(quote)
            .and_then(|r| r.strip_suffix(quote))
            .filter(|inner| !inner.contains(quote))
        {
            return Some((key, inner.to_string()));
        }
    }
    let bare = rest.find(['#', ';']).map_or(rest, |end| &rest[..end]);
    Some((key, bare.trim().to_string()))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err("expected a boolean (true/false, 1/0, t/f)".to_string()),
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)` as Go's flag package uses it: an optional sign, then
/// decimal, `0x` hex, `0o`/`0` octal or `0b` binary, with `_` allowed between digits.
fn parse_go_int(value: &str) -> Result<i64, String> {
    let bad = || "expected an integer".to_string();
    if !go_underscores_ok(value) {
        return Err(bad());
    }
    let value = value.replace('_', "");
    let value = value.as_str();
    let (negative, digits) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    let (radix, digits) = match digits.get(..2) {
        Some("0x" | "0X") => (16, &digits[2..]),
        Some("0o" | "0O") => (8, &digits[2..]),
        Some("0b" | "0B") => (2, &digits[2..]),
        _ if digits.len() > 1 && digits.starts_with('0') => (8, &digits[1..]),
        _ => (10, digits),
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return Err(bad());
    }
    let magnitude = i128::from_str_radix(digits, radix).map_err(|_| bad())?;
    let signed = if negative { -magnitude } else { magnitude };
    i64::try_from(signed).map_err(|_| "integer out of range".to_string())
}

/// Go's rule for `_` in a base-0 integer: only between digits, or between a base prefix and a
/// digit.
fn go_underscores_ok(text: &str) -> bool {
    #[derive(PartialEq)]
    enum Saw {
        Start,
        Digit,
        Underscore,
        Other,
    }
    let s = text.strip_prefix(['+', '-']).unwrap_or(text).as_bytes();
    let mut saw = Saw::Start;
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = Saw::Digit;
        hex = s[1].eq_ignore_ascii_case(&b'x');
    }
    for &b in &s[i..] {
        if b.is_ascii_digit() || (hex && b.is_ascii_hexdigit()) {
            saw = Saw::Digit;
        } else if b == b'_' {
            if saw != Saw::Digit {
                return false;
            }
            saw = Saw::Underscore;
        } else if saw == Saw::Underscore {
            return false;
        } else {
            saw = Saw::Other;
        }
    }
    saw != Saw::Underscore
}

/// A positive, finite number of seconds (Go float syntax), e.g. `1.5`.
fn parse_seconds(value: &str) -> Result<Duration, String> {
    let secs: f64 = value
        .parse()
        .map_err(|_| "expected a number of seconds".to_string())?;
    if secs.is_nan() || secs <= 0.0 {
        return Err("must be greater than zero".to_string());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| "too large".to_string())
}

/// Comma-separated URLs; each item loses surrounding ` [ "` and ` " ]`, so a JSON-ish list
/// like `["http://a:2379", "http://b:2379"]` works.
fn parse_etcd_servers(value: &str) -> Result<Vec<String>, String> {
    let mut servers = Vec::new();
    for item in value.split(',') {
        let item = item
            .trim_start_matches([' ', '[', '"'])
            .trim_end_matches([' ', '"', ']']);
        let host = item
            .strip_prefix("http://")
            .or_else(|| item.strip_prefix("https://"));
        if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
            return Err(format!(
                "endpoint {item:?} is not an http:// or https:// URL with a host"
            ));
        }
        servers.push(item.to_string());
    }
    Ok(servers)
}

/// `k=v,k2=v2`: split at commas, each item at its first `=`, both sides trimmed; the last
/// duplicate wins. Blank items are skipped; an item without `=` or with an empty key is refused.
fn parse_metadata(value: &str) -> Result<BTreeMap<String, String>, String> {
    let mut metadata = BTreeMap::new();
    for item in value.split(',') {
        if item.trim().is_empty() {
            continue;
        }
        let Some((key, val)) = item.split_once('=') else {
            return Err(format!("item {item:?} is not key=value"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("item {item:?} has an empty key"));
        }
        metadata.insert(key.to_string(), val.trim().to_string());
    }
    Ok(metadata)
}

/// Comma-separated `unix:///absolute/path` and `tcp://host:port`.
fn parse_listen(value: &str) -> Result<Vec<ListenAddr>, String> {
    let mut listen = Vec::new();
    if value.trim().is_empty() {
        // No listeners: fltd serves no API, like fleet without socket activation.
        return Ok(listen);
    }
    for item in value.split(',').map(str::trim) {
        if let Some(path) = item.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "listener {item:?}: a unix socket needs an absolute path (unix:///path)"
                ));
            }
            listen.push(ListenAddr::Unix(PathBuf::from(path)));
        } else if let Some(addr) = item.strip_prefix("tcp://") {
            let port_ok = addr
                .rsplit_once(':')
                .filter(|(host, _)| !host.is_empty())
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .is_some_and(|port| port > 0);
            if !port_ok {
                return Err(format!("listener {item:?}: expected tcp://host:port"));
            }
            listen.push(ListenAddr::Tcp(addr.to_string()));
        } else {
            return Err(format!(
                "listener {item:?}: expected unix:///path or tcp://host:port"
            ));
        }
    }
    Ok(listen)
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers, each with an optional fraction and
/// a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), e.g. `1m30s`, `500ms`, `1.5h`. A sign
/// is accepted, but a negative duration is refused because a TTL cannot be negative.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let quoted = go_time_quote(text);
    let invalid = || format!("time: invalid duration {quoted}");
    let (negative, mut s) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !s.is_empty() {
        let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let int_part = &s[..int_len];
        s = &s[int_len..];
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            frac_part = &rest[..frac_len];
            s = &rest[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {quoted}"));
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let nanos_per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {quoted}",
                    go_time_quote(unit)
                ));
            }
        };
        let overflow = invalid;
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut nanos = whole.checked_mul(nanos_per_unit).ok_or_else(overflow)?;
        // Fractions beyond nanosecond precision are dropped, as Go does.
        let mut scale: u128 = 1;
        let mut frac: u128 = 0;
        for digit in frac_part.bytes().take(20) {
            frac = frac * 10 + u128::from(digit - b'0');
            scale *= 10;
        }
        nanos += frac * nanos_per_unit / scale;
        total = total.checked_add(nanos).ok_or_else(overflow)?;
        if total > i64::MAX as u128 {
            return Err(overflow());
        }
    }
    if negative && total > 0 {
        return Err("must not be negative".to_string());
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| invalid())?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| invalid())?;
    Ok(Duration::new(secs, nanos))
}

/// What fltd's command line asks for. Options are not flags: they come from the file and the
/// environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Run the daemon, reading this config file (`None`: [`DEFAULT_CONFIG_FILE`] if it exists).
    Run { config_file: Option<PathBuf> },
    /// `-version`, `--version` or the lone argument `version`: print the version, exit 0.
    Version,
    /// `-h`, `-help`, `--help`: print usage, exit 0.
    Help,
}

/// A command line fltd refuses. `exit_code()` is what fltd exits with after printing it and
/// the usage.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArgsError {
    /// A flag other than `-config`, `-version` and `-help` (Go's flag package exits 2).
    UnknownFlag(String),
    /// `-config` as the last argument.
    MissingValue(String),
    /// `-version=<not a bool>`.
    InvalidBool { flag: String, value: String },
    /// A positional argument other than a lone `version`.
    Positional { argv0: String },
}

impl ArgsError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ArgsError::Positional { .. } => 1,
            _ => 2,
        }
    }
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::UnknownFlag(flag) => write!(f, "flag provided but not defined: -{flag}"),
            ArgsError::MissingValue(flag) => write!(f, "flag needs an argument: -{flag}"),
            ArgsError::InvalidBool { flag, value } => write!(
                f,
                "invalid boolean value {value:?} for -{flag}: parse error"
            ),
            ArgsError::Positional { argv0 } => write!(
                f,
                "{argv0} takes no arguments. Did you mean to invoke fltctl instead?"
            ),
        }
    }
}

impl std::error::Error for ArgsError {}

/// Parses fltd's arguments (without `argv[0]`) with Go `flag` rules: `-flag` and `--flag`,
/// `-flag value` or `-flag=value`; flags end at the first positional argument or at `--`.
pub fn parse_args(argv0: &str, args: &[String]) -> Result<Invocation, ArgsError> {
    let mut config_file = None;
    let mut version = false;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            i += 1;
            break;
        }
        let Some(flag) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|f| !f.is_empty() && arg != "-")
        else {
            break;
        };
        let (name, inline_value) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (flag, None),
        };
        match name {
            "config" => {
                let value = match inline_value {
                    Some(v) => v.to_string(),
                    None => {
                        i += 1;
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| ArgsError::MissingValue(name.to_string()))?
                    }
                };
                config_file = Some(PathBuf::from(value));
            }
            "version" => {
                version = match inline_value {
                    None => true,
                    Some(v) => parse_go_bool(v).map_err(|_| ArgsError::InvalidBool {
                        flag: name.to_string(),
                        value: v.to_string(),
                    })?,
                };
            }
            "h" | "help" => return Ok(Invocation::Help),
            _ => return Err(ArgsError::UnknownFlag(name.to_string())),
        }
        i += 1;
    }
    let positional = &args[i..];
    if version || positional == ["version"] {
        return Ok(Invocation::Version);
    }
    if !positional.is_empty() {
        return Err(ArgsError::Positional {
            argv0: argv0.to_string(),
        });
    }
    Ok(Invocation::Run { config_file })
}

/// The config file could not be used (fltd exits 1).
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// `-config` named a file that cannot be read.
    Unusable {
        path: PathBuf,
        error: std::io::Error,
    },
    /// `-config` named a directory.
    Directory(PathBuf),
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigFileError::Unusable { path, error } => {
                write!(f, "Unable to use config file {}: {error}", path.display())
            }
            ConfigFileError::Directory(path) => write!(
                f,
                "Provided config {} is a directory, not a file",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigFileError {}

/// Reads the config file: the one given with `-config`, else `default` if it exists; either
/// must then be a readable file. `Ok(None)`: there is no file, and fltd proceeds with defaults
/// and the environment (fleet logged `No provided or default config file found - proceeding
/// without`).
pub fn read_config_file(
    explicit: Option<&std::path::Path>,
    default: &std::path::Path,
) -> Result<Option<(PathBuf, String)>, ConfigFileError> {
    let path = match explicit {
        Some(path) => path,
        None if std::fs::metadata(default).is_ok() => default,
        None => return Ok(None),
    };
    let unusable = |error| ConfigFileError::Unusable {
        path: path.to_path_buf(),
        error,
    };
    if std::fs::metadata(path).map_err(unusable)?.is_dir() {
        return Err(ConfigFileError::Directory(path.to_path_buf()));
    }
    let text = std::fs::read_to_string(path).map_err(unusable)?;
    Ok(Some((path.to_path_buf(), text)))
}

/// The quoting of Go's `time` errors: `"` and `\\` escaped, every byte of a control or
/// non-ASCII character as `\\xNN`.
fn go_time_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c.is_ascii() && u32::from(c) >= 0x20 {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{byte:02x}"));
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;
