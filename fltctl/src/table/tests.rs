use super::*;
use flt_core::api::entities::UnitOption;
use std::collections::BTreeMap;

const M1: &str = "a84622dd2d9a4a3f9e1d3b6e0a2a9c11";
const M2: &str = "113f16a7d8c64b0f9c0e1a2b3c4d5e6f";

fn opt(section: &str, name: &str, value: &str) -> UnitOption {
    UnitOption {
        section: section.into(),
        name: name.into(),
        value: value.into(),
    }
}

fn machine(id: &str, ip: &str, metadata: &[(&str, &str)]) -> Machine {
    Machine {
        id: id.into(),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        primary_ip: ip.into(),
    }
}

fn unit(name: &str, dstate: &str, cstate: &str, machine_id: &str, opts: Vec<UnitOption>) -> Unit {
    Unit {
        current_state: cstate.into(),
        desired_state: dstate.into(),
        machine_id: machine_id.into(),
        name: name.into(),
        options: opts,
    }
}

fn sleep_unit() -> Vec<UnitOption> {
    // Hash 1c6fb6f3684bafb0c173d8b8b957ceff031180c1 (spec §5.3 test vector).
    vec![opt("Service", "ExecStart", "/bin/sleep 100")]
}

fn machines() -> Vec<Machine> {
    vec![
        machine(M1, "172.17.8.101", &[("region", "us"), ("disk", "ssd")]),
        machine(M2, "", &[]),
    ]
}

fn short() -> TableStyle {
    TableStyle::default()
}

#[test]
fn field_selection_errors_have_fleetctls_texts() {
    assert_eq!(
        Columns::<UnitFileField>::parse("").unwrap_err().to_string(),
        "Must define output format"
    );
    assert_eq!(
        Columns::<UnitFileField>::parse("unit,bogus")
            .unwrap_err()
            .to_string(),
        r#"Invalid key in output format: "bogus""#
    );
    // A trailing comma is an empty key; keys are case-sensitive.
    assert_eq!(
        Columns::<MachineField>::parse("machine,").unwrap_err(),
        FieldsError::InvalidKey(String::new())
    );
    assert_eq!(
        Columns::<MachineField>::parse("MACHINE")
            .unwrap_err()
            .to_string(),
        r#"Invalid key in output format: "MACHINE""#
    );
    // list-units has no dstate; list-machines has no unit.
    assert!(Columns::<UnitStateField>::parse("dstate").is_err());
    assert!(Columns::<MachineField>::parse("unit").is_err());
    assert_eq!(
        FieldsError::InvalidKey("a\"b\\\n\u{1}".into()).to_string(),
        r#"Invalid key in output format: "a\"b\\\n\x01""#
    );
}

#[test]
fn defaults_parse_to_the_spec_columns() {
    assert_eq!(
        Columns::<UnitFileField>::default_columns().header(),
        ["UNIT", "HASH", "DSTATE", "STATE", "TARGET"]
    );
    assert_eq!(
        Columns::<UnitStateField>::default_columns().header(),
        ["UNIT", "MACHINE", "ACTIVE", "SUB"]
    );
    assert_eq!(
        Columns::<MachineField>::default_columns().header(),
        ["MACHINE", "IP", "METADATA"]
    );
}

#[test]
fn tmachine_warns_once_per_occurrence() {
    let cols = Columns::<UnitFileField>::parse("unit,tmachine").unwrap();
    assert_eq!(
        cols.warnings(),
        [r#"WARNING: The "tmachine" field is deprecated. Use "target" instead"#]
    );
    assert!(
        Columns::<UnitFileField>::default_columns()
            .warnings()
            .is_empty()
    );
}

#[test]
fn machine_legends() {
    assert_eq!(machine_id_legend(M2, false), "113f16a7...");
    assert_eq!(machine_id_legend(M2, true), M2);
    assert_eq!(machine_id_legend("abc", false), "abc...");
    let ms = vec![machine(M2, "172.17.8.103", &[])];
    assert_eq!(
        machine_full_legend(M2, &ms, false),
        "113f16a7.../172.17.8.103"
    );
    assert_eq!(
        machine_full_legend(M2, &ms, true),
        format!("{M2}/172.17.8.103")
    );
    // Unknown machine, or no IP: the ID legend alone.
    assert_eq!(machine_full_legend(M1, &ms, false), "a84622dd...");
    assert_eq!(machine_full_legend(M2, &machines(), false), "113f16a7...");
}

#[test]
fn list_unit_files_spec_example() {
    // The spec's unit has hash 40ea664; ours differs in content, so its hash is computed here.
    let mut units = vec![unit(
        "bar.service",
        "launched",
        "launched",
        M1,
        vec![opt("Service", "ExecStart", "/usr/bin/sleep 3000")],
    )];
    let hash = units[0].unit_file().hash().short();
    let out = list_unit_files(&units, &machines(), &Columns::default_columns(), short());
    assert_eq!(
        out,
        format!(
            "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n\
             bar.service\t{hash}\tlaunched\tlaunched\ta84622dd.../172.17.8.101\n"
        )
    );
    // And with the test-vector unit, whose hash is known: exact bytes.
    units[0].options = sleep_unit();
    let out = list_unit_files(&units, &machines(), &Columns::default_columns(), short());
    assert_eq!(
        out,
        "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\n\
         bar.service\t1c6fb6f\tlaunched\tlaunched\ta84622dd.../172.17.8.101\n"
    );
}

#[test]
fn list_unit_files_all_fields() {
    let units = vec![
        unit(
            "global.service",
            "launched",
            // The list endpoint says "inactive" for globals; the table shows "-".
            "inactive",
            "",
            vec![
                opt("Unit", "Description", "Everywhere"),
                opt("Service", "ExecStart", "/bin/true"),
                opt("X-Fleet", "Global", "false"),
                opt("X-Fleet", "Global", "Yes"),
            ],
        ),
        unit(
            "a.service",
            "launched",
            "launched",
            M2,
            vec![
                opt("Unit", "Description", "first"),
                opt("Unit", "Description", "second"),
                opt("Service", "ExecStart", "/bin/sleep 100"),
            ],
        ),
        unit("b.service", "", "", "", sleep_unit()),
    ];
    let cols = Columns::parse("unit,hash,dstate,state,target,tmachine,global,desc").unwrap();
    let a_hash = units[1].unit_file().hash();
    let g_hash = units[0].unit_file().hash();
    let out = list_unit_files(&units, &machines(), &cols, short());
    let expected = format!(
        "UNIT\t\tHASH\tDSTATE\t\tSTATE\t\tTARGET\t\tTMACHINE\tGLOBAL\tDESC\n\
         a.service\t{}\tlaunched\tlaunched\t113f16a7...\t113f16a7...\tfalse\tfirst\n\
         b.service\t1c6fb6f\t-\t\t-\t\t-\t\t-\t\tfalse\t-\n\
         global.service\t{}\tlaunched\t-\t\tglobal\t\tglobal\t\ttrue\tEverywhere\n",
        a_hash.short(),
        g_hash.short()
    );
    assert_eq!(out, expected);

    // --full: whole hashes and machine IDs; --no-legend drops the header.
    let full = TableStyle {
        full: true,
        no_legend: true,
    };
    let cols = Columns::parse("hash,target,unit").unwrap();
    let out = list_unit_files(&units[1..2], &machines(), &cols, full);
    assert_eq!(out, format!("{}\t{M2}\ta.service\n", a_hash.to_hex()));
}

#[test]
fn list_unit_files_sorts_by_name_lexicographically() {
    let units: Vec<Unit> = [20, 3, 1, 10, 2]
        .iter()
        .map(|i| unit(&format!("hello@{i:02}.service"), "inactive", "", "", vec![]))
        .collect();
    let out = list_unit_files(
        &units,
        &[],
        &Columns::parse("unit").unwrap(),
        TableStyle {
            full: false,
            no_legend: true,
        },
    );
    assert_eq!(
        out,
        "hello@01.service\nhello@02.service\nhello@03.service\nhello@10.service\nhello@20.service\n"
    );
}

#[test]
fn empty_lists_print_only_the_legend() {
    assert_eq!(
        list_unit_files(&[], &[], &Columns::default_columns(), short()),
        "UNIT\tHASH\tDSTATE\tSTATE\tTARGET\n"
    );
    assert_eq!(
        list_machines(
            &[],
            &Columns::default_columns(),
            TableStyle {
                full: false,
                no_legend: true
            }
        ),
        ""
    );
}

fn state(name: &str, machine_id: &str, load: &str, active: &str, sub: &str) -> UnitState {
    UnitState {
        hash: "1c6fb6f3684bafb0c173d8b8b957ceff031180c1".into(),
        machine_id: machine_id.into(),
        name: name.into(),
        systemd_active_state: active.into(),
        systemd_load_state: load.into(),
        systemd_sub_state: sub.into(),
    }
}

#[test]
fn list_units_default_and_all_fields() {
    let states = vec![
        state("hello.service", M2, "loaded", "active", "running"),
        state("global.service", M2, "loaded", "active", "running"),
        state("global.service", M1, "loaded", "inactive", "dead"),
    ];
    let out = list_units(&states, &machines(), &Columns::default_columns(), short());
    assert_eq!(
        out,
        "UNIT\t\tMACHINE\t\t\t\tACTIVE\t\tSUB\n\
         global.service\t113f16a7...\t\t\tactive\t\trunning\n\
         global.service\ta84622dd.../172.17.8.101\tinactive\tdead\n\
         hello.service\t113f16a7...\t\t\tactive\t\trunning\n"
    );
    let cols = Columns::parse("unit,load,hash").unwrap();
    let out = list_units(&states[..1], &machines(), &cols, short());
    assert_eq!(out, "UNIT\t\tLOAD\tHASH\nhello.service\tloaded\t1c6fb6f\n");
    let out = list_units(
        &states[..1],
        &machines(),
        &Columns::parse("machine,hash").unwrap(),
        TableStyle {
            full: true,
            no_legend: true,
        },
    );
    assert_eq!(
        out,
        format!("{M2}\t1c6fb6f3684bafb0c173d8b8b957ceff031180c1\n")
    );
    let mut bare = state("x.service", "", "", "", "");
    bare.hash.clear();
    let out = list_units(
        &[bare],
        &[],
        &Columns::parse("machine,hash,active").unwrap(),
        TableStyle {
            full: false,
            no_legend: true,
        },
    );
    assert_eq!(out, "-\t-\t\n");
}

#[test]
fn list_machines_default_and_full() {
    let out = list_machines(&machines(), &Columns::default_columns(), short());
    assert_eq!(
        out,
        "MACHINE\t\tIP\t\tMETADATA\n\
         113f16a7...\t-\t\t-\n\
         a84622dd...\t172.17.8.101\tdisk=ssd,region=us\n"
    );
    // TestListMachines-style: --no-legend --full --fields machine.
    let out = list_machines(
        &machines(),
        &Columns::parse("machine").unwrap(),
        TableStyle {
            full: true,
            no_legend: true,
        },
    );
    assert_eq!(out, format!("{M2}\n{M1}\n"));
}

#[test]
fn go_quote_matches_go_for_common_input() {
    assert_eq!(flt_core::goquote::quote("plain"), r#""plain""#);
    assert_eq!(flt_core::goquote::quote("tab\there"), r#""tab\there""#);
    assert_eq!(flt_core::goquote::quote("\u{7f}é"), "\"\\x7fé\"");
    assert_eq!(flt_core::goquote::quote("\u{85}"), "\"\\u0085\"");
    assert_eq!(
        flt_core::goquote::quote("\u{a0}\u{200b}\u{feff}"),
        r#""\u00a0\u200b\ufeff""#
    );
    assert_eq!(flt_core::goquote::quote("😀"), "\"😀\"");
}
