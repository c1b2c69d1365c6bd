//! Every unit in `examples/` parses, has a valid name, passes fleet's option checks without
//! warnings, and asks for what its name promises.

use flt_core::unit::{
    Requirements, UnitFile, UnitNameInfo, unknown_requirements, validate_name, validate_options,
};
use std::path::PathBuf;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// (file name, text) of every example unit, sorted by name.
#[allow(clippy::disallowed_methods)]
fn example_units() -> Vec<(String, String)> {
    let mut units: Vec<(String, String)> = std::fs::read_dir(examples_dir())
        .expect("examples/ is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "service"))
        .map(|path| {
            let name = path.file_name().expect("a file name");
            let name = name.to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("example is UTF-8");
            (name, text)
        })
        .collect();
    units.sort();
    units
}

fn parsed(name: &str) -> UnitFile {
    let (_, text) = example_units()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("examples/{name} exists"));
    UnitFile::parse(&text).expect("example parses")
}

#[test]
fn every_example_is_a_valid_unit() {
    let units = example_units();
    let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "conflict.0.service",
            "conflict.1.service",
            "conflict.2.service",
            "global.service",
            "hello.service",
            "hello@.service",
            "ping.service",
            "pong.service",
            "us-east.service",
        ]
    );
    for (name, text) in &units {
        let unit = UnitFile::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        validate_name(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        validate_options(&unit).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(unknown_requirements(&unit), Vec::<String>::new(), "{name}");
        assert!(unit.description().is_some(), "{name} has a Description");
        assert!(
            unit.values("Service", "ExecStart").next().is_some(),
            "{name} has an ExecStart"
        );
        assert!(
            !unit.has_install_section(),
            "{name}: fleet ignores [Install]"
        );
        // The stored form round-trips.
        assert_eq!(UnitFile::parse(&unit.serialize()).unwrap(), unit, "{name}");
    }
}

#[test]
fn examples_ask_for_what_they_promise() {
    let hello = parsed("hello.service");
    let exec = hello.values("Service", "ExecStart").next().unwrap();
    assert!(
        exec.contains("Hello, World!") && exec.contains("sleep 1"),
        "{exec}"
    );
    assert_eq!(
        Requirements::from_unit(&hello, "hello.service"),
        Requirements::default()
    );

    assert!(Requirements::from_unit(&parsed("global.service"), "global.service").global);

    let template = UnitNameInfo::parse("hello@.service").unwrap();
    assert!(template.is_template());
    let instance = UnitNameInfo::parse("hello@1.service").unwrap();
    assert_eq!(instance.template_name(), "hello@.service");

    let pong = Requirements::from_unit(&parsed("pong.service"), "pong.service");
    assert_eq!(pong.peers, ["ping.service"]);

    for i in 0..3 {
        let name = format!("conflict.{i}.service");
        let req = Requirements::from_unit(&parsed(&name), &name);
        assert_eq!(req.conflicts, ["conflict.*.service"], "{name}");
        for other in 0..3 {
            let other = format!("conflict.{other}.service");
            assert_eq!(
                flt_core::glob::glob_match(&req.conflicts[0], &other),
                Ok(true)
            );
        }
    }

    let east = Requirements::from_unit(&parsed("us-east.service"), "us-east.service");
    let machine = |region: &str| [("region".to_string(), region.to_string())].into();
    assert!(east.metadata_matches(&machine("us-east")));
    assert!(!east.metadata_matches(&machine("us-west")));
}
