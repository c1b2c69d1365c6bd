//! Unit tests of [`SimSystemd`].

use super::*;

fn t(ms: u64) -> Instant {
    Instant::from_epoch(Duration::from_millis(ms))
}

const HELLO: &str = "[Service]\nExecStart=/bin/sleep 1000\n";

fn status(name: &str, load: &str, active: &str, sub: &str) -> UnitStatus {
    UnitStatus {
        name: name.into(),
        load: load.into(),
        active: active.into(),
        sub: sub.into(),
    }
}

fn notices(systemd: &mut SimSystemd) -> Vec<Notice> {
    std::iter::from_fn(|| systemd.poll_notice()).collect()
}

fn changes(systemd: &mut SimSystemd) -> Vec<(String, String)> {
    notices(systemd)
        .into_iter()
        .filter_map(|n| match n {
            Notice::UnitChanged(s) => Some((s.name, format!("{} {} {}", s.load, s.active, s.sub))),
            Notice::JobRemoved { .. } => None,
        })
        .collect()
}

fn fixed_latency(ms: u64) -> SystemdFaults {
    SystemdFaults {
        min_job_latency: Duration::from_millis(ms),
        max_job_latency: Duration::from_millis(ms),
        ..SystemdFaults::default()
    }
}

fn state(systemd: &mut SimSystemd, name: &str) -> String {
    let s = systemd.list_units_by_names(&[name]).unwrap().remove(0);
    format!("{} {} {}", s.load, s.active, s.sub)
}

#[test]
fn load_start_stop_with_job_latency_and_notices() {
    let mut sd = SimSystemd::new(1, fixed_latency(10));
    assert_eq!(
        sd.list_units_by_names(&["hello.service"]).unwrap(),
        [status("hello.service", "not-found", "inactive", "dead")]
    );
    assert_eq!(
        sd.start_unit("hello.service", t(0)),
        Err(SystemdError::NoSuchUnit("hello.service".into()))
    );
    assert_eq!(
        sd.link_unit_files(&["hello.service"]),
        Err(SystemdError::FileNotFound("hello.service".into()))
    );
    sd.write_unit_file("hello.service", HELLO);
    sd.link_unit_files(&["hello.service"]).unwrap();
    assert_eq!(state(&mut sd, "hello.service"), "loaded inactive dead");

    let job = sd.start_unit("hello.service", t(0)).unwrap();
    assert_eq!(state(&mut sd, "hello.service"), "loaded activating start");
    assert_eq!(sd.next_timeout(), Some(t(10)));
    sd.advance(t(9));
    assert_eq!(state(&mut sd, "hello.service"), "loaded activating start");
    sd.advance(t(10));
    assert_eq!(state(&mut sd, "hello.service"), "loaded active running");
    assert_eq!(sd.active_units(), ["hello.service"]);
    assert_eq!(
        notices(&mut sd),
        [
            Notice::UnitChanged(status("hello.service", "loaded", "inactive", "dead")),
            Notice::UnitChanged(status("hello.service", "loaded", "activating", "start")),
            Notice::UnitChanged(status("hello.service", "loaded", "active", "running")),
            Notice::JobRemoved {
                job,
                unit: "hello.service".into(),
                result: JobResult::Done
            },
        ]
    );

    sd.stop_unit("hello.service", t(20)).unwrap();
    sd.advance(t(30));
    assert_eq!(
        changes(&mut sd),
        [
            ("hello.service".into(), "loaded deactivating stop".into()),
            ("hello.service".into(), "loaded inactive dead".into()),
        ]
    );
    assert!(sd.active_units().is_empty());
    assert_eq!(sd.next_timeout(), None);
}

#[test]
fn a_later_job_replaces_the_pending_one() {
    let mut sd = SimSystemd::new(2, fixed_latency(10));
    sd.write_unit_file("a.service", HELLO);
    sd.link_unit_files(&["a.service"]).unwrap();
    let start = sd.start_unit("a.service", t(0)).unwrap();
    let stop = sd.stop_unit("a.service", t(5)).unwrap();
    sd.advance(t(100));
    let ends: Vec<_> = notices(&mut sd)
        .into_iter()
        .filter_map(|n| match n {
            Notice::JobRemoved { job, result, .. } => Some((job, result)),
            Notice::UnitChanged(_) => None,
        })
        .collect();
    assert_eq!(
        ends,
        [(start, JobResult::Canceled), (stop, JobResult::Done)]
    );
    assert_eq!(state(&mut sd, "a.service"), "loaded inactive dead");
}

#[test]
fn daemon_reload_rereads_files_and_forgets_removed_inactive_units() {
    let mut sd = SimSystemd::new(3, fixed_latency(1));
    for name in ["old.service", "running.service"] {
        sd.write_unit_file(name, HELLO);
    }
    sd.link_unit_files(&["old.service", "running.service"])
        .unwrap();
    sd.start_unit("old.service", t(0)).unwrap();
    sd.start_unit("running.service", t(0)).unwrap();
    sd.advance(t(5));
    // A changed file is used only after a daemon-reload.
    sd.write_unit_file("old.service", "[Service]\nExecStart=/bin/true\n");
    assert_eq!(sd.loaded_text("old.service"), Some(HELLO));
    sd.reload(t(6)).unwrap();
    assert_eq!(
        sd.loaded_text("old.service"),
        Some("[Service]\nExecStart=/bin/true\n")
    );
    // Unload: stop, disable, remove the file, reload.
    sd.stop_unit("old.service", t(10)).unwrap();
    sd.advance(t(20));
    sd.disable_unit_files(&["old.service", "running.service"])
        .unwrap();
    assert!(sd.remove_unit_file("old.service"));
    assert!(sd.remove_unit_file("running.service"));
    changes(&mut sd);
    sd.reload(t(21)).unwrap();
    assert_eq!(sd.reload_count(), 2);
    assert_eq!(state(&mut sd, "old.service"), "not-found inactive dead");
    assert_eq!(
        state(&mut sd, "running.service"),
        "not-found active running",
        "a running unit whose file went away keeps running"
    );
    assert_eq!(sd.loaded_text("old.service"), None);
    sd.stop_unit("running.service", t(22)).unwrap();
    sd.advance(t(30));
    assert_eq!(
        sd.loaded_text("running.service"),
        None,
        "forgotten once stopped"
    );
    assert_eq!(
        sd.stop_unit("running.service", t(30)),
        Err(SystemdError::NoSuchUnit("running.service".into()))
    );
}

#[test]
fn enable_reports_install_info_and_disable_unlinks() {
    let mut sd = SimSystemd::new(4, SystemdFaults::default());
    sd.write_unit_file("plain.service", HELLO);
    sd.write_unit_file(
        "wanted.service",
        "[Service]\nExecStart=/bin/sleep 1\n[Install]\nWantedBy=multi-user.target\n",
    );
    sd.link_unit_files(&["plain.service", "wanted.service"])
        .unwrap();
    assert_eq!(sd.enable_unit_files(&["wanted.service"]), Ok(true));
    assert_eq!(sd.enable_unit_files(&["plain.service"]), Ok(false));
    assert_eq!(sd.link_state("wanted.service"), Some((true, true)));
    assert_eq!(sd.link_state("plain.service"), Some((true, false)));
    sd.disable_unit_files(&["wanted.service"]).unwrap();
    assert_eq!(sd.link_state("wanted.service"), Some((false, false)));
    assert_eq!(state(&mut sd, "wanted.service"), "not-found inactive dead");
    // Stopping a linked unit that was never loaded loads it: the stop is a no-op job.
    sd.stop_unit("plain.service", t(0)).unwrap();
    sd.advance(t(100));
    assert_eq!(state(&mut sd, "plain.service"), "loaded inactive dead");
    assert_eq!(
        sd.unit_files()
            .into_iter()
            .map(|(name, _)| name)
            .collect::<Vec<_>>(),
        ["plain.service", "wanted.service"]
    );
}

#[test]
fn start_failures_deaths_reset_failed_and_lost_bus() {
    let mut sd = SimSystemd::new(5, fixed_latency(10));
    sd.write_unit_file("a.service", HELLO);
    sd.link_unit_files(&["a.service"]).unwrap();
    sd.fail_next_start("a.service");
    let job = sd.start_unit("a.service", t(0)).unwrap();
    sd.advance(t(10));
    assert_eq!(state(&mut sd, "a.service"), "loaded failed failed");
    assert!(notices(&mut sd).contains(&Notice::JobRemoved {
        job,
        unit: "a.service".into(),
        result: JobResult::Failed
    }));
    sd.reset_failed_unit("a.service", t(11)).unwrap();
    assert_eq!(state(&mut sd, "a.service"), "loaded inactive dead");
    sd.start_unit("a.service", t(12)).unwrap();
    sd.advance(t(22));
    assert_eq!(state(&mut sd, "a.service"), "loaded active running");
    sd.kill_unit("a.service", false, t(30));
    assert_eq!(state(&mut sd, "a.service"), "loaded failed failed");
    sd.start_unit("a.service", t(31)).unwrap();
    sd.advance(t(41));
    sd.kill_unit("a.service", true, t(50));
    assert_eq!(state(&mut sd, "a.service"), "loaded inactive dead");

    sd.set_connected(false);
    assert_eq!(
        sd.start_unit("a.service", t(60)),
        Err(SystemdError::Disconnected)
    );
    assert_eq!(
        sd.list_units_by_names(&["a.service"]),
        Err(SystemdError::Disconnected)
    );
    sd.set_connected(true);
    assert_eq!(
        sd.reset_failed_unit("b.service", t(60)),
        Err(SystemdError::NoSuchUnit("b.service".into()))
    );
}

#[test]
fn rates_draw_failures_and_deaths_from_the_seed() {
    let faults = SystemdFaults {
        min_job_latency: Duration::from_millis(1),
        max_job_latency: Duration::from_millis(100),
        start_failure_rate: 0.3,
        death_rate: 0.5,
        max_lifetime: Duration::from_secs(10),
    };
    let run = |seed| {
        let mut sd = SimSystemd::new(seed, faults.clone());
        let names: Vec<String> = (0..100).map(|i| format!("u{i}.service")).collect();
        for name in &names {
            sd.write_unit_file(name, HELLO);
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        sd.link_unit_files(&refs).unwrap();
        for name in &refs {
            sd.start_unit(name, t(0)).unwrap();
        }
        sd.advance(t(100));
        let after_start = sd.list_units_by_names(&refs).unwrap();
        sd.advance(t(20_000));
        (after_start, sd.list_units_by_names(&refs).unwrap())
    };
    let (started, later) = run(6);
    assert_eq!(
        run(6),
        (started.clone(), later.clone()),
        "same seed, same run"
    );
    assert_ne!(run(7).0, started);
    let failed = started.iter().filter(|s| s.active == "failed").count();
    let running = started.iter().filter(|s| s.active == "active").count();
    assert_eq!(failed + running, 100, "every job ended within the latency");
    assert!((15..45).contains(&failed), "{failed} start failures");
    let died = later.iter().filter(|s| s.active == "failed").count() - failed;
    assert!(
        (running / 4..running * 3 / 4).contains(&died),
        "{died} of {running} died"
    );
}
