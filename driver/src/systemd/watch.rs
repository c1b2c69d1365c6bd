//! The watch thread: the ends of the jobs flt queued, plus a periodic re-read.
//!
//! flt does not call `Manager.Subscribe()`: while any client is subscribed, systemd builds and
//! sends `PropertiesChanged` (for the unit and for its type's interface) at every step of every
//! unit, and dbus-daemon routes them all. In a failover that was about a seventh of the
//! machine's CPU (systemd's signal building 5.5 %, dbus-daemon, fltd's reading). systemd sends
//! `JobRemoved` for a job to the client that queued it whether or not it is subscribed, so one
//! match rule (`JobRemoved`) tells the watch thread when a start or stop flt asked for has
//! ended; it then re-reads that unit with `ListUnitsByNames`. Everything else (a unit that
//! fails after its start job ended, a crash, an operator's `systemctl stop`) is found by the
//! periodic re-read: `ListUnits` (what systemd has in memory) every `poll_interval` (1 s by
//! default, fleet's period), compared with the last state of every watched unit. Not
//! `ListUnitsByNames` for every watched unit: by name, systemd loads each garbage-collected
//! (inactive, unreferenced) unit from disk and drops it again, every poll; with a thousand
//! loaded-not-started units that kept PID 1 so busy that its job queue (idle priority) stalled.

use std::collections::{BTreeMap, BTreeSet};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use dbus::blocking::Connection;
use dbus::blocking::stdintf::org_freedesktop_dbus::Properties;
use dbus::message::{Message, MessageType};

use super::client::{connect, for_each_loaded_unit, list_units_by_names};
use super::driver::SystemdEvent;
use super::name::check_unit_name;
use super::{BusAddress, SystemdConfig, SystemdError, UnitState};

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// The one match rule: the end of every job (systemd sends it for the jobs flt queued).
const JOB_REMOVED_RULE: &str = "type='signal',sender='org.freedesktop.systemd1',interface='org.freedesktop.systemd1.Manager',member='JobRemoved'";

/// How long one wait for a signal lasts before control messages are looked at again: the
/// latency of a new `Watch`, traded against idle wake-ups (signals themselves wake us at once).
const SIGNAL_WAIT: Duration = Duration::from_millis(100);

pub(crate) enum WatchControl {
    Watch(String),
    Unwatch(String),
    Stop,
}

#[derive(Debug)]
pub(crate) struct Watcher {
    control: Sender<WatchControl>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Connects and subscribes before returning, so a connection problem is reported to the
    /// caller of `SystemdDriver::spawn` rather than lost in a thread.
    pub(crate) fn spawn(
        config: &SystemdConfig,
        events: Sender<SystemdEvent>,
    ) -> Result<Self, SystemdError> {
        let link = Link::open(&config.bus, config.call_timeout)?;
        let (control, control_rx) = crossbeam_channel::unbounded();
        let mut state = WatchLoop {
            link: Some(link),
            bus: config.bus.clone(),
            timeout: config.call_timeout,
            poll_interval: config.poll_interval,
            watched: BTreeMap::new(),
            poll_round: 0,
            dirty: BTreeSet::new(),
            events,
            control: control_rx,
            stopping: false,
        };
        let thread = std::thread::Builder::new()
            .name("systemd-watch".into())
            .spawn(move || state.run())
            .map_err(|e| SystemdError::Connect {
                address: "systemd-watch thread".into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            control,
            thread: Some(thread),
        })
    }

    pub(crate) fn watch(&self, name: String) {
        let _ = self.control.send(WatchControl::Watch(name));
    }

    pub(crate) fn unwatch(&self, name: String) {
        let _ = self.control.send(WatchControl::Unwatch(name));
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.control.send(WatchControl::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A connection that receives `JobRemoved`.
struct Link {
    conn: Connection,
    /// No bus daemon (systemd's private socket): no AddMatch; filter everything locally.
    direct: bool,
}

impl Link {
    fn open(bus: &BusAddress, timeout: Duration) -> Result<Self, SystemdError> {
        let (conn, direct) = connect(bus)?;
        // Not subscribed (see the module docs); a first call proves systemd answers here.
        conn.with_proxy(SYSTEMD, MANAGER_PATH, timeout)
            .get::<String>(MANAGER, "Version")
            .map_err(|e| SystemdError::call("Get Version", "", &e))?;
        let link = Self { conn, direct };
        link.add_match(JOB_REMOVED_RULE)?;
        Ok(link)
    }

    fn add_match(&self, rule: &str) -> Result<(), SystemdError> {
        if self.direct {
            return Ok(());
        }
        self.conn
            .add_match_no_cb(rule)
            .map_err(|e| SystemdError::call("AddMatch", rule, &e))
    }
}

struct Watched {
    /// The last state reported (None before the first report).
    last: Option<UnitState>,
    /// The last poll whose `ListUnits` had the unit.
    listed_in: u64,
}

impl Watched {
    /// Takes the state systemd reports for unit `name`; reports it if it changed (only then is
    /// anything allocated).
    fn observe(
        &mut self,
        name: &str,
        (load, active, sub): (&str, &str, &str),
        events: &Sender<SystemdEvent>,
    ) {
        let same = self.last.as_ref().is_some_and(|last| {
            last.load_state == load && last.active_state == active && last.sub_state == sub
        });
        if same {
            return;
        }
        let state = UnitState {
            load_state: load.to_string(),
            active_state: active.to_string(),
            sub_state: sub.to_string(),
        };
        self.last = Some(state.clone());
        let _ = events.send(SystemdEvent::UnitState {
            name: name.to_string(),
            state: Some(state),
        });
    }
}

struct WatchLoop {
    link: Option<Link>,
    bus: BusAddress,
    timeout: Duration,
    poll_interval: Duration,
    /// Watched unit → last state reported and the last poll that listed it.
    watched: BTreeMap<String, Watched>,
    /// Number of the current (or last) `ListUnits` poll.
    poll_round: u64,
    /// Units a signal (or a poll) says to re-read.
    dirty: BTreeSet<String>,
    events: Sender<SystemdEvent>,
    control: Receiver<WatchControl>,
    stopping: bool,
}

impl WatchLoop {
    fn run(&mut self) {
        let mut next_poll = Instant::now() + self.poll_interval;
        loop {
            if self.stopping || !self.drain_control() {
                return;
            }
            if self.link.is_none() && !self.reconnect() {
                continue;
            }
            self.receive_signals();
            if Instant::now() >= next_poll {
                // The fallback, whatever signals we got (or lost).
                self.poll_loaded();
                next_poll = Instant::now() + self.poll_interval;
            }
            self.refresh_dirty();
        }
    }

    /// Applies pending watch/unwatch requests. Returns false when the thread must stop.
    fn drain_control(&mut self) -> bool {
        loop {
            match self.control.try_recv() {
                Ok(WatchControl::Watch(name)) => self.watch(name),
                Ok(WatchControl::Unwatch(name)) => self.unwatch(&name),
                Ok(WatchControl::Stop) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn watch(&mut self, name: String) {
        if self.watched.contains_key(&name) {
            return;
        }
        if let Err(e) = check_unit_name(&name) {
            log::warn!("not watching: {e}");
            return;
        }
        self.watched.insert(
            name.clone(),
            Watched {
                last: None,
                listed_in: 0,
            },
        );
        self.dirty.insert(name);
    }

    fn unwatch(&mut self, name: &str) {
        if self.watched.remove(name).is_none() {
            return;
        }
        self.dirty.remove(name);
        let _ = self.events.send(SystemdEvent::UnitState {
            name: name.to_string(),
            state: None,
        });
    }

    /// Waits up to `SIGNAL_WAIT` for a signal, then takes every queued one.
    fn receive_signals(&mut self) {
        let Some(link) = &self.link else { return };
        let channel = link.conn.channel();
        let mut messages = Vec::new();
        match channel.blocking_pop_message(SIGNAL_WAIT) {
            Ok(Some(first)) => {
                messages.push(first);
                while let Some(more) = channel.pop_message() {
                    messages.push(more);
                }
            }
            Ok(None) => {}
            Err(e) => {
                self.lost(format!("reading signals: {}", e.message().unwrap_or("")));
                return;
            }
        }
        if !channel.is_connected() {
            self.lost("connection closed".into());
        }
        for message in messages {
            if let Some(name) = self.unit_named_by(&message) {
                self.dirty.insert(name);
            }
        }
    }

    /// The watched unit whose job a `JobRemoved` signal ends, if any.
    fn unit_named_by(&self, message: &Message) -> Option<String> {
        if message.msg_type() != MessageType::Signal
            || message.interface().as_deref() != Some(MANAGER)
            || message.member().as_deref() != Some("JobRemoved")
        {
            return None;
        }
        let (_id, _job, unit, _result) = message
            .read4::<u32, dbus::Path<'_>, String, String>()
            .ok()?;
        self.watched.contains_key(&unit).then_some(unit)
    }

    /// Compares every watched unit with `ListUnits` and reports changes. A watched unit that is
    /// not in memory was garbage-collected, which systemd only does to inactive units: if it
    /// was last seen inactive nothing changed; otherwise it is re-read by name. The reply is
    /// read in place: a poll allocates nothing for units whose state did not change.
    fn poll_loaded(&mut self) {
        let Some(link) = &self.link else { return };
        self.poll_round += 1;
        let round = self.poll_round;
        let (watched, events) = (&mut self.watched, &self.events);
        let listed = for_each_loaded_unit(&link.conn, self.timeout, |name, load, active, sub| {
            let Some(unit) = watched.get_mut(name) else {
                return;
            };
            unit.listed_in = round;
            unit.observe(name, (load, active, sub), events);
        });
        if let Err(e) = listed {
            if link.conn.channel().is_connected() {
                log::warn!("listing systemd's units: {e}");
            } else {
                self.lost(e.to_string());
            }
            return;
        }
        for (name, unit) in &self.watched {
            let inactive = unit
                .last
                .as_ref()
                .is_some_and(|s| s.active_state == "inactive");
            if unit.listed_in != round && !inactive {
                self.dirty.insert(name.clone());
            }
        }
    }

    /// Re-reads the dirty units and reports those whose state changed.
    fn refresh_dirty(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        let Some(link) = &self.link else { return };
        let names: Vec<String> = std::mem::take(&mut self.dirty).into_iter().collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        match list_units_by_names(&link.conn, self.timeout, &refs) {
            Ok(states) => {
                for (name, state) in states {
                    if let Some(unit) = self.watched.get_mut(&name) {
                        let listed = (
                            state.load_state.as_str(),
                            state.active_state.as_str(),
                            state.sub_state.as_str(),
                        );
                        unit.observe(&name, listed, &self.events);
                    }
                }
            }
            Err(e) => {
                // Retried by the next poll (or, after a reconnect, at once): no hot retry loop.
                if link.conn.channel().is_connected() {
                    log::warn!("re-reading unit states: {e}");
                } else {
                    self.lost(e.to_string());
                }
            }
        }
    }

    fn lost(&mut self, reason: String) {
        if self.link.take().is_some() {
            log::warn!("systemd signal connection lost: {reason}");
            let _ = self.events.send(SystemdEvent::WatchLost { reason });
        }
    }

    /// Tries to open a new subscribed connection; waits a second (on the control channel)
    /// when that fails. Returns true when connected.
    fn reconnect(&mut self) -> bool {
        match Link::open(&self.bus, self.timeout) {
            Ok(link) => {
                self.link = Some(link);
                self.dirty.extend(self.watched.keys().cloned());
                let _ = self.events.send(SystemdEvent::WatchRestored);
                true
            }
            Err(e) => {
                log::debug!("systemd signal connection: {e}");
                match self.control.recv_timeout(Duration::from_secs(1)) {
                    Ok(WatchControl::Watch(name)) => self.watch(name),
                    Ok(WatchControl::Unwatch(name)) => self.unwatch(&name),
                    Ok(WatchControl::Stop) | Err(RecvTimeoutError::Disconnected) => {
                        self.stopping = true
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                }
                false
            }
        }
    }
}
