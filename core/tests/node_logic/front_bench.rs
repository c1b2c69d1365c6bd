//! How long listing 10,000 units through every page takes (fleet: 66 s). A figure, not a test:
//! `cargo test -p flt-core --release --test node_logic -- --ignored --nocapture list_10000`.

use crate::front_support::{Front, unit_file};
use flt_core::registry::records::TargetState;

#[test]
#[ignore = "a benchmark: prints a figure"]
// The wall clock is what is measured here; the core itself never reads it.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn list_10000_units_through_all_pages() {
    let mut f = Front::ready();
    for i in 0..10_000 {
        f.store_unit(
            &format!("unit-{i:05}.service"),
            &unit_file(&format!("/bin/sleep {i}")),
            TargetState::Launched,
        );
    }
    f.pump();
    let started = std::time::Instant::now();
    let mut path = "/flt/v1/units".to_string();
    let mut units = 0;
    let mut pages = 0;
    loop {
        let page = f.get_json(&path);
        pages += 1;
        units += page["units"].as_array().map_or(0, Vec::len);
        match page["nextPageToken"].as_str() {
            Some(token) => path = format!("/flt/v1/units?nextPageToken={token}"),
            None => break,
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(units, 10_000);
    println!(
        "listed {units} units in {pages} pages in {elapsed:?} (ApiFront, incl. JSON decode in the test)"
    );
}
