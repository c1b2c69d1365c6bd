//! Which handler a request goes to: fleet's `ServeMux` layout (spec §7.2) as a pure function.
//!
//! The front end passes the method and the percent-encoded request path (without the query);
//! [`route`] decodes it as Go's server did, applies `ServeMux`'s path cleaning (a non-canonical
//! path is redirected), and returns the [`Route`] or the error response fleet gave. Routes exist
//! under [`PREFIX`], fleet's [`FLEET_PREFIX`] and the legacy alias [`ALIAS_PREFIX`].

use super::entities::ErrorEntity;
use std::fmt;

/// The API's path prefix.
pub const PREFIX: &str = "/flt/v1";
/// fleet's prefix, served too so that existing fleet clients keep working.
pub const FLEET_PREFIX: &str = "/fleet/v1";
/// The legacy prefix fleet also served (`/v1-alpha`).
pub const ALIAS_PREFIX: &str = "/v1-alpha";
/// Every prefix the same routes are served under.
pub const PREFIXES: [&str; 3] = [PREFIX, FLEET_PREFIX, ALIAS_PREFIX];

/// 404 of `GET`/`DELETE /units/<name>` for an unknown unit.
pub const UNIT_NOT_FOUND: &str = "unit does not exist";
/// 404 of `GET /state/<name>` without any state (fleet crashed here; spec §12 item 4).
pub const UNIT_STATE_NOT_FOUND: &str = "unit state does not exist";
/// 503 message (in an error entity) of every path while fltd cannot reach etcd.
pub const ETCD_UNAVAILABLE: &str = "flt server unable to communicate with etcd";

/// A request fltd serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET <prefix>/discovery`: the discovery document.
    Discovery,
    /// `GET <prefix>/units`.
    ListUnits,
    /// `GET <prefix>/units/<name>`.
    GetUnit(String),
    /// `PUT <prefix>/units/<name>`.
    PutUnit(String),
    /// `DELETE <prefix>/units/<name>`.
    DeleteUnit(String),
    /// `GET <prefix>/state`.
    ListStates,
    /// `GET <prefix>/state/<name>`.
    GetState(String),
    /// `GET <prefix>/machines`.
    ListMachines,
    /// `PATCH <prefix>/machines`.
    PatchMachines,
    /// `/metrics` (any method, as Prometheus' handler).
    Metrics,
}

/// A request that does not reach a handler: the response to send.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteError {
    /// An error entity with this status and message, and an `Allow` header for a 405 on a
    /// resource.
    Status {
        status: u16,
        message: &'static str,
        allow: Option<&'static str>,
    },
    /// 301 to the cleaned path (Go's `ServeMux` redirect); the query is to be kept.
    Redirect(String),
    /// 400: the path has a bad `%` escape (Go's server refused to parse the request).
    BadEscape,
}

impl RouteError {
    pub fn status(&self) -> u16 {
        match self {
            RouteError::Status { status, .. } => *status,
            RouteError::Redirect(_) => 301,
            RouteError::BadEscape => 400,
        }
    }

    /// The error entity to send (for a redirect, the front end sends `Location` instead).
    pub fn entity(&self) -> ErrorEntity {
        match self {
            RouteError::Status {
                status, message, ..
            } => ErrorEntity::new(*status, *message),
            RouteError::Redirect(_) => ErrorEntity::new(301, ""),
            RouteError::BadEscape => ErrorEntity::new(400, "invalid URL escape in path"),
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::Status {
                status, message, ..
            } => write!(f, "{status} {message}"),
            RouteError::Redirect(to) => write!(f, "301 to {to}"),
            RouteError::BadEscape => f.write_str("400 invalid URL escape in path"),
        }
    }
}

impl std::error::Error for RouteError {}

fn status(status: u16, message: &'static str, allow: Option<&'static str>) -> RouteError {
    RouteError::Status {
        status,
        message,
        allow,
    }
}

fn not_found() -> RouteError {
    status(404, "", None)
}

/// Routes a request. `raw_path` is the request target's path, still percent-encoded.
pub fn route(method: &str, raw_path: &str) -> Result<Route, RouteError> {
    let path = decode_path(raw_path).ok_or(RouteError::BadEscape)?;
    let clean = clean_path(&path);
    if clean != path {
        return Err(RouteError::Redirect(clean));
    }
    if path == "/" {
        return Err(status(405, "", None));
    }
    if path == "/metrics" {
        return Ok(Route::Metrics);
    }
    let Some(rest) = PREFIXES.iter().find_map(|prefix| path.strip_prefix(prefix)) else {
        return Err(not_found());
    };
    if rest.is_empty() {
        return Err(status(405, "", None));
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Err(not_found());
    };
    let (resource, item) = match rest.split_once('/') {
        Some((resource, item)) => (resource, Some(item)),
        None => (rest, None),
    };
    // The state handler checks the method before the path, so any non-GET below it is a 405.
    if resource == "state" && method != "GET" {
        return Err(status(
            405,
            "only GET supported against this resource",
            Some("GET"),
        ));
    }
    // An item is one non-empty segment; `units/` and `units/a/b` are unknown paths.
    let item = match item {
        None => None,
        Some(name) if !name.is_empty() && !name.contains('/') => Some(name.to_string()),
        Some(_) => return Err(not_found()),
    };
    match (resource, item) {
        ("discovery", None) => match method {
            "GET" => Ok(Route::Discovery),
            _ => Err(status(
                400,
                "only HTTP GET supported against this resource",
                None,
            )),
        },
        ("units", None) => match method {
            "GET" => Ok(Route::ListUnits),
            _ => Err(status(
                405,
                "only GET supported against this resource",
                Some("GET"),
            )),
        },
        ("units", Some(name)) => match method {
            "GET" => Ok(Route::GetUnit(name)),
            "PUT" => Ok(Route::PutUnit(name)),
            "DELETE" => Ok(Route::DeleteUnit(name)),
            _ => Err(status(
                405,
                "only GET, PUT and DELETE supported against this resource",
                Some("GET, PUT, DELETE"),
            )),
        },
        ("state", None) => Ok(Route::ListStates),
        ("state", Some(name)) => Ok(Route::GetState(name)),
        ("machines", None) => match method {
            "GET" => Ok(Route::ListMachines),
            "PATCH" => Ok(Route::PatchMachines),
            _ => Err(status(
                405,
                "only GET and PATCH supported against this resource",
                Some("GET, PATCH"),
            )),
        },
        _ => Err(not_found()),
    }
}

/// Percent-decodes a path as Go's `url.PathUnescape` (`+` stays `+`); `None` on a bad escape.
fn decode_path(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = char::from(hex[0]).to_digit(16)?;
            let lo = char::from(hex[1]).to_digit(16)?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `ServeMux` canonical path: rooted, `.`/`..`/empty elements removed, a trailing slash
/// kept.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let mut clean = format!("/{}", parts.join("/"));
    if path.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(method: &str, path: &str) -> (u16, String) {
        let e = route(method, path).unwrap_err();
        (e.status(), e.entity().error.message)
    }

    #[test]
    fn resources_under_both_prefixes() {
        for prefix in PREFIXES {
            let p = |s: &str| format!("{prefix}{s}");
            assert_eq!(route("GET", &p("/discovery")), Ok(Route::Discovery));
            assert_eq!(route("GET", &p("/units")), Ok(Route::ListUnits));
            assert_eq!(
                route("GET", &p("/units/a.service")),
                Ok(Route::GetUnit("a.service".into()))
            );
            assert_eq!(
                route("PUT", &p("/units/a.service")),
                Ok(Route::PutUnit("a.service".into()))
            );
            assert_eq!(
                route("DELETE", &p("/units/a.service")),
                Ok(Route::DeleteUnit("a.service".into()))
            );
            assert_eq!(route("GET", &p("/state")), Ok(Route::ListStates));
            assert_eq!(
                route("GET", &p("/state/a.service")),
                Ok(Route::GetState("a.service".into()))
            );
            assert_eq!(route("GET", &p("/machines")), Ok(Route::ListMachines));
            assert_eq!(route("PATCH", &p("/machines")), Ok(Route::PatchMachines));
        }
        assert_eq!(route("GET", "/metrics"), Ok(Route::Metrics));
        assert_eq!(route("POST", "/metrics"), Ok(Route::Metrics));
    }

    #[test]
    fn wrong_methods_get_fleets_texts() {
        assert_eq!(
            err("POST", "/flt/v1/discovery"),
            (400, "only HTTP GET supported against this resource".into())
        );
        assert_eq!(
            err("POST", "/flt/v1/units"),
            (405, "only GET supported against this resource".into())
        );
        assert_eq!(
            err("PATCH", "/flt/v1/units/a.service"),
            (
                405,
                "only GET, PUT and DELETE supported against this resource".into()
            )
        );
        assert_eq!(
            err("DELETE", "/flt/v1/state"),
            (405, "only GET supported against this resource".into())
        );
        assert_eq!(
            err("PUT", "/flt/v1/state/a.service"),
            (405, "only GET supported against this resource".into())
        );
        // Even below an unknown state path: the method is checked first.
        assert_eq!(err("POST", "/flt/v1/state/").0, 405);
        assert_eq!(err("GET", "/flt/v1/state/").0, 404);
        assert_eq!(
            err("DELETE", "/flt/v1/machines"),
            (
                405,
                "only GET and PATCH supported against this resource".into()
            )
        );
        // Methods are case-sensitive; HEAD is not GET.
        assert_eq!(err("get", "/flt/v1/units").0, 405);
        assert_eq!(err("HEAD", "/flt/v1/machines").0, 405);
        assert_eq!(
            route("POST", "/flt/v1/units"),
            Err(RouteError::Status {
                status: 405,
                message: "only GET supported against this resource",
                allow: Some("GET")
            })
        );
    }

    #[test]
    fn root_prefix_and_unknown_paths() {
        assert_eq!(err("GET", "/"), (405, String::new()));
        assert_eq!(err("GET", "/flt/v1"), (405, String::new()));
        assert_eq!(err("GET", "/fleet/v1"), (405, String::new()));
        assert_eq!(err("GET", "/v1-alpha"), (405, String::new()));
        for path in [
            "/flt/v1/",
            "/flt/v1/units/",
            "/flt/v1/state/",
            "/flt/v1/machines/",
            "/flt/v1/machines/m1",
            "/flt/v1/units/a/b",
            "/flt/v1/discovery/x",
            "/flt/v1/bogus",
            "/flt/v1units",
            "/fleet/v1/bogus",
            "/flt/v2/units",
            "/metrics/",
            "/units/a/b",
        ] {
            assert_eq!(err("GET", path), (404, String::new()), "{path}");
        }
    }

    #[test]
    fn item_names_are_percent_decoded() {
        assert_eq!(
            route("GET", "/flt/v1/units/hello%40.service"),
            Ok(Route::GetUnit("hello@.service".into()))
        );
        assert_eq!(
            route("GET", "/flt/v1/units/a+b.service"),
            Ok(Route::GetUnit("a+b.service".into()))
        );
        // An encoded slash makes two segments, as in Go (the path is decoded first).
        assert_eq!(err("GET", "/flt/v1/units/a%2Fb.service").0, 404);
        assert_eq!(
            route("GET", "/flt/v1/units/%zz"),
            Err(RouteError::BadEscape)
        );
        assert_eq!(route("GET", "/flt/v1/units/%4"), Err(RouteError::BadEscape));
    }

    #[test]
    fn unclean_paths_redirect() {
        assert_eq!(
            route("GET", "/flt/v1//units"),
            Err(RouteError::Redirect("/flt/v1/units".into()))
        );
        assert_eq!(
            route("GET", "/flt/v1/units/./a.service"),
            Err(RouteError::Redirect("/flt/v1/units/a.service".into()))
        );
        assert_eq!(
            route("GET", "/flt/v1/x/../machines/"),
            Err(RouteError::Redirect("/flt/v1/machines/".into()))
        );
        assert_eq!(route("GET", "").unwrap_err().status(), 301);
        assert_eq!(clean_path("/../"), "/");
    }
}
