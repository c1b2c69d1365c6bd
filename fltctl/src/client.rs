//! The API v1 client fltctl drives: [`Api`] is what the commands need, [`HttpApi`] speaks it
//! over `unix://`, `http://` or `https://` (TLS with a CA and a client certificate).
//!
//! Lists follow `nextPageToken` until none is returned. A missing unit is `Ok(None)`, as in
//! fleet's client; any other non-2xx answer is an [`ApiError::Status`], worded as Google's API
//! client worded it (`googleapi: Error 400: …`).

mod command;
mod endpoint;
mod unix;

pub use endpoint::{Endpoint, EndpointError};

use crate::api_error::response_error;
use flt_core::api::entities::{Machine, MachinePage, Unit, UnitPage, UnitState, UnitStatePage};
use std::fmt;
use std::io::Read;
use std::path::PathBuf;

/// The API path prefix fltd serves (`/fleet/v1` is its alias).
pub const API_PREFIX: &str = "/flt/v1";

/// A failed API call.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApiError {
    /// The server answered with a non-2xx status.
    Status { status: u16, body: String },
    /// The request did not complete: connection refused, TLS failure, bad JSON, …
    Transport { url: String, detail: String },
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Status { status, body } => f.write_str(&response_error(*status, body)),
            ApiError::Transport { url, detail } => write!(f, "{url}: {detail}"),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            ApiError::Transport { .. } => None,
        }
    }
}

/// What fltctl's commands ask of the cluster. One implementation, [`HttpApi`]; the trait keeps
/// the command logic independent of the transport.
pub trait Api {
    /// Every unit, in the server's order (sorted by name).
    fn units(&self) -> Result<Vec<Unit>, ApiError>;
    /// One unit; `None` if it does not exist.
    fn unit(&self, name: &str) -> Result<Option<Unit>, ApiError>;
    /// Every unit state (one per unit and machine).
    fn unit_states(&self) -> Result<Vec<UnitState>, ApiError>;
    /// The unit states of one unit (`?unitName=`).
    fn unit_states_of(&self, name: &str) -> Result<Vec<UnitState>, ApiError>;
    /// Live machines.
    fn machines(&self) -> Result<Vec<Machine>, ApiError>;
    /// Creates (or replaces) a unit from its name and options, without a desired state.
    fn create_unit(&self, unit: &Unit) -> Result<(), ApiError>;
    /// Sets the desired state of an existing unit.
    fn set_unit_target_state(&self, name: &str, state: &str) -> Result<(), ApiError>;
    /// Deletes a unit; a unit that does not exist is not an error.
    fn destroy_unit(&self, name: &str) -> Result<(), ApiError>;
}

/// TLS files for an `https://` endpoint.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// The API over HTTP/1.1, blocking (ureq). No request timeout, as fleetctl's HTTP client had none.
#[derive(Debug)]
pub struct HttpApi {
    agent: ureq::Agent,
    /// `http://host:port/flt/v1` (for a unix socket the host is a placeholder).
    base: String,
    /// `--debug`: log each request and its status to stderr.
    debug: bool,
}

impl HttpApi {
    /// A client for `endpoint`. Nothing is dialled until the first call. With `tunnel`, every
    /// connection is that command's stdin and stdout instead of a socket (`--tunnel`).
    pub fn new(
        endpoint: &Endpoint,
        tls: &TlsFiles,
        tunnel: Option<Vec<String>>,
    ) -> Result<HttpApi, EndpointError> {
        let builder = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .user_agent(concat!("fltctl/", env!("CARGO_PKG_VERSION")));
        if let Some(argv) = tunnel {
            let connector = command::CommandConnector { argv };
            let (config, base) = match endpoint {
                Endpoint::Unix(_) => (
                    builder.build(),
                    format!("http://{}{API_PREFIX}", unix::PLACEHOLDER_HOST),
                ),
                Endpoint::Http(url) => {
                    let builder = if url.starts_with("https://") {
                        builder.tls_config(endpoint::tls_config(tls)?)
                    } else {
                        builder
                    };
                    (
                        builder.build(),
                        format!("{}{API_PREFIX}", url.trim_end_matches('/')),
                    )
                }
            };
            // TLS, when the URL asks for it, runs over the tunnel.
            use ureq::unversioned::transport::{Connector, RustlsConnector};
            let connector = Connector::<()>::chain(connector, RustlsConnector::default());
            return Ok(HttpApi {
                agent: ureq::Agent::with_parts(config, connector, unix::NoDns),
                base,
                debug: false,
            });
        }
        match endpoint {
            Endpoint::Unix(path) => {
                let config = builder.max_idle_connections(0).build();
                Ok(HttpApi {
                    agent: unix::agent(config, path.clone()),
                    base: format!("http://{}{API_PREFIX}", unix::PLACEHOLDER_HOST),
                    debug: false,
                })
            }
            Endpoint::Http(url) => {
                let builder = if url.starts_with("https://") {
                    builder.tls_config(endpoint::tls_config(tls)?)
                } else {
                    builder
                };
                Ok(HttpApi {
                    agent: ureq::Agent::new_with_config(builder.build()),
                    base: format!("{}{API_PREFIX}", url.trim_end_matches('/')),
                    debug: false,
                })
            }
        }
    }

    /// Logs every request and its status to stderr (`--debug`).
    pub fn with_debug(mut self, debug: bool) -> HttpApi {
        self.debug = debug;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and returns the status and body; transport failures become errors.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, String), ApiError> {
        let url = self.url(path);
        let transport = |detail: String| ApiError::Transport {
            url: format!("{} {url}", go_method(method)),
            detail,
        };
        let result = match (method, body) {
            ("PUT", Some(body)) => self
                .agent
                .put(&url)
                .header("Content-Type", "application/json")
                .send(body),
            ("DELETE", _) => self.agent.delete(&url).call(),
            _ => self.agent.get(&url).call(),
        };
        let mut response = result.map_err(|e| transport(ureq_error_text(&e)))?;
        let status = response.status().as_u16();
        if self.debug {
            let stamp = crate::log_stamp(std::time::SystemTime::now());
            eprintln!(
                "{stamp} DEBUG client.rs: {} {url} -> {status}",
                go_method(method)
            );
        }
        let mut text = String::new();
        response
            .body_mut()
            .as_reader()
            .read_to_string(&mut text)
            .map_err(|e| transport(e.to_string()))?;
        Ok((status, text))
    }

    /// GET and decode a 200 JSON answer.
    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let (status, body) = self.send("GET", path, None)?;
        if !(200..300).contains(&status) {
            return Err(ApiError::Status { status, body });
        }
        serde_json::from_str(&body).map_err(|e| ApiError::Transport {
            url: format!("Get {}", self.url(path)),
            detail: format!("invalid JSON in response: {e}"),
        })
    }

    /// Follows `nextPageToken` until a page has none.
    fn all_pages<P: serde::de::DeserializeOwned, T>(
        &self,
        path: &str,
        query: &str,
        mut split: impl FnMut(P) -> (Vec<T>, String),
    ) -> Result<Vec<T>, ApiError> {
        let mut items = Vec::new();
        let mut token = String::new();
        loop {
            let mut params: Vec<String> = Vec::new();
            if !query.is_empty() {
                params.push(query.to_string());
            }
            if !token.is_empty() {
                params.push(format!("nextPageToken={}", percent_encode(&token)));
            }
            let full = if params.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", params.join("&"))
            };
            let (page_items, next) = split(self.get_json(&full)?);
            items.extend(page_items);
            if next.is_empty() {
                return Ok(items);
            }
            token = next;
        }
    }
}

/// Go's http client named methods like this in its errors (`Get http://…: …`).
fn go_method(method: &str) -> String {
    let mut chars = method.chars();
    match chars.next() {
        Some(first) => first.to_string() + &chars.as_str().to_lowercase(),
        None => String::new(),
    }
}

/// An error's text without ureq's `io: ` prefix and Rust's ` (os error N)` suffix, and
/// lower-cased as Go's syscall errors are (`connection refused`).
fn ureq_error_text(e: &ureq::Error) -> String {
    let text = match e {
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    let text = match text.find(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    };
    // Lower-case the last clause ("No such file or directory" → "no such file or directory").
    match text.rfind(": ") {
        Some(i) => format!("{}{}", &text[..i + 2], lower_first(&text[i + 2..])),
        None => lower_first(&text),
    }
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Percent-encodes a query value: everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    escape(s, b"-._~")
}

/// Percent-encodes a path segment as Go's url package did, keeping `@` and `:` readable
/// (`/units/web@1.service`).
pub fn path_escape(s: &str) -> String {
    escape(s, b"-._~@:")
}

fn escape(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Api for HttpApi {
    fn units(&self) -> Result<Vec<Unit>, ApiError> {
        self.all_pages("/units", "", |p: UnitPage| (p.units, p.next_page_token))
    }

    fn unit(&self, name: &str) -> Result<Option<Unit>, ApiError> {
        match self.get_json(&format!("/units/{}", path_escape(name))) {
            Ok(unit) => Ok(Some(unit)),
            Err(ApiError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn unit_states(&self) -> Result<Vec<UnitState>, ApiError> {
        self.all_pages("/state", "", |p: UnitStatePage| {
            (p.states, p.next_page_token)
        })
    }

    fn unit_states_of(&self, name: &str) -> Result<Vec<UnitState>, ApiError> {
        let query = format!("unitName={}", percent_encode(name));
        self.all_pages("/state", &query, |p: UnitStatePage| {
            (p.states, p.next_page_token)
        })
    }

    fn machines(&self) -> Result<Vec<Machine>, ApiError> {
        self.all_pages("/machines", "", |p: MachinePage| {
            (p.machines, p.next_page_token)
        })
    }

    fn create_unit(&self, unit: &Unit) -> Result<(), ApiError> {
        let body = Unit {
            name: unit.name.clone(),
            options: unit.options.clone(),
            ..Unit::default()
        };
        self.put(&unit.name, &body)
    }

    fn set_unit_target_state(&self, name: &str, state: &str) -> Result<(), ApiError> {
        let body = Unit {
            name: name.to_string(),
            desired_state: state.to_string(),
            ..Unit::default()
        };
        self.put(name, &body)
    }

    fn destroy_unit(&self, name: &str) -> Result<(), ApiError> {
        let (status, body) = self.send("DELETE", &format!("/units/{}", path_escape(name)), None)?;
        match status {
            200..=299 | 404 => Ok(()),
            _ => Err(ApiError::Status { status, body }),
        }
    }
}

impl HttpApi {
    fn put(&self, name: &str, unit: &Unit) -> Result<(), ApiError> {
        let json = serde_json::to_string(unit).map_err(|e| ApiError::Transport {
            url: format!("Put {}", self.url(&format!("/units/{name}"))),
            detail: e.to_string(),
        })?;
        let (status, body) =
            self.send("PUT", &format!("/units/{}", path_escape(name)), Some(json))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(ApiError::Status { status, body })
        }
    }
}
