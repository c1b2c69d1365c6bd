//! How long listing 10,000 units through every page takes (fleet: 66 s). A figure, not a test:
//! `cargo test -p flt-core --release --test node_logic -- --ignored --nocapture list_10000`.

use crate::front_support::{Front, unit_file};
use flt_core::api::front::{ApiRequest, ApiRequestId};
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
    let mut pages = 0u64;
    let mut bytes = 0;
    let mut units = 0;
    loop {
        pages += 1;
        let request = ApiRequest {
            method: "GET".into(),
            path: path.clone(),
            ..ApiRequest::default()
        };
        f.front.handle_request(ApiRequestId(pages), request, f.now);
        let (_, answer) = f.front.poll_response().expect("a read is answered at once");
        assert_eq!(answer.status, 200);
        let body = answer.body_text();
        bytes += body.len();
        units += body.matches(r#""name":"unit-"#).count();
        // `"nextPageToken":"…"` is absent on the last page.
        match body.split(r#""nextPageToken":""#).nth(1) {
            Some(rest) => {
                let token = rest.split('"').next().unwrap_or_default();
                path = format!("/flt/v1/units?nextPageToken={token}");
            }
            None => break,
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(units, 10_000);
    println!(
        "ApiFront: listed {units} units in {pages} pages ({bytes} bytes of JSON) in {elapsed:?}"
    );
}
