//! Lazy creation from local files and templates (submit, and the create step of load/start),
//! the replace rules per command and the differs-warnings.

use super::harness::*;
use flt_core::unit::UnitFile;

fn options_of(api: &super::api_double::ApiDouble, name: &str) -> String {
    let state = api.lock();
    let unit = state.units.get(name).expect("unit stored");
    flt_core::api::entities::unit_file_from_options(&unit.options).serialize()
}

#[test]
fn submit_creates_from_a_local_file_without_desired_state_and_waits_for_inactive() {
    let api = cluster();
    let dir = Dir::new("submit");
    let file = dir.file("hello.service", HELLO);
    let o = fltctl(&api, &["submit", &file]);
    assert_eq!(
        (o.code, o.out.as_str(), o.err.as_str()),
        (0, "Unit hello.service inactive\n", "")
    );
    assert_eq!(
        options_of(&api, "hello.service"),
        UnitFile::parse(HELLO).unwrap().serialize()
    );
    assert_eq!(api.lock().units["hello.service"].desired, "inactive");
    assert_eq!(api.requests("PUT ").len(), 1);
}

#[test]
fn names_are_mangled_from_the_file_argument() {
    let api = cluster();
    let dir = Dir::new("mangle");
    dir.file("plain.service", HELLO);
    dir.file("x.target", HELLO);
    let o = fltctl(&api, &["submit", &dir.path("plain"), &dir.path("x.target")]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        "Unit plain.service inactive\nUnit x.target.service inactive\n"
    );
}

#[test]
fn no_units_given() {
    let api = cluster();
    for command in [
        "submit", "load", "start", "stop", "unload", "destroy", "restart", "status",
    ] {
        let o = fltctl(&api, &[command]);
        assert_eq!(
            (o.code, o.err.as_str()),
            (0, "No units given\n"),
            "{command}"
        );
    }
}

#[test]
fn an_existing_unit_is_kept_and_a_different_local_file_warned_about() {
    let api = cluster();
    let dir = Dir::new("differs");
    let same = dir.file("same.service", HELLO);
    let changed = dir.file("changed.service", HELLO2);
    api.unit("same.service", HELLO, "launched", "launched");
    api.unit("changed.service", HELLO, "launched", "launched");
    let o = fltctl(&api, &["submit", &same, &changed]);
    assert_eq!((o.code, o.out.as_str()), (0, ""));
    assert_eq!(
        o.err,
        format!(
            "WARNING: Unit changed.service in registry differs from local unit file {changed}. Add --replace to override.\n"
        )
    );
    assert!(api.requests("PUT ").is_empty());
}

#[test]
fn replace_with_the_same_content_does_nothing() {
    let api = cluster();
    let dir = Dir::new("same");
    let file = dir.file("a.service", HELLO);
    api.unit("a.service", HELLO, "inactive", "inactive");
    let o = fltctl(&api, &["submit", "--replace", &file]);
    assert_eq!(o.code, 0);
    assert_eq!(
        o.out,
        "Found same Unit(a.service) in Registry, nothing to do\n"
    );
    assert!(api.requests("PUT ").is_empty());
}

#[test]
fn replace_rules_per_command() {
    // (command, desired state in the registry, replaced?)
    let cases = [
        ("submit", "inactive", true),
        ("submit", "loaded", false),
        ("submit", "launched", false),
        ("load", "inactive", true),
        ("load", "loaded", true),
        ("load", "launched", false),
        ("start", "inactive", true),
        ("start", "loaded", true),
        ("start", "launched", true),
    ];
    for (command, desired, replaced) in cases {
        let api = cluster();
        let dir = Dir::new("rules");
        let file = dir.file("a.service", HELLO2);
        let current = if desired == "inactive" {
            "inactive"
        } else {
            desired
        };
        api.unit("a.service", HELLO, desired, current);
        let o = fltctl(&api, &[command, "--replace", &file]);
        assert_eq!(o.code, 0, "{command} {desired}: {}", o.err);
        let now = options_of(&api, "a.service");
        let expect = if replaced { HELLO2 } else { HELLO };
        assert_eq!(
            now,
            UnitFile::parse(expect).unwrap().serialize(),
            "{command} {desired}"
        );
        if replaced {
            assert!(
                o.out.starts_with("Unit a.service inactive\n"),
                "{command} {desired}: {}",
                o.out
            );
            assert!(
                !o.err.contains("can not replace"),
                "{command} {desired}: {}",
                o.err
            );
        } else {
            assert!(
                o.err.starts_with(&format!(
                    "Warning: can not replace Unit(a.service) in state '{desired}', use the appropriate command\n"
                )),
                "{command} {desired}: {}",
                o.err
            );
        }
    }
}

#[test]
fn replace_resets_the_desired_state_to_inactive_for_submit() {
    let api = cluster();
    let dir = Dir::new("reset");
    let file = dir.file("a.service", HELLO2);
    api.unit("a.service", HELLO, "loaded", "loaded");
    let o = fltctl(&api, &["load", "--replace", &file]);
    assert_eq!(o.code, 0, "{}", o.err);
    // Replaced (desired reset to inactive, waited for), then loaded again.
    assert_eq!(
        o.out,
        "Unit a.service inactive\nUnit a.service loaded on 113f16a7.../172.17.8.103\n"
    );
}

#[test]
fn replace_needs_the_local_file() {
    let api = cluster();
    let dir = Dir::new("needfile");
    api.unit("a.service", HELLO, "inactive", "inactive");
    let missing = dir.path("a.service");
    let o = fltctl(&api, &["submit", "--replace", &missing]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        format!("Error creating units: error Unit {missing} does not seem to be a template unit\n")
    );
}

#[test]
fn a_missing_file_that_is_no_instance_is_an_error() {
    let api = cluster();
    let o = fltctl(&api, &["submit", "/nonexistent/nope.service"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "Error creating units: unable to find Unit(nope.service) in Registry or on filesystem\n"
    );
}

#[test]
fn an_unparsable_file_names_the_file() {
    let api = cluster();
    let dir = Dir::new("parse");
    let file = dir.file("bad.service", "[Service\nExecStart=x\n");
    let o = fltctl(&api, &["submit", &file]);
    assert_eq!(o.code, 1);
    assert!(
        o.err.starts_with(&format!(
            "Error creating units: failed getting Unit({file}) from file: "
        )),
        "{}",
        o.err
    );
}

#[test]
fn instance_from_the_registry_template() {
    let api = cluster();
    api.unit("web@.service", HELLO, "inactive", "inactive");
    let o = fltctl(&api, &["submit", "web@1"]);
    assert_eq!(
        (o.code, o.out.as_str()),
        (0, "Unit web@1.service inactive\n"),
        "{}",
        o.err
    );
    assert_eq!(
        options_of(&api, "web@1.service"),
        UnitFile::parse(HELLO).unwrap().serialize()
    );
}

#[test]
fn instance_from_a_template_next_to_the_argument() {
    let api = cluster();
    let dir = Dir::new("tmpl");
    dir.file("web@.service", HELLO2);
    let o = fltctl(&api, &["submit", &dir.path("web@2.service")]);
    assert_eq!(
        (o.code, o.out.as_str()),
        (0, "Unit web@2.service inactive\n"),
        "{}",
        o.err
    );
    assert_eq!(
        options_of(&api, "web@2.service"),
        UnitFile::parse(HELLO2).unwrap().serialize()
    );
}

#[test]
fn instance_without_any_template() {
    let api = cluster();
    let dir = Dir::new("notmpl");
    let arg = dir.path("web@3.service");
    let o = fltctl(&api, &["submit", &arg]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        format!(
            "Error creating units: failed getting Unit({arg}) from template: unable to find template Unit(web@.service) in Registry or on filesystem\n"
        )
    );
}

#[test]
fn registry_template_differing_from_the_local_template_is_warned_about() {
    let api = cluster();
    let dir = Dir::new("tmpldiff");
    dir.file("web@.service", HELLO2);
    api.unit("web@.service", HELLO, "inactive", "inactive");
    let arg = dir.path("web@4.service");
    let o = fltctl(&api, &["submit", &arg]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.err,
        format!(
            "WARNING: Unit web@.service in registry differs from local template unit file {arg}. Add --replace to override.\n"
        )
    );
    // The registry's template wins.
    assert_eq!(
        options_of(&api, "web@4.service"),
        UnitFile::parse(HELLO).unwrap().serialize()
    );
    // An existing instance compared with the local template.
    let o = fltctl(&api, &["submit", &arg]);
    assert_eq!(
        o.err,
        format!(
            "WARNING: Unit web@4.service in registry differs from local template unit file {arg}. Add --replace to override.\n"
        )
    );
}

#[test]
fn invalid_options_are_refused_before_the_request() {
    let api = cluster();
    let dir = Dir::new("opts");
    let file = dir.file(
        "m.service",
        "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nMachineID=abc\nGlobal=true\n",
    );
    let o = fltctl(&api, &["submit", &file]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "Error creating units: MachineID cannot be used with Global\n"
    );
    assert!(api.requests("PUT ").is_empty());
}

#[test]
fn unknown_fleet_options_are_logged_and_the_unit_created() {
    let api = cluster();
    let dir = Dir::new("unknown");
    let file = dir.file(
        "u.service",
        "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\nFoo=bar\n",
    );
    let o = fltctl(&api, &["submit", &file]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert!(
        o.err.contains(" WARN create.rs:")
            && o.err.ends_with(
                ": Unit u.service: unrecognized requirement in [X-Fleet] section: \"Foo\"\n"
            ),
        "{}",
        o.err
    );
}

#[test]
fn api_errors_while_creating() {
    let api = cluster();
    api.lock().fail.insert(
        "GET /flt/v1/units/x.service".to_string(),
        (500, "registry down".to_string()),
    );
    let o = fltctl(&api, &["submit", "x.service"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "Error creating units: error retrieving Unit(x.service) from Registry: googleapi: Error 500: registry down\n"
    );
    let dir = Dir::new("puterr");
    let file = dir.file("y.service", HELLO);
    api.lock().fail.insert(
        "PUT /flt/v1/units/y.service".to_string(),
        (500, "no".to_string()),
    );
    let o = fltctl(&api, &["submit", &file]);
    assert_eq!(
        o.err,
        "Error creating units: failed creating unit y.service: googleapi: Error 500: no\n"
    );
}

#[test]
fn creation_timeout_reports_each_unit() {
    let api = cluster();
    let dir = Dir::new("ctimeout");
    let file = dir.file("slow.service", HELLO);
    api.lock().lag = 1000;
    let o = fltctl(&api, &["load", "--block-attempts=1", &file]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "Error waiting on unit creation: timed out waiting for unit slow.service to report state inactive\n\
         Error creating units: One or more errors creating units\n"
    );
}

#[test]
fn invalid_unit_names_are_refused_before_the_request() {
    let api = cluster();
    let dir = Dir::new("badname");
    let file = dir.file("bad name.service", HELLO);
    let o = fltctl(&api, &["submit", &file]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "Error creating units: invalid character ' ' in unit name\n"
    );
    let file = dir.file("@x.service", HELLO);
    let o = fltctl(&api, &["submit", &file]);
    assert_eq!(
        o.err,
        "Error creating units: unit name cannot start in \"@\"\n"
    );
    assert!(api.requests("PUT ").is_empty());
}
