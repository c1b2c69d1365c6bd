//! The thread-based driver: requests in, replies and unit-state changes out.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, select};
use flt_core::registry::OpId;

use super::client::{InventoryEntry, JobMethod, SystemdClient};
use super::watch::Watcher;
use super::{SystemdConfig, SystemdError, UnitState};

/// What the agent asks of systemd. Requests with an `id` are answered by exactly one
/// [`SystemdEvent::Reply`] with that id, in the order they were sent. `Watch`/`Unwatch` have no
/// reply: they start/stop [`SystemdEvent::UnitState`] reports for a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SystemdRequest {
    /// Write the unit file, link it, and with `enable` (it has `[Install]`) enable it; then
    /// follow its state. Reply: `Loaded`.
    Load {
        id: OpId,
        name: String,
        contents: String,
        enable: bool,
    },
    /// Stop; if that worked, disable, reset-failed, delete the file and stop following it.
    /// Reply: `Done`.
    Unload { id: OpId, name: String },
    /// `StartUnit(name, "replace")`, not waiting for the job. Reply: `Job(path)`.
    Start { id: OpId, name: String },
    /// `StopUnit(name, "replace")`. Reply: `Job(path)`.
    Stop { id: OpId, name: String },
    /// daemon-reload. Reply: `Done`.
    Reload { id: OpId },
    /// `ListUnitsByNames`. Reply: `States`.
    ListStates { id: OpId, names: Vec<String> },
    /// The unit files present in the units directory (names only). Reply: `UnitFiles`.
    ListUnitFiles { id: OpId },
    /// Every unit file with its text and systemd's view; follows each from now on (what a
    /// restarted agent adopts). Reply: `Inventory`.
    Inventory { id: OpId },
    /// The manager's `SystemState` (`stopping` = the machine is shutting down).
    /// Reply: `SystemState`.
    SystemState { id: OpId },
    /// Report this unit's state now and on every change.
    Watch { name: String },
    /// Stop reporting; answered by one `UnitState { state: None }`.
    Unwatch { name: String },
}

/// The successful outcome of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SystemdReply {
    Done,
    /// A `Load` succeeded. `reload_needed`: whether a `Reload` must come before starting the
    /// unit ([`super::SystemdClient::reload_needed`]; always true for an enabled unit, whose
    /// `[Install]` links change other units, on systemd < 246, which does not load a new unit
    /// file on `StartUnit`, and when systemd could not be asked).
    Loaded {
        reload_needed: bool,
    },
    Job(String),
    States(Vec<(String, UnitState)>),
    UnitFiles(Vec<String>),
    Inventory(Vec<InventoryEntry>),
    SystemState(String),
}

/// What the driver reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum SystemdEvent {
    /// The answer to the request with this id.
    Reply {
        id: OpId,
        result: Result<SystemdReply, SystemdError>,
    },
    /// A watched unit's state changed (or was read for the first time); `None` after
    /// `Unwatch`.
    UnitState {
        name: String,
        state: Option<UnitState>,
    },
    /// The signal connection broke; states are not reported until `WatchRestored`.
    WatchLost { reason: String },
    /// The signal connection is back; every watched unit is re-read (changes reported).
    WatchRestored,
}

/// Two threads around systemd: calls (one connection) and signals (another).
#[derive(Debug)]
pub struct SystemdDriver {
    requests: Sender<SystemdRequest>,
    events: Receiver<SystemdEvent>,
    stop: Option<Sender<()>>,
    call_thread: Option<JoinHandle<()>>,
}

impl SystemdDriver {
    /// Connects both threads (failing here if systemd cannot be reached) and starts them.
    pub fn spawn(config: SystemdConfig) -> Result<Self, SystemdError> {
        let client = SystemdClient::connect(&config)?;
        let (events_tx, events) = crossbeam_channel::unbounded();
        let watcher = Watcher::spawn(&config, events_tx.clone())?;
        let (requests, requests_rx) = crossbeam_channel::unbounded();
        let (stop, stop_rx) = crossbeam_channel::bounded(1);
        let call_thread = std::thread::Builder::new()
            .name("systemd-calls".into())
            .spawn(move || serve(client, watcher, &requests_rx, &stop_rx, &events_tx))
            .map_err(|e| SystemdError::Connect {
                address: "systemd-calls thread".into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            requests,
            events,
            stop: Some(stop),
            call_thread: Some(call_thread),
        })
    }

    /// Where to send requests (clone it freely).
    pub fn requests(&self) -> &Sender<SystemdRequest> {
        &self.requests
    }

    /// Replies and state reports.
    pub fn events(&self) -> &Receiver<SystemdEvent> {
        &self.events
    }

    /// Stops both threads and closes both connections. Units keep running: systemd owns them.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.call_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SystemdDriver {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

fn serve(
    mut client: SystemdClient,
    mut watcher: Watcher,
    requests: &Receiver<SystemdRequest>,
    stop: &Receiver<()>,
    events: &Sender<SystemdEvent>,
) {
    // Whether this systemd loads a new unit file on StartUnit (asked at the first load).
    let mut loads_new_units = None;
    // A request taken from the channel while gathering loads, to serve next.
    let mut next: Option<SystemdRequest> = None;
    loop {
        let request = match next.take() {
            Some(request) => request,
            None => select! {
                recv(requests) -> request => match request {
                    Ok(request) => request,
                    Err(_) => break,
                },
                recv(stop) -> _ => break,
            },
        };
        if let SystemdRequest::Load {
            id,
            name,
            contents,
            enable: false,
        } = request
        {
            // The agent sends a batch's loads together: link them in one call.
            let loads = gather(
                (id, name, contents),
                requests,
                &mut next,
                MAX_LOADS_AT_ONCE,
                |request| match request {
                    SystemdRequest::Load {
                        id,
                        name,
                        contents,
                        enable: false,
                    } => Ok((id, name, contents)),
                    other => Err(other),
                },
            );
            if !serve_loads(
                &mut client,
                &mut watcher,
                loads,
                &mut loads_new_units,
                events,
            ) {
                break;
            }
            continue;
        }
        let (id, result) = match request {
            SystemdRequest::Watch { name } => {
                watcher.watch(name);
                continue;
            }
            SystemdRequest::Unwatch { name } => {
                watcher.unwatch(name);
                continue;
            }
            SystemdRequest::Load {
                id,
                name,
                contents,
                enable,
            } => {
                let result = call(&mut client, |c| c.load_unit(&name, &contents, enable));
                // Enabling adds a dependency to another unit, which only a reload makes
                // systemd see if it has that unit loaded.
                let result = result.map(|()| SystemdReply::Loaded {
                    reload_needed: enable || reload_needed(&client, &name, &mut loads_new_units),
                });
                if result.is_ok() {
                    watcher.watch(name);
                }
                (id, result)
            }
            SystemdRequest::Unload { id, name } => {
                let result = call(&mut client, |c| c.unload_unit(&name));
                if result.is_ok() {
                    watcher.unwatch(name);
                }
                (id, result.map(|()| SystemdReply::Done))
            }
            SystemdRequest::Inventory { id } => {
                let result = call(&mut client, SystemdClient::inventory);
                if let Ok(entries) = &result {
                    for entry in entries {
                        watcher.watch(entry.name.clone());
                    }
                }
                (id, result.map(SystemdReply::Inventory))
            }
            SystemdRequest::Start { id, name } => {
                let jobs = gather_jobs((id, JobMethod::Start, name), requests, &mut next);
                if !serve_jobs(&mut client, &jobs, events) {
                    break;
                }
                continue;
            }
            SystemdRequest::Stop { id, name } => {
                let jobs = gather_jobs((id, JobMethod::Stop, name), requests, &mut next);
                if !serve_jobs(&mut client, &jobs, events) {
                    break;
                }
                continue;
            }
            SystemdRequest::Reload { id } => (
                id,
                call(&mut client, |c| c.reload().map(|()| SystemdReply::Done)),
            ),
            SystemdRequest::ListStates { id, names } => (
                id,
                call(&mut client, |c| {
                    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                    c.list_units_by_names(&refs).map(SystemdReply::States)
                }),
            ),
            SystemdRequest::ListUnitFiles { id } => {
                (id, client.unit_files().list().map(SystemdReply::UnitFiles))
            }
            SystemdRequest::SystemState { id } => (
                id,
                call(&mut client, |c| {
                    c.system_state().map(SystemdReply::SystemState)
                }),
            ),
        };
        if events.send(SystemdEvent::Reply { id, result }).is_err() {
            break;
        }
    }
    watcher.stop();
}

/// The most loads linked in one `LinkUnitFiles` call.
const MAX_LOADS_AT_ONCE: usize = 64;

/// Serves several `Load`s of units without `[Install]`: writes and links them together, asks
/// systemd once which of them it has in memory, then answers each in order. Returns false when
/// nobody listens any more.
fn serve_loads(
    client: &mut SystemdClient,
    watcher: &mut Watcher,
    loads: Vec<(OpId, String, String)>,
    loads_new_units: &mut Option<bool>,
    events: &Sender<SystemdEvent>,
) -> bool {
    reconnect_if_lost(client);
    let units: Vec<(&str, &str)> = loads
        .iter()
        .map(|(_, name, contents)| (name.as_str(), contents.as_str()))
        .collect();
    let results = client.load_units(&units);
    // Whether systemd has each unit in memory, asked for all at once; a unit it does not have
    // starts without a reload. `None`: ask the longer way.
    let known: Vec<Option<bool>> =
        if results.iter().any(Result::is_ok) && new_units_load(client, loads_new_units) {
            let names: Vec<&str> = loads.iter().map(|(_, name, _)| name.as_str()).collect();
            client
                .units_known(&names)
                .into_iter()
                .map(|known| {
                    known
                        .map_err(|e| log::warn!("cannot tell whether systemd has a unit ({e})"))
                        .ok()
                })
                .collect()
        } else {
            vec![None; loads.len()]
        };
    for (((id, name, _), result), known) in loads.into_iter().zip(results).zip(known) {
        let result = result.map(|()| SystemdReply::Loaded {
            reload_needed: known != Some(false) && reload_needed(client, &name, loads_new_units),
        });
        if result.is_ok() {
            watcher.watch(name);
        }
        if events.send(SystemdEvent::Reply { id, result }).is_err() {
            return false;
        }
    }
    true
}

/// The most starts/stops pipelined in one go.
const MAX_JOBS_AT_ONCE: usize = 64;

/// `first` and the starts/stops queued right behind it (the agent sends a batch's together),
/// up to [`MAX_JOBS_AT_ONCE`]; the first other request taken goes to `next`.
fn gather_jobs(
    first: (OpId, JobMethod, String),
    requests: &Receiver<SystemdRequest>,
    next: &mut Option<SystemdRequest>,
) -> Vec<(OpId, JobMethod, String)> {
    gather(
        first,
        requests,
        next,
        MAX_JOBS_AT_ONCE,
        |request| match request {
            SystemdRequest::Start { id, name } => Ok((id, JobMethod::Start, name)),
            SystemdRequest::Stop { id, name } => Ok((id, JobMethod::Stop, name)),
            other => Err(other),
        },
    )
}

/// `first` and the requests queued right behind it that `take` accepts, up to `max`; the
/// first request `take` hands back goes to `next`, to be served after these.
fn gather<T>(
    first: T,
    requests: &Receiver<SystemdRequest>,
    next: &mut Option<SystemdRequest>,
    max: usize,
    take: impl Fn(SystemdRequest) -> Result<T, SystemdRequest>,
) -> Vec<T> {
    let mut gathered = vec![first];
    while gathered.len() < max {
        let Ok(request) = requests.try_recv() else {
            break;
        };
        match take(request) {
            Ok(item) => gathered.push(item),
            Err(other) => {
                *next = Some(other);
                break;
            }
        }
    }
    gathered
}

/// Before a batch: replaces a connection known to be lost (a failure is logged; each call
/// then fails on its own and is answered so).
fn reconnect_if_lost(client: &mut SystemdClient) {
    if !client.is_connected()
        && let Err(e) = client.reconnect()
    {
        log::info!("systemd connection lost; reconnecting failed: {e}");
    }
}

/// Serves several starts/stops with pipelined calls, then answers each in order. A call the
/// lost connection swallowed is repeated alone on a new one (a job with "replace" is safe to
/// repeat). Returns false when nobody listens any more.
fn serve_jobs(
    client: &mut SystemdClient,
    jobs: &[(OpId, JobMethod, String)],
    events: &Sender<SystemdEvent>,
) -> bool {
    reconnect_if_lost(client);
    let calls: Vec<(JobMethod, &str)> = jobs
        .iter()
        .map(|(_, method, name)| (*method, name.as_str()))
        .collect();
    let results = client.unit_jobs(&calls);
    for ((id, method, name), result) in jobs.iter().zip(results) {
        let result = match result {
            Err(e) if connection_lost(client, &e) => {
                log::info!("systemd connection lost ({e}); reconnecting");
                call(client, |c| match method {
                    JobMethod::Start => c.start_unit(name),
                    JobMethod::Stop => c.stop_unit(name),
                })
            }
            result => result,
        };
        let reply = SystemdEvent::Reply {
            id: *id,
            result: result.map(SystemdReply::Job),
        };
        if events.send(reply).is_err() {
            return false;
        }
    }
    true
}

/// Whether this systemd loads a unit file that appeared since on `StartUnit` (asked once).
fn new_units_load(client: &SystemdClient, loads_new_units: &mut Option<bool>) -> bool {
    // systemd 246 began to load a unit file that appeared since a `not-found` lookup on the
    // next reference; before that, only a reload made a new unit file visible.
    match *loads_new_units {
        Some(known) => known,
        None => match client.version() {
            Ok(version) => *loads_new_units.insert(version >= 246),
            Err(e) => {
                log::warn!("cannot read systemd's version ({e}); reloading after this load");
                false
            }
        },
    }
}

/// Whether a `Reload` must precede starting `name`, just loaded; true when in doubt.
fn reload_needed(client: &SystemdClient, name: &str, loads_new_units: &mut Option<bool>) -> bool {
    let new_units_load = new_units_load(client, loads_new_units);
    if !new_units_load {
        return true;
    }
    client.reload_needed(name).unwrap_or_else(|e| {
        log::warn!("cannot tell whether {name} needs a daemon-reload ({e}); reloading");
        true
    })
}

/// Whether `error` came from a broken connection (the call may be repeated on a new one).
fn connection_lost(client: &SystemdClient, error: &SystemdError) -> bool {
    error.dbus_error_name() == Some("org.freedesktop.DBus.Error.Disconnected")
        || !client.is_connected()
}

/// Runs `f`, reconnecting first if the connection is known to be lost. A call that finds the
/// connection broken is retried once on a new one: every request here is safe to repeat
/// (rewrite + link, stop, start with "replace", reads).
fn call<T>(
    client: &mut SystemdClient,
    f: impl Fn(&SystemdClient) -> Result<T, SystemdError>,
) -> Result<T, SystemdError> {
    if !client.is_connected() {
        client.reconnect()?;
    }
    match f(client) {
        Err(e) if connection_lost(client, &e) => {
            log::info!("systemd connection lost ({e}); reconnecting");
            client.reconnect()?;
            f(client)
        }
        result => result,
    }
}
