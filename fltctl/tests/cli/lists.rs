//! list-machines, list-units, list-unit-files and cat against the API double.

use super::harness::*;
use flt_core::unit::UnitFile;

#[test]
fn list_machines_default_table_is_tab_padded() {
    let api = cluster();
    let o = fltctl(&api, &["list-machines"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        "MACHINE\t\tIP\t\tMETADATA\n\
         113f16a7...\t172.17.8.103\taz=a,region=us\n\
         2222aaaa...\t172.17.8.104\t-\n"
    );
    assert_eq!(o.err, "");
}

#[test]
fn list_machines_full_by_dash_l_double_dash_l_and_full() {
    let api = cluster();
    for flag in ["-l", "--l", "--full"] {
        let o = fltctl(
            &api,
            &["list-machines", flag, "--no-legend", "--fields=machine"],
        );
        assert_eq!(o.code, 0, "{flag}: {}", o.err);
        assert_eq!(o.out, format!("{M1}\n{M2}\n"), "{flag}");
    }
}

#[test]
fn bad_fields_fail_before_any_request() {
    let api = cluster();
    let o = fltctl(&api, &["list-machines", "--fields=machine,foo"]);
    assert_eq!((o.code, o.out.as_str()), (1, ""));
    assert_eq!(o.err, "Invalid key in output format: \"foo\"\n");
    let o = fltctl(&api, &["list-unit-files", "--fields="]);
    assert_eq!((o.code, o.err.as_str()), (1, "Must define output format\n"));
    let o = fltctl(&api, &["list-units", "--fields", "unit,target"]);
    assert_eq!(
        (o.code, o.err.as_str()),
        (1, "Invalid key in output format: \"target\"\n")
    );
    assert!(api.lock().requests.is_empty());
}

#[test]
fn list_unit_files_follows_pages_and_computes_hashes() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    api.unit("b.service", HELLO2, "inactive", "inactive");
    api.unit("c.service", HELLO, "loaded", "loaded");
    api.unit("g.service", GLOBAL, "launched", "");
    let o = fltctl(&api, &["list-unit-files"]);
    assert_eq!(o.code, 0, "{}", o.err);
    let h1 = UnitFile::parse(HELLO).unwrap().hash().short();
    let h2 = UnitFile::parse(HELLO2).unwrap().hash().short();
    let hg = UnitFile::parse(GLOBAL).unwrap().hash().short();
    assert_eq!(
        o.out,
        format!(
            "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n\
             a.service\t{h1}\tlaunched\tlaunched\t113f16a7.../172.17.8.103\n\
             b.service\t{h2}\tinactive\tinactive\t-\n\
             c.service\t{h1}\tloaded\t\tloaded\t\t113f16a7.../172.17.8.103\n\
             g.service\t{hg}\tlaunched\t-\t\tglobal\n"
        )
    );
    // Four units over pages of two: three list requests (the last page is empty: fleet's quirk).
    let lists = api.requests("GET /flt/v1/units");
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert!(lists[1].contains("nextPageToken="), "{lists:?}");
}

#[test]
fn list_unit_files_full_hash_and_selected_fields_and_tmachine_warning() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    let o = fltctl(
        &api,
        &[
            "list-unit-files",
            "--full",
            "--no-legend",
            "--fields=hash,tmachine,global,desc",
        ],
    );
    assert_eq!(o.code, 0, "{}", o.err);
    let h = UnitFile::parse(HELLO).unwrap().hash().to_hex();
    assert_eq!(o.out, format!("{h}\t{M1}/172.17.8.103\tfalse\tHello\n"));
    assert_eq!(
        o.err,
        "WARNING: The \"tmachine\" field is deprecated. Use \"target\" instead\n"
    );
}

#[test]
fn list_units_shows_states_per_machine_with_global_units_on_each() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    api.unit("b.service", HELLO, "inactive", "inactive");
    api.unit("g.service", GLOBAL, "launched", "");
    let o = fltctl(&api, &["list-units"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        "UNIT\t\tMACHINE\t\t\t\tACTIVE\t\tSUB\n\
         a.service\t113f16a7.../172.17.8.103\tactive\t\trunning\n\
         g.service\t113f16a7.../172.17.8.103\tinactive\tdead\n\
         g.service\t2222aaaa.../172.17.8.104\tinactive\tdead\n"
    );
    let o = fltctl(
        &api,
        &["list-units", "-l", "--no-legend", "--fields=unit,load,hash"],
    );
    let h = UnitFile::parse(HELLO).unwrap().hash().to_hex();
    assert!(
        o.out.starts_with(&format!("a.service\tloaded\t{h}\n")),
        "{}",
        o.out
    );
}

#[test]
fn list_failures_print_fleetctl_messages() {
    let api = cluster();
    api.lock()
        .fail
        .insert("/machines".to_string(), (500, "boom".to_string()));
    let o = fltctl(&api, &["list-machines"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "Error retrieving list of active machines from flt API (googleapi: Error 500: boom)\n\
         Possible issues:\n  etcd is unhealthy and/or lost quorum\n  \
         connection cannot be established to any etcd servers\n"
    );
    api.lock()
        .fail
        .insert("/units".to_string(), (503, String::new()));
    let o = fltctl(&api, &["list-unit-files"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "Error retrieving list of units from repository: googleapi: got HTTP response code 503 with body: {\"error\":{\"code\":503,\"message\":\"\"}}\n"
    );
}

#[test]
fn cat_prints_the_serialized_unit_without_extra_newline() {
    let api = cluster();
    api.unit("a.service", HELLO, "launched", "launched");
    let o = fltctl(&api, &["cat", "a"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.out, UnitFile::parse(HELLO).unwrap().serialize());
    let o = fltctl(&api, &["cat", "nope.service"]);
    assert_eq!(
        (o.code, o.err.as_str()),
        (1, "Unit nope.service not found\n")
    );
    let o = fltctl(&api, &["cat"]);
    assert_eq!(
        (o.code, o.err.as_str()),
        (1, "One unit file must be provided\n")
    );
    let o = fltctl(&api, &["cat", "a", "b"]);
    assert_eq!(
        (o.code, o.err.as_str()),
        (1, "One unit file must be provided\n")
    );
}

#[test]
fn cat_keeps_percent_signs() {
    // fleetctl passed the unit to Printf as a format string; flt prints it as is.
    let api = cluster();
    api.unit(
        "p.service",
        "[Service]\nExecStart=/bin/date +%s%%d\n",
        "inactive",
        "inactive",
    );
    let o = fltctl(&api, &["cat", "p.service"]);
    assert_eq!(o.out, "[Service]\nExecStart=/bin/date +%s%%d\n");
}

#[test]
fn the_api_over_a_unix_socket() {
    let dir = Dir::new("unix");
    let api = super::api_double::ApiDouble::start_unix(std::path::Path::new(&dir.path("flt.sock")));
    api.machine(M1, "172.17.8.103", &[]);
    let file = dir.file("u.service", HELLO);
    let o = fltctl(&api, &["start", &file]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(
        o.out,
        "Unit u.service inactive\nUnit u.service launched on 113f16a7.../172.17.8.103\n"
    );
    let o = fltctl(&api, &["list-machines", "--no-legend"]);
    assert_eq!(o.out, "113f16a7...\t172.17.8.103\t-\n");
    let o = fltctl(&api, &["destroy", "u.service"]);
    assert_eq!((o.code, o.out.as_str()), (0, "Destroyed u.service\n"));
    // Requests carry the placeholder host; the path is the API's.
    assert!(api.requests("PUT /flt/v1/units/u.service").len() == 2);
}

#[test]
fn a_missing_unix_socket_reads_like_go() {
    let api = cluster();
    let run = Run {
        endpoint: Some("unix:///nonexistent/flt.sock".to_string()),
        ..Run::default()
    };
    let o = run.go(&api, &["list-unit-files"]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.err,
        "Error retrieving list of units from repository: Get http://domain-sock/flt/v1/units: dial unix /nonexistent/flt.sock: no such file or directory\n"
    );
}

#[test]
fn lookup_errors_of_single_unit_commands() {
    let api = cluster();
    api.lock().fail.insert(
        "GET /flt/v1/units/a.service".to_string(),
        (500, "down".to_string()),
    );
    for (args, message) in [
        (
            &["cat", "a"][..],
            "Error retrieving Unit a.service: googleapi: Error 500: down\n",
        ),
        (
            &["status", "a"],
            "Error retrieving unit: googleapi: Error 500: down\n",
        ),
        (
            &["journal", "a"],
            "Error retrieving unit a.service: googleapi: Error 500: down\n",
        ),
        (&["fd-forward"], "Provide a single argument\n"),
        (&["fd-forward", "a", "b"], "Provide a single argument\n"),
    ] {
        let o = fltctl(&api, args);
        assert_eq!((o.code, o.err.as_str()), (1, message), "{args:?}");
    }
}

#[test]
fn only_the_first_endpoint_is_used() {
    let api = cluster();
    let run = Run {
        endpoint: Some(format!("{},http://127.0.0.1:1", api.url)),
        ..Run::default()
    };
    let o = run.go(&api, &["list-machines", "--no-legend", "--fields=ip"]);
    assert_eq!(o.code, 0, "{}", o.err);
    assert_eq!(o.out, "172.17.8.103\n172.17.8.104\n");
    assert!(
        o.err.ends_with(&format!(
            ": multiple endpoints provided but only the first ({}) is used\n",
            api.url
        )),
        "{}",
        o.err
    );
}
