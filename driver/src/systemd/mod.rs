//! systemd over D-Bus (libdbus, via the `dbus` crate): the agent's hands on the local machine.
//!
//! Two layers:
//! - [`SystemdClient`]: blocking calls on one connection: load/unload (unit file + link/enable,
//!   stop + disable + reset-failed + delete), start/stop, daemon-reload, unit states, unit
//!   properties, the manager's `SystemState`.
//! - [`SystemdDriver`]: two threads. The call thread owns a `SystemdClient` and serves
//!   [`SystemdRequest`]s from a channel, answering each with a [`SystemdEvent::Reply`] carrying
//!   the request's [`OpId`]. The watch thread owns a second connection, adds one match
//!   (`JobRemoved`, which systemd sends for the jobs flt queued without a `Subscribe()`, which
//!   flt does not call: see `watch.rs`), and re-reads a unit's state with `ListUnitsByNames`
//!   when one of its jobs ends; each `poll_interval` it also compares every watched unit with
//!   `ListUnits` (which, unlike asking by name, loads nothing): that finds every other change
//!   (a unit failing after its start, a crash, an operator's `systemctl`). Each change is a
//!   [`SystemdEvent::UnitState`].
//!
//! Connection ([`BusAddress`]): the system bus; if that fails, systemd's private socket
//! `unix:path=/run/systemd/private` (root only, no bus daemon, no `Hello`). Or an explicit bus
//! address, e.g. a test host's bus seen through `/proc/<pid>/root`. systemd refuses private
//! socket connections from a process outside its PID namespace (the peer's PID cannot be
//! resolved: "Incoming private connection from unprivileged client, refusing: No data
//! available"), so a driver outside a test host must use the host's bus socket.
//!
//! Unit files are written to `<units_dir>/<name>` (default `/run/flt/units`) atomically, and
//! every name is checked ([`check_unit_name`]) before a path or a call is built from it. When
//! the driver runs outside the machine whose systemd it drives, `fs_root` is the prefix for
//! its own file operations while systemd is given `units_dir` itself.
//!
//! Load: write file, `LinkUnitFiles([path], runtime, force)`, and when asked to enable (the
//! unit has `[Install]`) `EnableUnitFiles([path], runtime, force)`; if enabling fails or
//! reports no install info, the file is removed again and the load fails. No daemon-reload:
//! send `Reload` after a batch. Unload: `StopUnit` (a unit systemd does not know counts as
//! stopped); only if that succeeded, `DisableUnitFiles([name], runtime)`,
//! `ResetFailedUnit(name)` and delete the file (errors of those are collected together). If
//! the stop fails, the file is kept so the unit can still be stopped later.
//!
//! The driver follows (reports [`SystemdEvent::UnitState`] for) every unit it has in the
//! units directory: those of an `Inventory`, plus every successful `Load`, minus every
//! successful `Unload`, plus any explicit `Watch`.

mod client;
mod driver;
mod files;
mod name;
mod watch;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use client::{InventoryEntry, PropertyValue, SystemdClient, UnitFileChange};
pub use driver::{SystemdDriver, SystemdEvent, SystemdReply, SystemdRequest};
pub use files::{UnitFiles, has_install_section};
pub use flt_core::registry::OpId;
pub use name::{UnitNameError, check_unit_name, unit_object_path};

/// Default directory for flt's unit files (systemd's view).
pub const DEFAULT_UNITS_DIR: &str = "/run/flt/units";

/// Where to reach systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAddress {
    /// The system bus, falling back to systemd's private socket (works for root only).
    System,
    /// A bus daemon at this address (`unix:path=...`); we register with `Hello`.
    Bus(String),
    /// systemd's own private socket at this address: no bus daemon, no `Hello`, no `AddMatch`
    /// (systemd sends its signals to every subscribed private connection).
    Direct(String),
}

/// How to reach systemd and where unit files go.
#[derive(Debug, Clone)]
pub struct SystemdConfig {
    pub bus: BusAddress,
    /// The units directory as systemd sees it.
    pub units_dir: PathBuf,
    /// Prefix for the driver's own file operations (None: same view as systemd).
    pub fs_root: Option<PathBuf>,
    /// Timeout of each D-Bus method call.
    pub call_timeout: Duration,
    /// How often the watch thread compares every watched unit with `ListUnits`: how late a
    /// change that no job of flt's caused (a crash, a unit failing after its start) is seen,
    /// and at thousands of units the main cost of an idle agent (about 3 µs per loaded unit
    /// per poll).
    pub poll_interval: Duration,
}

impl Default for SystemdConfig {
    fn default() -> Self {
        Self {
            bus: BusAddress::System,
            units_dir: PathBuf::from(DEFAULT_UNITS_DIR),
            fs_root: None,
            call_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// A unit's state as systemd reports it (`ListUnitsByNames`). A unit systemd does not know
/// is `not-found`/`inactive`/`dead`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitState {
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
}

/// Errors of the systemd driver; messages name the unit, path, method or address involved.
#[derive(Debug)]
#[non_exhaustive]
pub enum SystemdError {
    /// The unit name was refused before anything was done with it.
    Name(UnitNameError),
    /// Reading or writing a unit file failed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No connection to systemd could be made.
    Connect { address: String, message: String },
    /// A D-Bus call failed; `error` is the D-Bus error name (e.g.
    /// `org.freedesktop.systemd1.NoSuchUnit`).
    Call {
        method: &'static str,
        target: String,
        error: String,
        message: String,
    },
    /// A reply did not have the expected shape.
    BadReply {
        method: &'static str,
        target: String,
        detail: String,
    },
    /// `EnableUnitFiles` reported that the unit has no install information.
    NoInstallInfo { unit: String },
    /// `EnableUnitFiles` failed for a unit with an `[Install]` section.
    Enable {
        unit: String,
        cause: Box<SystemdError>,
    },
    /// Several steps failed (unload: disable, reset-failed, delete).
    Several(Vec<SystemdError>),
    /// The driver's threads are gone.
    Stopped,
}

impl SystemdError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        SystemdError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn call(method: &'static str, target: impl Into<String>, e: &dbus::Error) -> Self {
        SystemdError::Call {
            method,
            target: target.into(),
            error: e.name().unwrap_or("unknown").to_string(),
            message: e.message().unwrap_or("").to_string(),
        }
    }

    /// The D-Bus error name, if this is a failed call.
    pub fn dbus_error_name(&self) -> Option<&str> {
        match self {
            SystemdError::Call { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for SystemdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemdError::Name(e) => write!(f, "{e}"),
            SystemdError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            SystemdError::Connect { address, message } => {
                write!(f, "cannot connect to systemd at {address}: {message}")
            }
            SystemdError::Call {
                method,
                target,
                error,
                message,
            } => {
                write!(f, "systemd {method}({target}) failed: {error}: {message}")
            }
            SystemdError::BadReply {
                method,
                target,
                detail,
            } => {
                write!(
                    f,
                    "systemd {method}({target}) gave an unexpected reply: {detail}"
                )
            }
            SystemdError::NoInstallInfo { unit } => {
                write!(
                    f,
                    "Failed to enable systemd unit {unit}: unit has no install information"
                )
            }
            SystemdError::Enable { unit, cause } => {
                write!(f, "Failed to enable systemd unit {unit}: {cause}")
            }
            SystemdError::Several(errors) => {
                let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
                write!(f, "{}", parts.join("; "))
            }
            SystemdError::Stopped => write!(f, "the systemd driver has stopped"),
        }
    }
}

impl std::error::Error for SystemdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SystemdError::Io { source, .. } => Some(source),
            SystemdError::Name(e) => Some(e),
            SystemdError::Enable { cause, .. } => Some(cause.as_ref()),
            _ => None,
        }
    }
}

impl From<UnitNameError> for SystemdError {
    fn from(e: UnitNameError) -> Self {
        SystemdError::Name(e)
    }
}
