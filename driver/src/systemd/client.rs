//! Blocking calls to systemd's manager on one D-Bus connection.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dbus::Message;
use dbus::arg::{ArgType, RefArg};
use dbus::blocking::stdintf::org_freedesktop_dbus::Properties;
use dbus::blocking::{Connection, Proxy};
use dbus::channel::Channel;

use super::files::UnitFiles;
#[allow(unused_imports)] // linked from the docs
use super::files::has_install_section;
use super::name::{check_unit_name, unit_object_path};
use super::{BusAddress, SystemdConfig, SystemdError, UnitState};

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
const PRIVATE_SOCKET: &str = "unix:path=/run/systemd/private";
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
const DISCONNECTED: &str = "org.freedesktop.DBus.Error.Disconnected";
const NO_REPLY: &str = "org.freedesktop.DBus.Error.NoReply";

/// The manager's job methods [`SystemdClient::unit_jobs`] pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobMethod {
    Start,
    Stop,
}

impl JobMethod {
    pub(crate) fn name(self) -> &'static str {
        match self {
            JobMethod::Start => "StartUnit",
            JobMethod::Stop => "StopUnit",
        }
    }
}

/// One entry of the changes `LinkUnitFiles`/`EnableUnitFiles`/`DisableUnitFiles` report:
/// (`symlink`/`unlink`, file, destination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFileChange {
    pub kind: String,
    pub file: String,
    pub destination: String,
}

/// One unit file found in the units directory, with systemd's view of the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEntry {
    pub name: String,
    /// The file's content, as read.
    pub text: String,
    /// systemd's view (`None` if `ListUnitsByNames` did not mention it).
    pub state: Option<UnitState>,
}

/// A property value, for the types systemd uses in the properties flt reads.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PropertyValue {
    Str(String),
    U64(u64),
    I64(i64),
    Bool(bool),
    /// Anything else, in the `dbus` crate's debug rendering.
    Other(String),
}

/// Opens a connection as `bus` says. Returns it and whether it is direct (no bus daemon).
pub(crate) fn connect(bus: &BusAddress) -> Result<(Connection, bool), SystemdError> {
    match bus {
        BusAddress::System => match Connection::new_system() {
            Ok(conn) => Ok((conn, false)),
            // Spec: fall back to the private socket; it only accepts root, so trying it as
            // another user just fails with a clear error.
            Err(system) => open_direct(PRIVATE_SOCKET)
                .map(|c| (c, true))
                .map_err(|private| SystemdError::Connect {
                    address: format!("the system bus, then {PRIVATE_SOCKET}"),
                    message: format!("{}; {private}", system.message().unwrap_or("")),
                }),
        },
        BusAddress::Bus(address) => Connection::new_address(address)
            .map(|c| (c, false))
            .map_err(|e| SystemdError::Connect {
                address: address.clone(),
                message: e.message().unwrap_or("").to_string(),
            }),
        BusAddress::Direct(address) => open_direct(address).map(|c| (c, true)),
    }
}

fn open_direct(address: &str) -> Result<Connection, SystemdError> {
    Channel::open_private(address)
        .map(Connection::from)
        .map_err(|e| SystemdError::Connect {
            address: address.to_string(),
            message: e.message().unwrap_or("").to_string(),
        })
}

/// Blocking client for systemd's manager. `Send`, not `Sync`: use it from one thread.
pub struct SystemdClient {
    conn: Connection,
    files: UnitFiles,
    timeout: Duration,
    bus: BusAddress,
}

impl std::fmt::Debug for SystemdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemdClient")
            .field("bus", &self.bus)
            .field("files", &self.files)
            .finish()
    }
}

impl SystemdClient {
    pub fn connect(config: &SystemdConfig) -> Result<Self, SystemdError> {
        let (conn, _direct) = connect(&config.bus)?;
        Ok(Self {
            conn,
            files: UnitFiles::new(config.units_dir.clone(), config.fs_root.clone()),
            timeout: config.call_timeout,
            bus: config.bus.clone(),
        })
    }

    /// True while the connection is up.
    pub fn is_connected(&self) -> bool {
        self.conn.channel().is_connected()
    }

    /// Replaces a lost connection by a new one.
    pub fn reconnect(&mut self) -> Result<(), SystemdError> {
        self.conn = connect(&self.bus)?.0;
        Ok(())
    }

    pub fn unit_files(&self) -> &UnitFiles {
        &self.files
    }

    fn manager(&self) -> Proxy<'_, &Connection> {
        self.conn.with_proxy(SYSTEMD, MANAGER_PATH, self.timeout)
    }

    /// Writes the unit file and links it; with `enable` (the unit has an `[Install]` section,
    /// see [`has_install_section`]) also enables it. Idempotent. No daemon-reload; call
    /// [`SystemdClient::reload`] after a batch.
    pub fn load_unit(&self, name: &str, contents: &str, enable: bool) -> Result<(), SystemdError> {
        let path = self.files.systemd_path(name)?;
        self.files.write(name, contents)?;
        let path = path.to_string_lossy().into_owned();
        self.link_unit_files(&[path.as_str()])?;
        if enable {
            let enabled = self.enable_unit_files(&[path.as_str()]);
            let failure = match enabled {
                Ok((true, _)) => None,
                Ok((false, _)) => Some(SystemdError::NoInstallInfo {
                    unit: name.to_string(),
                }),
                Err(e) => Some(SystemdError::Enable {
                    unit: name.to_string(),
                    cause: Box::new(e),
                }),
            };
            if let Some(error) = failure {
                // A half-loaded unit must not linger: drop the link and the file.
                let _ = self.disable_unit_files(&[name]);
                let _ = self.files.remove(name);
                return Err(error);
            }
        }
        Ok(())
    }

    /// [`SystemdClient::load_unit`] for several units without `[Install]` at once: writes every
    /// file, then links them all in one `LinkUnitFiles` call (one by one if that call fails,
    /// so that each unit gets its own error). Results are in the order of `units`.
    pub fn load_units(&self, units: &[(&str, &str)]) -> Vec<Result<(), SystemdError>> {
        let mut results: Vec<Result<(), SystemdError>> = Vec::with_capacity(units.len());
        let mut written = Vec::new();
        for (i, (name, contents)) in units.iter().enumerate() {
            let path = self.files.systemd_path(name).and_then(|path| {
                self.files.write(name, contents)?;
                Ok(path.to_string_lossy().into_owned())
            });
            match path {
                Ok(path) => {
                    written.push((i, path));
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        let paths: Vec<&str> = written.iter().map(|(_, p)| p.as_str()).collect();
        if paths.len() > 1 && self.link_unit_files(&paths).is_ok() {
            return results;
        }
        for (i, path) in &written {
            if let Err(e) = self.link_unit_files(&[path.as_str()]) {
                results[*i] = Err(e);
            }
        }
        results
    }

    /// Stop; then, only if the stop succeeded, disable, reset-failed and delete the file. A
    /// unit systemd does not know (`NoSuchUnit` from the stop) counts as stopped.
    pub fn unload_unit(&self, name: &str) -> Result<(), SystemdError> {
        check_unit_name(name)?;
        if let Err(e) = self.stop_unit(name)
            && e.dbus_error_name() != Some(NO_SUCH_UNIT)
        {
            return Err(e);
        }
        let mut errors = Vec::new();
        // A unit without a unit file or not loaded has nothing to disable or reset.
        if let Err(e) = self.disable_unit_files(&[name])
            && e.dbus_error_name() != Some(NO_SUCH_UNIT)
        {
            errors.push(e);
        }
        if let Err(e) = self.reset_failed_unit(name)
            && e.dbus_error_name() != Some(NO_SUCH_UNIT)
        {
            errors.push(e);
        }
        if let Err(e) = self.files.remove(name) {
            errors.push(e);
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(SystemdError::Several(errors)),
        }
    }

    /// Every unit file in the units directory with its text and systemd's view of it: what
    /// a restarted agent adopts.
    pub fn inventory(&self) -> Result<Vec<InventoryEntry>, SystemdError> {
        let names = self.files.list()?;
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut states: BTreeMap<String, UnitState> =
            self.list_units_by_names(&refs)?.into_iter().collect();
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            // A file deleted since the listing is simply not part of the inventory.
            if let Some(text) = self.files.read(&name)? {
                let state = states.remove(&name);
                entries.push(InventoryEntry { name, text, state });
            }
        }
        Ok(entries)
    }

    /// `LinkUnitFiles(paths, runtime=true, force=true)`.
    pub fn link_unit_files(&self, paths: &[&str]) -> Result<Vec<UnitFileChange>, SystemdError> {
        let (changes,): (Vec<(String, String, String)>,) = self
            .manager()
            .method_call(MANAGER, "LinkUnitFiles", (paths.to_vec(), true, true))
            .map_err(|e| SystemdError::call("LinkUnitFiles", paths.join(" "), &e))?;
        Ok(to_changes(changes))
    }

    /// `EnableUnitFiles(paths, runtime=true, force=true)` → (carries install info, changes).
    pub fn enable_unit_files(
        &self,
        paths: &[&str],
    ) -> Result<(bool, Vec<UnitFileChange>), SystemdError> {
        let (carries_install_info, changes): (bool, Vec<(String, String, String)>) = self
            .manager()
            .method_call(MANAGER, "EnableUnitFiles", (paths.to_vec(), true, true))
            .map_err(|e| SystemdError::call("EnableUnitFiles", paths.join(" "), &e))?;
        Ok((carries_install_info, to_changes(changes)))
    }

    /// `DisableUnitFiles(names, runtime=true)`.
    pub fn disable_unit_files(&self, names: &[&str]) -> Result<Vec<UnitFileChange>, SystemdError> {
        for name in names {
            check_unit_name(name)?;
        }
        let (changes,): (Vec<(String, String, String)>,) = self
            .manager()
            .method_call(MANAGER, "DisableUnitFiles", (names.to_vec(), true))
            .map_err(|e| SystemdError::call("DisableUnitFiles", names.join(" "), &e))?;
        Ok(to_changes(changes))
    }

    /// `ResetFailedUnit(name)`.
    pub fn reset_failed_unit(&self, name: &str) -> Result<(), SystemdError> {
        check_unit_name(name)?;
        self.manager()
            .method_call::<(), _, _, _>(MANAGER, "ResetFailedUnit", (name,))
            .map_err(|e| SystemdError::call("ResetFailedUnit", name, &e))
    }

    /// Whether systemd must `Reload()` before `StartUnit(name)` sees the unit file just written:
    /// false if systemd has no unit of that name in memory, or only a `not-found` stub (since
    /// version 246 systemd loads those from disk on the next reference once its unit
    /// directories changed, which the link did); false for a loaded unit whose file has not
    /// changed since; true otherwise (a loaded unit with a new file, or any other load state).
    /// Asks without loading the unit (`GetUnit`, then the properties of the object it names).
    pub fn reload_needed(&self, name: &str) -> Result<bool, SystemdError> {
        let path = match self.get_unit(name) {
            Err(e) if e.dbus_error_name() == Some(NO_SUCH_UNIT) => return Ok(false),
            other => other?,
        };
        let proxy = self.conn.with_proxy(SYSTEMD, path, self.timeout);
        let load_state: String = proxy
            .get(UNIT, "LoadState")
            .map_err(|e| SystemdError::call("Get LoadState", name, &e))?;
        if load_state == "not-found" {
            return Ok(false);
        }
        let changed: bool = proxy
            .get(UNIT, "NeedDaemonReload")
            .map_err(|e| SystemdError::call("Get NeedDaemonReload", name, &e))?;
        Ok(changed || load_state != "loaded")
    }

    /// The manager's `Version` (e.g. `252.30-1~deb12u2`, `v255`): its leading number.
    pub fn version(&self) -> Result<u32, SystemdError> {
        let version: String = self
            .manager()
            .get(MANAGER, "Version")
            .map_err(|e| SystemdError::call("Get Version", "", &e))?;
        let digits: String = version
            .trim_start_matches('v')
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().map_err(|_| SystemdError::BadReply {
            method: "Get Version",
            target: String::new(),
            detail: format!("not a version: {version:?}"),
        })
    }

    /// `Reload()` (daemon-reload).
    pub fn reload(&self) -> Result<(), SystemdError> {
        self.manager()
            .method_call::<(), _, _, _>(MANAGER, "Reload", ())
            .map_err(|e| SystemdError::call("Reload", "", &e))
    }

    /// `StartUnit(name, "replace")`; returns the job's object path. Does not wait for the job.
    pub fn start_unit(&self, name: &str) -> Result<String, SystemdError> {
        self.unit_job("StartUnit", name)
    }

    /// `StopUnit(name, "replace")`; returns the job's object path.
    pub fn stop_unit(&self, name: &str) -> Result<String, SystemdError> {
        self.unit_job("StopUnit", name)
    }

    fn unit_job(&self, method: &'static str, name: &str) -> Result<String, SystemdError> {
        check_unit_name(name)?;
        let (job,): (dbus::Path<'static>,) = self
            .manager()
            .method_call(MANAGER, method, (name, "replace"))
            .map_err(|e| SystemdError::call(method, name, &e))?;
        Ok(job.to_string())
    }

    /// `StartUnit`/`StopUnit(name, "replace")` for several units, pipelined (see
    /// [`SystemdClient::pipelined`]): systemd queues the jobs back to back instead of one per
    /// round trip. One result per call, in order: the job's path.
    pub(crate) fn unit_jobs(
        &self,
        calls: &[(JobMethod, &str)],
    ) -> Vec<Result<String, SystemdError>> {
        let calls: Vec<(&'static str, &str)> = calls
            .iter()
            .map(|&(method, name)| (method.name(), name))
            .collect();
        self.pipelined(&calls, |message, name| message.append2(name, "replace"))
            .into_iter()
            .zip(&calls)
            .map(|(reply, &(method, name))| {
                reply?
                    .read1::<dbus::Path<'_>>()
                    .map(|job| job.to_string())
                    .map_err(|e| {
                        SystemdError::call(method, name, &dbus::Error::new_failed(&e.to_string()))
                    })
            })
            .collect()
    }

    /// For each name, whether systemd has the unit in memory (`GetUnit`, pipelined; it loads
    /// nothing): cheaper than listing every unit when a host runs hundreds.
    pub(crate) fn units_known(&self, names: &[&str]) -> Vec<Result<bool, SystemdError>> {
        let calls: Vec<(&'static str, &str)> = names.iter().map(|&n| ("GetUnit", n)).collect();
        self.pipelined(&calls, |message, name| message.append1(name))
            .into_iter()
            .map(|reply| match reply {
                Ok(_) => Ok(true),
                Err(e) if e.dbus_error_name() == Some(NO_SUCH_UNIT) => Ok(false),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// Calls the manager's `method` once per unit, pipelined: every call is sent before the
    /// first reply is awaited (systemd serves one connection's calls in order). One reply per
    /// call, in order; when no reply came for the call timeout the calls still unanswered fail
    /// with `NoReply`, those a lost connection swallowed with `Disconnected`.
    fn pipelined(
        &self,
        calls: &[(&'static str, &str)],
        args: impl Fn(Message, &str) -> Message,
    ) -> Vec<Result<Message, SystemdError>> {
        let failed = |(method, name): (&'static str, &str), error: &dbus::Error| {
            Err(SystemdError::call(method, name, error))
        };
        let no_reply = dbus::Error::new_custom(NO_REPLY, "no reply within the call timeout");
        let mut results: Vec<_> = calls.iter().map(|&call| failed(call, &no_reply)).collect();
        let channel = self.conn.channel();
        let mut pending = BTreeMap::new();
        for (index, &(method, name)) in calls.iter().enumerate() {
            if let Err(e) = check_unit_name(name) {
                results[index] = Err(e.into());
                continue;
            }
            let sent = Message::new_method_call(SYSTEMD, MANAGER_PATH, MANAGER, method)
                .map_err(|e| dbus::Error::new_failed(&e))
                .and_then(|message| {
                    channel.send(args(message, name)).map_err(|()| {
                        dbus::Error::new_custom(DISCONNECTED, "cannot queue the call")
                    })
                });
            match sent {
                Ok(serial) => {
                    pending.insert(serial, index);
                }
                Err(e) => results[index] = failed((method, name), &e),
            }
        }
        channel.flush();
        // systemd answers in order: the timeout bounds the wait for the next reply, not for
        // the whole batch.
        let mut deadline = Instant::now() + self.timeout;
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut reply = match channel.blocking_pop_message(left) {
                Ok(Some(reply)) => reply,
                Ok(None) => continue,
                Err(e) => {
                    let lost = dbus::Error::new_custom(DISCONNECTED, e.message().unwrap_or(""));
                    for &index in pending.values() {
                        results[index] = failed(calls[index], &lost);
                    }
                    break;
                }
            };
            // Anything else on this connection (the bus's NameAcquired) is not ours.
            let Some(index) = reply.get_reply_serial().and_then(|s| pending.remove(&s)) else {
                continue;
            };
            deadline = Instant::now() + self.timeout;
            results[index] = match reply.as_result() {
                Ok(_) => Ok(reply),
                Err(e) => failed(calls[index], &e),
            };
        }
        results
    }

    /// `ListUnitsByNames(names)`: one state per name, in order; unknown units come back as
    /// `not-found`/`inactive`/`dead`.
    pub fn list_units_by_names(
        &self,
        names: &[&str],
    ) -> Result<Vec<(String, UnitState)>, SystemdError> {
        list_units_by_names(&self.conn, self.timeout, names)
    }

    /// `GetUnit(name)`: the unit's object path; fails with `NoSuchUnit` if it is not loaded.
    pub fn get_unit(&self, name: &str) -> Result<String, SystemdError> {
        check_unit_name(name)?;
        let (path,): (dbus::Path<'static>,) = self
            .manager()
            .method_call(MANAGER, "GetUnit", (name,))
            .map_err(|e| SystemdError::call("GetUnit", name, &e))?;
        Ok(path.to_string())
    }

    /// All properties of `interface` (e.g. `org.freedesktop.systemd1.Unit` or `...Service`)
    /// on the unit's object, by name.
    pub fn unit_properties(
        &self,
        name: &str,
        interface: &str,
    ) -> Result<BTreeMap<String, PropertyValue>, SystemdError> {
        check_unit_name(name)?;
        let path = unit_object_path(name);
        let proxy = self.conn.with_proxy(SYSTEMD, path, self.timeout);
        let all = proxy
            .get_all(interface)
            .map_err(|e| SystemdError::call("GetAll", format!("{name} {interface}"), &e))?;
        Ok(all
            .iter()
            .map(|(key, value)| (key.clone(), property_value(&*value.0)))
            .collect())
    }

    /// `ExecMainStartTimestamp` of a service (µs since the epoch; 0 if it never ran). An
    /// unchanged value across a driver restart proves the unit was adopted, not restarted.
    pub fn exec_main_start_timestamp(&self, name: &str) -> Result<u64, SystemdError> {
        check_unit_name(name)?;
        let proxy = self
            .conn
            .with_proxy(SYSTEMD, unit_object_path(name), self.timeout);
        proxy
            .get::<u64>("org.freedesktop.systemd1.Service", "ExecMainStartTimestamp")
            .map_err(|e| SystemdError::call("Get ExecMainStartTimestamp", name, &e))
    }

    /// The manager's `SystemState`: `initializing`, `starting`, `running`, `degraded`,
    /// `maintenance` or `stopping` (the machine is shutting down).
    pub fn system_state(&self) -> Result<String, SystemdError> {
        self.manager()
            .get::<String>(MANAGER, "SystemState")
            .map_err(|e| SystemdError::call("Get SystemState", "", &e))
    }
}

pub(crate) fn list_units_by_names(
    conn: &Connection,
    timeout: Duration,
    names: &[&str],
) -> Result<Vec<(String, UnitState)>, SystemdError> {
    for name in names {
        check_unit_name(name)?;
    }
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let (units,): (Vec<Listed>,) = conn
        .with_proxy(SYSTEMD, MANAGER_PATH, timeout)
        .method_call(MANAGER, "ListUnitsByNames", (names.to_vec(),))
        .map_err(|e| SystemdError::call("ListUnitsByNames", names.join(" "), &e))?;
    Ok(to_states(units))
}

/// `ListUnits()`: calls `each(name, load, active, sub)` for every unit systemd has in memory.
/// Unlike `ListUnitsByNames` it loads nothing: asking by name for a unit systemd has
/// garbage-collected (inactive, unreferenced) makes it load the unit from disk, announce it
/// (`UnitNew`) and collect it again (`UnitRemoved`). The reply is read in place, so nothing is
/// allocated per unit (the periodic poll goes over every loaded unit each second, and only the
/// watched ones that changed matter).
pub(crate) fn for_each_loaded_unit(
    conn: &Connection,
    timeout: Duration,
    mut each: impl FnMut(&str, &str, &str, &str),
) -> Result<(), SystemdError> {
    let bad = |detail: &str| SystemdError::BadReply {
        method: "ListUnits",
        target: String::new(),
        detail: detail.to_string(),
    };
    let call = Message::new_method_call(SYSTEMD, MANAGER_PATH, MANAGER, "ListUnits")
        .map_err(|e| bad(&e))?;
    let reply = conn
        .channel()
        .send_with_reply_and_block(call, timeout)
        .map_err(|e| SystemdError::call("ListUnits", "", &e))?;
    let mut args = reply.iter_init();
    let mut units = args
        .recurse(ArgType::Array)
        .ok_or_else(|| bad("not an array"))?;
    while units.arg_type() == ArgType::Struct {
        let mut unit = units
            .recurse(ArgType::Struct)
            .ok_or_else(|| bad("not a struct"))?;
        let mut text = || unit.read::<&str>().map_err(|e| bad(&e.to_string()));
        let name = text()?;
        let _description = text()?;
        let (load, active, sub) = (text()?, text()?, text()?);
        each(name, load, active, sub);
        units.next();
    }
    Ok(())
}

/// One entry of `ListUnitsByNames`: name, description, load, active, sub, followed, path, job
/// id, job type, job path.
type Listed = (
    String,
    String,
    String,
    String,
    String,
    String,
    dbus::Path<'static>,
    u32,
    String,
    dbus::Path<'static>,
);

fn to_states(units: Vec<Listed>) -> Vec<(String, UnitState)> {
    units
        .into_iter()
        .map(
            |(name, _description, load_state, active_state, sub_state, ..)| {
                (
                    name,
                    UnitState {
                        load_state,
                        active_state,
                        sub_state,
                    },
                )
            },
        )
        .collect()
}

fn to_changes(changes: Vec<(String, String, String)>) -> Vec<UnitFileChange> {
    changes
        .into_iter()
        .map(|(kind, file, destination)| UnitFileChange {
            kind,
            file,
            destination,
        })
        .collect()
}

fn property_value(value: &dyn RefArg) -> PropertyValue {
    use dbus::arg::ArgType;
    match value.arg_type() {
        ArgType::String | ArgType::ObjectPath => {
            PropertyValue::Str(value.as_str().unwrap_or_default().to_string())
        }
        ArgType::Boolean => PropertyValue::Bool(value.as_u64().is_some_and(|v| v != 0)),
        ArgType::UInt64 | ArgType::UInt32 | ArgType::UInt16 | ArgType::Byte => {
            value.as_u64().map_or_else(
                || PropertyValue::Other(format!("{value:?}")),
                PropertyValue::U64,
            )
        }
        ArgType::Int64 | ArgType::Int32 | ArgType::Int16 => value.as_i64().map_or_else(
            || PropertyValue::Other(format!("{value:?}")),
            PropertyValue::I64,
        ),
        _ => PropertyValue::Other(format!("{value:?}")),
    }
}
