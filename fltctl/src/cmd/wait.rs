//! fleetctl's blocking model: wait for units to reach a state by polling `GET /units/<name>`
//! every 250 ms; one attempt is 2 s, `Blocking::Forever` never gives up. The units are polled
//! together (fleetctl used one goroutine per unit); each is printed when it arrives:
//! `Unit <name> <currentState>[ on <machine legend>]`.
//!
//! On a terminal a progress line shows the units still pending and their current state.

use crate::cli::Blocking;
use crate::context::Ctx;
use crate::log_at;
use crate::table::is_global;
use std::time::Duration;

/// Between two polls of a unit.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// One attempt.
pub const ATTEMPT: Duration = Duration::from_secs(2);

/// fleetctl's `tryWaitForUnitStates`: with `Blocking::Trigger` prints `Triggered unit <n> <verb>`
/// for each unit; else waits, and on failure prints `Error waiting for units: <err>` and returns
/// the first error.
pub fn try_wait_for_unit_states(
    ctx: &mut Ctx<'_>,
    names: &[String],
    verb: &str,
    state: &str,
    blocking: Blocking,
) -> Result<(), String> {
    if blocking == Blocking::Trigger {
        for name in names {
            ctx.say(format!("Triggered unit {name} {verb}"));
        }
        return Ok(());
    }
    wait_for_unit_states(ctx, names, state, blocking).inspect_err(|e| {
        ctx.warn(format!("Error waiting for units: {e}"));
    })
}

/// When a unit with `blocking` attempts gives up; `None` for never.
fn deadline(start: Duration, blocking: Blocking) -> Option<Duration> {
    match blocking {
        Blocking::Attempts(n) => Some(start + ATTEMPT * n),
        Blocking::Forever | Blocking::Trigger => None,
    }
}

/// Waits until every unit reports `state` (the current state; the desired state for a global
/// unit, which has no current state). Returns every timeout, in the order of the names.
pub fn wait_for_unit_states(
    ctx: &mut Ctx<'_>,
    names: &[String],
    state: &str,
    blocking: Blocking,
) -> Result<(), String> {
    let errors = wait_all(ctx, names, state, blocking);
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The polling loop; returns the timeout errors.
pub fn wait_all(
    ctx: &mut Ctx<'_>,
    names: &[String],
    state: &str,
    blocking: Blocking,
) -> Vec<String> {
    let give_up = deadline(ctx.clock.now(), blocking);
    // (name, last seen state) of the units still pending.
    let mut pending: Vec<(String, String)> =
        names.iter().map(|n| (n.clone(), "-".to_string())).collect();
    let mut errors = Vec::new();
    loop {
        let mut still = Vec::new();
        for (name, _) in pending {
            match check_unit_state(ctx, &name, state) {
                Some(Ok(line)) => ctx.say(line),
                Some(Err(seen)) => still.push((name, seen)),
                None => still.push((name, "not found".to_string())),
            }
        }
        pending = still;
        if pending.is_empty() {
            ctx.clear_progress();
            return errors;
        }
        ctx.clock.sleep(POLL_INTERVAL);
        if give_up.is_some_and(|at| ctx.clock.now() >= at) {
            for (name, _) in &pending {
                errors.push(format!(
                    "timed out waiting for unit {name} to report state {state}"
                ));
            }
            ctx.clear_progress();
            return errors;
        }
        let list: Vec<String> = pending
            .iter()
            .map(|(n, seen)| format!("{n} ({seen})"))
            .collect();
        ctx.progress(&format!(
            "Waiting for {} unit(s) to be {state}: {}",
            pending.len(),
            list.join(", ")
        ));
    }
}

/// One poll: `Some(Ok(line))` when the unit reports `state`, `Some(Err(seen))` otherwise,
/// `None` when it does not exist (yet). API errors are logged and count as not there yet.
fn check_unit_state(ctx: &mut Ctx<'_>, name: &str, state: &str) -> Option<Result<String, String>> {
    let unit = match ctx.api.unit(name) {
        Ok(Some(unit)) => unit,
        Ok(None) => {
            log_at!(ctx, "DEBUG", "Unit {name} not found");
            return None;
        }
        Err(e) => {
            log_at!(
                ctx,
                "WARN",
                "Error retrieving Unit({name}) from Registry: {e}"
            );
            return Some(Err("?".to_string()));
        }
    };
    let seen = if is_global(&unit) {
        &unit.desired_state
    } else {
        &unit.current_state
    };
    if seen != state {
        let shown = if seen.is_empty() { "-" } else { seen };
        return Some(Err(shown.to_string()));
    }
    // fltd derives `loaded` from the desired state as soon as it changes; fleet's `loaded` meant
    // the agent had stopped the unit. So stop and restart also wait for systemd to stop it.
    if state == "loaded" && !is_global(&unit) && !unit.machine_id.is_empty() {
        match ctx.api.unit_states_of(name) {
            Ok(states) => {
                let running = states.iter().find(|s| {
                    s.machine_id == unit.machine_id
                        && systemd_still_running(&s.systemd_active_state)
                });
                if let Some(s) = running {
                    return Some(Err(format!("loaded, {}", s.systemd_active_state)));
                }
            }
            Err(e) => {
                log_at!(ctx, "WARN", "Error retrieving state of Unit({name}): {e}");
                return Some(Err("?".to_string()));
            }
        }
    }
    let mut line = format!("Unit {name} {}", unit.current_state);
    if !unit.machine_id.is_empty() {
        let legend = ctx.machine_legend(&unit.machine_id);
        line.push_str(&format!(" on {legend}"));
    }
    Some(Ok(line))
}

/// Whether a systemd ActiveState means the unit's processes may still run.
fn systemd_still_running(active_state: &str) -> bool {
    matches!(
        active_state,
        "active" | "activating" | "deactivating" | "reloading"
    )
}

/// After `launched`, `start` checks that systemd reports each unit `active` and `loaded`. With
/// `Blocking::Trigger` prints `Triggered unit <n> start`; with `Forever` it waits as long as it
/// takes (fleetctl gave up after 2 s). Errors are printed as `Error waiting for units: …`.
pub fn try_wait_for_systemd_active(
    ctx: &mut Ctx<'_>,
    names: &[String],
    blocking: Blocking,
) -> Result<(), String> {
    if blocking == Blocking::Trigger {
        for name in names {
            ctx.say(format!("Triggered unit {name} start"));
        }
        return Ok(());
    }
    let start = ctx.clock.now();
    let give_up = deadline(start, blocking);
    let mut pending: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.clone(), format!("Error: unit {n} not active")))
        .collect();
    loop {
        let mut still = Vec::new();
        for (name, _) in pending {
            if let Err(e) = assert_systemd_active(ctx, &name) {
                still.push((name, e));
            }
        }
        pending = still;
        if pending.is_empty() {
            ctx.clear_progress();
            return Ok(());
        }
        ctx.clock.sleep(POLL_INTERVAL);
        if let Some(at) = give_up.filter(|&at| ctx.clock.now() >= at) {
            ctx.clear_progress();
            let (name, last) = &pending[0];
            let error = format!(
                "Failed to find an active unit {name} within {}, err: {last}",
                go_duration(at - start)
            );
            ctx.warn(format!("Error waiting for units: {error}"));
            return Err(error);
        }
        let list: Vec<&str> = pending.iter().map(|(n, _)| n.as_str()).collect();
        ctx.progress(&format!(
            "Waiting for systemd to report {} unit(s) active: {}",
            pending.len(),
            list.join(", ")
        ));
    }
}

fn assert_systemd_active(ctx: &mut Ctx<'_>, name: &str) -> Result<(), String> {
    let states = ctx
        .api
        .unit_states_of(name)
        .map_err(|e| format!("Error retrieving list of units from repository: {e}"))?;
    let Some(state) = states.iter().find(|s| s.name == name) else {
        return Err(format!("Error: unit {name} has no state yet"));
    };
    if state.systemd_active_state != "active" {
        return Err(format!(
            "Error: unit {name} not active (ActiveState {})",
            state.systemd_active_state
        ));
    }
    if state.systemd_load_state != "loaded" {
        return Err(format!(
            "Error: unit {name} not loaded (LoadState {})",
            state.systemd_load_state
        ));
    }
    Ok(())
}

/// Go's `time.Duration` text at millisecond precision (`2s`, `1.5s`, `250ms`).
pub fn go_duration(d: Duration) -> String {
    let millis = d.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        let text = format!("{:.3}", d.as_secs_f64());
        format!("{}s", text.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
        assert_eq!(go_duration(Duration::from_secs(20)), "20s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn loaded_waits_until_systemd_stopped_the_unit() {
        for running in ["active", "activating", "deactivating", "reloading"] {
            assert!(systemd_still_running(running), "{running}");
        }
        for stopped in ["inactive", "failed", ""] {
            assert!(!systemd_still_running(stopped), "{stopped}");
        }
    }

    #[test]
    fn attempts_read_like_fleetctl() {
        assert_eq!(Blocking::from_attempts(-1), Blocking::Trigger);
        assert_eq!(Blocking::from_attempts(0), Blocking::Forever);
        assert_eq!(Blocking::from_attempts(3), Blocking::Attempts(3));
        // The creation wait never triggers only.
        assert_eq!(Blocking::for_creation(-1), Blocking::Forever);
        assert_eq!(Blocking::for_creation(2), Blocking::Attempts(2));
    }
}
