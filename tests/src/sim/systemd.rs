//! [`SimSystemd`]: one machine's SIMULATED systemd, in virtual time, for the cluster simulator.
//!
//! It models what flt's agent relies on, with the semantics of systemd's manager D-Bus API:
//!
//! - unit files in the agent's units directory ([`SimSystemd::write_unit_file`]), made known to
//!   systemd by `LinkUnitFiles` and (for `[Install]` sections) `EnableUnitFiles`, forgotten by
//!   `DisableUnitFiles`;
//! - units loaded on demand (by a start, or by `ListUnitsByNames`) from a linked file, keeping
//!   the text they were loaded with until `Reload` (daemon-reload), which also drops inactive
//!   units whose file is gone and marks running ones `not-found`;
//! - `LoadState` / `ActiveState` / `SubState` as systemd reports them for a simple service:
//!   `loaded inactive dead` → `loaded activating start` → `loaded active running` →
//!   `loaded deactivating stop` → `loaded inactive dead`, or `loaded failed failed`;
//!   a name systemd does not know is `not-found inactive dead`;
//! - `StartUnit` / `StopUnit` return a job at once; the job finishes after a seeded latency
//!   (a later job for the same unit replaces it, as mode `replace` does), and may fail;
//! - faults: start failures (by rate or forced per unit), units that die after a while (by rate,
//!   or [`SimSystemd::kill_unit`]), and a lost D-Bus connection ([`SimSystemd::set_connected`]).
//!
//! Every change of a unit's three states is reported by [`SimSystemd::poll_notice`], as is the
//! end of every job (`JobRemoved`), so the simulator can feed the agent as a D-Bus signal
//! subscriber or by polling [`SimSystemd::list_units_by_names`]. Calls are methods, not a
//! request enum, so that an adapter from the agent's request type is a small `match`, e.g. for
//! the `SystemdRequest` on branch `agent`:
//!
//! ```text
//! match request {
//!     LoadUnit { name, text, enable } => {
//!         sd.write_unit_file(&name, &text);
//!         sd.link_unit_files(&[&name])?;
//!         if enable {
//!             sd.enable_unit_files(&[&name])?;
//!         }
//!     }
//!     UnloadUnit { name } => {
//!         match sd.stop_unit(&name, now) {
//!             Ok(_) | Err(SystemdError::NoSuchUnit(_)) => {} // unknown counts as stopped
//!             Err(e) => return Err(e),
//!         }
//!         sd.disable_unit_files(&[&name])?;
//!         let _ = sd.reset_failed_unit(&name, now);
//!         sd.remove_unit_file(&name);
//!     }
//!     StartUnit { name } => drop(sd.start_unit(&name, now)?),
//!     StopUnit { name } => drop(sd.stop_unit(&name, now)?),
//!     Reload => sd.reload(now)?,
//!     ListUnits { names } => return Ok(Units(sd.list_units_by_names(&refs(&names))?)),
//! }
//! ```

use flt_core::rng::SplitMix64;
use flt_core::time::Instant;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

/// How the simulated systemd misbehaves. Rates are probabilities in `0.0..=1.0`.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemdFaults {
    /// Shortest time a start or stop job takes.
    pub min_job_latency: Duration,
    /// Longest time a start or stop job takes.
    pub max_job_latency: Duration,
    /// Chance that a start job fails (the unit ends `failed`).
    pub start_failure_rate: f64,
    /// Chance that a started unit dies later on its own, within `max_lifetime`.
    pub death_rate: f64,
    /// Longest life of a unit that is to die.
    pub max_lifetime: Duration,
}

impl Default for SystemdFaults {
    /// A healthy systemd: jobs take 1–50 ms, nothing fails or dies.
    fn default() -> Self {
        SystemdFaults {
            min_job_latency: Duration::from_millis(1),
            max_job_latency: Duration::from_millis(50),
            start_failure_rate: 0.0,
            death_rate: 0.0,
            max_lifetime: Duration::from_secs(600),
        }
    }
}

/// Why a call failed, as systemd (or the bus) would say.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SystemdError {
    /// `org.freedesktop.systemd1.NoSuchUnit`: systemd has no such unit (loaded or loadable).
    NoSuchUnit(String),
    /// A unit file named in a link/enable call is not in the units directory.
    FileNotFound(String),
    /// The bus connection is gone (see [`SimSystemd::set_connected`]).
    Disconnected,
}

impl fmt::Display for SystemdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemdError::NoSuchUnit(name) => write!(f, "Unit {name} not found."),
            SystemdError::FileNotFound(name) => {
                write!(f, "No such file or directory: unit file {name}")
            }
            SystemdError::Disconnected => f.write_str("simulated D-Bus connection lost"),
        }
    }
}

impl std::error::Error for SystemdError {}

/// What systemd reports for one unit (`ListUnitsByNames`, `PropertiesChanged`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnitStatus {
    pub name: String,
    pub load: String,
    pub active: String,
    pub sub: String,
}

/// A job handed out by `StartUnit` / `StopUnit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

/// How a job ended (`JobRemoved`'s `result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobResult {
    Done,
    Failed,
    /// Replaced by a later job for the same unit.
    Canceled,
}

/// Something systemd reports unasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A unit's load, active or sub state changed.
    UnitChanged(UnitStatus),
    /// A job ended.
    JobRemoved {
        job: JobId,
        unit: String,
        result: JobResult,
    },
}

#[derive(Clone, Debug)]
struct UnitFile {
    text: String,
    linked: bool,
    enabled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobKind {
    Start,
    Stop,
}

#[derive(Clone, Copy, Debug)]
struct Job {
    id: JobId,
    kind: JobKind,
    done_at: Instant,
    fails: bool,
}

#[derive(Clone, Debug)]
struct Unit {
    load: &'static str,
    active: &'static str,
    sub: &'static str,
    /// The text the unit was loaded with.
    loaded_text: Option<String>,
    job: Option<Job>,
    dies_at: Option<Instant>,
}

/// One machine's simulated systemd. See the module docs.
#[derive(Clone, Debug)]
pub struct SimSystemd {
    rng: SplitMix64,
    faults: SystemdFaults,
    now: Instant,
    connected: bool,
    files: BTreeMap<String, UnitFile>,
    units: BTreeMap<String, Unit>,
    /// Units whose next start fails whatever the rate.
    doomed: BTreeSet<String>,
    next_job: u64,
    notices: VecDeque<Notice>,
    reloads: u64,
}

impl SimSystemd {
    pub fn new(seed: u64, faults: SystemdFaults) -> SimSystemd {
        SimSystemd {
            rng: SplitMix64::new(seed),
            faults,
            now: Instant::ZERO,
            connected: true,
            files: BTreeMap::new(),
            units: BTreeMap::new(),
            doomed: BTreeSet::new(),
            next_job: 0,
            notices: VecDeque::new(),
            reloads: 0,
        }
    }

    pub fn set_faults(&mut self, faults: SystemdFaults) {
        self.faults = faults;
    }

    /// Loses (or restores) the bus connection: while lost, every call fails with
    /// [`SystemdError::Disconnected`]; jobs already queued still run.
    pub fn set_connected(&mut self, connected: bool) {
        self.connected = connected;
    }

    fn bus(&self) -> Result<(), SystemdError> {
        if self.connected {
            Ok(())
        } else {
            Err(SystemdError::Disconnected)
        }
    }

    fn chance(&mut self, rate: f64) -> bool {
        const SCALE: u64 = 1 << 32;
        let threshold = (rate.clamp(0.0, 1.0) * SCALE as f64) as u64;
        self.rng.below(SCALE) < threshold
    }

    fn between(&mut self, min: Duration, max: Duration) -> Duration {
        let spread = max.saturating_sub(min);
        let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
        min + Duration::from_nanos(self.rng.below(nanos.saturating_add(1)))
    }

    // --- the units directory (the driver's file writes, not D-Bus) ---

    /// Writes `<units_directory>/<name>`.
    pub fn write_unit_file(&mut self, name: &str, text: &str) {
        let file = self.files.entry(name.to_string()).or_insert(UnitFile {
            text: String::new(),
            linked: false,
            enabled: false,
        });
        file.text = text.to_string();
    }

    /// Deletes `<units_directory>/<name>`; its links dangle until disabled. False if absent.
    pub fn remove_unit_file(&mut self, name: &str) -> bool {
        self.files.remove(name).is_some()
    }

    /// The names of the files in the units directory, sorted (the agent's startup inventory).
    pub fn unit_files(&self) -> Vec<(String, String)> {
        self.files
            .iter()
            .map(|(name, file)| (name.clone(), file.text.clone()))
            .collect()
    }

    // --- manager calls ---

    /// `LinkUnitFiles(names, runtime, force)`.
    pub fn link_unit_files(&mut self, names: &[&str]) -> Result<(), SystemdError> {
        self.bus()?;
        if let Some(missing) = names.iter().find(|n| !self.files.contains_key(**n)) {
            return Err(SystemdError::FileNotFound(missing.to_string()));
        }
        for name in names {
            if let Some(file) = self.files.get_mut(*name) {
                file.linked = true;
            }
        }
        Ok(())
    }

    /// `EnableUnitFiles(names, runtime, force)`; gives `carries_install_info` (whether every
    /// file has an `[Install]` section; without one, enabling does nothing).
    pub fn enable_unit_files(&mut self, names: &[&str]) -> Result<bool, SystemdError> {
        self.bus()?;
        if let Some(missing) = names.iter().find(|n| !self.files.contains_key(**n)) {
            return Err(SystemdError::FileNotFound(missing.to_string()));
        }
        let mut install_info = true;
        for name in names {
            if let Some(file) = self.files.get_mut(*name) {
                let has_install = file.text.lines().any(|l| l.trim() == "[Install]");
                file.enabled |= has_install;
                install_info &= has_install;
            }
        }
        Ok(install_info)
    }

    /// `DisableUnitFiles(names, runtime)`: removes every link to them (also `LinkUnitFiles`'s).
    pub fn disable_unit_files(&mut self, names: &[&str]) -> Result<(), SystemdError> {
        self.bus()?;
        for name in names {
            if let Some(file) = self.files.get_mut(*name) {
                file.linked = false;
                file.enabled = false;
            }
        }
        Ok(())
    }

    /// Whether systemd can find a unit file for `name`.
    fn loadable(&self, name: &str) -> Option<&UnitFile> {
        self.files.get(name).filter(|f| f.linked)
    }

    /// Loads `name` if it is not loaded and a linked file exists. True if it is loaded now.
    fn load_on_demand(&mut self, name: &str) -> bool {
        if self.units.contains_key(name) {
            return true;
        }
        let Some(text) = self.loadable(name).map(|f| f.text.clone()) else {
            return false;
        };
        self.units.insert(
            name.to_string(),
            Unit {
                load: "loaded",
                active: "inactive",
                sub: "dead",
                loaded_text: Some(text),
                job: None,
                dies_at: None,
            },
        );
        self.notify(name);
        true
    }

    fn status_of(&self, name: &str) -> UnitStatus {
        match self.units.get(name) {
            Some(u) => UnitStatus {
                name: name.to_string(),
                load: u.load.to_string(),
                active: u.active.to_string(),
                sub: u.sub.to_string(),
            },
            None => UnitStatus {
                name: name.to_string(),
                load: if self.loadable(name).is_some() {
                    "loaded"
                } else {
                    "not-found"
                }
                .to_string(),
                active: "inactive".to_string(),
                sub: "dead".to_string(),
            },
        }
    }

    fn notify(&mut self, name: &str) {
        let status = self.status_of(name);
        self.notices.push_back(Notice::UnitChanged(status));
    }

    fn set_state(&mut self, name: &str, active: &'static str, sub: &'static str) {
        let Some(unit) = self.units.get_mut(name) else {
            return;
        };
        if (unit.active, unit.sub) != (active, sub) {
            unit.active = active;
            unit.sub = sub;
            self.notify(name);
        }
    }

    /// Queues a job for a loaded unit, replacing (cancelling) the one it had.
    fn enqueue(&mut self, name: &str, kind: JobKind, fails: bool) -> JobId {
        self.next_job += 1;
        let id = JobId(self.next_job);
        let latency = self.between(self.faults.min_job_latency, self.faults.max_job_latency);
        let job = Job {
            id,
            kind,
            done_at: self.now + latency,
            fails,
        };
        let replaced = self
            .units
            .get_mut(name)
            .and_then(|unit| unit.job.replace(job));
        if let Some(old) = replaced {
            self.notices.push_back(Notice::JobRemoved {
                job: old.id,
                unit: name.to_string(),
                result: JobResult::Canceled,
            });
        }
        id
    }

    /// `StartUnit(name, "replace")`: loads the unit if needed and queues a start job.
    pub fn start_unit(&mut self, name: &str, now: Instant) -> Result<JobId, SystemdError> {
        self.bus()?;
        self.advance(now);
        if !self.load_on_demand(name) {
            return Err(SystemdError::NoSuchUnit(name.to_string()));
        }
        let fails = self.doomed.remove(name) || self.chance(self.faults.start_failure_rate);
        let id = self.enqueue(name, JobKind::Start, fails);
        if self.units.get(name).is_some_and(|u| u.active != "active") {
            self.set_state(name, "activating", "start");
        }
        Ok(id)
    }

    /// `StopUnit(name, "replace")`: loads the unit if needed and queues a stop job; a unit
    /// systemd cannot find is an error (systemd: "Unit … not loaded").
    pub fn stop_unit(&mut self, name: &str, now: Instant) -> Result<JobId, SystemdError> {
        self.bus()?;
        self.advance(now);
        if !self.load_on_demand(name) {
            return Err(SystemdError::NoSuchUnit(name.to_string()));
        }
        let id = self.enqueue(name, JobKind::Stop, false);
        if self
            .units
            .get(name)
            .is_some_and(|u| matches!(u.active, "active" | "activating"))
        {
            self.set_state(name, "deactivating", "stop");
        }
        Ok(id)
    }

    /// `ResetFailedUnit(name)`: a failed unit becomes `inactive dead`.
    pub fn reset_failed_unit(&mut self, name: &str, now: Instant) -> Result<(), SystemdError> {
        self.bus()?;
        self.advance(now);
        let Some(unit) = self.units.get(name) else {
            return Err(SystemdError::NoSuchUnit(name.to_string()));
        };
        if unit.active == "failed" {
            self.set_state(name, "inactive", "dead");
        }
        self.collect_garbage(name);
        Ok(())
    }

    /// `Reload()` (daemon-reload): every loaded unit re-reads its file; one whose file is gone is
    /// dropped if it is inactive, else stays with load state `not-found`.
    pub fn reload(&mut self, now: Instant) -> Result<(), SystemdError> {
        self.bus()?;
        self.advance(now);
        self.reloads += 1;
        let names: Vec<String> = self.units.keys().cloned().collect();
        for name in names {
            let text = self.loadable(&name).map(|f| f.text.clone());
            let Some(unit) = self.units.get_mut(&name) else {
                continue;
            };
            let load = if text.is_some() {
                "loaded"
            } else {
                "not-found"
            };
            unit.loaded_text = text;
            if unit.load != load {
                unit.load = load;
                self.notify(&name);
            }
            self.collect_garbage(&name);
        }
        Ok(())
    }

    /// `ListUnitsByNames(names)`: entries also for units systemd does not know (`not-found`).
    pub fn list_units_by_names(&mut self, names: &[&str]) -> Result<Vec<UnitStatus>, SystemdError> {
        self.bus()?;
        Ok(names.iter().map(|name| self.status_of(name)).collect())
    }

    /// The text `name` was loaded with (what a start runs), if it is loaded.
    pub fn loaded_text(&self, name: &str) -> Option<&str> {
        self.units.get(name)?.loaded_text.as_deref()
    }

    /// Whether `name` has a link (from `LinkUnitFiles`) and whether it is enabled.
    pub fn link_state(&self, name: &str) -> Option<(bool, bool)> {
        self.files.get(name).map(|f| (f.linked, f.enabled))
    }

    /// How many daemon-reloads were done.
    pub fn reload_count(&self) -> u64 {
        self.reloads
    }

    /// The names of the units that are `active` (for invariants such as "Conflicts never
    /// violated").
    pub fn active_units(&self) -> Vec<String> {
        self.units
            .iter()
            .filter(|(_, u)| matches!(u.active, "active" | "activating" | "deactivating"))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The names of the units that are `active` or `activating` (being stopped does not
    /// count: the agent does not wait for stop jobs, as fleet's did not).
    pub fn started_units(&self) -> Vec<String> {
        self.units
            .iter()
            .filter(|(_, u)| matches!(u.active, "active" | "activating"))
            .map(|(name, _)| name.clone())
            .collect()
    }

    // --- faults ---

    /// Makes the next start of `name` fail.
    pub fn fail_next_start(&mut self, name: &str) {
        self.doomed.insert(name.to_string());
    }

    /// The unit's processes die now: it ends `failed` (or `inactive dead` if `clean`).
    pub fn kill_unit(&mut self, name: &str, clean: bool, now: Instant) {
        self.advance(now);
        if self.units.get(name).is_some_and(|u| u.active == "active") {
            self.die(name, clean);
        }
    }

    /// Forgets every death drawn so far (the faults heal: units that are to die live on).
    pub fn cancel_deaths(&mut self) {
        for unit in self.units.values_mut() {
            unit.dies_at = None;
        }
    }

    fn die(&mut self, name: &str, clean: bool) {
        if let Some(unit) = self.units.get_mut(name) {
            unit.dies_at = None;
        }
        if clean {
            self.set_state(name, "inactive", "dead");
        } else {
            self.set_state(name, "failed", "failed");
        }
    }

    /// systemd forgets an inactive unit that has no file, no job and is not failed.
    fn collect_garbage(&mut self, name: &str) {
        let gone = self
            .units
            .get(name)
            .is_some_and(|u| u.active == "inactive" && u.job.is_none() && u.load == "not-found");
        if gone {
            self.units.remove(name);
        }
    }

    // --- time ---

    /// When something happens next on its own (a job ends, a unit dies).
    pub fn next_timeout(&self) -> Option<Instant> {
        self.units
            .values()
            .flat_map(|u| [u.job.map(|j| j.done_at), u.dies_at])
            .flatten()
            .min()
    }

    /// Runs everything due by `now`, in time order.
    pub fn advance(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        loop {
            // The earliest due job end or death, by time then unit name.
            let due = self
                .units
                .iter()
                .flat_map(|(name, u)| {
                    let job = u.job.map(|j| (j.done_at, name.clone(), true));
                    let death = u.dies_at.map(|at| (at, name.clone(), false));
                    [job, death]
                })
                .flatten()
                .filter(|(at, _, _)| *at <= self.now)
                .min();
            let Some((at, name, is_job)) = due else {
                return;
            };
            if is_job {
                self.finish_job(&name, at);
            } else {
                self.die(&name, false);
            }
        }
    }

    fn finish_job(&mut self, name: &str, at: Instant) {
        let Some(job) = self.units.get_mut(name).and_then(|u| u.job.take()) else {
            return;
        };
        let result = match job.kind {
            JobKind::Start if job.fails => {
                self.set_state(name, "failed", "failed");
                JobResult::Failed
            }
            JobKind::Start => {
                let was_active = self.units.get(name).is_some_and(|u| u.active == "active");
                self.set_state(name, "active", "running");
                if !was_active && self.chance(self.faults.death_rate) {
                    let life = self.between(Duration::ZERO, self.faults.max_lifetime);
                    if let Some(unit) = self.units.get_mut(name) {
                        unit.dies_at = Some(at + life);
                    }
                }
                JobResult::Done
            }
            JobKind::Stop => {
                if let Some(unit) = self.units.get_mut(name) {
                    unit.dies_at = None;
                }
                if self.units.get(name).is_some_and(|u| u.active != "failed") {
                    self.set_state(name, "inactive", "dead");
                }
                JobResult::Done
            }
        };
        self.notices.push_back(Notice::JobRemoved {
            job: job.id,
            unit: name.to_string(),
            result,
        });
        self.collect_garbage(name);
    }

    /// Whether a notice waits for [`SimSystemd::poll_notice`].
    pub fn has_notices(&self) -> bool {
        !self.notices.is_empty()
    }

    /// The next state change or job end, in the order they happened.
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }
}

#[cfg(test)]
mod tests;
